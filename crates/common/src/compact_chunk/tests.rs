use proptest::prelude::*;

use super::*;

/// Prometheus' stale marker, a NaN with a specific payload.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// Encodes, decodes, checks the bits, and returns the chunk.
fn round_trip(samples: &[(i64, f64)]) -> Vec<u8> {
    let bytes = encode(samples);
    let decoded = decode(&bytes).expect("decodes");
    assert_eq!(bits(&decoded), bits(samples));
    bytes
}

fn xor_len(samples: &[(i64, f64)]) -> usize {
    let mut app = chunk::XorAppender::new();
    for &(t, v) in samples {
        app.append(t, v);
    }
    app.bytes().len()
}

fn time_layout(bytes: &[u8]) -> u8 {
    bytes[0] >> 4
}

fn value_layout(bytes: &[u8]) -> u8 {
    bytes[0] & 0x0f
}

/// 120 samples every 15 s from a realistic millisecond timestamp.
fn regular(mut values: impl FnMut(i64) -> f64) -> Vec<(i64, f64)> {
    (0..120)
        .map(|i| (1_700_000_000_000 + i * 15_000, values(i)))
        .collect()
}

#[test]
fn empty_and_single_samples() {
    assert_eq!(encode(&[]), vec![0, 0]);
    assert_eq!(decode(&[0, 0]).expect("decodes"), vec![]);
    round_trip(&[(42, 1.5)]);
    round_trip(&[(i64::MIN, f64::from_bits(STALE_NAN_BITS))]);
    round_trip(&[(-1, -0.0)]);
}

#[test]
fn regular_counter_takes_the_integer_path() {
    // Packets: whole numbers growing by a varying rate.
    let samples = regular(|i| 4_000_000.0 + (i * 37 + (i * i) % 11) as f64);
    let bytes = round_trip(&samples);
    assert_eq!(time_layout(&bytes), TIME_PACKED);
    assert_eq!(value_layout(&bytes), VALUE_DIVIDE);
    // Regular timestamps cost nothing: a width byte of zero after the base.
    assert!(
        bytes.len() * 3 < xor_len(&samples),
        "{} bytes vs {} for xor",
        bytes.len(),
        xor_len(&samples)
    );
}

#[test]
fn decimal_gauge_is_scaled_to_integers() {
    // As parsed from text: "0.37", "0.41", … are m / 100.
    let samples = regular(|i| ((37 + (i * 7) % 23) as f64) / 100.0);
    let bytes = round_trip(&samples);
    assert_eq!(value_layout(&bytes), VALUE_DIVIDE);
    // The scale byte right after the 11 bytes of header and time section.
    let scale_byte = bytes[1 + 1 + 6 + 2 + 1];
    assert_eq!(scale_byte & 0x1f, 2, "k = 2");
    assert!(bytes.len() * 3 < xor_len(&samples));
}

#[test]
fn multiplied_quanta_use_the_multiply_scale() {
    // round(v / 0.01) * 0.01 is not always the decimal m / 100.
    let ms: Vec<i64> = (0..120).map(|i| 1_234_567 + i * 1_733).collect();
    let differs = ms
        .iter()
        .any(|&m| (m as f64 * 0.01).to_bits() != (m as f64 / 100.0).to_bits());
    assert!(differs, "the test needs values where the two differ");
    let samples: Vec<(i64, f64)> = ms
        .iter()
        .enumerate()
        .map(|(i, &m)| (i as i64 * 15_000, m as f64 * 0.01))
        .collect();
    let bytes = round_trip(&samples);
    assert_eq!(value_layout(&bytes), VALUE_MULTIPLY);
    assert!(bytes.len() * 2 < xor_len(&samples));
}

/// A xorshift generator of uniform floats in [0, 1).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn random_floats_that_repeat_fall_back_to_xor() {
    // A float with all its mantissa bits, changing every 10th scrape: XOR
    // spends one bit on a repeat, integer packing a full width.
    let mut next = uniform(0x1234_5678_9abc_def0);
    let mut current = 0.0;
    let samples = regular(|i| {
        if i % 10 == 0 {
            current = next() * 0.08;
        }
        current
    });
    let bytes = round_trip(&samples);
    assert_eq!(value_layout(&bytes), VALUE_XOR);
    // Same value bits as Prometheus' XOR; timestamps cheaper.
    assert!(bytes.len() < xor_len(&samples));
}

#[test]
fn slowly_moving_floats_pack_their_bit_patterns() {
    // node_time_seconds: the scrape time in seconds plus a random delay.
    let mut next = uniform(42);
    let samples = regular(|i| 1_750_000_000.0 + i as f64 * 15.0 + 0.001 + next() * 0.019);
    let bytes = round_trip(&samples);
    assert_eq!(value_layout(&bytes), VALUE_BITS);
    assert!(
        bytes.len() * 10 < xor_len(&samples) * 7,
        "{} bytes vs {} for xor",
        bytes.len(),
        xor_len(&samples)
    );
    // Uniformly random floats: never worse than XOR by more than a header.
    let mut next = uniform(7);
    let samples = regular(|_| next() * 0.08);
    let bytes = round_trip(&samples);
    assert!(bytes.len() <= xor_len(&samples));
}

#[test]
fn constants_are_tiny() {
    let huge = regular(|_| 9.223_372_036_854_776e18);
    let bytes = round_trip(&huge);
    assert_eq!(value_layout(&bytes), VALUE_CONST);
    let ones = regular(|_| 1.0);
    let bytes = round_trip(&ones);
    assert_eq!(value_layout(&bytes), VALUE_CONST);
    assert!(bytes.len() <= 13, "{} bytes", bytes.len());
}

#[test]
fn stale_marker_is_an_exception_not_a_fallback() {
    let mut samples = regular(|i| 100.0 + i as f64);
    samples[119].1 = f64::from_bits(STALE_NAN_BITS);
    samples[50].1 = -0.0;
    samples[0].1 = f64::INFINITY;
    let bytes = round_trip(&samples);
    assert_eq!(value_layout(&bytes), VALUE_DIVIDE);
    let decoded = decode(&bytes).expect("decodes");
    assert_eq!(decoded[119].1.to_bits(), STALE_NAN_BITS);
    assert_eq!(decoded[50].1.to_bits(), (-0.0f64).to_bits());
}

#[test]
fn a_missed_scrape_is_a_timestamp_exception() {
    let mut samples = regular(|_| 1.0);
    samples.remove(60);
    let bytes = round_trip(&samples);
    assert_eq!(time_layout(&bytes), TIME_PATCHED);
    // The exception count, then one exception: a few bytes.
    let regular_len = encode(&regular(|_| 1.0)).len();
    assert!(bytes.len() <= regular_len + 5, "{} bytes", bytes.len());
    // Jitter everywhere packs a few bits per sample instead.
    let jitter = |samples: Vec<(i64, f64)>| -> Vec<(i64, f64)> {
        samples
            .into_iter()
            .enumerate()
            .map(|(i, (t, v))| (t + (i as i64 * 7919) % 5, v))
            .collect()
    };
    let jittered = jitter(regular(|_| 1.0));
    let jittered_len = round_trip(&jittered).len();
    assert_eq!(time_layout(&encode(&jittered)), TIME_PACKED);
    // Jitter and a missed scrape: still a few bits per sample, plus the gap.
    let mut both = jitter(regular(|_| 1.0));
    both.remove(60);
    let bytes = round_trip(&both);
    assert_eq!(time_layout(&bytes), TIME_PATCHED);
    assert!(
        bytes.len() <= jittered_len + 6,
        "{} bytes vs {jittered_len}",
        bytes.len()
    );
}

#[test]
fn special_values_keep_their_bits() {
    let specials = [
        f64::NAN,
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(0xfff8_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::MAX,
        f64::MIN,
        1e300,
        -1e-300,
        0.1 + 0.2,
    ];
    let samples: Vec<(i64, f64)> = specials
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as i64, v))
        .collect();
    round_trip(&samples);
    // Each special amid integers.
    for &special in &specials {
        let mut samples = regular(|i| i as f64 * 0.5);
        samples[7].1 = special;
        round_trip(&samples);
    }
}

#[test]
fn extreme_and_unsorted_timestamps() {
    round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
    round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
    round_trip(&[(i64::MAX, 1.0), (i64::MIN, 2.0), (5, 3.0), (-5, 4.0)]);
    round_trip(&[(-5_000, 1.0), (-4_000, 2.0), (-1, 3.0), (0, 4.0), (7, 5.0)]);
    round_trip(&[(0, 1.0), (0, 1.0), (0, 1.0)]);
    let gaps: Vec<(i64, f64)> = (0..200)
        .map(|i| (i * i * i * 1_000_000_007, i as f64))
        .collect();
    round_trip(&gaps);
}

#[test]
fn largest_chunk_round_trips() {
    let samples: Vec<(i64, f64)> = (0..MAX_SAMPLES as i64)
        .map(|i| (i * 15_000, (i % 1000) as f64 / 10.0))
        .collect();
    round_trip(&samples);
}

#[test]
#[should_panic(expected = "at most 65535 samples")]
fn encoding_too_many_samples_panics() {
    let samples = vec![(0i64, 0.0f64); MAX_SAMPLES + 1];
    encode(&samples);
}

fn sample_chunks() -> Vec<Vec<u8>> {
    let mut missed = regular(|i| i as f64 * 0.25);
    missed.remove(3);
    let mut stale = regular(|i| 1e6 + i as f64);
    stale[10].1 = f64::from_bits(STALE_NAN_BITS);
    vec![
        encode(&regular(|i| 1000.0 + i as f64)),
        encode(&regular(|i| (i as f64).sqrt())),
        encode(&regular(|_| 7.0)),
        encode(&regular(|_| f64::NAN)),
        encode(&missed),
        encode(&stale),
        encode(&[(i64::MIN, 1.0), (i64::MAX, -1.0), (3, 0.5)]),
    ]
}

#[test]
fn every_truncation_is_an_error() {
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
    for bytes in sample_chunks() {
        decode(&bytes).expect("the intact chunk decodes");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} of {bytes:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(corrupt("trailing bytes after the last section"))
        );
    }
}

#[test]
fn flipped_bits_never_panic() {
    for bytes in sample_chunks() {
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                let mut out = vec![(1, 1.0)];
                match decode_into(&damaged, &mut out) {
                    Ok(()) => assert!(out.len() <= 1 + MAX_SAMPLES),
                    Err(_) => assert_eq!(out, vec![(1, 1.0)], "out restored"),
                }
            }
        }
    }
}

#[test]
fn damaged_headers_are_refused() {
    assert_eq!(
        decode(&[0x25, 0]),
        Err(DecodeError::UnknownLayout { tag: 0x25 })
    );
    // A count above 65535 is refused before anything is reserved.
    assert_eq!(
        decode(&[0, 0x80, 0x80, 0x04]),
        Err(corrupt("sample count above 65535"))
    );
    // 65535 samples claimed, nothing behind them.
    assert_eq!(decode(&[0, 0xff, 0xff, 0x03]), Err(truncated("timestamps")));
    // A width above 64.
    assert_eq!(
        decode(&[0, 2, 0, 0, 65]),
        Err(corrupt("bit width above 64"))
    );
}

#[test]
fn decode_into_appends() {
    let a = regular(|i| i as f64);
    let b = regular(|i| -(i as f64) / 8.0);
    let mut out = Vec::new();
    decode_into(&encode(&a), &mut out).expect("decodes");
    decode_into(&encode(&b), &mut out).expect("decodes");
    let expected: Vec<(i64, f64)> = a.iter().chain(&b).copied().collect();
    assert_eq!(bits(&out), bits(&expected));
}

#[test]
fn decode_any_dispatches_on_the_encoding() {
    let samples = regular(|i| (i as f64).ln_1p());
    let xor = chunk::encode_all(&samples).remove(0);
    let mut out = Vec::new();
    decode_any(XOR_CHUNK_ENCODING, &xor, &mut out).expect("xor decodes");
    decode_any(COMPACT_CHUNK_ENCODING, &encode(&samples), &mut out).expect("compact decodes");
    let twice: Vec<(i64, f64)> = samples.iter().chain(&samples).copied().collect();
    assert_eq!(bits(&out), bits(&twice));
    assert_eq!(
        decode_any(2, &xor, &mut out),
        Err(DecodeError::UnsupportedEncoding { encoding: 2 })
    );
    assert!(matches!(
        decode_any(XOR_CHUNK_ENCODING, &xor[..xor.len() - 3], &mut out),
        Err(DecodeError::Xor(_))
    ));
    assert_eq!(out.len(), twice.len(), "failed decodes append nothing");
}

/// Timestamps: regular steps with jitter, irregular gaps, huge jumps, and
/// sometimes arbitrary (unsorted) values.
fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    let step = prop_oneof![
        6 => Just(15_000i64),
        3 => 1i64..100_000,
        3 => 14_990i64..15_010,
        1 => 0i64..(1 << 40),
        1 => 1i64..i64::MAX / 300,
    ];
    let sorted = (any::<i64>(), prop::collection::vec(step, 0..300)).prop_map(|(start, steps)| {
        let mut t = start / 2;
        let mut out = vec![t];
        for s in steps {
            match t.checked_add(s) {
                Some(next) => {
                    t = next;
                    out.push(t);
                }
                None => break,
            }
        }
        out
    });
    prop_oneof![
        8 => sorted,
        1 => prop::collection::vec(any::<i64>(), 0..50),
    ]
}

/// Values: any bits, decimals, integers, specials, and runs of one value.
fn values() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        3 => (-100_000i64..100_000, 0usize..4).prop_map(|(m, k)| m as f64 / POW10[k]),
        2 => (0i64..1 << 50, 0usize..10).prop_map(|(m, k)| m as f64 * INV_POW10[k]),
        2 => (0i32..100).prop_map(f64::from),
        1 => Just(f64::from_bits(STALE_NAN_BITS)),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
    ]
}

/// Whole-chunk value shapes: monotonic counters with rare specials, or any mix.
fn value_runs() -> impl Strategy<Value = Vec<f64>> {
    let counter = (
        0u64..1 << 40,
        prop::collection::vec((0u64..5000, 0u8..40), 300),
        0usize..5,
    )
        .prop_map(|(start, steps, k)| {
            let mut m = start;
            steps
                .into_iter()
                .map(|(step, special)| {
                    m += step;
                    match special {
                        0 => f64::from_bits(STALE_NAN_BITS),
                        1 => -0.0,
                        _ => m as f64 / POW10[k],
                    }
                })
                .collect()
        });
    prop_oneof![
        1 => counter,
        1 => prop::collection::vec(values(), 300),
    ]
}

proptest! {
    #[test]
    fn round_trip_is_bit_exact(ts in timestamps(), vs in value_runs()) {
        let samples: Vec<(i64, f64)> = ts.iter().zip(&vs).map(|(&t, &v)| (t, v)).collect();
        let bytes = encode(&samples);
        let decoded = decode(&bytes).expect("decodes");
        prop_assert_eq!(bits(&decoded), bits(&samples));
        let mut out = vec![(7, 7.0)];
        decode_any(COMPACT_CHUNK_ENCODING, &bytes, &mut out).expect("decodes");
        prop_assert_eq!(bits(&out[1..]), bits(&samples));
    }

    #[test]
    fn never_larger_than_xor_plus_a_few_bytes(ts in timestamps(), vs in value_runs()) {
        let samples: Vec<(i64, f64)> = ts.iter().zip(&vs).map(|(&t, &v)| (t, v)).collect();
        prop_assert!(encode(&samples).len() <= xor_len(&samples) + 12);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let mut out = Vec::new();
        if decode_into(&bytes, &mut out).is_err() {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn damaged_chunks_never_panic(
        ts in timestamps(),
        vs in value_runs(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let samples: Vec<(i64, f64)> = ts.iter().zip(&vs).map(|(&t, &v)| (t, v)).collect();
        let mut bytes = encode(&samples);
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let _ = decode(&bytes);
        let _ = decode(&bytes[..cut.index(bytes.len() + 1)]);
    }
}

#[test]
fn sample_count_reads_the_header_only() {
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 15_000, i as f64 * 0.5)).collect();
    let bytes = encode(&samples);
    assert_eq!(sample_count(&bytes), Ok(300));
    // Damage after the header does not matter to the count; an empty chunk is an error.
    assert_eq!(sample_count(&bytes[..4]), Ok(300));
    assert!(sample_count(&[]).is_err());
}
