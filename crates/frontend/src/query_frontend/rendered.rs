//! Rendered answers of whole requests: the JSON bytes of an answer that
//! lies entirely in the results cache, kept per exact request so that
//! asking it again costs a lookup instead of slicing, merging and
//! rendering every point again (a 200-series, 2016-step panel is 400k
//! points of JSON). Only requests whose whole range is older than the
//! freshness window get here (nothing in them is recomputed), without
//! `stats` (whose timings differ per request). The tenant is part of the
//! key, so one tenant's answers never serve another.

use std::time::Duration;

use bytes::Bytes;

/// Everything a rendered answer depends on: the request as asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RenderedKey {
    pub tenant: String,
    /// The query text as sent (an exact request, not a normalized one).
    pub query: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// 0 for an instant query.
    pub step_ms: i64,
    pub lookback_delta_ms: i64,
}

/// A byte-bounded map from [`RenderedKey`] to the response body.
#[derive(Clone)]
pub(crate) struct RenderedCache {
    entries: moka::sync::Cache<RenderedKey, Bytes>,
}

impl std::fmt::Debug for RenderedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl RenderedCache {
    /// At most about `max_bytes` of bodies, each dropped `ttl` after it was written.
    pub(crate) fn new(max_bytes: u64, ttl: Duration) -> Self {
        RenderedCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &RenderedKey, body: &Bytes| {
                    u32::try_from(key.tenant.len() + key.query.len() + 96 + body.len())
                        .unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(crate) fn get(&self, key: &RenderedKey) -> Option<Bytes> {
        self.entries.get(key)
    }

    pub(crate) fn insert(&self, key: RenderedKey, body: Bytes) {
        self.entries.insert(key, body);
    }
}
