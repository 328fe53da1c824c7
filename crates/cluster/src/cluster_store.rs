//! [`ClusterStore`]: the store service of a whole cluster behind the same
//! [`StoreApi`] a single store node offers. Writes go to every replica of
//! each series' shard and succeed on a quorum ([`crate::write`]); reads ask
//! enough replicas of every shard in every epoch they overlap and merge
//! their answers sample by sample ([`crate::read`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use strata_common::{GrpcStoreClient, ServiceError, StoreApi};
use strata_proto::store::{
    FlushRequest, FlushResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetadataRequest, MetadataResponse, SelectRequest, SelectedSeries,
    SeriesRequest, SeriesResponse, WriteRequest, WriteResponse,
};

use crate::metrics::ClusterMetrics;
use crate::watcher::PlacementWatcher;

/// Timeouts of the calls to store nodes.
#[derive(Debug, Clone)]
pub struct ClusterStoreOptions {
    /// One write to one replica.
    pub write_timeout: Duration,
    /// One read from one replica; a replica slower than this has failed.
    pub read_timeout: Duration,
    /// While reads are this slow, other replicas of their shards are
    /// asked too (hedged requests).
    pub hedge_delay: Duration,
}

impl Default for ClusterStoreOptions {
    fn default() -> Self {
        ClusterStoreOptions {
            write_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            hedge_delay: Duration::from_secs(2),
        }
    }
}

/// The cluster's store nodes as one [`StoreApi`].
#[derive(Debug, Clone)]
pub struct ClusterStore {
    pub(crate) watcher: Arc<PlacementWatcher>,
    pub(crate) options: ClusterStoreOptions,
    pub(crate) metrics: ClusterMetrics,
    clients: Arc<Mutex<HashMap<String, GrpcStoreClient>>>,
    /// Tenants meta is known to have (created implicitly on first write).
    known_tenants: Arc<Mutex<HashSet<String>>>,
}

impl ClusterStore {
    pub fn new(
        watcher: Arc<PlacementWatcher>,
        options: ClusterStoreOptions,
        metrics: ClusterMetrics,
    ) -> Self {
        ClusterStore {
            watcher,
            options,
            metrics,
            clients: Arc::default(),
            known_tenants: Arc::default(),
        }
    }

    /// Makes sure meta lists `tenant`, once per process and tenant, in the
    /// background: a write never waits for it.
    pub(crate) fn ensure_tenant(&self, tenant: &str) {
        {
            let mut known = self.known_tenants.lock();
            // Every write passes here: no allocation once the tenant is known.
            if known.contains(tenant) || !known.insert(tenant.to_owned()) {
                return;
            }
        }
        let meta = self.watcher.meta().clone();
        let known = self.known_tenants.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            if let Err(error) = meta.ensure_tenant(&tenant).await {
                tracing::warn!(%tenant, %error, "cannot record the tenant in meta, will retry");
                known.lock().remove(&tenant);
            }
        });
    }

    /// The (lazily connected) client of the store at `address`.
    pub(crate) fn client(&self, address: &str) -> Result<GrpcStoreClient, ServiceError> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = GrpcStoreClient::connect_lazy(address)?;
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl StoreApi for ClusterStore {
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, ServiceError> {
        crate::write::write(self, request).await
    }

    async fn select(&self, request: SelectRequest) -> Result<Vec<SelectedSeries>, ServiceError> {
        crate::read::select(self, request).await
    }

    async fn series(&self, request: SeriesRequest) -> Result<SeriesResponse, ServiceError> {
        crate::read::series(self, request).await
    }

    async fn label_names(
        &self,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, ServiceError> {
        crate::read::label_names(self, request).await
    }

    async fn label_values(
        &self,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, ServiceError> {
        crate::read::label_values(self, request).await
    }

    async fn metadata(&self, request: MetadataRequest) -> Result<MetadataResponse, ServiceError> {
        crate::read::metadata(self, request).await
    }

    async fn flush(&self, request: FlushRequest) -> Result<FlushResponse, ServiceError> {
        crate::read::flush(self, request).await
    }
}
