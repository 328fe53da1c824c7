//! One tenant's in-memory head: series with their compressed chunks, the
//! label index and metric metadata. The head knows nothing of files; the
//! tenant database ([`crate::tenant_db`]) puts every change through the WAL
//! first and then applies it here.

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;
use strata_common::{Matcher, compact_chunk};
use strata_proto::prometheus::{Chunk, Histogram, Label, MetricMetadata, chunk::Encoding};
use strata_proto::store::SelectedSeries;

use crate::block::{
    BlockChunk, BlockSeries, ENCODING_HISTOGRAMS, ENCODING_XOR, chunk_samples, encode_histograms,
};
use crate::chunk::{SAMPLES_PER_CHUNK, XorAppender};
use crate::hash::{FastBuild, packed_labels_hash};
use crate::index::LabelIndex;
use crate::packed_labels::PackedLabels;

pub mod snapshot;

/// Why a sample was refused by the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleRejection {
    /// Older than the newest sample of its series.
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    DuplicateTimestamp,
    /// Older than the head's lower bound: that time range is in blocks.
    OutOfBounds,
}

impl SampleRejection {
    /// Prometheus' wording for the error.
    pub fn message(self) -> &'static str {
        match self {
            SampleRejection::OutOfOrder => "out of order sample",
            SampleRejection::DuplicateTimestamp => "duplicate sample for timestamp",
            SampleRejection::OutOfBounds => "out of bounds",
        }
    }
}

/// What appending one sample would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendCheck {
    Append,
    /// An exact repeat of the newest sample: accepted, stored once.
    Duplicate,
    Reject(SampleRejection),
}

/// A closed, immutable chunk of float samples.
#[derive(Debug)]
struct ClosedChunk {
    min_time: i64,
    max_time: i64,
    bytes: Box<[u8]>,
}

/// One series in the head.
#[derive(Debug)]
pub(crate) struct MemSeries {
    labels: PackedLabels,
    closed: Vec<ClosedChunk>,
    open: XorAppender,
    /// Histograms and late samples, which most series never have: one
    /// pointer instead of two empty vectors.
    extra: Option<Box<Extra>>,
    /// Timestamp and kind of the newest sample, float or histogram: one
    /// series has one sample per timestamp, whatever its kind.
    last: Option<(i64, LastKind)>,
    min_time: i64,
    max_time: i64,
}

/// The parts of a series most series never use.
#[derive(Debug, Default)]
struct Extra {
    histograms: Vec<Histogram>,
    /// Float samples accepted out of order (within the out-of-order
    /// window), sorted by time, one per timestamp: (t, value bits).
    out_of_order: Vec<(i64, u64)>,
}

impl MemSeries {
    fn histograms(&self) -> &[Histogram] {
        self.extra.as_ref().map_or(&[], |e| &e.histograms)
    }

    fn out_of_order(&self) -> &[(i64, u64)] {
        self.extra.as_ref().map_or(&[], |e| &e.out_of_order)
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn new(labels: &[Label]) -> Self {
        MemSeries {
            labels: PackedLabels::pack(labels),
            closed: Vec::new(),
            open: XorAppender::new(),
            extra: None,
            last: None,
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }

    /// The newest sample, for order checks.
    pub(crate) fn last_sample(&self) -> Option<LastSample> {
        let (t, kind) = self.last?;
        let value = match kind {
            LastKind::Float(bits) => SampleValue::Float(bits),
            LastKind::Histogram => {
                SampleValue::Histogram(Box::new(self.histograms().last()?.clone()))
            }
        };
        Some(LastSample { t, value })
    }

    fn is_newer(&self, t: i64) -> bool {
        self.last.is_none_or(|(last_t, _)| t > last_t)
    }

    fn append_float(&mut self, t: i64, bits: u64, chunk_range: i64) {
        if !self.is_newer(t) {
            // Older than the newest sample: the write path let it through
            // as out of order (an equal timestamp never reaches the head).
            if self.last.is_some_and(|(last, _)| t < last) {
                self.insert_out_of_order(t, bits);
            }
            return;
        }
        // A chunk never crosses a block boundary, so cutting the head into
        // blocks moves whole chunks.
        let crosses = self
            .open
            .min_time()
            .is_some_and(|first| range_end(first, chunk_range) <= t);
        if self.open.len() >= SAMPLES_PER_CHUNK || crosses {
            self.cut_chunk();
        }
        self.open.append(t, f64::from_bits(bits));
        self.last = Some((t, LastKind::Float(bits)));
        self.widen(t);
    }

    fn append_histogram(&mut self, histogram: Histogram) {
        let t = histogram.timestamp;
        if !self.is_newer(t) {
            return;
        }
        self.widen(t);
        self.extra_mut().histograms.push(histogram);
        self.last = Some((t, LastKind::Histogram));
    }

    fn insert_out_of_order(&mut self, t: i64, bits: u64) {
        let late = &mut self.extra_mut().out_of_order;
        if let Err(at) = late.binary_search_by_key(&t, |(t, _)| *t) {
            late.insert(at, (t, bits));
            self.widen(t);
        }
    }

    fn widen(&mut self, t: i64) {
        self.min_time = self.min_time.min(t);
        self.max_time = self.max_time.max(t);
    }

    fn cut_chunk(&mut self) {
        let full = std::mem::take(&mut self.open);
        if let (Some(min_time), Some(max_time)) = (full.min_time(), full.max_time()) {
            self.closed.push(ClosedChunk {
                min_time,
                max_time,
                bytes: full.bytes().into(),
            });
        }
    }

    fn has_data(&self) -> bool {
        self.min_time <= self.max_time
    }

    /// Drops every chunk and histogram before `before` (chunks end at block
    /// boundaries, and `before` is one, so no chunk is cut in two).
    fn truncate_before(&mut self, before: i64) {
        self.closed.retain(|c| c.max_time >= before);
        if self.open.max_time().is_some_and(|max| max < before) {
            self.open = XorAppender::new();
        }
        if let Some(extra) = &mut self.extra {
            extra.histograms.retain(|h| h.timestamp >= before);
            extra.out_of_order.retain(|(t, _)| *t >= before);
            if extra.histograms.is_empty() && extra.out_of_order.is_empty() {
                self.extra = None;
            }
        }
        let firsts = [
            self.closed.first().map(|c| c.min_time),
            self.open.min_time(),
            self.histograms().first().map(|h| h.timestamp),
            self.out_of_order().first().map(|(t, _)| *t),
        ];
        match firsts.into_iter().flatten().min() {
            Some(min) => self.min_time = min,
            None => {
                self.min_time = i64::MAX;
                self.max_time = i64::MIN;
            }
        }
    }

    /// This series' chunks entirely before `before`, for a block.
    fn chunks_before(&self, before: i64, chunk_range: i64) -> Vec<BlockChunk> {
        let open = self
            .open
            .min_time()
            .zip(self.open.max_time())
            .map(|(min, max)| (min, max, self.open.bytes()));
        let mut chunks: Vec<BlockChunk> = self
            .closed
            .iter()
            .map(|c| (c.min_time, c.max_time, &c.bytes[..]))
            .chain(open)
            .filter(|(_, max, _)| *max < before)
            .map(|(min_time, max_time, bytes)| BlockChunk {
                min_time,
                max_time,
                encoding: ENCODING_XOR,
                samples: chunk_samples(ENCODING_XOR, bytes),
                data: bytes.to_vec(),
            })
            .collect();
        // Histograms: one chunk per block range and per SAMPLES_PER_CHUNK.
        let old: Vec<&Histogram> = self
            .histograms()
            .iter()
            .take_while(|h| h.timestamp < before)
            .collect();
        let mut start = 0;
        while start < old.len() {
            let range = range_end(old[start].timestamp, chunk_range);
            let mut end = start;
            while end < old.len() && end - start < SAMPLES_PER_CHUNK && old[end].timestamp < range {
                end += 1;
            }
            let run: Vec<Histogram> = old[start..end].iter().map(|h| (*h).clone()).collect();
            chunks.push(BlockChunk {
                min_time: old[start].timestamp,
                max_time: old[end - 1].timestamp,
                encoding: ENCODING_HISTOGRAMS,
                samples: (end - start) as u32,
                data: encode_histograms(&run),
            });
            start = end;
        }
        // Out-of-order samples: XOR chunks per block range; writing the
        // block merges them with the in-order chunks.
        let late: Vec<(i64, f64)> = self
            .out_of_order()
            .iter()
            .take_while(|(t, _)| *t < before)
            .map(|(t, bits)| (*t, f64::from_bits(*bits)))
            .collect();
        for run in late.chunk_by(|a, b| range_end(a.0, chunk_range) == range_end(b.0, chunk_range))
        {
            chunks.extend(BlockChunk::xor_chunks(run));
        }
        chunks.sort_by_key(|c| c.min_time);
        chunks
    }

    /// Whether the series has data that may fall in `[start, end]`; a
    /// series without samples (its WAL tail was torn away) never does.
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.has_data() && self.min_time <= end && self.max_time >= start
    }

    /// The series' data in `[start, end]`: whole chunks where they fit, boundary
    /// chunks re-encoded so no sample outside the range leaves the store.
    fn select(&self, start: i64, end: i64) -> SelectedSeries {
        let mut chunks = Vec::new();
        let open = self
            .open
            .min_time()
            .zip(self.open.max_time())
            .map(|(min, max)| (min, max, self.open.bytes()));
        let all = self
            .closed
            .iter()
            .map(|c| (c.min_time, c.max_time, &c.bytes[..]))
            .chain(open);
        for (min_time, max_time, bytes) in all {
            if max_time < start || min_time > end {
                continue;
            }
            if start <= min_time && max_time <= end {
                chunks.push(xor_chunk(min_time, max_time, bytes.to_vec()));
                continue;
            }
            chunks.extend(trim_chunk(Encoding::Xor as i32, bytes, start, end));
        }
        let late = self
            .out_of_order()
            .iter()
            .filter(|(t, _)| (start..=end).contains(t));
        if late.clone().next().is_some() {
            chunks = merge_out_of_order(&chunks, late);
        }
        let histograms = self
            .histograms()
            .iter()
            .filter(|h| (start..=end).contains(&h.timestamp))
            .cloned()
            .collect();
        SelectedSeries {
            labels: self.labels.unpack(),
            chunks,
            histograms,
        }
    }
}

/// Kind of a series' newest sample; a histogram's value is the last
/// element of the series' histogram list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastKind {
    Float(u64),
    Histogram,
}

/// A sample's value as the order check compares it: float bits, so NaNs
/// and stale markers compare exactly, or a whole histogram.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Float(u64),
    Histogram(Box<Histogram>),
}

/// The newest sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSample {
    pub t: i64,
    pub value: SampleValue,
}

/// Prometheus' in-order append rule for one series: a newer sample appends;
/// at the newest timestamp an identical sample is a no-op and anything else
/// (another value, or another kind) is a duplicate; older is out of order.
/// (The out-of-order window comes with persistent blocks.)
pub(crate) fn check_order(last: Option<&LastSample>, t: i64, value: &SampleValue) -> AppendCheck {
    match last {
        None => AppendCheck::Append,
        Some(last) if t > last.t => AppendCheck::Append,
        Some(last) if t == last.t && &last.value == value => AppendCheck::Duplicate,
        Some(last) if t == last.t => AppendCheck::Reject(SampleRejection::DuplicateTimestamp),
        Some(_) => AppendCheck::Reject(SampleRejection::OutOfOrder),
    }
}

/// In-order XOR chunks and out-of-order samples as XOR chunks of one
/// time-ordered sequence (an in-order sample wins a shared timestamp).
fn merge_out_of_order<'a>(
    chunks: &[Chunk],
    late: impl Iterator<Item = &'a (i64, u64)>,
) -> Vec<Chunk> {
    let mut samples = Vec::new();
    for chunk in chunks {
        if let Err(error) = compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut samples) {
            tracing::error!(%error, "head chunk failed to decode, skipping it");
        }
    }
    samples.extend(late.map(|(t, bits)| (*t, f64::from_bits(*bits))));
    samples.sort_by_key(|(t, _)| *t);
    samples.dedup_by_key(|(t, _)| *t);
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .zip(crate::chunk::encode_all(&samples))
        .filter_map(|(part, data)| Some(xor_chunk(part.first()?.0, part.last()?.0, data)))
        .collect()
}

/// The end (exclusive) of the block range `t` falls in.
pub fn range_end(t: i64, range: i64) -> i64 {
    t.div_euclid(range).saturating_add(1).saturating_mul(range)
}

pub(crate) fn xor_chunk(min_time_ms: i64, max_time_ms: i64, data: Vec<u8>) -> Chunk {
    Chunk {
        min_time_ms,
        max_time_ms,
        r#type: Encoding::Xor as i32,
        data,
    }
}

/// Re-encodes the samples of a chunk inside `[start, end]`, in the chunk's
/// own encoding: XOR chunks stay XOR (of at most [`SAMPLES_PER_CHUNK`]),
/// compact ones stay one compact chunk. A chunk that fails to decode is an
/// invariant violation of our own encoder: it is skipped with an error log
/// rather than failing the whole read.
pub(crate) fn trim_chunk(encoding: i32, bytes: &[u8], start: i64, end: i64) -> Vec<Chunk> {
    let mut samples = Vec::new();
    if let Err(error) = compact_chunk::decode_any(encoding, bytes, &mut samples) {
        tracing::error!(%error, "chunk failed to decode, skipping it");
        return Vec::new();
    }
    samples.retain(|(t, _)| (start..=end).contains(t));
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    if encoding == compact_chunk::COMPACT_CHUNK_ENCODING {
        return vec![Chunk {
            min_time_ms: first.0,
            max_time_ms: last.0,
            r#type: encoding,
            data: compact_chunk::encode(&samples),
        }];
    }
    let mut chunks = Vec::new();
    for part in samples.chunks(SAMPLES_PER_CHUNK) {
        let (Some(first), Some(last)) = (part.first(), part.last()) else {
            continue;
        };
        let mut appender = XorAppender::new();
        for (t, v) in part {
            appender.append(*t, *v);
        }
        chunks.push(xor_chunk(first.0, last.0, appender.bytes().to_vec()));
    }
    chunks
}

/// Default block range: 2 h, as Prometheus.
pub const DEFAULT_BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

/// A tenant's in-memory series, index and metadata.
#[derive(Debug)]
pub struct Head {
    /// Indexed by series id; `None` for ids whose series was dropped once
    /// all its data went to blocks (ids are never reused while running).
    series: Vec<Option<MemSeries>>,
    live: usize,
    /// Label-set hash → id of the first series with that hash. The labels
    /// are compared on lookup, so the table keeps no copy of them.
    ids: HashMap<u64, u32, FastBuild>,
    /// Further series whose hash collides with one in `ids` (rare).
    collisions: HashMap<u64, Vec<u32>, FastBuild>,
    index: LabelIndex,
    /// Metric family name → distinct (type, help, unit) entries.
    metadata: BTreeMap<String, Vec<MetricMetadata>>,
    samples: u64,
    /// Block range: no chunk crosses a multiple of it.
    chunk_range: i64,
    /// Newest sample timestamp ever appended (the out-of-order window is
    /// measured back from it).
    newest: i64,
}

impl Default for Head {
    fn default() -> Self {
        Head::new(DEFAULT_BLOCK_RANGE_MS)
    }
}

impl Head {
    /// An empty head whose chunks end at multiples of `block_range_ms`.
    pub fn new(block_range_ms: i64) -> Self {
        Head {
            series: Vec::new(),
            live: 0,
            ids: HashMap::default(),
            collisions: HashMap::default(),
            index: LabelIndex::new(),
            metadata: BTreeMap::new(),
            samples: 0,
            chunk_range: block_range_ms.max(1),
            newest: i64::MIN,
        }
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> usize {
        self.live
    }

    /// Number of float and histogram samples appended since start (replay included).
    pub fn num_samples(&self) -> u64 {
        self.samples
    }

    /// Newest sample timestamp appended so far (`i64::MIN` when none).
    pub fn newest(&self) -> i64 {
        self.newest
    }

    /// The id of a label set, if the head has it.
    pub fn lookup(&self, labels: &[Label]) -> Option<u32> {
        PackedLabels::with_encoded(labels, |packed| self.lookup_packed(packed))
    }

    /// The id of the label set whose packed form ([`PackedLabels`]) is
    /// `packed`, if the head has it: a remote-write request's labels, when
    /// the sender encoded them canonically, are looked up as they lie.
    pub fn lookup_packed(&self, packed: &[u8]) -> Option<u32> {
        let hash = packed_labels_hash(packed);
        let first = self.ids.get(&hash).copied()?;
        // Collisions are rare: skip probing their (usually empty) map.
        let others = (!self.collisions.is_empty())
            .then(|| self.collisions.get(&hash))
            .flatten()
            .into_iter()
            .flatten()
            .copied();
        std::iter::once(first).chain(others).find(|id| {
            self.series(*id)
                .is_some_and(|s| s.labels.matches_bytes(packed))
        })
    }

    /// The first series stored under label-set hash `hash` (see
    /// [`packed_labels_hash`]) and its labels, to compare: the first step
    /// of [`Head::lookup_packed`] alone, so a batch of lookups can take it
    /// for all its series first. When the labels differ, `lookup_packed`
    /// still has to look through the colliding series.
    pub fn hash_candidate(&self, hash: u64) -> Option<(u32, &PackedLabels)> {
        let id = self.ids.get(&hash).copied()?;
        Some((id, &self.series(id)?.labels))
    }

    /// The id the next created series will get.
    pub fn next_id(&self) -> u32 {
        u32::try_from(self.series.len()).unwrap_or(u32::MAX)
    }

    /// Makes sure no series is ever created below `id` from now on (ids a
    /// failed WAL append may have written are never handed out again).
    pub fn skip_ids_below(&mut self, id: u32) {
        while self.next_id() < id {
            self.series.push(None);
        }
    }

    /// Whether `id` is free for [`Head::create_series`].
    pub fn is_free(&self, id: u32) -> bool {
        self.series(id).is_none()
    }

    /// The labels of series `id`, if the head has it.
    pub fn series_labels(&self, id: u32) -> Option<Vec<Label>> {
        self.series(id).map(|s| s.labels.unpack())
    }

    pub(crate) fn series(&self, id: u32) -> Option<&MemSeries> {
        self.series.get(id as usize).and_then(Option::as_ref)
    }

    /// Creates a series under a free `id` (normally [`Head::next_id`]; replay
    /// restores the ids the WAL recorded).
    pub fn create_series(&mut self, id: u32, labels: Vec<Label>) -> Result<(), String> {
        if id == u32::MAX {
            // `next_id` saturates there: no slot can be made for it.
            return Err(format!("series id {id} is out of range"));
        }
        if !self.is_free(id) {
            return Err(format!("series id {id} is already in use"));
        }
        let series = MemSeries::new(&labels);
        let packed = series.labels.as_bytes();
        if self.lookup_packed(packed).is_some() {
            return Err(format!("series id {id} duplicates an existing series"));
        }
        self.index.add(id, &labels);
        match self.ids.entry(packed_labels_hash(packed)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(slot) => {
                self.collisions.entry(*slot.key()).or_default().push(id);
            }
        }
        self.skip_ids_below(id.saturating_add(1));
        self.series[id as usize] = Some(series);
        self.live += 1;
        Ok(())
    }

    /// Forgets series `id` (its data is in blocks).
    fn remove_series(&mut self, id: u32) {
        let Some(series) = self.series.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.live -= 1;
        self.index.remove(id, &series.labels.unpack());
        let hash = packed_labels_hash(series.labels.as_bytes());
        let others = self.collisions.get_mut(&hash);
        if self.ids.get(&hash) == Some(&id) {
            match others.and_then(Vec::pop) {
                Some(other) => {
                    self.ids.insert(hash, other);
                }
                None => {
                    self.ids.remove(&hash);
                }
            }
        } else if let Some(others) = others {
            others.retain(|other| *other != id);
        }
        if self.collisions.get(&hash).is_some_and(Vec::is_empty) {
            self.collisions.remove(&hash);
        }
    }

    /// The oldest and newest sample timestamps over all series.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.live_series()
            .filter(|(_, s)| s.has_data())
            .map(|(_, s)| (s.min_time, s.max_time))
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    fn live_series(&self) -> impl Iterator<Item = (u32, &MemSeries)> {
        self.series
            .iter()
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, s.as_ref()?)))
    }

    /// Every series' chunks entirely before `before`, series in label order.
    pub fn data_before(&self, before: i64) -> Vec<BlockSeries> {
        let mut out: Vec<BlockSeries> = self
            .live_series()
            .filter(|(_, s)| s.has_data() && s.min_time < before)
            .map(|(_, s)| BlockSeries {
                labels: s.labels.unpack(),
                chunks: s.chunks_before(before, self.chunk_range),
            })
            .filter(|s| !s.chunks.is_empty())
            .collect();
        out.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
        out
    }

    /// Drops all data before `before` (now in blocks) and the series left
    /// without data; returns how many series were dropped.
    pub fn truncate_before(&mut self, before: i64) -> usize {
        let mut emptied = Vec::new();
        for (id, slot) in self.series.iter_mut().enumerate() {
            if let Some(series) = slot
                && series.has_data()
                && series.min_time < before
            {
                series.truncate_before(before);
                if !series.has_data() {
                    emptied.push(id as u32);
                }
            }
        }
        for id in &emptied {
            self.remove_series(*id);
        }
        emptied.len()
    }

    /// The ids of every live series.
    pub fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.live_series().map(|(id, _)| id)
    }

    /// Every live series' id and labels (for a WAL checkpoint).
    pub fn series_entries(&self) -> Vec<(u32, Vec<Label>)> {
        self.live_series()
            .map(|(id, s)| (id, s.labels.unpack()))
            .collect()
    }

    /// Every metadata entry.
    pub fn all_metadata(&self) -> Vec<MetricMetadata> {
        self.metadata.values().flatten().cloned().collect()
    }

    /// Appends a float sample; out-of-order and duplicate samples are ignored
    /// here (the write path refuses them before they reach the WAL).
    pub fn append_float(&mut self, id: u32, t: i64, bits: u64) {
        let range = self.chunk_range;
        if let Some(Some(series)) = self.series.get_mut(id as usize) {
            self.newest = self.newest.max(t);
            series.append_float(t, bits, range);
            self.samples += 1;
        }
    }

    /// Appends float samples sorted by series id (each series' samples in
    /// their order) as [`Head::append_float`] would one by one (WAL
    /// replay). A big batch is split at a series id and the upper part
    /// appended on a second thread: series are independent.
    pub fn append_sorted_floats(&mut self, rows: &[(u32, i64, u64)]) {
        /// Below this a second thread costs more than it saves.
        const PARALLEL_ROWS: usize = 1 << 14;
        let range = self.chunk_range;
        let append =
            |series: &mut [Option<MemSeries>], first_id: usize, rows: &[(u32, i64, u64)]| {
                let mut appended = 0u64;
                let mut newest = i64::MIN;
                for &(id, t, bits) in rows {
                    if let Some(Some(s)) = series.get_mut((id as usize).wrapping_sub(first_id)) {
                        s.append_float(t, bits, range);
                        appended += 1;
                        newest = newest.max(t);
                    }
                }
                (appended, newest)
            };
        let parallel = rows.len() >= PARALLEL_ROWS
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let (appended, newest) = if parallel {
            let split_id = (rows[rows.len() / 2].0 as usize).min(self.series.len());
            let first_upper = rows.partition_point(|r| (r.0 as usize) < split_id);
            let (lower_rows, upper_rows) = rows.split_at(first_upper);
            let (lower, upper) = self.series.split_at_mut(split_id);
            let (a, newest_a, upper_done) = std::thread::scope(|scope| {
                let upper = std::thread::Builder::new()
                    .spawn_scoped(scope, || append(upper, split_id, upper_rows));
                let (a, newest_a) = append(lower, 0, lower_rows);
                match upper {
                    Ok(upper) => {
                        let (b, newest_b) = upper
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                        (a + b, newest_a.max(newest_b), true)
                    }
                    Err(_) => (a, newest_a, false),
                }
            });
            if upper_done {
                (a, newest_a)
            } else {
                // No second thread to be had: this one does the upper part too.
                let (b, newest_b) = append(&mut self.series, 0, upper_rows);
                (a + b, newest_a.max(newest_b))
            }
        } else {
            append(&mut self.series, 0, rows)
        };
        self.samples += appended;
        self.newest = self.newest.max(newest);
    }

    pub fn append_histogram(&mut self, id: u32, histogram: Histogram) {
        if let Some(Some(series)) = self.series.get_mut(id as usize) {
            self.newest = self.newest.max(histogram.timestamp);
            series.append_histogram(histogram);
            self.samples += 1;
        }
    }

    /// Records metadata for a metric family; repeats of a known entry are no-ops.
    pub fn add_metadata(&mut self, entry: MetricMetadata) {
        let family = self
            .metadata
            .entry(entry.metric_family_name.clone())
            .or_default();
        let known = family
            .iter()
            .any(|m| m.r#type == entry.r#type && m.help == entry.help && m.unit == entry.unit);
        if !known {
            family.push(entry);
        }
    }

    /// Whether `entry` would change the stored metadata.
    pub fn is_new_metadata(&self, entry: &MetricMetadata) -> bool {
        self.metadata
            .get(&entry.metric_family_name)
            .is_none_or(|family| {
                !family.iter().any(|m| {
                    m.r#type == entry.r#type && m.help == entry.help && m.unit == entry.unit
                })
            })
    }

    /// Ids of series matching all matchers with data in `[start, end]`.
    pub fn matching(&self, matchers: &[Matcher], start: i64, end: i64) -> RoaringBitmap {
        self.index
            .select(matchers)
            .iter()
            .filter(|id| self.series(*id).is_some_and(|s| s.overlaps(start, end)))
            .collect()
    }

    /// Ids matching any of the matcher sets (all series when there is none).
    pub fn matching_any(&self, sets: &[Vec<Matcher>], start: i64, end: i64) -> RoaringBitmap {
        if sets.is_empty() {
            return self.matching(&[], start, end);
        }
        let mut ids = RoaringBitmap::new();
        for set in sets {
            ids |= self.matching(set, start, end);
        }
        ids
    }

    /// The data of the given series in `[start, end]`, sorted by labels.
    pub fn select(&self, ids: &RoaringBitmap, start: i64, end: i64) -> Vec<SelectedSeries> {
        let mut out: Vec<SelectedSeries> = ids
            .iter()
            .filter_map(|id| self.series(id))
            .map(|s| s.select(start, end))
            .filter(|s| !s.chunks.is_empty() || !s.histograms.is_empty())
            .collect();
        out.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
        out
    }

    /// Label sets of the given series, sorted.
    pub fn label_sets(&self, ids: &RoaringBitmap) -> Vec<Vec<Label>> {
        let mut out: Vec<Vec<Label>> = ids
            .iter()
            .filter_map(|id| self.series(id))
            .map(|s| s.labels.unpack())
            .collect();
        out.sort_by(|a, b| strata_common::labels::compare(a, b));
        out
    }

    pub fn label_names(&self, ids: &RoaringBitmap) -> Vec<String> {
        self.index.label_names(Some(ids))
    }

    pub fn label_values(&self, name: &str, ids: &RoaringBitmap) -> Vec<String> {
        self.index.label_values(name, Some(ids))
    }

    /// Metadata by metric family, optionally for one family only.
    pub fn metadata(&self, metric: Option<&str>) -> Vec<(&str, &[MetricMetadata])> {
        match metric {
            Some(name) => self
                .metadata
                .get_key_value(name)
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .into_iter()
                .collect(),
            None => self
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::MatchOp;
    use strata_common::labels::label;

    fn head_with(series: &[(&str, &[(i64, f64)])]) -> Head {
        let mut head = Head::default();
        for (name, samples) in series {
            let id = head.next_id();
            head.create_series(id, vec![label("__name__", name), label("job", "j")])
                .expect("fresh series");
            for (t, v) in *samples {
                head.append_float(id, *t, v.to_bits());
            }
        }
        head
    }

    fn decode_all(series: &SelectedSeries) -> Vec<(i64, f64)> {
        series
            .chunks
            .iter()
            .flat_map(|c| crate::chunk::decode(&c.data).expect("valid chunk"))
            .collect()
    }

    #[test]
    fn sorted_batches_append_as_one_by_one_does() {
        // Enough rows for the two-thread path; ids past the end, removed
        // series and late samples included.
        let mut one_by_one = Head::default();
        let mut batched = Head::default();
        for id in 0..500u32 {
            for head in [&mut one_by_one, &mut batched] {
                head.create_series(id, vec![label("__name__", &format!("s{id}"))])
                    .expect("fresh series");
            }
        }
        let mut rows = Vec::new();
        for round in 0..80i64 {
            for id in 0..520u32 {
                let t = 1_000 + round * 15_000 - i64::from(id % 7 == 3 && round % 9 == 4) * 20_000;
                rows.push((id, t, (round as f64 * f64::from(id)).to_bits()));
            }
        }
        for &(id, t, bits) in &rows {
            one_by_one.append_float(id, t, bits);
        }
        rows.sort_by_key(|r| r.0);
        assert!(rows.len() > 1 << 14);
        batched.append_sorted_floats(&rows);
        assert_eq!(batched.num_samples(), one_by_one.num_samples());
        assert_eq!(batched.newest(), one_by_one.newest());
        let all = |head: &Head| {
            let ids = head.matching(&[], i64::MIN, i64::MAX);
            head.select(&ids, i64::MIN, i64::MAX)
                .iter()
                .map(|s| (s.labels.clone(), decode_all(s)))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(&batched), all(&one_by_one));
    }

    #[test]
    fn select_trims_to_the_range_across_chunks() {
        let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 1000, i as f64)).collect();
        let head = head_with(&[("a", &samples)]);
        let ids = head.matching(&[], 10_000, 250_000);
        let got = head.select(&ids, 10_000, 250_000);
        assert_eq!(got.len(), 1);
        let expected: Vec<(i64, f64)> = samples[10..=250].to_vec();
        assert_eq!(decode_all(&got[0]), expected);
        for c in &got[0].chunks {
            assert!(c.min_time_ms >= 10_000 && c.max_time_ms <= 250_000);
        }
    }

    #[test]
    fn order_checks_follow_prometheus() {
        let float = |v: f64| SampleValue::Float(v.to_bits());
        let last = LastSample {
            t: 1000,
            value: float(1.0),
        };
        assert_eq!(
            check_order(Some(&last), 1001, &float(0.0)),
            AppendCheck::Append
        );
        assert_eq!(
            check_order(Some(&last), 1000, &float(1.0)),
            AppendCheck::Duplicate
        );
        assert_eq!(
            check_order(Some(&last), 1000, &float(2.0)),
            AppendCheck::Reject(SampleRejection::DuplicateTimestamp)
        );
        assert_eq!(
            check_order(Some(&last), 999, &float(2.0)),
            AppendCheck::Reject(SampleRejection::OutOfOrder)
        );
        let histogram = SampleValue::Histogram(Box::new(Histogram {
            timestamp: 1000,
            ..Default::default()
        }));
        assert_eq!(
            check_order(Some(&last), 1000, &histogram),
            AppendCheck::Reject(SampleRejection::DuplicateTimestamp)
        );
        let last = LastSample {
            t: 1000,
            value: histogram.clone(),
        };
        assert_eq!(
            check_order(Some(&last), 1000, &histogram),
            AppendCheck::Duplicate
        );
        assert_eq!(
            check_order(Some(&last), 999, &float(1.0)),
            AppendCheck::Reject(SampleRejection::OutOfOrder)
        );
        // NaNs compare by bits: the same stale marker twice is a duplicate.
        let stale = SampleValue::Float(strata_proto::STALE_NAN_BITS);
        let last = LastSample {
            t: 5,
            value: stale.clone(),
        };
        assert_eq!(check_order(Some(&last), 5, &stale), AppendCheck::Duplicate);
    }

    #[test]
    fn an_empty_series_overlaps_nothing() {
        let mut head = Head::default();
        head.create_series(0, vec![label("__name__", "torn")])
            .expect("series");
        assert!(head.matching(&[], i64::MIN, i64::MAX).is_empty());
    }

    #[test]
    fn ids_and_label_sets_are_unique() {
        let mut head = Head::default();
        head.create_series(2, vec![label("a", "1")]).expect("first");
        assert!(head.create_series(2, vec![label("a", "2")]).is_err());
        assert!(head.create_series(0, vec![label("a", "1")]).is_err());
        assert_eq!(head.lookup(&[label("a", "1")]), Some(2));
        assert_eq!(head.next_id(), 3);
        assert!(head.is_free(0));
    }

    #[test]
    fn time_range_filters_series() {
        let head = head_with(&[("old", &[(1000, 1.0)]), ("new", &[(5000, 1.0)])]);
        let m = Matcher::new(MatchOp::Equal, "job", "j").expect("matcher");
        let ids = head.matching(&[m], 4000, 6000);
        let sets = head.label_sets(&ids);
        assert_eq!(
            sets,
            vec![vec![label("__name__", "new"), label("job", "j")]]
        );
    }

    #[test]
    fn metadata_is_deduplicated() {
        let mut head = Head::default();
        let entry = MetricMetadata {
            r#type: 1,
            metric_family_name: "x_total".into(),
            help: "h".into(),
            unit: String::new(),
        };
        assert!(head.is_new_metadata(&entry));
        head.add_metadata(entry.clone());
        head.add_metadata(entry.clone());
        assert!(!head.is_new_metadata(&entry));
        assert_eq!(head.metadata(Some("x_total"))[0].1.len(), 1);
    }
}
