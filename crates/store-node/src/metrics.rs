//! The store node's own metrics, registered in a registry passed in so tests
//! and the binary decide where they are exposed.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::tenant_db::WriteOutcome;

/// Counters and gauges of the write path, recorded per write batch.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub samples_appended: Counter,
    pub histograms_appended: Counter,
    pub samples_rejected: Counter,
    pub head_series: Gauge,
    pub write_duration: Histogram,
    pub blocks_cut: Counter,
    pub blocks_compacted: Counter,
    pub blocks_deleted: Counter,
    pub blocks: Gauge,
    pub block_bytes: Gauge,
    pub block_cache_hits: Counter,
    pub block_cache_misses: Counter,
    pub block_cache_bytes: Gauge,
}

impl StoreMetrics {
    /// Creates the metrics and registers them under `strata_store_*`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = StoreMetrics {
            samples_appended: Counter::default(),
            histograms_appended: Counter::default(),
            samples_rejected: Counter::default(),
            head_series: Gauge::default(),
            write_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            blocks_cut: Counter::default(),
            blocks_compacted: Counter::default(),
            blocks_deleted: Counter::default(),
            blocks: Gauge::default(),
            block_bytes: Gauge::default(),
            block_cache_hits: Counter::default(),
            block_cache_misses: Counter::default(),
            block_cache_bytes: Gauge::default(),
        };
        let store = registry.sub_registry_with_prefix("strata_store");
        store.register(
            "samples_appended",
            "Float samples appended to the head (after the WAL)",
            metrics.samples_appended.clone(),
        );
        store.register(
            "histograms_appended",
            "Native-histogram samples appended to the head",
            metrics.histograms_appended.clone(),
        );
        store.register(
            "samples_rejected",
            "Samples refused as out of order or duplicate",
            metrics.samples_rejected.clone(),
        );
        store.register(
            "head_series",
            "Series in the in-memory head, all tenants",
            metrics.head_series.clone(),
        );
        store.register(
            "write_duration_seconds",
            "Time to make one write durable and apply it, WAL fsync included",
            metrics.write_duration.clone(),
        );
        store.register(
            "blocks_cut",
            "Level-1 blocks cut from heads",
            metrics.blocks_cut.clone(),
        );
        store.register(
            "blocks_compacted",
            "Blocks merged away by compaction",
            metrics.blocks_compacted.clone(),
        );
        store.register(
            "blocks_deleted",
            "Blocks deleted by retention",
            metrics.blocks_deleted.clone(),
        );
        store.register(
            "blocks",
            "Blocks on disk, all tenants",
            metrics.blocks.clone(),
        );
        store.register(
            "block_bytes",
            "Bytes of all blocks on disk, all tenants",
            metrics.block_bytes.clone(),
        );
        store.register(
            "block_cache_hits",
            "Block postings lookups and series entries answered by the cache",
            metrics.block_cache_hits.clone(),
        );
        store.register(
            "block_cache_misses",
            "Block postings lookups and series entries read from the index",
            metrics.block_cache_misses.clone(),
        );
        store.register(
            "block_cache_bytes",
            "Approximate bytes held by the block cache",
            metrics.block_cache_bytes.clone(),
        );
        metrics
    }

    /// Metrics that are not exposed anywhere (tests, tools).
    pub fn unregistered() -> Self {
        StoreMetrics::new(&mut Registry::default())
    }

    pub(crate) fn observe_write(&self, outcome: &WriteOutcome, elapsed: Duration) {
        let response = &outcome.response;
        self.samples_appended.inc_by(response.samples_written);
        self.histograms_appended.inc_by(response.histograms_written);
        let rejected: u64 = response.rejected.iter().map(|r| r.rejected_samples).sum();
        self.samples_rejected.inc_by(rejected);
        self.head_series.inc_by(outcome.new_series as i64);
        self.write_duration.observe(elapsed.as_secs_f64());
    }
}
