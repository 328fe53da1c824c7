use super::*;
use crate::chunk;
use strata_common::labels::label;

fn cache() -> BlockCache {
    BlockCache::new(1 << 20, Counter::default(), Counter::default())
}

fn xor(samples: &[(i64, f64)]) -> BlockChunk {
    let mut encoded = chunk::encode_all(samples);
    assert_eq!(encoded.len(), 1, "test chunks hold at most 120 samples");
    BlockChunk {
        min_time: samples[0].0,
        max_time: samples[samples.len() - 1].0,
        encoding: ENCODING_XOR,
        samples: samples.len() as u32,
        data: encoded.remove(0),
    }
}

fn series(name: &str, job: &str, chunks: Vec<BlockChunk>) -> BlockSeries {
    BlockSeries {
        labels: vec![label("__name__", name), label("job", job)],
        chunks,
    }
}

/// a{job=api}: 0..100 s; a{job=web}: 50..150 s; b{job=api}: histograms at 10 s, 20 s.
fn write_test_block(dir: &Path) -> BlockMeta {
    let samples = |from: i64, n: i64| -> Vec<(i64, f64)> {
        (0..n).map(|i| ((from + i) * 1000, i as f64)).collect()
    };
    let histograms: Vec<Histogram> = [10_000, 20_000]
        .iter()
        .map(|t| Histogram {
            timestamp: *t,
            schema: 3,
            ..Default::default()
        })
        .collect();
    let mut writer = BlockWriter::new(dir, "01TESTBLOCK".to_owned()).expect("writer");
    writer
        .add_series(series("a", "api", vec![xor(&samples(0, 100))]))
        .expect("add");
    writer
        .add_series(series("a", "web", vec![xor(&samples(50, 100))]))
        .expect("add");
    writer
        .add_series(series(
            "b",
            "api",
            vec![BlockChunk {
                min_time: 10_000,
                max_time: 20_000,
                encoding: ENCODING_HISTOGRAMS,
                samples: 2,
                data: encode_histograms(&histograms),
            }],
        ))
        .expect("add");
    writer
        .finish(1, Vec::new(), Vec::new())
        .expect("finish")
        .expect("block has data")
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).expect("matcher")
}

#[test]
fn a_written_block_reads_back_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = write_test_block(dir.path());
    assert_eq!((meta.min_time, meta.max_time), (0, 149_001));
    assert_eq!(meta.stats.num_series, 3);
    assert_eq!(meta.stats.num_samples, 200);
    assert_eq!(meta.stats.num_histograms, 2);
    let block = Block::open(&dir.path().join("01TESTBLOCK")).expect("open");
    assert_eq!(block.meta(), &meta);
    assert_eq!(block.verify().expect("verify"), 3);

    let cache = cache();
    let selected = block
        .select(&[m(MatchOp::Equal, "__name__", "a")], 0, i64::MAX, &cache)
        .expect("select");
    assert_eq!(selected.len(), 2);
    assert_eq!(selected[1].labels[1].value, "web");
    let decoded = chunk::decode(&selected[1].chunks[0].data).expect("decode");
    assert_eq!(decoded.len(), 100);
    assert_eq!(decoded[0], (50_000, 0.0));

    // Trimmed to the range, histograms too.
    let trimmed = block
        .select(&[m(MatchOp::Equal, "job", "api")], 15_000, 60_000, &cache)
        .expect("select");
    assert_eq!(trimmed.len(), 2);
    let decoded = chunk::decode(&trimmed[0].chunks[0].data).expect("decode");
    assert_eq!(decoded.first().map(|s| s.0), Some(15_000));
    assert_eq!(decoded.last().map(|s| s.0), Some(60_000));
    assert_eq!(trimmed[1].histograms.len(), 1);
    assert_eq!(trimmed[1].histograms[0].timestamp, 20_000);
    assert_eq!(trimmed[1].histograms[0].schema, 3);
}

#[test]
fn postings_follow_prometheus_matcher_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_test_block(dir.path());
    let block = Block::open(&dir.path().join("01TESTBLOCK")).expect("open");
    let cache = cache();
    let ids = |matchers: &[Matcher]| -> Vec<u32> {
        block
            .matching(matchers, &cache)
            .expect("matching")
            .iter()
            .collect()
    };
    assert_eq!(ids(&[]), vec![0, 1, 2]);
    assert_eq!(ids(&[m(MatchOp::Equal, "job", "api")]), vec![0, 2]);
    assert_eq!(ids(&[m(MatchOp::NotEqual, "job", "api")]), vec![1]);
    assert_eq!(
        ids(&[m(MatchOp::RegexMatch, "job", "a.*|w.b")]),
        vec![0, 1, 2]
    );
    assert_eq!(ids(&[m(MatchOp::RegexNoMatch, "__name__", "a")]), vec![2]);
    assert_eq!(ids(&[m(MatchOp::Equal, "missing", "")]), vec![0, 1, 2]);
    assert!(ids(&[m(MatchOp::Equal, "missing", "x")]).is_empty());
    // Decoded series entries are cached too: a repeated select hits.
    let (hits_before, _) = cache.counts();
    block.select(&[], 0, 60_000, &cache).expect("select");
    let (hits_mid, _) = cache.counts();
    block.select(&[], 0, 60_000, &cache).expect("select");
    assert!(
        cache.counts().0 >= hits_mid + 3,
        "{hits_before} {hits_mid} {:?}",
        cache.counts()
    );
    // The second lookup of a matcher is a cache hit.
    let (hits_before, _) = cache.counts();
    ids(&[m(MatchOp::Equal, "job", "api")]);
    assert!(cache.counts().0 > hits_before);

    let all = block.matching(&[], &cache).expect("all");
    assert_eq!(
        block.label_names(&all).expect("names"),
        vec!["__name__", "job"]
    );
    let web: RoaringBitmap = [1u32].into_iter().collect();
    assert_eq!(
        block.label_values("job", &web).expect("values"),
        vec!["web"]
    );
    assert_eq!(
        block.label_values("job", &all).expect("values"),
        vec!["api", "web"]
    );
    // A time range cutting the block filters series by their chunks.
    let late = block
        .matching_any(&[], 120_000, 200_000, &cache)
        .expect("late");
    assert_eq!(late.iter().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn damage_is_detected_by_checksums() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_test_block(dir.path());
    let block_dir = dir.path().join("01TESTBLOCK");
    // A flipped byte in a chunk: open succeeds (chunks are checked when
    // read), verify and selection fail.
    let segment = block_dir.join("chunks").join(segment_name(1));
    let mut bytes = fs::read(&segment).expect("read");
    bytes[20] ^= 0x10;
    fs::write(&segment, &bytes).expect("write");
    let block = Block::open(&block_dir).expect("open");
    assert!(matches!(block.verify(), Err(BlockError::Damaged { .. })));
    assert!(block.select(&[], 0, i64::MAX, &cache()).is_err());

    // Any flipped byte of the index: open fails.
    let index = fs::read(block_dir.join("index")).expect("read");
    for at in (0..index.len()).step_by(7) {
        let mut damaged = index.clone();
        damaged[at] ^= 0x01;
        fs::write(block_dir.join("index"), &damaged).expect("write");
        assert!(
            Block::open(&block_dir).is_err(),
            "flip at {at} went unnoticed"
        );
    }
    fs::write(block_dir.join("index"), &index[..index.len() / 2]).expect("truncate");
    assert!(Block::open(&block_dir).is_err());
}

#[test]
fn series_must_come_in_label_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = BlockWriter::new(dir.path(), "01X".to_owned()).expect("writer");
    writer
        .add_series(series("b", "x", vec![xor(&[(1, 1.0)])]))
        .expect("first");
    assert!(
        writer
            .add_series(series("a", "x", vec![xor(&[(1, 1.0)])]))
            .is_err()
    );
    let empty = BlockWriter::new(dir.path(), "01Y".to_owned()).expect("writer");
    assert_eq!(
        empty.finish(1, Vec::new(), Vec::new()).expect("finish"),
        None
    );
    assert!(!dir.path().join("01Y").exists() && !dir.path().join("01Y.tmp").exists());
}

mod damage {
    use super::*;
    use proptest::prelude::*;

    /// Opens, verifies and reads a block; any outcome but a panic is fine.
    fn read_everything(dir: &Path) {
        let Ok(block) = Block::open(dir) else {
            return;
        };
        let _ = block.verify();
        let cache = cache();
        let _ = block.select(&[], i64::MIN, i64::MAX, &cache);
        let _ = block.select(
            &[m(MatchOp::RegexMatch, "job", "a.*")],
            20_000,
            60_000,
            &cache,
        );
        if let Ok(ids) = block.matching_any(&[], i64::MIN, i64::MAX, &cache) {
            let _ = block.label_names(&ids);
            let _ = block.label_values("job", &ids);
        }
        for series in block.all_series() {
            let _ = series;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Flipped, truncated or extended files give errors, never a panic
        /// or an out-of-bounds read.
        #[test]
        fn damaged_blocks_never_panic(
            file in 0usize..3,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            write_test_block(dir.path());
            let block_dir = dir.path().join("01TESTBLOCK");
            let path = match file {
                0 => block_dir.join("index"),
                1 => block_dir.join("chunks").join(segment_name(1)),
                _ => block_dir.join("meta.json"),
            };
            let mut bytes = fs::read(&path).expect("read");
            for (at, mask) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            fs::write(&path, &bytes).expect("write");
            read_everything(&block_dir);
        }
    }
}
