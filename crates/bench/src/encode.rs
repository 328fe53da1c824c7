//! Turns scrape rounds into snappy-compressed remote write 1.0 bodies,
//! ahead of the timed phase.
//!
//! Series are split into shards by a hash of their labels, one shard per
//! sender thread, so a series is always sent by the same thread and in time
//! order (what Prometheus' remote-write queue shards do). Within a shard a
//! round is cut into requests of at most `batch` samples, one sample per
//! `TimeSeries` entry, like Prometheus' sender.

use prost::Message;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use crate::workload::Workload;

/// Request bodies of one or more consecutive rounds, per shard in send order.
#[derive(Debug, Default)]
pub struct Window {
    pub shards: Vec<Vec<Vec<u8>>>,
    pub rounds: u32,
    pub samples: u64,
    pub requests: u64,
    /// Compressed bytes of all bodies.
    pub bytes: u64,
}

/// A request of a shard, reused every round: the same series in the same
/// order, only the samples change.
#[derive(Debug)]
struct Batch {
    series: Vec<usize>,
    request: WriteRequest,
}

/// Produces windows of encoded rounds from a workload.
#[derive(Debug)]
pub struct Encoder {
    workload: Workload,
    shards: Vec<Vec<Batch>>,
    rounds_left: u32,
}

/// FNV-1a over the labels: which sender thread owns a series.
pub fn shard_of(labels: &[(String, String)], shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for byte in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xfe])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (hash % shards as u64) as usize
}

impl Encoder {
    pub fn new(workload: Workload, shards: usize, batch: usize, rounds: u32) -> Encoder {
        let shards = shards.max(1);
        let batch = batch.max(1);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); shards];
        for (i, series) in workload.series.iter().enumerate() {
            members[shard_of(&series.labels, shards)].push(i);
        }
        let shards = members
            .into_iter()
            .map(|indices| {
                indices
                    .chunks(batch)
                    .map(|chunk| Batch {
                        series: chunk.to_vec(),
                        request: WriteRequest {
                            timeseries: chunk
                                .iter()
                                .map(|&i| TimeSeries {
                                    labels: workload.series[i]
                                        .labels
                                        .iter()
                                        .map(|(name, value)| Label {
                                            name: name.clone(),
                                            value: value.clone(),
                                        })
                                        .collect(),
                                    samples: vec![Sample::default()],
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        },
                    })
                    .collect()
            })
            .collect();
        Encoder {
            workload,
            shards,
            rounds_left: rounds,
        }
    }

    pub fn series(&self) -> usize {
        self.workload.series.len()
    }

    pub fn finished(&self) -> bool {
        self.rounds_left == 0
    }

    /// Encodes rounds until their bodies reach `budget_bytes` (at least one
    /// round) or the workload ends; `None` once every round was handed out.
    pub fn next_window(&mut self, budget_bytes: u64) -> Option<Window> {
        if self.rounds_left == 0 {
            return None;
        }
        let mut window = Window {
            shards: vec![Vec::new(); self.shards.len()],
            ..Window::default()
        };
        while self.rounds_left > 0 {
            let timestamp = self.workload.advance();
            let series = &self.workload.series;
            let encoded: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .shards
                    .iter_mut()
                    .map(|batches| {
                        scope.spawn(move || {
                            batches
                                .iter_mut()
                                .map(|batch| {
                                    for (entry, &i) in
                                        batch.request.timeseries.iter_mut().zip(&batch.series)
                                    {
                                        entry.samples[0] = Sample {
                                            value: series[i].value,
                                            timestamp,
                                        };
                                    }
                                    compress(&batch.request.encode_to_vec())
                                })
                                .collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            for (out, bodies) in window.shards.iter_mut().zip(encoded) {
                window.requests += bodies.len() as u64;
                window.bytes += bodies.iter().map(|b| b.len() as u64).sum::<u64>();
                out.extend(bodies);
            }
            window.samples += series.len() as u64;
            window.rounds += 1;
            self.rounds_left -= 1;
            if window.bytes >= budget_bytes {
                break;
            }
        }
        Some(window)
    }
}

fn compress(raw: &[u8]) -> Vec<u8> {
    // Snappy's block format cannot fail on input below 4 GiB, far above a batch.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_else(|e| panic!("snappy compression of {} bytes: {e}", raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "decoding this test's own small bodies"
    )]
    fn windows_cover_every_sample_once_in_order() {
        let workload = Workload::new(2, 1, 0, 15_000);
        let series = workload.series.len();
        let mut encoder = Encoder::new(workload, 3, 100, 4);
        let mut seen: std::collections::HashMap<Vec<(String, String)>, Vec<i64>> =
            std::collections::HashMap::new();
        let mut total = 0;
        while let Some(window) = encoder.next_window(1) {
            assert_eq!(window.rounds, 1);
            for bodies in &window.shards {
                for body in bodies {
                    let raw = snap::raw::Decoder::new()
                        .decompress_vec(body)
                        .expect("snappy");
                    let request = WriteRequest::decode(&raw[..]).expect("protobuf");
                    assert!(request.timeseries.len() <= 100);
                    for ts in request.timeseries {
                        let labels: Vec<(String, String)> =
                            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                        seen.entry(labels)
                            .or_default()
                            .push(ts.samples[0].timestamp);
                        total += 1;
                    }
                }
            }
        }
        assert!(encoder.finished());
        assert_eq!(total, series * 4);
        assert_eq!(seen.len(), series);
        for stamps in seen.values() {
            assert_eq!(stamps, &[0, 15_000, 30_000, 45_000]);
        }
    }
}
