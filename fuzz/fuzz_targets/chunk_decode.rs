//! The XOR chunk codec (`strata_common::chunk`), which remote read ships
//! to Prometheus as is and the store decodes on every read.
//!
//! Each input is used twice:
//! * as chunk bytes: `decode` and `iter` never panic, agree with each
//!   other, and whatever decodes re-encodes (wrapping time arithmetic
//!   makes any timestamp sequence encodable) to the same samples, bit for
//!   bit;
//! * as a description of samples with strictly increasing timestamps (see
//!   `samples`): `XorAppender` then `decode` round-trips them bit-exactly,
//!   NaN payloads and stale markers included, and `encode_all` cuts the
//!   same samples into chunks of at most `SAMPLES_PER_CHUNK`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::chunk::{self, SAMPLES_PER_CHUNK, XorAppender};

fuzz_target!(|data: &[u8]| {
    decode_bytes(data);
    round_trip(&samples(data));
});

fn decode_bytes(data: &[u8]) {
    let decoded = chunk::decode(data);
    let mut iter = chunk::iter(data);
    let total = iter.total();
    let lazily: Vec<_> = iter.by_ref().collect();
    assert!(iter.next().is_none(), "iterator resumed after its end");
    match (&decoded, lazily.last()) {
        (Ok(samples), _) => {
            assert_eq!(
                samples.len(),
                total,
                "decoded count differs from the header"
            );
            assert_eq!(lazily.len(), total);
            assert!(lazily.iter().all(Result::is_ok));
            round_trip_any(samples);
        }
        (Err(error), Some(Err(last))) => assert_eq!(error, last, "decode and iter disagree"),
        (Err(error), _) => panic!("decode failed ({error}) but iter did not"),
    }
}

/// Any decoded sequence is re-encodable and decodes back bit-exactly.
fn round_trip_any(samples: &[(i64, f64)]) {
    let mut appender = XorAppender::new();
    for &(t, v) in samples {
        appender.append(t, v);
    }
    let again = chunk::decode(appender.bytes()).expect("re-encoded chunk decodes");
    assert_same(samples, &again);
}

/// Samples described by the input: 8 bytes of start time, then per sample a
/// selector byte and value bits. The selector's low bits choose the size of
/// the step to the next timestamp, so every delta-of-delta bucket occurs;
/// its high bits choose the value: a repeat, a stale marker, a NaN with a
/// payload, ±Inf, or raw bits from the input.
fn samples(data: &[u8]) -> Vec<(i64, f64)> {
    let mut bytes = data.iter().copied();
    // Big-endian bits from the next n bytes, zeros once the input runs out.
    let take = |bytes: &mut std::iter::Copied<std::slice::Iter<'_, u8>>, n: usize| -> u64 {
        (0..n).fold(0u64, |acc, _| {
            (acc << 8) | u64::from(bytes.next().unwrap_or(0))
        })
    };
    let mut t = take(&mut bytes, 8) as i64;
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut previous = 0.0f64;
    while out.len() < 3 * SAMPLES_PER_CHUNK {
        let Some(selector) = bytes.next() else {
            break;
        };
        let v = match selector >> 4 {
            0 => previous,
            1 => f64::from_bits(strata_proto::STALE_NAN_BITS),
            2 => f64::from_bits(0x7ff8_0000_0000_0000 | take(&mut bytes, 2)),
            3 => f64::INFINITY,
            4 => f64::NEG_INFINITY,
            5 => take(&mut bytes, 1) as f64,
            _ => f64::from_bits(take(&mut bytes, 8)),
        };
        previous = v;
        if !out.is_empty() {
            let step = match selector & 0x7 {
                0 | 1 => 15_000,
                2 => 1 + take(&mut bytes, 1),
                3 => 1 + take(&mut bytes, 2),
                4 => 1 + take(&mut bytes, 3),
                5 => 1 + take(&mut bytes, 4),
                _ => 1 + (take(&mut bytes, 8) >> 1),
            };
            let Some(next) = t.checked_add(step as i64) else {
                break;
            };
            t = next;
        }
        out.push((t, v));
    }
    out
}

fn round_trip(samples: &[(i64, f64)]) {
    let mut appender = XorAppender::new();
    // Checked once at the end: the state after the first k appends is the
    // final state of the input cut after k samples, which is fuzzed too.
    for &(t, v) in samples {
        appender.append(t, v);
    }
    let decoded = chunk::decode(appender.bytes()).expect("appender bytes decode");
    assert_same(samples, &decoded);
    assert_eq!(appender.len(), samples.len());
    assert_eq!(
        appender.last().map(|(t, v)| (t, v.to_bits())),
        samples.last().map(|&(t, v)| (t, v.to_bits()))
    );
    assert_eq!(appender.min_time(), samples.first().map(|s| s.0));
    assert_eq!(appender.max_time(), samples.last().map(|s| s.0));

    let chunks = chunk::encode_all(samples);
    let mut joined = Vec::with_capacity(samples.len());
    for bytes in &chunks {
        let part = chunk::decode(bytes).expect("encode_all chunk decodes");
        assert!(!part.is_empty() && part.len() <= SAMPLES_PER_CHUNK);
        joined.extend(part);
    }
    assert_same(samples, &joined);
}

fn assert_same(expected: &[(i64, f64)], actual: &[(i64, f64)]) {
    assert_eq!(expected.len(), actual.len(), "sample count");
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        assert_eq!(e.0, a.0, "timestamp of sample {i}");
        assert_eq!(e.1.to_bits(), a.1.to_bits(), "value bits of sample {i}");
    }
}
