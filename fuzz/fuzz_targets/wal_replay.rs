//! WAL replay on damaged and crafted segments: the input becomes one or
//! two segment files (layout in `strata_fuzz::wal_segments`), which a
//! fresh `TenantDb::open` replays into a head. The input's body is also
//! handed to `wal_codec::decode` directly.
//!
//! Oracles:
//! * no panic; errors are fine;
//! * a record that decodes re-encodes to a stable form
//!   (`encode(decode(encode(r))) == encode(r)`);
//! * opening repairs what it truncates: when the first open succeeds, a
//!   second open of the same directory succeeds too and rebuilds the same
//!   head (same series, same samples) without truncating anything more
//!   from what is now an earlier segment;
//! * every chunk the head returns decodes, and a select of a sub-range
//!   returns only samples inside it.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use strata_common::chunk;
use strata_store_node::block::BlockCache;
use strata_store_node::tenant_db::{TenantDb, TenantOptions};
use strata_store_node::wal_codec;

fuzz_target!(|data: &[u8]| {
    if let Some((_, body)) = data.split_first() {
        check_codec(body);
    }
    let segments = strata_fuzz::wal_segments(data);
    if segments.is_empty() {
        return;
    }
    for segment in &segments {
        if let Some(payloads) = framed_payloads(segment) {
            for payload in payloads {
                check_codec(payload);
            }
        }
    }
    replay(&segments, data);
});

/// Record payloads of a segment built with valid frames, for the codec check.
fn framed_payloads(segment: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = segment.strip_prefix(strata_fuzz::WAL_HEADER.as_slice())?;
    let mut out = Vec::new();
    while rest.len() >= 8 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(payload) = rest.get(8..8 + len) else {
            break;
        };
        out.push(payload);
        rest = &rest[8 + len..];
    }
    Some(out)
}

fn check_codec(payload: &[u8]) {
    let Ok(record) = wal_codec::decode(payload) else {
        return;
    };
    let encoded = wal_codec::encode(&record);
    let again = wal_codec::decode(&encoded).expect("an encoded record decodes");
    assert_eq!(
        wal_codec::encode(&again),
        encoded,
        "wal record re-encodes differently"
    );
}

/// A scratch directory, on tmpfs when there is one: opening a WAL fsyncs.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base: PathBuf = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("strata-fuzz-wal-")
        .tempdir_in(base)
        .expect("scratch directory")
}

fn cache() -> Arc<BlockCache> {
    Arc::new(BlockCache::new(1 << 20, Default::default(), Default::default()))
}

fn replay(segments: &[Vec<u8>], data: &[u8]) {
    let dir = scratch();
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir_all(&wal_dir).expect("wal directory");
    for (index, segment) in segments.iter().enumerate() {
        std::fs::write(wal_dir.join(format!("{:08}", index + 1)), segment).expect("segment");
    }
    let Ok((db, first)) = TenantDb::open("t", dir.path(), TenantOptions::default(), cache()) else {
        return;
    };
    let (series, samples) = {
        let head = db.head();
        check_head(&head, data);
        (head.num_series(), head.num_samples())
    };
    drop(db);

    let (db, second) = match TenantDb::open("t", dir.path(), TenantOptions::default(), cache()) {
        Ok(opened) => opened,
        Err(error) => panic!("wal opened once ({first:?}) but not again: {error:?}"),
    };
    assert_eq!(second.records, first.records, "{first:?} then {second:?}");
    assert!(
        second.truncated_bytes <= first.truncated_bytes,
        "{first:?} then {second:?}"
    );
    let head = db.head();
    assert_eq!(head.num_series(), series, "{first:?} then {second:?}");
    assert_eq!(head.num_samples(), samples, "{first:?} then {second:?}");
}

fn check_head(head: &strata_store_node::head::Head, data: &[u8]) {
    let all = head.matching(&[], i64::MIN, i64::MAX);
    for series in head.select(&all, i64::MIN, i64::MAX) {
        for c in &series.chunks {
            match chunk::decode(&c.data) {
                Ok(decoded) => check_bounds(c, &decoded),
                Err(error) => panic!("head chunk of {:?} does not decode: {error}", series.labels),
            }
        }
    }
    // A sub-range picked by the input: boundary chunks are re-encoded.
    let pick = |at: usize| -> i64 {
        let bytes: [u8; 8] = std::array::from_fn(|i| data.get(at + i).copied().unwrap_or(0));
        i64::from_le_bytes(bytes) >> 16
    };
    let (a, b) = (
        pick(data.len().saturating_sub(16)),
        pick(data.len().saturating_sub(8)),
    );
    let (start, end) = (a.min(b), a.max(b));
    let ids = head.matching(&[], start, end);
    for series in head.select(&ids, start, end) {
        for c in &series.chunks {
            let decoded = match chunk::decode(&c.data) {
                Ok(decoded) => decoded,
                Err(error) => panic!("trimmed chunk does not decode: {error}"),
            };
            check_bounds(c, &decoded);
            for (t, _) in decoded {
                assert!(
                    (start..=end).contains(&t),
                    "sample at {t} outside the selected [{start}, {end}]"
                );
            }
        }
    }
}

/// A chunk's stated time range is that of its first and last sample.
fn check_bounds(c: &strata_proto::prometheus::Chunk, decoded: &[(i64, f64)]) {
    let first = decoded.first().map(|s| s.0);
    let last = decoded.last().map(|s| s.0);
    assert_eq!(first, Some(c.min_time_ms), "chunk min time");
    assert_eq!(last, Some(c.max_time_ms), "chunk max time");
}
