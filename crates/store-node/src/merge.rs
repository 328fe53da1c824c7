//! Merging one series' data from several sources (head and blocks, or the
//! blocks a compaction joins) into one time-ordered series without
//! duplicates. Chunks that do not overlap are passed through untouched;
//! only overlapping ones (out-of-order or backfilled data) are decoded,
//! merged sample by sample and re-encoded.

use strata_proto::prometheus::{Chunk, Histogram};
use strata_proto::store::SelectedSeries;

use strata_common::compact_chunk;
use strata_proto::prometheus::Label;

use crate::block::{
    BlockChunk, BlockSeries, ENCODING_COMPACT, ENCODING_HISTOGRAMS, decode_histograms,
    encode_histograms,
};
use crate::chunk;

/// Merges label-sorted selections from several sources into one
/// label-sorted selection; series present in several sources become one.
pub fn merge_selected(parts: Vec<Vec<SelectedSeries>>) -> Vec<SelectedSeries> {
    let mut parts: Vec<Vec<SelectedSeries>> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    if parts.len() <= 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all: Vec<SelectedSeries> = parts.into_iter().flatten().collect();
    // Stable: the sources' order is kept among equal label sets.
    all.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
    let mut out: Vec<SelectedSeries> = Vec::with_capacity(all.len());
    for series in all {
        match out.last_mut() {
            Some(last) if last.labels == series.labels => {
                last.chunks.extend(series.chunks);
                last.histograms.extend(series.histograms);
            }
            _ => out.push(series),
        }
    }
    for series in &mut out {
        series.chunks = merge_chunks(std::mem::take(&mut series.chunks));
        merge_histograms(&mut series.histograms);
    }
    out
}

/// Time-orders XOR chunks; where chunks overlap, their samples are merged
/// (one sample per timestamp, the first source's winning) and re-encoded.
fn merge_chunks(mut chunks: Vec<Chunk>) -> Vec<Chunk> {
    chunks.sort_by_key(|c| c.min_time_ms);
    let overlapping = chunks
        .windows(2)
        .any(|w| w[1].min_time_ms <= w[0].max_time_ms);
    if !overlapping {
        return chunks;
    }
    let mut samples = Vec::new();
    for chunk in &chunks {
        if let Err(error) = compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut samples) {
            tracing::error!(%error, "chunk failed to decode while merging, skipping it");
        }
    }
    // Stable sort keeps the earlier source first among equal timestamps.
    samples.sort_by_key(|(t, _)| *t);
    samples.dedup_by_key(|(t, _)| *t);
    chunk::encode_all(&samples)
        .into_iter()
        .zip(samples.chunks(chunk::SAMPLES_PER_CHUNK))
        .filter_map(|(data, part)| {
            Some(crate::head::xor_chunk(
                part.first()?.0,
                part.last()?.0,
                data,
            ))
        })
        .collect()
}

fn merge_histograms(histograms: &mut Vec<Histogram>) {
    histograms.sort_by_key(|h| h.timestamp);
    histograms.dedup_by_key(|h| h.timestamp);
}

/// Most samples in one float chunk of a block: a 2 h block at a 15 s
/// interval keeps each series in one chunk (fewer index entries, and the
/// compact encoding's per-chunk headers amortized).
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

/// One series' chunks as a block stores them: float chunks in the compact
/// encoding of up to [`BLOCK_CHUNK_SAMPLES`], histograms in runs; chunks from
/// several sources (compaction) are joined, overlaps merged sample by sample.
pub fn block_series(labels: Vec<Label>, chunks: Vec<BlockChunk>) -> BlockSeries {
    let (histogram_chunks, mut float_chunks): (Vec<BlockChunk>, Vec<BlockChunk>) = chunks
        .into_iter()
        .partition(|c| c.encoding == ENCODING_HISTOGRAMS);
    float_chunks.sort_by_key(|c| c.min_time);
    let ready = float_chunks.iter().all(|c| c.encoding == ENCODING_COMPACT)
        && !float_chunks
            .windows(2)
            .any(|w| w[1].min_time <= w[0].max_time);
    let mut out = if ready {
        float_chunks
    } else {
        compact_floats(&float_chunks)
    };
    let overlapping_histograms = histogram_chunks
        .windows(2)
        .any(|w| w[1].min_time <= w[0].max_time);
    if overlapping_histograms {
        let mut histograms: Vec<Histogram> = histogram_chunks
            .iter()
            .flat_map(|c| decode_histograms(&c.data).unwrap_or_default())
            .collect();
        merge_histograms(&mut histograms);
        for run in histograms.chunks(chunk::SAMPLES_PER_CHUNK) {
            if let (Some(first), Some(last)) = (run.first(), run.last()) {
                out.push(BlockChunk {
                    min_time: first.timestamp,
                    max_time: last.timestamp,
                    encoding: ENCODING_HISTOGRAMS,
                    samples: run.len() as u32,
                    data: encode_histograms(run),
                });
            }
        }
    } else {
        out.extend(histogram_chunks);
    }
    out.sort_by_key(|c| c.min_time);
    BlockSeries {
        labels,
        chunks: out,
    }
}

/// Decodes float chunks of any encoding, merges them (one sample per
/// timestamp, the earlier chunk winning) and re-encodes them compactly.
fn compact_floats(chunks: &[BlockChunk]) -> Vec<BlockChunk> {
    let mut samples = Vec::new();
    for chunk in chunks {
        if let Err(error) =
            compact_chunk::decode_any(i32::from(chunk.encoding), &chunk.data, &mut samples)
        {
            tracing::error!(%error, "chunk failed to decode while writing a block, skipping it");
        }
    }
    samples.sort_by_key(|(t, _)| *t);
    samples.dedup_by_key(|(t, _)| *t);
    samples
        .chunks(BLOCK_CHUNK_SAMPLES)
        .filter_map(|part| {
            Some(BlockChunk {
                min_time: part.first()?.0,
                max_time: part.last()?.0,
                encoding: ENCODING_COMPACT,
                samples: part.len() as u32,
                data: compact_chunk::encode(part),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    fn selected(name: &str, samples: &[(i64, f64)]) -> SelectedSeries {
        SelectedSeries {
            labels: vec![label("__name__", name)],
            chunks: chunk::encode_all(samples)
                .into_iter()
                .zip(samples.chunks(chunk::SAMPLES_PER_CHUNK))
                .map(|(data, part)| crate::head::xor_chunk(part[0].0, part[part.len() - 1].0, data))
                .collect(),
            histograms: Vec::new(),
        }
    }

    fn samples_of(series: &SelectedSeries) -> Vec<(i64, f64)> {
        let mut samples = Vec::new();
        for c in &series.chunks {
            compact_chunk::decode_any(c.r#type, &c.data, &mut samples).expect("chunk");
        }
        samples
    }

    #[test]
    fn block_series_are_compact_and_merge_overlaps() {
        let xor = |samples: &[(i64, f64)]| BlockChunk {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: crate::block::ENCODING_XOR,
            samples: samples.len() as u32,
            data: chunk::encode_all(samples).remove(0),
        };
        let first: Vec<(i64, f64)> = (0..100).map(|i| (i * 15_000, i as f64)).collect();
        let second: Vec<(i64, f64)> = (90..600).map(|i| (i * 15_000, i as f64)).collect();
        let chunks = vec![xor(&first), xor(&second[..120]), xor(&second[120..240])];
        let series = block_series(vec![label("__name__", "a")], chunks);
        assert!(series.chunks.iter().all(|c| c.encoding == ENCODING_COMPACT));
        let mut samples = Vec::new();
        for c in &series.chunks {
            compact_chunk::decode_into(&c.data, &mut samples).expect("compact chunk");
        }
        let expected: Vec<(i64, f64)> = (0..330).map(|i| (i * 15_000, i as f64)).collect();
        assert_eq!(samples, expected);
        assert_eq!(series.chunks.len(), 1, "330 samples fit one block chunk");
        assert_eq!(series.chunks[0].samples, 330);
    }

    #[test]
    fn disjoint_sources_concatenate_and_overlaps_deduplicate() {
        let block = vec![
            selected("a", &[(1, 1.0), (2, 2.0)]),
            selected("c", &[(1, 5.0)]),
        ];
        let head = vec![
            selected("a", &[(3, 3.0)]),
            selected("b", &[(1, 4.0)]),
            selected("c", &[(1, 5.0), (2, 6.0)]),
        ];
        let merged = merge_selected(vec![block, head]);
        let names: Vec<&str> = merged.iter().map(|s| s.labels[0].value.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(samples_of(&merged[0]), vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(
            merged[0].chunks.len(),
            2,
            "disjoint chunks pass through untouched"
        );
        assert_eq!(samples_of(&merged[2]), vec![(1, 5.0), (2, 6.0)]);
    }
}
