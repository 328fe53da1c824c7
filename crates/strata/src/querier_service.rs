//! The querier role's gRPC service: a thin adapter from the generated
//! tonic trait to any [`QueryApi`] (normally the [`crate::local_querier::LocalQuerier`]).

use std::sync::Arc;

use strata_common::QueryApi;
use strata_proto::query::querier_server::{Querier, QuerierServer};
use strata_proto::query::{QueryRequest, QueryResponse};
use tonic::{Request, Response, Status};

/// Exposes a [`QueryApi`] as the `strata.query.v1.Querier` gRPC service.
pub struct QuerierService {
    querier: Arc<dyn QueryApi>,
}

impl std::fmt::Debug for QuerierService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerierService").finish_non_exhaustive()
    }
}

impl QuerierService {
    /// A tonic server for `querier`; results of big range queries are large.
    pub fn server(querier: Arc<dyn QueryApi>) -> QuerierServer<QuerierService> {
        QuerierServer::new(QuerierService { querier })
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20)
    }
}

#[tonic::async_trait]
impl Querier for QuerierService {
    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let response = self.querier.query(request.into_inner()).await?;
        Ok(Response::new(response))
    }
}
