//! PromQL parsing and evaluation: the input, as UTF-8, is run as an
//! instant query and as a small range query (11 steps) over a few
//! in-memory series with counters, resets, gaps, NaN, ±Inf and stale
//! markers, with a 1 s timeout and a 1,000,000-sample limit.
//!
//! Oracles: no panic (libfuzzer-sys' panic hook aborts on a panic in any
//! thread, so one on the engine's blocking evaluation thread counts too);
//! each query returns within the timeout plus `GRACE` (parsing and
//! shaping the result are outside the engine's deadline); a failed query
//! fails with one of the engine's error kinds, never an internal
//! "evaluation failed".

#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use strata_common::labels::label;
use strata_querier::{Engine, EngineOptions, MemoryQueryable, QueryError};

const TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed beyond the engine's own deadline before a query counts as hung.
const GRACE: Duration = Duration::from_secs(1);
/// The data spans [0, 20m] at a 15 s interval.
const MINUTE: i64 = 60_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    data: MemoryQueryable,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        let engine = Engine::new(EngineOptions {
            timeout: TIMEOUT,
            max_samples: 1_000_000,
            ..EngineOptions::default()
        });
        Fixture {
            runtime,
            engine,
            data: data(),
        }
    })
}

fn data() -> MemoryQueryable {
    let stale = f64::from_bits(strata_proto::STALE_NAN_BITS);
    let times = |every: i64| (0..=20 * MINUTE).step_by(every as usize);
    let mut q = MemoryQueryable::new();
    for (job, instance) in [("api", "a"), ("api", "b"), ("web", "c")] {
        let labels = vec![
            label("__name__", "http_requests_total"),
            label("instance", instance),
            label("job", job),
        ];
        // A counter with a reset at 10m.
        let samples: Vec<(i64, f64)> = times(15_000)
            .map(|t| (t, ((t % (10 * MINUTE)) / 1000) as f64))
            .collect();
        q.add(labels, &samples);
        let up: Vec<(i64, f64)> = times(15_000)
            .map(|t| (t, if t == 12 * MINUTE { stale } else { 1.0 }))
            .filter(|&(t, _)| !(5 * MINUTE..7 * MINUTE).contains(&t) || job == "web")
            .collect();
        q.add(
            vec![
                label("__name__", "up"),
                label("instance", instance),
                label("job", job),
            ],
            &up,
        );
    }
    let odd = [
        0.5,
        f64::NAN,
        f64::INFINITY,
        -1.0,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1e308,
    ];
    let gauge: Vec<(i64, f64)> = times(30_000)
        .enumerate()
        .map(|(i, t)| (t, odd[i % odd.len()]))
        .collect();
    q.add(
        vec![label("__name__", "temperature"), label("city", "x")],
        &gauge,
    );
    let le = ["0.1", "1", "+Inf"];
    for (i, bound) in le.iter().enumerate() {
        let samples: Vec<(i64, f64)> = times(15_000)
            .map(|t| (t, (t / 1000) as f64 * (i + 1) as f64))
            .collect();
        q.add(
            vec![label("__name__", "latency_bucket"), label("le", bound)],
            &samples,
        );
    }
    q
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    f.runtime.block_on(async {
        let started = Instant::now();
        let result = f.engine.instant(&f.data, query, 10 * MINUTE).await;
        check(query, "instant", started, result.err());

        let started = Instant::now();
        let result = f
            .engine
            .range(&f.data, query, 5 * MINUTE, 15 * MINUTE, MINUTE)
            .await;
        check(query, "range", started, result.err());
    });
});

fn check(query: &str, kind: &str, started: Instant, error: Option<QueryError>) {
    let elapsed = started.elapsed();
    assert!(
        elapsed <= TIMEOUT + GRACE,
        "{kind} query {query:?} took {elapsed:?}, beyond its {TIMEOUT:?} timeout"
    );
    if let Some(QueryError::Execution(message)) = &error {
        assert!(
            !message.starts_with("query evaluation failed"),
            "{kind} query {query:?}: {message}"
        );
    }
}
