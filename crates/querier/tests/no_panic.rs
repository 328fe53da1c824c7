//! Random PromQL over random data: evaluation may fail, never panic or hang.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use strata_common::labels::label;
use strata_proto::STALE_NAN_BITS;
use strata_querier::{Engine, EngineOptions, MemoryQueryable};

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("a{x=~\"1|2\"}".to_owned()),
        Just("{__name__=~\"a|b\"}".to_owned()),
        Just("nope".to_owned()),
        Just("1".to_owned()),
        Just("-0.5".to_owned()),
        Just("NaN".to_owned()),
        Just("Inf".to_owned()),
        Just("1e308".to_owned()),
        Just("time()".to_owned()),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1s"),
        Just("30s"),
        Just("1m"),
        Just("5m"),
        Just("1h"),
        Just("1ms"),
        Just("100y")
    ]
    .prop_map(str::to_owned)
}

fn modifiers() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        duration().prop_map(|d| format!(" offset {d}")),
        duration().prop_map(|d| format!(" offset -{d}")),
        Just(" @ 60".to_owned()),
        Just(" @ start()".to_owned()),
        Just(" @ end()".to_owned()),
        Just(" @ -1000000000".to_owned()),
    ]
}

fn range_vector(inner: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop_oneof![Just("a"), Just("b"), Just("a{x=\"1\"}")],
            duration(),
            modifiers()
        )
            .prop_map(|(s, d, m)| format!("{s}[{d}]{m}")),
        (
            inner,
            duration(),
            prop_oneof![Just(String::new()), duration()],
            modifiers()
        )
            .prop_map(|(e, r, s, m)| format!("({e})[{r}:{s}]{m}")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 32, 3, |inner| {
        let range_fns = prop_oneof![
            Just("rate"),
            Just("increase"),
            Just("delta"),
            Just("irate"),
            Just("idelta"),
            Just("deriv"),
            Just("changes"),
            Just("resets"),
            Just("avg_over_time"),
            Just("sum_over_time"),
            Just("min_over_time"),
            Just("max_over_time"),
            Just("count_over_time"),
            Just("last_over_time"),
            Just("stddev_over_time"),
            Just("present_over_time"),
            Just("absent_over_time"),
        ];
        let fns = prop_oneof![
            Just("abs"),
            Just("ceil"),
            Just("ln"),
            Just("sqrt"),
            Just("exp"),
            Just("sgn"),
            Just("timestamp"),
            Just("absent"),
            Just("sort_desc"),
            Just("scalar"),
            Just("year"),
            Just("days_in_month"),
            Just("-"),
        ];
        let ops = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("^"),
            Just("atan2"),
            Just("=="),
            Just("!= bool"),
            Just(">"),
            Just("<= bool"),
            Just("and"),
            Just("or"),
            Just("unless"),
            Just("+ on(x)"),
            Just("* ignoring(x) group_left"),
            Just("/ on() group_right"),
        ];
        let aggs = prop_oneof![
            Just("sum"),
            Just("avg"),
            Just("min"),
            Just("max"),
            Just("count"),
            Just("group"),
            Just("stddev"),
            Just("stdvar"),
            Just("topk(2,"),
            Just("bottomk(-1,"),
            Just("quantile(0.9,"),
            Just("quantile(2,"),
            Just("count_values(\"v\","),
        ];
        prop_oneof![
            (range_fns, range_vector(inner.clone().boxed())).prop_map(|(f, m)| format!("{f}({m})")),
            (fns, inner.clone()).prop_map(|(f, e)| format!("{f}({e})")),
            (inner.clone(), ops, inner.clone()).prop_map(|(l, o, r)| format!("({l}) {o} ({r})")),
            (
                aggs,
                prop_oneof![Just(""), Just(" by (x)"), Just(" without (x)")],
                inner.clone()
            )
                .prop_map(|(a, g, e)| {
                    if a.ends_with(',') {
                        format!(
                            "{}{g}({} {e})",
                            &a[..a.find('(').unwrap_or(0)],
                            &a[a.find('(').unwrap_or(0) + 1..]
                        )
                    } else {
                        format!("{a}{g}({e})")
                    }
                }),
            inner.clone().prop_map(|e| format!("vector(scalar({e}))")),
            (inner.clone(), modifiers()).prop_map(|(e, m)| format!("({e})[5m:1m]{m}")),
            inner.prop_map(|e| format!("histogram_quantile(0.5, {e})")),
        ]
    })
}

fn data() -> MemoryQueryable {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut q = MemoryQueryable::new();
    let values = [
        0.0,
        5.0,
        3.0,
        f64::NAN,
        stale,
        1e308,
        -1e308,
        f64::INFINITY,
        7.0,
        7.0,
    ];
    for (name, x) in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "3")] {
        let samples: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000 - 30_000, v))
            .collect();
        q.add(
            vec![label("__name__", name), label("le", x), label("x", x)],
            &samples,
        );
    }
    q
}

/// Evaluates one random query as an instant and as a range query.
fn evaluate(query: &str, t: i64, step: i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let q = data();
    let engine = Engine::new(EngineOptions {
        timeout: std::time::Duration::from_secs(5),
        max_samples: 1_000_000,
        ..EngineOptions::default()
    });
    runtime.block_on(async {
        let _ = engine.instant(&q, query, t).await;
        let _ = engine.range(&q, query, t, t + 120_000, step).await;
    });
}

#[test]
fn evaluation_never_panics() {
    // Generating nested strategies recurses deeply: give the runner room.
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases: 1000,
                ..ProptestConfig::default()
            });
            let inputs = (expr(), -100_000i64..200_000, 1i64..60_000);
            runner
                .run(&inputs, |(query, t, step)| {
                    evaluate(&query, t, step);
                    Ok(())
                })
                .map_err(|e| e.to_string())
        })
        .expect("spawn test thread");
    let result = worker.join().expect("test thread");
    assert!(result.is_ok(), "{result:?}");
}
