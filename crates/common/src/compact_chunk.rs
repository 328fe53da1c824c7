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
//!   either bit-packed at one width after subtracting the smallest delta
//!   (a regular scrape costs zero bits per sample, jitter a few), or as one
//!   common delta plus a list of exceptions (a missed scrape costs a couple
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
//!                         (time: 0 packed, 1 sparse; values: 0 xor, 1 const,
//!                         2 decimal m / 10^k, 3 scaled m * 10^-k, 4 bits)
//! count: uvarint          samples, at most 65535
//! -- when count >= 1 --
//! t0: varint
//! -- timestamps, when count >= 2 --
//! packed:  base uvarint, width u8, (count - 1) × width bits of delta - base
//! sparse:  base uvarint, n uvarint, n × (index gap uvarint, zigzag(delta - base) uvarint)
//! -- values --
//! xor:     first value's bits u64 LE, then Gorilla XOR of the rest
//! const:   the value's bits u64 LE
//! integer (decimal, scaled and bits layouts; for bits, m is the value's bit
//!          pattern as i64 and k is 0):
//!          k | order << 5 (u8), anchors (order >= 1: m0 varint; order 2: m1 - m0
//!          varint), min varint, divisor uvarint, width u8,
//!          (count - order) × width bits of (difference - min) / divisor,
//!          n uvarint, n × (index gap uvarint, value bits u64 LE)
//! ```
//!
//! Timestamp arithmetic wraps, in the encoder and the decoder alike, so any
//! `i64` sequence round-trips, sorted or not.

mod bits;
#[cfg(test)]
mod tests;

use crate::chunk::{self, ChunkError};
use bits::{
    Cursor, MsbReader, MsbWriter, Packed, VarintError, bit_width, pack, packed_len, put_uvarint,
    put_varint, unzigzag, uvarint_len, varint_len, zigzag,
};

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
const TIME_SPARSE: u8 = 1;

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

fn decode_appending(
    bytes: &[u8],
    out: &mut Vec<(i64, f64)>,
    start: usize,
) -> Result<(), DecodeError> {
    let mut cursor = Cursor::new(bytes);
    let tag = cursor.u8().ok_or(DecodeError::Empty)?;
    let (time_layout, value_layout) = (tag >> 4, tag & 0x0f);
    if time_layout > TIME_SPARSE || value_layout > VALUE_BITS {
        return Err(DecodeError::UnknownLayout { tag });
    }
    let count = cursor.uvarint().map_err(varint_error("header"))?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_SAMPLES)
        .ok_or_else(|| corrupt("sample count above 65535"))?;
    if count > 0 {
        let t0 = cursor.varint().map_err(varint_error("timestamps"))?;
        out.resize(start + count, (t0, 0.0));
        let slots = &mut out[start..];
        if count >= 2 {
            match time_layout {
                TIME_PACKED => decode_packed_times(&mut cursor, slots)?,
                _ => decode_sparse_times(&mut cursor, slots)?,
            }
        }
        match value_layout {
            VALUE_XOR => decode_xor_values(&mut cursor, slots)?,
            VALUE_CONST => {
                let bits = cursor.u64_le().ok_or_else(|| truncated("values"))?;
                for slot in slots.iter_mut() {
                    slot.1 = f64::from_bits(bits);
                }
            }
            VALUE_DIVIDE => decode_int_values(&mut cursor, slots, Scale::Divide)?,
            VALUE_MULTIPLY => decode_int_values(&mut cursor, slots, Scale::Multiply)?,
            _ => decode_int_values(&mut cursor, slots, Scale::Bits)?,
        }
    }
    if !cursor.is_empty() {
        return Err(corrupt("trailing bytes after the last section"));
    }
    Ok(())
}

fn decode_packed_times(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
) -> Result<(), DecodeError> {
    let base = cursor.uvarint().map_err(varint_error("timestamps"))?;
    let width = read_width(cursor, "timestamps")?;
    let data = cursor
        .bytes(packed_len(slots.len() - 1, width))
        .ok_or_else(|| truncated("timestamps"))?;
    let packed = Packed::new(data, width);
    let mut t = slots[0].0;
    for (i, slot) in slots[1..].iter_mut().enumerate() {
        t = t.wrapping_add(base.wrapping_add(packed.get(i)) as i64);
        slot.0 = t;
    }
    Ok(())
}

fn decode_sparse_times(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
) -> Result<(), DecodeError> {
    let deltas = slots.len() - 1;
    let section = varint_error("timestamps");
    let base = cursor.uvarint().map_err(&section)?;
    let mut left = cursor.uvarint().map_err(&section)?;
    if left > deltas as u64 {
        return Err(corrupt("more timestamp exceptions than samples"));
    }
    // The next exception: the index of its delta and its zigzagged offset;
    // an index no delta has once none is left.
    let read_exception = |cursor: &mut Cursor<'_>, from: usize, left: &mut u64| {
        if *left == 0 {
            return Ok((usize::MAX, 0));
        }
        *left -= 1;
        let gap = cursor.uvarint().map_err(&section)?;
        let index = usize::try_from(gap)
            .ok()
            .and_then(|gap| from.checked_add(gap))
            .filter(|&index| index < deltas)
            .ok_or_else(|| corrupt("timestamp exception past the last sample"))?;
        let offset = cursor.uvarint().map_err(&section)?;
        Ok::<_, DecodeError>((index, offset))
    };
    let mut next = read_exception(cursor, 0, &mut left)?;
    let mut t = slots[0].0;
    for (i, slot) in slots[1..].iter_mut().enumerate() {
        let mut delta = base;
        if i == next.0 {
            delta = base.wrapping_add(unzigzag(next.1) as u64);
            next = read_exception(cursor, i + 1, &mut left)?;
        }
        t = t.wrapping_add(delta as i64);
        slot.0 = t;
    }
    Ok(())
}

fn read_width(cursor: &mut Cursor<'_>, section: &'static str) -> Result<u32, DecodeError> {
    let width = cursor.u8().ok_or_else(|| truncated(section))?;
    if width > 64 {
        return Err(corrupt("bit width above 64"));
    }
    Ok(u32::from(width))
}

fn decode_xor_values(cursor: &mut Cursor<'_>, slots: &mut [(i64, f64)]) -> Result<(), DecodeError> {
    let mut bits = cursor.u64_le().ok_or_else(|| truncated("values"))?;
    let stream = cursor.remaining();
    let mut reader = MsbReader::new(stream);
    slots[0].1 = f64::from_bits(bits);
    // Prometheus' reader starts from a zero window, as does ours.
    let (mut trailing, mut significant) = (0u32, 64u32);
    for slot in slots[1..].iter_mut() {
        let control = reader.peek();
        if control >> 63 == 0 {
            reader.skip(1);
        } else if (control >> 62) & 1 == 0 {
            reader.skip(2);
            bits ^= reader.read(significant) << trailing;
        } else {
            let leading = ((control >> 57) & 0x1f) as u32;
            significant = match ((control >> 51) & 0x3f) as u32 {
                0 => 64,
                n => n,
            };
            if leading + significant > 64 {
                return Err(corrupt("xor window wider than 64 bits"));
            }
            trailing = 64 - leading - significant;
            reader.skip(13);
            bits ^= reader.read(significant) << trailing;
        }
        slot.1 = f64::from_bits(bits);
    }
    let used = reader.bit_pos().div_ceil(8);
    cursor.bytes(used).ok_or_else(|| truncated("values"))?;
    Ok(())
}

fn decode_int_values(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
    scale: Scale,
) -> Result<(), DecodeError> {
    let section = varint_error("values");
    let header = cursor.u8().ok_or_else(|| truncated("values"))?;
    let (k, order) = (usize::from(header & 0x1f), usize::from(header >> 5));
    if k > MAX_SCALE || order > 2 {
        return Err(corrupt("integer scale or order out of range"));
    }
    let mut anchors = [0i64; 2];
    for anchor in anchors.iter_mut().take(order) {
        *anchor = cursor.varint().map_err(&section)?;
    }
    let ints = IntSection {
        order,
        anchors,
        min: cursor.varint().map_err(&section)?,
        divisor: cursor.uvarint().map_err(&section)?,
        width: read_width(cursor, "values")?,
    };
    let data = cursor
        .bytes(packed_len(slots.len().saturating_sub(order), ints.width))
        .ok_or_else(|| truncated("values"))?;
    let packed = Packed::new(data, ints.width);
    match scale {
        Scale::Divide if k == 0 => ints.fill(slots, packed, |m| m as f64),
        Scale::Divide => {
            let p = POW10[k];
            ints.fill(slots, packed, |m| m as f64 / p);
        }
        Scale::Multiply => {
            let f = INV_POW10[k];
            ints.fill(slots, packed, |m| m as f64 * f);
        }
        Scale::Bits => ints.fill(slots, packed, |m| f64::from_bits(m as u64)),
    }
    let exceptions = cursor.uvarint().map_err(&section)?;
    if exceptions > slots.len() as u64 {
        return Err(corrupt("more value exceptions than samples"));
    }
    let mut next = 0usize;
    for _ in 0..exceptions {
        let gap = cursor.uvarint().map_err(&section)?;
        let index = usize::try_from(gap)
            .ok()
            .and_then(|gap| next.checked_add(gap))
            .filter(|&index| index < slots.len())
            .ok_or_else(|| corrupt("value exception past the last sample"))?;
        let bits = cursor.u64_le().ok_or_else(|| truncated("values"))?;
        slots[index].1 = f64::from_bits(bits);
        next = index + 1;
    }
    Ok(())
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
    fn fill(&self, slots: &mut [(i64, f64)], packed: Packed<'_>, to_float: impl Fn(i64) -> f64) {
        let (min, divisor) = (self.min, self.divisor);
        let step = |i: usize| min.wrapping_add(packed.get(i).wrapping_mul(divisor) as i64);
        match self.order {
            0 => {
                for (i, slot) in slots.iter_mut().enumerate() {
                    slot.1 = to_float(step(i));
                }
            }
            1 => {
                let mut m = self.anchors[0];
                slots[0].1 = to_float(m);
                for (i, slot) in slots[1..].iter_mut().enumerate() {
                    m = m.wrapping_add(step(i));
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
                for (i, slot) in slots.iter_mut().skip(2).enumerate() {
                    delta = delta.wrapping_add(step(i));
                    m = m.wrapping_add(delta);
                    slot.1 = to_float(m);
                }
            }
        }
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

/// The timestamp section chosen for a chunk.
#[derive(Debug)]
enum TimePlan {
    Packed {
        base: u64,
        width: u32,
        residuals: Vec<u64>,
    },
    Sparse {
        base: u64,
        /// (delta index, zigzagged offset from `base`)
        exceptions: Vec<(usize, u64)>,
    },
}

impl TimePlan {
    fn choose(samples: &[(i64, f64)]) -> TimePlan {
        let deltas: Vec<u64> = samples
            .windows(2)
            .map(|pair| pair[1].0.wrapping_sub(pair[0].0) as u64)
            .collect();
        let min = deltas.iter().copied().min().unwrap_or(0);
        let max = deltas.iter().copied().max().unwrap_or(0);
        let width = bit_width(max - min);
        if width == 0 {
            return TimePlan::Packed {
                base: min,
                width,
                residuals: Vec::new(),
            };
        }
        let residuals: Vec<u64> = deltas.iter().map(|d| d - min).collect();
        let packed = TimePlan::Packed {
            base: min,
            width,
            residuals,
        };
        let base = most_common(&deltas);
        let exceptions: Vec<(usize, u64)> = deltas
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d != base)
            .map(|(i, &d)| (i, zigzag(d.wrapping_sub(base) as i64)))
            .collect();
        let sparse = TimePlan::Sparse { base, exceptions };
        if sparse.len() < packed.len() {
            sparse
        } else {
            packed
        }
    }

    fn tag(&self) -> u8 {
        match self {
            TimePlan::Packed { .. } => TIME_PACKED,
            TimePlan::Sparse { .. } => TIME_SPARSE,
        }
    }

    /// Bytes [`TimePlan::write`] appends.
    fn len(&self) -> usize {
        match self {
            TimePlan::Packed {
                base,
                width,
                residuals,
            } => uvarint_len(*base) + 1 + packed_len(residuals.len(), *width),
            TimePlan::Sparse { base, exceptions } => {
                uvarint_len(*base)
                    + uvarint_len(exceptions.len() as u64)
                    + exceptions_len(exceptions)
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            TimePlan::Packed {
                base,
                width,
                residuals,
            } => {
                put_uvarint(out, *base);
                out.push(*width as u8);
                pack(out, residuals, *width);
            }
            TimePlan::Sparse { base, exceptions } => {
                put_uvarint(out, *base);
                put_uvarint(out, exceptions.len() as u64);
                let mut next = 0;
                for &(index, offset) in exceptions {
                    put_uvarint(out, (index - next) as u64);
                    put_uvarint(out, offset);
                    next = index + 1;
                }
            }
        }
    }
}

/// Bytes of an exception list's entries (index gaps and uvarint payloads).
fn exceptions_len(exceptions: &[(usize, u64)]) -> usize {
    let mut next = 0;
    let mut len = 0;
    for &(index, payload) in exceptions {
        len += uvarint_len((index - next) as u64) + uvarint_len(payload);
        next = index + 1;
    }
    len
}

/// The most frequent value (the smallest among equally frequent ones).
fn most_common(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mut best = (0usize, sorted.first().copied().unwrap_or(0));
    for run in sorted.chunk_by(|a, b| a == b) {
        if run.len() > best.0 {
            best = (run.len(), run[0]);
        }
    }
    best.1
}

/// The value section chosen for a chunk.
#[derive(Debug)]
enum ValuePlan {
    /// The whole section, already encoded.
    Xor(Vec<u8>),
    Const(u64),
    Int(IntPlan),
}

impl ValuePlan {
    fn choose(samples: &[(i64, f64)]) -> ValuePlan {
        let values: Vec<f64> = samples.iter().map(|&(_, v)| v).collect();
        let Some(first) = values.first().map(|v| v.to_bits()) else {
            return ValuePlan::Xor(Vec::new());
        };
        let mut best = if values.iter().all(|v| v.to_bits() == first) {
            ValuePlan::Const(first)
        } else {
            ValuePlan::Xor(Vec::new())
        };
        let ints = [
            IntPlan::best(&values),
            IntPlan::build(&values, Scale::Bits, 0),
        ];
        for int in ints.into_iter().flatten() {
            if matches!(best, ValuePlan::Xor(_)) || int.len() < best.len() {
                best = ValuePlan::Int(int);
            }
        }
        // XOR takes at least 8 bytes and a bit per further sample.
        let xor_floor = 8 + (values.len() - 1).div_ceil(8);
        if matches!(best, ValuePlan::Xor(_)) || best.len() > xor_floor {
            let xor = encode_xor_values(&values);
            if matches!(best, ValuePlan::Xor(_)) || xor.len() < best.len() {
                best = ValuePlan::Xor(xor);
            }
        }
        best
    }

    fn tag(&self) -> u8 {
        match self {
            ValuePlan::Xor(_) => VALUE_XOR,
            ValuePlan::Const(_) => VALUE_CONST,
            ValuePlan::Int(int) => int.scale.tag(),
        }
    }

    fn len(&self) -> usize {
        match self {
            ValuePlan::Xor(bytes) => bytes.len(),
            ValuePlan::Const(_) => 8,
            ValuePlan::Int(int) => int.len(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            ValuePlan::Xor(bytes) => out.extend_from_slice(bytes),
            ValuePlan::Const(bits) => out.extend_from_slice(&bits.to_le_bytes()),
            ValuePlan::Int(int) => int.write(out),
        }
    }
}

/// Gorilla XOR of the value bits, as Prometheus' chunks hold them, with the
/// first value's bits in front (little-endian).
fn encode_xor_values(values: &[f64]) -> Vec<u8> {
    let mut prev = values.first().map_or(0, |v| v.to_bits());
    let mut writer = MsbWriter::default();
    // No window yet: the first non-zero XOR always opens one.
    let mut window: Option<(u32, u32)> = None;
    for v in values.iter().skip(1) {
        let bits = v.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            writer.write(0, 1);
            continue;
        }
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        match window {
            Some((lead, trail)) if leading >= lead && trailing >= trail => {
                writer.write(0b10, 2);
                writer.write(xor >> trail, 64 - lead - trail);
            }
            _ => {
                let significant = 64 - leading - trailing;
                writer.write(0b11, 2);
                writer.write(u64::from(leading), 5);
                writer.write(u64::from(significant & 0x3f), 6);
                writer.write(xor >> trailing, significant);
                window = Some((leading, trailing));
            }
        }
    }
    let stream = writer.finish();
    let mut out = Vec::with_capacity(8 + stream.len());
    out.extend_from_slice(&values.first().map_or(0, |v| v.to_bits()).to_le_bytes());
    out.extend_from_slice(&stream);
    out
}

/// An integer value section.
#[derive(Debug)]
struct IntPlan {
    scale: Scale,
    k: usize,
    section: IntSection,
    /// Packed at `section.width` bits.
    residuals: Vec<u64>,
    /// (sample index, value bits) of the samples that are not integers.
    exceptions: Vec<(usize, u64)>,
}

/// Whether `v` may be an integer at some scale: not NaN, not infinite, not
/// `-0.0`.
fn may_be_integer(v: f64) -> bool {
    v.is_finite() && !(v == 0.0 && v.is_sign_negative())
}

impl IntPlan {
    /// The smallest integer section over the scales worth trying, if more
    /// than half the values are integers at some scale.
    fn best(values: &[f64]) -> Option<IntPlan> {
        let n = values.len();
        // Dividing: a value that is m / 10^k is also 10m / 10^(k+1), so the
        // smallest k per value is all we need.
        let mut smallest = Vec::with_capacity(n);
        let mut misses = 0;
        for &v in values {
            let k = may_be_integer(v)
                .then(|| (0..=MAX_SCALE).find(|&k| Scale::Divide.fit(v, k).is_some()))
                .flatten();
            if k.is_none() {
                misses += 1;
                if misses * 2 > n {
                    return None;
                }
            }
            smallest.push(k);
        }
        let mut scales: Vec<usize> = smallest.iter().flatten().copied().collect();
        scales.sort_unstable();
        scales.dedup();
        let mut best: Option<IntPlan> = None;
        for &k in &scales {
            keep_smaller(&mut best, IntPlan::build(values, Scale::Divide, k));
        }
        // Multiplying by 10^-k is worth a try when dividing left numbers
        // out or needed an unusually large k: a product m * 0.01 is
        // sometimes one ulp off m / 100. Any k may fit then, so count the
        // fits per k and try the smallest k that fits half the values and
        // the smallest that fits the most.
        let typical = most_common(
            &smallest
                .iter()
                .flatten()
                .map(|&k| k as u64)
                .collect::<Vec<_>>(),
        );
        let try_multiply = best.as_ref().is_none_or(|plan| {
            plan.k as u64 > typical
                || plan
                    .exceptions
                    .iter()
                    .any(|&(_, bits)| may_be_integer(f64::from_bits(bits)))
        });
        if try_multiply {
            let mut fits = [0usize; MAX_SCALE + 1];
            for &v in values.iter().filter(|&&v| may_be_integer(v)) {
                for (k, count) in fits.iter_mut().enumerate() {
                    if Scale::Multiply.fit(v, k).is_some() {
                        *count += 1;
                    }
                }
            }
            let most = fits.iter().copied().max().unwrap_or(0);
            let half = fits.iter().position(|&count| count > 0 && count * 2 >= n);
            let widest = fits.iter().position(|&count| count > 0 && count == most);
            if let Some(k) = half {
                keep_smaller(&mut best, IntPlan::build(values, Scale::Multiply, k));
            }
            if let Some(k) = widest
                && widest != half
            {
                keep_smaller(&mut best, IntPlan::build(values, Scale::Multiply, k));
            }
        }
        best
    }

    /// The section for one scale and exponent, in the order that packs
    /// smallest; `None` if no value fits.
    fn build(values: &[f64], scale: Scale, k: usize) -> Option<IntPlan> {
        let first = values.iter().find_map(|&v| scale.fit(v, k))?;
        let mut ints = Vec::with_capacity(values.len());
        let mut exceptions = Vec::new();
        // A sample that does not fit repeats the previous integer, so it
        // costs nothing in the deltas.
        let mut carried = first;
        for (i, &v) in values.iter().enumerate() {
            match scale.fit(v, k) {
                Some(m) => carried = m,
                None => exceptions.push((i, v.to_bits())),
            }
            ints.push(carried);
        }
        let anchors = [
            ints[0],
            ints.get(1).map_or(0, |m1| m1.wrapping_sub(ints[0])),
        ];
        let mut best: Option<IntSection> = None;
        for order in 0..=2 {
            let count = ints.len().saturating_sub(order);
            if order > 0 && count == 0 {
                break;
            }
            let min = differences(&ints, order).min().unwrap_or(0);
            let (mut divisor, mut max) = (0, 0);
            for d in differences(&ints, order) {
                let residual = d.wrapping_sub(min) as u64;
                max = max.max(residual);
                if divisor != 1 {
                    divisor = gcd(divisor, residual);
                }
            }
            let divisor = divisor.max(1);
            let section = IntSection {
                order,
                anchors,
                min,
                divisor,
                width: bit_width(max / divisor),
            };
            if best
                .as_ref()
                .is_none_or(|b| section.len(count) < b.len(ints.len().saturating_sub(b.order)))
            {
                best = Some(section);
            }
        }
        let section = best?;
        let residuals = differences(&ints, section.order)
            .map(|d| d.wrapping_sub(section.min) as u64 / section.divisor)
            .collect();
        Some(IntPlan {
            scale,
            k,
            section,
            residuals,
            exceptions,
        })
    }

    /// Bytes [`IntPlan::write`] appends.
    fn len(&self) -> usize {
        let exceptions: usize = {
            let mut next = 0;
            self.exceptions
                .iter()
                .map(|&(index, _)| {
                    let gap = index - next;
                    next = index + 1;
                    uvarint_len(gap as u64) + 8
                })
                .sum()
        };
        self.section.len(self.residuals.len())
            + uvarint_len(self.exceptions.len() as u64)
            + exceptions
    }

    fn write(&self, out: &mut Vec<u8>) {
        let section = &self.section;
        out.push(self.k as u8 | (section.order as u8) << 5);
        for &anchor in section.anchors.iter().take(section.order) {
            put_varint(out, anchor);
        }
        put_varint(out, section.min);
        put_uvarint(out, section.divisor);
        out.push(section.width as u8);
        pack(out, &self.residuals, section.width);
        put_uvarint(out, self.exceptions.len() as u64);
        let mut next = 0;
        for &(index, bits) in &self.exceptions {
            put_uvarint(out, (index - next) as u64);
            out.extend_from_slice(&bits.to_le_bytes());
            next = index + 1;
        }
    }
}

impl IntSection {
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

/// The integers (order 0), their deltas (1) or delta-of-deltas (2).
fn differences(ints: &[i64], order: usize) -> impl Iterator<Item = i64> + '_ {
    ints.windows(order + 1).map(move |w| match order {
        0 => w[0],
        1 => w[1].wrapping_sub(w[0]),
        _ => w[2]
            .wrapping_sub(w[1])
            .wrapping_sub(w[1].wrapping_sub(w[0])),
    })
}

/// Replaces `best` by `plan` when that is smaller.
fn keep_smaller(best: &mut Option<IntPlan>, plan: Option<IntPlan>) {
    if let Some(plan) = plan
        && best.as_ref().is_none_or(|b| plan.len() < b.len())
    {
        *best = Some(plan);
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
