//! The block reader (`strata_store_node::block`): index, chunk segments
//! and `meta.json` read back from disk through mmap.
//!
//! Each input describes a small valid block (series and samples drawn from
//! its first bytes) that is written with `BlockWriter`, then damaged by the
//! rest of the input: byte flips in the index or the chunk segment.
//!
//! Oracles:
//! * no panic, no out-of-bounds read: open, verify, select, label APIs and
//!   the compaction iterator give results or errors;
//! * an undamaged block reads back exactly the samples written.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata_common::labels::label;
use strata_common::{MatchOp, Matcher};
use strata_store_node::block::{Block, BlockChunk, BlockSeries, BlockWriter, BlockCache};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let series = series_from(shape, rest);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = BlockWriter::new(dir.path(), "01FUZZ".to_owned()).expect("writer");
    for one in &series {
        writer.add_series(one.clone()).expect("valid series");
    }
    let Some(_) = writer.finish(1, Vec::new(), Vec::new()).expect("finish") else {
        return;
    };
    let block_dir = dir.path().join("01FUZZ");
    let damaged = damage(&block_dir, rest);
    read_everything(&block_dir, &series, damaged);
});

/// Up to 8 series of up to 300 samples, timestamps increasing.
fn series_from(shape: u8, bytes: &[u8]) -> Vec<BlockSeries> {
    let count = usize::from(shape % 8) + 1;
    (0..count)
        .map(|i| {
            let n = bytes.get(i).map_or(1, |b| usize::from(*b) + 1);
            let samples: Vec<(i64, f64)> = (0..n)
                .map(|j| {
                    let b = bytes.get(i + j).copied().unwrap_or(0);
                    ((j as i64) * 15_000 + i64::from(b), f64::from(b) * 0.5)
                })
                .collect();
            let chunks = BlockChunk::xor_chunks(&samples);
            BlockSeries {
                labels: vec![label("__name__", "m"), label("i", &format!("{i:02}"))],
                chunks,
            }
        })
        .collect()
}

/// Flips bytes of the index or chunk file as the input says; returns
/// whether anything changed.
fn damage(block_dir: &Path, ops: &[u8]) -> bool {
    let mut changed = false;
    for op in ops.chunks_exact(4).take(8) {
        let path = if op[0] & 1 == 0 {
            block_dir.join("index")
        } else {
            block_dir.join("chunks/000001")
        };
        let mut bytes = std::fs::read(&path).expect("read");
        if bytes.is_empty() {
            continue;
        }
        let at = usize::from(u16::from_le_bytes([op[1], op[2]])) % bytes.len();
        if op[3] == 0 {
            continue;
        }
        bytes[at] ^= op[3];
        changed = true;
        std::fs::write(&path, &bytes).expect("write");
    }
    changed
}

fn read_everything(block_dir: &Path, written: &[BlockSeries], damaged: bool) {
    let block = match Block::open(block_dir) {
        Ok(block) => block,
        Err(error) => {
            assert!(damaged, "an undamaged block failed to open: {error}");
            return;
        }
    };
    let verified = block.verify();
    assert!(damaged || verified.is_ok(), "undamaged block fails verify: {verified:?}");
    let cache = BlockCache::new(1 << 20, Default::default(), Default::default());
    let all = block.select(&[], i64::MIN, i64::MAX, &cache);
    let regex = Matcher::new(MatchOp::RegexMatch, "i", "0[1-3]").expect("matcher");
    let _ = block.select(&[regex], 10_000, 1_000_000, &cache);
    if let Ok(ids) = block.matching_any(&[], 20_000, 2_000_000, &cache) {
        let _ = block.label_names(&ids);
        let _ = block.label_values("i", &ids);
    }
    for series in block.all_series() {
        let _ = series;
    }
    if !damaged {
        let all = all.expect("undamaged select");
        assert_eq!(all.len(), written.len());
        for (got, want) in all.iter().zip(written) {
            assert_eq!(got.labels, want.labels);
            let got: Vec<u8> = got.chunks.iter().flat_map(|c| c.data.clone()).collect();
            let want: Vec<u8> = want.chunks.iter().flat_map(|c| c.data.clone()).collect();
            assert_eq!(got, want, "chunks changed on the way through a block");
        }
    }
}
