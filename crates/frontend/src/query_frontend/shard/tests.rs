//! Query sharding: which shapes are sharded, and a differential test over
//! the real PromQL engine that the combined shards equal the unsharded
//! answer, through the frontend and without it.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use strata_common::labels::label;
use strata_common::{QueryApi, ServiceError};
use strata_proto::query::{Matrix, PromSeries, QueryRequest, QueryResponse, query_response};
use strata_querier::{Engine, EngineOptions, MemoryQueryable, Value};

use super::*;
use crate::query_frontend::{QueryFrontend, QueryFrontendConfig};

#[test]
fn whitelisted_shapes_are_sharded() {
    for query in [
        "sum(x)",
        "sum by (job) (rate(x[5m]))",
        "(count without (instance) (x > 2))",
        "min by (job) (abs(x offset 5m) * -2)",
        "max(max_over_time(rate(x[5m])[30m:1m]))",
        "group by (job) (x)",
        "avg by (job) (clamp(x, 0, 10))",
        "sum(quantile_over_time(0.9, x[10m]))",
        "sum(2 ^ x @ 100)",
    ] {
        let plan = plan(query, 3).unwrap_or_else(|| panic!("{query} is not sharded"));
        let per_shard = if query.starts_with("avg") { 2 } else { 1 };
        assert_eq!(plan.queries.len(), 3 * per_shard, "{query}");
        for (i, partial) in plan.queries.iter().enumerate() {
            let shard = format!("__query_shard__=\"{}_of_3\"", i % 3 + 1);
            assert!(partial.contains(&shard), "{partial}");
        }
    }
    let avg = plan("avg by (job) (x)", 2).expect("sharded");
    assert!(
        avg.queries[0].starts_with("sum by (job)"),
        "{:?}",
        avg.queries
    );
    assert!(
        avg.queries[3].starts_with("count by (job)"),
        "{:?}",
        avg.queries
    );
}

#[test]
fn other_shapes_run_whole() {
    for query in [
        "x",
        "rate(x[5m])",
        "sum(x) * 2",
        "topk(3, x)",
        "bottomk by (job) (1, x)",
        "quantile(0.5, x)",
        "stddev(x)",
        "count_values(\"v\", x)",
        "sum(sum by (job) (x))",
        "sum(x + y)",
        "sum(x and y)",
        "sum({job=\"a\"})",
        "sum(rate({job=\"a\"}[5m]))",
        "sum(label_replace(x, \"a\", \"b\", \"c\", \"d\"))",
        "sum(absent(x))",
        "sum(vector(1))",
        "sum(x * time())",
        "sum(x{__query_shard__=\"1_of_2\"})",
        "sum(",
    ] {
        assert_eq!(plan(query, 4), None, "{query}");
    }
    assert_eq!(plan("sum(x)", 1), None);
    assert_eq!(plan("sum(x)", 0), None);
}

/// The real engine over fixed data, as a querier.
struct EngineApi {
    engine: Engine,
    data: MemoryQueryable,
}

#[async_trait]
impl QueryApi for EngineApi {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        let output = self
            .engine
            .range(
                &self.data,
                &request.query,
                request.start_ms,
                request.end_ms,
                request.step_ms,
            )
            .await
            .map_err(|e| ServiceError::new(e.class(), e.to_string()))?;
        let series = match output.value {
            Value::Matrix(series) => series
                .into_iter()
                .map(|s| PromSeries {
                    labels: s.labels,
                    timestamps_ms: s.points.iter().map(|p| p.0).collect(),
                    values: s.points.iter().map(|p| p.1).collect(),
                })
                .collect(),
            other => panic!("a range query answered {other:?}"),
        };
        Ok(QueryResponse {
            result: Some(query_response::Result::Matrix(Matrix { series })),
            warnings: output.warnings,
            infos: output.infos,
            ..Default::default()
        })
    }
}

const STEP: i64 = 60_000;

/// Series of `x` (and a decoy `y`): each has a job, is present in a
/// window of the time line only, and holds counters, negatives, NaN or ±Inf.
fn data(series: &[(u8, u8, u8, u8, u8)]) -> MemoryQueryable {
    let mut q = MemoryQueryable::new();
    for (k, &(job, from, len, kind, seed)) in series.iter().enumerate() {
        let name = if kind == 7 { "y" } else { "x" };
        let labels = vec![
            label("__name__", name),
            label("instance", &format!("i{k}")),
            label("job", ["a", "b", "c"][usize::from(job % 3)]),
        ];
        let samples: Vec<(i64, f64)> = (i64::from(from)..i64::from(from) + i64::from(len))
            .map(|m| {
                let v = match kind {
                    0 => f64::NAN,
                    1 if m % 5 == 0 => f64::INFINITY,
                    2 => -(m as f64) * f64::from(seed),
                    3 => f64::from(seed % 4),
                    _ => (m * i64::from(seed)) as f64 + 0.25,
                };
                (m * 30_000, v)
            })
            .collect();
        q.add(labels, &samples);
    }
    q
}

/// A matrix as label sets and their points.
type Points = Vec<(Vec<Label>, Vec<(i64, f64)>)>;

/// The answer's matrix.
fn points(response: &QueryResponse) -> Points {
    match &response.result {
        Some(query_response::Result::Matrix(m)) => m
            .series
            .iter()
            .map(|s| {
                let p = s
                    .timestamps_ms
                    .iter()
                    .copied()
                    .zip(s.values.iter().copied());
                (s.labels.clone(), p.collect())
            })
            .collect(),
        other => panic!("not a matrix: {other:?}"),
    }
}

/// Equal up to the rounding of a different summation order.
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

const QUERIES: &[&str] = &[
    "sum(x)",
    "sum by (job) (rate(x[5m]))",
    "sum without (instance) (x)",
    "count by (job) (x > 1)",
    "count(x)",
    "min by (job) (x)",
    "max by (job) (x)",
    "max without (instance, job) (x * -1)",
    "min(irate(x[3m]))",
    "group by (job) (x)",
    "avg by (job) (x)",
    "avg(delta(x[4m]))",
    "sum by (job) (max_over_time(x[10m:1m]))",
    "sum by (job) (x offset 3m)",
    "max by (job) (x >= bool 3)",
    "sum by (job) (clamp_min(x, 2))",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn sharded_answers_equal_unsharded_answers(
        series in proptest::collection::vec((0u8..3, 0u8..60, 1u8..60, 0u8..8, 1u8..50), 1..24),
        shards in 2usize..6,
        start in 0i64..40,
        length in 0i64..60,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let api = Arc::new(EngineApi {
            engine: Engine::new(EngineOptions::default()),
            data: data(&series),
        });
        let config = QueryFrontendConfig {
            split_queries_by_interval: "0s".to_owned(),
            shard_count: shards,
            ..QueryFrontendConfig::default()
        };
        let frontend = QueryFrontend::new(&config, api.clone(), &mut Registry::default());
        for query in QUERIES {
            let request = QueryRequest {
                tenant: "t".to_owned(),
                query: (*query).to_owned(),
                start_ms: start * STEP,
                end_ms: (start + length) * STEP,
                step_ms: STEP,
                ..Default::default()
            };
            let whole = runtime.block_on(api.query(request.clone())).expect("whole");
            let (sharded, outcome) = runtime.block_on(frontend.query(request, i64::MAX / 2)).expect("sharded");
            // `avg` over NaN or ±Inf is asked whole (see `Acc::inexact`).
            let finite = series.iter().all(|s| s.3 > 1);
            if finite || !query.starts_with("avg") {
                prop_assert_eq!(outcome.shards, shards, "{}", query);
            }
            let (a, b) = (points(&sharded), points(&whole));
            prop_assert_eq!(a.len(), b.len(), "{}: {:?}\nvs {:?}", query, a, b);
            for ((la, pa), (lb, pb)) in a.iter().zip(&b) {
                prop_assert_eq!(la, lb, "{}", query);
                prop_assert_eq!(pa.len(), pb.len(), "{}: {:?} vs {:?}", query, pa, pb);
                for (p, q) in pa.iter().zip(pb) {
                    prop_assert!(p.0 == q.0 && same(p.1, q.1), "{}: {:?} vs {:?}", query, pa, pb);
                }
            }
            let (mut wa, mut wb) = (sharded.warnings.clone(), whole.warnings.clone());
            wa.sort();
            wb.sort();
            prop_assert_eq!(wa, wb, "{}", query);
        }
    }
}

#[test]
fn avg_with_an_overflowing_sum_is_asked_whole() {
    let plan = plan("avg(x)", 2).expect("sharded");
    let matrix = |v: f64| QueryResponse {
        result: Some(query_response::Result::Matrix(Matrix {
            series: vec![PromSeries {
                labels: Vec::new(),
                timestamps_ms: vec![0],
                values: vec![v],
            }],
        })),
        ..Default::default()
    };
    let combined = plan
        .combine(vec![matrix(1.0), matrix(3.0), matrix(1.0), matrix(1.0)])
        .expect("combines");
    assert_eq!(points(&combined), vec![(Vec::new(), vec![(0, 2.0)])]);
    let huge = vec![matrix(f64::MAX), matrix(f64::MAX), matrix(1.0), matrix(1.0)];
    assert_eq!(plan.combine(huge), None);
}

#[test]
fn min_and_max_ignore_nan_unless_all_are_nan() {
    let matrix = |values: &[f64]| QueryResponse {
        result: Some(query_response::Result::Matrix(Matrix {
            series: vec![PromSeries {
                labels: vec![label("job", "a")],
                timestamps_ms: (0..values.len() as i64).collect(),
                values: values.to_vec(),
            }],
        })),
        ..Default::default()
    };
    let nan = f64::NAN;
    let min = plan("min by (job) (x)", 2).expect("sharded");
    let combined = min
        .combine(vec![matrix(&[nan, 2.0, nan]), matrix(&[1.0, nan, nan])])
        .expect("combines");
    let got = &points(&combined)[0].1;
    assert_eq!(got[..2], [(0, 1.0), (1, 2.0)]);
    assert!(got[2].1.is_nan());
    let max = plan("max by (job) (x)", 2).expect("sharded");
    let combined = max
        .combine(vec![matrix(&[nan, 2.0]), matrix(&[1.0, 3.0])])
        .expect("combines");
    assert_eq!(points(&combined)[0].1, [(0, 1.0), (1, 3.0)]);
}
