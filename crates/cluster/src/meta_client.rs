//! A client of the meta service that finds a working meta node itself.
//!
//! Every meta node answers every call (followers forward writes to the
//! leader), so the client only has to skip nodes that are down: it tries
//! the last node that answered first, then the others in turn, and retries
//! the whole list until its deadline while no node can answer.

use std::time::Duration;

use parking_lot::Mutex;
use strata_common::ServiceError;
use strata_common::error::ErrorClass;
use strata_proto::meta::meta_client::MetaClient as GrpcMetaClient;
use strata_proto::meta::{
    ClusterState, EnsureTenantRequest, GetStateRequest, HeartbeatRequest, RegisterStoreRequest,
};
use tonic::transport::Channel;

/// How long one call may keep trying the meta nodes.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Timeout of one attempt at one meta node.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The meta service behind a list of node addresses.
#[derive(Debug)]
pub struct MetaClient {
    nodes: Vec<(String, GrpcMetaClient<Channel>)>,
    /// Index of the node that answered last.
    preferred: Mutex<usize>,
}

impl MetaClient {
    /// Clients for `addresses` (gRPC URLs such as `http://meta-1:9095`);
    /// connections are made on first use.
    pub fn new(addresses: &[String]) -> Result<Self, ServiceError> {
        if addresses.is_empty() {
            return Err(ServiceError::bad_data("no meta addresses configured"));
        }
        let nodes = addresses
            .iter()
            .map(|address| {
                let channel = tonic::transport::Endpoint::from_shared(address.clone())
                    .map_err(|e| {
                        ServiceError::bad_data(format!("invalid meta address {address:?}: {e}"))
                    })?
                    .connect_timeout(ATTEMPT_TIMEOUT)
                    .timeout(ATTEMPT_TIMEOUT)
                    .connect_lazy();
                Ok((address.clone(), GrpcMetaClient::new(channel)))
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        Ok(MetaClient {
            nodes,
            preferred: Mutex::new(0),
        })
    }

    /// Runs `call` against the meta nodes until one answers, or an answer
    /// is an error no other node would change (bad data, not found).
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ServiceError>
    where
        F: Fn(GrpcMetaClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
        let mut last_error = String::new();
        let mut backoff = Duration::from_millis(50);
        loop {
            let first = *self.preferred.lock();
            for step in 0..self.nodes.len() {
                let index = (first + step) % self.nodes.len();
                let (address, client) = &self.nodes[index];
                match call(client.clone()).await {
                    Ok(response) => {
                        *self.preferred.lock() = index;
                        return Ok(response.into_inner());
                    }
                    Err(status) if is_final(&status) => return Err(status.into()),
                    Err(status) => {
                        tracing::debug!(meta = %address, code = ?status.code(), message = status.message(), "meta call failed, trying the next node");
                        last_error = format!("{address}: {}", status.message());
                    }
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(ServiceError::new(
                    ErrorClass::Unavailable,
                    format!("meta service unavailable for {what}: {last_error}"),
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The cluster state as one meta node applied it.
    pub async fn state(&self) -> Result<ClusterState, ServiceError> {
        self.call("get state", |mut c| async move {
            c.get_state(GetStateRequest {}).await
        })
        .await
    }

    /// Registers (or re-registers) a store node.
    pub async fn register_store(
        &self,
        id: &str,
        address: &str,
        zone: &str,
    ) -> Result<ClusterState, ServiceError> {
        let request = RegisterStoreRequest {
            id: id.to_owned(),
            address: address.to_owned(),
            zone: zone.to_owned(),
        };
        let response = self
            .call("register store", |mut c| {
                let request = request.clone();
                async move { c.register_store(request).await }
            })
            .await?;
        Ok(response.state.unwrap_or_default())
    }

    /// Reports a store node alive.
    pub async fn heartbeat(&self, id: &str) -> Result<(), ServiceError> {
        let request = HeartbeatRequest { id: id.to_owned() };
        self.call("heartbeat", |mut c| {
            let request = request.clone();
            async move { c.heartbeat(request).await }
        })
        .await
        .map(|_| ())
    }

    /// Creates a tenant unless it exists.
    pub async fn ensure_tenant(&self, tenant: &str) -> Result<(), ServiceError> {
        let request = EnsureTenantRequest {
            tenant: tenant.to_owned(),
        };
        self.call("ensure tenant", |mut c| {
            let request = request.clone();
            async move { c.ensure_tenant(request).await }
        })
        .await
        .map(|_| ())
    }
}

/// Errors another meta node would answer the same way.
fn is_final(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::AlreadyExists
    )
}
