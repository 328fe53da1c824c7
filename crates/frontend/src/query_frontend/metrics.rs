//! The query frontend's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The query frontend's metrics, under `strata_query_frontend_*`.
#[derive(Debug, Clone, Default)]
pub(super) struct Metrics {
    pub(super) queries: Counter,
    pub(super) subqueries: Counter,
    pub(super) retries: Counter,
    pub(super) sharded: Counter,
    rejected: Family<ReasonLabel, Counter>,
    pub(super) cache_hits: Counter,
    pub(super) cache_misses: Counter,
    pub(super) rendered_hits: Counter,
    pub(super) cache_bytes: Gauge,
    pub(super) queued: Gauge,
}

impl Metrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics::default();
        let r = registry.sub_registry_with_prefix("strata_query_frontend");
        r.register(
            "queries",
            "Queries the query frontend answered or refused",
            metrics.queries.clone(),
        );
        r.register(
            "querier_requests",
            "Calls to queriers: split intervals, missing cache extents and retries",
            metrics.subqueries.clone(),
        );
        r.register(
            "querier_retries",
            "Querier calls retried after an unavailable or internal failure",
            metrics.retries.clone(),
        );
        r.register(
            "sharded_requests",
            "Querier requests answered by partial queries per shard, combined",
            metrics.sharded.clone(),
        );
        r.register(
            "rejected_queries",
            "Queries refused before any work, by reason",
            metrics.rejected.clone(),
        );
        r.register(
            "results_cache_hits",
            "Extents of split intervals answered from the results cache",
            metrics.cache_hits.clone(),
        );
        r.register(
            "results_cache_misses",
            "Extents of split intervals the results cache did not hold",
            metrics.cache_misses.clone(),
        );
        r.register(
            "rendered_cache_hits",
            "Queries answered with the rendered answer kept for the same request",
            metrics.rendered_hits.clone(),
        );
        r.register(
            "results_cache_bytes",
            "Estimated bytes held by the results cache",
            metrics.cache_bytes.clone(),
        );
        r.register(
            "queued_requests",
            "Querier calls waiting in the per-tenant queues",
            metrics.queued.clone(),
        );
        metrics
    }

    pub(super) fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
