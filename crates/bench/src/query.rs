//! `strata-bench query`: PromQL range-query wall time and peak memory,
//! Strata next to Prometheus on identical data.
//!
//! Both servers run at once, each with a fresh data directory. The same
//! remote-write bodies go to each (one hour of 15 s samples ending about
//! now, so Prometheus' head accepts them). Then every query is asked of both
//! through `POST /api/v1/query_range` with the same parameters: a warm-up
//! whose answers are compared, then `--repeat` timed runs alternating the
//! targets. See docs/benchmarks.md.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use prost::Message;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::encode::{Window, shard_of};
use crate::send::{agent, send_window};
use crate::target::{self, Memory, Server};
use crate::workload::Rng;
use crate::{median, mib};

const INTERVAL_MS: i64 = 15_000;
/// One hour of samples per series.
const ROUNDS: usize = 240;
/// Rounds per pushed window: each `TimeSeries` carries this many samples.
const WINDOW_ROUNDS: usize = 20;
/// Finite bucket bounds of the histogram and their `le` spelling; `+Inf` follows.
const BOUNDS: [(f64, &str); 10] = [
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (5.0, "5"),
];
/// Series per histogram instance: the buckets, `+Inf`, `_sum` and `_count`.
const HIST_SERIES: usize = BOUNDS.len() + 3;
/// Relative tolerance of the answer comparison.
const TOLERANCE: f64 = 1e-6;

const DEFAULT_QUERIES: [&str; 4] = [
    "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk(5, rate(bench_requests_total[5m]))",
    "rate(bench_requests_total[5m]) / on(instance) group_left sum by (instance) (rate(bench_latency_seconds_count[5m]))",
];

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Counter series `bench_requests_total{job,instance}`; a tenth as many
    /// instances also carry the histogram `bench_latency_seconds` (13 series each).
    #[arg(long, default_value_t = 10_000)]
    series: usize,

    /// Timed runs of each query per target, after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeat: u32,

    /// A query to run instead of the default four, repeatable.
    #[arg(long = "query", value_name = "PROMQL")]
    queries: Vec<String>,

    /// Seed of the data generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Sender threads while pushing the data (untimed).
    #[arg(long, default_value_t = 2)]
    concurrency: usize,

    /// Most series per remote-write request (each with 20 samples).
    #[arg(long, default_value_t = 500)]
    batch: usize,

    /// Seconds to let the servers settle after the push, before the queries.
    #[arg(long = "settle-secs", default_value_t = 5)]
    settle_secs: u64,

    /// Client timeout of one query, in seconds.
    #[arg(long = "timeout-secs", default_value_t = 600)]
    timeout_secs: u64,

    /// The strata binary.
    #[arg(long = "strata-bin", default_value = "target/release/strata")]
    strata_bin: PathBuf,

    /// Extra flag for strata, repeatable (e.g. --strata-arg=--querier.max-samples=100000000).
    #[arg(long = "strata-arg", value_name = "FLAG", allow_hyphen_values = true)]
    strata_args: Vec<String>,

    /// The Prometheus binary (scripts/get-prometheus.sh installs it).
    #[arg(
        long = "prometheus-bin",
        env = "STRATA_PROMETHEUS",
        default_value = ".cache/prometheus/prometheus"
    )]
    prometheus_bin: PathBuf,

    /// Extra flag for Prometheus, repeatable.
    #[arg(
        long = "prometheus-arg",
        value_name = "FLAG",
        allow_hyphen_values = true
    )]
    prometheus_args: Vec<String>,
}

// ---------------------------------------------------------------------------
// Data

#[derive(Debug)]
struct Counter {
    value: f64,
    /// Requests per second.
    rate: f64,
    /// The round at which the process "restarts" and the counter drops to 0.
    reset_round: Option<usize>,
}

#[derive(Debug)]
struct Hist {
    /// Cumulative counts per finite bound, then `+Inf`.
    cumulative: [f64; BOUNDS.len() + 1],
    sum: f64,
    /// Observations per second.
    rate: f64,
    /// Mean latency in seconds (exponentially distributed).
    mean: f64,
}

/// The series and their evolving values, deterministic for a seed.
#[derive(Debug)]
struct Generator {
    rng: Rng,
    counters: Vec<Counter>,
    hists: Vec<Hist>,
    /// Sorted labels of every series: the counters, then per histogram
    /// instance its buckets, `_sum` and `_count`.
    labels: Vec<Vec<(String, String)>>,
    /// Per series, its scrape offset within the 15 s interval (ms); all
    /// series of an instance share it.
    offsets: Vec<i64>,
    /// Values of every series at the current round.
    values: Vec<f64>,
    round: usize,
}

impl Generator {
    fn new(series: usize, seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let instances = series;
        let hist_instances = series / 10;
        let instance_offsets: Vec<i64> = (0..instances)
            .map(|_| rng.below(INTERVAL_MS as u64) as i64)
            .collect();
        let mut labels = Vec::with_capacity(series + hist_instances * HIST_SERIES);
        let mut offsets = Vec::with_capacity(labels.capacity());
        let mut counters = Vec::with_capacity(series);
        for (i, &offset) in instance_offsets.iter().enumerate() {
            labels.push(vec![
                ("__name__".to_owned(), "bench_requests_total".to_owned()),
                ("instance".to_owned(), format!("inst-{i}")),
                ("job".to_owned(), format!("job-{}", i % 10)),
            ]);
            offsets.push(offset);
            // Log-uniform between 0.1 and 100 requests/s.
            let rate = 10f64.powf(rng.range(-1.0, 2.0));
            let uptime = rng.range(3600.0, 30.0 * 86_400.0);
            // One series in a hundred restarts once during the hour.
            let reset_round = (rng.below(100) == 0).then(|| rng.below(ROUNDS as u64) as usize);
            counters.push(Counter {
                value: (rate * uptime).round(),
                rate,
                reset_round,
            });
        }
        let mut hists = Vec::with_capacity(hist_instances);
        for (i, &offset) in instance_offsets.iter().enumerate().take(hist_instances) {
            let instance = format!("inst-{i}");
            let job = format!("job-{}", i % 10);
            let series_labels = |name: &str, le: Option<&str>| {
                let mut l = vec![
                    ("__name__".to_owned(), name.to_owned()),
                    ("instance".to_owned(), instance.clone()),
                    ("job".to_owned(), job.clone()),
                ];
                if let Some(le) = le {
                    l.push(("le".to_owned(), le.to_owned()));
                }
                l
            };
            for (_, le) in BOUNDS {
                labels.push(series_labels("bench_latency_seconds_bucket", Some(le)));
            }
            labels.push(series_labels("bench_latency_seconds_bucket", Some("+Inf")));
            labels.push(series_labels("bench_latency_seconds_sum", None));
            labels.push(series_labels("bench_latency_seconds_count", None));
            offsets.extend(std::iter::repeat_n(offset, HIST_SERIES));
            let rate = 10f64.powf(rng.range(0.0, 1.7));
            let mean = rng.range(0.02, 0.4);
            let uptime = rng.range(3600.0, 30.0 * 86_400.0);
            let total = (rate * uptime).round();
            let mut cumulative = [total; BOUNDS.len() + 1];
            for (c, (bound, _)) in cumulative.iter_mut().zip(BOUNDS) {
                *c = (total * (1.0 - (-bound / mean).exp())).round();
            }
            hists.push(Hist {
                cumulative,
                sum: ((total * mean) * 1000.0).round() / 1000.0,
                rate,
                mean,
            });
        }
        let values = vec![0.0; labels.len()];
        Generator {
            rng,
            counters,
            hists,
            labels,
            offsets,
            values,
            round: 0,
        }
    }

    /// Moves every series to the next round and fills `values`.
    fn advance(&mut self) {
        let interval = INTERVAL_MS as f64 / 1000.0;
        let rng = &mut self.rng;
        for (c, value) in self.counters.iter_mut().zip(&mut self.values) {
            if c.reset_round == Some(self.round) {
                c.value = 0.0;
            }
            c.value += (c.rate * interval * rng.range(0.7, 1.3)).round();
            *value = c.value;
        }
        let hist_values = self.values[self.counters.len()..].chunks_mut(HIST_SERIES);
        for (h, values) in self.hists.iter_mut().zip(hist_values) {
            let n = (h.rate * interval * rng.range(0.7, 1.3)).round();
            // The latency drifts from round to round, so quantiles move.
            let mean = h.mean * rng.range(0.8, 1.25);
            for (c, (bound, _)) in h.cumulative.iter_mut().zip(BOUNDS) {
                *c += (n * (1.0 - (-bound / mean).exp())).round();
            }
            h.cumulative[BOUNDS.len()] += n;
            h.sum += (n * mean * 1000.0).round() / 1000.0;
            values[..=BOUNDS.len()].copy_from_slice(&h.cumulative);
            values[BOUNDS.len() + 1] = h.sum;
            values[BOUNDS.len() + 2] = h.cumulative[BOUNDS.len()];
        }
        self.round += 1;
    }

    /// Encodes the next `rounds` rounds as remote-write bodies: each series
    /// goes to the sender shard its labels hash to, with all of the window's
    /// samples in one `TimeSeries`.
    fn window(&mut self, rounds: usize, first_ms: i64, shards: usize, batch: usize) -> Window {
        let series = self.labels.len();
        let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(rounds); series];
        for _ in 0..rounds {
            let round = self.round as i64;
            self.advance();
            for (s, (out, &value)) in samples.iter_mut().zip(&self.values).enumerate() {
                out.push(Sample {
                    value,
                    timestamp: first_ms + round * INTERVAL_MS + self.offsets[s],
                });
            }
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); shards];
        for (s, labels) in self.labels.iter().enumerate() {
            members[shard_of(labels, shards)].push(s);
        }
        let mut window = Window {
            shards: Vec::with_capacity(shards),
            rounds: rounds as u32,
            samples: (series * rounds) as u64,
            ..Window::default()
        };
        for indices in members {
            let bodies: Vec<Vec<u8>> = indices
                .chunks(batch)
                .map(|chunk| {
                    let request = WriteRequest {
                        timeseries: chunk
                            .iter()
                            .map(|&s| TimeSeries {
                                labels: self.labels[s]
                                    .iter()
                                    .map(|(name, value)| Label {
                                        name: name.clone(),
                                        value: value.clone(),
                                    })
                                    .collect(),
                                samples: std::mem::take(&mut samples[s]),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    };
                    snap::raw::Encoder::new()
                        .compress_vec(&request.encode_to_vec())
                        .unwrap_or_else(|e| panic!("snappy compression: {e}"))
                })
                .collect();
            window.requests += bodies.len() as u64;
            window.bytes += bodies.iter().map(|b| b.len() as u64).sum::<u64>();
            window.shards.push(bodies);
        }
        window
    }
}

// ---------------------------------------------------------------------------
// Targets and queries

#[derive(Debug)]
struct Target {
    name: &'static str,
    server: Server,
    /// Seconds spent in the send phases of the push.
    push_secs: f64,
    push_failed: u64,
    first_error: Option<String>,
    after_push: Option<Memory>,
    /// Whether writing 5 to /proc/<pid>/clear_refs reset VmHWM before the queries.
    hwm_reset: bool,
    after_queries: Option<Memory>,
}

/// One target's side of one query.
#[derive(Debug, Default)]
struct Timing {
    /// Wall seconds of the timed runs, request sent to answer fully read.
    runs: Vec<f64>,
    /// CPU seconds the server used over the timed runs, per run.
    cpu_per_run: Option<f64>,
    /// Bytes of the warm-up answer.
    answer_bytes: usize,
    /// Series of the warm-up answer.
    result_series: Option<usize>,
    error: Option<String>,
}

#[derive(Debug)]
struct QueryOutcome {
    query: String,
    timings: [Timing; 2],
    /// Differences between the two answers (empty: equal).
    mismatches: Vec<String>,
}

/// The time range of the data and the queries.
#[derive(Debug, Clone, Copy)]
struct Range {
    /// Round 0's base timestamp; a series' sample `k` lands at
    /// `first_ms + k × 15 s + offset`.
    first_ms: i64,
    start_ms: i64,
    end_ms: i64,
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// POSTs a form to `base + path` and returns the wall time and the answer.
fn post_form(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    params: &[(&str, &str)],
) -> Result<(f64, String)> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let url = format!("{base}{path}");
    let started = Instant::now();
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_string()
        .with_context(|| format!("read the answer of POST {url}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    if status != 200 {
        let mut shown = text.trim().to_owned();
        shown.truncate(600);
        bail!("HTTP {status}: {shown}");
    }
    Ok((elapsed, text))
}

fn query_range(
    agent: &ureq::Agent,
    base: &str,
    query: &str,
    range: Range,
) -> Result<(f64, String)> {
    let (start, end) = (seconds(range.start_ms), seconds(range.end_ms));
    post_form(
        agent,
        base,
        "/api/v1/query_range",
        &[
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", "15"),
        ],
    )
}

/// The single value of an instant query's one-element vector answer.
fn instant_scalar(agent: &ureq::Agent, base: &str, query: &str, at_ms: i64) -> Result<f64> {
    let (_, text) = post_form(
        agent,
        base,
        "/api/v1/query",
        &[("query", query), ("time", &seconds(at_ms))],
    )?;
    let json: serde_json::Value = serde_json::from_str(&text).context("answer is not JSON")?;
    let value = json["data"]["result"][0]["value"][1]
        .as_str()
        .with_context(|| format!("no single value in {text:.300}"))?;
    value.parse().with_context(|| format!("value {value:?}"))
}

/// A parsed matrix answer: series by sorted labels, points by ms timestamp.
#[derive(Debug)]
struct Answer {
    series: HashMap<BTreeMap<String, String>, Vec<(i64, f64)>>,
    warnings: Vec<String>,
    infos: Vec<String>,
}

fn parse_answer(text: &str) -> Result<Answer> {
    let json: serde_json::Value = serde_json::from_str(text).context("answer is not JSON")?;
    if json["status"] != "success" {
        bail!("status is not success: {text:.300}");
    }
    if json["data"]["resultType"] != "matrix" {
        bail!(
            "resultType is {} (expected matrix)",
            json["data"]["resultType"]
        );
    }
    let strings = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|w| w.as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut series = HashMap::new();
    for entry in json["data"]["result"]
        .as_array()
        .context("no result array")?
    {
        let labels: BTreeMap<String, String> = entry["metric"]
            .as_object()
            .context("series without metric")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let mut points = Vec::new();
        for point in entry["values"]
            .as_array()
            .context("series without values")?
        {
            let t = point[0].as_f64().context("timestamp is not a number")?;
            let v = point[1].as_str().context("value is not a string")?;
            let v: f64 = v.parse().with_context(|| format!("value {v:?}"))?;
            points.push(((t * 1000.0).round() as i64, v));
        }
        if series.insert(labels.clone(), points).is_some() {
            bail!("duplicate series {labels:?} in the answer");
        }
    }
    Ok(Answer {
        series,
        warnings: strings("warnings"),
        infos: strings("infos"),
    })
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs())
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Differences between Strata's answer and Prometheus', a few examples each.
fn compare(strata: &Answer, prometheus: &Answer) -> Vec<String> {
    const EXAMPLES: usize = 3;
    let mut out = Vec::new();
    if strata.series.len() != prometheus.series.len() {
        out.push(format!(
            "series count: Strata {}, Prometheus {}",
            strata.series.len(),
            prometheus.series.len()
        ));
    }
    let mut sorted = |a: &Answer, b: &Answer, what: &str| {
        let mut only: Vec<&BTreeMap<String, String>> = a
            .series
            .keys()
            .filter(|k| !b.series.contains_key(*k))
            .collect();
        only.sort();
        if !only.is_empty() {
            let shown: Vec<String> = only.iter().take(EXAMPLES).map(|l| show_labels(l)).collect();
            out.push(format!(
                "{} series only in {what}, e.g. {}",
                only.len(),
                shown.join(" ")
            ));
        }
    };
    sorted(strata, prometheus, "Strata");
    sorted(prometheus, strata, "Prometheus");

    let mut keys: Vec<&BTreeMap<String, String>> = strata
        .series
        .keys()
        .filter(|k| prometheus.series.contains_key(*k))
        .collect();
    keys.sort();
    let (mut points, mut bad_points, mut bad_series) = (0usize, 0usize, 0usize);
    let mut examples = Vec::new();
    for key in keys {
        let s: HashMap<i64, f64> = strata.series[key].iter().copied().collect();
        let p: HashMap<i64, f64> = prometheus.series[key].iter().copied().collect();
        let mut stamps: Vec<i64> = s.keys().chain(p.keys()).copied().collect();
        stamps.sort_unstable();
        stamps.dedup();
        let mut series_bad = false;
        for t in stamps {
            points += 1;
            let (a, b) = (s.get(&t), p.get(&t));
            let equal = matches!((a, b), (Some(a), Some(b)) if same_value(*a, *b));
            if !equal {
                bad_points += 1;
                series_bad = true;
                if examples.len() < EXAMPLES {
                    let show = |v: Option<&f64>| v.map_or("absent".to_owned(), |v| format!("{v}"));
                    examples.push(format!(
                        "{} @{}: Strata {}, Prometheus {}",
                        show_labels(key),
                        seconds(t),
                        show(a),
                        show(b)
                    ));
                }
            }
        }
        bad_series += usize::from(series_bad);
    }
    if bad_points > 0 {
        out.push(format!(
            "{bad_points} of {points} points differ (beyond {TOLERANCE:e} relative, or present on one side only) in {bad_series} series, e.g. {}",
            examples.join("; ")
        ));
    }
    if strata.warnings != prometheus.warnings {
        out.push(format!(
            "warnings: Strata {:?}, Prometheus {:?}",
            strata.warnings, prometheus.warnings
        ));
    }
    if strata.infos != prometheus.infos {
        out.push(format!(
            "infos: Strata {:?}, Prometheus {:?}",
            strata.infos, prometheus.infos
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// The benchmark

pub fn run(args: &QueryArgs) -> Result<bool> {
    if args.series < 10 {
        bail!("--series must be at least 10");
    }
    let queries: Vec<String> = if args.queries.is_empty() {
        DEFAULT_QUERIES.iter().map(|&q| q.to_owned()).collect()
    } else {
        args.queries.clone()
    };
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    // The hour ends at the last 15 s boundary before now; every sample is
    // older than now and younger than an hour and a quarter.
    let aligned = now_ms / INTERVAL_MS * INTERVAL_MS;
    let first_ms = aligned - ROUNDS as i64 * INTERVAL_MS;
    let range = Range {
        first_ms,
        start_ms: first_ms + INTERVAL_MS,
        end_ms: aligned,
    };

    let mut generator = Generator::new(args.series, args.seed);
    let total_series = generator.labels.len();
    let total_samples = (total_series * ROUNDS) as u64;
    eprintln!(
        "data: {} counter series, {} histogram instances ({} series), {total_series} series, \
         {ROUNDS} samples each, {total_samples} samples",
        args.series,
        args.series / 10,
        (args.series / 10) * HIST_SERIES
    );

    let strata = Server::start_strata(&args.strata_bin, &args.strata_args)?;
    let prometheus = Server::start_prometheus(&args.prometheus_bin, &args.prometheus_args)?;
    let mut targets = [strata, prometheus].map(|server| Target {
        name: if server.name == "strata" {
            "Strata"
        } else {
            "Prometheus"
        },
        server,
        push_secs: 0.0,
        push_failed: 0,
        first_error: None,
        after_push: None,
        hwm_reset: false,
        after_queries: None,
    });

    // Push, window by window (encoding is untimed), the same bodies to both.
    let shards = args.concurrency.max(1);
    let batch = args.batch.max(1);
    let mut encode_secs = 0.0;
    let mut pushed = 0;
    while pushed < ROUNDS {
        let rounds = WINDOW_ROUNDS.min(ROUNDS - pushed);
        let encode_start = Instant::now();
        let window = generator.window(rounds, first_ms, shards, batch);
        encode_secs += encode_start.elapsed().as_secs_f64();
        for t in &mut targets {
            let stats = send_window(&t.server.write_url(), &[], &window);
            t.push_secs += stats.elapsed.as_secs_f64();
            t.push_failed += stats.failed;
            if t.first_error.is_none() {
                t.first_error = stats.first_error;
            }
        }
        pushed += rounds;
        eprintln!(
            "pushed {pushed}/{ROUNDS} rounds ({} requests, {:.1} MiB this window)",
            window.requests,
            mib(window.bytes)
        );
    }
    drop(generator);
    for t in &targets {
        eprintln!(
            "{}: push took {:.1}s ({:.0} samples/s), {} requests failed{}",
            t.name,
            t.push_secs,
            total_samples as f64 / t.push_secs.max(1e-9),
            t.push_failed,
            t.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(", first: {e}"))
        );
        if t.push_failed > 0 {
            eprintln!("{}: log tail:\n{}", t.name, t.server.log_tail());
        }
    }
    eprintln!("encoding took {encode_secs:.1}s (untimed)");
    if targets.iter().any(|t| t.push_failed > 0) {
        bail!("the push failed; no query was run");
    }

    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let agent = agent(Duration::from_secs(args.timeout_secs.max(1)));
    let mut notes = Vec::new();
    // Ingestion check: every series, every sample, on both.
    for t in &targets {
        let base = &t.server.base;
        let checks = [
            (
                r#"count({__name__=~"bench_.+"})"#,
                total_series as f64,
                "series",
            ),
            (
                concat!(
                    "sum(count_over_time(bench_requests_total[2h]))",
                    " + sum(count_over_time(bench_latency_seconds_bucket[2h]))",
                    " + sum(count_over_time(bench_latency_seconds_sum[2h]))",
                    " + sum(count_over_time(bench_latency_seconds_count[2h]))"
                ),
                total_samples as f64,
                "samples",
            ),
        ];
        for (query, expected, what) in checks {
            match instant_scalar(&agent, base, query, range.end_ms) {
                Ok(n) if n == expected => {}
                Ok(n) => notes.push(format!(
                    "{}: holds {n} {what}, expected {expected} (`{query}`)",
                    t.name
                )),
                Err(e) => notes.push(format!("{}: `{query}` failed: {e:#}", t.name)),
            }
        }
    }

    let ticks = target::clock_ticks();
    for t in &mut targets {
        t.after_push = target::memory(t.server.pid).ok();
        // Linux resets VmHWM to the current RSS on writing 5 to clear_refs.
        t.hwm_reset = std::fs::write(format!("/proc/{}/clear_refs", t.server.pid), "5").is_ok();
    }

    let mut outcomes = Vec::new();
    for query in &queries {
        eprintln!("query: {query}");
        let mut outcome = QueryOutcome {
            query: query.clone(),
            timings: [Timing::default(), Timing::default()],
            mismatches: Vec::new(),
        };
        // Warm-up, and the answers compared.
        let mut answers: [Option<Answer>; 2] = [None, None];
        for (i, t) in targets.iter().enumerate() {
            let timing = &mut outcome.timings[i];
            match query_range(&agent, &t.server.base, query, range) {
                Ok((secs, text)) => {
                    eprintln!("  {} warm-up {secs:.3}s, {} bytes", t.name, text.len());
                    timing.answer_bytes = text.len();
                    match parse_answer(&text) {
                        Ok(answer) => {
                            timing.result_series = Some(answer.series.len());
                            answers[i] = Some(answer);
                        }
                        Err(e) => timing.error = Some(format!("bad answer: {e:#}")),
                    }
                }
                Err(e) => timing.error = Some(format!("{e:#}")),
            }
        }
        match &answers {
            [Some(s), Some(p)] => outcome.mismatches = compare(s, p),
            _ => outcome
                .mismatches
                .push("not compared: a target gave no answer".to_owned()),
        }
        drop(answers);
        for m in &outcome.mismatches {
            eprintln!("  MISMATCH: {m}");
        }

        // Timed runs, alternating which target goes first.
        let cpu_before: Vec<Option<Duration>> = targets
            .iter()
            .map(|t| target::cpu_time(t.server.pid, ticks).ok())
            .collect();
        for run in 0..args.repeat {
            let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let timing = &mut outcome.timings[i];
                if timing.error.is_some() {
                    continue;
                }
                match query_range(&agent, &targets[i].server.base, query, range) {
                    Ok((secs, _)) => timing.runs.push(secs),
                    Err(e) => timing.error = Some(format!("{e:#}")),
                }
            }
        }
        for (i, t) in targets.iter().enumerate() {
            let timing = &mut outcome.timings[i];
            if let (Some(before), Ok(after), false) = (
                cpu_before[i],
                target::cpu_time(t.server.pid, ticks),
                timing.runs.is_empty(),
            ) {
                timing.cpu_per_run =
                    Some(after.saturating_sub(before).as_secs_f64() / timing.runs.len() as f64);
            }
            eprintln!(
                "  {}: median {} s{}",
                t.name,
                median(timing.runs.clone()).map_or("n/a".to_owned(), |m| format!("{m:.3}")),
                timing
                    .error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", error: {e}"))
            );
        }
        outcomes.push(outcome);
    }

    for t in &mut targets {
        t.after_queries = target::memory(t.server.pid).ok();
    }
    print_report(
        args,
        total_series,
        total_samples,
        range,
        &targets,
        &outcomes,
        &notes,
    );
    for t in &mut targets {
        if let Err(e) = t.server.stop(Duration::from_secs(60)) {
            eprintln!("{}: {e:#}", t.name);
        }
    }
    let ok = notes.is_empty()
        && outcomes
            .iter()
            .all(|o| o.mismatches.is_empty() && o.timings.iter().all(|t| t.error.is_none()));
    Ok(ok)
}

fn print_report(
    args: &QueryArgs,
    total_series: usize,
    total_samples: u64,
    range: Range,
    targets: &[Target; 2],
    outcomes: &[QueryOutcome],
    notes: &[String],
) {
    println!(
        "Data: {} counter series + {} histogram instances × {HIST_SERIES} series = {total_series} \
         series, {ROUNDS} samples each at 15 s ({total_samples} samples), ending at {}. \
         Range queries over {} → {} at step 15 s (240 steps); 1 warm-up, then {} timed runs \
         per target, alternating.\n",
        args.series,
        args.series / 10,
        seconds(range.first_ms + ROUNDS as i64 * INTERVAL_MS),
        seconds(range.start_ms),
        seconds(range.end_ms),
        args.repeat
    );
    println!(
        "| query | result series | Strata median s | Strata min s | Prometheus median s | Prometheus min s | Strata ÷ Prometheus (median) | CPU s/run Strata / Prometheus | answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for o in outcomes {
        let [s, p] = &o.timings;
        let med = |t: &Timing| median(t.runs.clone());
        let min = |t: &Timing| t.runs.iter().copied().reduce(f64::min);
        let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        let ratio = match (med(s), med(p)) {
            (Some(a), Some(b)) if b > 0.0 => format!("**{:.2}×**", a / b),
            _ => "n/a".to_owned(),
        };
        let count = |t: &Timing| t.result_series.map_or("n/a".to_owned(), |n| n.to_string());
        let series = if s.result_series == p.result_series {
            count(s)
        } else {
            format!("{} / {}", count(s), count(p))
        };
        let cpu = |t: &Timing| {
            t.cpu_per_run
                .map_or("n/a".to_owned(), |c| format!("{c:.2}"))
        };
        let verdict = if o.mismatches.is_empty() {
            "equal".to_owned()
        } else {
            "**MISMATCH**".to_owned()
        };
        println!(
            "| `{}` | {series} | {} | {} | {} | {} | {ratio} | {} / {} | {verdict} |",
            o.query.replace('|', "\\|"),
            show(med(s)),
            show(min(s)),
            show(med(p)),
            show(min(p)),
            cpu(s),
            cpu(p),
        );
    }
    println!();
    println!(
        "| target | push s | RSS after push MiB | peak RSS through the push MiB | peak RSS during the queries MiB |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mem = |m: Option<Memory>, f: fn(&Memory) -> u64| {
        m.map_or("n/a".to_owned(), |m| format!("{:.1}", mib(f(&m))))
    };
    for t in targets {
        let during = if t.hwm_reset {
            mem(t.after_queries, |m| m.hwm)
        } else {
            format!(
                "n/a (VmHWM not reset; overall {})",
                mem(t.after_queries, |m| m.hwm)
            )
        };
        println!(
            "| {} | {:.1} | {} | {} | {during} |",
            t.name,
            t.push_secs,
            mem(t.after_push, |m| m.rss),
            mem(t.after_push, |m| m.hwm),
        );
    }
    println!();
    let [s, p] = targets;
    if let (Some(a), Some(b), true, true) =
        (s.after_queries, p.after_queries, s.hwm_reset, p.hwm_reset)
        && b.hwm > 0
    {
        println!(
            "Peak RSS during the queries, Strata ÷ Prometheus: {:.2}×\n",
            a.hwm as f64 / b.hwm as f64
        );
    }
    for o in outcomes {
        for (t, timing) in targets.iter().zip(&o.timings) {
            if let Some(e) = &timing.error {
                println!("- `{}` on {}: ERROR {e}", o.query, t.name);
            }
        }
        for m in &o.mismatches {
            println!("- `{}`: MISMATCH {m}", o.query);
        }
        let [s, p] = &o.timings;
        if s.answer_bytes != p.answer_bytes && s.error.is_none() && p.error.is_none() {
            println!(
                "- `{}`: answer {} bytes from Strata, {} from Prometheus",
                o.query, s.answer_bytes, p.answer_bytes
            );
        }
    }
    for n in notes {
        println!("- ingestion check: {n}");
    }
}
