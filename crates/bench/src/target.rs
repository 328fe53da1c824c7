//! The servers under test: starting and stopping them, and reading their
//! memory and CPU time from `/proc`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::send::agent;

/// A server process this tool started; SIGKILLed if dropped while running.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    child: Option<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Where the remote-write bodies go.
    pub write_path: &'static str,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// How it was started, to start it again on the same data.
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    /// Removed when the server is dropped.
    _dir: tempfile::TempDir,
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

fn temp_dir(name: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("strata-bench-{name}-"))
        .tempdir()
        .context("create a temporary directory")
}

/// Set by [`pin_servers_apart`]: servers are started on CPU 0.
static PIN_SERVERS: AtomicBool = AtomicBool::new(false);

/// Moves this process (and the threads it starts from now on) to every CPU
/// but the first, and makes the servers it starts run on the first.
pub fn pin_servers_apart() -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!("--pin needs 2 CPUs or more, this machine has {cpus}");
    }
    let status = Command::new("taskset")
        .args(["-p", "-c", &format!("1-{}", cpus - 1)])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status()
        .context("run taskset (util-linux) for --pin")?;
    if !status.success() {
        bail!("taskset could not pin the bench to CPUs 1-{}", cpus - 1);
    }
    PIN_SERVERS.store(true, Ordering::Relaxed);
    Ok(())
}

/// The command that runs a server binary: through `taskset -c 0` when
/// pinned (taskset execs the binary, so its process id stays the server's).
fn server_command(bin: &Path) -> Command {
    if PIN_SERVERS.load(Ordering::Relaxed) {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(bin);
        command
    } else {
        Command::new(bin)
    }
}

impl Server {
    /// Starts `strata` with a fresh data directory on free loopback ports.
    pub fn start_strata(bin: &Path, extra: &[String]) -> Result<Server> {
        let dir = temp_dir("strata")?;
        let http = free_port()?;
        let grpc = free_port()?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("strata.log");
        let mut command = server_command(bin);
        command
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--grpc-addr")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra);
        Server::spawn(
            "strata",
            command,
            http,
            "/api/v1/push",
            dir,
            data_dir,
            log_path,
        )
    }

    /// Starts Prometheus as a bare remote-write receiver (no scrape jobs)
    /// with a fresh TSDB directory.
    pub fn start_prometheus(bin: &Path, extra: &[String]) -> Result<Server> {
        let dir = temp_dir("prometheus")?;
        let port = free_port()?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("prometheus.log");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .context("write prometheus.yml")?;
        let mut command = server_command(bin);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .args(extra);
        Server::spawn(
            "prometheus",
            command,
            port,
            "/api/v1/write",
            dir,
            data_dir,
            log_path,
        )
    }

    fn spawn(
        name: &str,
        mut command: Command,
        port: u16,
        write_path: &'static str,
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        log_path: PathBuf,
    ) -> Result<Server> {
        let program = command.get_program().to_string_lossy().into_owned();
        let program_os = command.get_program().to_owned();
        let args: Vec<std::ffi::OsString> = command.get_args().map(ToOwned::to_owned).collect();
        if program.contains('/') && !Path::new(&program).exists() {
            let hint = match name {
                "strata" => "cargo build --release -p strata, or pass --strata-bin",
                _ => "scripts/get-prometheus.sh installs it, or pass --prometheus-bin",
            };
            bail!("no {name} binary at {program} ({hint})");
        }
        let log = std::fs::File::create(&log_path).context("create the server's log file")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name} ({program})"))?;
        let mut server = Server {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            write_path,
            data_dir,
            log_path,
            program: program_os,
            args,
            _dir: dir,
        };
        server.wait_ready(Duration::from_secs(60))?;
        Ok(server)
    }

    pub fn write_url(&self) -> String {
        format!("{}{}", self.base, self.write_path)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let url = format!("{}/-/ready", self.base);
        let agent = agent(Duration::from_secs(2));
        let deadline = Instant::now() + timeout;
        loop {
            if agent
                .get(&url)
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited before becoming ready ({status}); log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGTERM, or SIGKILL with `crash`) and starts it
    /// again on the same data; returns the time from the new start until
    /// `/-/ready` (WAL replay).
    pub fn restart(&mut self, crash: bool) -> Result<Duration> {
        if crash {
            if let Some(mut child) = self.child.take() {
                child.kill().context("kill the server")?;
                child.wait().context("wait for the killed server")?;
            }
        } else {
            self.stop(Duration::from_secs(120))?;
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .context("open the server's log file")?;
        let started = Instant::now();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("restart {}", self.name))?;
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(600))?;
        Ok(started.elapsed())
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM (through `kill`, no unsafe code), then waits for the exit;
    /// SIGKILL after `timeout`. Returns how long the shutdown took.
    pub fn stop(&mut self, timeout: Duration) -> Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let start = Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("run kill -TERM")?;
        if !status.success() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kill -TERM {} failed", child.id());
        }
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!("strata-bench: {} exited with {status}", self.name);
                }
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; killed",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of a process from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss: u64,
    /// VmHWM: the peak resident size so far.
    pub hwm: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |key: &str| -> Result<u64> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .with_context(|| format!("{key} missing from {path}"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parse {key} {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// User + system CPU time of a process so far (`/proc/<pid>/stat`).
pub fn cpu_time(pid: u32, ticks_per_second: f64) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the parenthesised command name: state is the first,
    // utime and stime the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("parse {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("{path}: field {i} missing"))?
            .parse::<u64>()? as f64)
    };
    let seconds = (ticks(11)? + ticks(12)?) / ticks_per_second;
    Ok(Duration::from_secs_f64(seconds))
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes of all files under `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
