//! The head written to one file at shutdown, so the next start loads its
//! chunks as they are instead of replaying (and re-encoding) every sample of
//! the WAL. The WAL is left untouched: the snapshot only says which of its
//! segments it already holds, and is deleted once loaded, so a crash later
//! replays the WAL as always.
//!
//! Layout (integers as LEB128 varints unless marked; `bytes` is a uvarint
//! length then the bytes):
//!
//! ```text
//! magic "STRATAHS", format u8 (1)
//! covered_segment uvarint   WAL segments up to this one are in the snapshot
//! cut_before varint, min_valid varint
//! segment_max: count, then (segment uvarint, newest varint) each
//! chunk_range varint, newest varint, samples uvarint, next_id uvarint
//! series: count, then per series
//!   id, labels bytes (packed), min_time varint, max_time varint
//!   last: 0 | 1 t bits:u64le | 2 t
//!   closed chunks: count, then (min varint, max varint, bytes) each
//!   open chunk: bytes, free_bits u8, first_t, t, v_bits u64le,
//!               t_delta u64le, leading u8, trailing u8
//!   histograms: count, then protobuf bytes each
//!   out-of-order: count, then (t varint, bits u64le) each
//! metadata: count, then protobuf bytes each
//! CRC32C of everything above, u32le
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use prost::Message;
use strata_common::chunk::{XorAppender, XorAppenderState};
use strata_proto::prometheus::{Histogram, MetricMetadata};

use super::{ClosedChunk, Extra, Head, LastKind, MemSeries};
use crate::block::format::{FormatError, Reader, put_bytes, put_uvarint, put_varint};
use crate::packed_labels::PackedLabels;

const MAGIC: &[u8; 8] = b"STRATAHS";
/// 2: labels in their protobuf wire form (1 packed them with bare
/// lengths). A snapshot of another format is not used (the WAL replays).
const FORMAT: u8 = 2;

/// The tenant's WAL bookkeeping at the moment of the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// WAL segments numbered up to this one are in the snapshot; replay
    /// starts after it.
    pub covered_segment: u64,
    pub cut_before: i64,
    pub min_valid: i64,
    /// Newest sample of each WAL segment (for truncation after cuts).
    pub segment_max: BTreeMap<u64, i64>,
}

/// A snapshot file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read head snapshot {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("head snapshot {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    /// Taken with another block range: its chunks may cross the
    /// configured range's boundaries.
    #[error(
        "head snapshot was taken with a block range of {snapshot} ms, {configured} ms configured"
    )]
    OtherBlockRange { snapshot: i64, configured: i64 },
    /// Written by a version of Strata with another snapshot format.
    #[error("head snapshot has format {found}, this version reads {FORMAT}")]
    OtherFormat { found: u8 },
}

/// Writes `head` and `meta` to `path` atomically: a temporary file, fsync,
/// rename, fsync of the directory. Returns the file's size.
pub fn write(path: &Path, head: &Head, meta: &SnapshotMeta) -> io::Result<u64> {
    let temporary = path.with_extension("snapshot.tmp");
    let written = write_file(&temporary, head, meta).and_then(|size| {
        fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(size)
    });
    if written.is_err() {
        // Best effort: a partial file is never read, only overwritten.
        let _ = fs::remove_file(&temporary);
    }
    written
}

fn write_file(temporary: &Path, head: &Head, meta: &SnapshotMeta) -> io::Result<u64> {
    let mut out = CheckedWriter::new(BufWriter::new(File::create(temporary)?));
    let mut scratch = Vec::with_capacity(4096);
    scratch.extend_from_slice(MAGIC);
    scratch.push(FORMAT);
    put_meta(&mut scratch, head, meta);
    put_uvarint(&mut scratch, head.live as u64);
    out.write(&scratch)?;
    for (id, series) in head.live_series() {
        scratch.clear();
        put_series(&mut scratch, id, series);
        out.write(&scratch)?;
    }
    scratch.clear();
    let metadata: Vec<&MetricMetadata> = head.metadata.values().flatten().collect();
    put_uvarint(&mut scratch, metadata.len() as u64);
    for entry in metadata {
        put_bytes(&mut scratch, &entry.encode_to_vec());
    }
    out.write(&scratch)?;
    out.finish()
}

/// Reads the snapshot at `path`; `None` when there is none. A snapshot of a
/// head with another chunk range (the block range changed) is refused, as
/// its chunks may cross the new block boundaries.
pub fn read(path: &Path, chunk_range: i64) -> Result<Option<(Head, SnapshotMeta)>, SnapshotError> {
    let io_error = |source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(source)),
    };
    // Mapped, not read: the file is about as big as the head's chunks, and
    // its pages stay reclaimable page cache while the head is built.
    // SAFETY: a snapshot is written once under a temporary name and never
    // modified after its rename; a start renames it to a name of its own
    // before reading, so nothing writes it while it is mapped.
    #[allow(unsafe_code)]
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
    let damaged = |reason: String| SnapshotError::Damaged {
        path: path.display().to_string(),
        reason,
    };
    let body = checked_body(&bytes).map_err(damaged)?;
    let (&format, body) = body
        .split_first()
        .ok_or_else(|| damaged("no format".to_owned()))?;
    if format != FORMAT {
        return Err(SnapshotError::OtherFormat { found: format });
    }
    let mut r = Reader::new(body, "head snapshot");
    let meta = read_meta(&mut r).map_err(|e| damaged(e.to_string()))?;
    let snapshot_range = r.varint().map_err(|e| damaged(e.to_string()))?;
    if snapshot_range != chunk_range.max(1) {
        return Err(SnapshotError::OtherBlockRange {
            snapshot: snapshot_range,
            configured: chunk_range,
        });
    }
    read_head(&mut r, chunk_range)
        .map(|head| Some((head, meta)))
        .map_err(|e| damaged(e.to_string()))
}

/// The bytes between the magic and the checksum, once both are right.
fn checked_body(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < MAGIC.len() + 1 + 4 {
        return Err(format!("{} bytes is too short", bytes.len()));
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(content) != stored {
        return Err("checksum mismatch".to_owned());
    }
    if &content[..MAGIC.len()] != MAGIC {
        return Err("not a head snapshot".to_owned());
    }
    // The format byte is checked by the caller.
    Ok(&content[MAGIC.len()..])
}

fn put_meta(out: &mut Vec<u8>, head: &Head, meta: &SnapshotMeta) {
    put_uvarint(out, meta.covered_segment);
    put_varint(out, meta.cut_before);
    put_varint(out, meta.min_valid);
    put_uvarint(out, meta.segment_max.len() as u64);
    for (segment, newest) in &meta.segment_max {
        put_uvarint(out, *segment);
        put_varint(out, *newest);
    }
    put_varint(out, head.chunk_range);
    put_varint(out, head.newest);
    put_uvarint(out, head.samples);
    put_uvarint(out, u64::from(head.next_id()));
}

fn put_series(out: &mut Vec<u8>, id: u32, series: &MemSeries) {
    put_uvarint(out, u64::from(id));
    put_bytes(out, series.labels.as_bytes());
    put_varint(out, series.min_time);
    put_varint(out, series.max_time);
    match series.last {
        None => out.push(0),
        Some((t, LastKind::Float(bits))) => {
            out.push(1);
            put_varint(out, t);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Some((t, LastKind::Histogram)) => {
            out.push(2);
            put_varint(out, t);
        }
    }
    put_uvarint(out, series.closed.len() as u64);
    for chunk in &series.closed {
        put_varint(out, chunk.min_time);
        put_varint(out, chunk.max_time);
        put_bytes(out, &chunk.bytes);
    }
    let open = series.open.state();
    put_bytes(out, &open.bytes);
    out.push(open.free_bits);
    put_varint(out, open.first_t);
    put_varint(out, open.t);
    out.extend_from_slice(&open.v_bits.to_le_bytes());
    out.extend_from_slice(&open.t_delta.to_le_bytes());
    out.push(open.leading);
    out.push(open.trailing);
    put_uvarint(out, series.histograms().len() as u64);
    for histogram in series.histograms() {
        put_bytes(out, &histogram.encode_to_vec());
    }
    put_uvarint(out, series.out_of_order().len() as u64);
    for (t, bits) in series.out_of_order() {
        put_varint(out, *t);
        out.extend_from_slice(&bits.to_le_bytes());
    }
}

fn read_meta(r: &mut Reader<'_>) -> Result<SnapshotMeta, FormatError> {
    let covered_segment = r.uvarint()?;
    let cut_before = r.varint()?;
    let min_valid = r.varint()?;
    let mut segment_max = BTreeMap::new();
    for _ in 0..r.length(r.remaining())? {
        segment_max.insert(r.uvarint()?, r.varint()?);
    }
    Ok(SnapshotMeta {
        covered_segment,
        cut_before,
        min_valid,
        segment_max,
    })
}

/// The head after the block range (checked by the caller).
fn read_head(r: &mut Reader<'_>, chunk_range: i64) -> Result<Head, FormatError> {
    let mut head = Head::new(chunk_range);
    head.newest = r.varint()?;
    let samples = r.uvarint()?;
    let next_id = u32::try_from(r.uvarint()?)
        .map_err(|_| FormatError::new("head snapshot", "series id out of range"))?;
    for _ in 0..r.length(r.remaining())? {
        read_series(r, &mut head, next_id)?;
    }
    for _ in 0..r.length(r.remaining())? {
        let entry = MetricMetadata::decode(r.bytes()?)
            .map_err(|e| FormatError::new("head snapshot metadata", e))?;
        head.add_metadata(entry);
    }
    if r.remaining() != 0 {
        return Err(FormatError::new("head snapshot", "trailing bytes"));
    }
    head.skip_ids_below(next_id);
    head.samples = samples;
    Ok(head)
}

fn read_series(r: &mut Reader<'_>, head: &mut Head, next_id: u32) -> Result<(), FormatError> {
    let bad = |reason: &str| FormatError::new("head snapshot series", reason);
    let id = u32::try_from(r.uvarint()?)
        .ok()
        .filter(|id| *id < next_id)
        .ok_or_else(|| bad("series id out of range"))?;
    let labels = PackedLabels::parse(r.bytes()?).ok_or_else(|| bad("labels do not parse"))?;
    let min_time = r.varint()?;
    let max_time = r.varint()?;
    let last = match r.u8()? {
        0 => None,
        1 => Some((r.varint()?, LastKind::Float(r.u64_le()?))),
        2 => Some((r.varint()?, LastKind::Histogram)),
        _ => return Err(bad("unknown kind of last sample")),
    };
    let mut closed = Vec::new();
    for _ in 0..r.length(r.remaining())? {
        closed.push(ClosedChunk {
            min_time: r.varint()?,
            max_time: r.varint()?,
            bytes: r.bytes()?.into(),
        });
    }
    let open = XorAppender::resume(XorAppenderState {
        bytes: r.bytes()?.to_vec(),
        free_bits: r.u8()?,
        first_t: r.varint()?,
        t: r.varint()?,
        v_bits: r.u64_le()?,
        t_delta: r.u64_le()?,
        leading: r.u8()?,
        trailing: r.u8()?,
    })
    .map_err(|e| FormatError::new("head snapshot open chunk", e))?;
    let mut extra = Extra::default();
    for _ in 0..r.length(r.remaining())? {
        let histogram = Histogram::decode(r.bytes()?)
            .map_err(|e| FormatError::new("head snapshot histogram", e))?;
        extra.histograms.push(histogram);
    }
    for _ in 0..r.length(r.remaining())? {
        extra.out_of_order.push((r.varint()?, r.u64_le()?));
    }
    head.create_series(id, labels)
        .map_err(|reason| bad(&reason))?;
    let series = head.series[id as usize]
        .as_mut()
        .ok_or_else(|| bad("series vanished"))?;
    series.min_time = min_time;
    series.max_time = max_time;
    series.last = last;
    series.closed = closed;
    series.open = open;
    if !extra.histograms.is_empty() || !extra.out_of_order.is_empty() {
        series.extra = Some(Box::new(extra));
    }
    Ok(())
}

/// A buffered file writer that keeps the CRC32C of what went through it.
struct CheckedWriter {
    out: BufWriter<File>,
    crc: u32,
    written: u64,
}

impl CheckedWriter {
    fn new(out: BufWriter<File>) -> Self {
        CheckedWriter {
            out,
            crc: 0,
            written: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.written += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Appends the checksum, flushes and fsyncs; returns the file size.
    fn finish(mut self) -> io::Result<u64> {
        self.out.write_all(&self.crc.to_le_bytes())?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(self.written + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    fn small_head() -> Head {
        let mut head = Head::new(7_200_000);
        head.create_series(0, vec![label("__name__", "a")])
            .expect("create");
        for t in 0..200 {
            head.append_float(0, t * 15_000, (t as f64).to_bits());
        }
        head
    }

    #[test]
    fn empty_truncated_and_foreign_files_are_damaged_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("head.snapshot");
        write(&path, &small_head(), &SnapshotMeta::default()).expect("write");
        let whole = fs::read(&path).expect("read");
        assert!(read(&path, 7_200_000).expect("reads").is_some());
        let cases = [
            Vec::new(),
            whole[..whole.len() / 2].to_vec(),
            whole[..whole.len() - 1].to_vec(),
            b"not a snapshot at all".to_vec(),
        ];
        for bytes in cases {
            fs::write(&path, &bytes).expect("write");
            let error = read(&path, 7_200_000).expect_err("damaged");
            assert!(
                matches!(error, SnapshotError::Damaged { .. }),
                "{} bytes: {error}",
                bytes.len()
            );
        }
        fs::remove_file(&path).expect("remove");
        assert!(read(&path, 7_200_000).expect("no file").is_none());
    }

    /// `body` (a snapshot without its checksum) with a checksum that fits.
    fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn a_snapshot_of_another_format_is_told_apart_from_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("head.snapshot");
        write(&path, &small_head(), &SnapshotMeta::default()).expect("write");
        let whole = fs::read(&path).expect("read");
        let mut older = whole[..whole.len() - 4].to_vec();
        older[MAGIC.len()] = 1;
        fs::write(&path, with_checksum(older)).expect("write");
        let error = read(&path, 7_200_000).expect_err("other format");
        assert!(
            matches!(error, SnapshotError::OtherFormat { found: 1 }),
            "{error}"
        );
    }

    #[test]
    fn a_body_with_a_recomputed_checksum_is_still_checked() {
        // Damage the CRC cannot see (it is recomputed): every flipped byte
        // of the body gives an error or a head, never a panic.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("head.snapshot");
        write(&path, &small_head(), &SnapshotMeta::default()).expect("write");
        let whole = fs::read(&path).expect("read");
        let body = &whole[..whole.len() - 4];
        for at in MAGIC.len() + 1..body.len() {
            let mut damaged = body.to_vec();
            damaged[at] ^= 0x5a;
            fs::write(&path, with_checksum(damaged)).expect("write");
            match read(&path, 7_200_000) {
                Ok(Some((head, _))) => assert!(head.num_series() <= 1, "byte {at}"),
                Ok(None) => panic!("byte {at}: the file is there"),
                Err(
                    SnapshotError::Damaged { .. }
                    | SnapshotError::OtherBlockRange { .. }
                    | SnapshotError::OtherFormat { .. },
                ) => {}
                Err(error) => panic!("byte {at}: {error}"),
            }
        }
    }
}
