//! Strata's compact float chunk encoding, for persistent blocks: fewer bytes
//! per sample than Prometheus' XOR chunks ([`crate::chunk`]) and faster to
//! decode, bit-exact for every `f64` and every `i64` timestamp.
//!
//! The encoding is internal to Strata ([`COMPACT_CHUNK_ENCODING`]): it is
//! never sent to Prometheus, remote read transcodes it to XOR.
//!
//! Timestamps and values are stored in two separate sections, each in the
//! layout that measures smallest for the chunk at hand:
//!
//! - **timestamps**: the first one, then the deltas between neighbours
//!   bit-packed at one width after subtracting a base (a regular scrape
//!   costs zero bits per sample, jitter a few), with the deltas outside the
//!   width's window in a list of exceptions (a missed scrape costs a couple
//!   of bytes, not a wider packing for the whole chunk);
//! - **values**: one constant; or integers — values that are exactly
//!   `m / 10^k` (or `m * 10^-k`, what `round(v / q) * q` produces) for one
//!   `k` per chunk — stored as themselves, their deltas or their
//!   delta-of-deltas, minus the smallest, divided by the common divisor and
//!   bit-packed at one width (as VictoriaMetrics does), with the values that
//!   do not fit (stale markers, `-0.0`, infinities) kept raw in an exception
//!   list; or the same integer packing over the values' bit patterns (floats
//!   that are no decimals but move little, like a clock in seconds or a
//!   histogram's sum); or, when nothing else is smaller, Gorilla XOR of the
//!   value bits.
//!
//! Layout (varints are LEB128, signed ones zigzagged; packed sections are
//! little-endian, least significant bit first; the XOR section is read most
//! significant bit first):
//!
//! ```text
//! tag: u8                 time layout << 4 | value layout
//!                         (time: 0 packed, 1 patched; values: 0 xor, 1 const,
//!                         2 decimal m / 10^k, 3 scaled m * 10^-k, 4 bits)
//! count: uvarint          samples, at most 65535
//! -- when count >= 1 --
//! t0: varint
//! -- timestamps, when count >= 2 --
//! packed:  base uvarint, width u8, (count - 1) × width bits of delta - base
//! patched: as packed (exceptions packed as 0), then n uvarint,
//!          n × (index gap uvarint, zigzag(delta - base) uvarint)
//! -- values --
//! xor:     first value's bits u64 LE, then Gorilla XOR of the rest
//! const:   the value's bits in reverse order, as a uvarint (round values
//!          such as 0, 1, 1500 or 2^63 end in zero bits: 1 to 3 bytes)
//! integer (decimal, scaled and bits layouts; for bits, m is the value's bit
//!          pattern as i64 and k is 0):
//!          k | order << 5 (u8), anchors (order >= 1: m0 varint; order 2: m1 - m0
//!          varint), min varint, divisor uvarint, width u8,
//!          (count - order) × width bits of (difference - min) / divisor,
//!          n uvarint, n × (index gap uvarint, value bits u64 LE)
//! ```
//!
//! Timestamp and integer arithmetic wraps, in the encoder and the decoder
//! alike, so any `i64` sequence round-trips, sorted or not, and so does any
//! integer sequence. The decoder checks every length against the bytes it
//! has, refuses trailing bytes, and never panics on damaged input.

mod decode;
mod plan;
#[cfg(test)]
mod tests;

use crate::bits::{
    self, Unpacker, VarintError, packed_len, put_uvarint, put_varint, uvarint_len, varint_len,
};
use crate::chunk::{self, ChunkError};
use decode::decode_appending;
use plan::{TimePlan, ValuePlan};

/// `prometheus.Chunk.type` of a compact chunk. Internal to Strata: Prometheus
/// uses 0..=3 and never sees this value (remote read transcodes to XOR).
pub const COMPACT_CHUNK_ENCODING: i32 = 64;

/// `prometheus.Chunk.type` of Prometheus' XOR chunk ([`crate::chunk`]).
pub const XOR_CHUNK_ENCODING: i32 = 1;

/// The most samples one compact chunk holds (as for XOR chunks).
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// Largest decimal exponent `k` tried for integer values.
const MAX_SCALE: usize = 18;

/// `10^k`, exact in `f64` for every `k` here.
const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// `10^-k` rounded to the nearest `f64` (what the literal `0.01` is).
const INV_POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18,
];

/// Largest integer magnitude stored: deltas and delta-of-deltas of such
/// integers stay far from `i64` overflow.
const MAX_INT: f64 = (1u64 << 60) as f64;

const TIME_PACKED: u8 = 0;
const TIME_PATCHED: u8 = 1;

const VALUE_XOR: u8 = 0;
const VALUE_CONST: u8 = 1;
const VALUE_DIVIDE: u8 = 2;
const VALUE_MULTIPLY: u8 = 3;
const VALUE_BITS: u8 = 4;

/// A compact chunk (or, through [`decode_any`], any chunk) could not be
/// decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not even the tag byte is there.
    #[error("compact chunk is empty")]
    Empty,
    /// The tag names a layout no encoder writes.
    #[error("unknown compact chunk layout {tag:#04x}")]
    UnknownLayout { tag: u8 },
    /// The bytes ran out inside a section.
    #[error("compact chunk truncated in its {section}")]
    Truncated { section: &'static str },
    /// The bytes describe something no encoder writes.
    #[error("corrupt compact chunk: {reason}")]
    Corrupt { reason: &'static str },
    /// [`decode_any`] got an encoding it does not know.
    #[error("unsupported chunk encoding {encoding}")]
    UnsupportedEncoding { encoding: i32 },
    /// [`decode_any`] got a damaged XOR chunk.
    #[error("invalid xor chunk")]
    Xor(#[source] ChunkError),
}

fn truncated(section: &'static str) -> DecodeError {
    DecodeError::Truncated { section }
}

fn corrupt(reason: &'static str) -> DecodeError {
    DecodeError::Corrupt { reason }
}

fn varint_error(section: &'static str) -> impl Fn(VarintError) -> DecodeError {
    move |error| match error {
        VarintError::Truncated => truncated(section),
        VarintError::Overflow => corrupt("varint overflows 64 bits"),
    }
}

/// Encodes samples into one compact chunk, choosing per section the layout
/// that measures smallest. Any timestamps (wrapping arithmetic) and any value
/// bits round-trip.
///
/// # Panics
///
/// If `samples` holds more than [`MAX_SAMPLES`] samples; callers cut chunks
/// far below that.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    assert!(
        samples.len() <= MAX_SAMPLES,
        "a compact chunk holds at most {MAX_SAMPLES} samples, got {}",
        samples.len()
    );
    let times = TimePlan::choose(samples);
    let values = ValuePlan::choose(samples);
    let mut out = Vec::with_capacity(16 + times.len() + values.len());
    out.push((times.tag() << 4) | values.tag());
    put_uvarint(&mut out, samples.len() as u64);
    let Some(&(t0, _)) = samples.first() else {
        return out;
    };
    put_varint(&mut out, t0);
    if samples.len() >= 2 {
        times.write(&mut out);
    }
    values.write(&mut out);
    out
}

/// The number of samples a compact chunk's header declares, without
/// decoding them.
pub fn sample_count(bytes: &[u8]) -> Result<usize, DecodeError> {
    decode::read_header(&mut bits::Cursor::new(bytes)).map(|(_, _, count)| count)
}

/// Decodes every sample of a compact chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let mut out = Vec::new();
    decode_into(bytes, &mut out)?;
    Ok(out)
}

/// Appends the samples of a compact chunk to `out`, with at most one
/// allocation (the count is capped at [`MAX_SAMPLES`], so a damaged count
/// reserves at most 1 MiB). On error `out` is left as it was.
pub fn decode_into(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), DecodeError> {
    let start = out.len();
    let result = decode_appending(bytes, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends the samples of a chunk of either encoding to `out`: Prometheus'
/// XOR ([`XOR_CHUNK_ENCODING`]) or compact ([`COMPACT_CHUNK_ENCODING`]).
/// On error `out` is left as it was.
pub fn decode_any(
    encoding: i32,
    bytes: &[u8],
    out: &mut Vec<(i64, f64)>,
) -> Result<(), DecodeError> {
    match encoding {
        COMPACT_CHUNK_ENCODING => decode_into(bytes, out),
        XOR_CHUNK_ENCODING => {
            let start = out.len();
            let samples = chunk::iter(bytes);
            out.reserve(samples.total());
            for sample in samples {
                match sample {
                    Ok(sample) => out.push(sample),
                    Err(error) => {
                        out.truncate(start);
                        return Err(DecodeError::Xor(error));
                    }
                }
            }
            Ok(())
        }
        encoding => Err(DecodeError::UnsupportedEncoding { encoding }),
    }
}

/// The fields of an integer value section before its packed residuals.
#[derive(Debug, Clone, Copy)]
struct IntSection {
    /// 0: values, 1: deltas, 2: delta-of-deltas are packed.
    order: usize,
    /// `m0` and `m1 - m0`, as far as the order needs them.
    anchors: [i64; 2],
    min: i64,
    divisor: u64,
    width: u32,
}

impl IntSection {
    /// Writes every value of `slots` from the packed residuals, converting
    /// the integers with `to_float`.
    #[inline]
    fn fill(
        &self,
        slots: &mut [(i64, f64)],
        mut residuals: Unpacker<'_>,
        to_float: impl Fn(i64) -> f64,
    ) {
        let (min, divisor) = (self.min, self.divisor);
        let mut step = || min.wrapping_add(residuals.next_value().wrapping_mul(divisor) as i64);
        match self.order {
            0 => {
                for slot in slots.iter_mut() {
                    slot.1 = to_float(step());
                }
            }
            1 => {
                let mut m = self.anchors[0];
                slots[0].1 = to_float(m);
                for slot in slots[1..].iter_mut() {
                    m = m.wrapping_add(step());
                    slot.1 = to_float(m);
                }
            }
            _ => {
                let mut m = self.anchors[0];
                let mut delta = self.anchors[1];
                slots[0].1 = to_float(m);
                if let Some(slot) = slots.get_mut(1) {
                    m = m.wrapping_add(delta);
                    slot.1 = to_float(m);
                }
                for slot in slots.iter_mut().skip(2) {
                    delta = delta.wrapping_add(step());
                    m = m.wrapping_add(delta);
                    slot.1 = to_float(m);
                }
            }
        }
    }

    /// Bytes of the section up to and including `residuals` packed values,
    /// without the exception list.
    fn len(&self, residuals: usize) -> usize {
        let anchors: usize = self
            .anchors
            .iter()
            .take(self.order)
            .map(|&a| varint_len(a))
            .sum();
        1 + anchors
            + varint_len(self.min)
            + uvarint_len(self.divisor)
            + 1
            + packed_len(residuals, self.width)
    }
}

/// How an integer `m` becomes a value with exponent `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// `m / 10^k`: the correctly rounded decimal, what parsing `"0.37"`
    /// gives.
    Divide,
    /// `m * 10^-k`: what quantizing with `round(v / 0.01) * 0.01` gives.
    Multiply,
    /// `m` is the value's bit pattern (`k` is 0): for floats that are no
    /// decimals but move little, like a clock in seconds or a growing sum,
    /// the deltas of the bit patterns are narrow.
    Bits,
}

impl Scale {
    fn to_float(self, m: i64, k: usize) -> f64 {
        match self {
            Scale::Divide => m as f64 / POW10[k],
            Scale::Multiply => m as f64 * INV_POW10[k],
            Scale::Bits => f64::from_bits(m as u64),
        }
    }

    /// The integer that gives back exactly `v`'s bits at exponent `k`.
    fn fit(self, v: f64, k: usize) -> Option<i64> {
        if self == Scale::Bits {
            return Some(v.to_bits() as i64);
        }
        let scaled = v * POW10[k];
        // Also refuses NaN and infinities.
        if scaled.is_nan() || scaled.abs() > MAX_INT {
            return None;
        }
        // Truncating, then one step away from zero: a rounding without a
        // libm call (the nearest integer is one of the two).
        let truncated = scaled as i64;
        let gives_v = |m: i64| (self.to_float(m, k).to_bits() == v.to_bits()).then_some(m);
        gives_v(truncated).or_else(|| gives_v(truncated + scaled.signum() as i64))
    }

    fn tag(self) -> u8 {
        match self {
            Scale::Divide => VALUE_DIVIDE,
            Scale::Multiply => VALUE_MULTIPLY,
            Scale::Bits => VALUE_BITS,
        }
    }
}
