//! A cache of series, label-name and label-value answers whose time range
//! ended before the freshness window (`query_frontend.max_cache_freshness`):
//! Grafana asks the same template-variable queries on every dashboard load.
//! Keys start with the tenant, so one tenant's answers never serve another.
//! Ranges reaching into the freshness window (and open-ended ones) are
//! never cached: samples may still arrive for them.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::Value;
use strata_common::duration::parse_duration_ms;

use crate::QueryFrontendConfig;

/// A cached answer: its JSON `data` and whether a limit cut it.
#[derive(Debug, Clone)]
pub(crate) struct CachedRead {
    pub(crate) data: Value,
    pub(crate) truncated: bool,
    /// Bytes of `data` as JSON, for the cache's weigher.
    bytes: usize,
}

impl CachedRead {
    pub(crate) fn new(data: Value, truncated: bool) -> Self {
        let bytes = data.to_string().len();
        CachedRead {
            data,
            truncated,
            bytes,
        }
    }

    fn weight(&self) -> u32 {
        u32::try_from(self.bytes + 64).unwrap_or(u32::MAX)
    }
}

/// Series and label answers by tenant and request.
#[derive(Clone)]
pub(crate) struct ReadCache {
    cache: Option<Cache<String, Arc<CachedRead>>>,
    freshness_ms: i64,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("enabled", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl ReadCache {
    /// A quarter of the results cache's bytes, its TTL and freshness; off
    /// when the results cache is.
    pub(crate) fn new(config: &QueryFrontendConfig, registry: &mut Registry) -> Self {
        let ttl = parse_duration_ms(&config.results_cache_ttl).unwrap_or(86_400_000);
        let enabled = config.cache_results && config.results_cache_max_bytes > 0 && ttl > 0;
        let cache = enabled.then(|| {
            Cache::builder()
                .max_capacity(config.results_cache_max_bytes / 4)
                .weigher(|_key: &String, value: &Arc<CachedRead>| value.weight())
                .time_to_live(Duration::from_millis(ttl.unsigned_abs()))
                .build()
        });
        let hits = Counter::default();
        let misses = Counter::default();
        registry.register(
            "strata_frontend_label_cache_hits",
            "Series, label-name and label-value requests answered from the cache",
            hits.clone(),
        );
        registry.register(
            "strata_frontend_label_cache_misses",
            "Cacheable series, label-name and label-value requests that went to storage",
            misses.clone(),
        );
        ReadCache {
            cache,
            freshness_ms: parse_duration_ms(&config.max_cache_freshness).unwrap_or(600_000),
            hits,
            misses,
        }
    }

    /// The cache key of a request ending at `end_ms`, or `None` when its
    /// answer may still change (the range reaches the freshness window).
    /// `request` describes the request; it is only built when cacheable.
    pub(crate) fn key(
        &self,
        tenant: &str,
        request: impl FnOnce() -> String,
        end_ms: i64,
        now_ms: i64,
    ) -> Option<String> {
        self.cache.as_ref()?;
        (end_ms < now_ms.saturating_sub(self.freshness_ms))
            .then(|| format!("{tenant}\u{0}{}", request()))
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<CachedRead>> {
        let found = self.cache.as_ref()?.get(key);
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        found
    }

    pub(crate) fn insert(&self, key: String, value: CachedRead) {
        if let Some(cache) = &self.cache {
            cache.insert(key, Arc::new(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_ranges_are_cacheable_and_tenants_never_share() {
        let cache = ReadCache::new(&QueryFrontendConfig::default(), &mut Registry::default());
        let now = 10_000_000_000;
        assert!(
            cache
                .key("a", || "labels".to_owned(), now - 60_000, now)
                .is_none(),
            "fresh"
        );
        assert!(
            cache
                .key("a", || "labels".to_owned(), i64::MAX, now)
                .is_none(),
            "open-ended"
        );
        let a = cache
            .key("a", || "labels".to_owned(), now - 3_600_000, now)
            .expect("old");
        let b = cache
            .key("b", || "labels".to_owned(), now - 3_600_000, now)
            .expect("old");
        assert_ne!(a, b);
        cache.insert(
            a.clone(),
            CachedRead::new(serde_json::json!(["job"]), false),
        );
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none());
        let off = ReadCache::new(
            &QueryFrontendConfig {
                cache_results: false,
                ..QueryFrontendConfig::default()
            },
            &mut Registry::default(),
        );
        assert!(
            off.key("a", || "labels".to_owned(), now - 3_600_000, now)
                .is_none()
        );
    }
}
