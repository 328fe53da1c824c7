//! `strata-bench chunks`: bytes per sample and decode speed of Strata's
//! compact chunk encoding next to Prometheus' XOR chunks, in-process, on the
//! node_exporter-like workload of `strata-bench ingest`.
//!
//! Each series' samples are cut into chunks of a fixed number of samples
//! and encoded both ways; sizes are the chunk bytes alone (the framing a
//! block adds around a chunk is the same for either encoding). Decoding is
//! timed over all chunks, best of several runs, in the same process.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use strata_common::chunk::XorAppender;
use strata_common::compact_chunk::{self, COMPACT_CHUNK_ENCODING, XOR_CHUNK_ENCODING};

use crate::workload::Workload;

/// First scrape: a fixed time, aligned to 15 s, so every run sees the same data.
const START_MS: i64 = 1_750_000_005_000;

#[derive(Debug, Args)]
pub struct ChunksArgs {
    /// Simulated node_exporter hosts (about 670 series each).
    #[arg(long, default_value_t = 100)]
    hosts: usize,

    /// Hours of samples per series.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,

    /// Seconds between scrape rounds.
    #[arg(long = "interval-secs", default_value_t = 15)]
    interval_secs: u32,

    /// Samples per chunk, comma-separated; each size is measured separately.
    #[arg(
        long = "chunk-samples",
        value_delimiter = ',',
        default_values_t = [120usize, 240, 480]
    )]
    chunk_samples: Vec<usize>,

    /// Decode runs per encoding; the best is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,

    /// Seed of the workload generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Delays each sample's timestamp by 0 to this many ms (deterministic
    /// per series and round), like scrapes that are not time-aligned.
    #[arg(long = "jitter-ms", default_value_t = 0)]
    jitter_ms: u32,
}

/// What a series is, for the per-kind breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No value changes over the whole run (info metrics, sizes, states).
    Constant,
    /// `_total` counters (and the Go GC summary's count and sum).
    Counter,
    /// Classic histogram buckets, `_sum` and `_count`.
    Histogram,
    /// Everything else.
    Gauge,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Constant, Kind::Counter, Kind::Histogram, Kind::Gauge];

    fn of(name: &str, values: &[f64]) -> Kind {
        let first = values.first().map(|v| v.to_bits());
        if values.iter().all(|v| Some(v.to_bits()) == first) {
            Kind::Constant
        } else if name.starts_with("http_request_duration_seconds") {
            Kind::Histogram
        } else if name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_sum") {
            Kind::Counter
        } else {
            Kind::Gauge
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Constant => "constant",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Gauge => "gauge",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Sizes of one kind at one chunk size.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    series: usize,
    samples: u64,
    xor_bytes: u64,
    compact_bytes: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.series += other.series;
        self.samples += other.samples;
        self.xor_bytes += other.xor_bytes;
        self.compact_bytes += other.compact_bytes;
    }
}

/// All chunks of one encoding, back to back.
#[derive(Debug, Default)]
struct Chunks {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Chunks {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        self.ends.push(self.bytes.len());
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }
}

pub fn run(args: &ChunksArgs) -> Result<bool> {
    let interval_ms = i64::from(args.interval_secs.max(1)) * 1000;
    let rounds = (args.hours * 3600.0 / f64::from(args.interval_secs.max(1))).round() as usize;
    if args.hosts == 0 || rounds == 0 {
        bail!("--hosts and --hours must be positive");
    }
    if args
        .chunk_samples
        .iter()
        .any(|&n| n == 0 || n > compact_chunk::MAX_SAMPLES)
    {
        bail!(
            "--chunk-samples must be 1 to {}",
            compact_chunk::MAX_SAMPLES
        );
    }

    let generate = Instant::now();
    let mut workload = Workload::new(args.hosts, args.seed, START_MS, interval_ms);
    let mut timestamps = Vec::with_capacity(rounds);
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); workload.series.len()];
    for _ in 0..rounds {
        timestamps.push(workload.advance());
        for (series, column) in workload.series.iter().zip(values.iter_mut()) {
            column.push(series.value);
        }
    }
    let kinds: Vec<Kind> = workload
        .series
        .iter()
        .zip(&values)
        .map(|(series, column)| {
            let name = series
                .labels
                .iter()
                .find(|(k, _)| k == "__name__")
                .map_or("", |(_, v)| v.as_str());
            Kind::of(name, column)
        })
        .collect();
    let jitter = match args.jitter_ms {
        0 => "regular timestamps".to_owned(),
        ms => format!("timestamps delayed 0 to {ms} ms"),
    };
    println!(
        "Workload: {} hosts, {} series, {rounds} samples per series at {} s ({jitter}), \
         {} samples (generated in {:.1}s)",
        args.hosts,
        values.len(),
        args.interval_secs,
        values.len() * rounds,
        generate.elapsed().as_secs_f64()
    );

    let mut ok = true;
    for &size in &args.chunk_samples {
        ok &= measure(args, size, &timestamps, &values, &kinds);
    }
    Ok(ok)
}

/// Encodes, checks and times one chunk size; false if a chunk did not
/// round-trip.
fn measure(
    args: &ChunksArgs,
    size: usize,
    timestamps: &[i64],
    values: &[Vec<f64>],
    kinds: &[Kind],
) -> bool {
    let mut totals = [Totals::default(); 4];
    let mut xor = Chunks::default();
    let mut compact = Chunks::default();
    // Chunks by layout tag (time layout << 4 | value layout).
    let mut layouts = [0u64; 256];
    let (mut xor_encode, mut compact_encode) = (Duration::ZERO, Duration::ZERO);
    let mut samples: Vec<(i64, f64)> = Vec::with_capacity(size);
    for (series, (column, kind)) in values.iter().zip(kinds).enumerate() {
        let totals = &mut totals[kind.index()];
        totals.series += 1;
        for (chunk, (ts, vs)) in timestamps.chunks(size).zip(column.chunks(size)).enumerate() {
            samples.clear();
            samples.extend(ts.iter().zip(vs).enumerate().map(|(i, (&t, &v))| {
                let round = (chunk * size + i) as u64;
                (t + jitter(args.jitter_ms, series as u64, round), v)
            }));

            let start = Instant::now();
            let mut appender = XorAppender::new();
            for &(t, v) in &samples {
                appender.append(t, v);
            }
            xor_encode += start.elapsed();
            xor.push(appender.bytes());

            let start = Instant::now();
            let bytes = compact_chunk::encode(&samples);
            compact_encode += start.elapsed();
            compact.push(&bytes);

            layouts[usize::from(bytes[0])] += 1;
            totals.samples += samples.len() as u64;
            totals.xor_bytes += appender.bytes().len() as u64;
            totals.compact_bytes += bytes.len() as u64;
        }
    }
    let mut all = Totals::default();
    for kind_totals in &totals {
        all.add(kind_totals);
    }

    // Both decode to the same bits, or the figures mean nothing.
    let mut mismatches = 0usize;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (x, c) in xor.iter().zip(compact.iter()) {
        a.clear();
        b.clear();
        let same = compact_chunk::decode_any(XOR_CHUNK_ENCODING, x, &mut a).is_ok()
            && compact_chunk::decode_any(COMPACT_CHUNK_ENCODING, c, &mut b).is_ok()
            && a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(p, q)| p.0 == q.0 && p.1.to_bits() == q.1.to_bits());
        if !same {
            mismatches += 1;
        }
    }

    // Runs alternate between the encodings, so a noisy neighbour slows both.
    let (mut xor_decode, mut compact_decode) = (Duration::MAX, Duration::MAX);
    for _ in 0..args.runs.max(1) {
        xor_decode = xor_decode.min(decode_all(&xor, XOR_CHUNK_ENCODING, size));
        compact_decode = compact_decode.min(decode_all(&compact, COMPACT_CHUNK_ENCODING, size));
    }
    let per_sample = |d: Duration| d.as_nanos() as f64 / all.samples as f64;

    println!();
    println!(
        "{size} samples per chunk: {} chunks, {} samples",
        xor.ends.len(),
        all.samples
    );
    println!(
        "{:<10} {:>7} {:>11} {:>13} {:>17} {:>7}",
        "kind", "series", "samples", "xor B/sample", "compact B/sample", "ratio"
    );
    let row = |name: &str, t: &Totals| {
        let samples = t.samples.max(1) as f64;
        println!(
            "{:<10} {:>7} {:>11} {:>13.3} {:>17.3} {:>7.3}",
            name,
            t.series,
            t.samples,
            t.xor_bytes as f64 / samples,
            t.compact_bytes as f64 / samples,
            t.compact_bytes as f64 / t.xor_bytes.max(1) as f64
        );
    };
    for kind in Kind::ALL {
        row(kind.name(), &totals[kind.index()]);
    }
    row("all", &all);
    println!(
        "decode ns/sample (best of {}): xor {:.2}, compact {:.2} ({:.1}x faster)",
        args.runs.max(1),
        per_sample(xor_decode),
        per_sample(compact_decode),
        xor_decode.as_secs_f64() / compact_decode.as_secs_f64().max(1e-12)
    );
    println!(
        "encode ns/sample: xor {:.2}, compact {:.2}",
        per_sample(xor_encode),
        per_sample(compact_encode)
    );
    let chunks = xor.ends.len().max(1) as f64;
    let mut mix: Vec<(u64, String)> = layouts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0)
        .map(|(tag, &n)| (n, layout_name(tag as u8)))
        .collect();
    mix.sort_by_key(|m| std::cmp::Reverse(m.0));
    let mix: Vec<String> = mix
        .iter()
        .map(|(n, name)| match *n as f64 * 100.0 / chunks {
            share if share < 0.05 => format!("{name} <0.1%"),
            share => format!("{name} {share:.1}%"),
        })
        .collect();
    println!("layouts (timestamps+values): {}", mix.join(", "));
    if mismatches > 0 {
        println!("ERROR: {mismatches} chunks decode differently from their XOR twin");
    }
    mismatches == 0
}

/// A delay of 0 to `max_ms` ms for one series and round (SplitMix64 of both).
fn jitter(max_ms: u32, series: u64, round: u64) -> i64 {
    if max_ms == 0 {
        return 0;
    }
    let mut z = (series << 32 ^ round).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % (u64::from(max_ms) + 1)) as i64
}

/// The layout names of a compact chunk's tag byte (see `compact_chunk`).
fn layout_name(tag: u8) -> String {
    let time = match tag >> 4 {
        0 => "packed",
        1 => "patched",
        _ => "?",
    };
    let value = match tag & 0x0f {
        0 => "xor",
        1 => "const",
        2 => "decimal",
        3 => "scaled",
        4 => "bits",
        _ => "?",
    };
    format!("{time}+{value}")
}

/// Time to decode every chunk into one reused buffer.
fn decode_all(chunks: &Chunks, encoding: i32, size: usize) -> Duration {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(size);
    let mut checksum = 0u64;
    let start = Instant::now();
    for chunk in chunks.iter() {
        out.clear();
        if compact_chunk::decode_any(encoding, chunk, &mut out).is_ok()
            && let Some(&(t, v)) = out.last()
        {
            checksum = checksum.wrapping_add(t as u64 ^ v.to_bits());
        }
        std::hint::black_box(&mut out);
    }
    let elapsed = start.elapsed();
    std::hint::black_box(checksum);
    elapsed
}
