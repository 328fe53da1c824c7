//! The query frontend's configuration and its parsed form.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_common::duration::parse_duration_ms;

/// How the query frontend splits, caches, queues and limits queries.
/// Durations are Prometheus durations (`24h`, `10m`, `0s`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryFrontendConfig {
    /// Range queries are split into intervals of this length (aligned to
    /// multiples of it) evaluated in parallel; `0s` disables splitting and
    /// with it the results cache.
    pub split_queries_by_interval: String,
    /// Whether answers of split intervals are cached.
    pub cache_results: bool,
    /// Memory the results cache may use, in bytes (estimated).
    pub results_cache_max_bytes: u64,
    /// Memory for rendered answers (the JSON bytes) of whole requests
    /// answered entirely from the results cache, served again as they are
    /// to the same request; 0 = off.
    pub rendered_cache_max_bytes: u64,
    /// How long a cached answer is kept.
    pub results_cache_ttl: String,
    /// Answers for times more recent than this before now are never cached
    /// (samples may still arrive for them).
    pub max_cache_freshness: String,
    /// Querier calls in flight at once, all tenants together.
    pub max_concurrent: usize,
    /// Split intervals of one query evaluated at once (the rest wait their turn).
    pub max_query_parallelism: usize,
    /// Querier calls one tenant may have waiting in its queue; more get 429 (0 = no limit).
    pub max_outstanding_per_tenant: usize,
    /// Queries one tenant may run at once; more get 429 (0 = no limit).
    pub max_concurrent_queries_per_tenant: usize,
    /// Retries of a querier call that failed as unavailable or internal.
    pub max_retries: u32,
    /// Longest a query may take in the frontend, splits, queueing and retries included.
    pub timeout: String,
    /// Longest range (end − start) a query may ask for; `0s` = no limit.
    pub max_query_length: String,
    /// How far before now a query's start may be; `0s` = no limit.
    pub max_query_lookback: String,
    /// Queries slower than this are logged at warn (others at info); `0s` logs all at warn.
    pub log_queries_longer_than: String,
    /// Shards a shardable range query's aggregation is split into (a
    /// partial query per shard, combined in the frontend); 0 or 1 = off.
    pub shard_count: usize,
    /// Queriers one tenant's queries may go to: a stable subset chosen by
    /// hashing the tenant (shuffle sharding); 0 = all.
    pub max_queriers_per_tenant: usize,
}

impl Default for QueryFrontendConfig {
    fn default() -> Self {
        QueryFrontendConfig {
            split_queries_by_interval: "24h".to_owned(),
            cache_results: true,
            results_cache_max_bytes: 256 << 20,
            rendered_cache_max_bytes: 64 << 20,
            results_cache_ttl: "24h".to_owned(),
            max_cache_freshness: "10m".to_owned(),
            max_concurrent: 16,
            max_query_parallelism: 14,
            max_outstanding_per_tenant: 2048,
            max_concurrent_queries_per_tenant: 64,
            max_retries: 3,
            timeout: "2m".to_owned(),
            max_query_length: "0s".to_owned(),
            max_query_lookback: "0s".to_owned(),
            log_queries_longer_than: "10s".to_owned(),
            shard_count: 0,
            max_queriers_per_tenant: 0,
        }
    }
}

/// The most shards one query may be split into.
pub(super) const MAX_SHARD_COUNT: usize = 128;

/// A configuration duration in ms: a Prometheus duration or a bare `0`.
pub(super) fn config_duration(text: &str) -> Option<i64> {
    if text == "0" {
        return Some(0);
    }
    parse_duration_ms(text)
}

impl QueryFrontendConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            (
                "query_frontend.split_queries_by_interval",
                &self.split_queries_by_interval,
            ),
            (
                "query_frontend.max_cache_freshness",
                &self.max_cache_freshness,
            ),
            ("query_frontend.max_query_length", &self.max_query_length),
            (
                "query_frontend.max_query_lookback",
                &self.max_query_lookback,
            ),
            (
                "query_frontend.log_queries_longer_than",
                &self.log_queries_longer_than,
            ),
        ] {
            config_duration(value).ok_or_else(|| format!("{key}: invalid duration {value:?}"))?;
        }
        for (key, value) in [
            ("query_frontend.results_cache_ttl", &self.results_cache_ttl),
            ("query_frontend.timeout", &self.timeout),
        ] {
            config_duration(value)
                .filter(|&ms| ms > 0)
                .ok_or_else(|| format!("{key}: invalid duration {value:?} (must be positive)"))?;
        }
        if self.max_concurrent == 0 {
            return Err("query_frontend.max_concurrent must be greater than 0".to_owned());
        }
        if self.shard_count > MAX_SHARD_COUNT {
            return Err(format!(
                "query_frontend.shard_count must be at most {MAX_SHARD_COUNT}"
            ));
        }
        if self.max_query_parallelism == 0 {
            return Err("query_frontend.max_query_parallelism must be greater than 0".to_owned());
        }
        Ok(())
    }
}

/// The configuration with durations parsed (ms).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) split_interval_ms: i64,
    pub(super) max_cache_freshness_ms: i64,
    pub(super) max_concurrent_queries_per_tenant: usize,
    pub(super) max_outstanding_per_tenant: usize,
    pub(super) max_queriers_per_tenant: usize,
    pub(super) max_query_parallelism: usize,
    pub(super) max_retries: u32,
    pub(super) timeout: Duration,
    pub(super) max_query_length_ms: i64,
    pub(super) max_query_lookback_ms: i64,
    pub(super) slow_query: Duration,
    pub(super) shard_count: usize,
}

impl Settings {
    pub(super) fn new(config: &QueryFrontendConfig) -> Self {
        let defaults = QueryFrontendConfig::default();
        let ms = |text: &str, default: &str| {
            config_duration(text)
                .or_else(|| config_duration(default))
                .unwrap_or(0)
        };
        let millis = |ms: i64| Duration::from_millis(ms.max(0).unsigned_abs());
        Settings {
            split_interval_ms: ms(
                &config.split_queries_by_interval,
                &defaults.split_queries_by_interval,
            ),
            max_cache_freshness_ms: ms(&config.max_cache_freshness, &defaults.max_cache_freshness),
            max_concurrent_queries_per_tenant: config.max_concurrent_queries_per_tenant,
            max_outstanding_per_tenant: config.max_outstanding_per_tenant,
            max_queriers_per_tenant: config.max_queriers_per_tenant,
            max_query_parallelism: config.max_query_parallelism.max(1),
            max_retries: config.max_retries,
            timeout: millis(ms(&config.timeout, &defaults.timeout)),
            max_query_length_ms: ms(&config.max_query_length, "0s"),
            max_query_lookback_ms: ms(&config.max_query_lookback, "0s"),
            slow_query: millis(ms(
                &config.log_queries_longer_than,
                &defaults.log_queries_longer_than,
            )),
            shard_count: config.shard_count,
        }
    }
}

/// The `query_frontend.*` keys a tenant's limit overrides may set (by the
/// key's name without the section, as for `limits.*`).
pub const TENANT_OVERRIDABLE_KEYS: &[&str] = &[
    "max_query_length",
    "max_query_lookback",
    "max_cache_freshness",
    "max_query_parallelism",
    "max_outstanding_per_tenant",
    "max_concurrent_queries_per_tenant",
    "max_queriers_per_tenant",
    "timeout",
];

impl Settings {
    /// These settings with a tenant's overrides of the keys in
    /// [`TENANT_OVERRIDABLE_KEYS`]; other keys are not ours and are
    /// skipped, values that do not parse are logged and skipped.
    pub(super) fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Settings {
        let mut settings = self.clone();
        for (key, value) in overrides {
            let applied = match key.as_str() {
                "max_query_length" => set_ms(&mut settings.max_query_length_ms, value, 0),
                "max_query_lookback" => set_ms(&mut settings.max_query_lookback_ms, value, 0),
                "max_cache_freshness" => set_ms(&mut settings.max_cache_freshness_ms, value, 0),
                "timeout" => {
                    let mut ms = 0;
                    let ok = set_ms(&mut ms, value, 1);
                    if ok {
                        settings.timeout = Duration::from_millis(ms.unsigned_abs());
                    }
                    ok
                }
                "max_query_parallelism" => {
                    let ok = set_count(&mut settings.max_query_parallelism, value);
                    settings.max_query_parallelism = settings.max_query_parallelism.max(1);
                    ok
                }
                "max_outstanding_per_tenant" => {
                    set_count(&mut settings.max_outstanding_per_tenant, value)
                }
                "max_concurrent_queries_per_tenant" => {
                    set_count(&mut settings.max_concurrent_queries_per_tenant, value)
                }
                "max_queriers_per_tenant" => {
                    set_count(&mut settings.max_queriers_per_tenant, value)
                }
                _ => true,
            };
            if !applied {
                tracing::warn!(%key, %value, "tenant query frontend override does not parse, ignored");
            }
        }
        settings
    }
}

/// Sets `slot` to the duration `value` (ms) when it parses and is at least `min`.
fn set_ms(slot: &mut i64, value: &str, min: i64) -> bool {
    match config_duration(value) {
        Some(ms) if ms >= min => {
            *slot = ms;
            true
        }
        _ => false,
    }
}

fn set_count(slot: &mut usize, value: &str) -> bool {
    match value.parse::<usize>() {
        Ok(count) => {
            *slot = count;
            true
        }
        Err(_) => false,
    }
}

/// `tenant`'s querier subset size: `max_queriers_per_tenant` of `config`
/// or of the tenant's overrides (0 = all queriers).
pub fn max_queriers_for(
    config: &QueryFrontendConfig,
    overrides: Option<&BTreeMap<String, String>>,
) -> usize {
    overrides
        .and_then(|o| o.get("max_queriers_per_tenant"))
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(config.max_queriers_per_tenant)
}
