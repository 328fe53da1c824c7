//! The cluster as separate processes of the real binary, started by
//! `scripts/cluster` (3 meta, 3 store, 2 querier, 1 frontend): answers equal
//! a single node's, tenants stay apart, and losing a store node or the meta
//! leader changes nothing a client sees; a fourth store node joins through
//! a new placement epoch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_common::StoreApi;
use strata_proto::prometheus::{Label, LabelMatcher, Sample, TimeSeries, WriteRequest};
use strata_proto::store::SelectRequest;

use crate::support::*;

/// A cluster under a temporary directory; `scripts/cluster down` on drop.
struct Cluster {
    dir: tempfile::TempDir,
    base: String,
    /// First port of the block this cluster's processes take.
    first_port: u16,
}

/// Clusters started by this test process so far.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// A block of 40 ports for a new cluster, below Linux's ephemeral range
/// (32768+), where outgoing connections and `free_port()` would race with
/// the script's probing; blocks differ per process and per cluster.
fn port_block() -> u16 {
    let cluster = CLUSTERS.fetch_add(1, Ordering::Relaxed) % 5;
    let process = u64::from(std::process::id()) % 50;
    (20_000 + process * 200 + cluster * 40) as u16
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster")
}

fn run_script(dir: &Path, first_port: u16, args: &[&str]) -> String {
    run_script_with(dir, first_port, args, &[])
}

/// `run_script` with extra environment (later entries override).
fn run_script_with(dir: &Path, first_port: u16, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(script())
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_BASE_PORT", first_port.to_string())
        .env("STRATA_EPOCH_DELAY", "3s")
        .env("STRATA_HEARTBEAT_TIMEOUT", "3s")
        .env("STRATA_HEARTBEAT_INTERVAL", "500ms")
        .env("STRATA_CLUSTER_ARGS", "--meta.refresh-interval=500ms")
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/cluster");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scripts/cluster {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl Cluster {
    fn up() -> Cluster {
        Cluster::up_with(&[])
    }

    /// A cluster whose `scripts/cluster up` gets `env` too.
    fn up_with(env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let first_port = port_block();
        let stdout = run_script_with(dir.path(), first_port, &["up"], env);
        let base = stdout.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            base.starts_with("http://"),
            "last line is the URL: {stdout}"
        );
        Cluster {
            dir,
            base,
            first_port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stop(&self, name: &str) {
        run_script(self.dir.path(), self.first_port, &["stop", name]);
    }

    fn kill(&self, name: &str) {
        run_script(self.dir.path(), self.first_port, &["stop", name, "--kill"]);
    }

    fn start(&self, name: &str) {
        run_script(self.dir.path(), self.first_port, &["start", name]);
    }

    fn add_store(&self) -> String {
        run_script(self.dir.path(), self.first_port, &["add-store"])
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `strata tool meta --meta.addresses ... ARGS`; its standard output.
    fn meta_tool(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "tool",
                "meta",
                "--meta.addresses",
                &self.file("meta.addresses"),
            ])
            .args(args)
            .output()
            .expect("run strata tool meta");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "strata tool meta {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Every process's log, for failure messages.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all += &format!("--- {}\n", path.display());
                for line in tail.into_iter().rev() {
                    all += line;
                    all.push('\n');
                }
            }
        }
        all
    }

    /// Series of `tenant` matching `__name__=metric` as store node `name` holds them.
    fn store_series(&self, name: &str, tenant: &str, metric: &str) -> usize {
        let address = self.file(&format!("{name}.grpc"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = strata_common::GrpcStoreClient::connect_lazy(&address).expect("client");
            client
                .select(SelectRequest {
                    tenant: tenant.to_owned(),
                    matchers: vec![LabelMatcher {
                        r#type: 0,
                        name: "__name__".into(),
                        value: metric.into(),
                    }],
                    start_ms: i64::MIN,
                    end_ms: i64::MAX,
                })
                .await
                .map(|s| s.len())
                .unwrap_or_else(|e| panic!("select from {name}: {e}"))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// `series` series of `metric` with `samples` samples each, 15 s apart, ending at `end_ms`.
fn dataset(metric: &str, series: usize, samples: usize, end_ms: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    label("__name__", metric),
                    label("instance", &format!("host-{i}")),
                    label("job", if i % 2 == 0 { "api" } else { "db" }),
                ],
                samples: (0..samples)
                    .map(|j| Sample {
                        value: (i * 1000 + j) as f64,
                        timestamp: end_ms - (samples - 1 - j) as i64 * 15_000,
                    })
                    .collect(),
                ..TimeSeries::default()
            })
            .collect(),
        ..WriteRequest::default()
    }
}

fn data_of(url: &str, tenant: Option<&str>) -> serde_json::Value {
    let (status, body) = get_json(url, tenant);
    assert_eq!(status, 200, "{url}: {body}");
    body["data"].clone()
}

#[test]
fn cluster_answers_like_a_single_node_and_keeps_tenants_apart() {
    let cluster = Cluster::up();
    let dir = tempfile::tempdir().expect("tempdir");
    let single = Strata::start(&dir.path().join("single"), &[]);
    let end = now_ms() - 60_000;
    let a = dataset("requests_total", 40, 120, end);
    let b = dataset("queue_depth", 25, 120, end);
    for (tenant, data) in [("team-a", &a), ("team-b", &b)] {
        for base in [cluster.base.as_str(), single.base().as_str()] {
            let (status, body) = push(base, Some(tenant), data);
            assert_eq!(status, 204, "push to {base}: {body}\n{}", cluster.logs());
        }
    }
    let start = seconds(end - 30 * 60_000);
    let stop = seconds(end);
    let paths = [
        format!(
            "/api/v1/series?match[]={}&start={start}&end={stop}",
            encode("{job=~\".+\"}")
        ),
        "/api/v1/labels".to_owned(),
        "/api/v1/label/instance/values".to_owned(),
        format!(
            "/api/v1/query?query={}&time={stop}",
            encode("sum by (job) (rate(requests_total[5m]))")
        ),
        format!("/api/v1/query?query={}&time={stop}", encode("queue_depth")),
        format!(
            "/api/v1/query_range?query={}&start={start}&end={stop}&step=60",
            encode("max by (job) (queue_depth) or increase(requests_total[2m])")
        ),
    ];
    for tenant in ["team-a", "team-b"] {
        for path in &paths {
            let want = data_of(&single.url(path), Some(tenant));
            let got = data_of(&cluster.url(path), Some(tenant));
            assert_eq!(got, want, "{tenant} {path}");
        }
    }
    // Isolation: neither tenant sees the other's metric.
    let names = data_of(
        &cluster.url("/api/v1/label/__name__/values"),
        Some("team-a"),
    );
    assert_eq!(names, serde_json::json!(["requests_total"]));
    let names = data_of(
        &cluster.url("/api/v1/label/__name__/values"),
        Some("team-b"),
    );
    assert_eq!(names, serde_json::json!(["queue_depth"]));
    let query = format!(
        "/api/v1/query?query={}&time={stop}",
        encode("requests_total")
    );
    let result = data_of(&cluster.url(&query), Some("team-b"));
    assert_eq!(result["result"], serde_json::json!([]));
    // A sample from the future (beyond the placement's horizon) is refused
    // with 400 naming its series; the rest of the request is written.
    let mut mixed = dataset("clock_check", 2, 1, now_ms() - 1_000);
    mixed.timeseries[1].samples[0].timestamp = now_ms() + 3_600_000;
    let (status, body) = push(&cluster.base, Some("team-a"), &mixed);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("too far in the future") && body.contains("host-1"),
        "{body}"
    );
    let query = format!("/api/v1/query?query={}", encode("clock_check"));
    let result = data_of(&cluster.url(&query), Some("team-a"));
    assert_eq!(
        result["result"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );

    // A querier gone: the frontend's pool answers from the other one.
    cluster.kill("querier-1");
    let all_a = format!(
        "/api/v1/query?query={}&time={stop}",
        encode("requests_total")
    );
    for _ in 0..4 {
        let data = data_of(&cluster.url(&all_a), Some("team-a"));
        assert_eq!(data["result"].as_array().map(Vec::len), Some(40), "{data}");
    }

    // Every sample is on a write quorum (2 of 3) of store nodes.
    let copies: usize = ["store-1", "store-2", "store-3"]
        .iter()
        .map(|s| cluster.store_series(s, "team-a", "requests_total"))
        .sum();
    assert!(
        copies >= 80,
        "40 series × at least 2 replicas, got {copies}"
    );
}

/// Pushes one sample per series every 100 ms until stopped; counts
/// acknowledged samples and failed requests.
struct Ingest {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    /// Failed pushes with their answers.
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ingest {
    fn start(base: &str, tenant: &str, metric: &str, series: usize) -> Ingest {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let (base, tenant, metric) = (base.to_owned(), tenant.to_owned(), metric.to_owned());
        let thread = {
            let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut t = now_ms();
                while !stop.load(Ordering::Relaxed) {
                    t = (t + 1).max(now_ms());
                    let request = dataset(&metric, series, 1, t);
                    let (status, body) = push(&base, Some(&tenant), &request);
                    if status == 204 {
                        acked.fetch_add(series as u64, Ordering::Relaxed);
                    } else {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("{status} {body}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Ingest {
            stop,
            acked,
            failures,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("lock").clone()
    }

    /// Stops and returns the samples acknowledged.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("ingest thread");
        }
        self.acked()
    }
}

/// Samples of `metric` the cluster returns (all of the last hour).
fn sample_count(cluster: &Cluster, tenant: &str, metric: &str) -> u64 {
    let query = format!(
        "/api/v1/query?query={}&time={}",
        encode(&format!("sum(count_over_time({metric}[1h]))")),
        seconds(now_ms() + 5_000)
    );
    let data = data_of(&cluster.url(&query), Some(tenant));
    data["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_store_node_killed_during_ingest_loses_nothing_and_catches_up() {
    let cluster = Cluster::up();
    let ingest = Ingest::start(&cluster.base, "team-a", "live", 20);
    wait_until("some samples", Duration::from_secs(30), || {
        ingest.acked() >= 200
    });
    cluster.kill("store-2");
    let before_restart = ingest.acked();
    wait_until("ingest past the kill", Duration::from_secs(60), || {
        ingest.acked() >= before_restart + 400
    });
    // Queries stay complete with one replica gone (sample counts only grow,
    // so compare against what was acknowledged before asking).
    let acked = ingest.acked();
    let seen = sample_count(&cluster, "team-a", "live");
    assert!(
        seen >= acked,
        "saw {seen} of {acked} acknowledged samples\n{}",
        cluster.logs()
    );

    cluster.start("store-2");
    let restarted_at = ingest.acked();
    wait_until("ingest after the restart", Duration::from_secs(60), || {
        ingest.acked() >= restarted_at + 400
    });
    let failures = ingest.failures();
    let total = ingest.finish();
    assert!(
        failures.is_empty(),
        "failed pushes: {failures:?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        sample_count(&cluster, "team-a", "live"),
        total,
        "{}",
        cluster.logs()
    );

    // store-2 serves its old data and took new writes: with store-1 down,
    // every shard is read from store-2 and store-3 and nothing is missing.
    cluster.kill("store-1");
    assert_eq!(
        sample_count(&cluster, "team-a", "live"),
        total,
        "{}",
        cluster.logs()
    );
    assert!(cluster.store_series("store-2", "team-a", "live") > 0);

    // A fourth store node: a new epoch; new series spread to it.
    cluster.start("store-1");
    let added = cluster.add_store();
    assert_eq!(added, "store-4");
    let ingest = Ingest::start(&cluster.base, "team-a", "after_join", 40);
    wait_until("new series on store-4", Duration::from_secs(60), || {
        cluster.store_series("store-4", "team-a", "after_join") > 0
    });
    let total_after = ingest.finish();
    assert_eq!(sample_count(&cluster, "team-a", "after_join"), total_after);
    assert_eq!(sample_count(&cluster, "team-a", "live"), total);
}

#[test]
fn killing_the_meta_leader_is_invisible_to_clients() {
    let cluster = Cluster::up();
    let ingest = Ingest::start(&cluster.base, "team-b", "steady", 10);
    wait_until("some samples", Duration::from_secs(30), || {
        ingest.acked() >= 100
    });
    let leader = meta_leader(&cluster);
    cluster.kill(&leader);
    wait_until("a new meta leader", Duration::from_secs(30), || {
        let now = meta_leader(&cluster);
        !now.is_empty() && now != leader
    });
    let at_election = ingest.acked();
    wait_until("ingest after the election", Duration::from_secs(60), || {
        ingest.acked() >= at_election + 300
    });
    let failures = ingest.failures();
    let total = ingest.finish();
    assert!(
        failures.is_empty(),
        "failed pushes: {failures:?}\n{}",
        cluster.logs()
    );
    assert_eq!(sample_count(&cluster, "team-b", "steady"), total);

    // The operator's view through the surviving meta nodes.
    let status = cluster.meta_tool(&["status"]);
    assert!(status.contains("unreachable"), "{status}");
    for store in ["store-1", "store-2", "store-3"] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(&format!("store {store} ")) && l.contains(" healthy")),
            "{status}"
        );
    }
    assert!(
        status.contains("tenant team-b"),
        "created on first write: {status}"
    );
    let set = cluster.meta_tool(&[
        "set-tenant",
        "--tenant",
        "team-b",
        "--shards",
        "4",
        "--limit",
        "max_label_names_per_series=3",
        "--limit",
        "max_query_length=1h",
    ]);
    assert!(
        set.contains("shards 4")
            && set.contains("max_label_names_per_series")
            && set.contains("max_query_length"),
        "{set}"
    );
    // The override applies without a restart, to team-b only.
    let mut four_labels = dataset("override_check", 1, 1, now_ms() - 1_000);
    four_labels.timeseries[0].labels.push(label("zone", "z1"));
    wait_until("the override to apply", Duration::from_secs(30), || {
        let (status, body) = push(&cluster.base, Some("team-b"), &four_labels);
        status == 400 && body.contains("more than the limit of 3")
    });
    let (status, body) = push(&cluster.base, Some("team-a"), &four_labels);
    assert_eq!(status, 204, "team-a keeps the default limit: {body}");
    // So does the query frontend's: team-b may not ask for 2 hours, team-a may.
    let now = now_ms() / 1000;
    let two_hours = format!(
        "{}/api/v1/query_range?query=up&start={}&end={now}&step=60",
        cluster.base,
        now - 7200
    );
    let (status, body) = get_json(&two_hours, Some("team-b"));
    assert_eq!(status, 400, "team-b's max_query_length is 1h: {body}");
    assert!(body.to_string().contains("max_query_length"), "{body}");
    let (status, body) = get_json(&two_hours, Some("team-a"));
    assert_eq!(status, 200, "team-a keeps the default: {body}");
    let status = cluster.meta_tool(&["status"]);
    let epochs = status.lines().filter(|l| l.starts_with("epoch ")).count();
    assert_eq!(epochs, 2, "a new shard count starts an epoch: {status}");
}

/// `meta-N` of the current Raft leader, from the meta nodes' /metrics.
fn meta_leader(cluster: &Cluster) -> String {
    for i in 1..=3 {
        let name = format!("meta-{i}");
        let url = format!("http://{}/metrics", cluster.file(&format!("{name}.http")));
        let Ok(mut response) = agent().get(&url).call() else {
            continue;
        };
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if text
            .lines()
            .any(|l| l.trim() == "strata_meta_raft_leader 1")
        {
            return name;
        }
    }
    String::new()
}

/// Sends `signal` (e.g. "STOP", "CONT") to a process of the cluster.
fn signal(cluster: &Cluster, name: &str, signal: &str) {
    let pid = cluster.file(&format!("{name}.pid"));
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {name} ({pid})");
}

#[test]
fn a_hung_store_node_is_hedged_around() {
    // A long heartbeat timeout keeps the hung node "healthy" in meta, so
    // only hedging (another replica asked after 2 s) avoids waiting for
    // the 30 s read timeout.
    let cluster = Cluster::up_with(&[("STRATA_HEARTBEAT_TIMEOUT", "5m")]);
    let end = now_ms() - 60_000;
    let data = dataset("hedged", 30, 20, end);
    let (status, body) = push(&cluster.base, Some("team-a"), &data);
    assert_eq!(status, 204, "{body}");
    let expected = 30 * 20;
    assert_eq!(sample_count(&cluster, "team-a", "hedged"), expected);
    let retries_before = read_retries(&cluster);
    signal(&cluster, "store-2", "STOP");
    let started = std::time::Instant::now();
    let seen = sample_count(&cluster, "team-a", "hedged");
    let took = started.elapsed();
    signal(&cluster, "store-2", "CONT");
    assert_eq!(seen, expected, "{}", cluster.logs());
    assert!(
        read_retries(&cluster) > retries_before,
        "the query asked another replica"
    );
    // A functional bound, not a benchmark: without hedging the read waits
    // for the 30 s timeout of the hung replica.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// `strata_cluster_read_retries_total` summed over the queriers.
fn read_retries(cluster: &Cluster) -> f64 {
    let mut total = 0.0;
    for name in ["querier-1", "querier-2"] {
        let url = format!("http://{}/metrics", cluster.file(&format!("{name}.http")));
        let mut response = agent().get(&url).call().expect("querier metrics");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with("strata_cluster_read_retries_total "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[test]
fn a_replica_believed_down_is_asked_when_a_healthy_one_fails() {
    let cluster = Cluster::up();
    // store-3 comes back pointed at no meta node: alive, registered from
    // before, but silent, so meta reports it unhealthy.
    cluster.stop("store-3");
    let cmd_path = cluster.dir.path().join("store-3.cmd");
    let cmd = std::fs::read_to_string(&cmd_path).expect("store-3.cmd");
    let meta = cluster.file("meta.addresses").replace(',', "\\,");
    let silent = cmd.replace(&meta, "http://127.0.0.1:1");
    assert_ne!(cmd, silent, "the meta addresses are in {cmd}");
    std::fs::write(&cmd_path, silent).expect("write store-3.cmd");
    cluster.start("store-3");
    let store_3_unhealthy = || {
        cluster
            .meta_tool(&["status"])
            .lines()
            .any(|l| l.starts_with("store store-3 ") && l.contains(" unhealthy"))
    };
    wait_until(
        "meta to report store-3 unhealthy",
        Duration::from_secs(30),
        store_3_unhealthy,
    );
    // The frontend's view follows within a refresh.
    wait_until(
        "the frontend to see store-3 unhealthy",
        Duration::from_secs(30),
        || {
            let url = format!("{}/metrics", cluster.base);
            let Ok(mut response) = agent().get(&url).call() else {
                return false;
            };
            let text = response.body_mut().read_to_string().unwrap_or_default();
            text.lines()
                .any(|l| l.trim() == "strata_cluster_placement_stores{health=\"unhealthy\"} 1")
        },
    );
    // With store-1 gone too, only store-2 is believed healthy: every shard
    // needs store-3, which is alive, to reach its write quorum of 2.
    cluster.kill("store-1");
    let mut pushed = 0;
    for round in 0..10 {
        let request = dataset("held_back", 10, 1, now_ms() - 1_000 + round);
        let (status, body) = push(&cluster.base, Some("team-a"), &request);
        assert_eq!(status, 204, "round {round}: {body}\n{}", cluster.logs());
        pushed += 10;
    }
    assert_eq!(sample_count(&cluster, "team-a", "held_back"), pushed);
    let log =
        std::fs::read_to_string(cluster.dir.path().join("frontend-1.log")).unwrap_or_default();
    assert!(
        log.contains("asking a replica believed down"),
        "the held-back replica was asked: {log}"
    );
}
