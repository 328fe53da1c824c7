//! The store service as a trait. The frontend and queriers talk to store
//! nodes only through it: over gRPC ([`GrpcStoreClient`]) in a cluster, or
//! to the engine in the same process in `--target all`.

use async_trait::async_trait;
use futures::StreamExt;
use strata_proto::store::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    MetadataRequest, MetadataResponse, SelectRequest, SelectedSeries, SeriesRequest,
    SeriesResponse, WriteRequest, WriteResponse, store_client::StoreClient,
};

use crate::error::ErrorClass;

/// A failed store call, carrying its class so every edge maps it the same way.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub class: ErrorClass,
    pub message: String,
}

impl StoreError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        StoreError {
            class,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        StoreError::new(ErrorClass::BadData, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        StoreError::new(ErrorClass::Internal, message)
    }
}

impl From<tonic::Status> for StoreError {
    fn from(status: tonic::Status) -> Self {
        StoreError::new(
            ErrorClass::from_grpc_code(status.code()),
            status.message().to_owned(),
        )
    }
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        tonic::Status::new(error.class.grpc_code(), error.message)
    }
}

/// What a store node offers. Every request names its tenant.
#[async_trait]
pub trait StoreApi: Send + Sync + 'static {
    /// Appends samples; returns once they are durable in the WAL.
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, StoreError>;
    /// Series matching all matchers with their data in the range, sorted by labels.
    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, StoreError>;
    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, StoreError>;
    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, StoreError>;
    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, StoreError>;
    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, StoreError>;
}

/// [`StoreApi`] over gRPC to a remote store node.
#[derive(Debug, Clone)]
pub struct GrpcStoreClient {
    client: StoreClient<tonic::transport::Channel>,
}

impl GrpcStoreClient {
    /// Connects lazily: the first call dials `endpoint` (e.g. `http://10.0.0.1:9095`).
    pub fn connect_lazy(endpoint: &str) -> Result<Self, StoreError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| StoreError::bad_data(format!("invalid store address {endpoint:?}: {e}")))?
            .connect_lazy();
        Ok(GrpcStoreClient {
            client: StoreClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        })
    }
}

#[async_trait]
impl StoreApi for GrpcStoreClient {
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, StoreError> {
        Ok(self.client.clone().write(request).await?.into_inner())
    }

    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, StoreError> {
        let mut stream = self.client.clone().select(request).await?.into_inner();
        let mut series = Vec::new();
        while let Some(batch) = stream.next().await {
            series.extend(batch?.series);
        }
        Ok(series)
    }

    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, StoreError> {
        Ok(self.client.clone().series(request).await?.into_inner())
    }

    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, StoreError> {
        Ok(self.client.clone().label_names(request).await?.into_inner())
    }

    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, StoreError> {
        Ok(self
            .client
            .clone()
            .label_values(request)
            .await?
            .into_inner())
    }

    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, StoreError> {
        Ok(self.client.clone().metadata(request).await?.into_inner())
    }
}
