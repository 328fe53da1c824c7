//! The query frontend: the layer between the Prometheus query API and the
//! queriers ([`QueryApi`]). Before any work it enforces the query limits;
//! then it splits range queries into step-aligned intervals
//! ([`split`]), answers finished intervals from the results cache
//! ([`cache`]), sends the rest through per-tenant fair queues ([`queue`])
//! to the queriers in parallel, retrying calls that failed for the
//! querier's sake, and merges the answers. One log line per query records
//! what it cost.
//!
//! The same layer runs in `--target all` (over the in-process engine) and
//! in a cluster (over the pool of remote queriers).

mod cache;
mod config;
mod metrics;
mod queue;
mod rendered;
mod shard;
mod split;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use prometheus_client::registry::Registry;
use strata_common::{ErrorClass, QueryApi, ServiceError};
use strata_proto::query::{QueryRequest, QueryResponse, query_response};

use bytes::Bytes;
use cache::{CacheKey, Extent, ResultsCache, Segment};
pub use config::{QueryFrontendConfig, TENANT_OVERRIDABLE_KEYS, max_queriers_for};
use config::{Settings, config_duration};
use metrics::Metrics;
use queue::FairQueue;
use rendered::RenderedCache;
pub(crate) use rendered::RenderedKey;
use split::Piece;

use crate::LimitOverrides;

/// What answering one query took: for the response header, `stats` and the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct QueryOutcome {
    /// Split intervals the query was cut into (1 when it ran whole).
    pub splits: usize,
    /// Extents answered from the results cache.
    pub cached: usize,
    /// Calls made to queriers (retries included).
    pub fetched: usize,
    /// Shards the query's aggregation was split into (0 when not sharded).
    pub shards: usize,
    /// Time spent waiting in the fair queue, summed over calls.
    pub queue_seconds: f64,
    /// Every point of the answer is in the results cache (answered from it
    /// or stored in it), so its rendering may be kept for the same request.
    pub whole_cached: bool,
}

impl QueryOutcome {
    /// The `X-Strata-Cache` header value: `hit` when everything came from
    /// the cache, `partial` when some did, `miss` otherwise.
    pub(crate) fn cache_status(&self) -> &'static str {
        match (self.cached, self.fetched) {
            (0, _) => "miss",
            (_, 0) => "hit",
            _ => "partial",
        }
    }
}

/// One query's settings (the tenant's) and tallies, shared by its parallel pieces.
#[derive(Debug)]
struct Tally {
    settings: Settings,
    cached: AtomicUsize,
    fetched: AtomicUsize,
    shards: AtomicUsize,
    queue_micros: AtomicU64,
    whole_cached: AtomicBool,
}

impl Tally {
    fn new(settings: Settings) -> Self {
        Tally {
            settings,
            cached: AtomicUsize::new(0),
            fetched: AtomicUsize::new(0),
            shards: AtomicUsize::new(0),
            queue_micros: AtomicU64::new(0),
            whole_cached: AtomicBool::new(false),
        }
    }
}

/// The name of the response header telling what came from the results cache.
pub const CACHE_HEADER: &str = "x-strata-cache";

/// Splitting, caching, fair queueing, retries and limits in front of a [`QueryApi`].
pub(crate) struct QueryFrontend {
    inner: Arc<dyn QueryApi>,
    settings: Settings,
    /// Tenants' overrides of the settings (from meta in a cluster).
    overrides: Arc<OnceLock<LimitOverrides>>,
    cache: Option<ResultsCache>,
    rendered: Option<RenderedCache>,
    queue: Arc<FairQueue>,
    running: Mutex<HashMap<String, usize>>,
    metrics: Metrics,
}

impl std::fmt::Debug for QueryFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryFrontend")
            .field("settings", &self.settings)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl QueryFrontend {
    /// A frontend over `inner`, configured by a validated `config`.
    #[cfg(test)]
    pub(crate) fn new(
        config: &QueryFrontendConfig,
        inner: Arc<dyn QueryApi>,
        registry: &mut Registry,
    ) -> Self {
        Self::with_overrides(config, inner, registry, Arc::default())
    }

    /// A frontend over `inner`, configured by a validated `config`, each
    /// tenant's settings overridden by what `overrides` (once set) says.
    pub(crate) fn with_overrides(
        config: &QueryFrontendConfig,
        inner: Arc<dyn QueryApi>,
        registry: &mut Registry,
        overrides: Arc<OnceLock<LimitOverrides>>,
    ) -> Self {
        let settings = Settings::new(config);
        let metrics = Metrics::new(registry);
        let ttl = Duration::from_millis(
            config_duration(&config.results_cache_ttl)
                .unwrap_or(86_400_000)
                .max(1)
                .unsigned_abs(),
        );
        let cache = (config.cache_results
            && settings.split_interval_ms > 0
            && config.results_cache_max_bytes > 0)
            .then(|| ResultsCache::new(config.results_cache_max_bytes, ttl));
        let rendered = (cache.is_some() && config.rendered_cache_max_bytes > 0)
            .then(|| RenderedCache::new(config.rendered_cache_max_bytes, ttl));
        QueryFrontend {
            inner,
            queue: FairQueue::new(config.max_concurrent, metrics.queued.clone()),
            settings,
            overrides,
            cache,
            rendered,
            running: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// `tenant`'s settings: the configured ones with its overrides.
    fn settings_for(&self, tenant: &str) -> Settings {
        match self.overrides.get().and_then(|lookup| lookup(tenant)) {
            Some(overrides) if !overrides.is_empty() => self.settings.with_overrides(&overrides),
            _ => self.settings.clone(),
        }
    }

    /// The key under which `request`'s rendered answer may be kept: when
    /// the rendered cache is on and the whole range is older than the
    /// tenant's freshness window (so nothing in it is ever recomputed).
    pub(crate) fn rendered_key(&self, request: &QueryRequest, now_ms: i64) -> Option<RenderedKey> {
        self.rendered.as_ref()?;
        let settings = self.settings_for(&request.tenant);
        let cutoff = now_ms.saturating_sub(settings.max_cache_freshness_ms);
        (request.end_ms <= cutoff).then(|| RenderedKey {
            tenant: request.tenant.clone(),
            query: request.query.clone(),
            start_ms: request.start_ms,
            end_ms: request.end_ms,
            step_ms: request.step_ms.max(0),
            lookback_delta_ms: request.lookback_delta_ms,
        })
    }

    /// The rendered answer kept for `key` (of `request`), after the same
    /// limits as any query; `None` when there is none.
    pub(crate) fn rendered(
        &self,
        key: &RenderedKey,
        request: &QueryRequest,
        now_ms: i64,
    ) -> Result<Option<Bytes>, ServiceError> {
        let Some(body) = self.rendered.as_ref().and_then(|cache| cache.get(key)) else {
            return Ok(None);
        };
        let started = Instant::now();
        self.metrics.queries.inc();
        self.check_limits(&self.settings_for(&request.tenant), request, now_ms)?;
        self.metrics.rendered_hits.inc();
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::info!(
            tenant = %request.tenant,
            query = %request.query,
            start_ms = request.start_ms,
            end_ms = request.end_ms,
            step_ms = request.step_ms,
            cache = "hit",
            rendered = true,
            bytes = body.len(),
            duration_ms,
            "query"
        );
        Ok(Some(body))
    }

    /// Keeps `body`, the rendered answer of the request `key` names.
    pub(crate) fn keep_rendered(&self, key: RenderedKey, body: Bytes) {
        if let Some(cache) = &self.rendered {
            cache.insert(key, body);
        }
    }

    /// Answers `request` (an instant query when `step_ms` is 0) as of `now_ms`.
    pub(crate) async fn query(
        &self,
        request: QueryRequest,
        now_ms: i64,
    ) -> Result<(QueryResponse, QueryOutcome), ServiceError> {
        let started = Instant::now();
        self.metrics.queries.inc();
        let settings = self.settings_for(&request.tenant);
        self.check_limits(&settings, &request, now_ms)?;
        let _running =
            self.start_running(&request.tenant, settings.max_concurrent_queries_per_tenant)?;
        // The request's own `timeout` can only shorten the frontend's.
        let timeout = match u64::try_from(request.timeout_ms) {
            Ok(ms) if ms > 0 => settings.timeout.min(Duration::from_millis(ms)),
            _ => settings.timeout,
        };
        let tally = Tally::new(settings);
        let result =
            match tokio::time::timeout(timeout, self.execute(&request, now_ms, &tally)).await {
                Ok(result) => result,
                Err(_) => Err(ServiceError::new(
                    ErrorClass::Timeout,
                    format!(
                        "query timed out in the query frontend after {}",
                        format_ms(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
                    ),
                )),
            };
        let (response, splits) = match result {
            Ok(answer) => answer,
            Err(error) => {
                self.log(&request, started, None, &error.message);
                return Err(error);
            }
        };
        let outcome = QueryOutcome {
            splits,
            cached: tally.cached.load(Ordering::Relaxed),
            fetched: tally.fetched.load(Ordering::Relaxed),
            shards: tally.shards.load(Ordering::Relaxed),
            queue_seconds: tally.queue_micros.load(Ordering::Relaxed) as f64 / 1e6,
            whole_cached: tally.whole_cached.load(Ordering::Relaxed),
        };
        self.log(&request, started, Some((&outcome, &response)), "");
        Ok((response, outcome))
    }

    /// Limits on the request itself, checked before any work.
    fn check_limits(
        &self,
        settings: &Settings,
        request: &QueryRequest,
        now_ms: i64,
    ) -> Result<(), ServiceError> {
        let length = request.end_ms.saturating_sub(request.start_ms);
        let max_length = settings.max_query_length_ms;
        if max_length > 0 && length > max_length {
            self.metrics.reject("max_query_length");
            return Err(ServiceError::bad_data(format!(
                "the query time range exceeds the limit (query length: {}, limit: {}; query_frontend.max_query_length)",
                format_ms(length),
                format_ms(max_length)
            )));
        }
        let lookback = now_ms.saturating_sub(request.start_ms);
        let max_lookback = settings.max_query_lookback_ms;
        if max_lookback > 0 && lookback > max_lookback {
            self.metrics.reject("max_query_lookback");
            return Err(ServiceError::bad_data(format!(
                "the query starts too far in the past ({} before now, limit: {}; query_frontend.max_query_lookback)",
                format_ms(lookback),
                format_ms(max_lookback)
            )));
        }
        Ok(())
    }

    /// Counts a running query of `tenant`, refusing it beyond the tenant's `limit` (0 = none).
    fn start_running(&self, tenant: &str, limit: usize) -> Result<RunningQuery<'_>, ServiceError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = running.entry(tenant.to_owned()).or_insert(0);
        if limit > 0 && *count >= limit {
            drop(running);
            self.metrics.reject("max_concurrent_queries_per_tenant");
            return Err(ServiceError::new(
                ErrorClass::RateLimited,
                format!(
                    "too many concurrent queries for tenant {tenant:?} (limit {limit}, query_frontend.max_concurrent_queries_per_tenant)"
                ),
            ));
        }
        *count += 1;
        Ok(RunningQuery {
            frontend: self,
            tenant: tenant.to_owned(),
        })
    }

    /// The answer and the number of split intervals it took.
    async fn execute(
        &self,
        request: &QueryRequest,
        now_ms: i64,
        tally: &Tally,
    ) -> Result<(QueryResponse, usize), ServiceError> {
        let interval = self.settings.split_interval_ms;
        if request.step_ms <= 0 {
            return Ok((self.instant(request, now_ms, tally).await?, 1));
        }
        if interval <= 0 {
            return Ok((self.fetch(request.clone(), tally).await?, 1));
        }
        let analysis = match split::analyze(&request.query) {
            Some(analysis) if !analysis.range_dependent => analysis,
            _ => return Ok((self.fetch(request.clone(), tally).await?, 1)),
        };
        let Some(pieces) =
            split::split(request.start_ms, request.end_ms, request.step_ms, interval)
        else {
            return Ok((self.fetch(request.clone(), tally).await?, 1));
        };
        let cacheable = !analysis.reads_ahead;
        let cutoff = now_ms.saturating_sub(tally.settings.max_cache_freshness_ms);
        let whole_cached = cacheable && self.cache.is_some() && request.end_ms <= cutoff;
        let query: Arc<str> = Arc::from(analysis.normalized);
        // At most `max_query_parallelism` intervals of one query in flight,
        // taken as they finish so that a refused one (a full queue) fails
        // the query at once instead of after the intervals before it.
        // (Boxed: a stream over borrowing futures is otherwise not provably `Send`.)
        type Answer<'a> =
            futures::future::BoxFuture<'a, Result<(usize, QueryResponse), ServiceError>>;
        let query = &query;
        let work: Vec<Answer<'_>> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                Box::pin(async move {
                    let answer = self
                        .answer_piece(request, piece, query, cacheable, now_ms, tally)
                        .await?;
                    Ok((i, answer))
                }) as Answer<'_>
            })
            .collect();
        let mut numbered: Vec<(usize, QueryResponse)> = futures::stream::iter(work)
            .buffer_unordered(tally.settings.max_query_parallelism)
            .try_collect()
            .await?;
        numbered.sort_unstable_by_key(|(i, _)| *i);
        let mut answers: Vec<QueryResponse> =
            numbered.into_iter().map(|(_, answer)| answer).collect();
        if answers.len() == 1 {
            tally.whole_cached.store(whole_cached, Ordering::Relaxed);
            return Ok((answers.pop().unwrap_or_default(), 1));
        }
        match split::merge(answers) {
            Some(merged) => {
                tally.whole_cached.store(whole_cached, Ordering::Relaxed);
                Ok((merged, pieces.len()))
            }
            None => Ok((self.fetch(request.clone(), tally).await?, 1)),
        }
    }

    /// An instant query, from the cache when its time is old enough.
    async fn instant(
        &self,
        request: &QueryRequest,
        now_ms: i64,
        tally: &Tally,
    ) -> Result<QueryResponse, ServiceError> {
        let cutoff = now_ms.saturating_sub(tally.settings.max_cache_freshness_ms);
        let analysis = split::analyze(&request.query).filter(|a| !a.reads_ahead);
        let (Some(cache), Some(analysis)) = (&self.cache, analysis) else {
            return self.fetch(request.clone(), tally).await;
        };
        if request.start_ms > cutoff {
            return self.fetch(request.clone(), tally).await;
        }
        let key = CacheKey {
            tenant: request.tenant.clone(),
            query: Arc::from(analysis.normalized),
            step_ms: 0,
            offset_ms: request.start_ms,
            lookback_delta_ms: request.lookback_delta_ms,
            interval_ms: 0,
            index: 0,
        };
        if let Some(cached) = cache.get_instant(&key) {
            tally.cached.fetch_add(1, Ordering::Relaxed);
            tally.whole_cached.store(true, Ordering::Relaxed);
            self.metrics.cache_hits.inc();
            return Ok(QueryResponse::clone(&cached));
        }
        self.metrics.cache_misses.inc();
        let response = self.fetch(request.clone(), tally).await?;
        cache.put_instant(key, request.start_ms, response.clone());
        tally.whole_cached.store(true, Ordering::Relaxed);
        Ok(response)
    }

    /// One split interval: what the cache holds plus what it does not.
    async fn answer_piece(
        &self,
        request: &QueryRequest,
        piece: &Piece,
        query: &Arc<str>,
        cacheable: bool,
        now_ms: i64,
        tally: &Tally,
    ) -> Result<QueryResponse, ServiceError> {
        let step = request.step_ms;
        let ranged = |start: i64, end: i64| QueryRequest {
            start_ms: start,
            end_ms: end,
            ..request.clone()
        };
        let Some(cache) = self.cache.as_ref().filter(|_| cacheable) else {
            return self.fetch(ranged(piece.start, piece.end), tally).await;
        };
        // The last grid point old enough to cache.
        let cutoff = now_ms.saturating_sub(tally.settings.max_cache_freshness_ms);
        if piece.start > cutoff {
            return self.fetch(ranged(piece.start, piece.end), tally).await;
        }
        let cacheable_end = (piece.start + (cutoff - piece.start) / step * step).min(piece.end);
        let key = CacheKey {
            tenant: request.tenant.clone(),
            query: Arc::clone(query),
            step_ms: step,
            offset_ms: request.start_ms.rem_euclid(step),
            lookback_delta_ms: request.lookback_delta_ms,
            interval_ms: self.settings.split_interval_ms,
            index: piece.index,
        };
        let segments = cache.lookup(&key, piece.start, cacheable_end, step);
        let cached = segments
            .iter()
            .filter(|s| matches!(s, Segment::Cached { .. }))
            .count();
        let missing = segments.len() - cached;
        tally.cached.fetch_add(cached, Ordering::Relaxed);
        self.metrics.cache_hits.inc_by(cached as u64);
        self.metrics.cache_misses.inc_by(missing as u64);

        // The recent part is fetched with the last missing extent when they
        // touch (one call), but only the old enough part is stored.
        let mut work: Vec<Work> = segments
            .into_iter()
            .map(|segment| match segment {
                Segment::Cached { extent, from, to } => Work::Cached { extent, from, to },
                Segment::Missing { from, to } => Work::Fetch {
                    from,
                    to,
                    store_to: Some(to),
                },
            })
            .collect();
        if cacheable_end < piece.end {
            match work.last_mut() {
                Some(Work::Fetch { to, .. }) if *to == cacheable_end => *to = piece.end,
                _ => work.push(Work::Fetch {
                    from: cacheable_end + step,
                    to: piece.end,
                    store_to: None,
                }),
            }
        }
        let mut parts = try_join_all(work.into_iter().map(|work| async {
            match work {
                Work::Cached { extent, from, to } => {
                    Ok::<_, ServiceError>(split::slice(&extent.response, from, to))
                }
                Work::Fetch { from, to, store_to } => {
                    let response = self.fetch(ranged(from, to), tally).await?;
                    if let Some(store_to) = store_to {
                        let stored = if store_to < to {
                            split::slice(&response, from, store_to)
                        } else {
                            response.clone()
                        };
                        cache.store(
                            key.clone(),
                            Extent {
                                start: from,
                                end: store_to,
                                response: Arc::new(stored),
                            },
                            step,
                        );
                    }
                    Ok(response)
                }
            }
        }))
        .await?;
        self.metrics
            .cache_bytes
            .set(i64::try_from(cache.weighted_size()).unwrap_or(i64::MAX));
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        split::merge(parts).ok_or_else(|| {
            ServiceError::internal(
                "a querier answered a range query with something other than a matrix",
            )
        })
    }

    /// The answer to `request` from the queriers: one call, or for a
    /// shardable range query one partial call per shard, in parallel, and
    /// their answers combined ([`shard`]).
    async fn fetch(
        &self,
        request: QueryRequest,
        tally: &Tally,
    ) -> Result<QueryResponse, ServiceError> {
        let plan = (request.step_ms > 0)
            .then(|| shard::plan(&request.query, self.settings.shard_count))
            .flatten();
        let Some(plan) = plan else {
            return self.fetch_one(request, tally).await;
        };
        let partials = try_join_all(plan.queries.iter().map(|query| {
            self.fetch_one(
                QueryRequest {
                    query: query.clone(),
                    ..request.clone()
                },
                tally,
            )
        }))
        .await?;
        match plan.combine(partials) {
            Some(combined) => {
                tally
                    .shards
                    .fetch_max(self.settings.shard_count, Ordering::Relaxed);
                self.metrics.sharded.inc();
                Ok(combined)
            }
            None => {
                tracing::debug!(
                    tenant = %request.tenant,
                    query = %request.query,
                    "sharded answers do not combine exactly, asking the query whole"
                );
                self.fetch_one(request, tally).await
            }
        }
    }

    /// One querier call through the tenant's queue, retried when the
    /// querier failed (not when the query did).
    async fn fetch_one(
        &self,
        request: QueryRequest,
        tally: &Tally,
    ) -> Result<QueryResponse, ServiceError> {
        let mut attempt = 0;
        loop {
            let waiting = Instant::now();
            let slot = self
                .queue
                .acquire(&request.tenant, tally.settings.max_outstanding_per_tenant)
                .await
                .map_err(|full| {
                    self.metrics.reject("max_outstanding_per_tenant");
                    ServiceError::new(ErrorClass::RateLimited, full.to_string())
                })?;
            tally.queue_micros.fetch_add(
                u64::try_from(waiting.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            tally.fetched.fetch_add(1, Ordering::Relaxed);
            self.metrics.subqueries.inc();
            let result = call(Arc::clone(&self.inner), request.clone()).await;
            drop(slot);
            match result {
                Err(error) if retryable(&error) && attempt < self.settings.max_retries => {
                    attempt += 1;
                    self.metrics.retries.inc();
                    tracing::warn!(
                        tenant = %request.tenant,
                        attempt,
                        error = %error.message,
                        "querier call failed, retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    fn log(
        &self,
        request: &QueryRequest,
        started: Instant,
        answered: Option<(&QueryOutcome, &QueryResponse)>,
        error: &str,
    ) {
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let (splits, shards, cache, cached, fetched, queue_ms, samples, series) = match answered {
            Some((outcome, response)) => (
                outcome.splits,
                outcome.shards,
                outcome.cache_status(),
                outcome.cached,
                outcome.fetched,
                outcome.queue_seconds * 1000.0,
                response.total_queryable_samples,
                series_count(response),
            ),
            None => (0, 0, "none", 0, 0, 0.0, 0, 0),
        };
        macro_rules! query_log {
            ($level:ident) => {
                tracing::$level!(
                    tenant = %request.tenant,
                    query = %request.query,
                    start_ms = request.start_ms,
                    end_ms = request.end_ms,
                    step_ms = request.step_ms,
                    splits,
                    shards,
                    cache,
                    cached,
                    fetched,
                    queue_ms,
                    duration_ms,
                    samples,
                    series,
                    error,
                    "query"
                )
            };
        }
        if elapsed >= self.settings.slow_query {
            query_log!(warn);
        } else {
            query_log!(info);
        }
    }
}

/// One part of a split interval's answer.
enum Work {
    /// Points `from..=to` of a cached extent.
    Cached { extent: Extent, from: i64, to: i64 },
    /// Points `from..=to` from a querier, `from..=store_to` of them to be cached.
    Fetch {
        from: i64,
        to: i64,
        store_to: Option<i64>,
    },
}

/// A tenant's running query, counted until dropped.
#[derive(Debug)]
struct RunningQuery<'a> {
    frontend: &'a QueryFrontend,
    tenant: String,
}

impl Drop for RunningQuery<'_> {
    fn drop(&mut self) {
        let mut running = self
            .frontend
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// Calls `inner` on a task of its own, so split intervals evaluate in
/// parallel even over the in-process engine; the task is aborted when the
/// caller goes away.
async fn call(
    inner: Arc<dyn QueryApi>,
    request: QueryRequest,
) -> Result<QueryResponse, ServiceError> {
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = tokio::spawn(async move { inner.query(request).await });
    let _abort = AbortOnDrop(task.abort_handle());
    task.await
        .map_err(|e| ServiceError::internal(format!("querier call failed: {e}")))?
}

/// Failures of the querier rather than of the query.
fn retryable(error: &ServiceError) -> bool {
    matches!(error.class, ErrorClass::Unavailable | ErrorClass::Internal)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(20 << attempt.min(5))
}

fn series_count(response: &QueryResponse) -> usize {
    match &response.result {
        Some(query_response::Result::Matrix(m)) => m.series.len(),
        Some(query_response::Result::Vector(v)) => v.samples.len(),
        _ => 0,
    }
}

/// Milliseconds as a Prometheus duration (`1d2h`, `90s` as `1m30s`, `0s`).
fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "0s".to_owned();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}
