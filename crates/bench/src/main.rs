//! `strata-bench`: benchmarks against real server processes.
//!
//! `strata-bench ingest` pushes a deterministic node_exporter-like workload
//! by remote write 1.0 and reports samples/s and resident memory per active
//! series, for Strata and for Prometheus' own receiver on the same data.
//! `strata-bench query` times PromQL range queries on both, on identical
//! data, and compares the answers. `strata-bench chunks` compares Strata's
//! compact chunk encoding with Prometheus' XOR chunks in-process: bytes per
//! sample and decode speed. See docs/benchmarks.md.

#![allow(clippy::print_stdout)]

mod blocks;
mod chunks;
mod encode;
mod frontend;
mod query;
mod send;
mod target;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::encode::{Encoder, Window};
use crate::send::{SendStats, send_window};
use crate::target::{Memory, Server};
use crate::workload::Workload;

#[derive(Debug, Parser)]
#[command(
    name = "strata-bench",
    version,
    about = "Benchmarks of Strata next to Prometheus"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remote-write ingest throughput and RSS per active series.
    ///
    /// Without --url it starts the target(s) itself, each with an empty
    /// temporary data directory, one after the other on the same data.
    Ingest(IngestArgs),

    /// PromQL range-query wall time and peak RSS, Strata next to Prometheus
    /// on identical data, answers compared.
    Query(query::QueryArgs),

    /// The query frontend on a multi-day dashboard: cold split vs
    /// unsplit, cached repeat, moving refresh.
    Frontend(frontend::FrontendArgs),

    /// Chunk encodings in-process: bytes per sample and decode ns per
    /// sample of Strata's compact chunks next to Prometheus' XOR chunks.
    Chunks(chunks::ChunksArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Strata,
    Prometheus,
    Both,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Simulated node_exporter hosts (about 700 series each).
    #[arg(long, default_value_t = 100)]
    hosts: usize,

    /// Scrape rounds to push (40 × 15 s = 10 minutes of data).
    #[arg(long, default_value_t = 40)]
    rounds: u32,

    /// Seconds between scrape rounds (sample timestamps only; pushing is as fast as possible).
    #[arg(long = "interval-secs", default_value_t = 15)]
    interval_secs: u32,

    /// Sender threads; each owns the series whose label hash falls on it.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,

    /// Most samples per request (Prometheus' max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    batch: usize,

    /// Seed of the workload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Which targets to start.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,

    /// Push to an already running server's remote-write URL instead
    /// (e.g. http://127.0.0.1:9090/api/v1/push); nothing is started.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// With --url: the server's process id, for its RSS and CPU time.
    #[arg(long, requires = "url")]
    pid: Option<u32>,

    /// The strata binary.
    #[arg(long = "strata-bin", default_value = "target/release/strata")]
    strata_bin: PathBuf,

    /// Extra flag for strata, repeatable (e.g. --strata-arg=--wal.fsync=interval).
    #[arg(long = "strata-arg", value_name = "FLAG", allow_hyphen_values = true)]
    strata_args: Vec<String>,

    /// The Prometheus binary (scripts/get-prometheus.sh installs it).
    #[arg(
        long = "prometheus-bin",
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

    /// X-Scope-OrgID sent to Strata (and to --url); none means Strata's no-auth tenant.
    #[arg(long)]
    tenant: Option<String>,

    /// Runs of each started target, interleaved (strata, prometheus, strata, …);
    /// the summary takes medians. Each run gets a fresh server and data dir.
    #[arg(long, default_value_t = 1, conflicts_with = "url")]
    repeat: u32,

    /// Seconds to let a server settle before each RSS reading.
    #[arg(long = "settle-secs", default_value_t = 2)]
    settle_secs: u64,

    /// Most MiB of encoded requests held at once; a longer workload is
    /// encoded and sent in windows of rounds (encoding stays untimed).
    #[arg(long = "max-encoded-mib", default_value_t = 1024)]
    max_encoded_mib: u64,

    /// After pushing, measure the WAL, then cut everything into blocks
    /// (Strata: POST /api/v1/admin/flush; Prometheus: a TSDB snapshot with
    /// its head, --web.enable-admin-api added) and report bytes per sample
    /// of the blocks' chunks and index.
    #[arg(long)]
    blocks: bool,

    /// After pushing, restart each started server on its data and time
    /// its start-up until ready (WAL replay).
    #[arg(long)]
    replay: bool,

    /// How --replay stops the server: `term` (a clean shutdown; Strata
    /// then loads its head snapshot) or `kill` (SIGKILL, a crash: the
    /// whole WAL is replayed).
    #[arg(long, value_enum, default_value_t = StopKind::Term)]
    replay_after: StopKind,

    /// Run the servers it starts on CPU 0 and its own sender threads on
    /// the other CPUs (with `taskset`), so a server's CPU time is not
    /// inflated by senders competing for its cores. Needs 2 CPUs or more.
    #[arg(long)]
    pin: bool,
}

/// How a server is stopped before a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StopKind {
    Term,
    Kill,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(args) => ingest(&args),
        Command::Query(args) => query::run(&args),
        Command::Frontend(args) => frontend::run(&args),
        Command::Chunks(args) => chunks::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("strata-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// One target's measurements.
#[derive(Debug)]
struct Outcome {
    /// The target, e.g. `strata` or `strata --wal.fsync=interval`.
    target: String,
    /// Which run of that target (from 1).
    run: u32,
    series: usize,
    samples: u64,
    stats: SendStats,
    before: Option<Memory>,
    after: Option<Memory>,
    cpu: Option<Duration>,
    /// Series the target lists for `up` and for `{job="node"}`.
    up_series: Option<usize>,
    all_series: Option<usize>,
    check_error: Option<String>,
    shutdown: Option<Duration>,
    disk_bytes: Option<u64>,
    /// With --blocks: WAL bytes before the cut, and the blocks' bytes.
    on_disk: Option<blocks::OnDisk>,
    /// With --replay: start-up time on the pushed data.
    replay: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Kind {
    Strata,
    Prometheus,
    External { url: String, pid: Option<u32> },
}

/// The workload's parameters, to rebuild it identically for each target.
struct Plan {
    hosts: usize,
    seed: u64,
    start_ms: i64,
    interval_ms: i64,
    shards: usize,
    batch: usize,
    rounds: u32,
    budget: u64,
    /// Series of the workload (filled in once generated).
    series: usize,
}

impl Plan {
    fn encoder(&self) -> Encoder {
        let workload = Workload::new(self.hosts, self.seed, self.start_ms, self.interval_ms);
        Encoder::new(workload, self.shards, self.batch, self.rounds)
    }
}

fn ingest(args: &IngestArgs) -> Result<bool> {
    if args.hosts == 0 || args.rounds == 0 {
        bail!("--hosts and --rounds must be positive");
    }
    if args.pin {
        target::pin_servers_apart()?;
    }
    let interval_ms = i64::from(args.interval_secs.max(1)) * 1000;
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let mut plan = Plan {
        hosts: args.hosts,
        seed: args.seed,
        // Aligned to the interval, so the last round is about "now".
        start_ms: now_ms / interval_ms * interval_ms - i64::from(args.rounds) * interval_ms,
        interval_ms,
        shards: args.concurrency.max(1),
        batch: args.batch.max(1),
        rounds: args.rounds,
        budget: args.max_encoded_mib.max(1) * 1024 * 1024,
        series: 0,
    };

    let encode_start = Instant::now();
    let mut encoder = plan.encoder();
    let series = encoder.series();
    plan.series = series;
    let first = encoder
        .next_window(plan.budget)
        .context("the workload has no rounds")?;
    // A workload that fits the budget is encoded once for every target.
    let cached = encoder.finished().then_some(first);
    drop(encoder);
    let samples = series as u64 * u64::from(args.rounds);
    match &cached {
        Some(window) => eprintln!(
            "workload: {} hosts, {series} series, {} rounds, {samples} samples in {} requests \
             ({:.1} MiB snappy), encoded in {:.1}s",
            args.hosts,
            args.rounds,
            window.requests,
            mib(window.bytes),
            encode_start.elapsed().as_secs_f64()
        ),
        None => eprintln!(
            "workload: {} hosts, {series} series, {} rounds, {samples} samples \
             (over --max-encoded-mib: encoded window by window)",
            args.hosts, args.rounds
        ),
    }

    let kinds: Vec<Kind> = match &args.url {
        Some(url) => vec![Kind::External {
            url: url.clone(),
            pid: args.pid,
        }],
        None => match args.only {
            Only::Strata => vec![Kind::Strata],
            Only::Prometheus => vec![Kind::Prometheus],
            Only::Both => vec![Kind::Strata, Kind::Prometheus],
        },
    };

    let ticks = target::clock_ticks();
    let mut outcomes = Vec::new();
    for run in 1..=args.repeat.max(1) {
        for kind in &kinds {
            let mut outcome = run_target(args, &plan, cached.as_ref(), kind.clone(), ticks)?;
            outcome.run = run;
            outcomes.push(outcome);
        }
    }

    print_report(args, &plan, series, &mut outcomes);
    let ok = outcomes.iter().all(|o| {
        o.stats.failed == 0
            && o.check_error.is_none()
            && o.up_series.is_none_or(|n| n == args.hosts)
            && o.all_series.is_none_or(|n| n == o.series)
    });
    Ok(ok)
}

fn run_target(
    args: &IngestArgs,
    plan: &Plan,
    cached: Option<&Window>,
    kind: Kind,
    ticks: f64,
) -> Result<Outcome> {
    let settle = Duration::from_secs(args.settle_secs);
    let tenant_header: Vec<(String, String)> = args
        .tenant
        .iter()
        .map(|t| ("X-Scope-OrgID".to_owned(), t.clone()))
        .collect();
    let (mut server, url, pid, headers, name) = match kind {
        Kind::Strata => {
            let server = Server::start_strata(&args.strata_bin, &args.strata_args)?;
            let mut name = "strata".to_owned();
            if !args.strata_args.is_empty() {
                name = format!("strata {}", args.strata_args.join(" "));
            }
            let url = server.write_url();
            let pid = server.pid;
            (Some(server), url, Some(pid), tenant_header, name)
        }
        Kind::Prometheus => {
            let mut extra = args.prometheus_args.clone();
            if args.blocks {
                extra.push("--web.enable-admin-api".to_owned());
            }
            let server = Server::start_prometheus(&args.prometheus_bin, &extra)?;
            let url = server.write_url();
            let pid = server.pid;
            (
                Some(server),
                url,
                Some(pid),
                Vec::new(),
                "prometheus".to_owned(),
            )
        }
        Kind::External { url, pid } => (None, url.clone(), pid, tenant_header, url),
    };
    eprintln!("{name}: pushing to {url}");

    if server.is_some() {
        std::thread::sleep(settle);
    }
    let before = pid.map(target::memory).transpose()?;
    let cpu_before = pid.map(|p| target::cpu_time(p, ticks)).transpose()?;

    let stats = match cached {
        Some(window) => send_window(&url, &headers, window),
        None => {
            let mut encoder = plan.encoder();
            let mut total = SendStats::default();
            while let Some(window) = encoder.next_window(plan.budget) {
                total.merge(send_window(&url, &headers, &window));
            }
            total
        }
    };
    eprintln!(
        "{name}: {} requests in {:.2}s, {} failed",
        stats.requests,
        stats.elapsed.as_secs_f64(),
        stats.failed
    );

    std::thread::sleep(settle);
    let after = pid.map(target::memory).transpose()?;
    let cpu = match (pid, cpu_before) {
        (Some(p), Some(b)) => Some(target::cpu_time(p, ticks)?.saturating_sub(b)),
        _ => None,
    };

    let base = base_url(&url);
    let query_headers: Vec<(String, String)> = headers.clone();
    let mut check_error = None;
    let up_series = match count_series(&base, r#"{__name__="up"}"#, &query_headers) {
        Ok(n) => Some(n),
        Err(e) => {
            check_error = Some(format!("{e:#}"));
            None
        }
    };
    let all_series = match count_series(&base, r#"{job="node"}"#, &query_headers) {
        Ok(n) => Some(n),
        Err(e) => {
            check_error.get_or_insert(format!("{e:#}"));
            None
        }
    };

    let replay = match (server.as_mut(), args.replay) {
        (Some(server), true) => {
            let took = server.restart(args.replay_after == StopKind::Kill)?;
            eprintln!("{name}: restarted and ready in {:.2}s", took.as_secs_f64());
            let restored = count_series(&base, r#"{job="node"}"#, &query_headers).ok();
            if restored != all_series {
                check_error.get_or_insert(format!(
                    "after the restart {restored:?} {{job=\"node\"}} series, before {all_series:?}"
                ));
            }
            Some(took)
        }
        _ => None,
    };

    let on_disk = match (&server, args.blocks) {
        (Some(server), true) => Some(blocks::cut_and_measure(server, &base)?),
        _ => None,
    };

    let (shutdown, disk_bytes) = match server.as_mut() {
        Some(server) => {
            if stats.failed > 0 {
                eprintln!("{name}: log tail:\n{}", server.log_tail());
            }
            let took = server.stop(Duration::from_secs(120))?;
            (Some(took), Some(target::disk_usage(&server.data_dir)))
        }
        None => (None, None),
    };

    Ok(Outcome {
        target: name,
        run: 1,
        series: plan.series,
        samples: plan.series as u64 * u64::from(plan.rounds),
        stats,
        before,
        after,
        cpu,
        up_series,
        all_series,
        check_error,
        shutdown,
        disk_bytes,
        on_disk,
        replay,
    })
}

/// `http://host:port` of a URL.
fn base_url(url: &str) -> String {
    let parts: Vec<&str> = url.splitn(4, '/').collect();
    parts[..parts.len().min(3)].join("/")
}

/// How many series `GET /api/v1/series` lists for one selector.
fn count_series(base: &str, selector: &str, headers: &[(String, String)]) -> Result<usize> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("match[]", selector)
        .finish();
    let url = format!("{base}/api/v1/series?{query}");
    let agent = send::agent(Duration::from_secs(120));
    let mut request = agent.get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.call().with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .with_context(|| format!("read the answer of GET {url}"))?;
    if status != 200 {
        bail!("GET {url}: HTTP {status}: {}", text.trim());
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))?;
    json["data"]
        .as_array()
        .map(Vec::len)
        .with_context(|| format!("GET {url}: no data array"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_report(args: &IngestArgs, plan: &Plan, series: usize, outcomes: &mut [Outcome]) {
    println!(
        "Workload: {} hosts, {series} series, {} rounds at {} s, {} samples, \
         {} sender threads, ≤{} samples/request.\n",
        args.hosts,
        args.rounds,
        args.interval_secs,
        series as u64 * u64::from(args.rounds),
        plan.shards,
        plan.batch
    );
    println!(
        "| target | series | samples | seconds | samples/s | RSS before MiB | RSS after MiB | peak RSS MiB | bytes/series | CPU s | latency p50 / p99 / max ms | rejected |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes.iter_mut() {
        let seconds = o.stats.elapsed.as_secs_f64();
        let rate = o.rate();
        let mem = |m: Option<Memory>, f: fn(&Memory) -> u64| {
            m.map_or("n/a".to_owned(), |m| format!("{:.1}", mib(f(&m))))
        };
        let per_series = bytes_per_series(o).map_or("n/a".to_owned(), |b| format!("{b:.0}"));
        let (p50, p99, max) = (
            o.stats.latency_ms(0.5),
            o.stats.latency_ms(0.99),
            o.stats.latency_ms(1.0),
        );
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} | {} of {} |",
            o.display_name(args.repeat),
            o.series,
            o.samples,
            seconds,
            rate,
            mem(o.before, |m| m.rss),
            mem(o.after, |m| m.rss),
            mem(o.after, |m| m.hwm),
            per_series,
            o.cpu
                .map_or("n/a".to_owned(), |c| format!("{:.2}", c.as_secs_f64())),
            p50,
            p99,
            max,
            o.stats.failed,
            o.stats.requests,
        );
    }
    println!();

    if args.replay {
        println!("| target | restart until ready s | samples replayed/s |");
        println!("|---|---:|---:|");
        for o in outcomes.iter() {
            if let Some(took) = o.replay {
                let secs = took.as_secs_f64().max(1e-9);
                println!(
                    "| {} | {secs:.2} | {:.0} |",
                    o.display_name(args.repeat),
                    o.samples as f64 / secs
                );
            }
        }
        println!();
    }
    if args.blocks {
        blocks::print(
            outcomes
                .iter()
                .map(|o| (o.display_name(args.repeat), o.samples, o.on_disk)),
        );
    }

    let targets = summarize(outcomes);
    if args.repeat > 1 {
        println!("Medians over {} runs each:\n", args.repeat);
        println!(
            "| target | runs | samples/s (median) | samples/s (min–max) | bytes/series (median) | CPU s (median) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for t in &targets {
            println!(
                "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {} |",
                t.target,
                t.runs,
                t.rate,
                t.rate_min,
                t.rate_max,
                t.bytes_per_series
                    .map_or("n/a".to_owned(), |b| format!("{b:.0}")),
                t.cpu_secs.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
            );
        }
        println!();
    }
    let find = |prefix: &str| targets.iter().find(|t| t.target.starts_with(prefix));
    if let (Some(s), Some(p)) = (find("strata"), find("prometheus")) {
        print!("Strata / Prometheus: samples/s {:.2}×", s.rate / p.rate);
        if let (Some(a), Some(b)) = (s.bytes_per_series, p.bytes_per_series)
            && b > 0.0
        {
            print!(", bytes/series {:.2}×", a / b);
        }
        if let (Some(a), Some(b)) = (s.cpu_secs, p.cpu_secs)
            && b > 0.0
        {
            print!(", CPU {:.2}×", a / b);
        }
        println!("\n");
    }

    for o in outcomes.iter() {
        let mut notes = Vec::new();
        match o.up_series {
            Some(n) if n == args.hosts => notes.push(format!("`up` series: {n} (ok)")),
            Some(n) => notes.push(format!("`up` series: {n}, expected {} (WRONG)", args.hosts)),
            None => {}
        }
        match o.all_series {
            Some(n) if n == o.series => notes.push(format!("`{{job=\"node\"}}` series: {n} (ok)")),
            Some(n) => notes.push(format!(
                "`{{job=\"node\"}}` series: {n}, expected {} (WRONG)",
                o.series
            )),
            None => {}
        }
        if let Some(e) = &o.check_error {
            notes.push(format!("series check failed: {e}"));
        }
        if let Some(e) = &o.stats.first_error {
            notes.push(format!("first rejection: {e}"));
        }
        if let Some(t) = o.shutdown {
            notes.push(format!("shutdown {:.1}s", t.as_secs_f64()));
        }
        if let Some(d) = o.disk_bytes {
            notes.push(format!("{:.1} MiB on disk after shutdown", mib(d)));
        }
        println!("- {}: {}", o.display_name(args.repeat), notes.join("; "));
    }
}

impl Outcome {
    fn display_name(&self, repeat: u32) -> String {
        if repeat > 1 {
            format!("{} #{}", self.target, self.run)
        } else {
            self.target.clone()
        }
    }

    fn rate(&self) -> f64 {
        self.samples as f64 / self.stats.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One target's medians over its runs.
#[derive(Debug)]
struct Summary {
    target: String,
    runs: usize,
    rate: f64,
    rate_min: f64,
    rate_max: f64,
    bytes_per_series: Option<f64>,
    cpu_secs: Option<f64>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Per target (in order of first appearance), the medians of its runs.
fn summarize(outcomes: &[Outcome]) -> Vec<Summary> {
    let mut names: Vec<&str> = Vec::new();
    for o in outcomes {
        if !names.contains(&o.target.as_str()) {
            names.push(&o.target);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let runs: Vec<&Outcome> = outcomes.iter().filter(|o| o.target == name).collect();
            let rates: Vec<f64> = runs.iter().map(|o| o.rate()).collect();
            Summary {
                target: name.to_owned(),
                runs: runs.len(),
                rate: median(rates.clone()).unwrap_or(0.0),
                rate_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                rate_max: rates.iter().copied().fold(0.0, f64::max),
                bytes_per_series: median(runs.iter().filter_map(|o| bytes_per_series(o)).collect()),
                cpu_secs: median(
                    runs.iter()
                        .filter_map(|o| o.cpu)
                        .map(|c| c.as_secs_f64())
                        .collect(),
                ),
            }
        })
        .collect()
}

/// (RSS after − RSS before) / series.
fn bytes_per_series(o: &Outcome) -> Option<f64> {
    let (before, after) = (o.before?, o.after?);
    Some((after.rss as f64 - before.rss as f64) / o.series as f64)
}
