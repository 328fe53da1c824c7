//! The querier role in-process: PromQL evaluation ([`strata_querier::Engine`])
//! over the store service, offered to the frontend as a [`QueryApi`].
//! (A gRPC querier service for the cluster comes with the cluster roles.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_common::{ErrorClass, Matcher, QueryApi, ServiceError, StoreApi};
use strata_proto::prometheus::Label;
use strata_proto::query::{
    Matrix, PromSample, PromSeries, QueryRequest, QueryResponse, Scalar, StringValue, Vector,
    query_response,
};
use strata_proto::store::SelectRequest;
use strata_querier::{Engine, EngineOptions, QueryError, QueryShard, Queryable, SeriesData, Value};

/// Evaluates queries for the frontend, reading through `store`.
#[derive(Clone)]
pub struct LocalQuerier {
    engine: Engine,
    store: Arc<dyn StoreApi>,
    /// Most series one query may load; 0: no limit.
    max_series: u64,
}

impl std::fmt::Debug for LocalQuerier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQuerier")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl LocalQuerier {
    pub fn new(options: EngineOptions, store: Arc<dyn StoreApi>, max_series: u64) -> Self {
        LocalQuerier {
            engine: Engine::new(options),
            store,
            max_series,
        }
    }

    /// The engine for one request: its own lookback and timeout if it set them.
    fn engine_for(&self, request: &QueryRequest) -> Engine {
        let mut options = self.engine.options().clone();
        if request.lookback_delta_ms > 0 {
            options.lookback_delta_ms = request.lookback_delta_ms;
        }
        if request.timeout_ms > 0 {
            let requested = Duration::from_millis(request.timeout_ms.unsigned_abs());
            options.timeout = options.timeout.min(requested);
        }
        Engine::new(options)
    }
}

/// One tenant's view of the store, as the engine reads it.
struct TenantStore<'a> {
    store: &'a dyn StoreApi,
    tenant: &'a str,
    /// Samples loaded by the query's selectors (for `stats`).
    loaded: std::sync::atomic::AtomicU64,
    /// Series loaded by the query's selectors, against `max_series`.
    series: std::sync::atomic::AtomicU64,
    /// 0: no limit.
    max_series: u64,
}

#[async_trait]
impl Queryable for TenantStore<'_> {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        self.select_where(matchers, start_ms, end_ms, |_| true)
            .await
    }

    async fn select_shard(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        shard: &QueryShard,
    ) -> Result<Vec<SeriesData>, QueryError> {
        self.select_where(matchers, start_ms, end_ms, |labels| shard.contains(labels))
            .await
    }
}

impl TenantStore<'_> {
    /// The selected series `keep` accepts, decoded (the others are not).
    async fn select_where(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        keep: impl Fn(&[Label]) -> bool,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let selected = self
            .store
            .select(SelectRequest {
                tenant: self.tenant.to_owned(),
                matchers: matchers.iter().map(Matcher::to_proto).collect(),
                start_ms,
                end_ms,
            })
            .await
            .map_err(|e| match e.class {
                ErrorClass::Unavailable | ErrorClass::Timeout => QueryError::Unavailable(e.message),
                _ => QueryError::Storage(e.message),
            })?;
        let kept: Vec<_> = selected.into_iter().filter(|s| keep(&s.labels)).collect();
        let series_so_far = self
            .series
            .fetch_add(kept.len() as u64, std::sync::atomic::Ordering::Relaxed)
            + kept.len() as u64;
        if self.max_series > 0 && series_so_far > self.max_series {
            return Err(QueryError::Execution(format!(
                "the query would load more than {} series (querier.max_series)",
                self.max_series
            )));
        }
        let mut out = Vec::with_capacity(kept.len());
        for series in kept {
            let mut floats = Vec::new();
            for chunk in &series.chunks {
                strata_common::compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut floats)
                    .map_err(|e| QueryError::Storage(format!("corrupt chunk: {e}")))?;
            }
            self.loaded
                .fetch_add(floats.len() as u64, std::sync::atomic::Ordering::Relaxed);
            out.push(SeriesData {
                labels: series.labels,
                floats,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl QueryApi for LocalQuerier {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        let engine = self.engine_for(&request);
        let store = TenantStore {
            store: self.store.as_ref(),
            tenant: &request.tenant,
            loaded: std::sync::atomic::AtomicU64::new(0),
            series: std::sync::atomic::AtomicU64::new(0),
            max_series: self.max_series,
        };
        let output = if request.step_ms == 0 {
            engine
                .instant(&store, &request.query, request.start_ms)
                .await
        } else {
            engine
                .range(
                    &store,
                    &request.query,
                    request.start_ms,
                    request.end_ms,
                    request.step_ms,
                )
                .await
        };
        let loaded = store.loaded.load(std::sync::atomic::Ordering::Relaxed);
        let output = output.map_err(|error| {
            let message = match &error {
                QueryError::Parse { .. } => format!("invalid parameter \"query\": {error}"),
                _ => error.to_string(),
            };
            ServiceError::new(error.class(), message)
        })?;
        Ok(QueryResponse {
            result: Some(to_wire(output.value)),
            warnings: output.warnings,
            infos: output.infos,
            total_queryable_samples: loaded,
            // Every selector's samples are held at once during evaluation.
            peak_samples: loaded,
        })
    }
}

fn to_wire(value: Value) -> query_response::Result {
    match value {
        Value::Scalar { t, v } => query_response::Result::Scalar(Scalar {
            timestamp_ms: t,
            value: v,
        }),
        Value::String { t, v } => query_response::Result::String(StringValue {
            timestamp_ms: t,
            value: v,
        }),
        Value::Vector(samples) => query_response::Result::Vector(Vector {
            samples: samples
                .into_iter()
                .map(|s| PromSample {
                    labels: s.labels,
                    timestamp_ms: s.t,
                    value: s.v,
                })
                .collect(),
        }),
        Value::Matrix(series) => query_response::Result::Matrix(Matrix {
            series: series
                .into_iter()
                .map(|s| {
                    let (timestamps_ms, values) = s.points.into_iter().unzip();
                    PromSeries {
                        labels: s.labels,
                        timestamps_ms,
                        values,
                    }
                })
                .collect(),
        }),
    }
}
