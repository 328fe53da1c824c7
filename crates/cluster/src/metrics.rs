//! Metrics of the cluster client side (distributor and fan-out reads).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters shared by every clone of a [`crate::ClusterStore`].
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// Calls to store nodes by operation and outcome.
    pub replica_calls: Family<Vec<(String, String)>, Counter>,
    /// Writes that missed their quorum for some shard.
    pub quorum_failures: Counter,
    /// Reads that had to ask another replica after one failed.
    pub read_retries: Counter,
    /// Store nodes in this process's placement view, by health.
    pub stores: Family<Vec<(String, String)>, Gauge>,
    /// Placement epochs in this process's view.
    pub epochs: Gauge,
}

impl ClusterMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = ClusterMetrics::default();
        registry.register(
            "strata_cluster_replica_calls",
            "Calls from this process to store nodes, by operation and outcome",
            metrics.replica_calls.clone(),
        );
        registry.register(
            "strata_cluster_write_quorum_failures",
            "Writes refused with 503 because a shard missed its quorum",
            metrics.quorum_failures.clone(),
        );
        registry.register(
            "strata_cluster_placement_stores",
            "Store nodes in this process's placement view, by health",
            metrics.stores.clone(),
        );
        registry.register(
            "strata_cluster_placement_epochs",
            "Placement epochs in this process's view",
            metrics.epochs.clone(),
        );
        registry.register(
            "strata_cluster_read_retries",
            "Reads that asked another replica after one failed",
            metrics.read_retries.clone(),
        );
        metrics
    }

    pub(crate) fn call(&self, op: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.replica_calls
            .get_or_create(&vec![
                ("op".to_owned(), op.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
            .inc();
    }
}
