//! One tenant's database: its WAL, its head and its blocks. Every write
//! goes through the WAL before it is visible or acknowledged; opening
//! opens the blocks, reads the WAL checkpoint and replays the segments.
//! Cutting the head into blocks, compaction and retention live in
//! [`crate::maintenance`].

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use strata_common::Matcher;
use strata_proto::prometheus::{Histogram, Label, MetricMetadata, Sample, TimeSeries};
use strata_proto::store::{RejectedSeries, SelectedSeries, WriteResponse};
use strata_proto::wal::{
    Checkpoint, HistogramsRecord, MetadataRecord, SamplesRecord, SeriesEntry, WalRecord, wal_record,
};

use crate::block::{Block, BlockCache, BlockError};
use crate::hash::{FastBuild, labels_hash};
use crate::head::snapshot::{self, SnapshotError, SnapshotMeta};
use crate::head::{AppendCheck, Head, LastSample, SampleRejection, SampleValue, check_order};
use crate::wal::{ReplayStats, Wal, WalError, WalOptions};
use crate::{maintenance, merge, wal_codec};

/// A tenant database could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    #[error("write-ahead log of tenant {tenant} failed")]
    Wal {
        tenant: String,
        #[source]
        source: WalError,
    },
    #[error("tenant {tenant}: {reason}")]
    Checkpoint { tenant: String, reason: String },
    #[error("tenant {tenant}: wal replay failed: {reason}")]
    Replay { tenant: String, reason: String },
    #[error("tenant {tenant}: block failed")]
    Block {
        tenant: String,
        #[source]
        source: BlockError,
    },
    #[error("tenant {tenant}: cannot write the head snapshot")]
    Snapshot {
        tenant: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "tenant {tenant} is cutting its head into a block; retry the write of samples older than {before_ms}"
    )]
    Busy { tenant: String, before_ms: i64 },
}

/// How a tenant stores its data.
#[derive(Debug, Clone)]
pub struct TenantOptions {
    pub wal: WalOptions,
    /// Length of a level-1 block (and the alignment of all block ranges).
    pub block_range_ms: i64,
    /// Accept samples older than the head's lower bound (they land in
    /// blocks of their own, merged by compaction) instead of refusing them
    /// as "out of bounds".
    pub backfill: bool,
    /// Float samples older than their series' newest sample are accepted
    /// when no older than this before the tenant's newest sample (0: refused
    /// as "out of order", Prometheus' default).
    pub out_of_order_window_ms: i64,
    /// Delete blocks entirely older than this before the newest sample (0: keep all).
    pub retention_ms: i64,
    /// Delete the oldest blocks while all blocks take more bytes (0: no limit).
    pub retention_bytes: u64,
}

impl Default for TenantOptions {
    fn default() -> Self {
        TenantOptions {
            wal: WalOptions::default(),
            block_range_ms: crate::head::DEFAULT_BLOCK_RANGE_MS,
            backfill: false,
            out_of_order_window_ms: 0,
            retention_ms: 0,
            retention_bytes: 0,
        }
    }
}

/// What one write did, before it is turned into a wire response.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub response: WriteResponse,
    pub new_series: u64,
}

/// The WAL and what the write path and cuts coordinate on; one mutex, held
/// for a whole write, so writers of one tenant are serialized.
#[derive(Debug)]
pub(crate) struct WalState {
    pub(crate) wal: Wal,
    /// Newest sample timestamp in each segment (segments without samples:
    /// `i64::MIN`), to know which segments a cut made redundant.
    pub(crate) segment_max: BTreeMap<u64, i64>,
    /// All data before this that was written before the last cut is in
    /// blocks (WAL replay skips it in older segments).
    pub(crate) cut_before: i64,
    /// The head's lower bound for writes: older samples are "out of bounds".
    /// Equal to `cut_before` after a regular cut; a flush leaves the range
    /// of its newest sample open, so a scrape half-written when it ran still
    /// lands (in a block of its own later, merged by compaction).
    pub(crate) min_valid: i64,
    /// A cut at this bound is writing blocks (backfilled samples below it
    /// must wait).
    pub(crate) cutting: Option<i64>,
    /// Per-series predictions of the segment being appended to.
    pub(crate) codec: wal_codec::SegmentCodec,
}

/// How long and how much of a tenant's blocks are kept; 0 keeps all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Blocks ending this long before the newest sample are deleted.
    pub ms: i64,
    /// The oldest blocks are deleted while the blocks take more bytes.
    pub bytes: u64,
}

impl Retention {
    /// The retention configured in `options`.
    pub fn of(options: &TenantOptions) -> Self {
        Retention {
            ms: options.retention_ms,
            bytes: options.retention_bytes,
        }
    }
}

/// A tenant's WAL, head and blocks.
#[derive(Debug)]
pub struct TenantDb {
    pub(crate) tenant: String,
    pub(crate) dir: PathBuf,
    pub(crate) options: TenantOptions,
    pub(crate) wal: Mutex<WalState>,
    pub(crate) head: RwLock<Head>,
    /// Sorted by min time. Replaced (never mutated in place) by cuts,
    /// compactions and retention, under the head's write lock for cuts.
    pub(crate) blocks: RwLock<Vec<Arc<Block>>>,
    pub(crate) block_cache: Arc<BlockCache>,
    /// Serializes cuts, compactions and retention of this tenant. True once
    /// a head snapshot was taken at shutdown: from then on nothing may cut
    /// the head (the snapshot would no longer match the blocks and the WAL).
    pub(crate) maintenance: Mutex<bool>,
}

impl TenantDb {
    /// Opens the tenant's directory: blocks, WAL checkpoint, WAL replay.
    pub fn open(
        tenant: &str,
        dir: &Path,
        options: TenantOptions,
        block_cache: Arc<BlockCache>,
    ) -> Result<(TenantDb, ReplayStats), TenantDbError> {
        let blocks = maintenance::open_blocks(&dir.join("blocks")).map_err(|source| {
            TenantDbError::Block {
                tenant: tenant.to_owned(),
                source,
            }
        })?;
        let wal_dir: PathBuf = dir.join("wal");
        let checkpoint =
            maintenance::read_checkpoint(&wal_dir).map_err(|reason| TenantDbError::Checkpoint {
                tenant: tenant.to_owned(),
                reason,
            })?;
        let mut replay = Replay::default();
        let (cut_before, first_new_segment) = match &checkpoint {
            Some(c) => (c.cut_before_ms, c.first_new_segment),
            None => (i64::MIN, 0),
        };
        let snapshot = load_snapshot(tenant, dir, options.block_range_ms, cut_before);
        let from_snapshot = snapshot.is_some();
        let (mut head, first_replayed, min_valid, segment_max) = match snapshot {
            Some((head, meta)) => {
                replay.adopt(&head);
                let first = meta.covered_segment.saturating_add(1);
                (head, first, meta.min_valid, meta.segment_max)
            }
            None => (
                Head::new(options.block_range_ms),
                0,
                cut_before,
                BTreeMap::new(),
            ),
        };
        if !from_snapshot && let Some(checkpoint) = checkpoint {
            replay
                .apply_checkpoint(&mut head, checkpoint)
                .map_err(|reason| TenantDbError::Checkpoint {
                    tenant: tenant.to_owned(),
                    reason,
                })?;
        }
        // Reading, checking and decoding records runs on this thread while
        // another applies them to the head, in order: replay takes the time
        // of the slower of the two instead of their sum.
        let (records, received) = std::sync::mpsc::sync_channel::<(u64, WalRecord)>(256);
        let (opened, applied) = std::thread::scope(|scope| {
            let applier = std::thread::Builder::new()
                .name("wal-replay".to_owned())
                .spawn_scoped(scope, move || {
                    let mut segment_max = segment_max;
                    for (segment, record) in received {
                        replay.skip_before = if segment < first_new_segment {
                            cut_before
                        } else {
                            i64::MIN
                        };
                        let newest = replay.apply(&mut head, record)?;
                        let max = segment_max.entry(segment).or_insert(i64::MIN);
                        *max = (*max).max(newest);
                    }
                    replay.flush(&mut head);
                    Ok::<_, String>((head, replay, segment_max))
                });
            // Without the thread, the channel is closed and the WAL's
            // reading stops at its first record.
            let mut codec = wal_codec::SegmentCodec::new();
            let opened = Wal::open_from(
                &wal_dir,
                options.wal.clone(),
                first_replayed,
                |segment, payload| {
                    let record = codec.decode(segment, payload)?;
                    records
                        .send((segment, record))
                        .map_err(|_| "replay stopped".to_owned())
                },
            );
            drop(records);
            let applied = match applier {
                Ok(applier) => applier
                    .join()
                    .unwrap_or_else(|_| Err("wal replay thread panicked".to_owned())),
                Err(error) => Err(format!("cannot start the wal replay thread: {error}")),
            };
            (opened, applied)
        });
        let (head, replay, segment_max) = applied.map_err(|reason| TenantDbError::Replay {
            tenant: tenant.to_owned(),
            reason,
        })?;
        let (wal, stats) = opened.map_err(|source| TenantDbError::Wal {
            tenant: tenant.to_owned(),
            source,
        })?;
        if from_snapshot {
            tracing::info!(
                tenant,
                series = head.num_series(),
                wal_records_after = stats.records,
                first_replayed_segment = first_replayed,
                "loaded head snapshot"
            );
            // Used once: from now on the WAL moves on (cuts, truncation)
            // and only a new snapshot at the next shutdown matches it.
            remove_file(tenant, &dir.join(SNAPSHOT_LOADING));
        }
        if replay.unknown_refs > 0 {
            tracing::warn!(
                tenant,
                samples = replay.unknown_refs,
                "wal samples referenced unknown series and were skipped"
            );
        }
        let db = TenantDb {
            tenant: tenant.to_owned(),
            dir: dir.to_owned(),
            options,
            wal: Mutex::new(WalState {
                wal,
                segment_max,
                cut_before,
                min_valid,
                cutting: None,
                codec: wal_codec::SegmentCodec::new(),
            }),
            head: RwLock::new(head),
            blocks: RwLock::new(blocks),
            block_cache,
            maintenance: Mutex::new(false),
        };
        Ok((db, stats))
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Read access to the head.
    pub fn head(&self) -> parking_lot::RwLockReadGuard<'_, Head> {
        self.head.read()
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    pub(crate) fn wal_error(&self, source: WalError) -> TenantDbError {
        TenantDbError::Wal {
            tenant: self.tenant.clone(),
            source,
        }
    }

    pub(crate) fn block_error(&self, source: BlockError) -> TenantDbError {
        TenantDbError::Block {
            tenant: self.tenant.clone(),
            source,
        }
    }

    /// Writes the head to a snapshot file at shutdown, so the next start
    /// loads it instead of replaying the WAL; returns the file's size.
    /// Writes after it go to a new WAL segment (replayed after the
    /// snapshot), and no cut may change the head after it.
    pub fn write_snapshot(&self) -> Result<u64, TenantDbError> {
        let mut closed = self.maintenance.lock();
        // Even a failed snapshot may be in place (say, only the directory's
        // fsync failed): nothing may cut the head after it either way.
        *closed = true;
        let mut state = self.wal.lock();
        state.wal.sync().map_err(|e| self.wal_error(e))?;
        let next = state
            .wal
            .start_new_segment()
            .map_err(|e| self.wal_error(e))?;
        let meta = SnapshotMeta {
            covered_segment: next - 1,
            cut_before: state.cut_before,
            min_valid: state.min_valid,
            segment_max: state.segment_max.clone(),
        };
        let head = self.head.read();
        let written =
            snapshot::write(&self.dir.join(SNAPSHOT_FILE), &head, &meta).map_err(|source| {
                TenantDbError::Snapshot {
                    tenant: self.tenant.clone(),
                    source,
                }
            })?;
        Ok(written)
    }

    /// Makes everything appended so far durable (shutdown, interval policy).
    pub fn sync(&self) -> Result<(), TenantDbError> {
        self.wal.lock().wal.sync().map_err(|e| self.wal_error(e))
    }

    /// Runs a due interval fsync, if any.
    pub fn sync_if_due(&self) -> Result<(), TenantDbError> {
        self.wal
            .lock()
            .wal
            .sync_if_due()
            .map_err(|e| self.wal_error(e))
    }

    /// Appends the accepted samples of `timeseries` and new `metadata`.
    /// Samples the head refuses (out of order, duplicate timestamp, out of
    /// bounds) are reported per series; the rest are durable in the WAL
    /// when this returns.
    pub fn write(
        &self,
        timeseries: &[TimeSeries],
        metadata: &[MetricMetadata],
    ) -> Result<WriteOutcome, TenantDbError> {
        // Labels that are not canonical are refused here: the head's
        // lookups and the raw write path's shortcut rely on stored label
        // sets being canonical, and this path (the store's gRPC `Write`)
        // takes whatever a caller sends.
        let mut refused: Vec<RejectedSeries> = timeseries
            .iter()
            .enumerate()
            .filter_map(|(index, series)| {
                let why = not_canonical(&series.labels)?;
                Some(RejectedSeries {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    reason: format!(
                        "{why} in series {}",
                        strata_common::labels::format(&series.labels)
                    ),
                    rejected_samples: (series.samples.len() + series.histograms.len()) as u64,
                })
            })
            .collect();
        let mut outcome = self.write_planned(|head, bounds| {
            let incoming = timeseries
                .iter()
                .enumerate()
                .filter(|(_, series)| refused.is_empty() || not_canonical(&series.labels).is_none())
                .map(|(index, series)| Incoming {
                    index,
                    key: SeriesKey::Labels(Cow::Borrowed(&series.labels)),
                    samples: &series.samples,
                    histograms: &series.histograms,
                });
            plan_write(head, incoming, metadata, bounds)
        })?;
        if !refused.is_empty() {
            let rejected = &mut outcome.response.rejected;
            rejected.append(&mut refused);
            rejected.sort_by_key(|r| r.index);
        }
        Ok(outcome)
    }

    /// Appends what `plan` decides from the head (under its read lock and
    /// the WAL lock, so nothing changes the head between plan and apply).
    pub(crate) fn write_planned(
        &self,
        plan: impl FnOnce(&Head, Bounds) -> WritePlan,
    ) -> Result<WriteOutcome, TenantDbError> {
        let mut state = self.wal.lock();
        let plan = {
            let head = self.head.read();
            let window = self.options.out_of_order_window_ms;
            let bounds = Bounds {
                min_valid: state.min_valid,
                backfill: self.options.backfill,
                out_of_order_from: if window > 0 && head.newest() > i64::MIN {
                    head.newest().saturating_sub(window)
                } else {
                    i64::MAX
                },
            };
            plan(&head, bounds)
        };
        if let Some(before) = state.cutting
            && plan.oldest_sample().is_some_and(|oldest| oldest < before)
        {
            return Err(TenantDbError::Busy {
                tenant: self.tenant.clone(),
                before_ms: before,
            });
        }
        if plan.has_records() {
            let mut stateless = plan.stateless_records();
            let samples = &plan.samples;
            let size_hint = stateless.len_hint(samples.series_ids.len());
            let first_segment = state.wal.current_segment();
            let WalState { wal, codec, .. } = &mut *state;
            let appended = wal.append_batch(size_hint, |segment| {
                stateless.with_samples(|| codec.encode_samples(segment, samples))
            });
            let newest = plan.newest_sample().unwrap_or(i64::MIN);
            let written = match appended {
                Ok(segment) => segment..=segment,
                // Part of the batch may be in any segment it could have reached.
                Err(_) => first_segment..=state.wal.current_segment(),
            };
            for segment in written {
                let max = state.segment_max.entry(segment).or_insert(i64::MIN);
                *max = (*max).max(newest);
            }
            if let Err(source) = appended {
                // Ids the failed batch may have written are never reused.
                self.head.write().skip_ids_below(plan.next_id);
                return Err(self.wal_error(source));
            }
        }
        let mut head = self.head.write();
        let outcome = plan.apply(&mut head);
        drop(head);
        drop(state);
        Ok(outcome)
    }

    /// A consistent view: the head's selection and the blocks as they were
    /// at that moment (a cut swaps both under the head's write lock).
    fn view<T>(&self, from_head: impl FnOnce(&Head) -> T) -> (T, Vec<Arc<Block>>) {
        let head = self.head.read();
        let blocks = self.blocks.read().clone();
        (from_head(&head), blocks)
    }

    /// The data of the series matching all matchers in `[start, end]`,
    /// head and blocks merged, sorted by labels.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<SelectedSeries>, TenantDbError> {
        let (from_head, blocks) = self.view(|head| {
            let ids = head.matching(matchers, start, end);
            head.select(&ids, start, end)
        });
        let mut parts = Vec::with_capacity(blocks.len() + 1);
        for block in blocks.iter().filter(|b| b.overlaps(start, end)) {
            let selected = block
                .select(matchers, start, end, &self.block_cache)
                .map_err(|e| self.block_error(e))?;
            parts.push(selected);
        }
        parts.push(from_head);
        Ok(merge::merge_selected(parts))
    }

    /// Label sets of the series matching any of the sets with data in
    /// `[start, end]`, sorted and distinct.
    pub fn label_sets(
        &self,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<Vec<Label>>, TenantDbError> {
        let (mut all, blocks) = self.view(|head| {
            let ids = head.matching_any(sets, start, end);
            head.label_sets(&ids)
        });
        for block in blocks.iter().filter(|b| b.overlaps(start, end)) {
            let ids = self.block_ids(block, sets, start, end)?;
            for id in &ids {
                let entry = block
                    .cached_series(id, &self.block_cache)
                    .map_err(|e| self.block_error(e))?;
                all.push(entry.labels.clone());
            }
        }
        all.sort_by(|a, b| strata_common::labels::compare(a, b));
        all.dedup();
        Ok(all)
    }

    fn block_ids(
        &self,
        block: &Block,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<RoaringBitmap, TenantDbError> {
        block
            .matching_any(sets, start, end, &self.block_cache)
            .map_err(|e| self.block_error(e))
    }

    /// Label names of the matching series, sorted and distinct.
    pub fn label_names(
        &self,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, TenantDbError> {
        let (mut names, blocks) = self.view(|head| {
            let ids = head.matching_any(sets, start, end);
            head.label_names(&ids)
        });
        for block in blocks.iter().filter(|b| b.overlaps(start, end)) {
            let ids = self.block_ids(block, sets, start, end)?;
            names.extend(block.label_names(&ids).map_err(|e| self.block_error(e))?);
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Values of label `name` among the matching series, sorted and distinct.
    pub fn label_values(
        &self,
        name: &str,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, TenantDbError> {
        let (mut values, blocks) = self.view(|head| {
            let ids = head.matching_any(sets, start, end);
            head.label_values(name, &ids)
        });
        for block in blocks.iter().filter(|b| b.overlaps(start, end)) {
            let ids = self.block_ids(block, sets, start, end)?;
            values.extend(
                block
                    .label_values(name, &ids)
                    .map_err(|e| self.block_error(e))?,
            );
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

/// Why `labels` are not a canonical label set (at least one label, names
/// sorted and distinct, no empty name or value), if they are not.
fn not_canonical(labels: &[Label]) -> Option<&'static str> {
    if labels.is_empty() {
        return Some("no labels");
    }
    if labels.iter().any(|l| l.name.is_empty()) {
        return Some("empty label name");
    }
    if labels.iter().any(|l| l.value.is_empty()) {
        return Some("empty label value");
    }
    if labels.windows(2).any(|pair| pair[0].name >= pair[1].name) {
        return Some("labels not sorted by name or a name repeated");
    }
    None
}

/// The head's lower bound as the write path applies it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Samples before this are "out of bounds" (their range is in blocks).
    min_valid: i64,
    /// Accept them anyway (they will be cut into blocks of their own).
    backfill: bool,
    /// Float samples from here on are accepted out of order (`i64::MAX`:
    /// no window).
    out_of_order_from: i64,
}

impl Bounds {
    fn refuses(&self, t: i64) -> bool {
        t < self.min_valid && !self.backfill && t < self.out_of_order_from
    }

    fn accepts_out_of_order(&self, t: i64) -> bool {
        t >= self.out_of_order_from
    }
}

/// The changes one write makes, decided under the head's read lock.
#[derive(Debug, Default)]
pub(crate) struct WritePlan {
    new_series: Vec<SeriesEntry>,
    samples: SamplesRecord,
    histograms: HistogramsRecord,
    metadata: Vec<MetricMetadata>,
    rejected: Vec<RejectedSeries>,
    /// The first id no series of this plan uses.
    next_id: u32,
}

/// One series of a write as [`plan_write`] sees it.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    /// Its index in the request, for rejections.
    pub index: usize,
    pub key: SeriesKey<'a>,
    pub samples: &'a [Sample],
    pub histograms: &'a [Histogram],
}

/// How the planner finds an incoming series.
#[derive(Debug, Clone)]
pub(crate) enum SeriesKey<'a> {
    /// Canonical labels, to look up in the head or create (owned when the
    /// caller has no further use for them: a new series takes them as
    /// they are).
    Labels(Cow<'a, [Label]>),
    /// A series the head has under this id (found under the same lock).
    Known(u32),
}

impl SeriesKey<'_> {
    /// The series' labels as messages show them.
    fn describe(&self, head: &Head) -> String {
        match self {
            SeriesKey::Labels(labels) => strata_common::labels::format(labels),
            SeriesKey::Known(id) => head
                .series_labels(*id)
                .map(|labels| strata_common::labels::format(&labels))
                .unwrap_or_default(),
        }
    }
}

pub(crate) fn plan_write<'a>(
    head: &Head,
    timeseries: impl Iterator<Item = Incoming<'a>>,
    metadata: &[MetricMetadata],
    bounds: Bounds,
) -> WritePlan {
    let mut plan = WritePlan::default();
    let timeseries: Vec<Incoming<'a>> = timeseries.collect();
    plan.samples.series_ids.reserve(timeseries.len());
    plan.samples.timestamps_ms.reserve(timeseries.len());
    plan.samples.value_bits.reserve(timeseries.len());
    let in_head: Vec<Option<u32>> = timeseries
        .iter()
        .map(|series| match &series.key {
            SeriesKey::Known(id) => Some(*id),
            SeriesKey::Labels(labels) => head.lookup(labels),
        })
        .collect();
    // Order checks must see the samples planned for earlier entries of the
    // same series in this request. Those are kept only for series that can
    // come again: the ones in the head more than once here, and the ones
    // this request creates. Most series come once, and keeping every
    // series' last sample showed in ingest profiles.
    let repeated = repeated_ids(&in_head);
    let first_new_id = head.next_id();
    let mut created = CreatedSeries::default();
    let mut pending_last = PendingLast::default();
    let mut next_id = first_new_id;

    for (series, in_head) in timeseries.into_iter().zip(in_head) {
        if series.samples.is_empty() && series.histograms.is_empty() {
            continue;
        }
        let existing = match (&series.key, in_head) {
            (_, Some(id)) => Some(id),
            (SeriesKey::Labels(labels), None) => created.find(&plan.new_series, labels),
            (SeriesKey::Known(_), None) => None,
        };
        let id = existing.unwrap_or(next_id);
        let tracked = id >= first_new_id || repeated.binary_search(&id).is_ok();
        let planned = if tracked {
            pending_last.get(id).cloned()
        } else {
            None
        };
        let mut last = planned.or_else(|| {
            existing
                .and_then(|id| head.series(id))
                .and_then(|s| s.last_sample())
        });

        let mut accepted = 0u64;
        let mut refused = 0u64;
        let mut reason: Option<SampleRejection> = None;
        // Floats, then histograms: the order Prometheus' receiver appends them in.
        for sample in series.samples {
            let bits = sample.value.to_bits();
            let value = SampleValue::Float(bits);
            if bounds.refuses(sample.timestamp) {
                refused += 1;
                reason.get_or_insert(SampleRejection::OutOfBounds);
                continue;
            }
            match check_order(last.as_ref(), sample.timestamp, &value) {
                AppendCheck::Append => {
                    plan.samples.series_ids.push(id);
                    plan.samples.timestamps_ms.push(sample.timestamp);
                    plan.samples.value_bits.push(bits);
                    last = Some(LastSample {
                        t: sample.timestamp,
                        value,
                    });
                    accepted += 1;
                }
                AppendCheck::Duplicate => {}
                AppendCheck::Reject(SampleRejection::OutOfOrder)
                    if bounds.accepts_out_of_order(sample.timestamp) =>
                {
                    // Within the window: stored beside the in-order chunks;
                    // the newest sample stays what it was.
                    plan.samples.series_ids.push(id);
                    plan.samples.timestamps_ms.push(sample.timestamp);
                    plan.samples.value_bits.push(bits);
                    accepted += 1;
                }
                AppendCheck::Reject(why) => {
                    refused += 1;
                    reason.get_or_insert(why);
                }
            }
        }
        for histogram in series.histograms {
            let value = SampleValue::Histogram(Box::new(histogram.clone()));
            if bounds.refuses(histogram.timestamp) {
                refused += 1;
                reason.get_or_insert(SampleRejection::OutOfBounds);
                continue;
            }
            match check_order(last.as_ref(), histogram.timestamp, &value) {
                AppendCheck::Append => {
                    plan.histograms.series_ids.push(id);
                    plan.histograms.histograms.push(histogram.clone());
                    last = Some(LastSample {
                        t: histogram.timestamp,
                        value,
                    });
                    accepted += 1;
                }
                AppendCheck::Duplicate => {}
                AppendCheck::Reject(why) => {
                    refused += 1;
                    reason.get_or_insert(why);
                }
            }
        }

        if let Some(why) = reason {
            plan.rejected.push(RejectedSeries {
                index: u32::try_from(series.index).unwrap_or(u32::MAX),
                reason: format!("{} for series {}", why.message(), series.key.describe(head)),
                rejected_samples: refused,
            });
        }
        if accepted > 0
            && existing.is_none()
            && let SeriesKey::Labels(labels) = series.key
        {
            created.add(&mut plan.new_series, id, labels.into_owned());
            next_id += 1;
        }
        if tracked && let Some(last) = last {
            pending_last.set(id, last);
        }
    }
    plan.next_id = next_id;
    for entry in metadata {
        let repeated = plan.metadata.iter().any(|m| m == entry);
        if head.is_new_metadata(entry) && !repeated {
            plan.metadata.push(entry.clone());
        }
    }
    plan
}

/// The ids that occur more than once in `ids`, sorted.
fn repeated_ids(ids: &[Option<u32>]) -> Vec<u32> {
    let mut sorted: Vec<u32> = ids.iter().flatten().copied().collect();
    // Senders send their series in much the same order every time, and
    // ids follow first arrival: usually one sorted run, cheap to sort.
    sorted.sort_unstable();
    let mut repeated: Vec<u32> = sorted
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
        .collect();
    repeated.dedup();
    repeated
}

/// The series a write creates, found by their labels' hash (a request
/// can carry a new series more than once).
#[derive(Debug, Default)]
struct CreatedSeries {
    /// Label-set hash → index in the plan's new series of the first with it.
    first: HashMap<u64, usize, FastBuild>,
}

impl CreatedSeries {
    fn find(&self, created: &[SeriesEntry], labels: &[Label]) -> Option<u32> {
        let at = *self.first.get(&labels_hash(labels))?;
        match created.get(at) {
            Some(entry) if entry.labels == labels => Some(entry.id),
            // Another label set under the same hash: look through them all.
            _ => created.iter().find(|e| e.labels == labels).map(|e| e.id),
        }
    }

    fn add(&mut self, created: &mut Vec<SeriesEntry>, id: u32, labels: Vec<Label>) {
        self.first
            .entry(labels_hash(&labels))
            .or_insert(created.len());
        created.push(SeriesEntry { id, labels });
    }
}

/// The newest sample planned so far per series of one write that may
/// come again in it. The map holds indexes into a vector, so its entries
/// are 8 bytes.
#[derive(Debug, Default)]
struct PendingLast {
    index: HashMap<u32, u32, FastBuild>,
    last: Vec<LastSample>,
}

impl PendingLast {
    fn get(&self, id: u32) -> Option<&LastSample> {
        let at = *self.index.get(&id)?;
        self.last.get(at as usize)
    }

    fn set(&mut self, id: u32, last: LastSample) {
        let next = u32::try_from(self.last.len()).unwrap_or(u32::MAX);
        let at = *self.index.entry(id).or_insert(next);
        match self.last.get_mut(at as usize) {
            Some(slot) => *slot = last,
            None => self.last.push(last),
        }
    }
}

impl WritePlan {
    fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        let histograms = self.histograms.histograms.iter().map(|h| h.timestamp);
        self.samples.timestamps_ms.iter().copied().chain(histograms)
    }

    fn oldest_sample(&self) -> Option<i64> {
        self.timestamps().min()
    }

    fn newest_sample(&self) -> Option<i64> {
        self.timestamps().max()
    }

    /// Whether the plan writes anything to the WAL.
    fn has_records(&self) -> bool {
        !(self.new_series.is_empty()
            && self.samples.series_ids.is_empty()
            && self.histograms.series_ids.is_empty()
            && self.metadata.is_empty())
    }

    /// The WAL records of this plan that do not depend on the segment
    /// they go to (all but the float samples).
    fn stateless_records(&self) -> StatelessRecords {
        let encode = |record: wal_record::Record| {
            wal_codec::encode(&WalRecord {
                record: Some(record),
            })
        };
        let series =
            (!self.new_series.is_empty()).then(|| wal_codec::encode_series(&self.new_series));
        let mut after = Vec::new();
        if !self.histograms.series_ids.is_empty() {
            after.push(encode(wal_record::Record::Histograms(
                self.histograms.clone(),
            )));
        }
        if !self.metadata.is_empty() {
            after.push(encode(wal_record::Record::Metadata(MetadataRecord {
                entries: self.metadata.clone(),
            })));
        }
        StatelessRecords {
            series,
            after,
            has_samples: !self.samples.series_ids.is_empty(),
        }
    }

    fn apply(self, head: &mut Head) -> WriteOutcome {
        let new_series = self.new_series.len() as u64;
        for entry in self.new_series {
            // The plan was made under the WAL lock from this head: ids are in sequence.
            if let Err(error) = head.create_series(entry.id, entry.labels) {
                tracing::error!(%error, "head rejected a planned series");
            }
        }
        let samples_written = self.samples.series_ids.len() as u64;
        apply_samples(head, &self.samples);
        let histograms_written = self.histograms.series_ids.len() as u64;
        apply_histograms(head, self.histograms);
        for entry in self.metadata {
            head.add_metadata(entry);
        }
        WriteOutcome {
            response: WriteResponse {
                samples_written,
                histograms_written,
                rejected: self.rejected,
            },
            new_series,
        }
    }
}

/// A plan's records but the float samples, encoded.
struct StatelessRecords {
    /// New series: first, so replay can resolve the ids that follow.
    series: Option<Vec<u8>>,
    /// Histograms and metadata, after the float samples.
    after: Vec<Vec<u8>>,
    has_samples: bool,
}

impl StatelessRecords {
    /// About how many bytes the batch takes with `samples` float samples
    /// (at most, unless the stateless records are huge).
    fn len_hint(&self, samples: usize) -> u64 {
        let frame = 8;
        let series = self.series.as_ref().map_or(0, |r| r.len() + frame);
        let after: usize = self.after.iter().map(|r| r.len() + frame).sum();
        let samples = if self.has_samples {
            wal_codec::max_samples_len(samples) + frame
        } else {
            0
        };
        (series + after + samples) as u64
    }

    /// The whole batch, in replay order, with the float samples record
    /// `encode_samples` makes (not called when there are none).
    fn with_samples(&mut self, encode_samples: impl FnOnce() -> Vec<u8>) -> Vec<Vec<u8>> {
        let mut records = Vec::with_capacity(2 + self.after.len());
        records.extend(self.series.take());
        if self.has_samples {
            records.push(encode_samples());
        }
        records.append(&mut self.after);
        records
    }
}

fn apply_samples(head: &mut Head, record: &SamplesRecord) {
    let rows = record
        .series_ids
        .iter()
        .zip(&record.timestamps_ms)
        .zip(&record.value_bits);
    for ((id, t), bits) in rows {
        head.append_float(*id, *t, *bits);
    }
}

fn apply_histograms(head: &mut Head, record: HistogramsRecord) {
    for (id, histogram) in record.series_ids.into_iter().zip(record.histograms) {
        head.append_histogram(id, histogram);
    }
}

/// Replay state: what each WAL series id means now.
///
/// Series keep the id the WAL (or the checkpoint) gave them. Two records
/// may still name different ids for one label set, or one id for different
/// label sets, when WAL segments from different runs meet (a run restarted
/// after a failed append); replay then maps WAL ids to head series as
/// records come, the latest definition winning, and finds series by
/// labels so a label set defined twice is one series.
#[derive(Debug, Default)]
struct Replay {
    /// WAL series id → head id (`u32::MAX`: not defined yet).
    ids: Vec<u32>,
    unknown_refs: u64,
    /// Samples before this are already in blocks (set per segment).
    skip_before: i64,
    /// Float samples resolved to head ids, not appended yet: appending a
    /// batch series by series touches each series' chunk once for several
    /// samples instead of once per sample.
    pending: Vec<(u32, i64, u64)>,
    /// Scratch for sorting `pending`.
    sorted: Vec<(u32, i64, u64)>,
    counts: Vec<u32>,
}

/// The head snapshot in a tenant's directory, as written at shutdown.
const SNAPSHOT_FILE: &str = "head.snapshot";
/// The snapshot while a start loads it: renamed first, so a load that
/// never finishes (a crash, running out of memory) is not tried again.
const SNAPSHOT_LOADING: &str = "head.snapshot.loading";

/// The tenant's head snapshot, if there is one and it still matches the
/// WAL's checkpoint (`cut_before`). Any snapshot is used at most once: it
/// is renamed before it is read. A damaged one is moved aside with one
/// warning; the WAL still holds everything it held.
fn load_snapshot(
    tenant: &str,
    dir: &Path,
    chunk_range: i64,
    cut_before: i64,
) -> Option<(Head, SnapshotMeta)> {
    let (path, loading) = (dir.join(SNAPSHOT_FILE), dir.join(SNAPSHOT_LOADING));
    for leftover in [&loading, &path.with_extension("snapshot.tmp")] {
        if leftover.exists() {
            tracing::warn!(tenant, file = %leftover.display(), "removing a head snapshot file left by an earlier run");
            remove_file(tenant, leftover);
        }
    }
    if !path.exists() {
        return None;
    }
    if let Err(error) = std::fs::rename(&path, &loading) {
        tracing::error!(tenant, error = %error, "cannot take the head snapshot for loading; replaying the whole wal");
        remove_file(tenant, &path);
        return None;
    }
    let unused = |reason: &str| {
        tracing::warn!(
            tenant,
            reason,
            "head snapshot not used; replaying the whole wal"
        );
        remove_file(tenant, &loading);
        None
    };
    match snapshot::read(&loading, chunk_range) {
        Ok(Some((head, meta))) if meta.cut_before == cut_before => Some((head, meta)),
        Ok(Some(_)) => unused("it is older than the last cut"),
        Ok(None) => None,
        Err(SnapshotError::OtherBlockRange { .. }) => {
            unused("it was taken with another block range")
        }
        Err(SnapshotError::OtherFormat { .. }) => {
            unused("it was written by a version with another snapshot format")
        }
        Err(error) => {
            let aside = path.with_extension("snapshot.damaged");
            tracing::warn!(
                tenant,
                error = %error,
                moved_to = %aside.display(),
                "head snapshot not used; replaying the whole wal"
            );
            if let Err(error) = std::fs::rename(&loading, &aside) {
                tracing::error!(tenant, error = %error, "cannot move the head snapshot aside");
                remove_file(tenant, &loading);
            }
            None
        }
    }
}

/// Deletes a snapshot file (and makes that durable); failing that, it is
/// logged: a leftover is removed at the next start.
fn remove_file(tenant: &str, path: &Path) {
    let removed = std::fs::remove_file(path).and_then(|()| match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    });
    if let Err(error) = removed {
        tracing::error!(tenant, file = %path.display(), error = %error, "cannot delete a head snapshot file");
    }
}

/// Float samples replay gathers before appending them series by series.
const REPLAY_BATCH: usize = 1 << 19;

impl Replay {
    /// Maps the ids of a head loaded from a snapshot to themselves: the WAL
    /// after the snapshot was written with the same ids.
    fn adopt(&mut self, head: &Head) {
        self.ids = vec![u32::MAX; head.next_id() as usize];
        for id in head.live_ids() {
            self.ids[id as usize] = id;
        }
    }

    fn resolve(&mut self, wal_id: u32) -> Option<u32> {
        let id = self
            .ids
            .get(wal_id as usize)
            .copied()
            .filter(|id| *id != u32::MAX);
        if id.is_none() {
            self.unknown_refs += 1;
        }
        id
    }

    fn define(&mut self, head: &mut Head, wal_id: u32, labels: Vec<Label>) -> Result<(), String> {
        let id = match head.lookup(&labels) {
            Some(id) => id,
            None => {
                let id = if head.is_free(wal_id) {
                    wal_id
                } else {
                    head.next_id()
                };
                head.create_series(id, labels)?;
                id
            }
        };
        let slot = wal_id as usize;
        if self.ids.len() <= slot {
            self.ids.resize(slot + 1, u32::MAX);
        }
        self.ids[slot] = id;
        Ok(())
    }

    /// Appends the pending float samples, series by series (a stable
    /// counting sort by id keeps each series' samples in WAL order).
    fn flush(&mut self, head: &mut Head) {
        if self.pending.is_empty() {
            return;
        }
        let ids = self.pending.iter().map(|r| r.0).max().unwrap_or(0) as usize + 1;
        self.counts.clear();
        self.counts.resize(ids + 1, 0);
        for row in &self.pending {
            self.counts[row.0 as usize + 1] += 1;
        }
        for i in 1..self.counts.len() {
            self.counts[i] += self.counts[i - 1];
        }
        self.sorted.clear();
        self.sorted.resize(self.pending.len(), (0, 0, 0));
        for row in &self.pending {
            let slot = &mut self.counts[row.0 as usize];
            self.sorted[*slot as usize] = *row;
            *slot += 1;
        }
        self.pending.clear();
        head.append_sorted_floats(&self.sorted);
    }

    fn apply_checkpoint(&mut self, head: &mut Head, checkpoint: Checkpoint) -> Result<(), String> {
        for entry in checkpoint.series {
            self.define(head, entry.id, entry.labels)?;
        }
        for entry in checkpoint.metadata {
            head.add_metadata(entry);
        }
        head.skip_ids_below(checkpoint.next_series_id);
        Ok(())
    }

    /// Applies one WAL record; returns its newest sample timestamp
    /// (`i64::MIN` when it has none).
    fn apply(&mut self, head: &mut Head, record: WalRecord) -> Result<i64, String> {
        let mut newest = i64::MIN;
        match record.record {
            Some(wal_record::Record::Series(series)) => {
                for entry in series.entries {
                    self.define(head, entry.id, entry.labels)?;
                }
            }
            Some(wal_record::Record::Samples(samples)) => {
                let rows = samples
                    .series_ids
                    .iter()
                    .zip(&samples.timestamps_ms)
                    .zip(&samples.value_bits);
                for ((wal_id, t), bits) in rows {
                    newest = newest.max(*t);
                    if *t < self.skip_before {
                        continue;
                    }
                    if let Some(id) = self.resolve(*wal_id) {
                        self.pending.push((id, *t, *bits));
                    }
                }
                if self.pending.len() >= REPLAY_BATCH {
                    self.flush(head);
                }
            }
            Some(wal_record::Record::Histograms(histograms)) => {
                // A series' floats and histograms go in in WAL order.
                self.flush(head);
                let rows = histograms.series_ids.into_iter().zip(histograms.histograms);
                for (wal_id, histogram) in rows {
                    newest = newest.max(histogram.timestamp);
                    if histogram.timestamp < self.skip_before {
                        continue;
                    }
                    if let Some(id) = self.resolve(wal_id) {
                        head.append_histogram(id, histogram);
                    }
                }
            }
            Some(wal_record::Record::Metadata(metadata)) => {
                for entry in metadata.entries {
                    head.add_metadata(entry);
                }
            }
            None => return Err("empty wal record".to_owned()),
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;
    use strata_proto::prometheus::{Histogram, Sample};

    fn test_cache() -> Arc<BlockCache> {
        Arc::new(BlockCache::new(
            1 << 20,
            Default::default(),
            Default::default(),
        ))
    }

    fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![label("__name__", name)],
            samples: samples
                .iter()
                .map(|(t, v)| Sample {
                    value: *v,
                    timestamp: *t,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn write_then_reopen_restores_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = f64::from_bits(strata_proto::STALE_NAN_BITS);
        {
            let (db, _) = TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache())
                .expect("open");
            let out = db
                .write(
                    &[
                        series("a", &[(1, 1.0), (2, stale)]),
                        series("b", &[(5, 2.0)]),
                    ],
                    &[],
                )
                .expect("write");
            assert_eq!(out.response.samples_written, 3);
            assert_eq!(out.new_series, 2);
        }
        let (db, stats) = TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache())
            .expect("reopen");
        assert!(stats.records >= 2);
        let head = db.head();
        assert_eq!(head.num_series(), 2);
        let ids = head.matching(&[], i64::MIN, i64::MAX);
        let selected = head.select(&ids, i64::MIN, i64::MAX);
        let a = crate::chunk::decode(&selected[0].chunks[0].data).expect("chunk");
        assert_eq!(a[1].1.to_bits(), strata_proto::STALE_NAN_BITS);
    }

    #[test]
    fn out_of_order_samples_are_rejected_per_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _) =
            TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache()).expect("open");
        db.write(&[series("a", &[(10, 1.0)])], &[]).expect("write");
        let out = db
            .write(
                &[
                    series("a", &[(5, 1.0), (10, 1.0), (10, 3.0), (11, 2.0)]),
                    series("b", &[(1, 1.0)]),
                ],
                &[],
            )
            .expect("write");
        assert_eq!(out.response.samples_written, 2);
        assert_eq!(out.response.rejected.len(), 1);
        assert_eq!(out.response.rejected[0].index, 0);
        assert_eq!(out.response.rejected[0].rejected_samples, 2);
        assert_eq!(
            out.response.rejected[0].reason,
            "out of order sample for series a"
        );
    }

    #[test]
    fn a_series_repeated_in_one_request_gets_one_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _) =
            TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache()).expect("open");
        let out = db
            .write(
                &[series("a", &[(1, 1.0)]), series("a", &[(2, 1.0), (1, 5.0)])],
                &[],
            )
            .expect("write");
        assert_eq!(out.new_series, 1);
        assert_eq!(out.response.samples_written, 2);
        assert_eq!(out.response.rejected[0].index, 1);
    }

    #[test]
    fn labels_that_are_not_canonical_are_refused_and_the_rest_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _) =
            TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache()).expect("open");
        let with = |labels: Vec<Label>| TimeSeries {
            labels,
            ..series("x", &[(1, 1.0)])
        };
        let out = db
            .write(
                &[
                    with(vec![label("job", "a"), label("__name__", "up")]),
                    series("ok", &[(1, 1.0)]),
                    with(vec![label("__name__", "up"), label("__name__", "up")]),
                    with(vec![label("__name__", "up"), label("job", "")]),
                    with(vec![label("", "v")]),
                    with(Vec::new()),
                ],
                &[],
            )
            .expect("write");
        assert_eq!(out.response.samples_written, 1);
        assert_eq!(out.new_series, 1);
        let reasons: Vec<(u32, &str)> = out
            .response
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    0,
                    "labels not sorted by name or a name repeated in series up{job=\"a\"}"
                ),
                (
                    2,
                    "labels not sorted by name or a name repeated in series up"
                ),
                (3, "empty label value in series up{job=\"\"}"),
                (4, "empty label name in series {=\"v\"}"),
                (5, "no labels in series {}"),
            ]
        );
        assert_eq!(db.head().num_series(), 1);
    }

    /// Every float sample in the head, per series name, as (t, value bits).
    fn float_samples(db: &TenantDb) -> Vec<(String, Vec<(i64, u64)>)> {
        let head = db.head();
        let ids = head.matching(&[], i64::MIN, i64::MAX);
        let mut out: Vec<(String, Vec<(i64, u64)>)> = head
            .select(&ids, i64::MIN, i64::MAX)
            .into_iter()
            .map(|s| {
                let name = s.labels[0].value.clone();
                let samples = s
                    .chunks
                    .iter()
                    .flat_map(|c| crate::chunk::decode(&c.data).expect("chunk"))
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect();
                (name, samples)
            })
            .collect();
        out.sort();
        out
    }

    fn small_segments() -> TenantOptions {
        TenantOptions {
            wal: WalOptions {
                segment_size: 600,
                ..WalOptions::default()
            },
            ..TenantOptions::default()
        }
    }

    /// Options for the snapshot tests: several WAL segments and an
    /// out-of-order window, so every part of a series is exercised.
    fn snapshot_options() -> TenantOptions {
        TenantOptions {
            out_of_order_window_ms: 3_600_000,
            ..small_segments()
        }
    }

    /// Writes floats (some series past one chunk, a stale marker, a late
    /// sample), histograms and metadata.
    fn fill_for_snapshot(db: &TenantDb) {
        write_rounds(db, 0..150);
        db.write(&[series("s3", &[(1_000_000 + 7_500, 0.5)])], &[])
            .expect("a late sample inside the window");
        let histograms = [3_000_000, 3_015_000].map(|t| Histogram {
            timestamp: t,
            schema: 3,
            count: Some(strata_proto::prometheus::histogram::Count::CountInt(
                t as u64,
            )),
            ..Default::default()
        });
        let metadata = MetricMetadata {
            r#type: 1,
            metric_family_name: "s0".into(),
            help: "a counter".into(),
            unit: String::new(),
        };
        let with_histograms = TimeSeries {
            labels: vec![label("__name__", "h")],
            histograms: histograms.to_vec(),
            ..Default::default()
        };
        db.write(&[with_histograms], &[metadata]).expect("write");
    }

    /// One sample per round for series s0–s3, 15 s apart.
    fn write_rounds(db: &TenantDb, rounds: std::ops::Range<i64>) {
        let stale = f64::from_bits(strata_proto::STALE_NAN_BITS);
        for round in rounds {
            let t = 1_000_000 + round * 15_000;
            let batch: Vec<TimeSeries> = (0..4)
                .map(|i| {
                    let value = match (i, round) {
                        (1, 77) => stale,
                        (2, _) => (round * round) as f64 * 0.37,
                        _ => (round * 10 + i) as f64,
                    };
                    series(&format!("s{i}"), &[(t, value)])
                })
                .collect();
            db.write(&batch, &[]).expect("write");
        }
    }

    /// A tenant in `dir` filled by [`fill_for_snapshot`] whose snapshot
    /// was just written.
    fn filled_and_snapshotted(dir: &Path) -> TenantDb {
        let (db, _) = TenantDb::open("t", dir, snapshot_options(), test_cache()).expect("open");
        fill_for_snapshot(&db);
        db.write_snapshot().expect("snapshot");
        db
    }

    /// The head's data: every series' selection (labels, chunk bytes,
    /// histograms) and the metadata.
    fn head_data(db: &TenantDb) -> String {
        let head = db.head();
        let ids = head.matching(&[], i64::MIN, i64::MAX);
        format!(
            "{:?}\n{:?}",
            head.select(&ids, i64::MIN, i64::MAX),
            head.all_metadata()
        )
    }

    /// [`head_data`] and the head's counters and next id.
    fn head_view(db: &TenantDb) -> String {
        let data = head_data(db);
        let head = db.head();
        format!(
            "{data}\nseries {} samples {} newest {} next id {}",
            head.num_series(),
            head.num_samples(),
            head.newest(),
            head.next_id(),
        )
    }

    #[test]
    fn a_snapshot_restores_the_head_as_wal_replay_does() {
        let with_snapshot = tempfile::tempdir().expect("tempdir");
        let wal_only = tempfile::tempdir().expect("tempdir");
        let open =
            |dir: &Path| TenantDb::open("t", dir, snapshot_options(), test_cache()).expect("open");
        let before = {
            let (db, _) = open(with_snapshot.path());
            fill_for_snapshot(&db);
            assert!(db.write_snapshot().expect("snapshot") > 0);
            head_view(&db)
        };
        {
            let (db, _) = open(wal_only.path());
            fill_for_snapshot(&db);
        }
        let snapshot_file = with_snapshot.path().join(SNAPSHOT_FILE);
        assert!(snapshot_file.exists());
        let (restored, stats) = open(with_snapshot.path());
        assert_eq!(stats.records, 0, "no WAL record was replayed");
        assert!(!snapshot_file.exists(), "a used snapshot is deleted");
        let (replayed, stats) = open(wal_only.path());
        assert!(stats.records > 0);
        assert_eq!(head_view(&restored), before);
        assert_eq!(head_view(&replayed), before);

        // Both go on identically: order checks, ids of new series, the WAL
        // written after a snapshot was loaded.
        let next = [
            series("s0", &[(1_000_000 + 150 * 15_000, 1.0)]),
            series("s1", &[(1_000_000, 9.0)]),
            series("new", &[(5_000_000, 1.0)]),
        ];
        let a = restored.write(&next, &[]).expect("write");
        let b = replayed.write(&next, &[]).expect("write");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // The open chunks go on from their encoders' state.
        write_rounds(&restored, 151..200);
        write_rounds(&replayed, 151..200);
        let after = head_view(&replayed);
        assert_eq!(head_view(&restored), after);
        drop((restored, replayed));
        let (restored, _) = open(with_snapshot.path());
        assert_eq!(head_view(&restored), after);
    }

    /// Every sample of the tenant, head and blocks, as a string.
    fn all_data(db: &TenantDb) -> String {
        format!("{:?}", db.select(&[], i64::MIN, i64::MAX).expect("select"))
    }

    #[test]
    fn a_cut_after_a_snapshot_start_then_a_crash_loses_nothing() {
        // The WAL bookkeeping restored from the snapshot (which segments
        // hold what) decides which segments the cut deletes.
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TenantOptions {
            block_range_ms: 600_000,
            ..small_segments()
        };
        let open = || TenantDb::open("t", dir.path(), options.clone(), test_cache()).expect("open");
        {
            let (db, _) = open();
            // Most data before the snapshot: the segments it covers hold
            // samples the cut below leaves in the head.
            write_rounds(&db, 0..190);
            db.write_snapshot().expect("snapshot");
        }
        let expected = {
            let (db, _) = open();
            write_rounds(&db, 190..200);
            let report = db.maintain().expect("maintain");
            assert!(report.blocks_cut > 0, "{report:?}");
            assert!(
                db.head().time_range().is_some(),
                "the cut left data in the head"
            );
            all_data(&db)
        };
        let (db, _) = open();
        assert_eq!(all_data(&db), expected);
    }

    #[test]
    fn a_snapshot_is_never_loaded_twice_nor_with_another_block_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |options: TenantOptions| {
            TenantDb::open("t", dir.path(), options, test_cache()).expect("open")
        };
        let path = dir.path().join(SNAPSHOT_FILE);
        let (expected, snapshot) = {
            let (db, _) = open(snapshot_options());
            fill_for_snapshot(&db);
            db.write_snapshot().expect("snapshot");
            (head_data(&db), std::fs::read(&path).expect("read"))
        };
        // A start that died while loading it left it renamed: not tried again.
        std::fs::rename(&path, dir.path().join(SNAPSHOT_LOADING)).expect("rename");
        let (db, stats) = open(snapshot_options());
        assert!(stats.records > 0, "the WAL was replayed");
        assert_eq!(head_data(&db), expected);
        assert!(!dir.path().join(SNAPSHOT_LOADING).exists());
        drop(db);
        // Another block range: the snapshot's chunks may cross its bounds.
        std::fs::write(&path, snapshot).expect("write");
        let other_range = TenantOptions {
            block_range_ms: 3_600_000,
            ..snapshot_options()
        };
        let (db, stats) = open(other_range);
        assert!(stats.records > 0, "the WAL was replayed");
        assert_eq!(db.head().num_series(), 5);
        assert!(!path.exists());
        assert!(
            !path.with_extension("snapshot.damaged").exists(),
            "not damaged"
        );
    }

    #[test]
    fn a_failed_wal_write_is_invisible_and_its_retry_replays_once() {
        // The write fails after putting none, part or all of its records on
        // disk; it is retried as a sender would, and writing goes on.
        for keep in [0, 10, 60, usize::MAX] {
            let dir = tempfile::tempdir().expect("tempdir");
            let open =
                || TenantDb::open("t", dir.path(), small_segments(), test_cache()).expect("open");
            let batch = [
                series("new", &[(1_000_000 + 10 * 15_000, 1.0)]),
                series("s0", &[(1_000_000 + 10 * 15_000, 5.0)]),
            ];
            let expected = {
                let (db, _) = open();
                write_rounds(&db, 0..10);
                let before = head_data(&db);
                db.wal.lock().wal.fail_next_write = Some(keep);
                assert!(db.write(&batch, &[]).is_err(), "keep {keep}");
                assert_eq!(head_data(&db), before, "a failed write shows nothing");
                let retried = db.write(&batch, &[]).expect("the retry");
                assert_eq!(retried.response.samples_written, 2);
                write_rounds(&db, 11..20);
                head_data(&db)
            };
            let (db, _) = open();
            assert_eq!(head_data(&db), expected, "keep {keep}");
        }
    }

    #[test]
    fn writes_after_a_snapshot_replay_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open =
            || TenantDb::open("t", dir.path(), snapshot_options(), test_cache()).expect("open");
        let expected = {
            let db = filled_and_snapshotted(dir.path());
            // A write racing with shutdown lands in the next WAL segment.
            db.write(&[series("late", &[(9_000_000, 1.0)])], &[])
                .expect("write");
            assert_eq!(db.flush().expect("flush"), 0, "no cut after a snapshot");
            head_view(&db)
        };
        let (db, stats) = open();
        assert!(stats.records > 0);
        assert_eq!(head_view(&db), expected);
    }

    #[test]
    fn a_damaged_snapshot_is_moved_aside_and_the_wal_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open =
            || TenantDb::open("t", dir.path(), snapshot_options(), test_cache()).expect("open");
        let expected = head_view(&filled_and_snapshotted(dir.path()));
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&path, bytes).expect("write");
        let (db, stats) = open();
        assert!(stats.records > 0, "the WAL was replayed");
        assert_eq!(head_view(&db), expected);
        assert!(!path.exists());
        assert!(path.with_extension("snapshot.damaged").exists());
    }

    #[test]
    fn a_snapshot_older_than_a_cut_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open =
            || TenantDb::open("t", dir.path(), snapshot_options(), test_cache()).expect("open");
        let path = dir.path().join(SNAPSHOT_FILE);
        let old = {
            let (db, _) = open();
            fill_for_snapshot(&db);
            db.write_snapshot().expect("snapshot");
            std::fs::read(&path).expect("read")
        };
        let expected = {
            let (db, _) = open();
            assert!(db.flush().expect("flush") > 0);
            head_data(&db)
        };
        // As if deleting the used snapshot had failed.
        std::fs::write(&path, old).expect("write");
        let (db, _) = open();
        assert_eq!(head_data(&db), expected);
        assert!(!path.exists(), "a stale snapshot is deleted");
    }

    #[test]
    fn predicted_samples_replay_across_segment_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = f64::from_bits(strata_proto::STALE_NAN_BITS);
        let before = {
            let (db, _) =
                TenantDb::open("t", dir.path(), small_segments(), test_cache()).expect("open");
            for round in 0..60i64 {
                let t = 1_000_000 + round * 15_000;
                // A new series every few rounds, so some appear mid-segment.
                let batch: Vec<TimeSeries> = (0..(3 + round / 4))
                    .map(|i| {
                        let value = match i % 3 {
                            0 => (round * 1000 + i) as f64,
                            1 if round % 7 == 3 => stale,
                            1 => round as f64 / 3.0,
                            _ => f64::INFINITY,
                        };
                        series(&format!("s{i}"), &[(t, value)])
                    })
                    .collect();
                db.write(&batch, &[]).expect("write");
            }
            assert!(
                db.wal.lock().wal.current_segment() > 5,
                "the batches rotated"
            );
            float_samples(&db)
        };
        let (db, stats) =
            TenantDb::open("t", dir.path(), small_segments(), test_cache()).expect("reopen");
        assert!(stats.segments > 5);
        assert_eq!(float_samples(&db), before);
        // And once more after writing into the reopened WAL.
        db.write(&[series("s0", &[(5_000_000, 1.0)])], &[])
            .expect("write");
        let after = float_samples(&db);
        drop(db);
        let (db, _) =
            TenantDb::open("t", dir.path(), small_segments(), test_cache()).expect("reopen");
        assert_eq!(float_samples(&db), after);
    }

    #[test]
    fn a_wal_written_in_the_old_record_format_still_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = strata_proto::STALE_NAN_BITS;
        {
            // Segment 1 as an older build wrote it: protobuf records, one
            // of them snappy-compressed.
            let (mut wal, _) =
                Wal::open(
                    &dir.path().join("wal"),
                    WalOptions::default(),
                    |_, _| Ok(()),
                )
                .expect("wal");
            let series_record = wal_codec::encode(&WalRecord {
                record: Some(wal_record::Record::Series(
                    strata_proto::wal::SeriesRecord {
                        entries: (0..300)
                            .map(|i| SeriesEntry {
                                id: i,
                                labels: vec![label("__name__", &format!("s{i}"))],
                            })
                            .collect(),
                    },
                )),
            });
            let samples_record = wal_codec::encode(&WalRecord {
                record: Some(wal_record::Record::Samples(SamplesRecord {
                    series_ids: (0..300).collect(),
                    timestamps_ms: vec![1000; 300],
                    value_bits: (0..300u32)
                        .map(|i| {
                            if i == 7 {
                                stale
                            } else {
                                f64::from(i).to_bits()
                            }
                        })
                        .collect(),
                })),
            });
            assert_eq!(samples_record[0], 1, "the old record is snappy");
            wal.append(&[&series_record, &samples_record])
                .expect("append");
        }
        let (db, _) =
            TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache()).expect("open");
        let old = float_samples(&db);
        assert_eq!(old.len(), 300);
        assert!(
            old.iter()
                .any(|(name, s)| name == "s7" && s == &[(1000, stale)])
        );
        // New records go after the old ones, in the new format.
        db.write(&[series("s7", &[(2000, 2.5)])], &[])
            .expect("write");
        let both = float_samples(&db);
        drop(db);
        let (db, _) = TenantDb::open("t", dir.path(), TenantOptions::default(), test_cache())
            .expect("reopen");
        assert_eq!(float_samples(&db), both);
        assert!(
            both.iter()
                .any(|(name, s)| name == "s7" && s == &[(1000, stale), (2000, 2.5f64.to_bits())])
        );
    }
}
