//! Unit tests for the tricky parts: rate extrapolation, left-open windows,
//! staleness, and the API's shapes.

use strata_common::ErrorClass;
use strata_common::labels::label;
use strata_proto::STALE_NAN_BITS;

use crate::{Engine, EngineOptions, MemoryQueryable, QueryError, Value};

fn store(series: &[(&str, &[(i64, f64)])]) -> MemoryQueryable {
    let mut q = MemoryQueryable::new();
    for (name, samples) in series {
        q.add(vec![label("__name__", name)], samples);
    }
    q
}

async fn instant(q: &MemoryQueryable, query: &str, t: i64) -> Result<Value, QueryError> {
    let engine = Engine::new(EngineOptions::default());
    engine.instant(q, query, t).await.map(|o| o.value)
}

/// The single value of an instant vector (None when empty).
async fn single(q: &MemoryQueryable, query: &str, t: i64) -> Option<f64> {
    match instant(q, query, t).await.expect("query succeeds") {
        Value::Vector(v) if v.is_empty() => None,
        Value::Vector(v) => {
            assert_eq!(v.len(), 1, "{query}: {v:?}");
            Some(v[0].v)
        }
        Value::Scalar { v, .. } => Some(v),
        other => panic!("{query}: unexpected {other:?}"),
    }
}

#[tokio::test]
async fn rate_extrapolates_to_the_window_edges() {
    // Window (10s, 40s] holds 20, 30, 40 at 15s, 25s, 35s: 20 over 20s,
    // extrapolated by 5s on each side (below 1.1 × the 10s spacing).
    let q = store(&[(
        "c_total",
        &[
            (5_000, 10.0),
            (15_000, 20.0),
            (25_000, 30.0),
            (35_000, 40.0),
        ],
    )]);
    assert_eq!(
        single(&q, "increase(c_total[30s])", 40_000).await,
        Some(30.0)
    );
    assert_eq!(single(&q, "rate(c_total[30s])", 40_000).await, Some(1.0));
    assert_eq!(single(&q, "delta(c_total[30s])", 40_000).await, Some(30.0));
}

#[tokio::test]
async fn rate_counts_resets_and_stops_at_zero() {
    // 20 → 5 is a reset: the increase is 15 (5 after the reset, 10 before), × 1.5.
    let q = store(&[("c_total", &[(15_000, 20.0), (25_000, 5.0), (35_000, 15.0)])]);
    assert_eq!(
        single(&q, "increase(c_total[30s])", 40_000).await,
        Some(22.5)
    );
    // A counter starting at 1 with slope 10/10s is extrapolated back only to its zero point (1s).
    let q = store(&[("c_total", &[(15_000, 1.0), (25_000, 11.0), (35_000, 21.0)])]);
    let v = single(&q, "increase(c_total[30s])", 40_000)
        .await
        .expect("value");
    assert!((v - 20.0 * (20.0 + 1.0 + 5.0) / 20.0).abs() < 1e-9, "{v}");
    // One sample is not enough.
    let q = store(&[("c_total", &[(35_000, 21.0)])]);
    assert_eq!(single(&q, "rate(c_total[30s])", 40_000).await, None);
}

#[tokio::test]
async fn range_windows_and_lookback_are_left_open() {
    let q = store(&[("x", &[(10_000, 1.0), (20_000, 2.0)])]);
    // (10s, 20s] excludes the sample at 10s.
    assert_eq!(
        single(&q, "count_over_time(x[10s])", 20_000).await,
        Some(1.0)
    );
    assert_eq!(
        single(&q, "count_over_time(x[10001ms])", 20_000).await,
        Some(2.0)
    );
    // Lookback (t - 5m, t]: the sample at 20s is visible until just before 5m20s.
    assert_eq!(single(&q, "x", 319_999).await, Some(2.0));
    assert_eq!(single(&q, "x", 320_000).await, None);
}

#[tokio::test]
async fn stale_markers_end_a_series() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let q = store(&[("x", &[(0, 1.0), (10_000, stale), (20_000, 3.0)])]);
    assert_eq!(single(&q, "x", 5_000).await, Some(1.0));
    assert_eq!(single(&q, "x", 10_000).await, None);
    assert_eq!(single(&q, "x", 15_000).await, None);
    assert_eq!(single(&q, "x", 20_000).await, Some(3.0));
    // Range functions skip stale markers.
    assert_eq!(
        single(&q, "count_over_time(x[1m])", 20_000).await,
        Some(2.0)
    );
}

#[tokio::test]
async fn offset_and_at_move_the_window() {
    let q = store(&[("x", &[(0, 0.0), (60_000, 1.0), (120_000, 2.0)])]);
    assert_eq!(single(&q, "x offset 1m", 120_000).await, Some(1.0));
    assert_eq!(single(&q, "x offset -1m", 60_000).await, Some(2.0));
    assert_eq!(single(&q, "x @ 60", 120_000).await, Some(1.0));
    assert_eq!(single(&q, "x @ 120 offset 2m", 0).await, Some(0.0));
}

#[tokio::test]
async fn grafana_health_check_is_a_scalar() {
    let q = MemoryQueryable::new();
    let v = instant(&q, "1+1", 4_000).await.expect("query succeeds");
    assert_eq!(v, Value::Scalar { t: 4_000, v: 2.0 });
}

#[tokio::test]
async fn range_queries_evaluate_every_step() {
    let q = store(&[("x", &[(0, 1.0), (30_000, 2.0), (60_000, 3.0)])]);
    let engine = Engine::new(EngineOptions::default());
    let out = engine
        .range(&q, "x * 2", 0, 60_000, 15_000)
        .await
        .expect("query succeeds");
    let Value::Matrix(series) = out.value else {
        panic!("not a matrix");
    };
    assert_eq!(series.len(), 1);
    assert!(series[0].labels.is_empty(), "the metric name is dropped");
    let expected: Vec<(i64, f64)> = vec![
        (0, 2.0),
        (15_000, 2.0),
        (30_000, 4.0),
        (45_000, 4.0),
        (60_000, 6.0),
    ];
    assert_eq!(series[0].points, expected);
}

#[tokio::test]
async fn errors_are_classified() {
    let q = MemoryQueryable::new();
    let err = instant(&q, "sum(", 0).await.expect_err("bad query");
    assert_eq!(err.class(), ErrorClass::BadData);
    assert!(err.to_string().starts_with("1:5: parse error: "), "{err}");

    let mut q = MemoryQueryable::new();
    q.add(vec![label("__name__", "a"), label("x", "1")], &[(0, 1.0)]);
    q.add(
        vec![label("__name__", "b"), label("x", "1"), label("y", "1")],
        &[(0, 1.0)],
    );
    q.add(
        vec![label("__name__", "b"), label("x", "1"), label("y", "2")],
        &[(0, 1.0)],
    );
    let err = instant(&q, "a + on(x) b", 0)
        .await
        .expect_err("many-to-many");
    assert_eq!(err.class(), ErrorClass::Unprocessable);
    assert!(
        err.to_string()
            .contains("many-to-many matching not allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn sample_limit_is_enforced() {
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
    let q = store(&[("x", &samples)]);
    let engine = Engine::new(EngineOptions {
        max_samples: 10,
        ..EngineOptions::default()
    });
    let err = engine
        .instant(&q, "sum_over_time(x[1m])", 99_000)
        .await
        .expect_err("too many samples");
    assert_eq!(err.class(), ErrorClass::Unprocessable);
}

#[tokio::test]
async fn extreme_times_do_not_panic() {
    let q = store(&[("x", &[(0, 1.0)])]);
    for query in [
        "x offset 292y",
        "x offset -292y",
        "x @ 9223372036",
        "rate(x[292y])",
        "max_over_time(x[100y:1ms])",
        "x[1m:1m] offset -292y",
    ] {
        // Any answer or a clean error, never a panic.
        let _ = instant(&q, query, 0).await;
    }
}

#[tokio::test]
async fn timeout_is_reported() {
    let q = store(&[("x", &[(0, 1.0)])]);
    let engine = Engine::new(EngineOptions {
        timeout: std::time::Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = engine.instant(&q, "x", 0).await.expect_err("timed out");
    assert!(matches!(err, QueryError::Timeout), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Timeout);
}

/// Counters with resets, gaps and irregular spacing over two jobs, for
/// comparing an optimized evaluation path with the general one.
fn counters() -> MemoryQueryable {
    let mut q = MemoryQueryable::new();
    for s in 0..12i64 {
        let mut value = (s * 7) as f64;
        let samples: Vec<(i64, f64)> = (0..80i64)
            .filter(|r| (r + s) % 9 != 0)
            .map(|r| {
                value = if (r * s) % 31 == 17 {
                    1.0
                } else {
                    value + ((r * 3 + s) % 5) as f64
                };
                (r * 15_000 + s * 1_000 + (r % 3) * 7, value)
            })
            .collect();
        let job = format!("j{}", s % 2);
        let instance = format!("i{s}");
        q.add(
            vec![
                label("__name__", "c_total"),
                label("instance", &instance),
                label("job", &job),
            ],
            &samples,
        );
    }
    q
}

async fn range_matrix(q: &MemoryQueryable, query: &str) -> Vec<crate::Series> {
    let engine = Engine::new(EngineOptions::default());
    match engine.range(q, query, 0, 1_200_000, 15_000).await {
        Ok(out) => match out.value {
            Value::Matrix(series) => series,
            other => panic!("{query}: unexpected {other:?}"),
        },
        Err(e) => panic!("{query}: {e}"),
    }
}

#[tokio::test]
async fn aggregations_streamed_from_range_functions_equal_collected_ones() {
    let q = counters();
    for agg in [
        "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
    ] {
        for f in [
            "rate",
            "increase",
            "delta",
            "irate",
            "resets",
            "max_over_time",
        ] {
            for by in ["", "by (job)", "without (instance)"] {
                // `* 1` makes the argument a computed vector: the general path.
                let streamed = range_matrix(&q, &format!("{agg} {by} ({f}(c_total[2m]))")).await;
                let collected =
                    range_matrix(&q, &format!("{agg} {by} ({f}(c_total[2m]) * 1)")).await;
                assert!(!streamed.is_empty(), "{agg} {by} {f}");
                assert_eq!(streamed, collected, "{agg} {by} {f}");
            }
        }
    }
}

#[tokio::test]
async fn duplicate_range_results_are_refused_inside_aggregations() {
    let mut q = MemoryQueryable::new();
    for name in ["a_total", "b_total"] {
        q.add(
            vec![label("__name__", name), label("job", "x")],
            &[(0, 1.0), (15_000, 2.0), (30_000, 3.0)],
        );
    }
    let engine = Engine::new(EngineOptions::default());
    let err = engine
        .range(
            &q,
            r#"sum(rate({__name__=~"a_total|b_total"}[1m]))"#,
            0,
            30_000,
            15_000,
        )
        .await
        .expect_err("same labelset");
    assert_eq!(
        err.to_string(),
        "vector cannot contain metrics with the same labelset"
    );
}

#[tokio::test]
async fn topk_and_bottomk_keep_the_k_best_values_best_first() {
    let mut q = MemoryQueryable::new();
    // Ties and a NaN: which tied series are kept is Prometheus' heap order,
    // but the values kept are always the k best, sorted best first.
    for (i, v) in [3.0, 1.0, 3.0, f64::NAN, 2.0, 3.0, 1.0, 5.0, 2.0]
        .iter()
        .enumerate()
    {
        q.add(
            vec![label("__name__", "x"), label("i", &i.to_string())],
            &[(0, *v)],
        );
    }
    for op in ["topk", "bottomk"] {
        let all = match instant(&q, &format!("{op}(100, x)"), 0).await {
            Ok(Value::Vector(v)) => v,
            other => panic!("{op}: {other:?}"),
        };
        assert_eq!(all.len(), 9);
        let values = |v: &[crate::Sample]| v.iter().map(|s| s.v.to_bits()).collect::<Vec<_>>();
        for k in 1..=9 {
            let Ok(Value::Vector(some)) = instant(&q, &format!("{op}({k}, x)"), 0).await else {
                panic!("{op}({k})");
            };
            assert_eq!(values(&some), values(&all[..k]), "{op}({k})");
        }
    }
}

#[tokio::test]
async fn tied_bottomk_keeps_the_series_prometheus_keeps() {
    // Prometheus' k-heap: a and b fill it, c replaces the top (a), and the
    // heap's fix moves b up; so b stays, not the first-seen a.
    let mut q = MemoryQueryable::new();
    for (name, v) in [("a", 1.0), ("b", 1.0), ("c", 0.0)] {
        q.add(vec![label("__name__", "x"), label("s", name)], &[(0, v)]);
    }
    let Ok(Value::Vector(kept)) = instant(&q, "bottomk(2, x)", 0).await else {
        panic!("bottomk");
    };
    let names: Vec<&str> = kept
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .find(|l| l.name == "s")
                .map_or("", |l| l.value.as_str())
        })
        .collect();
    assert_eq!(names, ["c", "b"]);
}

#[tokio::test]
async fn query_shards_partition_the_series() {
    let mut q = MemoryQueryable::new();
    for k in 0..50 {
        let value = f64::from(k);
        q.add(
            vec![label("__name__", "x"), label("i", &k.to_string())],
            &[(10_000, value)],
        );
    }
    let total = single(&q, "sum(x)", 10_000).await;
    let q = &q;
    let count = |query: String| async move {
        match instant(q, &query, 10_000).await.expect("query succeeds") {
            Value::Vector(v) => {
                // The shard matcher is no label of the results.
                assert!(
                    v.iter()
                        .all(|s| s.labels.iter().all(|l| l.name != "__query_shard__"))
                );
                v
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    let mut sum = 0.0;
    let mut seen = 0;
    for i in 1..=3 {
        let shard = count(format!("x{{__query_shard__=\"{i}_of_3\"}}")).await;
        assert!(!shard.is_empty() && shard.len() < 50);
        seen += shard.len();
        sum += shard.iter().map(|s| s.v).sum::<f64>();
    }
    assert_eq!(seen, 50);
    assert_eq!(Some(sum), total);
    let absent = count("absent(nope{__query_shard__=\"1_of_2\", job=\"a\"})".to_owned()).await;
    assert_eq!(absent.len(), 1);
    assert_eq!(absent[0].labels, vec![label("job", "a")]);
    for bad in [
        "x{__query_shard__=\"3_of_2\"}",
        "x{__query_shard__=~\"1_of_2\"}",
    ] {
        let error = instant(q, bad, 10_000).await.expect_err("rejected");
        assert_eq!(error.class(), ErrorClass::BadData, "{bad}");
    }
}
