//! The results cache: answers of range-query pieces, by tenant, query,
//! step, the step offset of the start, the lookback and the split interval.
//! An entry holds extents, the runs of grid points already answered inside
//! that interval, so a request overlapping them fetches only what is
//! missing. Bounded in bytes (a weigher estimates each entry's size) and in
//! age (a TTL).

use std::sync::Arc;
use std::time::Duration;

use strata_proto::query::{QueryResponse, query_response};

use super::split;

/// Everything an answer depends on besides the time range (for an
/// instant query: `step_ms` 0, the time as `offset_ms`, no interval). The tenant is
/// part of it, so one tenant's entries can never answer another's query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub tenant: String,
    pub query: Arc<str>,
    pub step_ms: i64,
    /// `start mod step`: which grid the points lie on.
    pub offset_ms: i64,
    pub lookback_delta_ms: i64,
    pub interval_ms: i64,
    /// Which interval of the time line (`floor(t / interval)`).
    pub index: i64,
}

/// An answer for the grid points `start..=end`.
#[derive(Debug, Clone)]
pub(crate) struct Extent {
    pub start: i64,
    pub end: i64,
    pub response: Arc<QueryResponse>,
}

/// What a request for `start..=end` gets from the cache: consecutive
/// segments in time order, each either an answer to slice or a range to fetch.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Cached { extent: Extent, from: i64, to: i64 },
    Missing { from: i64, to: i64 },
}

/// A size-bounded map from [`CacheKey`] to the extents answered so far.
#[derive(Clone)]
pub(crate) struct ResultsCache {
    entries: moka::sync::Cache<CacheKey, Arc<Vec<Extent>>>,
}

impl std::fmt::Debug for ResultsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl ResultsCache {
    /// A cache of at most about `max_bytes`, dropping entries `ttl` after they were written.
    pub(crate) fn new(max_bytes: u64, ttl: Duration) -> Self {
        ResultsCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &CacheKey, extents: &Arc<Vec<Extent>>| {
                    let bytes = key.tenant.len()
                        + key.query.len()
                        + 64
                        + extents.iter().map(|e| weight(&e.response)).sum::<usize>();
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Cuts `start..=end` (grid points every `step`) into what the cache
    /// holds and what must be fetched.
    pub(crate) fn lookup(&self, key: &CacheKey, start: i64, end: i64, step: i64) -> Vec<Segment> {
        let extents = self.entries.get(key).unwrap_or_default();
        let mut segments = Vec::new();
        let mut t = start;
        for extent in extents.iter() {
            if t > end || extent.start > end {
                break;
            }
            if extent.end < t {
                continue;
            }
            if extent.start > t {
                segments.push(Segment::Missing {
                    from: t,
                    to: extent.start - step,
                });
            }
            let from = t.max(extent.start);
            let to = extent.end.min(end);
            segments.push(Segment::Cached {
                extent: extent.clone(),
                from,
                to,
            });
            t = to + step;
        }
        if t <= end {
            segments.push(Segment::Missing { from: t, to: end });
        }
        segments
    }

    /// Records `new` (answered for `new.start..=new.end`): extents it
    /// overlaps or touches (one step apart) are merged with it into one.
    pub(crate) fn store(&self, key: CacheKey, new: Extent, step: i64) {
        let existing = self.entries.get(&key).unwrap_or_default();
        let mut kept = Vec::with_capacity(existing.len() + 1);
        let mut joined: Vec<Extent> = Vec::new();
        for extent in existing.iter() {
            let apart = extent.end.saturating_add(step) < new.start
                || new.end.saturating_add(step) < extent.start;
            if apart {
                kept.push(extent.clone());
            } else {
                joined.push(extent.clone());
            }
        }
        let (start, end) = joined.iter().fold((new.start, new.end), |(s, e), x| {
            (s.min(x.start), e.max(x.end))
        });
        // Old extents first for the points `new` does not cover; `new` wins where both do.
        joined.sort_by_key(|x| x.start);
        let response = if joined.is_empty() {
            new.response
        } else {
            let mut parts = Vec::new();
            for extent in &joined {
                if extent.start < new.start {
                    parts.push(split::slice(&extent.response, extent.start, new.start - 1));
                }
            }
            parts.push(QueryResponse::clone(&new.response));
            for extent in &joined {
                if extent.end > new.end {
                    parts.push(split::slice(&extent.response, new.end + 1, extent.end));
                }
            }
            match split::merge(parts) {
                Some(merged) => Arc::new(merged),
                None => return,
            }
        };
        kept.push(Extent {
            start,
            end,
            response,
        });
        kept.sort_by_key(|x| x.start);
        self.entries.insert(key, Arc::new(kept));
    }

    /// The whole answer stored under `key` for one time (instant queries).
    pub(crate) fn get_instant(&self, key: &CacheKey) -> Option<Arc<QueryResponse>> {
        let extents = self.entries.get(key)?;
        extents.first().map(|extent| Arc::clone(&extent.response))
    }

    /// Stores the answer of an instant query at `time`.
    pub(crate) fn put_instant(&self, key: CacheKey, time: i64, response: QueryResponse) {
        let extent = Extent {
            start: time,
            end: time,
            response: Arc::new(strip_stats(&response)),
        };
        self.entries.insert(key, Arc::new(vec![extent]));
    }

    /// Bytes the cache holds, by the weigher's estimate.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

fn strip_stats(response: &QueryResponse) -> QueryResponse {
    QueryResponse {
        total_queryable_samples: 0,
        peak_samples: 0,
        ..response.clone()
    }
}

/// A response's approximate size in memory.
fn weight(response: &QueryResponse) -> usize {
    let annotations: usize = response
        .warnings
        .iter()
        .chain(&response.infos)
        .map(String::len)
        .sum();
    let series = match &response.result {
        Some(query_response::Result::Matrix(m)) => m
            .series
            .iter()
            .map(|s| {
                48 + s.timestamps_ms.len() * 16
                    + s.labels
                        .iter()
                        .map(|l| l.name.len() + l.value.len() + 48)
                        .sum::<usize>()
            })
            .sum(),
        Some(query_response::Result::Vector(v)) => v
            .samples
            .iter()
            .map(|s| {
                64 + s
                    .labels
                    .iter()
                    .map(|l| l.name.len() + l.value.len() + 48)
                    .sum::<usize>()
            })
            .sum(),
        Some(query_response::Result::String(s)) => s.value.len(),
        _ => 0,
    };
    64 + annotations + series
}
