//! Durability of a real `strata` process: kill -9 under ingest loses no
//! acknowledged sample and invents none, a torn WAL tail is cut away on
//! start, and every tenant gets its own data back after a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use strata_common::labels::label;
use strata_proto::prometheus::{
    LabelMatcher, Query, ReadRequest, ReadResponse, Sample, TimeSeries, WriteRequest,
    label_matcher, read_request::ResponseType,
};
use strata_proto::wal::{SamplesRecord, SeriesEntry, SeriesRecord, WalRecord, wal_record};

use crate::support::{Readiness, Strata, agent, push, wait_until};

/// Reads every series matching `matchers` in `[start_ms, end_ms]` through
/// remote read with the `SAMPLES` response type.
pub(crate) fn remote_read(
    base: &str,
    tenant: Option<&str>,
    matchers: Vec<LabelMatcher>,
    start_ms: i64,
    end_ms: i64,
) -> Vec<TimeSeries> {
    let request = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers,
            hints: None,
        }],
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compress");
    let mut call = agent()
        .post(&format!("{base}/api/v1/read"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(&body[..]).expect("remote read request");
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_vec()
        .expect("remote read body");
    assert_eq!(
        status,
        200,
        "remote read failed: {}",
        String::from_utf8_lossy(&bytes)
    );
    let len = snap::raw::decompress_len(&bytes).expect("snappy length of the read response");
    let mut decoded = vec![0u8; len];
    snap::raw::Decoder::new()
        .decompress(&bytes, &mut decoded)
        .expect("snappy-compressed read response");
    let response = ReadResponse::decode(decoded.as_slice()).expect("ReadResponse");
    assert_eq!(response.results.len(), 1, "one result per query");
    response
        .results
        .into_iter()
        .next()
        .map(|r| r.timeseries)
        .unwrap_or_default()
}

/// `name=~regex` as a remote-read matcher.
pub(crate) fn regex_matcher(name: &str, regex: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: label_matcher::Type::Re as i32,
        name: name.to_owned(),
        value: regex.to_owned(),
    }
}

/// Every series of a tenant, all of time.
pub(crate) fn read_all(base: &str, tenant: Option<&str>) -> Vec<TimeSeries> {
    remote_read(
        base,
        tenant,
        vec![regex_matcher("__name__", ".+")],
        i64::MIN,
        i64::MAX,
    )
}

// ---------------------------------------------------------------------------
// kill -9 under ingest

const SERIES_PER_REQUEST: u64 = 20;

/// The value of series `s` in request `r`: distinct for every sample.
fn value_of(request: u64, series: u64) -> f64 {
    (request * SERIES_PER_REQUEST + series) as f64 + 0.25
}

fn timestamp_of(request: u64) -> i64 {
    1_000_000 + request as i64 * 1_000
}

fn crash_request(request: u64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..SERIES_PER_REQUEST)
            .map(|s| TimeSeries {
                labels: vec![
                    label("__name__", "crash_metric"),
                    label("series", &format!("s{s:02}")),
                ],
                samples: vec![Sample {
                    value: value_of(request, s),
                    timestamp: timestamp_of(request),
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// 204: every sample must survive.
    Acknowledged,
    /// No answer (the process died): its samples may or may not be there.
    Unknown,
}

/// Pushes requests `first..` one after the other until one is not
/// acknowledged or `stop` is set; returns each request's fate and any
/// unexpected answer.
fn ingest(
    base: String,
    first: u64,
    acknowledged: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Vec<(u64, Fate)>, Option<String>) {
    let mut fates = Vec::new();
    let mut request = first;
    while !stop.load(Ordering::SeqCst) {
        let body = crate::support::encode_write(&crash_request(request));
        let answer = agent()
            .post(&format!("{base}/api/v1/push"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(&body[..]);
        match answer {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if status != 204 {
                    // Anything but 204 or a dead connection is a failure of
                    // the test; its samples are still "unknown" for the check.
                    fates.push((request, Fate::Unknown));
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    return (fates, Some(format!("request {request}: {status} {text}")));
                }
                fates.push((request, Fate::Acknowledged));
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                fates.push((request, Fate::Unknown));
                return (fates, None);
            }
        }
        request += 1;
    }
    (fates, None)
}

/// Every sample stored, by (series label, timestamp) → value bits.
fn stored_samples(base: &str) -> BTreeMap<(String, i64), u64> {
    let mut stored = BTreeMap::new();
    for series in read_all(base, None) {
        let name = strata_common::labels::get(&series.labels, "__name__");
        assert_eq!(
            name, "crash_metric",
            "unexpected series {:?}",
            series.labels
        );
        let id = strata_common::labels::get(&series.labels, "series").to_owned();
        let mut last = i64::MIN;
        for sample in &series.samples {
            assert!(
                sample.timestamp > last,
                "series {id} has samples out of order or twice at {}",
                sample.timestamp
            );
            last = sample.timestamp;
            stored.insert((id.clone(), sample.timestamp), sample.value.to_bits());
        }
    }
    stored
}

/// Checks the store against what was sent: every acknowledged sample with
/// its exact value, nothing that was never sent.
fn check_against(ledger: &HashMap<u64, Fate>, stored: &BTreeMap<(String, i64), u64>) {
    let mut acknowledged_samples = 0usize;
    for (&request, &fate) in ledger {
        if fate != Fate::Acknowledged {
            continue;
        }
        for s in 0..SERIES_PER_REQUEST {
            let key = (format!("s{s:02}"), timestamp_of(request));
            let expected = value_of(request, s).to_bits();
            match stored.get(&key) {
                Some(&bits) => assert_eq!(
                    bits,
                    expected,
                    "acknowledged sample {key:?} of request {request} has value {} instead of {}",
                    f64::from_bits(bits),
                    f64::from_bits(expected)
                ),
                None => panic!("acknowledged sample {key:?} of request {request} is lost"),
            }
            acknowledged_samples += 1;
        }
    }
    for ((series, t), bits) in stored {
        let request = u64::try_from((t - 1_000_000) / 1_000).ok();
        let s: Option<u64> = series.strip_prefix('s').and_then(|n| n.parse().ok());
        let (Some(request), Some(s)) = (request, s) else {
            panic!("sample ({series}, {t}) was never sent");
        };
        assert!(
            s < SERIES_PER_REQUEST && timestamp_of(request) == *t && ledger.contains_key(&request),
            "sample ({series}, {t}) was never sent"
        );
        assert_eq!(
            *bits,
            value_of(request, s).to_bits(),
            "sample ({series}, {t}) has a value never sent: {}",
            f64::from_bits(*bits)
        );
    }
    assert!(
        stored.len() >= acknowledged_samples,
        "{} stored < {acknowledged_samples} acknowledged",
        stored.len()
    );
}

/// How a cycle ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill9,
    /// SIGTERM, which must exit 0.
    Terminate,
}

/// Ingests for ~`duration` (with real progress), stops the process mid-stream,
/// restarts it on the same data directory with `flags`, and checks every
/// sample sent so far against the ledger. Returns the restarted process.
fn ingest_stop_restart(
    mut strata: Strata,
    flags: &[&str],
    stop_how: Stop,
    duration: Duration,
    ledger: &mut HashMap<u64, Fate>,
    next_request: &mut u64,
) -> Strata {
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (base, acknowledged, stop) = (strata.base(), acknowledged.clone(), stop.clone());
        let first = *next_request;
        std::thread::spawn(move || ingest(base, first, acknowledged, stop))
    };
    let started = Instant::now();
    wait_until(
        "the writer to get requests acknowledged",
        Duration::from_secs(30),
        || acknowledged.load(Ordering::SeqCst) >= 20 && started.elapsed() >= duration,
    );
    match stop_how {
        Stop::Kill9 => strata.kill9(),
        Stop::Terminate => {
            let status = strata.terminate();
            assert_eq!(
                status.code(),
                Some(0),
                "SIGTERM under ingest: {status:?}\n{}",
                strata.log()
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (fates, unexpected) = writer.join().expect("writer thread");
    assert!(
        unexpected.is_none(),
        "unexpected answer while stopping with {stop_how:?}: {unexpected:?}\n{}",
        strata.log()
    );
    let acked = fates
        .iter()
        .filter(|(_, f)| *f == Fate::Acknowledged)
        .count();
    assert!(acked >= 20, "only {acked} acknowledged");
    *next_request = fates.last().map_or(*next_request, |(r, _)| r + 1);
    ledger.extend(fates);

    let data = strata.data_dir.clone();
    drop(strata);
    let strata = Strata::start(&data, flags);
    check_against(ledger, &stored_samples(&strata.base()));
    strata
}

#[test]
fn kill9_under_ingest_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, &[]);
    let mut ledger: HashMap<u64, Fate> = HashMap::new();
    let mut next_request = 0u64;
    // Three kills mid-stream: each restart replays data replayed before.
    for _ in 0..3 {
        strata = ingest_stop_restart(
            strata,
            &[],
            Stop::Kill9,
            Duration::from_millis(1500),
            &mut ledger,
            &mut next_request,
        );
    }
    // One more restart without ingest changes nothing.
    let before = stored_samples(&strata.base());
    strata.kill9();
    strata = Strata::start(&data, &[]);
    assert_eq!(
        stored_samples(&strata.base()),
        before,
        "a restart changed the data"
    );
}

#[test]
fn kill9_with_interval_fsync_loses_no_acknowledged_sample() {
    // The interval policy only risks data on power loss, not on a crash of
    // the process: the kernel still holds what was written.
    let flags = ["--wal.fsync", "interval", "--wal.fsync-interval", "10s"];
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &flags);
    let mut ledger: HashMap<u64, Fate> = HashMap::new();
    let mut next_request = 0u64;
    let strata = ingest_stop_restart(
        strata,
        &flags,
        Stop::Kill9,
        Duration::from_millis(700),
        &mut ledger,
        &mut next_request,
    );
    drop(strata);
}

#[test]
fn sigterm_under_ingest_exits_zero_and_keeps_every_acknowledged_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let mut ledger: HashMap<u64, Fate> = HashMap::new();
    let mut next_request = 0u64;
    let strata = ingest_stop_restart(
        strata,
        &[],
        Stop::Terminate,
        Duration::from_millis(700),
        &mut ledger,
        &mut next_request,
    );
    drop(strata);
}

/// 10 s blocks and maintenance every 50 ms: with requests a second apart,
/// the head is cut every few requests and blocks compact into 60 s ranges.
const SMALL_BLOCKS: &[&str] = &[
    "--blocks.range",
    "10s",
    "--blocks.maintenance-interval",
    "50ms",
];

#[test]
fn head_snapshots_and_crashes_alternating_lose_and_duplicate_nothing() {
    // SIGTERM writes a head snapshot, the next start loads it and goes on
    // writing to the WAL; the kill after that replays the whole WAL (the
    // segments the snapshot held included). With small blocks and frequent
    // maintenance, cuts run between the snapshots too.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, SMALL_BLOCKS);
    let mut ledger: HashMap<u64, Fate> = HashMap::new();
    let mut next_request = 0u64;
    for stop in [
        Stop::Terminate,
        Stop::Kill9,
        Stop::Terminate,
        Stop::Terminate,
        Stop::Kill9,
    ] {
        let snapshot = data.join("tenants/anonymous/head.snapshot");
        strata = ingest_stop_restart(
            strata,
            SMALL_BLOCKS,
            stop,
            Duration::from_millis(700),
            &mut ledger,
            &mut next_request,
        );
        assert!(!snapshot.exists(), "a loaded snapshot is deleted");
        if stop == Stop::Terminate {
            assert!(
                strata.log().contains("loaded head snapshot"),
                "the restart after SIGTERM did not load a snapshot:\n{}",
                strata.log()
            );
        }
    }
}

#[test]
fn kill9_during_block_cuts_and_compaction_loses_and_duplicates_nothing() {
    // Each request is one second later than the last: with 10 s blocks and
    // maintenance every 50 ms, the head is cut every few requests and blocks
    // compact into 60 s ranges, so kills land while blocks are written,
    // merged and deleted and while the WAL is checkpointed and truncated.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, SMALL_BLOCKS);
    let mut ledger: HashMap<u64, Fate> = HashMap::new();
    let mut next_request = 0u64;
    for millis in [900, 1300, 700, 1700, 1100, 500] {
        strata = ingest_stop_restart(
            strata,
            SMALL_BLOCKS,
            Stop::Kill9,
            Duration::from_millis(millis),
            &mut ledger,
            &mut next_request,
        );
    }
    let blocks = data.join("tenants/anonymous/blocks");
    let names: Vec<String> = std::fs::read_dir(&blocks)
        .expect("blocks directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty(), "no block was ever cut\n{}", strata.log());
    // Level 2 (60 s windows) or, with more data, level 3 (240 s windows).
    let compacted = names.iter().any(|name| {
        std::fs::read_to_string(blocks.join(name).join("meta.json"))
            .ok()
            .and_then(|meta| serde_json::from_str::<serde_json::Value>(&meta).ok())
            .and_then(|meta| meta["compaction"]["level"].as_u64())
            .is_some_and(|level| level >= 2)
    });
    assert!(
        compacted,
        "no compaction happened: {names:?}\n{}",
        strata.log()
    );
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tool", "verify"])
        .arg(&data)
        .output()
        .expect("strata tool verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

// ---------------------------------------------------------------------------
// torn WAL tails

fn torn_request(t: i64, value: f64) -> WriteRequest {
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "torn_metric"), label("job", "wal")],
            samples: vec![Sample {
                value,
                timestamp: t,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The samples of `torn_metric` as (timestamp, value).
fn torn_samples(base: &str) -> Vec<(i64, f64)> {
    let series = read_all(base, None);
    assert!(series.len() <= 1, "{series:?}");
    series
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| (x.timestamp, x.value)))
        .collect()
}

/// Flags for tests that damage the WAL after a SIGTERM, as a crash would:
/// without them the stop writes a head snapshot, and the next start would
/// not replay the damaged segment at all.
const NO_SNAPSHOT: &[&str] = &["--wal.snapshot-on-shutdown=false"];

/// The highest-numbered segment of the default tenant's WAL.
fn newest_segment(data: &Path) -> PathBuf {
    let wal = data.join("tenants/anonymous/wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
        .expect("wal directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    segments.sort();
    segments.pop().expect("a wal segment")
}

/// Pushes three single-sample requests to one series and stops with SIGTERM.
fn write_three_then_stop(data: &Path) -> Vec<(i64, f64)> {
    let mut strata = Strata::start(data, NO_SNAPSHOT);
    let samples = vec![(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)];
    for &(t, v) in &samples {
        let (status, body) = push(&strata.base(), None, &torn_request(t, v));
        assert_eq!(status, 204, "{body}");
    }
    assert_eq!(torn_samples(&strata.base()), samples);
    let status = strata.terminate();
    assert!(
        status.success(),
        "SIGTERM exit: {status:?}\n{}",
        strata.log()
    );
    samples
}

fn assert_warned_about_truncation(strata: &Strata) {
    let log = strata.log();
    assert!(
        log.lines()
            .any(|l| l.contains("level=warn") && l.contains("truncat") && l.contains("wal")),
        "no warning about the truncated wal tail in the log:\n{log}"
    );
}

#[test]
fn torn_wal_tail_is_truncated_on_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let samples = write_three_then_stop(&data);

    // Garbage after the last complete record: a torn append.
    let segment = newest_segment(&data);
    let intact = std::fs::metadata(&segment).expect("segment").len();
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes.extend_from_slice(&[0x2a, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]);
    std::fs::write(&segment, &bytes).expect("append garbage");

    let mut strata = Strata::start(&data, &[]);
    assert_warned_about_truncation(&strata);
    assert_eq!(torn_samples(&strata.base()), samples, "{}", strata.log());
    assert_eq!(
        std::fs::metadata(&segment).expect("segment").len(),
        intact,
        "the garbage was not cut off"
    );
    // Writing goes on, and another restart still has everything.
    let (status, body) = push(&strata.base(), None, &torn_request(4_000, 4.0));
    assert_eq!(status, 204, "{body}");
    strata.kill9();
    let strata = Strata::start(&data, &[]);
    let mut expected = samples;
    expected.push((4_000, 4.0));
    assert_eq!(torn_samples(&strata.base()), expected, "{}", strata.log());
}

#[test]
fn truncated_last_wal_record_is_dropped_on_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let samples = write_three_then_stop(&data);

    // The last record (the third request's samples) loses its last bytes.
    let segment = newest_segment(&data);
    let len = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.set_len(len - 3).expect("truncate segment");
    drop(file);

    let strata = Strata::start(&data, &[]);
    assert_warned_about_truncation(&strata);
    assert_eq!(
        torn_samples(&strata.base()),
        samples[..2].to_vec(),
        "{}",
        strata.log()
    );
    // The torn third sample's timestamp is free again.
    let (status, body) = push(&strata.base(), None, &torn_request(3_000, 30.0));
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        torn_samples(&strata.base()),
        vec![(1_000, 1.0), (2_000, 2.0), (3_000, 30.0)]
    );
}

// ---------------------------------------------------------------------------
// tenants across restarts

#[test]
fn restart_gives_each_tenant_its_own_data_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, &[]);
    let tenants: [Option<&str>; 3] = [Some("team-a"), Some("team-b"), None];
    let metric_of = |tenant: Option<&str>| match tenant {
        Some(t) => format!("owned_by_{}", t.replace('-', "_")),
        None => "owned_by_anonymous".to_owned(),
    };
    for (i, tenant) in tenants.iter().enumerate() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", &metric_of(*tenant))],
                samples: (0..5)
                    .map(|k| Sample {
                        value: (i * 10 + k) as f64,
                        timestamp: 1_000 * (k as i64 + 1),
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (status, body) = push(&strata.base(), *tenant, &request);
        assert_eq!(status, 204, "{body}");
    }
    strata.kill9();
    let strata = Strata::start(&data, &[]);
    for (i, tenant) in tenants.iter().enumerate() {
        let series = read_all(&strata.base(), *tenant);
        assert_eq!(series.len(), 1, "tenant {tenant:?} sees {series:?}");
        assert_eq!(
            series[0].labels,
            vec![label("__name__", &metric_of(*tenant))]
        );
        let values: Vec<f64> = series[0].samples.iter().map(|s| s.value).collect();
        let expected: Vec<f64> = (0..5).map(|k| (i * 10 + k) as f64).collect();
        assert_eq!(values, expected, "tenant {tenant:?}");
    }
    assert!(read_all(&strata.base(), Some("team-c")).is_empty());
}

// ---------------------------------------------------------------------------
// a segment abandoned after a failed write

/// CRC-32C (Castagnoli), bit by bit: the WAL's frame checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One WAL frame: `len u32 LE | crc32c u32 LE | payload`.
fn frame(record: &WalRecord) -> Vec<u8> {
    // The store's own record encoding (format byte, maybe snappy).
    let payload = strata_store_node::wal_codec::encode(record);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn series_record(id: u32, name: &str) -> WalRecord {
    WalRecord {
        record: Some(wal_record::Record::Series(SeriesRecord {
            entries: vec![SeriesEntry {
                id,
                labels: vec![label("__name__", name)],
            }],
        })),
    }
}

fn samples_record(id: u32, t: i64, v: f64) -> WalRecord {
    WalRecord {
        record: Some(wal_record::Record::Samples(SamplesRecord {
            series_ids: vec![id],
            timestamps_ms: vec![t],
            value_bits: vec![v.to_bits()],
        })),
    }
}

/// Spawns `strata` and waits until it is ready or has given up (a start
/// that lost its ports to another process is retried on new ones).
fn start_or_log(data: &Path) -> Result<Strata, String> {
    for _ in 0..5 {
        let mut strata = Strata::spawn(data, &[]);
        match strata.wait_ready_or_exit(Duration::from_secs(30)) {
            Readiness::Ready => return Ok(strata),
            Readiness::Exited(log) if log.contains("cannot listen on") => continue,
            Readiness::Exited(log) | Readiness::TimedOut(log) => return Err(log),
        }
    }
    Err("strata lost its ports to other processes 5 times in a row".to_owned())
}

/// The float samples of every series of the default tenant, by metric name.
fn samples_by_name(base: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    read_all(base, None)
        .into_iter()
        .map(|s| {
            (
                strata_common::labels::get(&s.labels, "__name__").to_owned(),
                s.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
            )
        })
        .collect()
}

/// Writes series `a` through a real process, stops it, then lays out the
/// WAL as `strata` leaves it when a write of new series `b` failed midway
/// (ENOSPC/EIO): its series record made it to disk, its samples record only
/// partly; the segment was abandoned and the retried write — not applied
/// to the head before, so it reuses `b`'s series id `reused_id` for `c` —
/// went to the next segment and was acknowledged.
fn abandoned_segment_layout(data: &Path, reused_id: u32) {
    let mut strata = Strata::start(data, NO_SNAPSHOT);
    push(
        &strata.base(),
        None,
        &WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "a")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_000,
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert!(strata.terminate().success());
    let first = newest_segment(data);
    let mut bytes = std::fs::read(&first).expect("segment");
    bytes.extend(frame(&series_record(1, "b")));
    let torn = frame(&samples_record(1, 1_000, 2.0));
    bytes.extend_from_slice(&torn[..torn.len() - 5]);
    std::fs::write(&first, bytes).expect("write segment");

    let number: u64 = first
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("segment number");
    let mut next = b"SWAL\x01".to_vec();
    next.extend(frame(&series_record(reused_id, "c")));
    next.extend(frame(&samples_record(reused_id, 1_000, 3.0)));
    std::fs::write(first.with_file_name(format!("{:08}", number + 1)), next)
        .expect("write next segment");
}

#[test]
fn hand_made_wal_segments_replay() {
    // Control for the test below: the same layout, but the later segment
    // uses a fresh series id, so the hand-made frames are known to be right.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    abandoned_segment_layout(&data, 2);
    let strata = start_or_log(&data).unwrap_or_else(|log| panic!("did not start:\n{log}"));
    let samples = samples_by_name(&strata.base());
    assert_eq!(samples["a"], vec![(1_000, 1.0)]);
    assert_eq!(samples["c"], vec![(1_000, 3.0)]);
}

#[test]
fn a_wal_segment_abandoned_after_a_failed_write_does_not_block_start() {
    // After `Wal::append` fails, `TenantDb::write` returns before applying
    // the plan to the head, so the next write hands out the same series ids
    // again; but the failed batch's complete series record stays in the
    // abandoned segment, and replay (which goes on past the damage into
    // later segments) then meets that id twice.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    abandoned_segment_layout(&data, 1);
    let strata = start_or_log(&data).unwrap_or_else(|log| {
        panic!("strata refuses to start after a write error left a partial batch behind:\n{log}")
    });
    let samples = samples_by_name(&strata.base());
    assert_eq!(samples.get("a"), Some(&vec![(1_000, 1.0)]), "{samples:?}");
    assert_eq!(
        samples.get("c"),
        Some(&vec![(1_000, 3.0)]),
        "the acknowledged retry is lost: {samples:?}"
    );
}

#[test]
fn a_series_whose_samples_were_torn_away_is_not_listed() {
    // A torn batch can keep a new series' record while losing its samples
    // (never acknowledged). Such a series has no data: the metadata APIs
    // must not list it (Prometheus skips series without chunks), with or
    // without a time range.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, NO_SNAPSHOT);
    let request = |name: &str| WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", name), label(name, "1")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1_000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for name in ["kept", "torn"] {
        let (status, body) = push(&strata.base(), None, &request(name));
        assert_eq!(status, 204, "{body}");
    }
    assert!(strata.terminate().success());
    // The last write was [series record of `torn`, samples record]: cut
    // into the samples record.
    let segment = newest_segment(&data);
    let len = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.set_len(len - 3).expect("truncate segment");
    drop(file);

    let strata = Strata::start(&data, &[]);
    assert_warned_about_truncation(&strata);
    let names: Vec<String> = read_all(&strata.base(), None)
        .iter()
        .map(|s| strata_common::labels::get(&s.labels, "__name__").to_owned())
        .collect();
    assert_eq!(names, vec!["kept".to_owned()], "samples of the torn write");
    for query in ["", "&start=0&end=100"] {
        let url = strata.url(&format!(
            "/api/v1/series?match[]=%7B__name__%3D~%22.%2B%22%7D{query}"
        ));
        let (status, json) = crate::support::get_json(&url, None);
        assert_eq!(status, 200, "{json}");
        assert_eq!(
            json["data"],
            serde_json::json!([{"__name__": "kept", "kept": "1"}]),
            "series{query}"
        );
        let (_, json) = crate::support::get_json(
            &strata.url(&format!("/api/v1/labels?{}", query.trim_start_matches('&'))),
            None,
        );
        assert_eq!(
            json["data"],
            serde_json::json!(["__name__", "kept"]),
            "labels{query}"
        );
        let (_, json) = crate::support::get_json(
            &strata.url(&format!(
                "/api/v1/label/__name__/values?{}",
                query.trim_start_matches('&')
            )),
            None,
        );
        assert_eq!(json["data"], serde_json::json!(["kept"]), "values{query}");
    }
}
