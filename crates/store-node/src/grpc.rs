//! The store service over gRPC: a thin adapter from the generated tonic
//! server trait to any [`StoreApi`] (normally the [`crate::Engine`]).

use std::pin::Pin;

use futures::Stream;
use strata_common::StoreApi;
use strata_proto::store::store_server::{Store, StoreServer};
use strata_proto::store::{
    FlushRequest, FlushResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetadataRequest, MetadataResponse, SelectRequest, SelectResponse,
    SeriesRequest, SeriesResponse, WriteRequest, WriteResponse,
};
use tonic::{Request, Response, Status};

/// Series per streamed `SelectResponse` message.
const SERIES_PER_MESSAGE: usize = 256;

/// Exposes a [`StoreApi`] as the `strata.store.v1.Store` gRPC service.
#[derive(Debug)]
pub struct StoreService<S> {
    store: S,
}

impl<S: StoreApi> StoreService<S> {
    /// A tonic server for `store`, with message limits fit for large writes.
    pub fn server(store: S) -> StoreServer<StoreService<S>> {
        StoreServer::new(StoreService { store })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

type SelectStream = Pin<Box<dyn Stream<Item = Result<SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: StoreApi> Store for StoreService<S> {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        Ok(Response::new(self.store.write(request.into_inner()).await?))
    }

    type SelectStream = SelectStream;

    async fn select(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<Self::SelectStream>, Status> {
        let series = self.store.select(request.into_inner()).await?;
        let mut batches = Vec::new();
        let mut rest = series.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<_> = rest.by_ref().take(SERIES_PER_MESSAGE).collect();
            batches.push(Ok(SelectResponse { series: batch }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        Ok(Response::new(
            self.store.series(request.into_inner()).await?,
        ))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        Ok(Response::new(
            self.store.label_names(request.into_inner()).await?,
        ))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        Ok(Response::new(
            self.store.label_values(request.into_inner()).await?,
        ))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        Ok(Response::new(
            self.store.metadata(request.into_inner()).await?,
        ))
    }

    async fn flush(
        &self,
        request: Request<FlushRequest>,
    ) -> Result<Response<FlushResponse>, Status> {
        Ok(Response::new(self.store.flush(request.into_inner()).await?))
    }
}
