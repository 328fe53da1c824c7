//! Tests of the query frontend over a fake, deterministic querier.

use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;
use proptest::prelude::*;
use strata_proto::prometheus::Label;
use strata_proto::query::{Matrix, PromSample, PromSeries, Vector};

use super::*;

mod overrides;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// A querier whose answers are a pure function of the query and the step
/// time: three series that come and go, a warning, stats.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<QueryRequest>>,
    /// Calls that fail as unavailable before one succeeds.
    failures: AtomicU32,
    /// Class of the failures.
    failure_class: Mutex<Option<ErrorClass>>,
    /// When set, every call waits for a permit after being recorded.
    gate: Option<tokio::sync::Semaphore>,
}

impl Fake {
    fn calls(&self) -> Vec<QueryRequest> {
        self.calls.lock().expect("lock").clone()
    }

    fn answer(request: &QueryRequest) -> QueryResponse {
        let salt = request.query.len() as f64;
        let present = |i: i64, t: i64| (t.div_euclid(7 * MINUTE) + i) % 3 != 0;
        let value = |i: i64, t: i64| (t.rem_euclid(100_003)) as f64 * (i + 1) as f64 + salt;
        let labels = |i: i64| {
            vec![
                Label {
                    name: "__name__".into(),
                    value: "m".into(),
                },
                Label {
                    name: "i".into(),
                    value: format!("s{i}"),
                },
            ]
        };
        if request.step_ms == 0 {
            let samples = (0..3)
                .filter(|&i| present(i, request.start_ms))
                .map(|i| PromSample {
                    labels: labels(i),
                    timestamp_ms: request.start_ms,
                    value: value(i, request.start_ms),
                })
                .collect();
            return QueryResponse {
                result: Some(query_response::Result::Vector(Vector { samples })),
                ..Default::default()
            };
        }
        let mut series = Vec::new();
        for i in (0..3).rev() {
            let mut s = PromSeries {
                labels: labels(i),
                ..Default::default()
            };
            let mut t = request.start_ms;
            while t <= request.end_ms {
                if present(i, t) {
                    s.timestamps_ms.push(t);
                    s.values.push(value(i, t));
                }
                t += request.step_ms;
            }
            if !s.timestamps_ms.is_empty() {
                series.push(s);
            }
        }
        series.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
        let points = (request.end_ms - request.start_ms) / request.step_ms + 1;
        QueryResponse {
            result: Some(query_response::Result::Matrix(Matrix { series })),
            warnings: vec!["PromQL warning: something".to_owned()],
            infos: Vec::new(),
            total_queryable_samples: u64::try_from(points).unwrap_or(0),
            peak_samples: 3,
        }
    }
}

#[async_trait]
impl QueryApi for Fake {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        self.calls.lock().expect("lock").push(request.clone());
        if let Some(gate) = &self.gate {
            gate.acquire()
                .await
                .map_err(|_| ServiceError::internal("gate closed"))?
                .forget();
        }
        if request.query.contains("slow") {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let class = self
                .failure_class
                .lock()
                .expect("lock")
                .unwrap_or(ErrorClass::Unavailable);
            return Err(ServiceError::new(class, "querier is down"));
        }
        Ok(Fake::answer(&request))
    }
}

fn config(split: &str) -> QueryFrontendConfig {
    QueryFrontendConfig {
        split_queries_by_interval: split.to_owned(),
        ..QueryFrontendConfig::default()
    }
}

fn frontend(config: &QueryFrontendConfig) -> (QueryFrontend, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let mut registry = Registry::default();
    let inner: Arc<dyn QueryApi> = fake.clone();
    (QueryFrontend::new(config, inner, &mut registry), fake)
}

fn range(tenant: &str, query: &str, start: i64, end: i64, step: i64) -> QueryRequest {
    QueryRequest {
        tenant: tenant.to_owned(),
        query: query.to_owned(),
        start_ms: start,
        end_ms: end,
        step_ms: step,
        lookback_delta_ms: 0,
        timeout_ms: 0,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// The answer without stats (splitting changes what is counted).
fn without_stats(mut response: QueryResponse) -> QueryResponse {
    response.total_queryable_samples = 0;
    response.peak_samples = 0;
    response
}

const NOW: i64 = 1_700_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_then_merge_equals_unsplit(
        start in -3 * HOUR..(10 * 24 * HOUR),
        length in 0..(3 * 24 * HOUR),
        step in 1_000i64..(3 * HOUR),
        interval in 1_000i64..(26 * HOUR),
        cached in any::<bool>(),
    ) {
        let start = NOW - 11 * 24 * HOUR + start;
        let end = start + length;
        prop_assume!(length / step <= 11_000);
        let mut config = config(&format!("{interval}ms"));
        config.cache_results = cached;
        let (frontend, _) = frontend(&config);
        let request = range("t", "rate(m[5m])", start, end, step);
        let expected = Fake::answer(&request);
        let rt = runtime();
        for round in 0..if cached { 2 } else { 1 } {
            let (got, outcome) = rt.block_on(frontend.query(request.clone(), NOW)).expect("answer");
            prop_assert_eq!(outcome.splits, split::split(start, end, step, interval).expect("splits").len());
            if round == 0 {
                // Samples loaded are summed over the pieces (cached pieces load none).
                prop_assert_eq!(got.total_queryable_samples, expected.total_queryable_samples);
            }
            prop_assert_eq!(without_stats(got), without_stats(expected.clone()));
        }
    }

    #[test]
    fn overlapping_ranges_from_the_cache_equal_fresh_answers(
        first_start in 0..(2 * 24 * HOUR),
        first_length in 0..(2 * 24 * HOUR),
        second_start in 0..(2 * 24 * HOUR),
        second_length in 0..(2 * 24 * HOUR),
        step_minutes in 1i64..90,
    ) {
        let step = step_minutes * MINUTE;
        let base = NOW - 5 * 24 * HOUR;
        let (frontend, _) = frontend(&config("6h"));
        let rt = runtime();
        // Both on the same grid, so the second can use the first's extents.
        let first = range("t", "m", base + first_start / step * step, base + (first_start + first_length) / step * step, step);
        let second = range("t", "m", base + second_start / step * step, base + (second_start + second_length) / step * step, step);
        prop_assume!(first.end_ms >= first.start_ms && second.end_ms >= second.start_ms);
        for request in [first, second] {
            let (got, _) = rt.block_on(frontend.query(request.clone(), NOW)).expect("answer");
            prop_assert_eq!(without_stats(got), without_stats(Fake::answer(&request)));
        }
    }
}

#[test]
fn a_repeated_query_comes_from_the_cache() {
    let (frontend, fake) = frontend(&config("2h"));
    let rt = runtime();
    let request = range("a", "m", NOW - 24 * HOUR, NOW - 12 * HOUR, MINUTE);
    let (_, first) = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    assert_eq!(first.cache_status(), "miss");
    assert_eq!(first.splits, 7);
    let calls = fake.calls().len();
    let (again, second) = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    assert_eq!(second.cache_status(), "hit");
    assert_eq!(second.fetched, 0);
    assert_eq!(fake.calls().len(), calls);
    assert_eq!(without_stats(again), without_stats(Fake::answer(&request)));
}

#[test]
fn one_tenants_cached_answer_never_serves_another() {
    let (frontend, fake) = frontend(&config("2h"));
    let rt = runtime();
    let request = range("tenant-a", "m", NOW - 24 * HOUR, NOW - 12 * HOUR, MINUTE);
    rt.block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    let (_, outcome) = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    assert_eq!(outcome.cache_status(), "hit");
    let before = fake.calls().len();
    let other = QueryRequest {
        tenant: "tenant-b".to_owned(),
        ..request
    };
    let (_, outcome) = rt.block_on(frontend.query(other, NOW)).expect("answer");
    assert_eq!(outcome.cache_status(), "miss");
    let calls = fake.calls();
    assert!(calls.len() > before);
    assert!(calls[before..].iter().all(|c| c.tenant == "tenant-b"));
}

#[test]
fn an_extended_range_fetches_only_the_new_part() {
    let (frontend, fake) = frontend(&config("24h"));
    let rt = runtime();
    let start = NOW - 3 * 24 * HOUR;
    rt.block_on(frontend.query(range("a", "m", start, start + 30 * HOUR, MINUTE), NOW))
        .expect("answer");
    let before = fake.calls().len();
    let wider = range("a", "m", start, start + 40 * HOUR, MINUTE);
    let (got, outcome) = rt
        .block_on(frontend.query(wider.clone(), NOW))
        .expect("answer");
    assert_eq!(outcome.cache_status(), "partial");
    let new_calls = &fake.calls()[before..];
    assert!(!new_calls.is_empty());
    for call in new_calls {
        assert!(call.start_ms > start + 30 * HOUR, "refetched {call:?}");
    }
    assert_eq!(without_stats(got), without_stats(Fake::answer(&wider)));
}

#[test]
fn the_recent_part_is_never_cached() {
    let (frontend, fake) = frontend(&config("24h"));
    let rt = runtime();
    let request = range("a", "m", NOW - 2 * HOUR, NOW, 15_000);
    rt.block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    let before = fake.calls().len();
    // A refresh a minute later (Grafana's moving window): only the recent part is computed.
    let later = range("a", "m", NOW - 2 * HOUR + MINUTE, NOW + MINUTE, 15_000);
    let (got, outcome) = rt
        .block_on(frontend.query(later.clone(), NOW + MINUTE))
        .expect("answer");
    assert_eq!(outcome.cache_status(), "partial");
    for call in &fake.calls()[before..] {
        assert!(
            call.start_ms > NOW - 10 * MINUTE - 15_000,
            "refetched {call:?}"
        );
    }
    assert_eq!(without_stats(got), without_stats(Fake::answer(&later)));
}

#[test]
fn range_dependent_queries_run_whole() {
    let (frontend, fake) = frontend(&config("1h"));
    let rt = runtime();
    let request = range("a", "m @ end()", NOW - 24 * HOUR, NOW - 12 * HOUR, MINUTE);
    let (_, outcome) = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    assert_eq!(outcome.splits, 1);
    assert_eq!(fake.calls(), [request]);
}

#[test]
fn queries_reading_past_their_steps_are_split_but_not_cached() {
    let (frontend, _) = frontend(&config("2h"));
    let rt = runtime();
    for query in ["m offset -1h", "m @ 1700000000"] {
        let request = range("a", query, NOW - 24 * HOUR, NOW - 12 * HOUR, MINUTE);
        for _ in 0..2 {
            let (got, outcome) = rt
                .block_on(frontend.query(request.clone(), NOW))
                .expect("answer");
            assert_eq!(outcome.cache_status(), "miss", "{query}");
            assert_eq!(outcome.splits, 7);
            assert_eq!(without_stats(got), without_stats(Fake::answer(&request)));
        }
    }
}

#[test]
fn instant_queries_are_cached_only_when_old_enough() {
    let (frontend, fake) = frontend(&config("1h"));
    let rt = runtime();
    let recent = range("a", "m", NOW - MINUTE, NOW - MINUTE, 0);
    for _ in 0..2 {
        let (got, outcome) = rt
            .block_on(frontend.query(recent.clone(), NOW))
            .expect("answer");
        assert_eq!(got, Fake::answer(&recent));
        assert_eq!(outcome.cache_status(), "miss");
    }
    let old = range("a", "m", NOW - HOUR, NOW - HOUR, 0);
    let (_, first) = rt
        .block_on(frontend.query(old.clone(), NOW))
        .expect("answer");
    let (got, second) = rt
        .block_on(frontend.query(old.clone(), NOW))
        .expect("answer");
    assert_eq!(
        (first.cache_status(), second.cache_status()),
        ("miss", "hit")
    );
    assert_eq!(without_stats(got), without_stats(Fake::answer(&old)));
    let other = QueryRequest {
        tenant: "b".to_owned(),
        ..old.clone()
    };
    let (_, outcome) = rt.block_on(frontend.query(other, NOW)).expect("answer");
    assert_eq!(outcome.cache_status(), "miss");
    assert_eq!(fake.calls().len(), 4);
}

#[test]
fn querier_failures_are_retried_but_bad_queries_are_not() {
    let (frontend, fake) = frontend(&config("0s"));
    let rt = runtime();
    fake.failures.store(2, Ordering::SeqCst);
    let request = range("a", "m", NOW - HOUR, NOW, MINUTE);
    let (_, outcome) = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect("retried");
    assert_eq!(outcome.fetched, 3);

    let mut config = config("0s");
    config.max_retries = 1;
    let (frontend, fake) = self::frontend(&config);
    fake.failures.store(5, Ordering::SeqCst);
    let error = rt
        .block_on(frontend.query(request.clone(), NOW))
        .expect_err("gives up");
    assert_eq!(error.class, ErrorClass::Unavailable);
    assert_eq!(fake.calls().len(), 2);

    let (frontend, fake) = self::frontend(&config);
    fake.failures.store(5, Ordering::SeqCst);
    *fake.failure_class.lock().expect("lock") = Some(ErrorClass::BadData);
    let error = rt
        .block_on(frontend.query(request, NOW))
        .expect_err("bad query");
    assert_eq!(error.class, ErrorClass::BadData);
    assert_eq!(fake.calls().len(), 1);
}

#[test]
fn limits_refuse_queries_before_any_work() {
    let mut config = config("24h");
    config.max_query_length = "7d".to_owned();
    config.max_query_lookback = "30d".to_owned();
    let (frontend, fake) = frontend(&config);
    let rt = runtime();
    let long = range("a", "m", NOW - 8 * 24 * HOUR, NOW, HOUR);
    let error = rt
        .block_on(frontend.query(long, NOW))
        .expect_err("too long");
    assert_eq!(error.class, ErrorClass::BadData);
    assert!(
        error.message.contains("query length: 8d, limit: 7d"),
        "{}",
        error.message
    );
    let old = range("a", "m", NOW - 31 * 24 * HOUR, NOW - 30 * 24 * HOUR, HOUR);
    let error = rt.block_on(frontend.query(old, NOW)).expect_err("too old");
    assert_eq!(error.class, ErrorClass::BadData);
    assert!(
        error.message.contains("31d before now, limit: 30d"),
        "{}",
        error.message
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn a_tenant_beyond_its_concurrent_queries_gets_429() {
    let mut config = config("24h");
    config.max_concurrent_queries_per_tenant = 1;
    let (frontend, _) = frontend(&config);
    let limit = frontend.settings_for("a").max_concurrent_queries_per_tenant;
    let held = frontend.start_running("a", limit).expect("first");
    let error = frontend.start_running("a", limit).expect_err("second");
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert!(
        error.message.contains("too many concurrent queries"),
        "{}",
        error.message
    );
    assert!(frontend.start_running("b", limit).is_ok());
    drop(held);
    assert!(frontend.start_running("a", limit).is_ok());
}

#[test]
fn slow_queries_time_out() {
    let mut config = config("24h");
    config.timeout = "50ms".to_owned();
    let (frontend, _) = frontend(&config);
    let rt = runtime();
    let error = rt
        .block_on(frontend.query(range("a", "slow", NOW - HOUR, NOW, MINUTE), NOW))
        .expect_err("times out");
    assert_eq!(error.class, ErrorClass::Timeout);
    assert!(error.message.contains("after 50ms"), "{}", error.message);

    // A request's own timeout shortens the frontend's.
    let (frontend, _) = self::frontend(&QueryFrontendConfig::default());
    let request = QueryRequest {
        timeout_ms: 30,
        ..range("a", "slow", NOW - HOUR, NOW, MINUTE)
    };
    let error = rt
        .block_on(frontend.query(request, NOW))
        .expect_err("times out");
    assert!(error.message.contains("after 30ms"), "{}", error.message);
}

/// Waits until `condition` holds, letting other tasks run.
async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}

#[test]
fn a_flood_from_one_tenant_does_not_delay_another() {
    let rt = runtime();
    rt.block_on(async {
        let queue = FairQueue::new(1, Gauge::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = queue.acquire("a", 0).await.expect("slot");
        let mut tasks = Vec::new();
        let spawn = |tenant: &'static str| {
            let queue = Arc::clone(&queue);
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                let slot = queue.acquire(tenant, 0).await.expect("slot");
                order.lock().expect("lock").push(tenant);
                drop(slot);
            })
        };
        for _ in 0..100 {
            tasks.push(spawn("a"));
        }
        until(|| queue.waiting() == 100).await;
        tasks.push(spawn("b"));
        until(|| queue.waiting() == 101).await;
        drop(held);
        for task in tasks {
            task.await.expect("task");
        }
        let order = order.lock().expect("lock");
        assert_eq!(order.len(), 101);
        let b = order.iter().position(|t| *t == "b").expect("b ran");
        // Round-robin: b runs after at most one more of a's calls.
        assert!(b <= 1, "b ran {b}th: {order:?}");
    });
}

#[test]
fn a_tenant_with_too_many_waiting_gets_429() {
    let rt = runtime();
    rt.block_on(async {
        let queue = FairQueue::new(1, Gauge::default());
        let held = queue.acquire("a", 2).await.expect("slot");
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { queue.acquire("a", 2).await.map(drop) })
            })
            .collect();
        until(|| queue.waiting() == 2).await;
        let full = queue.acquire("a", 2).await.expect_err("full");
        assert!(
            full.to_string().contains("too many outstanding requests"),
            "{full}"
        );
        drop(held);
        for waiter in waiters {
            waiter.await.expect("task").expect("slot");
        }
    });
}

#[test]
fn a_client_that_goes_away_leaves_the_queue() {
    let rt = runtime();
    rt.block_on(async {
        let queue = FairQueue::new(1, Gauge::default());
        let held = queue.acquire("a", 0).await.expect("slot");
        let waiter = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.acquire("a", 0).await.map(drop) })
        };
        until(|| queue.waiting() == 1).await;
        waiter.abort();
        until(|| queue.waiting() == 0).await;
        drop(held);
        // The slot is free again, not leaked to the departed waiter.
        let again = tokio::time::timeout(Duration::from_secs(5), queue.acquire("b", 0)).await;
        assert!(matches!(again, Ok(Ok(_))));
    });
}

#[test]
fn config_validation_names_the_key() {
    assert!(QueryFrontendConfig::default().validate().is_ok());
    let bad = QueryFrontendConfig {
        split_queries_by_interval: "1 day".to_owned(),
        ..QueryFrontendConfig::default()
    };
    let error = bad.validate().expect_err("invalid");
    assert!(
        error.contains("query_frontend.split_queries_by_interval"),
        "{error}"
    );
    let zero = QueryFrontendConfig {
        max_concurrent: 0,
        ..QueryFrontendConfig::default()
    };
    assert!(zero.validate().is_err());
    assert_eq!(format_ms(90_000), "1m30s");
    assert_eq!(format_ms(8 * 24 * HOUR), "8d");
}

#[test]
fn cache_metrics_are_registered_in_the_given_registry() {
    let mut registry = Registry::default();
    let inner: Arc<dyn QueryApi> = Arc::new(Fake::default());
    let frontend = QueryFrontend::new(&config("2h"), inner, &mut registry);
    let rt = runtime();
    let request = range("a", "m", NOW - 6 * HOUR, NOW - 2 * HOUR, MINUTE);
    rt.block_on(frontend.query(request.clone(), NOW))
        .expect("answer");
    rt.block_on(frontend.query(request, NOW)).expect("answer");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for expected in [
        "strata_query_frontend_results_cache_hits_total 3",
        "strata_query_frontend_results_cache_misses_total 3",
        "strata_query_frontend_querier_requests_total 3",
        "strata_query_frontend_queries_total 2",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(
        !text.contains("strata_query_frontend_results_cache_bytes 0\n"),
        "{text}"
    );
}

#[test]
fn a_flood_of_split_queries_from_one_tenant_does_not_delay_another() {
    let mut config = config("1h");
    config.max_concurrent = 1;
    config.max_query_parallelism = 100;
    let fake = Arc::new(Fake {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Fake::default()
    });
    let inner: Arc<dyn QueryApi> = fake.clone();
    let frontend = Arc::new(QueryFrontend::new(&config, inner, &mut Registry::default()));
    let rt = runtime();
    rt.block_on(async {
        // Tenant a: 50 one-hour intervals; one runs, 49 wait.
        let flood = {
            let frontend = Arc::clone(&frontend);
            let request = range("a", "m", NOW - 60 * HOUR, NOW - 11 * HOUR + MINUTE, MINUTE);
            tokio::spawn(async move { frontend.query(request, NOW).await })
        };
        until(|| fake.calls().len() == 1 && frontend.queue.waiting() >= 49).await;
        let single = {
            let frontend = Arc::clone(&frontend);
            let request = range("b", "m", NOW - 20 * HOUR, NOW - 20 * HOUR + MINUTE, MINUTE);
            tokio::spawn(async move { frontend.query(request, NOW).await })
        };
        until(|| frontend.queue.waiting() >= 50).await;
        fake.gate.as_ref().expect("gate").add_permits(1000);
        flood.await.expect("task").expect("answer");
        single.await.expect("task").expect("answer");
    });
    let calls = fake.calls();
    let b = calls.iter().position(|c| c.tenant == "b").expect("b ran");
    // a's running call, at most one more of a's, then b.
    assert!(b <= 2, "b's call was number {b} of {}", calls.len());
}

#[test]
fn a_query_whose_client_went_away_leaves_nothing_queued_or_running() {
    let mut config = config("1h");
    config.max_concurrent = 1;
    config.max_query_parallelism = 100;
    let fake = Arc::new(Fake {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Fake::default()
    });
    let inner: Arc<dyn QueryApi> = fake.clone();
    let frontend = Arc::new(QueryFrontend::new(&config, inner, &mut Registry::default()));
    let rt = runtime();
    rt.block_on(async {
        let abandoned = {
            let frontend = Arc::clone(&frontend);
            let request = range("a", "m", NOW - 30 * HOUR, NOW - 11 * HOUR, MINUTE);
            tokio::spawn(async move { frontend.query(request, NOW).await })
        };
        until(|| fake.calls().len() == 1 && frontend.queue.waiting() >= 18).await;
        // The HTTP handler's future is dropped when the client disconnects.
        abandoned.abort();
        until(|| frontend.queue.waiting() == 0).await;
        // The running call was cancelled too: its slot serves the next query.
        fake.gate.as_ref().expect("gate").add_permits(1);
        let request = range("b", "m", NOW - 20 * HOUR, NOW - 20 * HOUR + MINUTE, MINUTE);
        let answer =
            tokio::time::timeout(Duration::from_secs(10), frontend.query(request, NOW)).await;
        assert!(matches!(answer, Ok(Ok(_))), "{answer:?}");
    });
    assert_eq!(fake.calls().len(), 2);
}
