//! Test harness: start and stop real `strata` processes, find the reference
//! Prometheus, push remote-write requests, read JSON answers.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use strata_proto::prometheus::WriteRequest;

/// A port free at the moment of asking (bind to :0, read, release).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Polls `condition` until it holds or `timeout` passes; panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// An HTTP agent that returns 4xx/5xx as responses, not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// How waiting for a started `strata` ended; the variants carrying the log.
#[derive(Debug)]
pub enum Readiness {
    Ready,
    Exited(String),
    TimedOut(String),
}

/// A running `strata` process on loopback ports, killed when dropped.
#[derive(Debug)]
pub struct Strata {
    child: Option<Child>,
    pub http_port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

impl Strata {
    /// Starts `strata` on fresh ports with `data_dir`, plus `extra` flags,
    /// and waits until `/-/ready` answers 200.
    ///
    /// `free_port()` only finds ports free at the moment of asking; an
    /// outgoing connection of another test may take one before `strata`
    /// binds it. Such a start is retried on new ports; any other failure
    /// panics with the process's log.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Strata {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut strata = Strata::spawn(data_dir, extra);
            match strata.wait_ready_or_exit(Duration::from_secs(60)) {
                Readiness::Ready => return strata,
                Readiness::Exited(log) if log.contains("cannot listen on") => continue,
                Readiness::Exited(log) => panic!("strata exited before it was ready:\n{log}"),
                Readiness::TimedOut(log) => {
                    panic!("timed out after 60s waiting for strata to become ready:\n{log}")
                }
            }
        }
        panic!("strata lost its ports to other processes {ATTEMPTS} times in a row");
    }

    /// Polls `/-/ready` until it answers 200, the process exits or
    /// `timeout` passes.
    pub fn wait_ready_or_exit(&mut self, timeout: Duration) -> Readiness {
        let url = self.url("/-/ready");
        let agent = agent();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if agent
                .get(&url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
            {
                return Readiness::Ready;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().is_ok_and(|status| status.is_some())
            {
                self.child = None;
                return Readiness::Exited(self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Readiness::TimedOut(self.log())
    }

    /// Starts without waiting for readiness.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Strata {
        let http_port = free_port();
        let grpc_port = free_port();
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log_path = data_dir.with_extension(format!("{http_port}.log"));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--grpc-addr")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start strata");
        Strata {
            child: Some(child),
            http_port,
            grpc_port,
            data_dir: data_dir.to_owned(),
            log_path,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The process's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("strata is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait strata") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("strata did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Snappy-compresses an encoded remote-write request.
pub fn encode_write(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compress")
}

/// Pushes a remote-write request; returns status and body text.
pub fn push(base: &str, tenant: Option<&str>, request: &WriteRequest) -> (u16, String) {
    push_raw(base, tenant, encode_write(request))
}

/// Pushes an already-encoded body.
pub fn push_raw(base: &str, tenant: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut call = agent()
        .post(&format!("{base}/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(&body[..]).expect("push request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}

/// `POST /api/v1/admin/flush` (for one tenant, or all without one); returns
/// the number of blocks written.
pub fn flush(base: &str, tenant: Option<&str>) -> u64 {
    let mut call = agent().post(&format!("{base}/api/v1/admin/flush"));
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(&[][..]).expect("flush request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "flush failed: {text}");
    let body: serde_json::Value = serde_json::from_str(&text).expect("flush answer");
    body["data"]["blocks"].as_u64().expect("block count")
}

/// GETs a URL (with an optional tenant) and parses the JSON body.
pub fn get_json(url: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
    let mut call = agent().get(url);
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.call().expect("GET request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// POSTs a form body and parses the JSON answer.
pub fn post_form(url: &str, tenant: Option<&str>, form: &str) -> (u16, serde_json::Value) {
    let mut call = agent()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(form.as_bytes()).expect("POST request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// The reference Prometheus: `$STRATA_PROMETHEUS`, the copy
/// `scripts/get-prometheus.sh` installs, or one on `PATH`.
pub fn prometheus_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("STRATA_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let cached = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/prometheus/prometheus");
    if cached.exists() {
        return Some(cached);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .ok()?;
    let path = String::from_utf8(found.stdout).ok()?.trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Like [`prometheus_bin`], but a test that needs Prometheus fails clearly
/// without it: the README's test command installs it first.
pub fn require_prometheus() -> PathBuf {
    prometheus_bin().expect(
        "reference Prometheus not found: run scripts/get-prometheus.sh (the README's test command does) \
         or set STRATA_PROMETHEUS",
    )
}

/// A running Prometheus with a given config, killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` (written to `dir/prometheus.yml`),
    /// storage in `dir/data`, on a fresh port, and waits for `/-/ready`.
    /// `extra` adds flags such as `--web.enable-remote-write-receiver`.
    pub fn start(dir: &Path, config_yaml: &str, extra: &[&str]) -> Prometheus {
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(require_prometheus())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            port,
            dir: dir.to_owned(),
        };
        let url = prometheus.url("/-/ready");
        let agent = agent();
        wait_until(
            "prometheus to become ready",
            Duration::from_secs(60),
            || {
                agent
                    .get(&url)
                    .call()
                    .is_ok_and(|r| r.status().as_u16() == 200)
            },
        );
        prometheus
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("time fits i64")
}

/// Milliseconds as the API's float seconds (`1712345678.123`).
pub fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Percent-encodes a query-string or form value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
