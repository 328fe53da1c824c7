//! `strata-bench frontend`: what the query frontend buys on a dashboard.
//! Days of data pushed to two `strata` processes, one splitting range
//! queries by 24 h with the results cache, one evaluating them whole; then
//! a dashboard's query mix over the whole range asked cold of both, again
//! (the cached repeat), and one step later (Grafana's moving refresh).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use prost::Message;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::send::agent;
use crate::target::Server;

#[derive(Debug, Args)]
pub struct FrontendArgs {
    /// The `strata` binary (a release build).
    #[arg(long = "strata-bin", default_value = "target/release/strata")]
    strata_bin: PathBuf,
    /// Days of data, ending now.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Counter series (plus as many gauges).
    #[arg(long, default_value_t = 200)]
    series: usize,
    /// Seconds between samples.
    #[arg(long = "interval-secs", default_value_t = 60)]
    interval_secs: i64,
    /// Step of the dashboard's range queries, seconds.
    #[arg(long = "step-secs", default_value_t = 300)]
    step_secs: i64,
}

/// A 7-day dashboard: rates, sums by label, gauges, quantile-like tops.
const DASHBOARD: &[&str] = &[
    "sum(rate(bench_requests_total[5m]))",
    "sum by (code) (rate(bench_requests_total[5m]))",
    "topk(5, rate(bench_requests_total[10m]))",
    "avg by (zone) (bench_temperature)",
    "max_over_time(bench_temperature[1h])",
    "sum(increase(bench_requests_total[1h])) / 3600",
];

const MINUTE_MS: i64 = 60_000;

fn now_ms() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

fn labels(pairs: &[(&str, String)]) -> Vec<Label> {
    let mut labels: Vec<Label> = pairs
        .iter()
        .map(|(n, v)| Label {
            name: (*n).to_owned(),
            value: v.clone(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels
}

/// One hour of samples of every series, starting at `from`.
fn hour(args: &FrontendArgs, from: i64, to: i64) -> WriteRequest {
    let interval = args.interval_secs * 1000;
    let mut timeseries = Vec::new();
    for i in 0..args.series {
        let counter = labels(&[
            ("__name__", "bench_requests_total".to_owned()),
            ("instance", format!("host-{i}")),
            ("code", ["200", "404", "500"][i % 3].to_owned()),
        ]);
        let gauge = labels(&[
            ("__name__", "bench_temperature".to_owned()),
            ("instance", format!("host-{i}")),
            ("zone", format!("zone-{}", i % 4)),
        ]);
        let mut counts = Vec::new();
        let mut temps = Vec::new();
        let mut t = from.div_euclid(interval) * interval;
        if t < from {
            t += interval;
        }
        while t < to {
            let k = (t / interval) as f64;
            counts.push(Sample {
                value: k * (1 + i % 7) as f64,
                timestamp: t,
            });
            temps.push(Sample {
                value: 20.0 + (k / 60.0 + i as f64).sin() * 5.0,
                timestamp: t,
            });
            t += interval;
        }
        for (labels, samples) in [(counter, counts), (gauge, temps)] {
            timeseries.push(TimeSeries {
                labels,
                samples,
                exemplars: Vec::new(),
                histograms: Vec::new(),
            });
        }
    }
    WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
}

fn push(agent: &ureq::Agent, server: &Server, request: &WriteRequest) -> Result<()> {
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
    let response = agent
        .post(server.write_url())
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .send(&body[..])
        .context("remote write")?;
    if response.status().as_u16() != 204 {
        bail!("remote write answered {}", response.status());
    }
    Ok(())
}

/// Asks every dashboard query over `start..=end`; the total wall time, the
/// bodies, and the cache headers seen.
fn dashboard(
    agent: &ureq::Agent,
    server: &Server,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Phase> {
    let started = Instant::now();
    let mut times = Vec::new();
    let mut bodies = Vec::new();
    let mut caches = Vec::new();
    for query in DASHBOARD {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("query", (*query).to_owned()),
                ("start", format!("{}", start / 1000)),
                ("end", format!("{}", end / 1000)),
                ("step", format!("{}", step / 1000)),
            ])
            .finish();
        let asked = Instant::now();
        let mut response = agent
            .post(format!("{}/api/v1/query_range", server.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form.as_bytes())
            .context("query")?;
        caches.push(
            response
                .headers()
                .get("x-strata-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        );
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()?;
        if status != 200 {
            bail!(
                "{query}: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        times.push(asked.elapsed().as_secs_f64());
        bodies.push(text);
    }
    Ok(Phase {
        total: started.elapsed().as_secs_f64(),
        times,
        bodies,
        caches,
    })
}

/// One pass over the dashboard.
struct Phase {
    total: f64,
    /// Wall time per query, seconds.
    times: Vec<f64>,
    bodies: Vec<String>,
    caches: Vec<String>,
}

pub fn run(args: &FrontendArgs) -> Result<bool> {
    let now = now_ms()?;
    let step = args.step_secs * 1000;
    // Grafana aligns a range to its step; the data ends a little after.
    let end = now / step * step;
    let first = end - args.days * 24 * 60 * MINUTE_MS;
    let split = Server::start_strata(&args.strata_bin, &[])?;
    let whole = Server::start_strata(
        &args.strata_bin,
        &[
            "--query-frontend.split-queries-by-interval".to_owned(),
            "0s".to_owned(),
        ],
    )?;
    let agent = agent(Duration::from_secs(600));
    let started = Instant::now();
    let mut from = first - 10 * MINUTE_MS;
    let mut samples = 0;
    while from < now {
        let to = (from + 60 * MINUTE_MS).min(now);
        let request = hour(args, from, to);
        samples += request
            .timeseries
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>();
        push(&agent, &split, &request)?;
        push(&agent, &whole, &request)?;
        from = to;
    }
    eprintln!(
        "pushed {samples} samples ({} series, {} days) to both in {:.1?}",
        args.series * 2,
        args.days,
        started.elapsed()
    );

    let unsplit = dashboard(&agent, &whole, first, end, step)?;
    let cold = dashboard(&agent, &split, first, end, step)?;
    let cached = dashboard(&agent, &split, first, end, step)?;
    // One step later: the window moves, the recent part is recomputed.
    let moving = dashboard(&agent, &split, first + step, end + step, step)?;
    let moving_whole = dashboard(&agent, &whole, first + step, end + step, step)?;
    // A range ending an hour ago: everything old enough to come from the cache.
    let old_end = end - 12 * step;
    let old_cold = dashboard(&agent, &whole, first, old_end, step)?;
    let _ = dashboard(&agent, &split, first, old_end, step)?;
    let old_cached = dashboard(&agent, &split, first, old_end, step)?;
    let same = cold.bodies == unsplit.bodies && cached.bodies == unsplit.bodies;
    println!(
        "dashboard of {} queries over {} days, step {}s, {} series per metric:",
        DASHBOARD.len(),
        args.days,
        args.step_secs,
        args.series
    );
    let ms = |x: f64| x * 1000.0;
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "query (ms)", "unsplit", "split", "cached", "moved", "old-cold", "old-hit"
    );
    for (i, query) in DASHBOARD.iter().enumerate() {
        println!(
            "  {:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            query,
            ms(unsplit.times[i]),
            ms(cold.times[i]),
            ms(cached.times[i]),
            ms(moving.times[i]),
            ms(old_cold.times[i]),
            ms(old_cached.times[i]),
        );
    }
    println!(
        "  {:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        "total",
        ms(unsplit.total),
        ms(cold.total),
        ms(cached.total),
        ms(moving.total),
        ms(old_cold.total),
        ms(old_cached.total),
    );
    println!(
        "  cached repeat to now: {:.1}x faster than unsplit cold (cache {:?})",
        unsplit.total / cached.total.max(1e-9),
        cached.caches
    );
    println!(
        "  moving refresh: {:.1}x faster than unsplit ({:.1} ms; cache {:?})",
        moving_whole.total / moving.total.max(1e-9),
        ms(moving_whole.total),
        moving.caches
    );
    println!(
        "  range ending 1h ago, cached: {:.1}x faster than unsplit cold (cache {:?})",
        old_cold.total / old_cached.total.max(1e-9),
        old_cached.caches
    );
    println!("  answers identical split/cached/unsplit: {same}");
    Ok(same)
}
