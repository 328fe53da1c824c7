//! Float sample records encoded against each series' previous sample in
//! the same WAL segment (format [`super::PREDICTED_SAMPLES`]).
//!
//! Samples are written sorted by series id (stably: one series keeps its
//! order), as one bit stream after a small header:
//!
//! ```text
//! varint count | varint zigzag base_ms | u8 rice_k | bits…
//! ```
//!
//! Per sample, in the bit stream:
//!
//! * the gap to the previous sample's series id (0 for the first), Rice
//!   coded with parameter `rice_k` (the quotient in unary, capped: 32 ones
//!   escape to a raw 32-bit gap);
//! * when the series has no earlier sample in this segment: the timestamp
//!   as a zigzag difference to `base_ms` (the class code below) and the
//!   value's 64 raw bits;
//! * otherwise the timestamp's delta-of-delta against the series' last two
//!   samples (`0` for none, else a class prefix `10`, `110`, `1110`,
//!   `1111` and 7, 14, 24 or 64 zigzag bits), and the value XOR'd with the
//!   previous value: `0` when equal, `10` and the meaningful bits when they
//!   fit the series' previous window of leading and trailing zeros, else
//!   `11`, 6 bits of leading zeros, 6 bits of length − 1 and the bits.
//!
//! The prediction state lives in [`SegmentState`], kept identically by the
//! writer and by replay and reset at the start of every segment, so every
//! segment decodes on its own: checkpoints and truncation delete whole
//! segments, and replay stops a damaged segment at its first bad record.

use std::collections::HashMap;

use strata_proto::wal::SamplesRecord;

use crate::hash::FastBuild;

/// Series ids below this keep their state in a vector indexed by id; the
/// rare larger ones (and damaged input) in a map, so an id read from a
/// damaged record never makes us allocate gigabytes.
const DENSE_IDS: u32 = 1 << 22;
/// The vector grows to an id only while it stays at least a quarter full
/// (beyond this many slots): after churn the live ids of a head can be few
/// and high, and those go to the map instead of a mostly empty vector.
const DENSE_SLACK: usize = 1 << 16;
/// Unary quotients of id gaps longer than this escape to 32 raw bits.
const MAX_UNARY: u32 = 32;

/// What the previous sample of a series in the segment predicts (24
/// bytes: the writer keeps one per series).
#[derive(Debug, Clone, Copy, Default)]
struct Prediction {
    t: i64,
    bits: u64,
    /// The last time step, or 0 when it does not fit in 32 bits (writer
    /// and reader store the same, so they predict the same).
    delta: i32,
    /// Window of the last XOR written in full: leading zeros and length
    /// (0: no window yet).
    leading: u8,
    length: u8,
    /// Unset entries (of series without a sample in the segment) are
    /// all zeros.
    set: bool,
}

impl Prediction {
    fn step(delta: i64) -> i32 {
        i32::try_from(delta).unwrap_or(0)
    }
}

/// Per-series prediction state of one WAL segment's sample records.
#[derive(Debug, Default)]
pub struct SegmentState {
    /// The segment these predictions belong to (`None`: nothing yet).
    segment: Option<u64>,
    dense: Vec<Prediction>,
    sparse: HashMap<u32, Prediction, FastBuild>,
    /// Predictions set in this segment (for the vector's density).
    count: usize,
}

impl SegmentState {
    /// Makes the state the one of `segment`: forgets every prediction when
    /// that is another segment than the last one used.
    pub fn enter(&mut self, segment: u64) {
        if self.segment != Some(segment) {
            self.forget();
            self.segment = Some(segment);
        }
    }

    /// Forgets every prediction, as at the start of a segment.
    pub fn forget(&mut self) {
        self.segment = None;
        self.sparse.clear();
        self.count = 0;
        // Keeps the capacity: the next segment has about the same series.
        self.dense.clear();
    }

    /// An id's prediction: the vector's when set there, else the map's
    /// (an id may have gone to the map before the vector grew past it).
    fn get(&self, id: u32) -> Option<Prediction> {
        self.dense
            .get(id as usize)
            .filter(|p| p.set)
            .or_else(|| self.sparse.get(&id))
            .copied()
    }

    fn set(&mut self, id: u32, mut prediction: Prediction) {
        prediction.set = true;
        let slot = id as usize;
        if let Some(entry) = self.dense.get_mut(slot) {
            if !entry.set && !self.sparse.contains_key(&id) {
                self.count += 1;
            }
            *entry = prediction;
            return;
        }
        let dense_enough = slot < 4 * (self.count + 1) + DENSE_SLACK;
        if id < DENSE_IDS && dense_enough {
            // Amortized growth.
            self.dense.resize(
                (slot + 1).max(self.dense.len() * 5 / 4),
                Prediction::default(),
            );
            if !self.sparse.contains_key(&id) {
                self.count += 1;
            }
            self.dense[slot] = prediction;
        } else if self.sparse.insert(id, prediction).is_none() {
            self.count += 1;
        }
    }
}

/// Most bytes [`encode`] writes for `samples` samples (a size hint for
/// choosing the segment before encoding).
pub fn max_encoded_len(samples: usize) -> usize {
    // Id: 32 + 1 + 32 bits; timestamp: 4 + 64; value: 2 + 12 + 64.
    32 + samples * 27
}

/// Appends the record to `out`, updating `state` (which must have
/// [`SegmentState::enter`]ed the segment the record goes to).
pub fn encode(state: &mut SegmentState, record: &SamplesRecord, out: &mut Vec<u8>) {
    let n = record
        .series_ids
        .len()
        .min(record.timestamps_ms.len())
        .min(record.value_bits.len());
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&i| record.series_ids[i as usize]);

    let base = order
        .first()
        .map_or(0, |&i| record.timestamps_ms[i as usize]);
    let k = rice_parameter(order.iter().map(|&i| record.series_ids[i as usize]), n);
    put_varint(out, n as u64);
    put_varint(out, zigzag(base));
    out.push(k);

    let mut bits = BitWriter::new(out);
    let mut previous_id = 0u32;
    for &i in &order {
        let id = record.series_ids[i as usize];
        let t = record.timestamps_ms[i as usize];
        let value = record.value_bits[i as usize];
        put_rice(&mut bits, id - previous_id, k);
        previous_id = id;
        let next = match state.get(id) {
            None => {
                put_class(&mut bits, zigzag(t.wrapping_sub(base)));
                bits.put(value, 64);
                Prediction {
                    t,
                    bits: value,
                    ..Prediction::default()
                }
            }
            Some(previous) => {
                let delta = t.wrapping_sub(previous.t);
                put_class(
                    &mut bits,
                    zigzag(delta.wrapping_sub(i64::from(previous.delta))),
                );
                let (leading, length) = put_xor(&mut bits, value ^ previous.bits, &previous);
                Prediction {
                    t,
                    delta: Prediction::step(delta),
                    bits: value,
                    leading,
                    length,
                    ..previous
                }
            }
        };
        state.set(id, next);
    }
    bits.finish();
}

/// Decodes a record written by [`encode`] with the same state.
pub fn decode(state: &mut SegmentState, body: &[u8]) -> Result<SamplesRecord, String> {
    let mut at = 0usize;
    let n = get_varint(body, &mut at)?;
    let base = unzigzag(get_varint(body, &mut at)?);
    let &k = body.get(at).ok_or("wal samples record is truncated")?;
    at += 1;
    if k > 31 {
        return Err(format!("wal samples record has rice parameter {k}"));
    }
    let mut bits = BitReader::new(&body[at..]);
    // Every sample takes at least three bits.
    if n > (bits.remaining() / 3) as u64 {
        return Err(format!("wal samples record claims {n} samples"));
    }
    let n = n as usize;
    // A damaged record that passes its CRC must not reserve gigabytes up
    // front: start at most at a million and grow.
    let capacity = n.min(1 << 20);
    let mut record = SamplesRecord {
        series_ids: Vec::with_capacity(capacity),
        timestamps_ms: Vec::with_capacity(capacity),
        value_bits: Vec::with_capacity(capacity),
    };
    let mut previous_id = 0u32;
    for _ in 0..n {
        let id = previous_id
            .checked_add(get_rice(&mut bits, k)?)
            .ok_or("wal samples record has a series id out of range")?;
        previous_id = id;
        let next = match state.get(id) {
            None => {
                let t = base.wrapping_add(unzigzag(get_class(&mut bits)?));
                let value = bits.get(64)?;
                Prediction {
                    t,
                    bits: value,
                    ..Prediction::default()
                }
            }
            Some(previous) => {
                let delta = i64::from(previous.delta).wrapping_add(unzigzag(get_class(&mut bits)?));
                let t = previous.t.wrapping_add(delta);
                let (xor, leading, length) = get_xor(&mut bits, &previous)?;
                Prediction {
                    t,
                    delta: Prediction::step(delta),
                    bits: previous.bits ^ xor,
                    leading,
                    length,
                    ..previous
                }
            }
        };
        record.series_ids.push(id);
        record.timestamps_ms.push(next.t);
        record.value_bits.push(next.bits);
        state.set(id, next);
    }
    Ok(record)
}

/// The Rice parameter for the gaps between the sorted ids: about log2 of
/// the mean gap.
fn rice_parameter(sorted_ids: impl Iterator<Item = u32>, n: usize) -> u8 {
    let mut last = None;
    let mut total = 0u64;
    let mut first = 0u64;
    for id in sorted_ids {
        if last.is_none() {
            first = u64::from(id);
        }
        last = Some(id);
    }
    if let Some(last) = last {
        total = u64::from(last) - first;
    }
    let mean = total / (n.max(1) as u64);
    (64 - mean.leading_zeros()).saturating_sub(1).min(31) as u8
}

fn put_rice(bits: &mut BitWriter<'_>, gap: u32, k: u8) {
    let quotient = gap >> k;
    if quotient >= MAX_UNARY {
        bits.put(u64::from(u32::MAX), MAX_UNARY);
        bits.put(u64::from(gap), 32);
        return;
    }
    // `quotient` ones and a zero.
    bits.put((1u64 << quotient) - 1, quotient);
    bits.put(0, 1);
    bits.put(u64::from(gap) & ((1u64 << k) - 1), u32::from(k));
}

fn get_rice(bits: &mut BitReader<'_>, k: u8) -> Result<u32, String> {
    // The unary quotient: ones up to a zero, or MAX_UNARY ones.
    let quotient = (bits.peek(MAX_UNARY) << 32).leading_ones().min(MAX_UNARY);
    if quotient == MAX_UNARY {
        bits.get(MAX_UNARY)?;
        return Ok(bits.get(32)? as u32);
    }
    bits.get(quotient + 1)?;
    let low = bits.get(u32::from(k))?;
    let gap = (u64::from(quotient) << k) | low;
    u32::try_from(gap).map_err(|_| "wal samples record has an id gap out of range".to_owned())
}

/// Zigzag-coded integers in classes: `0` for zero, `10` + 7 bits,
/// `110` + 14 bits, `1110` + 24 bits, `1111` + 64 bits.
fn put_class(bits: &mut BitWriter<'_>, z: u64) {
    if z == 0 {
        bits.put(0, 1);
    } else if z < 1 << 7 {
        bits.put(0b10, 2);
        bits.put(z, 7);
    } else if z < 1 << 14 {
        bits.put(0b110, 3);
        bits.put(z, 14);
    } else if z < 1 << 24 {
        bits.put(0b1110, 4);
        bits.put(z, 24);
    } else {
        bits.put(0b1111, 4);
        bits.put(z, 64);
    }
}

fn get_class(bits: &mut BitReader<'_>) -> Result<u64, String> {
    let ones = (bits.peek(4) << 60).leading_ones().min(4);
    // The ones and the zero after them (none after four).
    bits.get((ones + 1).min(4))?;
    match ones {
        0 => Ok(0),
        1 => bits.get(7),
        2 => bits.get(14),
        3 => bits.get(24),
        _ => bits.get(64),
    }
}

/// Writes `xor` against the previous window; returns the new window.
fn put_xor(bits: &mut BitWriter<'_>, xor: u64, previous: &Prediction) -> (u8, u8) {
    if xor == 0 {
        bits.put(0, 1);
        return (previous.leading, previous.length);
    }
    let leading = xor.leading_zeros() as u8;
    let trailing = xor.trailing_zeros() as u8;
    if previous.length > 0 {
        let previous_trailing = 64 - previous.leading - previous.length;
        if leading >= previous.leading && trailing >= previous_trailing {
            bits.put(0b10, 2);
            bits.put(xor >> previous_trailing, u32::from(previous.length));
            return (previous.leading, previous.length);
        }
    }
    let length = 64 - leading - trailing;
    bits.put(0b11, 2);
    bits.put(u64::from(leading), 6);
    bits.put(u64::from(length - 1), 6);
    bits.put(xor >> trailing, u32::from(length));
    (leading, length)
}

fn get_xor(bits: &mut BitReader<'_>, previous: &Prediction) -> Result<(u64, u8, u8), String> {
    if bits.get(1)? == 0 {
        return Ok((0, previous.leading, previous.length));
    }
    if bits.get(1)? == 0 {
        if previous.length == 0 {
            return Err("wal samples record reuses a missing xor window".to_owned());
        }
        let trailing = 64 - previous.leading - previous.length;
        let xor = bits.get(u32::from(previous.length))? << trailing;
        return Ok((xor, previous.leading, previous.length));
    }
    let leading = bits.get(6)? as u8;
    let length = bits.get(6)? as u8 + 1;
    if u32::from(leading) + u32::from(length) > 64 {
        return Err("wal samples record has an xor window past 64 bits".to_owned());
    }
    let trailing = 64 - leading - length;
    let xor = bits.get(u32::from(length))? << trailing;
    Ok((xor, leading, length))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let &byte = bytes.get(*at).ok_or("wal samples record is truncated")?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("wal samples record has an overlong varint".to_owned())
}

/// Big-endian bit writer appending to a byte vector.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc` (fewer than 8 between calls).
    held: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            held: 0,
        }
    }

    /// Writes the low `n` bits of `v` (`n` ≤ 64), most significant first.
    fn put(&mut self, v: u64, n: u32) {
        if n > 32 {
            self.put_small(v >> 32, n - 32);
            self.put_small(v & 0xffff_ffff, 32);
        } else {
            self.put_small(v, n);
        }
    }

    fn put_small(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 32);
        if n == 0 {
            return;
        }
        let v = v & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.held += n;
        while self.held >= 8 {
            self.held -= 8;
            self.out.push((self.acc >> self.held) as u8);
        }
    }

    fn finish(self) {
        if self.held > 0 {
            self.out.push((self.acc << (8 - self.held)) as u8);
        }
    }
}

/// Big-endian bit reader; reading past the end is an error.
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `buffer`.
    next: usize,
    /// Loaded bits not read yet, left-aligned; zeros below them.
    buffer: u64,
    /// How many bits of `buffer` are loaded.
    loaded: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            buffer: 0,
            loaded: 0,
        }
    }

    fn remaining(&self) -> usize {
        (self.bytes.len() - self.next) * 8 + self.loaded as usize
    }

    /// Loads whole bytes until at least 57 bits are loaded or the input ends.
    fn refill(&mut self) {
        if let Some(eight) = self.bytes.get(self.next..self.next + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            self.buffer |= u64::from_be_bytes(word) >> self.loaded;
            let taken = (63 - self.loaded) / 8;
            self.next += taken as usize;
            self.loaded += taken * 8;
            // Bits of the word past the bytes taken must not stay.
            self.buffer &= !(u64::MAX >> self.loaded);
            return;
        }
        while self.loaded <= 56 {
            let Some(&byte) = self.bytes.get(self.next) else {
                return;
            };
            self.buffer |= u64::from(byte) << (56 - self.loaded);
            self.next += 1;
            self.loaded += 8;
        }
    }

    /// The next `n` ≤ 32 bits without reading them, zeros past the end.
    fn peek(&mut self, n: u32) -> u64 {
        if self.loaded < n {
            self.refill();
        }
        if n == 0 {
            return 0;
        }
        self.buffer >> (64 - n)
    }

    /// Reads `n` bits (`n` ≤ 64).
    fn get(&mut self, n: u32) -> Result<u64, String> {
        if n > 32 {
            let high = self.get(n - 32)?;
            let low = self.get(32)?;
            return Ok((high << 32) | low);
        }
        if self.loaded < n {
            self.refill();
            if self.loaded < n {
                return Err("wal samples record is truncated".to_owned());
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let v = self.buffer >> (64 - n);
        self.buffer <<= n;
        self.loaded -= n;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_high_series_ids_keep_the_state_small() {
        // After churn a head's live ids can be few and high: 2,000 series
        // with ids around 3.9 million must not size a vector by the ids.
        let mut state = SegmentState::default();
        state.enter(1);
        let ids: Vec<u32> = (0..2_000).map(|i| 3_900_000 + i * 37).collect();
        for (n, &id) in ids.iter().enumerate() {
            state.set(
                id,
                Prediction {
                    t: n as i64,
                    ..Prediction::default()
                },
            );
        }
        assert!(
            state.dense.len() < 100_000,
            "vector of {}",
            state.dense.len()
        );
        for (n, &id) in ids.iter().enumerate() {
            assert_eq!(state.get(id).map(|p| p.t), Some(n as i64));
        }
        // Dense low ids still go to the vector.
        for id in 0..50_000u32 {
            state.set(
                id,
                Prediction {
                    t: -1,
                    ..Prediction::default()
                },
            );
        }
        assert!(state.dense.len() >= 50_000);
        assert_eq!(state.get(49_999).map(|p| p.t), Some(-1));
        assert_eq!(state.get(ids[7]).map(|p| p.t), Some(7));
    }
}
