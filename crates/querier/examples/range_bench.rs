//! In-process timing of PromQL range queries, without a server:
//! `cargo run --release -p strata-querier --example range_bench -- [series] [repeat]`.
//!
//! The data resembles `strata-bench query`'s: `series` counters
//! `bench_requests_total{instance,job}` and, for a tenth as many instances,
//! a classic histogram `bench_latency_seconds_{bucket,sum,count}` (10 finite
//! buckets and `+Inf`); one hour of 15 s samples with a per-instance scrape
//! offset. Each query runs over the hour at a 15 s step; the median wall
//! time of `repeat` runs is printed with a digest of the answer, so a change
//! to the engine can be checked to keep the answers bit for bit.

use std::io::Write;
use std::time::Instant;

use strata_common::labels::label;
use strata_querier::{Engine, EngineOptions, MemoryQueryable, Value};

const INTERVAL_MS: i64 = 15_000;
const ROUNDS: i64 = 240;
const START_MS: i64 = 1_700_000_000_000;
const BOUNDS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

const QUERIES: [&str; 7] = [
    "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk(5, rate(bench_requests_total[5m]))",
    "rate(bench_requests_total[5m]) / on(instance) group_left sum by (instance) (rate(bench_latency_seconds_count[5m]))",
    "rate(bench_requests_total[5m]) / on(instance, job) group_left bench_latency_seconds_count",
    "count(bench_requests_total)",
    "histogram_quantile(0.9, sum by (le, instance) (rate(bench_latency_seconds_bucket[5m])))",
];

/// SplitMix64: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn build(series: usize) -> MemoryQueryable {
    let mut rng = Rng(1);
    let mut q = MemoryQueryable::new();
    for i in 0..series {
        let offset = (rng.next() % INTERVAL_MS as u64) as i64;
        let rate = 10f64.powf(rng.unit() * 3.0 - 1.0);
        let mut value = (rate * 86_400.0 * (1.0 + rng.unit() * 10.0)).round();
        let reset = rng
            .next()
            .is_multiple_of(100)
            .then(|| (rng.next() % ROUNDS as u64) as i64);
        let samples: Vec<(i64, f64)> = (0..ROUNDS)
            .map(|r| {
                if reset == Some(r) {
                    value = 0.0;
                }
                value += (rate * 15.0 * (0.7 + rng.unit() * 0.6)).round();
                (START_MS + r * INTERVAL_MS + offset, value)
            })
            .collect();
        let instance = format!("inst-{i}");
        let job = format!("job-{}", i % 10);
        q.add(
            vec![
                label("__name__", "bench_requests_total"),
                label("instance", &instance),
                label("job", &job),
            ],
            &samples,
        );
        if i < series / 10 {
            let rate = 10f64.powf(rng.unit() * 1.7);
            let mean = 0.02 + rng.unit() * 0.38;
            let mut cumulative = [0.0f64; 11];
            let mut sum = 0.0;
            let mut per_series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 13];
            for r in 0..ROUNDS {
                let n = (rate * 15.0 * (0.7 + rng.unit() * 0.6)).round();
                let m = mean * (0.8 + rng.unit() * 0.45);
                for (b, c) in cumulative.iter_mut().enumerate() {
                    let bound: f64 = BOUNDS[b].parse().unwrap_or(f64::INFINITY);
                    *c += (n * (1.0 - (-bound / m).exp())).round();
                }
                sum += (n * m * 1000.0).round() / 1000.0;
                let t = START_MS + r * INTERVAL_MS + offset;
                for (b, c) in cumulative.iter().enumerate() {
                    per_series[b].push((t, *c));
                }
                per_series[11].push((t, sum));
                per_series[12].push((t, cumulative[10]));
            }
            for (b, samples) in per_series.iter().enumerate() {
                let (name, le) = match b {
                    0..=10 => ("bench_latency_seconds_bucket", Some(BOUNDS[b])),
                    11 => ("bench_latency_seconds_sum", None),
                    _ => ("bench_latency_seconds_count", None),
                };
                let mut labels = vec![
                    label("__name__", name),
                    label("instance", &instance),
                    label("job", &job),
                ];
                if let Some(le) = le {
                    labels.push(label("le", le));
                }
                q.add(labels, samples);
            }
        }
    }
    q
}

/// Series, points and a digest of every label and value bit.
fn digest(value: &Value) -> (usize, usize, u64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match value {
        Value::Matrix(series) => {
            let mut points = 0;
            for s in series {
                for l in &s.labels {
                    l.name
                        .bytes()
                        .chain(l.value.bytes())
                        .for_each(|b| mix(u64::from(b)));
                }
                for &(t, v) in &s.points {
                    mix(t as u64);
                    mix(v.to_bits());
                }
                points += s.points.len();
            }
            (series.len(), points, h)
        }
        _ => (0, 0, 0),
    }
}

/// CPU time of this process so far (all threads), in seconds, from
/// `/proc/self/stat` (clock ticks, assumed 100 per second); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at state.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let repeat: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let only: Option<String> = args.next();
    let built = Instant::now();
    let q = build(series);
    eprintln!("built {series} counters in {:.2?}", built.elapsed());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let engine = Engine::new(EngineOptions::default());
    let end = START_MS + (ROUNDS - 1) * INTERVAL_MS;
    for query in QUERIES {
        if only.as_deref().is_some_and(|o| !query.contains(o)) {
            continue;
        }
        let mut times = Vec::with_capacity(repeat);
        let mut last = None;
        let cpu_before = cpu_seconds();
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let out = runtime.block_on(engine.range(&q, query, START_MS, end, INTERVAL_MS));
            times.push(started.elapsed().as_secs_f64());
            last = Some(out);
        }
        let cpu = (cpu_seconds() - cpu_before) / repeat.max(1) as f64;
        times.sort_by(f64::total_cmp);
        let (n, points, h) = match &last {
            Some(Ok(out)) => digest(&out.value),
            Some(Err(e)) => panic!("{query}: {e}"),
            None => (0, 0, 0),
        };
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(
            stdout,
            "{:>8.4}s median {:>8.4}s min {cpu:>7.3}s cpu  {n:>6} series {points:>8} points  digest {h:016x}  {query}",
            times[times.len() / 2],
            times[0],
        );
    }
}
