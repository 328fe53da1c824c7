//! Writes one block directory: chunk segments, then the index, then
//! `meta.json`, all under a temporary name that is renamed into place once
//! every file and the directory are fsynced. A crash therefore never leaves
//! a half block visible: a leftover `*.tmp` directory is deleted on open.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use strata_proto::prometheus::Label;

use super::format::{
    CHUNKS_MAGIC, FORMAT_VERSION, INDEX_MAGIC, MAX_SEGMENT_SIZE, Section, SectionRef, chunk_ref,
    encode_footer, put_bytes, put_chunk_record, put_uvarint, put_varint,
};
use super::{BlockError, BlockMeta, BlockStats, ChunkMeta, Compaction, fsync_dir, segment_name};

/// One chunk to write: its time range and encoded samples.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockChunk {
    pub min_time: i64,
    pub max_time: i64,
    /// [`super::format::ENCODING_XOR`] or [`super::format::ENCODING_HISTOGRAMS`].
    pub encoding: u8,
    pub samples: u32,
    pub data: Vec<u8>,
}

impl BlockChunk {
    /// Time-ordered samples as XOR chunks of at most 120 samples.
    pub fn xor_chunks(samples: &[(i64, f64)]) -> Vec<BlockChunk> {
        let chunk = strata_common::chunk::SAMPLES_PER_CHUNK;
        samples
            .chunks(chunk)
            .zip(strata_common::chunk::encode_all(samples))
            .filter_map(|(part, data)| {
                Some(BlockChunk {
                    min_time: part.first()?.0,
                    max_time: part.last()?.0,
                    encoding: super::format::ENCODING_XOR,
                    samples: part.len() as u32,
                    data,
                })
            })
            .collect()
    }
}

/// One series to write, chunks in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSeries {
    pub labels: Vec<Label>,
    pub chunks: Vec<BlockChunk>,
}

/// Builds a block in `<blocks_dir>/<ulid>.tmp` and renames it into place.
#[derive(Debug)]
pub struct BlockWriter {
    blocks_dir: PathBuf,
    ulid: String,
    tmp_dir: PathBuf,
    segment: Option<BufWriter<File>>,
    segment_number: u32,
    segment_size: u64,
    /// Series in label order with their chunk references.
    series: Vec<(Vec<Label>, Vec<ChunkMeta>)>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
}

impl BlockWriter {
    pub fn new(blocks_dir: &Path, ulid: String) -> Result<Self, BlockError> {
        let tmp_dir = blocks_dir.join(format!("{ulid}.tmp"));
        let io = |source| BlockError::io(&tmp_dir, source);
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(io)?;
        }
        fs::create_dir_all(tmp_dir.join("chunks")).map_err(io)?;
        Ok(BlockWriter {
            blocks_dir: blocks_dir.to_owned(),
            ulid,
            tmp_dir,
            segment: None,
            segment_number: 0,
            segment_size: 0,
            series: Vec::new(),
            stats: BlockStats::default(),
            min_time: i64::MAX,
            max_time: i64::MIN,
        })
    }

    /// Adds the next series; series must come in strictly increasing label
    /// order. A series without chunks is skipped.
    pub fn add_series(&mut self, series: BlockSeries) -> Result<(), BlockError> {
        if series.chunks.is_empty() {
            return Ok(());
        }
        if let Some((previous, _)) = self.series.last()
            && strata_common::labels::compare(previous, &series.labels).is_ge()
        {
            return Err(BlockError::Invalid {
                dir: self.tmp_dir.clone(),
                reason: "series added out of label order".to_owned(),
            });
        }
        let mut metas = Vec::with_capacity(series.chunks.len());
        let mut record = Vec::new();
        for chunk in series.chunks {
            record.clear();
            put_chunk_record(&mut record, chunk.encoding, &chunk.data);
            let reference = self.write_record(&record)?;
            metas.push(ChunkMeta {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                reference,
            });
            self.min_time = self.min_time.min(chunk.min_time);
            self.max_time = self.max_time.max(chunk.max_time);
            self.stats.num_chunks += 1;
            if chunk.encoding == super::format::ENCODING_HISTOGRAMS {
                self.stats.num_histograms += u64::from(chunk.samples);
            } else {
                self.stats.num_samples += u64::from(chunk.samples);
            }
        }
        self.stats.num_series += 1;
        self.series.push((series.labels, metas));
        Ok(())
    }

    /// Appends a record to the current segment, opening a new one when
    /// needed, and returns its reference.
    fn write_record(&mut self, record: &[u8]) -> Result<u64, BlockError> {
        let full = self.segment_size + record.len() as u64 > MAX_SEGMENT_SIZE;
        if self.segment.is_none() || full {
            self.finish_segment()?;
            self.segment_number += 1;
            let path = self
                .tmp_dir
                .join("chunks")
                .join(segment_name(self.segment_number));
            let file = File::create(&path).map_err(|e| BlockError::io(&path, e))?;
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            writer
                .write_all(CHUNKS_MAGIC)
                .and_then(|()| writer.write_all(&[FORMAT_VERSION]))
                .map_err(|e| BlockError::io(&path, e))?;
            self.segment = Some(writer);
            self.segment_size = super::format::CHUNKS_HEADER_LEN as u64;
        }
        let offset = u32::try_from(self.segment_size).map_err(|_| BlockError::Invalid {
            dir: self.tmp_dir.clone(),
            reason: "chunk record larger than a segment".to_owned(),
        })?;
        let tmp_dir = self.tmp_dir.clone();
        if let Some(writer) = self.segment.as_mut() {
            writer
                .write_all(record)
                .map_err(|e| BlockError::io(&tmp_dir, e))?;
        }
        self.segment_size += record.len() as u64;
        Ok(chunk_ref(self.segment_number, offset))
    }

    fn finish_segment(&mut self) -> Result<(), BlockError> {
        if let Some(writer) = self.segment.take() {
            let file = writer
                .into_inner()
                .map_err(|e| BlockError::io(&self.tmp_dir, e.into_error()))?;
            file.sync_all()
                .map_err(|e| BlockError::io(&self.tmp_dir, e))?;
        }
        Ok(())
    }

    /// Writes the index and `meta.json`, makes everything durable and
    /// renames the block into place. Returns `None` when no series had data.
    pub fn finish(
        mut self,
        level: u32,
        sources: Vec<String>,
        parents: Vec<String>,
    ) -> Result<Option<BlockMeta>, BlockError> {
        self.finish_segment()?;
        if self.series.is_empty() {
            fs::remove_dir_all(&self.tmp_dir).map_err(|e| BlockError::io(&self.tmp_dir, e))?;
            return Ok(None);
        }
        let index = encode_index(&self.series);
        let index_path = self.tmp_dir.join("index");
        write_synced(&index_path, &index)?;
        let sources = if sources.is_empty() {
            vec![self.ulid.clone()]
        } else {
            sources
        };
        let meta = BlockMeta {
            ulid: self.ulid.clone(),
            min_time: self.min_time,
            // Exclusive, as in Prometheus' meta.json.
            max_time: self.max_time.saturating_add(1),
            stats: self.stats,
            compaction: Compaction {
                level,
                sources,
                parents,
            },
            version: FORMAT_VERSION,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| BlockError::Invalid {
            dir: self.tmp_dir.clone(),
            reason: format!("meta.json: {e}"),
        })?;
        write_synced(&self.tmp_dir.join("meta.json"), &json)?;
        fsync_dir(&self.tmp_dir.join("chunks"))?;
        fsync_dir(&self.tmp_dir)?;
        let final_dir = self.blocks_dir.join(&self.ulid);
        fs::rename(&self.tmp_dir, &final_dir).map_err(|e| BlockError::io(&final_dir, e))?;
        fsync_dir(&self.blocks_dir)?;
        Ok(Some(meta))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BlockError> {
    let mut file = File::create(path).map_err(|e| BlockError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| BlockError::io(path, e))
}

/// Encodes the index file of the given series (in label order).
fn encode_index(series: &[(Vec<Label>, Vec<ChunkMeta>)]) -> Vec<u8> {
    // Symbols: every distinct name and value, sorted.
    let mut symbols: Vec<&str> = series
        .iter()
        .flat_map(|(labels, _)| labels.iter())
        .flat_map(|l| [l.name.as_str(), l.value.as_str()])
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let symbol = |s: &str| symbols.binary_search(&s).unwrap_or(0) as u64;

    let mut out = INDEX_MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    let mut sections = [SectionRef::default(); 5];
    let mut section = |out: &mut Vec<u8>, which: Section, bytes: Vec<u8>| {
        let index = Section::ALL.iter().position(|s| *s == which).unwrap_or(0);
        sections[index] = SectionRef {
            offset: out.len() as u64,
            len: bytes.len() as u64,
            crc: crc32c::crc32c(&bytes),
        };
        out.extend_from_slice(&bytes);
    };

    let mut bytes = Vec::new();
    put_uvarint(&mut bytes, symbols.len() as u64);
    for s in &symbols {
        put_bytes(&mut bytes, s.as_bytes());
    }
    section(&mut out, Section::Symbols, bytes);

    // Series entries, and where each starts.
    let mut entries = Vec::new();
    let mut offsets = Vec::with_capacity(series.len() * 8);
    let mut postings: BTreeMap<u64, BTreeMap<u64, RoaringBitmap>> = BTreeMap::new();
    for (id, (labels, chunks)) in series.iter().enumerate() {
        offsets.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        put_uvarint(&mut entries, labels.len() as u64);
        for label in labels {
            let (name, value) = (symbol(&label.name), symbol(&label.value));
            put_uvarint(&mut entries, name);
            put_uvarint(&mut entries, value);
            if !label.value.is_empty() {
                postings
                    .entry(name)
                    .or_default()
                    .entry(value)
                    .or_default()
                    .insert(id as u32);
            }
        }
        put_uvarint(&mut entries, chunks.len() as u64);
        let mut previous_max = 0i64;
        let mut previous_ref = 0u64;
        for chunk in chunks {
            put_varint(&mut entries, chunk.min_time.wrapping_sub(previous_max));
            put_uvarint(
                &mut entries,
                chunk.max_time.wrapping_sub(chunk.min_time) as u64,
            );
            put_uvarint(&mut entries, chunk.reference.wrapping_sub(previous_ref));
            previous_max = chunk.max_time;
            previous_ref = chunk.reference;
        }
    }
    section(&mut out, Section::Series, entries);
    section(&mut out, Section::SeriesOffsets, offsets);

    // Postings bitmaps, then the table naming them.
    let mut bitmaps = Vec::new();
    let mut table = Vec::new();
    put_uvarint(&mut table, postings.len() as u64);
    for (name, values) in &postings {
        put_uvarint(&mut table, *name);
        put_uvarint(&mut table, values.len() as u64);
        for (value, bitmap) in values {
            let offset = bitmaps.len() as u64;
            // Serializing into a Vec cannot fail.
            let _ = bitmap.serialize_into(&mut bitmaps);
            put_uvarint(&mut table, *value);
            put_uvarint(&mut table, offset);
            put_uvarint(&mut table, bitmaps.len() as u64 - offset);
        }
    }
    section(&mut out, Section::Postings, bitmaps);
    section(&mut out, Section::PostingsTable, table);
    out.extend(encode_footer(&sections));
    out
}
