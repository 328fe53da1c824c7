//! Tests of the WAL record formats.

use super::*;
use strata_proto::wal::{SamplesRecord, wal_record};

fn samples(n: usize) -> WalRecord {
    WalRecord {
        record: Some(wal_record::Record::Samples(SamplesRecord {
            series_ids: (0..n as u32).collect(),
            timestamps_ms: vec![1_700_000_000_000; n],
            value_bits: (0..n).map(|i| (i as f64).to_bits()).collect(),
        })),
    }
}

#[test]
fn round_trips_small_and_large_records() {
    for n in [0, 1, 5, 2000] {
        let record = samples(n);
        assert_eq!(decode(&encode(&record)).expect("decodes"), record);
    }
}

#[test]
fn large_batches_are_compressed() {
    let record = samples(2000);
    let encoded = encode(&record);
    assert_eq!(encoded[0], SNAPPY);
    assert!(
        encoded.len() < record.encode_to_vec().len() * 3 / 4,
        "{}",
        encoded.len()
    );
}

#[test]
fn damage_is_an_error_not_a_panic() {
    assert!(decode(&[]).is_err());
    assert!(decode(&[7, 1, 2]).is_err());
    assert!(decode(&[SNAPPY, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
}

mod predicted {
    use super::super::*;
    use proptest::prelude::*;
    use strata_proto::wal::SamplesRecord;

    const STALE: u64 = 0x7ff0_0000_0000_0002;

    type Row = (u32, i64, u64);

    fn record(rows: &[Row]) -> SamplesRecord {
        SamplesRecord {
            series_ids: rows.iter().map(|r| r.0).collect(),
            timestamps_ms: rows.iter().map(|r| r.1).collect(),
            value_bits: rows.iter().map(|r| r.2).collect(),
        }
    }

    /// What a record decodes to: its rows stably sorted by series id.
    fn sorted(rows: &[Row]) -> SamplesRecord {
        let mut rows = rows.to_vec();
        rows.sort_by_key(|r| r.0);
        record(&rows)
    }

    fn decoded_samples(codec: &mut SegmentCodec, segment: u64, payload: &[u8]) -> SamplesRecord {
        match codec.decode(segment, payload).expect("decodes").record {
            Some(wal_record::Record::Samples(samples)) => samples,
            other => panic!("not a samples record: {other:?}"),
        }
    }

    fn special_bits() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(STALE),
            Just(f64::NAN.to_bits()),
            Just(0x7ff8_0000_0000_0001),
            Just(0xfff8_dead_beef_0001),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just(0),
            Just((-0.0f64).to_bits()),
            Just(f64::MAX.to_bits()),
            Just(f64::MIN_POSITIVE.to_bits()),
            Just(1),
            Just(u64::MAX),
            any::<u64>(),
            (0u32..100_000).prop_map(|v| f64::from(v).to_bits()),
            (0u32..1000).prop_map(|v| (f64::from(v) / 100.0).to_bits()),
        ]
    }

    fn timestamp() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(-1),
            any::<i64>(),
            (0i64..1_000).prop_map(|i| 1_700_000_000_000 + i * 15_000),
            (0i64..1_000_000).prop_map(|i| 1_700_000_000_000 + i),
        ]
    }

    fn series_id() -> impl Strategy<Value = u32> {
        prop_oneof![
            8 => 0u32..64,
            1 => 0u32..100_000,
            1 => Just(u32::MAX),
            1 => (1u32 << 22)..u32::MAX,
        ]
    }

    fn rows(max: usize) -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec((series_id(), timestamp(), special_bits()), 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Records of a segment decode bit-exact, in order, with series
        /// appearing in any record; a second segment decodes on its own.
        #[test]
        fn records_of_segments_round_trip(
            first in prop::collection::vec(rows(40), 1..8),
            second in prop::collection::vec(rows(40), 1..8),
        ) {
            let mut writer = SegmentCodec::new();
            let mut payloads = Vec::new();
            for rows in &first {
                payloads.push((7, writer.encode_samples(7, &record(rows))));
            }
            for rows in &second {
                payloads.push((8, writer.encode_samples(8, &record(rows))));
            }
            let expected: Vec<SamplesRecord> =
                first.iter().chain(&second).map(|r| sorted(r)).collect();

            let mut reader = SegmentCodec::new();
            for ((segment, payload), want) in payloads.iter().zip(&expected) {
                prop_assert_eq!(&decoded_samples(&mut reader, *segment, payload), want);
            }
            // The second segment alone, as after truncating the first.
            let mut alone = SegmentCodec::new();
            for ((segment, payload), want) in payloads.iter().zip(&expected).skip(first.len()) {
                prop_assert_eq!(&decoded_samples(&mut alone, *segment, payload), want);
            }
        }

        /// Regular series over many records: every sample comes back.
        #[test]
        fn many_series_many_records_round_trip(
            series in 1u32..3000,
            rounds in 1usize..12,
            per_record in 1usize..700,
            seed in any::<u64>(),
        ) {
            let mut all = Vec::new();
            let mut state = seed | 1;
            for round in 0..rounds {
                for id in 0..series {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let t = 1_700_000_000_000 + round as i64 * 15_000 + (state % 3) as i64;
                    let value = match id % 4 {
                        0 => f64::from(id).to_bits(),
                        1 => ((round as f64) * 1024.0 + f64::from(id)).to_bits(),
                        2 => (state as f64 / 7.0).to_bits(),
                        _ => if state % 5 == 0 { STALE } else { (state % 100).to_string().parse::<f64>().unwrap_or(0.0).to_bits() },
                    };
                    all.push((id, t, value));
                }
            }
            let mut writer = SegmentCodec::new();
            let mut reader = SegmentCodec::new();
            for rows in all.chunks(per_record) {
                let payload = writer.encode_samples(1, &record(rows));
                prop_assert_eq!(decoded_samples(&mut reader, 1, &payload), sorted(rows));
            }
        }

        /// Damaged payloads are errors or some record, never a panic.
        #[test]
        fn damage_never_panics(
            rows in prop::collection::vec(rows(30), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut writer = SegmentCodec::new();
            let payloads: Vec<Vec<u8>> =
                rows.iter().map(|r| writer.encode_samples(1, &record(r))).collect();
            let mut reader = SegmentCodec::new();
            for payload in &payloads {
                let mut damaged = payload.clone();
                let at = flip.index(damaged.len());
                if at > 0 {
                    damaged[at] ^= 1 << bit;
                }
                let _ = reader.decode(1, &damaged);
                let _ = reader.decode(1, &payload[..cut.index(payload.len() + 1)]);
                let _ = decode(&damaged);
            }
        }
    }

    #[test]
    fn stale_markers_and_nan_payloads_are_bit_exact() {
        let rows: Vec<Row> = [STALE, 1.0f64.to_bits(), STALE, 0x7ff8_0000_0000_0001, STALE]
            .iter()
            .enumerate()
            .map(|(i, bits)| (3, 1000 + i as i64 * 15_000, *bits))
            .collect();
        let mut writer = SegmentCodec::new();
        let mut reader = SegmentCodec::new();
        // One sample per record, so each one is predicted from the last.
        for row in &rows {
            let payload = writer.encode_samples(1, &record(&[*row]));
            assert_eq!(decoded_samples(&mut reader, 1, &payload), record(&[*row]));
        }
    }

    #[test]
    fn predicted_records_are_small() {
        // 2000 counters and gauges over 20 scrapes, 500 samples a record:
        // regular timestamps and slowly moving values cost a few bits.
        let mut writer = SegmentCodec::new();
        let mut bytes = 0;
        let mut samples = 0;
        for round in 0..20i64 {
            let rows: Vec<Row> = (0..2000u32)
                .map(|id| {
                    let value = if id % 2 == 0 {
                        (f64::from(id) * 1e6 + round as f64 * f64::from(id % 97)).to_bits()
                    } else {
                        f64::from(id % 13).to_bits()
                    };
                    (id, 1_700_000_000_000 + round * 15_000, value)
                })
                .collect();
            for chunk in rows.chunks(500) {
                bytes += writer.encode_samples(1, &record(chunk)).len();
                samples += chunk.len();
            }
        }
        // The first round pays full values (a twentieth of the samples);
        // without prediction this would be over 9 bytes.
        let per_sample = bytes as f64 / samples as f64;
        assert!(per_sample < 2.2, "{per_sample} bytes per sample");
    }

    #[test]
    fn a_new_segment_forgets_the_previous_predictions() {
        let rows: Vec<Row> = vec![(1, 1000, 5.0f64.to_bits()), (2, 1000, 6.0f64.to_bits())];
        let mut writer = SegmentCodec::new();
        let first = writer.encode_samples(1, &record(&rows));
        let predicted = writer.encode_samples(1, &record(&rows));
        let fresh = writer.encode_samples(2, &record(&rows));
        assert!(predicted.len() < first.len());
        assert_eq!(fresh, first);
        // Decoding a predicted record as the first of a segment is wrong
        // data or an error, which is why replay tracks segments.
        assert_ne!(decode(&predicted).ok(), decode(&first).ok());
    }

    #[test]
    fn old_formats_still_decode_through_the_segment_codec() {
        let old = WalRecord {
            record: Some(wal_record::Record::Samples(record(&[
                (4, 10, STALE),
                (1, 5, 2),
            ]))),
        };
        for payload in [encode(&old), {
            let mut raw = vec![0u8];
            raw.extend(old.encode_to_vec());
            raw
        }] {
            let mut reader = SegmentCodec::new();
            assert_eq!(reader.decode(1, &payload).expect("decodes"), old);
        }
    }
}

#[test]
fn series_records_encode_as_their_whole_message() {
    use strata_common::labels::label;
    use strata_proto::wal::SeriesRecord;
    for n in [1, 3, 500] {
        let entries: Vec<SeriesEntry> = (0..n)
            .map(|i| SeriesEntry {
                id: i * 1000,
                labels: vec![label("__name__", "up"), label("instance", &format!("h{i}"))],
            })
            .collect();
        let whole = WalRecord {
            record: Some(wal_record::Record::Series(SeriesRecord {
                entries: entries.clone(),
            })),
        };
        assert_eq!(encode_series(&entries), encode(&whole), "{n} entries");
    }
}
