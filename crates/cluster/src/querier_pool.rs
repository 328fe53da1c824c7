//! The frontend's queriers: requests go round-robin; a querier that is
//! down or overloaded is skipped and the request retried on the next one,
//! while a bad query fails at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use strata_common::error::ErrorClass;
use strata_common::{GrpcQueryClient, QueryApi, ServiceError};
use strata_proto::query::{QueryRequest, QueryResponse};

/// Several queriers as one [`QueryApi`].
#[derive(Debug)]
pub struct QuerierPool {
    queriers: Vec<(String, GrpcQueryClient)>,
    next: AtomicUsize,
}

impl QuerierPool {
    /// Lazily connected clients of `addresses` (gRPC URLs).
    pub fn new(addresses: &[String]) -> Result<Self, ServiceError> {
        if addresses.is_empty() {
            return Err(ServiceError::bad_data("no querier addresses configured"));
        }
        let queriers = addresses
            .iter()
            .map(|a| Ok((a.clone(), GrpcQueryClient::connect_lazy(a)?)))
            .collect::<Result<_, ServiceError>>()?;
        Ok(QuerierPool {
            queriers,
            next: AtomicUsize::new(0),
        })
    }
}

/// Failures another querier may not have.
fn is_retryable(error: &ServiceError) -> bool {
    matches!(
        error.class,
        ErrorClass::Unavailable | ErrorClass::RateLimited | ErrorClass::Internal
    )
}

#[async_trait]
impl QueryApi for QuerierPool {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for attempt in 0..self.queriers.len() {
            let (address, client) = &self.queriers[(first + attempt) % self.queriers.len()];
            match client.query(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(error) if is_retryable(&error) => {
                    tracing::warn!(querier = %address, %error, "querier failed, retrying on the next");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| ServiceError::internal("no querier answered")))
    }
}
