//! Immutable blocks: a time range of one tenant's series on disk, read
//! through `memmap2`.
//!
//! # Layout
//!
//! ```text
//! <tenant>/blocks/<ULID>/meta.json      id, time range [minTime, maxTime), stats, compaction level/sources/parents
//!                       /chunks/000001  "SCHK" v1, then chunk records: encoding u8 | len uvarint | data | crc32c
//!                       /index          "SIDX" v1, sections, footer
//! ```
//!
//! The index's sections (each covered by a CRC32C in the footer):
//! symbols (sorted distinct label names and values); series entries in
//! label order (label pairs as symbol references, chunk metas with
//! delta-encoded times and references); a table of series entry offsets (a
//! series' id in the block is its position); roaring postings bitmaps per
//! label pair; and the postings table (per name, sorted values with their
//! bitmap's place) which doubles as the sorted value list of every name.
//! The footer lists offset, length and CRC of each section, its own CRC
//! and the magic again.

pub(crate) mod format;
mod writer;

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use memmap2::Mmap;
use prometheus_client::metrics::counter::Counter;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use strata_common::matcher::{MatchOp, Matcher};
use strata_proto::prometheus::{Chunk, Histogram, Label};
use strata_proto::store::SelectedSeries;

pub use format::{ENCODING_COMPACT, ENCODING_HISTOGRAMS, ENCODING_XOR, FormatError};
pub use writer::{BlockChunk, BlockSeries, BlockWriter};

use crate::index::{Postings, select_postings};
use format::{Reader, Section, SectionRef, read_chunk_record, split_chunk_ref};

/// A block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {}: i/o error", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("block {}: damaged", dir.display())]
    Damaged {
        dir: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("block {}: {reason}", dir.display())]
    Invalid { dir: PathBuf, reason: String },
}

impl BlockError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BlockError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Counts kept in `meta.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_samples: u64,
    pub num_histograms: u64,
    pub num_series: u64,
    pub num_chunks: u64,
}

/// How a block came to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for a block cut from the head, parents' maximum + 1 for a merge.
    pub level: u32,
    /// The level-1 blocks whose data this block holds.
    pub sources: Vec<String>,
    /// The blocks merged into this one; they are deleted once it is durable,
    /// and a parent still found on disk at open is deleted then.
    pub parents: Vec<String>,
}

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive.
    pub min_time: i64,
    /// Exclusive.
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u8,
}

/// Where a chunk of a series is and what times it covers (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub reference: u64,
}

/// A series entry decoded from the index.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEntry {
    pub labels: Vec<Label>,
    pub chunks: Vec<ChunkMeta>,
}

/// A value of a label name with the place of its postings bitmap.
#[derive(Debug, Clone, Copy)]
struct ValuePostings {
    value: u32,
    offset: u64,
    len: u64,
}

#[derive(Debug)]
struct NamePostings {
    name: u32,
    /// Sorted by value.
    values: Vec<ValuePostings>,
}

/// Bytes of a block by file kind, for `strata tool inspect-block`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockSizes {
    pub index: u64,
    pub chunks: u64,
    pub meta: u64,
}

impl BlockSizes {
    pub fn total(&self) -> u64 {
        self.index + self.chunks + self.meta
    }
}

/// Samples in a chunk record's data: the XOR header's count, or the number
/// of histograms.
pub fn chunk_samples(encoding: u8, data: &[u8]) -> u32 {
    match (encoding, data) {
        (ENCODING_XOR, [high, low, ..]) => u32::from(u16::from_be_bytes([*high, *low])),
        (ENCODING_HISTOGRAMS, _) => decode_histograms(data).map_or(0, |h| h.len() as u32),
        (ENCODING_COMPACT, _) => {
            strata_common::compact_chunk::sample_count(data).map_or(0, |n| n as u32)
        }
        _ => 0,
    }
}

/// An open block.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: Mmap,
    segments: Vec<Mmap>,
    sections: [SectionRef; 5],
    /// Sorted; names and values of labels refer to them by position.
    symbols: Vec<String>,
    /// Sorted by name.
    postings: Vec<NamePostings>,
    num_series: u32,
    sizes: BlockSizes,
    /// Distinguishes this block in the shared postings cache.
    cache_key: u64,
}

/// Hands every opened block its own key in the postings cache.
static NEXT_CACHE_KEY: AtomicU64 = AtomicU64::new(0);

/// Maps a file read-only.
fn map(path: &Path) -> Result<Mmap, BlockError> {
    let file = File::open(path).map_err(|e| BlockError::io(path, e))?;
    // SAFETY: block files are written once under a temporary name and never
    // modified after the rename; they are only deleted (which keeps an
    // existing mapping valid on Unix). A mapping therefore never observes a
    // concurrent write.
    #[allow(unsafe_code)]
    let mapped = unsafe { Mmap::map(&file) };
    mapped.map_err(|e| BlockError::io(path, e))
}

pub(crate) fn segment_name(number: u32) -> String {
    format!("{number:06}")
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlockError::io(dir, e))
}

/// Reads a block's `meta.json`.
pub fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join("meta.json");
    let bytes = fs::read(&path).map_err(|e| BlockError::io(&path, e))?;
    let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| BlockError::Damaged {
        dir: dir.to_owned(),
        source: FormatError::new("meta.json", e),
    })?;
    if meta.version != format::FORMAT_VERSION {
        return Err(BlockError::Invalid {
            dir: dir.to_owned(),
            reason: format!("unsupported block version {}", meta.version),
        });
    }
    Ok(meta)
}

impl Block {
    /// Opens a block, checking `meta.json`, every index section's checksum
    /// and every chunk segment's header. Chunk records are checked when read
    /// (and all of them by [`Block::verify`]).
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta = read_meta(dir)?;
        let damaged = |source| BlockError::Damaged {
            dir: dir.to_owned(),
            source,
        };
        let index = map(&dir.join("index"))?;
        let sections = format::decode_footer(&index).map_err(damaged)?;
        for (which, section) in Section::ALL.iter().zip(&sections) {
            let bytes = section_bytes(&index, section).map_err(damaged)?;
            if crc32c::crc32c(bytes) != section.crc {
                return Err(damaged(FormatError::new(
                    format!("index {} section", which.name()),
                    "checksum mismatch",
                )));
            }
        }
        let mut segments = Vec::new();
        let mut sizes = BlockSizes {
            index: index.len() as u64,
            meta: fs::metadata(dir.join("meta.json")).map_or(0, |m| m.len()),
            ..BlockSizes::default()
        };
        for number in 1.. {
            let path = dir.join("chunks").join(segment_name(number));
            if !path.exists() {
                break;
            }
            let segment = map(&path)?;
            let header_ok = segment.len() >= format::CHUNKS_HEADER_LEN
                && &segment[..4] == format::CHUNKS_MAGIC
                && segment[4] == format::FORMAT_VERSION;
            if !header_ok {
                return Err(damaged(FormatError::new(
                    format!("chunk segment {number}"),
                    "bad header",
                )));
            }
            sizes.chunks += segment.len() as u64;
            segments.push(segment);
        }
        let symbols_bytes = section_bytes(&index, &sections[0]).map_err(damaged)?;
        let symbols = decode_symbols(symbols_bytes).map_err(damaged)?;
        let table = section_bytes(&index, &sections[4]).map_err(damaged)?;
        let postings = decode_postings_table(table, symbols.len()).map_err(damaged)?;
        let offsets_len = section_bytes(&index, &sections[2]).map_err(damaged)?.len();
        let num_series = u32::try_from(offsets_len / 8)
            .map_err(|_| damaged(FormatError::new("index", "too many series")))?;
        let cache_key = NEXT_CACHE_KEY.fetch_add(1, Relaxed);
        Ok(Block {
            dir: dir.to_owned(),
            meta,
            index,
            segments,
            sections,
            symbols,
            postings,
            num_series,
            sizes,
            cache_key,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sizes(&self) -> BlockSizes {
        self.sizes
    }

    pub fn num_series(&self) -> u32 {
        self.num_series
    }

    /// Whether the block may hold samples in `[start, end]` (inclusive).
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.meta.min_time <= end && self.meta.max_time > start
    }

    fn damaged(&self, source: FormatError) -> BlockError {
        BlockError::Damaged {
            dir: self.dir.clone(),
            source,
        }
    }

    fn symbol(&self, reference: u64) -> Result<&str, FormatError> {
        usize::try_from(reference)
            .ok()
            .and_then(|i| self.symbols.get(i))
            .map(String::as_str)
            .ok_or_else(|| FormatError::new("series entry", "symbol reference out of range"))
    }

    /// The series entry with id `id`, through the cache.
    pub fn cached_series(
        &self,
        id: u32,
        cache: &BlockCache,
    ) -> Result<Arc<SeriesEntry>, BlockError> {
        cache.series_or((self.cache_key, id), || self.series(id))
    }

    /// The series entry with id `id` (its position in label order).
    pub fn series(&self, id: u32) -> Result<SeriesEntry, BlockError> {
        self.decode_series(id).map_err(|e| self.damaged(e))
    }

    fn decode_series(&self, id: u32) -> Result<SeriesEntry, FormatError> {
        let offsets = section_bytes(&self.index, &self.sections[2])?;
        let at = id as usize * 8;
        let mut reader = Reader::new(offsets.get(at..at + 8).unwrap_or(&[]), "series offsets");
        let offset = reader.u64_le()?;
        let entries = section_bytes(&self.index, &self.sections[1])?;
        let entry = usize::try_from(offset)
            .ok()
            .and_then(|o| entries.get(o..))
            .ok_or_else(|| FormatError::new("series offsets", "offset out of range"))?;
        let mut reader = Reader::new(entry, "series entry");
        let count = reader.length(entry.len())?;
        let mut labels = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.symbol(reader.uvarint()?)?;
            let value = self.symbol(reader.uvarint()?)?;
            labels.push(Label {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        let count = reader.length(entry.len())?;
        let mut chunks = Vec::with_capacity(count);
        let mut previous_max = 0i64;
        let mut previous_ref = 0u64;
        for _ in 0..count {
            let min_time = previous_max.wrapping_add(reader.varint()?);
            let max_time = min_time.wrapping_add(reader.uvarint()? as i64);
            let reference = previous_ref.wrapping_add(reader.uvarint()?);
            chunks.push(ChunkMeta {
                min_time,
                max_time,
                reference,
            });
            previous_max = max_time;
            previous_ref = reference;
        }
        Ok(SeriesEntry { labels, chunks })
    }

    /// The chunk record behind a reference: (encoding, data).
    pub fn chunk(&self, reference: u64) -> Result<(u8, &[u8]), BlockError> {
        let (segment, offset) = split_chunk_ref(reference);
        let bytes = (segment as usize)
            .checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .ok_or_else(|| {
                self.damaged(FormatError::new(
                    "chunk reference",
                    format!("segment {segment} does not exist"),
                ))
            })?;
        let record = read_chunk_record(bytes, offset as usize).map_err(|e| self.damaged(e))?;
        Ok((record.encoding, record.data))
    }

    /// Ids of series matching all matchers (not filtered by time).
    pub fn matching(
        &self,
        matchers: &[Matcher],
        cache: &BlockCache,
    ) -> Result<RoaringBitmap, BlockError> {
        let source = BlockPostings {
            block: self,
            cache,
            error: RefCell::new(None),
        };
        let ids = select_postings(&source, matchers);
        match source.error.into_inner() {
            Some(error) => Err(self.damaged(error)),
            None => Ok(ids),
        }
    }

    /// Ids matching any of the sets (all series when there is none) with
    /// data in `[start, end]`.
    pub fn matching_any(
        &self,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
        cache: &BlockCache,
    ) -> Result<RoaringBitmap, BlockError> {
        if !self.overlaps(start, end) {
            return Ok(RoaringBitmap::new());
        }
        let mut ids = RoaringBitmap::new();
        if sets.is_empty() {
            ids.insert_range(0..self.num_series);
        }
        for set in sets {
            ids |= self.matching(set, cache)?;
        }
        // Every series has data inside the block's range: only a range cutting
        // the block needs a look at each series' chunks.
        if start > self.meta.min_time || end < self.meta.max_time - 1 {
            let mut inside = RoaringBitmap::new();
            for id in &ids {
                let entry = self.cached_series(id, cache)?;
                if entry
                    .chunks
                    .iter()
                    .any(|c| c.min_time <= end && c.max_time >= start)
                {
                    inside.insert(id);
                }
            }
            ids = inside;
        }
        Ok(ids)
    }

    /// The data in `[start, end]` of the series matching all matchers, in
    /// label order: whole chunks where they fit, boundary chunks trimmed.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        cache: &BlockCache,
    ) -> Result<Vec<SelectedSeries>, BlockError> {
        if !self.overlaps(start, end) {
            return Ok(Vec::new());
        }
        let ids = self.matching(matchers, cache)?;
        let mut out = Vec::new();
        for id in &ids {
            let entry = self.cached_series(id, cache)?;
            let mut selected = SelectedSeries {
                labels: entry.labels.clone(),
                chunks: Vec::new(),
                histograms: Vec::new(),
            };
            for meta in &entry.chunks {
                if meta.max_time < start || meta.min_time > end {
                    continue;
                }
                let (encoding, data) = self.chunk(meta.reference)?;
                match encoding {
                    ENCODING_HISTOGRAMS => {
                        let histograms = decode_histograms(data).map_err(|e| self.damaged(e))?;
                        selected.histograms.extend(
                            histograms
                                .into_iter()
                                .filter(|h| (start..=end).contains(&h.timestamp)),
                        );
                    }
                    ENCODING_XOR | ENCODING_COMPACT
                        if start <= meta.min_time && meta.max_time <= end =>
                    {
                        selected.chunks.push(Chunk {
                            min_time_ms: meta.min_time,
                            max_time_ms: meta.max_time,
                            r#type: i32::from(encoding),
                            data: data.to_vec(),
                        });
                    }
                    ENCODING_XOR | ENCODING_COMPACT => selected.chunks.extend(
                        crate::head::trim_chunk(i32::from(encoding), data, start, end),
                    ),
                    other => {
                        return Err(self.damaged(FormatError::new(
                            "chunk",
                            format!("unknown encoding {other}"),
                        )));
                    }
                }
            }
            if !selected.chunks.is_empty() || !selected.histograms.is_empty() {
                out.push(selected);
            }
        }
        Ok(out)
    }

    /// Every series with all its chunks, in label order (compaction input).
    pub fn all_series(&self) -> impl Iterator<Item = Result<BlockSeries, BlockError>> + '_ {
        (0..self.num_series).map(move |id| {
            let entry = self.series(id)?;
            let mut chunks = Vec::with_capacity(entry.chunks.len());
            for meta in entry.chunks {
                let (encoding, data) = self.chunk(meta.reference)?;
                chunks.push(BlockChunk {
                    min_time: meta.min_time,
                    max_time: meta.max_time,
                    encoding,
                    samples: chunk_samples(encoding, data),
                    data: data.to_vec(),
                });
            }
            Ok(BlockSeries {
                labels: entry.labels,
                chunks,
            })
        })
    }

    /// Sorted label names carried by the given series.
    pub fn label_names(&self, ids: &RoaringBitmap) -> Result<Vec<String>, BlockError> {
        let everything = ids.len() == u64::from(self.num_series);
        let mut names = Vec::new();
        for name in &self.postings {
            let mut carried = everything && !name.values.is_empty();
            for value in &name.values {
                if carried {
                    break;
                }
                carried = !self.bitmap(value)?.is_disjoint(ids);
            }
            if carried {
                names.push(self.symbols[name.name as usize].clone());
            }
        }
        Ok(names)
    }

    /// Sorted values of `name` among the given series.
    pub fn label_values(&self, name: &str, ids: &RoaringBitmap) -> Result<Vec<String>, BlockError> {
        let Some(entry) = self.name_postings(name) else {
            return Ok(Vec::new());
        };
        let everything = ids.len() == u64::from(self.num_series);
        let mut values = Vec::new();
        for value in &entry.values {
            if everything || !self.bitmap(value)?.is_disjoint(ids) {
                values.push(self.symbols[value.value as usize].clone());
            }
        }
        Ok(values)
    }

    fn name_postings(&self, name: &str) -> Option<&NamePostings> {
        let at = self
            .postings
            .binary_search_by(|n| self.symbols[n.name as usize].as_str().cmp(name))
            .ok()?;
        self.postings.get(at)
    }

    fn bitmap(&self, value: &ValuePostings) -> Result<RoaringBitmap, BlockError> {
        self.read_bitmap(value).map_err(|e| self.damaged(e))
    }

    fn read_bitmap(&self, value: &ValuePostings) -> Result<RoaringBitmap, FormatError> {
        let postings = section_bytes(&self.index, &self.sections[3])?;
        let bytes = usize::try_from(value.offset)
            .ok()
            .zip(usize::try_from(value.len).ok())
            .and_then(|(offset, len)| postings.get(offset..offset.checked_add(len)?))
            .ok_or_else(|| FormatError::new("postings table", "bitmap out of range"))?;
        RoaringBitmap::deserialize_from(bytes).map_err(|e| FormatError::new("postings", e))
    }

    /// Checks every checksum of the block: index sections (already done by
    /// [`Block::open`]) and every chunk record every series refers to.
    /// Returns the number of chunks checked.
    pub fn verify(&self) -> Result<u64, BlockError> {
        let mut chunks = 0;
        for id in 0..self.num_series {
            for meta in self.series(id)?.chunks {
                self.chunk(meta.reference)?;
                chunks += 1;
            }
        }
        for name in &self.postings {
            for value in &name.values {
                self.bitmap(value)?;
            }
        }
        Ok(chunks)
    }
}

fn section_bytes<'a>(index: &'a [u8], section: &SectionRef) -> Result<&'a [u8], FormatError> {
    usize::try_from(section.offset)
        .ok()
        .zip(usize::try_from(section.len).ok())
        .and_then(|(offset, len)| index.get(offset..offset.checked_add(len)?))
        .ok_or_else(|| FormatError::new("index footer", "section out of range"))
}

fn decode_symbols(bytes: &[u8]) -> Result<Vec<String>, FormatError> {
    let mut reader = Reader::new(bytes, "symbols");
    let count = reader.length(bytes.len())?;
    let mut symbols = Vec::with_capacity(count);
    for _ in 0..count {
        let raw = reader.bytes()?;
        let symbol = std::str::from_utf8(raw).map_err(|e| FormatError::new("symbols", e))?;
        symbols.push(symbol.to_owned());
    }
    if symbols.windows(2).any(|w| w[0] >= w[1]) {
        return Err(FormatError::new("symbols", "not sorted"));
    }
    Ok(symbols)
}

fn decode_postings_table(bytes: &[u8], symbols: usize) -> Result<Vec<NamePostings>, FormatError> {
    let mut reader = Reader::new(bytes, "postings table");
    let symbol = |reference: u64| {
        u32::try_from(reference)
            .ok()
            .filter(|s| (*s as usize) < symbols)
            .ok_or_else(|| FormatError::new("postings table", "symbol reference out of range"))
    };
    let names = reader.length(bytes.len())?;
    let mut table = Vec::with_capacity(names);
    for _ in 0..names {
        let name = symbol(reader.uvarint()?)?;
        let count = reader.length(bytes.len())?;
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            values.push(ValuePostings {
                value: symbol(reader.uvarint()?)?,
                offset: reader.uvarint()?,
                len: reader.uvarint()?,
            });
        }
        if values.windows(2).any(|w| w[0].value >= w[1].value) {
            return Err(FormatError::new("postings table", "values not sorted"));
        }
        table.push(NamePostings { name, values });
    }
    if table.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(FormatError::new("postings table", "names not sorted"));
    }
    Ok(table)
}

/// Encodes native histograms as one chunk record's data.
pub fn encode_histograms(histograms: &[Histogram]) -> Vec<u8> {
    let mut out = Vec::new();
    for histogram in histograms {
        // Encoding into a Vec cannot fail.
        let _ = prost::Message::encode_length_delimited(histogram, &mut out);
    }
    out
}

pub fn decode_histograms(mut data: &[u8]) -> Result<Vec<Histogram>, FormatError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let histogram = <Histogram as prost::Message>::decode_length_delimited(&mut data)
            .map_err(|e| FormatError::new("histogram chunk", e))?;
        out.push(histogram);
    }
    Ok(out)
}

/// A size-bounded cache of what reading blocks decodes — postings lookups
/// and series entries — shared by every block of a store node. Keys start
/// with the block's own key, so entries of one block (and one tenant)
/// never answer for another. Half of the bytes go to each kind.
#[derive(Debug)]
pub struct BlockCache {
    postings: moka::sync::Cache<(u64, String), Arc<RoaringBitmap>>,
    series: moka::sync::Cache<(u64, u32), Arc<SeriesEntry>>,
    hits: Counter,
    misses: Counter,
}

impl BlockCache {
    /// A cache holding at most about `max_bytes`, counting its hits and
    /// misses in the given counters.
    pub fn new(max_bytes: u64, hits: Counter, misses: Counter) -> Self {
        let weight = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX);
        let postings = moka::sync::Cache::builder()
            .max_capacity(max_bytes / 2)
            .weigher(move |key: &(u64, String), value: &Arc<RoaringBitmap>| {
                weight(key.1.len() + value.serialized_size() + 64)
            })
            .build();
        let series = moka::sync::Cache::builder()
            .max_capacity(max_bytes / 2)
            .weigher(move |_: &(u64, u32), entry: &Arc<SeriesEntry>| {
                let labels: usize = entry
                    .labels
                    .iter()
                    .map(|l| l.name.len() + l.value.len() + 48)
                    .sum();
                weight(labels + entry.chunks.len() * 24 + 64)
            })
            .build();
        BlockCache {
            postings,
            series,
            hits,
            misses,
        }
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }

    /// Bytes currently held (approximate).
    pub fn weighted_size(&self) -> u64 {
        self.postings.weighted_size() + self.series.weighted_size()
    }

    fn postings_or(
        &self,
        key: (u64, String),
        compute: impl FnOnce() -> Result<RoaringBitmap, FormatError>,
    ) -> Result<RoaringBitmap, FormatError> {
        if let Some(hit) = self.postings.get(&key) {
            self.hits.inc();
            return Ok((*hit).clone());
        }
        self.misses.inc();
        let bitmap = compute()?;
        self.postings.insert(key, Arc::new(bitmap.clone()));
        Ok(bitmap)
    }

    fn series_or(
        &self,
        key: (u64, u32),
        compute: impl FnOnce() -> Result<SeriesEntry, BlockError>,
    ) -> Result<Arc<SeriesEntry>, BlockError> {
        if let Some(hit) = self.series.get(&key) {
            self.hits.inc();
            return Ok(hit);
        }
        self.misses.inc();
        let entry = Arc::new(compute()?);
        self.series.insert(key, entry.clone());
        Ok(entry)
    }
}

/// A block's postings as the shared selection algorithm sees them. That
/// algorithm cannot fail, so damage found while reading is kept aside
/// and reported after it ran.
struct BlockPostings<'a> {
    block: &'a Block,
    cache: &'a BlockCache,
    error: RefCell<Option<FormatError>>,
}

impl BlockPostings<'_> {
    /// Union of the bitmaps of the values of `matcher.name` the matcher
    /// accepts (or, `negated`, rejects).
    fn union(&self, matcher: &Matcher, negated: bool) -> RoaringBitmap {
        let key = (
            self.block.cache_key,
            format!("{}{matcher}", if negated { "!" } else { "" }),
        );
        let result = self.cache.postings_or(key, || {
            let mut out = RoaringBitmap::new();
            let Some(entry) = self.block.name_postings(&matcher.name) else {
                return Ok(out);
            };
            let symbols = &self.block.symbols;
            let value_of = |v: &ValuePostings| symbols[v.value as usize].as_str();
            let accepted: Vec<&ValuePostings> = if negated && matcher.op == MatchOp::NotEqual {
                find_value(&entry.values, symbols, &matcher.value)
                    .into_iter()
                    .collect()
            } else if negated {
                entry
                    .values
                    .iter()
                    .filter(|v| !matcher.matches(value_of(v)))
                    .collect()
            } else if let Some(set) = matcher.set_matches() {
                set.iter()
                    .filter_map(|s| find_value(&entry.values, symbols, s))
                    .collect()
            } else if let Some(prefix) = matcher.prefix() {
                let start = entry.values.partition_point(|v| value_of(v) < prefix);
                entry.values[start..]
                    .iter()
                    .take_while(|v| value_of(v).starts_with(prefix))
                    .collect()
            } else {
                entry
                    .values
                    .iter()
                    .filter(|v| matcher.matches(value_of(v)))
                    .collect()
            };
            for value in accepted {
                out |= self.block.read_bitmap(value)?;
            }
            Ok(out)
        });
        result.unwrap_or_else(|error| {
            self.error.borrow_mut().get_or_insert(error);
            RoaringBitmap::new()
        })
    }
}

fn find_value<'a>(
    values: &'a [ValuePostings],
    symbols: &[String],
    wanted: &str,
) -> Option<&'a ValuePostings> {
    let at = values
        .binary_search_by(|v| symbols[v.value as usize].as_str().cmp(wanted))
        .ok()?;
    values.get(at)
}

impl Postings for BlockPostings<'_> {
    fn all(&self) -> RoaringBitmap {
        let mut all = RoaringBitmap::new();
        all.insert_range(0..self.block.num_series);
        all
    }

    fn matching(&self, matcher: &Matcher) -> RoaringBitmap {
        self.union(matcher, false)
    }

    fn not_matching(&self, matcher: &Matcher) -> RoaringBitmap {
        self.union(matcher, true)
    }
}

#[cfg(test)]
mod tests;
