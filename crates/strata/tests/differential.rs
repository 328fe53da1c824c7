//! Differential test: the same data pushed by remote write into Strata and
//! into a real Prometheus 3.5, the same PromQL asked of both over HTTP (as
//! Grafana asks: POST form), the answers compared.
//!
//! - `differential/queries.txt`: one query per line, `#` starts a comment
//!   line. Adding a query is adding a line.
//! - `differential/known-differences.txt`: `<query>  # reason` for queries
//!   whose mismatch is a known engine gap. Any other mismatch fails the test;
//!   listed queries that now match are printed so the list can be trimmed.
//!
//! Every query is asked as an instant query at four times and as a range
//! query with three steps (one odd, with a non-aligned start). Compared:
//! HTTP status, `status`, `errorType` (not the message); for success the
//! result type, the series (label sets exact, as sets unless the outer
//! function is `sort`/`sort_desc`), timestamps exactly and values within
//! 1e-6 relative (NaN equals NaN, infinities exact). Warnings and infos
//! are reported, never failed on.
//!
//! Environment knobs for working on the engine:
//! `STRATA_DIFFERENTIAL_FILTER=<substring>` runs only matching queries,
//! `STRATA_DIFFERENTIAL_VERBOSE=1` prints the details of known differences
//! and of annotation differences too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::Value;
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::support::{Prometheus, Strata, encode, encode_write, now_ms, seconds};

/// Nominal scrape interval of the generated data.
const STEP_MS: i64 = 15_000;
/// Scrapes per series: 240 × 15 s = 60 minutes (plus the one at 0).
const SCRAPES: i64 = 240;
const MINUTE_MS: i64 = 60_000;
/// Samples are pushed in windows of this length, oldest first, so that
/// Prometheus' head never sees a sample far behind its newest one.
const PUSH_WINDOW_MS: i64 = 5 * MINUTE_MS;
/// Worker threads asking queries (each asks both servers).
const WORKERS: usize = 4;
/// Relative tolerance for values.
const RELATIVE: f64 = 1e-6;
/// Values closer than this to each other are equal whatever their size
/// (rounding noise around zero, e.g. a variance of equal values).
const ABSOLUTE: f64 = 1e-9;

const TENANT: &str = "differential";

// ---------------------------------------------------------------------------
// data

/// SplitMix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One generated series: labels (any order) and samples in time order.
pub(crate) struct Generated {
    labels: Vec<(String, String)>,
    pub(crate) samples: Vec<(i64, f64)>,
}

impl Generated {
    fn new(pairs: &[(&str, &str)]) -> Generated {
        Generated {
            labels: pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            samples: Vec::new(),
        }
    }
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// The data set, ~60 series over 60 minutes from `base` (ms):
///
/// - `http_requests_total{job,instance,method,code}`: 16 counters; resets
///   (series 3 once, series 7 twice), jittered timestamps (series 5), a
///   7.5-minute gap (series 10), fractional increments (series 12).
/// - `temperature_celsius{instance,sensor}`: gauges, negative values, NaN
///   samples in one series.
/// - `queue_length{queue}` integer gauges (`beta` scraped at irregular
///   10-40 s intervals, `gamma` mostly 0) and `queue_capacity{queue}`
///   constants (`gamma` is 0: division by zero).
/// - `churn_gauge{pod}`: `p1` goes stale at 20 m and comes back at 35 m,
///   `p2` appears at 30 m, `p3` goes stale at 45 m, `p4` just stops at 50 m.
/// - `request_duration_seconds_bucket{job,le}` (`le` 0.1 … +Inf), `_sum`,
///   `_count`: classic histograms; `job="web"` resets at 37.5 m.
/// - `weird_labels{path}`: label values with quotes, backslashes, unicode,
///   a tab and a newline.
/// - `node_info{instance,version}` = 1 for joins; `host-b:9100` changes its
///   version at 30 m (the old series ends with a stale marker).
/// - `special_values{kind}`: ±Inf, NaN, -0, tiny and huge values.
pub(crate) fn generate(base: i64) -> Vec<Generated> {
    let mut rng = Rng(0x0005_eed0_fd1f);
    let t = |k: i64| base + k * STEP_MS;
    let mut out = Vec::new();

    // Counters.
    let mut index = 0;
    for (job, instances) in [
        ("api", ["host-a:9100", "host-b:9100"]),
        ("web", ["host-c:9100", "host-d:9100"]),
    ] {
        for instance in instances {
            for method in ["GET", "POST"] {
                for code in ["200", "500"] {
                    let mut series = Generated::new(&[
                        ("__name__", "http_requests_total"),
                        ("job", job),
                        ("instance", instance),
                        ("method", method),
                        ("code", code),
                    ]);
                    let mut value = rng.below(1000) as f64;
                    let mut previous = i64::MIN;
                    for k in 0..=SCRAPES {
                        let mut time = t(k);
                        if index == 5 {
                            time += rng.below(8_000) as i64 - 4_000;
                            time = time.max(previous + 1);
                        }
                        let increment = if code == "200" {
                            rng.below(200)
                        } else if rng.below(4) == 0 {
                            rng.below(5)
                        } else {
                            0
                        };
                        value += increment as f64;
                        if index == 12 {
                            value += rng.below(1000) as f64 / 64.0;
                        }
                        if (index == 3 && k == 100) || (index == 7 && (k == 60 || k == 180)) {
                            value = rng.below(10) as f64;
                        }
                        if index == 10 && (120..150).contains(&k) {
                            continue;
                        }
                        series.samples.push((time, value));
                        previous = time;
                    }
                    out.push(series);
                    index += 1;
                }
            }
        }
    }

    // Gauges with negative values and NaN.
    for (i, instance) in ["host-a:9100", "host-b:9100", "host-c:9100", "host-d:9100"]
        .iter()
        .enumerate()
    {
        let mut series = Generated::new(&[
            ("__name__", "temperature_celsius"),
            ("instance", instance),
            ("sensor", "cpu"),
        ]);
        let offset = [-10.0, 0.0, 20.0, -40.0][i];
        for k in 0..=SCRAPES {
            let mut value = offset + 8.0 * (k as f64 / 9.0 + i as f64).sin() + (rng.unit() - 0.5);
            if i == 1 && k % 37 == 0 {
                value = f64::NAN;
            }
            series.samples.push((t(k), value));
        }
        out.push(series);
    }

    // Integer gauges; `beta` at irregular intervals.
    for queue in ["alpha", "beta", "gamma"] {
        let mut series = Generated::new(&[("__name__", "queue_length"), ("queue", queue)]);
        let mut value: i64 = 40;
        let mut time = base;
        while time <= t(SCRAPES) {
            value = match queue {
                "alpha" => (value + rng.below(21) as i64 - 10).clamp(0, 100),
                "beta" => rng.below(60) as i64,
                _ => {
                    if rng.below(5) == 0 {
                        1 + rng.below(3) as i64
                    } else {
                        0
                    }
                }
            };
            series.samples.push((time, value as f64));
            time += if queue == "beta" {
                10_000 + rng.below(30_000) as i64
            } else {
                STEP_MS
            };
        }
        out.push(series);
    }
    for (queue, capacity) in [("alpha", 100.0), ("beta", 50.0), ("gamma", 0.0)] {
        let mut series = Generated::new(&[("__name__", "queue_capacity"), ("queue", queue)]);
        for k in 0..=SCRAPES {
            series.samples.push((t(k), capacity));
        }
        out.push(series);
    }

    // Churn and staleness: (pod, live scrape ranges, stale marker after?).
    for (pod, ranges, marker) in [
        ("p1", vec![(0, 80), (140, SCRAPES + 1)], true),
        ("p2", vec![(120, SCRAPES + 1)], false),
        ("p3", vec![(0, 180)], true),
        ("p4", vec![(0, 200)], false),
    ] {
        let mut series = Generated::new(&[("__name__", "churn_gauge"), ("pod", pod)]);
        for (from, to) in ranges {
            for k in from..to {
                series.samples.push((t(k), rng.below(50) as f64));
            }
            if marker && to <= SCRAPES {
                series.samples.push((t(to), stale()));
            }
        }
        out.push(series);
    }

    // Classic histograms.
    let bounds = [0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY];
    let les = ["0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for job in ["api", "web"] {
        let mut buckets: Vec<Generated> = les
            .iter()
            .map(|le| {
                Generated::new(&[
                    ("__name__", "request_duration_seconds_bucket"),
                    ("job", job),
                    ("le", le),
                ])
            })
            .collect();
        let mut sum = Generated::new(&[("__name__", "request_duration_seconds_sum"), ("job", job)]);
        let mut count =
            Generated::new(&[("__name__", "request_duration_seconds_count"), ("job", job)]);
        let mut counts = [0u64; 6];
        let mut total = 0.0;
        for k in 0..=SCRAPES {
            if job == "web" && k == 150 {
                counts = [0; 6];
                total = 0.0;
            }
            for _ in 0..rng.below(50) {
                let latency = rng.unit() * rng.unit() * 3.0;
                total += latency;
                for (slot, bound) in bounds.iter().enumerate() {
                    if latency <= *bound {
                        counts[slot] += 1;
                    }
                }
            }
            for (slot, bucket) in buckets.iter_mut().enumerate() {
                bucket.samples.push((t(k), counts[slot] as f64));
            }
            sum.samples.push((t(k), total));
            count.samples.push((t(k), counts[5] as f64));
        }
        out.extend(buckets);
        out.push(sum);
        out.push(count);
    }

    // Label values that need escaping.
    for path in [
        "/say \"hello\"",
        "C:\\temp\\new",
        "ünïcödé/☃/日本語",
        "tab\there",
        "line\nbreak",
    ] {
        let mut series = Generated::new(&[("__name__", "weird_labels"), ("path", path)]);
        let mut value = 0.0;
        for k in 0..=SCRAPES {
            value += rng.below(10) as f64;
            series.samples.push((t(k), value));
        }
        out.push(series);
    }

    // Info metric for joins.
    for (instance, version, from, to) in [
        ("host-a:9100", "1.2.3", 0, SCRAPES + 1),
        ("host-b:9100", "1.0", 0, 120),
        ("host-b:9100", "1.1", 120, SCRAPES + 1),
        ("host-c:9100", "2.0.0-rc.1", 0, SCRAPES + 1),
        ("host-d:9100", "1.2.3", 0, SCRAPES + 1),
    ] {
        let mut series = Generated::new(&[
            ("__name__", "node_info"),
            ("instance", instance),
            ("version", version),
        ]);
        for k in from..to {
            series.samples.push((t(k), 1.0));
        }
        if to <= SCRAPES {
            series.samples.push((t(to), stale()));
        }
        out.push(series);
    }

    // Special values.
    for kind in ["inf", "nan", "negzero", "tiny", "huge"] {
        let mut series = Generated::new(&[("__name__", "special_values"), ("kind", kind)]);
        for k in 0..=SCRAPES {
            let value = match kind {
                "inf" => [1.0, f64::INFINITY, f64::NEG_INFINITY][(k % 3) as usize],
                "nan" => f64::NAN,
                "negzero" => -0.0,
                "tiny" => k as f64 * 1e-7,
                _ => 1e15 + k as f64 * 0.5,
            };
            series.samples.push((t(k), value));
        }
        out.push(series);
    }
    out
}

/// The data as remote-write requests: one per push window, oldest first.
pub(crate) fn write_requests(series: &[Generated]) -> Vec<WriteRequest> {
    let first = series
        .iter()
        .filter_map(|s| s.samples.first().map(|x| x.0))
        .min()
        .expect("samples");
    let last = series
        .iter()
        .filter_map(|s| s.samples.last().map(|x| x.0))
        .max()
        .expect("samples");
    let mut requests = Vec::new();
    let mut from = first;
    while from <= last {
        let to = from + PUSH_WINDOW_MS;
        let mut timeseries = Vec::new();
        for s in series {
            let samples: Vec<Sample> = s
                .samples
                .iter()
                .filter(|(t, _)| (from..to).contains(t))
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect();
            if samples.is_empty() {
                continue;
            }
            let mut labels: Vec<Label> = s
                .labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect();
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries {
                labels,
                samples,
                exemplars: Vec::new(),
                histograms: Vec::new(),
            });
        }
        requests.push(WriteRequest {
            timeseries,
            metadata: Vec::new(),
        });
        from = to;
    }
    requests
}

/// Posts a snappy-compressed remote-write body to `url`.
pub(crate) fn remote_write(
    url: &str,
    tenant: Option<&str>,
    request: &WriteRequest,
) -> (u16, String) {
    let mut call = crate::support::agent()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(&encode_write(request)[..]).expect("remote write");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------
// queries and modes

fn testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/differential")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Non-empty lines that are not `#` comments.
pub(crate) fn queries() -> Vec<String> {
    testdata("queries.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `<query>  # reason` lines: query → reason. The reason is after the last
/// `  #` so queries may contain `#` themselves.
fn known_differences() -> BTreeMap<String, String> {
    let mut known = BTreeMap::new();
    for (number, line) in testdata("known-differences.txt").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (query, reason) = line.rsplit_once("  #").unwrap_or_else(|| {
            panic!(
                "known-differences.txt:{}: expected `<query>  # reason`: {line}",
                number + 1
            )
        });
        known.insert(query.trim().to_owned(), reason.trim().to_owned());
    }
    known
}

#[derive(Debug, Clone)]
enum Mode {
    Instant {
        name: &'static str,
        time: i64,
    },
    Range {
        name: &'static str,
        start: i64,
        end: i64,
        step_s: i64,
    },
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Instant { name, .. } | Mode::Range { name, .. } => name,
        }
    }

    fn path(&self) -> &'static str {
        match self {
            Mode::Instant { .. } => "/api/v1/query",
            Mode::Range { .. } => "/api/v1/query_range",
        }
    }

    fn form(&self, query: &str) -> String {
        match self {
            Mode::Instant { time, .. } => {
                format!("query={}&time={}", encode(query), seconds(*time))
            }
            Mode::Range {
                start, end, step_s, ..
            } => format!(
                "query={}&start={}&end={}&step={step_s}",
                encode(query),
                seconds(*start),
                seconds(*end)
            ),
        }
    }
}

/// The modes for data from `base` to `end` (the last nominal scrape).
fn modes(base: i64, end: i64) -> Vec<Mode> {
    vec![
        Mode::Instant {
            name: "instant@end",
            time: end,
        },
        Mode::Instant {
            name: "instant@mid",
            time: base + 30 * MINUTE_MS + 7_500,
        },
        Mode::Instant {
            name: "instant@end+3m",
            time: end + 3 * MINUTE_MS,
        },
        Mode::Instant {
            name: "instant@end+10m",
            time: end + 10 * MINUTE_MS,
        },
        Mode::Range {
            name: "range/15s",
            start: base,
            end: end + 5 * MINUTE_MS,
            step_s: 15,
        },
        Mode::Range {
            name: "range/60s",
            start: base - 10 * MINUTE_MS,
            end: end + 10 * MINUTE_MS,
            step_s: 60,
        },
        Mode::Range {
            name: "range/37s",
            start: base + 13_250,
            end: end + 3 * MINUTE_MS,
            step_s: 37,
        },
    ]
}

/// Whether Prometheus guarantees the order of an instant query's result:
/// the whole expression is a `sort(...)` or `sort_desc(...)` call.
fn ordered(query: &str) -> bool {
    let query = query.trim();
    let Some(rest) = query
        .strip_prefix("sort_desc")
        .or_else(|| query.strip_prefix("sort"))
    else {
        return false;
    };
    let rest = rest.trim_start();
    if !rest.starts_with('(') {
        return false;
    }
    // The parenthesis opened first must close at the very end.
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let chars: Vec<char> = rest.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return chars[i + 1..].iter().all(|c| c.is_whitespace());
                }
            }
            _ => {}
        }
    }
    false
}

// ---------------------------------------------------------------------------
// asking

/// One server's answer: HTTP status and JSON body (a string if not JSON).
type Answer = (u16, Value);

fn ask(agent: &ureq::Agent, url: &str, tenant: Option<&str>, form: &str) -> Answer {
    let mut call = agent
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    match call.send(form.as_bytes()) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, json)
        }
        // A transport failure is an answer too (status 0), so one broken
        // query is reported with the others instead of aborting the run.
        Err(e) => (0, Value::String(format!("request failed: {e}"))),
    }
}

// ---------------------------------------------------------------------------
// comparing

/// How one query in one mode compared.
#[derive(Debug, Default)]
struct Outcome {
    /// Why the answers differ (None: they match).
    mismatch: Option<String>,
    /// Warnings/infos that differ (reported, never failed on).
    annotations: Option<String>,
    /// What Prometheus answered: an error, an empty or a non-empty result.
    kind: AnswerKind,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum AnswerKind {
    #[default]
    Error,
    Empty,
    Data,
}

type LabelSet = BTreeMap<String, String>;

fn label_set(value: &Value) -> Result<LabelSet, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("not a label set: {value}"))?;
    object
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(v) => Ok((k.clone(), v.to_owned())),
            None => Err(format!("label {k} is not a string: {v}")),
        })
        .collect()
}

fn show_labels(labels: &LabelSet) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{name}={value:?}");
    }
    out.push('}');
    out
}

/// A timestamp (float seconds) in milliseconds.
fn timestamp(value: &Value) -> Result<i64, String> {
    value
        .as_f64()
        .map(|s| (s * 1000.0).round() as i64)
        .ok_or_else(|| format!("not a timestamp: {value}"))
}

/// A sample value as the API writes it (`"1.5"`, `"NaN"`, `"+Inf"`).
fn sample_value(value: &Value) -> Result<f64, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("not a value string: {value}"))?;
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|e| format!("bad value {text:?}: {e}")),
    }
}

fn point(value: &Value) -> Result<(i64, f64), String> {
    let pair = value
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| format!("not a [t, v] pair: {value}"))?;
    Ok((timestamp(&pair[0])?, sample_value(&pair[1])?))
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let diff = (a - b).abs();
    diff <= ABSOLUTE || diff <= RELATIVE * a.abs().max(b.abs())
}

/// A result as series → points, in the answer's order.
type Series = Vec<(LabelSet, Vec<(i64, f64)>)>;

fn series_of(result_type: &str, result: &Value) -> Result<Series, String> {
    let items = result
        .as_array()
        .ok_or_else(|| format!("result is not an array: {result}"))?;
    items
        .iter()
        .map(|item| {
            let labels = label_set(&item["metric"])?;
            let points = if result_type == "vector" {
                vec![point(&item["value"])?]
            } else {
                item["values"]
                    .as_array()
                    .ok_or_else(|| format!("no values: {item}"))?
                    .iter()
                    .map(point)
                    .collect::<Result<Vec<_>, _>>()?
            };
            if item.get("histogram").is_some() || item.get("histograms").is_some() {
                return Err(format!("native histogram in result: {item}"));
            }
            Ok((labels, points))
        })
        .collect()
}

fn show_points(points: &[(i64, f64)]) -> String {
    let shown: Vec<String> = points
        .iter()
        .take(4)
        .map(|(t, v)| format!("{}:{v}", seconds(*t)))
        .collect();
    let more = if points.len() > 4 {
        format!(" …({} points)", points.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(" "))
}

fn compare_points(labels: &LabelSet, p: &[(i64, f64)], s: &[(i64, f64)]) -> Result<(), String> {
    let p_times: Vec<i64> = p.iter().map(|x| x.0).collect();
    let s_times: Vec<i64> = s.iter().map(|x| x.0).collect();
    if p_times != s_times {
        let only_p: Vec<String> = p_times
            .iter()
            .filter(|t| !s_times.contains(t))
            .take(5)
            .map(|t| seconds(*t))
            .collect();
        let only_s: Vec<String> = s_times
            .iter()
            .filter(|t| !p_times.contains(t))
            .take(5)
            .map(|t| seconds(*t))
            .collect();
        return Err(format!(
            "{}: timestamps differ ({} vs {} points; only in prometheus {only_p:?}, only in strata {only_s:?}); prometheus {} strata {}",
            show_labels(labels),
            p.len(),
            s.len(),
            show_points(p),
            show_points(s)
        ));
    }
    let differing: Vec<String> = p
        .iter()
        .zip(s)
        .filter(|(a, b)| !close(a.1, b.1))
        .map(|(a, b)| format!("{}: prometheus {} strata {}", seconds(a.0), a.1, b.1))
        .collect();
    if differing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} of {} values differ, e.g. {}",
            show_labels(labels),
            differing.len(),
            p.len(),
            differing[..differing.len().min(3)].join("; ")
        ))
    }
}

fn compare_series(p: &Series, s: &Series, ordered: bool) -> Result<(), String> {
    let by_labels = |series: &Series| -> Result<BTreeMap<LabelSet, Vec<(i64, f64)>>, String> {
        let mut map = BTreeMap::new();
        for (labels, points) in series {
            if map.insert(labels.clone(), points.clone()).is_some() {
                return Err(format!("duplicate series {}", show_labels(labels)));
            }
        }
        Ok(map)
    };
    let p_map = by_labels(p).map_err(|e| format!("prometheus: {e}"))?;
    let s_map = by_labels(s).map_err(|e| format!("strata: {e}"))?;
    let missing: Vec<String> = p_map
        .keys()
        .filter(|k| !s_map.contains_key(*k))
        .map(show_labels)
        .collect();
    let extra: Vec<String> = s_map
        .keys()
        .filter(|k| !p_map.contains_key(*k))
        .map(show_labels)
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut out = format!("{} series vs {}", p.len(), s.len());
        if !missing.is_empty() {
            let _ = write!(
                out,
                "; missing in strata: {}",
                missing[..missing.len().min(3)].join(" ")
            );
            if let Some(points) = p_map.get(&label_set_of(&missing, &p_map)) {
                let _ = write!(out, " (prometheus {})", show_points(points));
            }
        }
        if !extra.is_empty() {
            let _ = write!(
                out,
                "; extra in strata: {}",
                extra[..extra.len().min(3)].join(" ")
            );
            if let Some(points) = s_map.get(&label_set_of(&extra, &s_map)) {
                let _ = write!(out, " (strata {})", show_points(points));
            }
        }
        return Err(out);
    }
    let mut errors = Vec::new();
    for (labels, points) in &p_map {
        if let Err(e) = compare_points(labels, points, &s_map[labels]) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        let more = if errors.len() > 2 {
            format!(" (and {} more series)", errors.len() - 2)
        } else {
            String::new()
        };
        return Err(format!(
            "{}{more}",
            errors[..errors.len().min(2)].join(" | ")
        ));
    }
    if ordered {
        // Ties may come in any order: compare the sequence of values.
        let p_values: Vec<f64> = p.iter().map(|x| x.1[0].1).collect();
        let s_values: Vec<f64> = s.iter().map(|x| x.1[0].1).collect();
        if p_values.len() != s_values.len()
            || p_values.iter().zip(&s_values).any(|(a, b)| !close(*a, *b))
        {
            return Err(format!(
                "order differs: prometheus {p_values:?} strata {s_values:?}"
            ));
        }
    }
    Ok(())
}

/// The first of `shown` label sets (as shown) found in `map`.
fn label_set_of(shown: &[String], map: &BTreeMap<LabelSet, Vec<(i64, f64)>>) -> LabelSet {
    map.keys()
        .find(|k| shown.first() == Some(&show_labels(k)))
        .cloned()
        .unwrap_or_default()
}

fn annotations(body: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for key in ["warnings", "infos"] {
        if let Some(items) = body[key].as_array() {
            for item in items {
                let text = item.as_str().unwrap_or_default();
                out.insert(format!("{key}: {}", without_position(text)));
            }
        }
    }
    out
}

/// An annotation without Prometheus' trailing ` (line:column)` position,
/// which Strata cannot give (its parser reports no positions).
fn without_position(text: &str) -> &str {
    if let Some((head, tail)) = text.rsplit_once(" (")
        && let Some(position) = tail.strip_suffix(')')
        && let Some((line, column)) = position.split_once(':')
        && !line.is_empty()
        && !column.is_empty()
        && line
            .bytes()
            .chain(column.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return head;
    }
    text
}

fn brief(body: &Value) -> String {
    let text = body.to_string();
    if text.chars().count() > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn compare(prometheus: &Answer, strata: &Answer, ordered: bool) -> Outcome {
    let mut outcome = Outcome::default();
    let (p_status, p) = prometheus;
    let (s_status, s) = strata;
    let (p_notes, s_notes) = (annotations(p), annotations(s));
    if p_notes != s_notes {
        outcome.annotations = Some(format!(
            "prometheus {:?} strata {:?}",
            p_notes.iter().collect::<Vec<_>>(),
            s_notes.iter().collect::<Vec<_>>()
        ));
    }
    if p["status"] == "success" {
        let result = &p["data"]["result"];
        outcome.kind = if result.as_array().is_some_and(Vec::is_empty) {
            AnswerKind::Empty
        } else {
            AnswerKind::Data
        };
    }
    let result = (|| -> Result<(), String> {
        if p_status != s_status || p["status"] != s["status"] {
            return Err(format!(
                "HTTP {p_status} vs {s_status}: prometheus {} strata {}",
                brief(p),
                brief(s)
            ));
        }
        if p["status"] != "success" {
            if p["errorType"] != s["errorType"] {
                return Err(format!(
                    "errorType {} vs {}: prometheus {} strata {}",
                    p["errorType"], s["errorType"], p["error"], s["error"]
                ));
            }
            return Ok(());
        }
        let (p_data, s_data) = (&p["data"], &s["data"]);
        let result_type = p_data["resultType"].as_str().unwrap_or_default();
        if p_data["resultType"] != s_data["resultType"] {
            return Err(format!(
                "resultType {} vs {}: prometheus {} strata {}",
                p_data["resultType"],
                s_data["resultType"],
                brief(p_data),
                brief(s_data)
            ));
        }
        match result_type {
            "scalar" => {
                let (pp, sp) = (point(&p_data["result"])?, point(&s_data["result"])?);
                if pp.0 != sp.0 || !close(pp.1, sp.1) {
                    return Err(format!(
                        "scalar: prometheus {} strata {}",
                        p_data["result"], s_data["result"]
                    ));
                }
                Ok(())
            }
            "string" => {
                if p_data["result"] != s_data["result"] {
                    return Err(format!(
                        "string: prometheus {} strata {}",
                        p_data["result"], s_data["result"]
                    ));
                }
                Ok(())
            }
            "vector" | "matrix" => {
                let ps = series_of(result_type, &p_data["result"])
                    .map_err(|e| format!("prometheus: {e}"))?;
                let ss = series_of(result_type, &s_data["result"])
                    .map_err(|e| format!("strata: {e}"))?;
                compare_series(&ps, &ss, ordered && result_type == "vector")
            }
            other => Err(format!("unexpected resultType {other:?}")),
        }
    })();
    outcome.mismatch = result.err();
    outcome
}

// ---------------------------------------------------------------------------
// the test

#[test]
fn differential_promql_matches_prometheus() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // 20-minute blocks, cut by one flush two thirds into the data: the
    // queries then read blocks and the head together.
    let strata = Strata::start(
        &dir.path().join("strata"),
        &[
            "--blocks.range",
            "20m",
            "--blocks.maintenance-interval",
            "1h",
        ],
    );
    let prometheus = Prometheus::start(
        &dir.path().join("prometheus"),
        "global:\n  scrape_interval: 15s\n",
        &["--web.enable-remote-write-receiver"],
    );

    // Data: 60 minutes starting 90 minutes ago, aligned to a minute.
    let base = (now_ms() - 90 * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    let end = base + SCRAPES * STEP_MS;
    let series = generate(base);
    let requests = write_requests(&series);
    let samples: usize = series.iter().map(|s| s.samples.len()).sum();
    for (i, request) in requests.iter().enumerate() {
        if i == requests.len() * 2 / 3 {
            let blocks = crate::support::flush(&strata.base(), Some(TENANT));
            assert!(blocks >= 2, "the flush wrote {blocks} blocks");
        }
        let (status, body) = remote_write(&strata.url("/api/v1/push"), Some(TENANT), request);
        assert_eq!(
            status,
            204,
            "strata refused write {i}: {body}\n{}",
            strata.log()
        );
        let (status, body) = remote_write(&prometheus.url("/api/v1/write"), None, request);
        assert_eq!(
            status,
            204,
            "prometheus refused write {i}: {body}\n{}",
            prometheus.log()
        );
    }
    eprintln!(
        "differential: pushed {} series, {samples} samples in {} requests to both ({:.1?})",
        series.len(),
        requests.len(),
        started.elapsed()
    );

    let filter = std::env::var("STRATA_DIFFERENTIAL_FILTER").ok();
    let verbose = std::env::var_os("STRATA_DIFFERENTIAL_VERBOSE").is_some();
    let queries: Vec<String> = queries()
        .into_iter()
        .filter(|q| filter.as_deref().is_none_or(|f| q.contains(f)))
        .collect();
    let known = known_differences();
    let modes = modes(base, end);
    let prometheus_url = |mode: &Mode| prometheus.url(mode.path());
    let strata_url = |mode: &Mode| strata.url(mode.path());

    // Ask every query in every mode of both servers, a few workers at once.
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Vec<Outcome>>>> =
        Mutex::new((0..queries.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                let agent = crate::support::agent();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(query) = queries.get(index) else {
                        break;
                    };
                    let ordered = ordered(query);
                    let results: Vec<Outcome> = modes
                        .iter()
                        .map(|mode| {
                            let form = mode.form(query);
                            let p = ask(&agent, &prometheus_url(mode), None, &form);
                            let s = ask(&agent, &strata_url(mode), Some(TENANT), &form);
                            compare(&p, &s, ordered && matches!(mode, Mode::Instant { .. }))
                        })
                        .collect();
                    outcomes.lock().expect("outcomes")[index] = Some(results);
                }
            });
        }
    });
    let outcomes: Vec<Vec<Outcome>> = outcomes
        .into_inner()
        .expect("outcomes")
        .into_iter()
        .map(|o| o.expect("every query asked"))
        .collect();

    // Report.
    let mut matched = 0;
    let mut known_mismatches = 0;
    let mut known_queries = 0;
    let mut unexpected: Vec<String> = Vec::new();
    let mut now_matching: Vec<&str> = Vec::new();
    let mut annotation_differences = 0;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut annotation_examples: Vec<String> = Vec::new();
    for (query, results) in queries.iter().zip(&outcomes) {
        let listed = known.get(query.as_str());
        let mismatches: Vec<(&Mode, &String)> = modes
            .iter()
            .zip(results)
            .filter_map(|(mode, o)| o.mismatch.as_ref().map(|m| (mode, m)))
            .collect();
        matched += results.len() - mismatches.len();
        for (mode, outcome) in modes.iter().zip(results) {
            let kind = match outcome.kind {
                AnswerKind::Error => "errors",
                AnswerKind::Empty => "empty results",
                AnswerKind::Data => "non-empty results",
            };
            *kinds.entry(kind).or_default() += 1;
            if let Some(note) = &outcome.annotations {
                annotation_differences += 1;
                if verbose || annotation_examples.len() < 5 {
                    annotation_examples.push(format!("  {query}  [{}] {note}", mode.name()));
                }
            }
        }
        match (listed, mismatches.is_empty()) {
            (Some(_), true) => now_matching.push(query),
            (Some(reason), false) => {
                known_queries += 1;
                known_mismatches += mismatches.len();
                if verbose {
                    eprintln!("known difference: {query}  # {reason}");
                    for (mode, why) in &mismatches {
                        eprintln!("    [{}] {why}", mode.name());
                    }
                }
            }
            (None, true) => {}
            (None, false) => {
                let mut text = format!("{query}\n");
                for (mode, why) in &mismatches {
                    let _ = writeln!(text, "    [{}] {why}", mode.name());
                }
                unexpected.push(text);
            }
        }
    }
    let all: BTreeSet<&str> = queries.iter().map(String::as_str).collect();
    if filter.is_none() {
        for query in known.keys() {
            if !all.contains(query.as_str()) {
                eprintln!("known-differences.txt lists a query not in queries.txt: {query}");
            }
        }
    }
    for query in &now_matching {
        eprintln!("known difference now matches (trim known-differences.txt): {query}");
    }
    if annotation_differences > 0 {
        eprintln!(
            "warnings/infos differ in {annotation_differences} answers (not failed on), e.g.:\n{}",
            annotation_examples.join("\n")
        );
    }
    for text in &unexpected {
        eprintln!("MISMATCH {text}");
    }
    let total = queries.len() * modes.len();
    eprintln!(
        "differential: {} queries × {} modes = {total} comparisons: {matched} matched, \
         {known_mismatches} known differences ({known_queries} queries listed), \
         {} unexpected mismatches ({} queries); {:.1?}",
        queries.len(),
        modes.len(),
        total - matched - known_mismatches,
        unexpected.len(),
        started.elapsed()
    );
    eprintln!("differential: Prometheus answered {kinds:?}");
    assert!(
        unexpected.is_empty(),
        "{} queries differ from Prometheus and are not in known-differences.txt:\n{}",
        unexpected.len(),
        unexpected
            .iter()
            .map(|t| t.lines().next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(strata);
    drop(prometheus);
}

/// `<query>  # reason` lines of a test data file.
fn reasons(name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in testdata(name).lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (query, reason) = line
            .rsplit_once("  # ")
            .unwrap_or_else(|| panic!("{name}: expected `<query>  # reason`: {line}"));
        out.insert(query.to_owned(), reason.to_owned());
    }
    out
}

/// The `line:column:` a parse error starts with (empty if none).
fn error_position(message: &str) -> &str {
    let text = message
        .strip_prefix("invalid parameter \"query\": ")
        .unwrap_or(message);
    text.split_once(" parse error:")
        .map_or("", |(position, _)| position)
}

#[test]
fn parse_errors_match_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("strata"), &[]);
    let prometheus = Prometheus::start(
        &dir.path().join("prometheus"),
        "global:\n  scrape_interval: 15s\n",
        &[],
    );
    let agent = crate::support::agent();
    let known = reasons("parse-errors-known.txt");
    let queries: Vec<String> = testdata("parse-errors.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let mut mismatches = Vec::new();
    for query in &queries {
        let form = format!("query={}&time=100", encode(query));
        let (p_status, p) = ask(&agent, &prometheus.url("/api/v1/query"), None, &form);
        let (s_status, s) = ask(&agent, &strata.url("/api/v1/query"), Some(TENANT), &form);
        let p_error = p["error"].as_str().unwrap_or("");
        let s_error = s["error"].as_str().unwrap_or("");
        let same = if known.contains_key(query) {
            error_position(p_error) == error_position(s_error) && !p_error.is_empty()
        } else {
            p_error == s_error
        };
        if p_status == 0 || p_status != s_status || p["errorType"] != s["errorType"] || !same {
            mismatches.push(format!(
                "{query}\n    prometheus {p_status} {p_error}\n    strata     {s_status} {s_error}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} parse errors differ from Prometheus':\n{}",
        mismatches.len(),
        queries.len(),
        mismatches.join("\n")
    );
}
