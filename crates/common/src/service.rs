//! The internal services as traits: the store ([`StoreApi`]) and the
//! querier ([`QueryApi`]). Roles talk to each other only through them: over
//! gRPC ([`GrpcStoreClient`], [`GrpcQueryClient`]) in a cluster, or to the
//! implementation in the same process in `--target all`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use strata_proto::prometheus::{Label, TimeSeries};
use strata_proto::query::querier_client::QuerierClient;
use strata_proto::query::{QueryRequest, QueryResponse};
use strata_proto::store::{
    EncodedWriteRequest, FlushRequest, FlushResponse, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse, MetadataRequest, MetadataResponse, RejectedSeries,
    SelectRequest, SelectedSeries, SeriesRequest, SeriesResponse, WriteRequest, WriteResponse,
    store_client::StoreClient,
};

use crate::error::ErrorClass;
use crate::raw_write::{RawSeries, RawWrite};

/// A failed service call, carrying its class so every edge maps it the same way.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub class: ErrorClass,
    pub message: String,
}

impl ServiceError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ServiceError {
            class,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorClass::BadData, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorClass::Internal, message)
    }
}

impl From<tonic::Status> for ServiceError {
    fn from(status: tonic::Status) -> Self {
        ServiceError::new(
            ErrorClass::from_grpc_code(status.code()),
            status.message().to_owned(),
        )
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        tonic::Status::new(error.class.grpc_code(), error.message)
    }
}

/// What a store node offers. Every request names its tenant.
#[async_trait]
pub trait StoreApi: Send + Sync + 'static {
    /// Appends samples; returns once they are durable in the WAL.
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, ServiceError>;
    /// Series matching all matchers with their data in the range, sorted by labels.
    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, ServiceError>;
    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, ServiceError>;
    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, ServiceError>;
    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, ServiceError>;
    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, ServiceError>;
    /// Cuts the head into blocks now (operators and tests).
    async fn flush(&self, request: FlushRequest) -> Result<FlushResponse, ServiceError>;

    /// Writes a remote-write request as sent, `validator` deciding which
    /// series are valid and their canonical labels. This default validates
    /// every series and calls [`StoreApi::write`] with the valid ones; the
    /// local engine overrides it to find the series it knows by their raw
    /// label bytes and validate only the others.
    async fn write_raw(
        &self,
        tenant: &str,
        request: RawWrite,
        validator: Arc<dyn SeriesValidator>,
    ) -> Result<RawWriteResponse, ServiceError> {
        let mut invalid = Refusals::default();
        let mut timeseries = Vec::with_capacity(request.len());
        for (index, series) in request.iter().enumerate() {
            match validator.validate(series) {
                Ok(labels) => timeseries.push(TimeSeries {
                    labels,
                    samples: series.samples().to_vec(),
                    exemplars: Vec::new(),
                    histograms: series.histograms().to_vec(),
                }),
                Err(reason) => invalid.add(index, series, reason),
            }
        }
        let written = self
            .write(WriteRequest {
                tenant: tenant.to_owned(),
                timeseries,
                metadata: request.metadata().to_vec(),
            })
            .await?;
        Ok(RawWriteResponse { written, invalid })
    }
}

/// The frontend's rules for incoming series, for [`StoreApi::write_raw`].
pub trait SeriesValidator: Send + Sync + 'static {
    /// The series' canonical labels (valid, sorted, no empty values), or
    /// why it is refused, naming the series.
    fn validate(&self, series: RawSeries<'_>) -> Result<Vec<Label>, String>;

    /// Whether a series whose labels are byte for byte those of a stored
    /// series is valid as it is. Stored label sets passed [`validate`]
    /// once and are canonical; what may refuse them now is only what can
    /// change since (limits) or what the labels do not cover (histograms).
    /// `false` sends the series through [`validate`].
    ///
    /// [`validate`]: SeriesValidator::validate
    fn accepts_stored(&self, series: RawSeries<'_>) -> bool;
}

/// What [`StoreApi::write_raw`] did.
#[derive(Debug, Default)]
pub struct RawWriteResponse {
    /// The store's answer for the valid series (the indexes of its
    /// rejections count only the valid series, as in the `WriteRequest`
    /// they would make).
    pub written: WriteResponse,
    /// The series the validator refused.
    pub invalid: Refusals,
}

/// The series a validator refused, counted; only the first is kept whole
/// (a response names one): a body of many small invalid series must not
/// make as many messages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refusals {
    pub series: u64,
    /// Samples and histograms of those series (all refused).
    pub samples: u64,
    /// The first refused series, by its index in the request.
    pub first: Option<RejectedSeries>,
}

impl Refusals {
    /// Counts series `index` of the request as refused for `reason`.
    pub fn add(&mut self, index: usize, series: RawSeries<'_>, reason: String) {
        let samples = (series.samples().len() + series.histograms().len()) as u64;
        self.series += 1;
        self.samples += samples;
        self.first.get_or_insert_with(|| RejectedSeries {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            reason,
            rejected_samples: samples,
        });
    }
}

/// [`StoreApi`] over gRPC to a remote store node.
#[derive(Debug, Clone)]
pub struct GrpcStoreClient {
    client: StoreClient<tonic::transport::Channel>,
    channel: tonic::transport::Channel,
}

impl GrpcStoreClient {
    /// Connects lazily: the first call dials `endpoint` (e.g. `http://10.0.0.1:9095`).
    pub fn connect_lazy(endpoint: &str) -> Result<Self, ServiceError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| {
                ServiceError::bad_data(format!("invalid store address {endpoint:?}: {e}"))
            })?
            .connect_lazy();
        Ok(GrpcStoreClient {
            client: StoreClient::new(channel.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            channel,
        })
    }

    /// `Write` with series encoded beforehand: the distributor encodes each
    /// series once and shares the bytes between the replicas' requests.
    pub async fn write_encoded(
        &self,
        request: EncodedWriteRequest,
    ) -> Result<WriteResponse, ServiceError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        grpc.ready().await.map_err(|e| {
            ServiceError::new(
                ErrorClass::Unavailable,
                format!("store connection not ready: {e}"),
            )
        })?;
        let codec = tonic_prost::ProstCodec::<EncodedWriteRequest, WriteResponse>::default();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/strata.store.v1.Store/Write");
        Ok(grpc
            .unary(tonic::Request::new(request), path, codec)
            .await?
            .into_inner())
    }
}

#[async_trait]
impl StoreApi for GrpcStoreClient {
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, ServiceError> {
        Ok(self.client.clone().write(request).await?.into_inner())
    }

    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, ServiceError> {
        let mut stream = self.client.clone().select(request).await?.into_inner();
        let mut series = Vec::new();
        while let Some(batch) = stream.next().await {
            series.extend(batch?.series);
        }
        Ok(series)
    }

    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, ServiceError> {
        Ok(self.client.clone().series(request).await?.into_inner())
    }

    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, ServiceError> {
        Ok(self.client.clone().label_names(request).await?.into_inner())
    }

    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, ServiceError> {
        Ok(self
            .client
            .clone()
            .label_values(request)
            .await?
            .into_inner())
    }

    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, ServiceError> {
        Ok(self.client.clone().metadata(request).await?.into_inner())
    }

    async fn flush(&self, request: FlushRequest) -> Result<FlushResponse, ServiceError> {
        Ok(self.client.clone().flush(request).await?.into_inner())
    }
}

/// What a querier offers: PromQL evaluation for a tenant.
#[async_trait]
pub trait QueryApi: Send + Sync + 'static {
    /// Evaluates an instant (`step_ms == 0`) or range query.
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError>;
}

/// [`QueryApi`] over gRPC to a remote querier.
#[derive(Debug, Clone)]
pub struct GrpcQueryClient {
    client: QuerierClient<tonic::transport::Channel>,
}

impl GrpcQueryClient {
    /// Connects lazily: the first call dials `endpoint`.
    pub fn connect_lazy(endpoint: &str) -> Result<Self, ServiceError> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| {
                ServiceError::bad_data(format!("invalid querier address {endpoint:?}: {e}"))
            })?
            .connect_lazy();
        Ok(GrpcQueryClient {
            client: QuerierClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        })
    }
}

impl GrpcQueryClient {
    /// `query` with the raw gRPC status of a failure, which tells whether
    /// the querier answered (no source) or could not be reached (the
    /// transport error as its source).
    pub async fn query_status(
        &self,
        request: QueryRequest,
    ) -> Result<QueryResponse, tonic::Status> {
        Ok(self.client.clone().query(request).await?.into_inner())
    }
}

#[async_trait]
impl QueryApi for GrpcQueryClient {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        Ok(self.query_status(request).await?)
    }
}
