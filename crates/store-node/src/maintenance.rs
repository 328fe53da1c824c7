//! The life of a tenant's data after the write path: cutting the head into
//! level-1 blocks, checkpointing and truncating the WAL, merging blocks
//! (compaction), deleting old blocks (retention), and the start-up
//! clean-up of what a crash may leave behind.
//!
//! Invariants, each step being crash-safe:
//! * A block becomes visible by a rename after all its files are fsynced.
//! * The WAL loses segments only after the blocks holding their samples
//!   and a checkpoint naming the surviving series are durable.
//! * A merged block lists its parents; a parent still on disk at open
//!   (crash between publishing the merge and deleting the parents) is
//!   deleted then, so no sample is counted twice.
//! * Blocks are deleted by renaming them to `*.deleted` first, so a crash
//!   mid-delete never leaves a half block that looks damaged.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use strata_proto::wal::{Checkpoint, SeriesEntry};

use crate::block::{Block, BlockError, BlockSeries, BlockWriter, fsync_dir};
use crate::head::range_end;
use crate::merge::block_series;
use crate::tenant_db::{Retention, TenantDb, TenantDbError};
use crate::wal_codec;

/// Compaction merges level-1 blocks into ranges this many times longer
/// (2 h → 12 h → 2 d with the default range).
pub const COMPACTION_FACTORS: [i64; 2] = [6, 24];

/// File holding the latest WAL checkpoint.
const CHECKPOINT_FILE: &str = "checkpoint";

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub blocks_cut: usize,
    pub blocks_compacted: usize,
    pub blocks_deleted: usize,
}

/// A new block id: 48 bits of milliseconds and 80 random bits in
/// Crockford base32, sortable by creation time like a ULID.
pub fn new_ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(millis);
    let random = (u128::from(hasher.finish()) << 16) ^ u128::from(std::process::id());
    let value = (u128::from(millis & 0xffff_ffff_ffff) << 80) | (random & ((1u128 << 80) - 1));
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Opens every block under `dir`: removes leftovers of interrupted writes
/// and deletes, deletes parents of merged blocks, and moves damaged blocks
/// aside to `<tenant>/corrupted/` with one error log line each.
pub fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, BlockError> {
    fs::create_dir_all(dir).map_err(|e| BlockError::io(dir, e))?;
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| BlockError::io(dir, e))? {
        let path = entry.map_err(|e| BlockError::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            fs::remove_dir_all(&path).map_err(|e| BlockError::io(&path, e))?;
            continue;
        }
        if !path.is_dir() {
            continue;
        }
        match Block::open(&path) {
            Ok(block) => blocks.push(Arc::new(block)),
            Err(error) => move_aside(dir, &path, &error)?,
        }
    }
    let parents: BTreeSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.parents.clone())
        .collect();
    let (merged, kept): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| parents.contains(&b.meta().ulid));
    for block in merged {
        tracing::info!(block = %block.dir().display(), "deleting a block already merged into another");
        delete_block_dir(block.dir())?;
    }
    let mut blocks = kept;
    blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
    Ok(blocks)
}

fn move_aside(blocks_dir: &Path, path: &Path, error: &BlockError) -> Result<(), BlockError> {
    let corrupted = blocks_dir.with_file_name("corrupted");
    fs::create_dir_all(&corrupted).map_err(|e| BlockError::io(&corrupted, e))?;
    let target = corrupted.join(path.file_name().unwrap_or_default());
    tracing::error!(
        block = %path.display(),
        moved_to = %target.display(),
        error = %crate::error_chain(error),
        "damaged block moved aside; the rest of the tenant's data is served"
    );
    fs::rename(path, &target).map_err(|e| BlockError::io(path, e))
}

/// Deletes a block directory crash-safely (rename, then remove).
fn delete_block_dir(dir: &Path) -> Result<(), BlockError> {
    let mut doomed = dir.as_os_str().to_owned();
    doomed.push(".deleted");
    let doomed = PathBuf::from(doomed);
    fs::rename(dir, &doomed).map_err(|e| BlockError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    fs::remove_dir_all(&doomed).map_err(|e| BlockError::io(&doomed, e))
}

/// Reads `wal/checkpoint` if there is one.
pub fn read_checkpoint(wal_dir: &Path) -> Result<Option<Checkpoint>, String> {
    let path = wal_dir.join(CHECKPOINT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let (crc, payload) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| format!("{} is truncated", path.display()))?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(payload) {
        return Err(format!("{} fails its checksum", path.display()));
    }
    wal_codec::decode_message(payload).map(Some)
}

fn write_checkpoint(wal_dir: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let payload = wal_codec::encode_message(checkpoint);
    let tmp = wal_dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&crc32c::crc32c(&payload).to_le_bytes())?;
    file.write_all(&payload)?;
    file.sync_all()?;
    fs::rename(&tmp, wal_dir.join(CHECKPOINT_FILE))?;
    fs::File::open(wal_dir)?.sync_all()
}

impl TenantDb {
    fn blocks_dir(&self) -> PathBuf {
        self.dir.join("blocks")
    }

    /// One maintenance pass: cut what is due, compact, apply the
    /// configured retention.
    pub fn maintain(&self) -> Result<MaintenanceReport, TenantDbError> {
        self.maintain_with(Retention::of(&self.options))
    }

    /// One maintenance pass with `retention` (a tenant's override or the
    /// configured one).
    pub fn maintain_with(&self, retention: Retention) -> Result<MaintenanceReport, TenantDbError> {
        let snapshotted = self.maintenance.lock();
        let mut report = MaintenanceReport::default();
        if *snapshotted {
            return Ok(report);
        }
        loop {
            let Some((min, max)) = self.head.read().time_range() else {
                break;
            };
            let range = self.options.block_range_ms;
            // As Prometheus: keep half a range of the newest data in the head,
            // and never cut a range the out-of-order window still reaches.
            let before = range_end(min, range);
            let window = self.options.out_of_order_window_ms;
            if max.saturating_sub(min) <= range / 2 * 3 || before > max.saturating_sub(window) {
                break;
            }
            report.blocks_cut += self.cut_before(before, before)?;
        }
        report.blocks_compacted += self.compact(retention)?;
        report.blocks_deleted += self.apply_retention(retention)?;
        Ok(report)
    }

    /// Cuts everything in the head into blocks now; returns the number of
    /// blocks written.
    pub fn flush(&self) -> Result<usize, TenantDbError> {
        let snapshotted = self.maintenance.lock();
        if *snapshotted {
            return Ok(0);
        }
        let range = self.head.read().time_range();
        let block_range = self.options.block_range_ms;
        match range {
            Some((_, max)) => self.cut_before(
                max.saturating_add(1),
                range_end(max, block_range).saturating_sub(block_range),
            ),
            None => Ok(0),
        }
    }

    /// Moves all head data before `before` (raised to the previous bound if
    /// lower) into level-1 blocks, one per block range, then truncates the
    /// head and the WAL. Writes older than `write_bound` (at most `before`)
    /// are refused as out of bounds from then on.
    fn cut_before(&self, before: i64, write_bound: i64) -> Result<usize, TenantDbError> {
        let started = Instant::now();
        let before = {
            let mut state = self.wal.lock();
            let before = before.max(state.cut_before);
            // While the blocks are written the write path refuses, or delays
            // with a retryable error, every sample below `before`, so the
            // head gains nothing the cut would then drop.
            state.cut_before = before;
            state.min_valid = state.min_valid.max(write_bound.min(before));
            state.cutting = Some(before);
            before
        };
        let written = match self.write_cut_blocks(before) {
            Ok(written) => written,
            Err(error) => {
                self.wal.lock().cutting = None;
                return Err(error);
            }
        };
        let count = written.len();
        {
            // Under the WAL lock (taken before the head's, as the write path
            // does): a write planned for a series with no data since
            // `before` is applied before the series could be dropped here,
            // or planned after, finding it gone. Without it, such a series
            // could be dropped between a write's plan and its apply, losing
            // an acknowledged sample.
            let mut state = self.wal.lock();
            let mut head = self.head.write();
            let mut blocks = self.blocks.write();
            blocks.extend(written);
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
            let dropped = head.truncate_before(before);
            state.cutting = None;
            tracing::debug!(tenant = %self.tenant, dropped, "head series without data dropped");
        }
        self.checkpoint(before)?;
        tracing::info!(
            tenant = %self.tenant,
            before,
            blocks = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "head cut into blocks"
        );
        Ok(count)
    }

    fn write_cut_blocks(&self, before: i64) -> Result<Vec<Arc<Block>>, TenantDbError> {
        let mut data = self.head.read().data_before(before);
        let range = self.options.block_range_ms;
        // Chunks never cross a range boundary: one block per range. The
        // blocks are written one after the other and each series is built
        // (labels copied, chunks moved out of the cut copy and re-encoded)
        // only as the writer takes it, so a flush covering many ranges holds
        // no more than the cut copy plus one series at a time.
        let ends: BTreeSet<i64> = data
            .iter()
            .flat_map(|s| s.chunks.iter().map(|c| range_end(c.min_time, range)))
            .collect();
        let mut written = Vec::new();
        for end in ends {
            let series = data.iter_mut().filter_map(|s| {
                let chunks: Vec<_> = s
                    .chunks
                    .extract_if(.., |c| range_end(c.min_time, range) == end)
                    .collect();
                (!chunks.is_empty()).then(|| Ok(block_series(s.labels.clone(), chunks)))
            });
            if let Some(block) = self.write_block(series, 1, Vec::new(), Vec::new())? {
                written.push(block);
            }
        }
        Ok(written)
    }

    /// Writes a block from label-ordered series and opens it; `None` when
    /// no series had data. A failed write leaves only a `*.tmp` directory,
    /// removed here or at the next open.
    fn write_block(
        &self,
        series: impl IntoIterator<Item = Result<BlockSeries, BlockError>>,
        level: u32,
        sources: Vec<String>,
        parents: Vec<String>,
    ) -> Result<Option<Arc<Block>>, TenantDbError> {
        let blocks_dir = self.blocks_dir();
        let ulid = new_ulid();
        let written = (|| {
            let mut writer = BlockWriter::new(&blocks_dir, ulid.clone())?;
            for one in series {
                writer.add_series(one?)?;
            }
            writer.finish(level, sources, parents)
        })();
        let meta = match written {
            Ok(meta) => meta,
            Err(error) => {
                let _ = fs::remove_dir_all(blocks_dir.join(format!("{ulid}.tmp")));
                return Err(self.block_error(error));
            }
        };
        let Some(meta) = meta else {
            return Ok(None);
        };
        let block = Block::open(&blocks_dir.join(&meta.ulid)).map_err(|e| self.block_error(e))?;
        Ok(Some(Arc::new(block)))
    }

    /// Merges blocks: first any that overlap in time (backfilled data),
    /// then complete groups of adjacent blocks into the compaction ranges.
    /// Returns the number of blocks merged away.
    fn compact(&self, retention: Retention) -> Result<usize, TenantDbError> {
        let mut merged = 0;
        while let Some(group) = self.plan_compaction(retention) {
            merged += group.len();
            self.merge_blocks(group)?;
        }
        Ok(merged)
    }

    /// The next group of blocks to merge, if any.
    fn plan_compaction(&self, retention: Retention) -> Option<Vec<Arc<Block>>> {
        let blocks = self.blocks.read().clone();
        // Overlapping blocks (sorted by min time): merge the first run.
        let mut run: Vec<Arc<Block>> = Vec::new();
        let mut run_max = i64::MIN;
        for block in &blocks {
            if !run.is_empty() && block.meta().min_time >= run_max {
                if run.len() > 1 {
                    return Some(run);
                }
                run.clear();
            }
            run_max = if run.is_empty() {
                block.meta().max_time
            } else {
                run_max.max(block.meta().max_time)
            };
            run.push(block.clone());
        }
        if run.len() > 1 {
            return Some(run);
        }
        // Adjacent blocks inside one window of a longer range, once the head
        // has moved past that window (nothing more will land in it).
        let head_bound = self.wal.lock().min_valid;
        let base = self.options.block_range_ms;
        for factor in COMPACTION_FACTORS {
            let window = base.saturating_mul(factor);
            if retention.ms > 0 && window > retention.ms / 10 {
                break;
            }
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for block in &blocks {
                let end = range_end(block.meta().min_time, window);
                if block.meta().max_time <= end {
                    groups.entry(end).or_default().push(block.clone());
                }
            }
            for (end, group) in groups {
                let spans_window = group
                    .iter()
                    .all(|b| b.meta().max_time - b.meta().min_time < window);
                if group.len() > 1 && spans_window && end <= head_bound {
                    return Some(group);
                }
            }
        }
        None
    }

    /// Writes one block holding the union of `group`, publishes it in their
    /// place and deletes them.
    fn merge_blocks(&self, group: Vec<Arc<Block>>) -> Result<(), TenantDbError> {
        let started = Instant::now();
        let level = group
            .iter()
            .map(|b| b.meta().compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let mut sources: Vec<String> = group
            .iter()
            .flat_map(|b| b.meta().compaction.sources.clone())
            .collect();
        sources.sort();
        sources.dedup();
        let parents: Vec<String> = group.iter().map(|b| b.meta().ulid.clone()).collect();
        let merged = MergedSeries::new(&group);
        let block = self.write_block(merged, level, sources, parents.clone())?;
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !parents.contains(&b.meta().ulid));
            blocks.extend(block.clone());
            blocks.sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
        }
        for parent in &group {
            delete_block_dir(parent.dir()).map_err(|e| self.block_error(e))?;
        }
        tracing::info!(
            tenant = %self.tenant,
            merged = group.len(),
            level,
            block = block.as_ref().map(|b| b.meta().ulid.as_str()).unwrap_or("(empty)"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "blocks compacted"
        );
        Ok(())
    }

    /// Deletes whole blocks beyond the retention time or size.
    fn apply_retention(&self, retention: Retention) -> Result<usize, TenantDbError> {
        let blocks = self.blocks.read().clone();
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        if retention.ms > 0 {
            let newest = blocks
                .iter()
                .map(|b| b.meta().max_time - 1)
                .chain(self.head.read().time_range().map(|(_, max)| max))
                .max();
            if let Some(newest) = newest {
                let horizon = newest.saturating_sub(retention.ms);
                doomed.extend(
                    blocks
                        .iter()
                        .filter(|b| b.meta().max_time <= horizon)
                        .cloned(),
                );
            }
        }
        if retention.bytes > 0 {
            let mut total: u64 = blocks.iter().map(|b| b.sizes().total()).sum();
            for block in &blocks {
                if total <= retention.bytes {
                    break;
                }
                total -= block.sizes().total();
                if !doomed.iter().any(|d| Arc::ptr_eq(d, block)) {
                    doomed.push(block.clone());
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.blocks
            .write()
            .retain(|b| !doomed.iter().any(|d| Arc::ptr_eq(d, b)));
        for block in &doomed {
            tracing::info!(tenant = %self.tenant, block = %block.dir().display(), "block deleted by retention");
            delete_block_dir(block.dir()).map_err(|e| self.block_error(e))?;
        }
        Ok(doomed.len())
    }

    /// Writes a checkpoint of the head after a cut at `before` and deletes
    /// the WAL segments holding nothing newer.
    fn checkpoint(&self, before: i64) -> Result<(), TenantDbError> {
        let mut state = self.wal.lock();
        let first_new_segment = state
            .wal
            .start_new_segment()
            .map_err(|e| self.wal_error(e))?;
        let checkpoint = {
            let head = self.head.read();
            Checkpoint {
                cut_before_ms: before,
                first_new_segment,
                series: head
                    .series_entries()
                    .into_iter()
                    .map(|(id, labels)| SeriesEntry { id, labels })
                    .collect(),
                metadata: head.all_metadata(),
                next_series_id: head.next_id(),
            }
        };
        let wal_dir = state.wal.dir().to_owned();
        write_checkpoint(&wal_dir, &checkpoint).map_err(|e| TenantDbError::Checkpoint {
            tenant: self.tenant.clone(),
            reason: format!("writing the wal checkpoint: {e}"),
        })?;
        // The oldest segments whose samples are all in blocks go; the first
        // one with a newer sample and everything after it stay.
        let keep_from = state
            .segment_max
            .iter()
            .find(|(segment, max)| **segment >= first_new_segment || **max >= before)
            .map_or(first_new_segment, |(segment, _)| *segment);
        state
            .wal
            .truncate_before(keep_from)
            .map_err(|e| self.wal_error(e))?;
        state.segment_max.retain(|segment, _| *segment >= keep_from);
        Ok(())
    }
}

/// The series of several blocks merged in label order (a k-way merge over
/// the blocks' label-ordered series), for compaction. Memory stays at one
/// series per block.
struct MergedSeries<'a> {
    sources: Vec<Box<dyn Iterator<Item = Result<BlockSeries, BlockError>> + 'a>>,
    heads: Vec<Option<BlockSeries>>,
    failed: bool,
}

impl<'a> MergedSeries<'a> {
    fn new(blocks: &'a [Arc<Block>]) -> Self {
        let sources: Vec<Box<dyn Iterator<Item = Result<BlockSeries, BlockError>> + 'a>> = blocks
            .iter()
            .map(|b| Box::new(b.all_series()) as Box<dyn Iterator<Item = _>>)
            .collect();
        let heads = (0..sources.len()).map(|_| None).collect();
        MergedSeries {
            sources,
            heads,
            failed: false,
        }
    }
}

impl Iterator for MergedSeries<'_> {
    type Item = Result<BlockSeries, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        for (head, source) in self.heads.iter_mut().zip(&mut self.sources) {
            if head.is_none() {
                match source.next() {
                    Some(Ok(series)) => *head = Some(series),
                    Some(Err(error)) => {
                        self.failed = true;
                        return Some(Err(error));
                    }
                    None => {}
                }
            }
        }
        let smallest = self
            .heads
            .iter()
            .flatten()
            .map(|s| &s.labels)
            .min_by(|a, b| strata_common::labels::compare(a, b))?
            .clone();
        let mut chunks = Vec::new();
        for head in &mut self.heads {
            if head.as_ref().is_some_and(|s| s.labels == smallest)
                && let Some(series) = head.take()
            {
                chunks.extend(series.chunks);
            }
        }
        Some(Ok(block_series(smallest, chunks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockCache;
    use crate::tenant_db::TenantOptions;
    use strata_common::labels::label;
    use strata_proto::prometheus::{Sample, TimeSeries};
    use strata_proto::store::SelectedSeries;

    const RANGE: i64 = 10_000;

    fn options() -> TenantOptions {
        TenantOptions {
            block_range_ms: RANGE,
            ..TenantOptions::default()
        }
    }

    fn open(dir: &Path, options: TenantOptions) -> TenantDb {
        let cache = Arc::new(BlockCache::new(
            1 << 20,
            Default::default(),
            Default::default(),
        ));
        TenantDb::open("t", dir, options, cache).expect("open").0
    }

    fn series(name: &str, samples: impl IntoIterator<Item = (i64, f64)>) -> TimeSeries {
        TimeSeries {
            labels: vec![label("__name__", name)],
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    /// Writes `a` every second in [from, to) and `b` every 5 s.
    fn write_range(db: &TenantDb, from: i64, to: i64) {
        for t in (from..to).step_by(1000) {
            let mut batch = vec![series("a", [(t, t as f64)])];
            if t % 5000 == 0 {
                batch.push(series("b", [(t, 1.0)]));
            }
            let outcome = db.write(&batch, &[]).expect("write");
            assert!(
                outcome.response.rejected.is_empty(),
                "{:?}",
                outcome.response.rejected
            );
        }
    }

    fn everything(db: &TenantDb) -> Vec<(String, Vec<(i64, f64)>)> {
        let selected: Vec<SelectedSeries> = db.select(&[], i64::MIN, i64::MAX).expect("select");
        selected
            .iter()
            .map(|s| {
                let mut samples = Vec::new();
                for c in &s.chunks {
                    strata_common::compact_chunk::decode_any(c.r#type, &c.data, &mut samples)
                        .expect("chunk");
                }
                (s.labels[0].value.clone(), samples)
            })
            .collect()
    }

    fn wal_segments(dir: &Path) -> usize {
        fs::read_dir(dir.join("wal"))
            .expect("wal dir")
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
            })
            .count()
    }

    #[test]
    fn due_ranges_are_cut_into_blocks_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected = {
            let db = open(dir.path(), options());
            write_range(&db, 0, 12_000);
            // A restart in between leaves a WAL segment that is all in blocks later.
            drop(db);
            let db = open(dir.path(), options());
            write_range(&db, 12_000, 40_000);
            let before = everything(&db);
            let report = db.maintain().expect("maintain");
            // Head spans 0..39 s: ranges are cut while it spans more than 1.5
            // ranges, as in Prometheus.
            assert_eq!(report.blocks_cut, 3);
            assert_eq!(db.blocks().len(), 3);
            assert_eq!(db.head().time_range(), Some((30_000, 39_000)));
            assert_eq!(everything(&db), before, "head and blocks read as one");
            // Segment 1 (first run) holds only samples now in blocks; segment 2
            // holds head samples too, so it and its successors stay.
            assert!(!dir.path().join("wal/00000001").exists());
            assert!(dir.path().join("wal/00000002").exists());
            assert_eq!(wal_segments(dir.path()), 4);
            // Samples before the head's bound are refused as out of bounds.
            let outcome = db
                .write(&[series("a", [(5_000, 1.0)])], &[])
                .expect("write");
            assert_eq!(outcome.response.rejected.len(), 1);
            assert!(
                outcome.response.rejected[0]
                    .reason
                    .starts_with("out of bounds")
            );
            before
        };
        let db = open(dir.path(), options());
        assert_eq!(everything(&db), expected, "reopen: no loss, no duplicates");
        assert_eq!(db.head().time_range(), Some((30_000, 39_000)));
        write_range(&db, 40_000, 41_000);
        assert_eq!(everything(&db)[0].1.len(), 41);
    }

    #[test]
    fn flush_cuts_everything_and_writes_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 25_000);
        let before = everything(&db);
        assert_eq!(db.flush().expect("flush"), 3);
        assert_eq!(db.head().num_series(), 0);
        assert_eq!(everything(&db), before);
        write_range(&db, 25_000, 26_000);
        drop(db);
        let db = open(dir.path(), options());
        let after = everything(&db);
        assert_eq!(after[0].1.len(), 26);
        assert_eq!(after[0].1[..25], before[0].1[..]);
        // Series and label APIs see blocks too.
        let names = db
            .label_values("__name__", &[], i64::MIN, i64::MAX)
            .expect("values");
        assert_eq!(names, vec!["a", "b"]);
        let early = db.label_sets(&[], 0, 1000).expect("series");
        assert_eq!(early.len(), 2);
    }

    #[test]
    fn a_flush_leaves_the_range_of_its_newest_sample_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 25_000);
        db.flush().expect("flush");
        // The rest of the last scrape (24 s) arrives after the flush: its
        // range [20 s, 30 s) is still open; older ranges are not.
        let late = db
            .write(
                &[series("c", [(24_000, 3.0)]), series("d", [(19_000, 4.0)])],
                &[],
            )
            .expect("write");
        assert_eq!(late.response.samples_written, 1);
        assert_eq!(late.response.rejected.len(), 1);
        assert_eq!(late.response.rejected[0].index, 1);
        assert!(
            late.response.rejected[0]
                .reason
                .starts_with("out of bounds")
        );
        write_range(&db, 25_000, 31_000);
        db.flush().expect("flush");
        let names: Vec<String> = everything(&db).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        drop(db);
        let db = open(dir.path(), options());
        assert_eq!(everything(&db)[2], ("c".to_owned(), vec![(24_000, 3.0)]));
        assert_eq!(everything(&db)[0].1.len(), 31);
    }

    #[test]
    fn adjacent_blocks_compact_once_their_window_is_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        // 6 ranges (one compaction window of 60 s) and then some.
        write_range(&db, 0, 75_000);
        let before = everything(&db);
        let report = db.maintain().expect("maintain");
        assert_eq!(report.blocks_cut, 6);
        assert_eq!(report.blocks_compacted, 6);
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 1);
        let meta = blocks[0].meta();
        assert_eq!((meta.min_time, meta.max_time), (0, 59_001));
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.sources.len(), 6);
        assert_eq!(meta.stats.num_samples, 60 + 12);
        assert_eq!(everything(&db), before);
        drop(db);
        let db = open(dir.path(), options());
        assert_eq!(everything(&db), before);
        let on_disk = fs::read_dir(dir.path().join("blocks"))
            .expect("blocks")
            .count();
        assert_eq!(on_disk, 1, "parents are deleted");
    }

    #[test]
    fn backfilled_samples_land_in_blocks_of_their_own_and_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TenantOptions {
            backfill: true,
            ..options()
        };
        let db = open(dir.path(), options.clone());
        write_range(&db, 0, 30_000);
        db.maintain().expect("maintain");
        assert_eq!(db.blocks().len(), 2);
        // Older than the head's bound: accepted for a series that has no
        // newer sample (an older one would be out of order for `a`).
        let outcome = db
            .write(
                &[
                    series("a", [(500, -1.0)]),
                    series("c", [(700, 7.0), (11_000, 8.0)]),
                ],
                &[],
            )
            .expect("write");
        assert_eq!(outcome.response.rejected.len(), 1);
        assert!(
            outcome.response.rejected[0]
                .reason
                .starts_with("out of order")
        );
        let report = db.maintain().expect("maintain");
        assert_eq!(report.blocks_cut, 2);
        assert_eq!(report.blocks_compacted, 4, "the overlapping blocks merge");
        assert_eq!(db.blocks().len(), 2);
        let all = everything(&db);
        assert_eq!(all[0].1[..2], [(0, 0.0), (1000, 1000.0)]);
        assert_eq!(all[2], ("c".to_owned(), vec![(700, 7.0), (11_000, 8.0)]));
        drop(db);
        let db = open(dir.path(), options);
        assert_eq!(everything(&db), all);
    }

    #[test]
    fn retention_deletes_whole_old_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TenantOptions {
            retention_ms: 25_000,
            ..options()
        };
        let db = open(dir.path(), options);
        write_range(&db, 0, 50_000);
        let report = db.maintain().expect("maintain");
        // Newest sample 49 s: blocks ending at or before 24 s go.
        assert_eq!(report.blocks_cut, 4);
        assert_eq!(report.blocks_deleted, 2);
        let first = everything(&db)[0].1[0].0;
        assert_eq!(first, 20_000);
    }

    #[test]
    fn size_retention_deletes_the_oldest_blocks_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 30_000);
        db.flush().expect("flush");
        let sizes: Vec<u64> = db.blocks().iter().map(|b| b.sizes().total()).collect();
        assert_eq!(sizes.len(), 3);
        drop(db);
        // Room for the two newest blocks only.
        let options = TenantOptions {
            retention_bytes: sizes[1] + sizes[2],
            ..options()
        };
        let db = open(dir.path(), options);
        let report = db.maintain().expect("maintain");
        assert_eq!(report.blocks_deleted, 1);
        assert_eq!(
            everything(&db)[0].1[0].0,
            10_000,
            "the oldest range is gone"
        );
    }

    #[test]
    fn writes_below_a_running_cut_get_a_retryable_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TenantOptions {
            backfill: true,
            ..options()
        };
        let db = open(dir.path(), options);
        write_range(&db, 0, 5_000);
        db.wal.lock().cutting = Some(3_000);
        let busy = db.write(&[series("late", [(2_000, 1.0)])], &[]);
        assert!(
            matches!(
                busy,
                Err(TenantDbError::Busy {
                    before_ms: 3_000,
                    ..
                })
            ),
            "{busy:?}"
        );
        // Newer samples are not held up, and the refused one goes in later.
        db.write(&[series("a", [(6_000, 1.0)])], &[])
            .expect("newer");
        db.wal.lock().cutting = None;
        db.write(&[series("late", [(2_000, 1.0)])], &[])
            .expect("after the cut");
    }

    #[test]
    fn a_damaged_block_is_moved_aside_and_the_rest_is_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 25_000);
        db.flush().expect("flush");
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 3);
        let victim = blocks[1].dir().to_owned();
        drop(blocks);
        drop(db);
        let index = victim.join("index");
        let mut bytes = fs::read(&index).expect("index");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&index, bytes).expect("damage");
        let db = open(dir.path(), options());
        assert_eq!(db.blocks().len(), 2);
        let name = victim.file_name().expect("name");
        assert!(dir.path().join("corrupted").join(name).exists());
        let a = &everything(&db)[0].1;
        assert_eq!(a.len(), 15, "the two good blocks' samples");
    }

    #[test]
    fn leftovers_of_interrupted_work_are_cleaned_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 25_000);
        db.flush().expect("flush");
        let before = everything(&db);
        let blocks = db.blocks();
        // A merge that crashed after publishing the merged block but before
        // deleting its parents: the parents are still on disk.
        let parents: Vec<String> = blocks.iter().map(|b| b.meta().ulid.clone()).collect();
        let merged = MergedSeries::new(&blocks);
        db.write_block(merged, 2, parents.clone(), parents)
            .expect("merge")
            .expect("block");
        fs::create_dir_all(dir.path().join("blocks/01HALF.tmp")).expect("tmp");
        drop(blocks);
        drop(db);
        let db = open(dir.path(), options());
        assert_eq!(db.blocks().len(), 1);
        assert_eq!(everything(&db), before, "nothing counted twice");
        assert!(!dir.path().join("blocks/01HALF.tmp").exists());
    }

    mod merge_property {
        use super::*;
        use crate::block::BlockChunk;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// A value that depends only on (series, t), so overlapping blocks
        /// agree on every shared sample, as replicas of one write do.
        fn value(series: usize, t: i64) -> f64 {
            (t as f64) * 0.5 + series as f64
        }

        fn block_of(samples: &BTreeMap<usize, Vec<i64>>) -> Vec<BlockSeries> {
            samples
                .iter()
                .filter(|(_, times)| !times.is_empty())
                .map(|(series, times)| {
                    let points: Vec<(i64, f64)> =
                        times.iter().map(|t| (*t, value(*series, *t))).collect();
                    let chunks = BlockChunk::xor_chunks(&points);
                    BlockSeries {
                        labels: vec![label("__name__", &format!("s{series}"))],
                        chunks,
                    }
                })
                .collect()
        }

        fn times() -> impl Strategy<Value = Vec<i64>> {
            proptest::collection::btree_set(0i64..2_000, 0..200)
                .prop_map(|set| set.into_iter().map(|t| t * 7).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(40))]

            /// Compaction of overlapping blocks keeps exactly the union of
            /// their samples, each once.
            #[test]
            fn merging_overlapping_blocks_equals_the_union(
                blocks in proptest::collection::vec(
                    proptest::collection::btree_map(0usize..4, times(), 1..4),
                    2..4,
                )
            ) {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = open(dir.path(), options());
                let mut union: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
                for block in &blocks {
                    for (series, times) in block {
                        for t in times {
                            union
                                .entry(format!("s{series}"))
                                .or_default()
                                .insert(*t, value(*series, *t).to_bits());
                        }
                    }
                    let series = block_of(block).into_iter().map(Ok);
                    if let Some(written) = db.write_block(series, 1, Vec::new(), Vec::new()).expect("write") {
                        db.blocks.write().push(written);
                    }
                }
                db.blocks.write().sort_by_key(|b| (b.meta().min_time, b.meta().max_time));
                db.compact(Retention::of(&db.options)).expect("compact");
                let blocks_now = db.blocks();
                for pair in blocks_now.windows(2) {
                    prop_assert!(pair[0].meta().max_time <= pair[1].meta().min_time, "blocks still overlap");
                }
                let got: BTreeMap<String, BTreeMap<i64, u64>> = everything(&db)
                    .into_iter()
                    .map(|(name, samples)| {
                        let mut seen = BTreeMap::new();
                        for (t, v) in samples {
                            assert!(seen.insert(t, v.to_bits()).is_none(), "{name} has {t} twice");
                        }
                        (name, seen)
                    })
                    .collect();
                union.retain(|_, samples| !samples.is_empty());
                prop_assert_eq!(got, union);
            }
        }
    }

    #[test]
    fn a_failed_block_write_keeps_the_data_in_the_head_and_ingest_going() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), options());
        write_range(&db, 0, 25_000);
        let before = everything(&db);
        // Blocks cannot be written (a file where the block's directory goes;
        // root ignores permissions, so this stands in for a full disk).
        let blocks_dir = dir.path().join("blocks");
        fs::remove_dir_all(&blocks_dir).expect("remove blocks dir");
        fs::write(&blocks_dir, b"not a directory").expect("block the path");
        assert!(db.flush().is_err());
        assert!(db.maintain().is_err());
        assert_eq!(everything(&db), before, "the head keeps everything");
        write_range(&db, 25_000, 27_000);
        // Space is back: the retry cuts everything, nothing lost.
        fs::remove_file(&blocks_dir).expect("unblock");
        fs::create_dir(&blocks_dir).expect("blocks dir");
        db.flush().expect("flush");
        let after = everything(&db);
        assert_eq!(after[0].1.len(), 27);
        drop(db);
        let db = open(dir.path(), options());
        assert_eq!(everything(&db), after);
    }

    #[test]
    fn out_of_order_samples_within_the_window_are_kept_and_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TenantOptions {
            out_of_order_window_ms: 5_000,
            ..options()
        };
        let db = open(dir.path(), options.clone());
        write_range(&db, 0, 20_000);
        // Newest is 19 s: 15 s and later are within the window; 9.5 s is not.
        let late = db
            .write(
                &[series("a", [(15_500, -1.0), (17_250, -2.0), (9_500, -3.0)])],
                &[],
            )
            .expect("write");
        assert_eq!(late.response.samples_written, 2);
        assert_eq!(late.response.rejected.len(), 1);
        assert!(late.response.rejected[0].reason.starts_with("out of order"));
        let check = |db: &TenantDb| {
            let a = &everything(db)[0].1;
            assert_eq!(a.len(), 22, "{a:?}");
            assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "time-ordered: {a:?}");
            assert!(a.contains(&(15_500, -1.0)) && a.contains(&(17_250, -2.0)));
        };
        check(&db);
        drop(db);
        let db = open(dir.path(), options);
        check(&db);
        // Late samples are cut into blocks with the rest.
        write_range(&db, 20_000, 40_000);
        db.maintain().expect("maintain");
        assert!(!db.blocks().is_empty());
        let a = &everything(&db)[0].1;
        assert_eq!(a.len(), 42);
        assert!(a.contains(&(15_500, -1.0)) && a.contains(&(17_250, -2.0)));
    }

    #[test]
    fn ulids_are_26_crockford_characters_and_differ() {
        let a = new_ulid();
        let b = new_ulid();
        assert_eq!(a.len(), 26);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
