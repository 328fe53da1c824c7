//! The timed phase: one blocking HTTP sender thread per shard.

use std::time::{Duration, Instant};

use crate::encode::Window;

/// What the senders saw.
#[derive(Debug, Default)]
pub struct SendStats {
    pub requests: u64,
    /// Non-2xx answers and transport errors.
    pub failed: u64,
    pub first_error: Option<String>,
    /// Per-request latency in microseconds.
    pub latencies_us: Vec<u64>,
    /// Wall time of the send phases only.
    pub elapsed: Duration,
}

impl SendStats {
    pub fn merge(&mut self, other: SendStats) {
        self.requests += other.requests;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
        self.elapsed += other.elapsed;
    }

    /// The `q` quantile (0..=1) of request latency, in milliseconds.
    pub fn latency_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let rank = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[rank] as f64 / 1000.0
    }
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Sends every body of `window` to `url`, each shard by its own thread in
/// order, and times the whole phase.
pub fn send_window(url: &str, headers: &[(String, String)], window: &Window) -> SendStats {
    let start = Instant::now();
    let per_thread: Vec<SendStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = window
            .shards
            .iter()
            .map(|bodies| scope.spawn(move || send_shard(url, headers, bodies)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut total = SendStats::default();
    for stats in per_thread {
        total.merge(stats);
    }
    total.elapsed = elapsed;
    total
}

fn send_shard(url: &str, headers: &[(String, String)], bodies: &[Vec<u8>]) -> SendStats {
    let agent = agent(Duration::from_secs(60));
    let mut stats = SendStats {
        latencies_us: Vec::with_capacity(bodies.len()),
        ..SendStats::default()
    };
    for body in bodies {
        let mut request = agent
            .post(url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header("User-Agent", "strata-bench");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let sent = Instant::now();
        let outcome = match request.send(&body[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read the (small) answer so the connection can be reused.
                let text = response.body_mut().read_to_string().unwrap_or_default();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("HTTP {status}: {}", text.trim()))
                }
            }
            Err(error) => Err(format!("request failed: {error}")),
        };
        stats
            .latencies_us
            .push(sent.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
        stats.requests += 1;
        if let Err(error) = outcome {
            stats.failed += 1;
            if stats.first_error.is_none() {
                stats.first_error = Some(error);
            }
        }
    }
    stats
}
