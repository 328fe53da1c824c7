//! Differential test of the query frontend: two days of data in two
//! `strata` processes, one splitting range queries into 2-hour intervals
//! (results cache on), one evaluating them whole. Every query of the PromQL
//! differential set is asked of both as a range query with a random start
//! (not aligned to anything), length and step; the split answer, asked
//! cold and again from the cache, must be exactly the unsplit one.
//!
//! A third process splits the same way and also shards aggregations
//! (`query_frontend.shard_count`): every query is asked of it too, and its
//! answer must be the unsplit, unsharded one.
//!
//! The data is the differential test's hour of series repeated back to
//! back (counters reset at each copy, series come and go, stale markers).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::Value;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::differential::{Generated, generate, queries, remote_write, write_requests};
use crate::support::{Strata, agent, encode, now_ms, seconds};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Copies of the differential hour of data.
const COPIES: i64 = 48;
const TENANT: &str = "query-frontend";
const WORKERS: usize = 4;

/// SplitMix64, seeded per query so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// One answer: HTTP status, the cache header, the JSON body.
struct Answer {
    status: u16,
    cache: String,
    body: Value,
}

fn ask(agent: &ureq::Agent, base: &str, form: &str) -> Answer {
    let call = agent
        .post(format!("{base}/api/v1/query_range"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Scope-OrgID", TENANT);
    match call.send(form.as_bytes()) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let cache = response
                .headers()
                .get("x-strata-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Answer {
                status,
                cache,
                body,
            }
        }
        Err(e) => Answer {
            status: 0,
            cache: String::new(),
            body: Value::String(format!("request failed: {e}")),
        },
    }
}

fn annotations(body: &Value) -> BTreeSet<String> {
    ["warnings", "infos"]
        .iter()
        .filter_map(|key| body[key].as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Why two answers differ, or `None`: status, error type, result type and
/// result (label sets, order, timestamps exactly, values up to [`ROUNDING`]), annotations as sets.
fn difference(split: &Answer, whole: &Answer) -> Option<String> {
    if split.status != whole.status {
        return Some(format!(
            "status {} vs {}: {} / {}",
            split.status, whole.status, split.body, whole.body
        ));
    }
    if split.body["status"] != whole.body["status"]
        || split.body["errorType"] != whole.body["errorType"]
    {
        return Some(format!("{} / {}", split.body, whole.body));
    }
    if split.body["data"]["resultType"] != whole.body["data"]["resultType"]
        || split.body["data"]["result"] != whole.body["data"]["result"]
    {
        let (a, b) = (&split.body["data"], &whole.body["data"]);
        if !within_rounding(a, b) {
            return Some(first_difference(a, b));
        }
    }
    if annotations(&split.body) != annotations(&whole.body) {
        return Some(format!(
            "annotations differ: {:?} vs {:?}",
            annotations(&split.body),
            annotations(&whole.body)
        ));
    }
    None
}

/// Relative difference accepted between values: the engine computes some
/// range functions with prefix sums over the selected samples (counter
/// reset corrections), so a step's last bits depend on where the query's
/// data starts, split or not.
const ROUNDING: f64 = 1e-12;

/// Whether two results are the same series, timestamps and values up to [`ROUNDING`].
fn within_rounding(a: &Value, b: &Value) -> bool {
    let empty = Vec::new();
    let x = a["result"].as_array().unwrap_or(&empty);
    let y = b["result"].as_array().unwrap_or(&empty);
    if a["resultType"] != b["resultType"] || x.len() != y.len() {
        return false;
    }
    x.iter().zip(y).all(|(s, t)| {
        let p = s["values"].as_array().unwrap_or(&empty);
        let q = t["values"].as_array().unwrap_or(&empty);
        s["metric"] == t["metric"]
            && p.len() == q.len()
            && p.iter().zip(q).all(|(u, v)| {
                if u == v {
                    return true;
                }
                let value = |w: &Value| w[1].as_str().and_then(|t| t.parse::<f64>().ok());
                match (value(u), value(v)) {
                    (Some(f), Some(g)) => {
                        u[0] == v[0] && (f - g).abs() <= ROUNDING * f.abs().max(g.abs())
                    }
                    _ => false,
                }
            })
    })
}

/// Where two results first differ: a series, or a point of one.
fn first_difference(split: &Value, whole: &Value) -> String {
    let empty = Vec::new();
    let a = split["result"].as_array().unwrap_or(&empty);
    let b = whole["result"].as_array().unwrap_or(&empty);
    if split["resultType"] != whole["resultType"] || a.len() != b.len() {
        let metrics = |r: &[Value]| {
            r.iter()
                .map(|s| s["metric"].to_string())
                .collect::<Vec<_>>()
        };
        return format!(
            "{} series {:?}\n    vs {} series {:?}",
            split["resultType"],
            metrics(a),
            whole["resultType"],
            metrics(b)
        );
    }
    for (x, y) in a.iter().zip(b) {
        if x["metric"] != y["metric"] {
            return format!("series {} vs {}", x["metric"], y["metric"]);
        }
        let px = x["values"].as_array().unwrap_or(&empty);
        let py = y["values"].as_array().unwrap_or(&empty);
        for (i, (p, q)) in px.iter().zip(py).enumerate() {
            if p != q {
                return format!("{}: point {i}: {p} vs {q}", x["metric"]);
            }
        }
        if px.len() != py.len() {
            let tail = |v: &[Value]| {
                v.iter()
                    .rev()
                    .take(3)
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
            };
            return format!(
                "{}: {} points (last {:?}) vs {} (last {:?})",
                x["metric"],
                px.len(),
                tail(px),
                py.len(),
                tail(py)
            );
        }
    }
    "results differ".to_owned()
}

/// `strata_query_frontend_sharded_requests_total` of a server.
fn sharded_requests(url: &str) -> u64 {
    let text = agent()
        .get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("strata_query_frontend_sharded_requests_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The copies' series, each copy one `span` after the previous.
fn data(base: i64) -> (Vec<Vec<Generated>>, i64) {
    let first = generate(0);
    let last = first
        .iter()
        .filter_map(|s| s.samples.last().map(|x| x.0))
        .max()
        .unwrap_or(HOUR_MS);
    let span = (last / MINUTE_MS + 2) * MINUTE_MS;
    let copies = (0..COPIES).map(|k| generate(base + k * span)).collect();
    (copies, span)
}

#[test]
fn split_and_cached_answers_equal_unsplit_answers() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let split = Strata::start(
        &dir.path().join("split"),
        &[
            "--query-frontend.split-queries-by-interval",
            "2h",
            "--log.level",
            "warn",
        ],
    );
    let sharded = Strata::start(
        &dir.path().join("sharded"),
        &[
            "--query-frontend.split-queries-by-interval",
            "2h",
            "--query-frontend.shard-count",
            "3",
            "--log.level",
            "warn",
        ],
    );
    let whole = Strata::start(
        &dir.path().join("whole"),
        &[
            "--query-frontend.split-queries-by-interval",
            "0s",
            "--log.level",
            "warn",
        ],
    );
    let base = (now_ms() - (COPIES + 3) * HOUR_MS) / MINUTE_MS * MINUTE_MS;
    let (copies, span) = data(base);
    let end = base + COPIES * span;
    for series in &copies {
        for request in write_requests(series) {
            for server in [&split, &sharded, &whole] {
                let (status, body) =
                    remote_write(&server.url("/api/v1/push"), Some(TENANT), &request);
                assert_eq!(status, 204, "write refused: {body}\n{}", server.log());
            }
        }
    }
    eprintln!(
        "query frontend: pushed {COPIES} hours of data to all three ({:.1?})",
        started.elapsed()
    );

    let queries = queries();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let hits = AtomicUsize::new(0);
    let partial = AtomicUsize::new(0);
    let asked = AtomicUsize::new(0);
    let (whole_us, cold_us, warm_us) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let sharded_us = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                let agent = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(query) = queries.get(i) else { break };
                    let mut rng = Rng(0x5eed_0000 + i as u64);
                    // Any start in the data (to the millisecond), any length, a step from odd to round.
                    let steps = [
                        15_000, 60_000, 61_000, 300_000, 450_000, 1_020_000, 3_600_000, 7_300_000,
                    ];
                    let step = steps[rng.below(steps.len() as u64) as usize];
                    let start = base + i64::try_from(rng.below((end - base) as u64)).unwrap_or(0);
                    let length = i64::try_from(rng.below((end - start) as u64 + HOUR_MS as u64))
                        .unwrap_or(0)
                        .min(step * 10_999);
                    let form_of = |start: i64, end: i64| {
                        format!(
                            "query={}&start={}&end={}&step={}",
                            encode(query),
                            seconds(start),
                            seconds(end),
                            step as f64 / 1000.0
                        )
                    };
                    let form = form_of(start, start + length);
                    let timed = |base: &str, total: &AtomicU64| {
                        let started = Instant::now();
                        let answer = ask(&agent, base, &form);
                        total.fetch_add(
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(0),
                            Ordering::Relaxed,
                        );
                        answer
                    };
                    let reference = timed(&whole.base(), &whole_us);
                    let cold = timed(&split.base(), &cold_us);
                    let warm = timed(&split.base(), &warm_us);
                    let shards = timed(&sharded.base(), &sharded_us);
                    asked.fetch_add(1, Ordering::Relaxed);
                    let mut problems = Vec::new();
                    if let Some(why) = difference(&cold, &reference) {
                        problems.push(format!("split: {why}"));
                    }
                    if let Some(why) = difference(&warm, &reference) {
                        problems.push(format!("cached: {why}"));
                    }
                    if let Some(why) = difference(&shards, &reference) {
                        problems.push(format!("sharded: {why}"));
                    }
                    // `@` and negative offsets are not cached (they read past the step).
                    let uncached = query.contains('@') || query.contains("offset -");
                    if warm.status == 200 && !uncached {
                        if warm.cache == "hit" {
                            hits.fetch_add(1, Ordering::Relaxed);
                        } else {
                            problems.push(format!("second ask was a cache {:?}", warm.cache));
                        }
                    }
                    // A later, overlapping range on the same grid (a moving
                    // dashboard): partly from the cache, still the same answer.
                    let points = length / step;
                    let shift = i64::try_from(rng.below(points as u64 / 2 + 1)).unwrap_or(0) * step;
                    let grow = i64::try_from(rng.below(points as u64 / 2 + 2)).unwrap_or(0) * step;
                    let (later_start, later_end) = (start + shift, start + length + shift + grow);
                    if (later_end - later_start) / step <= 11_000 {
                        let later = form_of(later_start, later_end);
                        let reference = ask(&agent, &whole.base(), &later);
                        let moved = ask(&agent, &split.base(), &later);
                        if let Some(why) = difference(&moved, &reference) {
                            problems.push(format!("moved to [{later}]: {why}"));
                        }
                        if moved.cache == "partial" {
                            partial.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if !problems.is_empty() {
                        failures.lock().expect("lock").push(format!(
                            "{query}  [{form}]\n    {}",
                            problems.join("\n    ")
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    eprintln!(
        "query frontend: {} queries asked split (cold, cached, moved) and whole, {} cache hits, {} partial hits, {} differences ({:.1?})",
        asked.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed),
        partial.load(Ordering::Relaxed),
        failures.len(),
        started.elapsed()
    );
    let ms = |total: &AtomicU64| total.load(Ordering::Relaxed) as f64 / 1000.0;
    eprintln!(
        "query frontend: total time unsplit {:.0} ms, split cold {:.0} ms, split cached {:.0} ms, split and sharded cold {:.0} ms",
        ms(&whole_us),
        ms(&cold_us),
        ms(&warm_us),
        ms(&sharded_us)
    );
    let sharded_requests = sharded_requests(&sharded.url("/metrics"));
    eprintln!("query frontend: {sharded_requests} querier requests answered by shards");
    assert!(sharded_requests > 0, "no query was sharded");
    assert!(asked.load(Ordering::Relaxed) >= 500);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One series `name{tenant="<tenant>"}` with a sample per minute at `times`.
fn minutes(name: &str, tenant: &str, times: &[i64], value: impl Fn(i64) -> f64) -> WriteRequest {
    let labels = vec![
        Label {
            name: "__name__".to_owned(),
            value: name.to_owned(),
        },
        Label {
            name: "owner".to_owned(),
            value: tenant.to_owned(),
        },
    ];
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels,
            samples: times
                .iter()
                .map(|&t| Sample {
                    value: value(t),
                    timestamp: t,
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A range query's status, `X-Strata-Cache` header and body text.
fn ask_text(base: &str, tenant: &str, form: &str) -> (u16, String, String) {
    let mut response = agent()
        .post(format!("{base}/api/v1/query_range"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Scope-OrgID", tenant)
        .send(form.as_bytes())
        .expect("query");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-strata-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, cache, text)
}

fn metric(base: &str, name: &str) -> u64 {
    let text = agent()
        .get(format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_old_request_asked_again_gets_its_kept_rendering_and_only_its_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        dir.path(),
        &[
            "--query-frontend.split-queries-by-interval",
            "1h",
            "--log.level",
            "warn",
        ],
    );
    let now = now_ms() / MINUTE_MS * MINUTE_MS;
    let times: Vec<i64> = (0..=240)
        .map(|i| now - 240 * MINUTE_MS + i * MINUTE_MS)
        .collect();
    for (tenant, scale) in [("team-a", 1.0), ("team-b", 7.0)] {
        let request = minutes("requests_total", tenant, &times, |t| {
            (t / MINUTE_MS % 1000) as f64 * scale
        });
        let (status, body) = remote_write(&strata.url("/api/v1/push"), Some(tenant), &request);
        assert_eq!(status, 204, "{body}");
    }
    let form = format!(
        "query={}&start={}&end={}&step=60",
        encode("sum(rate(requests_total[5m]))"),
        seconds(now - 200 * MINUTE_MS),
        seconds(now - 60 * MINUTE_MS)
    );
    let (status, cache, first) = ask_text(&strata.base(), "team-a", &form);
    assert_eq!((status, cache.as_str()), (200, "miss"), "{first}");
    let (status, cache, again) = ask_text(&strata.base(), "team-a", &form);
    assert_eq!((status, cache.as_str()), (200, "hit"), "{again}");
    assert_eq!(again, first, "the kept rendering is the answer");
    let rendered = "strata_query_frontend_rendered_cache_hits_total";
    assert_eq!(metric(&strata.base(), rendered), 1);
    // The other tenant's identical request is its own (another answer).
    let (status, cache, other) = ask_text(&strata.base(), "team-b", &form);
    assert_eq!((status, cache.as_str()), (200, "miss"), "{other}");
    assert_ne!(other, first);
    // With stats the answer is rendered again (its timings are its own).
    let (status, cache, with_stats) =
        ask_text(&strata.base(), "team-a", &format!("{form}&stats=all"));
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert!(with_stats.contains("\"stats\""), "{with_stats}");
    assert_eq!(metric(&strata.base(), rendered), 1);
}

#[test]
fn late_samples_inside_the_out_of_order_window_are_never_hidden_by_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        dir.path(),
        &[
            "--blocks.out-of-order-window",
            "1h",
            "--query-frontend.split-queries-by-interval",
            "1h",
            "--log.level",
            "warn",
        ],
    );
    let now = now_ms() / MINUTE_MS * MINUTE_MS;
    let late = now - 35 * MINUTE_MS;
    // Every minute of the last 3 hours but 7 around `late` (the sample 3
    // minutes before it is what a query sees at `late`, 5m lookback).
    let times: Vec<i64> = (0..=180)
        .map(|i| now - 180 * MINUTE_MS + i * MINUTE_MS)
        .filter(|&t| t <= now - 38 * MINUTE_MS || t >= now - 30 * MINUTE_MS)
        .collect();
    let push = |request: &WriteRequest| {
        let (status, body) = remote_write(&strata.url("/api/v1/push"), Some(TENANT), request);
        assert_eq!(status, 204, "{body}");
    };
    push(&minutes("temperature", TENANT, &times, |_| 1.0));
    // Ends 20 minutes ago: outside the default 10-minute freshness window,
    // inside the 1-hour out-of-order window.
    let form = format!(
        "query=temperature&start={}&end={}&step=60",
        seconds(now - 120 * MINUTE_MS),
        seconds(now - 20 * MINUTE_MS)
    );
    let value_at_late = |text: &str| -> String {
        let body: Value = serde_json::from_str(text).expect("json");
        let values = body["data"]["result"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        values
            .iter()
            .find(|point| point[0].as_f64() == Some(late as f64 / 1000.0))
            .map(|point| point[1].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    for _ in 0..2 {
        let (status, _, text) = ask_text(&strata.base(), TENANT, &form);
        assert_eq!(status, 200, "{text}");
        assert_eq!(value_at_late(&text), "1", "{text}");
    }
    // A sample arrives late, out of order, inside the window.
    push(&minutes("temperature", TENANT, &[late], |_| 12345.0));
    let (status, cache, text) = ask_text(&strata.base(), TENANT, &form);
    assert_eq!(status, 200, "{text}");
    assert_eq!(value_at_late(&text), "12345", "cache {cache}: {text}");
}
