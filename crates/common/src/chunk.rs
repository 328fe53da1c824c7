//! Prometheus' XOR chunk encoding (Gorilla-style), bit-exact with
//! `tsdb/chunkenc/xor.go`.
//!
//! The bytes are handed unchanged to Prometheus' remote-read client
//! (`STREAMED_XOR_CHUNKS`), so every bit must match what Prometheus writes.
//!
//! Layout:
//! - bytes 0..2: number of samples, `u16` big-endian.
//! - sample 0: timestamp as a zigzag varint (Go's `binary.PutVarint`), then
//!   the value's 64 raw bits.
//! - sample 1: timestamp delta `t1 - t0` as a uvarint (Go's
//!   `binary.PutUvarint`), then the XOR-encoded value.
//! - sample n >= 2: delta-of-delta of the timestamp in one of five buckets
//!   (`0`, `10`+14 bits, `110`+17 bits, `1110`+20 bits, `1111`+64 bits),
//!   then the XOR-encoded value.
//!
//! Bits are written most significant first; the last byte is padded with
//! zero bits (0 to 7 of them, as Prometheus writes since v3.0; older versions
//! sometimes left one extra zero byte, which readers ignore, as ours does).
//!
//! Timestamp arithmetic wraps (as Go's does), in the encoder and the decoder
//! alike, so any sequence of `i64` timestamps round-trips exactly, including
//! deltas that overflow `i64`.

use crate::bits::MsbReader;

/// Samples per head chunk before a new one is cut (Prometheus uses 120).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// The most samples one chunk can hold: the count header is a `u16`.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// Length of the sample-count header.
const HEADER_LEN: usize = 2;

/// Marks "no leading/trailing window chosen yet" (Prometheus' `0xff`).
const NO_WINDOW: u8 = 0xff;

/// Go's `binary.MaxVarintLen64`.
const MAX_VARINT_LEN: usize = 10;

/// A chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Fewer than two bytes: not even the sample count is there.
    #[error("chunk of {len} bytes is too short for its 2-byte header")]
    MissingHeader { len: usize },
    /// The bits ran out before the header's sample count was reached.
    #[error("chunk truncated while decoding sample {sample} of {total}")]
    Truncated { sample: usize, total: usize },
    /// The bits describe something no encoder writes.
    #[error("corrupt chunk at sample {sample}: {reason}")]
    Corrupt { sample: usize, reason: &'static str },
}

/// Everything an [`XorAppender`] needs to go on appending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorAppenderState {
    /// The chunk so far, header included.
    pub bytes: Vec<u8>,
    /// Low bits of the last byte not written yet (0–7).
    pub free_bits: u8,
    pub first_t: i64,
    /// The last sample's timestamp and value bits.
    pub t: i64,
    pub v_bits: u64,
    /// The last timestamp delta.
    pub t_delta: u64,
    /// The current XOR window (`leading` 0xff: none chosen yet).
    pub leading: u8,
    pub trailing: u8,
}

/// Appends samples to one XOR chunk, keeping its bytes valid after each
/// append.
#[derive(Debug, Clone)]
pub struct XorAppender {
    /// Header plus bit stream; the last byte may be partially filled.
    buf: Vec<u8>,
    /// How many low bits of the last byte of `buf` are still free; 0 means
    /// the next bit starts a new byte.
    free_bits: u32,
    count: u16,
    first_t: i64,
    t: i64,
    v_bits: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk.
    pub fn new() -> Self {
        // Room for a constant series' whole chunk (about 30 bytes for 120
        // samples); a changing one grows by doubling, and a cut copies the
        // bytes into an exact-size box, so only open chunks carry slack.
        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(&[0, 0]);
        XorAppender {
            buf,
            free_bits: 0,
            count: 0,
            first_t: 0,
            t: 0,
            v_bits: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample; the caller guarantees t is strictly greater than the previous t.
    ///
    /// Ordering is not checked: thanks to wrapping arithmetic any timestamp
    /// sequence round-trips, but Prometheus' readers expect increasing times.
    ///
    /// # Panics
    ///
    /// If the chunk already holds [`MAX_SAMPLES`] samples; callers cut chunks
    /// at [`SAMPLES_PER_CHUNK`], far below that.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(
            !self.is_full(),
            "xor chunk already holds {MAX_SAMPLES} samples"
        );
        let v_bits = v.to_bits();
        let mut t_delta = 0;
        match self.count {
            0 => {
                self.first_t = t;
                self.write_varint(t);
                self.write_bits(v_bits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_uvarint(t_delta);
                self.write_value(v_bits);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                self.write_dod(dod);
                self.write_value(v_bits);
            }
        }
        self.t = t;
        self.v_bits = v_bits;
        self.t_delta = t_delta;
        self.count += 1;
        let header = self.count.to_be_bytes();
        self.buf[..HEADER_LEN].copy_from_slice(&header);
    }

    /// Number of samples appended.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether no sample was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the count header cannot grow any further.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_SAMPLES
    }

    /// Timestamp of the first sample.
    pub fn min_time(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.first_t)
    }

    /// Timestamp of the last sample.
    pub fn max_time(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.t)
    }

    /// The last appended sample, value bits preserved.
    pub fn last(&self) -> Option<(i64, f64)> {
        (!self.is_empty()).then(|| (self.t, f64::from_bits(self.v_bits)))
    }

    /// The complete chunk bytes so far (header count included), cheap to call.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The appender's whole state, to be restored by [`XorAppender::resume`]
    /// (a head snapshot keeps open chunks appendable across a restart).
    pub fn state(&self) -> XorAppenderState {
        XorAppenderState {
            bytes: self.buf.clone(),
            free_bits: self.free_bits as u8,
            first_t: self.first_t,
            t: self.t,
            v_bits: self.v_bits,
            t_delta: self.t_delta,
            leading: self.leading,
            trailing: self.trailing,
        }
    }

    /// An appender continuing from `state`. The state is checked so that no
    /// later append can misbehave: the bytes hold at least the header, the
    /// free bits fit the last byte, and the value window is one an encoder
    /// can have. (Whether the bits decode is the chunk's checksum's job.)
    pub fn resume(state: XorAppenderState) -> Result<XorAppender, ChunkError> {
        let corrupt = |reason| ChunkError::Corrupt { sample: 0, reason };
        let XorAppenderState {
            bytes,
            free_bits,
            first_t,
            t,
            v_bits,
            t_delta,
            leading,
            trailing,
        } = state;
        let [hi, lo, ..] = bytes[..] else {
            return Err(ChunkError::MissingHeader { len: bytes.len() });
        };
        let count = u16::from_be_bytes([hi, lo]);
        if free_bits > 7 || (free_bits > 0 && bytes.len() == HEADER_LEN) {
            return Err(corrupt("free bits do not fit the last byte"));
        }
        if (count == 0) != (bytes.len() == HEADER_LEN) {
            return Err(corrupt("sample count does not match the bits"));
        }
        let window_ok = leading == NO_WINDOW
            || (leading <= 31 && trailing < 64 && u32::from(leading) + u32::from(trailing) < 64);
        if !window_ok {
            return Err(corrupt("impossible value window"));
        }
        Ok(XorAppender {
            buf: bytes,
            free_bits: u32::from(free_bits),
            count,
            first_t,
            t,
            v_bits,
            t_delta,
            leading,
            trailing,
        })
    }

    /// Writes the low `nbits` bits of `value`, most significant first.
    ///
    /// The free bits of the last byte first, then whole bytes, then the
    /// rest into a new byte: at most three steps, where a loop over
    /// byte-sized pieces showed in ingest profiles.
    #[inline]
    fn write_bits(&mut self, value: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        let mut remaining = nbits;
        if self.free_bits > 0 && remaining > 0 {
            let take = remaining.min(self.free_bits);
            let chunk = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << (self.free_bits - take);
            }
            self.free_bits -= take;
            remaining -= take;
        }
        while remaining >= 8 {
            remaining -= 8;
            self.buf.push((value >> remaining) as u8);
        }
        if remaining > 0 {
            // The low `remaining` bits, at the top of a new byte.
            self.buf.push((value << (8 - remaining)) as u8);
            self.free_bits = 8 - remaining;
        }
    }

    fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x & 0x7f) | 0x80, 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    fn write_varint(&mut self, x: i64) {
        // Zigzag: small magnitudes of either sign get short encodings.
        let mut ux = (x as u64) << 1;
        if x < 0 {
            ux = !ux;
        }
        self.write_uvarint(ux);
    }

    fn write_dod(&mut self, dod: i64) {
        // The bucket payload is the low n bits of the two's complement.
        // A bucket's prefix and payload go in one write.
        let bucket =
            |prefix: u64, nbits: u32| (prefix << nbits) | (dod as u64 & ((1 << nbits) - 1));
        if dod == 0 {
            self.write_bit(false);
        } else if fits_bits(dod, 14) {
            self.write_bits(bucket(0b10, 14), 2 + 14);
        } else if fits_bits(dod, 17) {
            self.write_bits(bucket(0b110, 17), 3 + 17);
        } else if fits_bits(dod, 20) {
            self.write_bits(bucket(0b1110, 20), 4 + 20);
        } else {
            self.write_bits(0b1111, 4);
            self.write_bits(dod as u64, 64);
        }
    }

    fn write_value(&mut self, v_bits: u64) {
        let xor = v_bits ^ self.v_bits;
        if xor == 0 {
            self.write_bit(false);
            return;
        }

        // The leading-zero count has a 5-bit field: clamp as Prometheus does.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;

        // The control bits go in one write, the meaningful bits in another.
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            // Changed ('1'), within the previous window ('0').
            self.write_bits(0b10, 2);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.write_bits(xor >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            // 64 significant bits do not fit in 6 bits; it is written as 0
            // (0 itself never occurs since xor != 0) and read back as 64.
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            // Changed ('1'), a new window ('1'), its leading zeros (5 bits)
            // and length (6 bits).
            let control = 0b11 << 11 | u64::from(leading) << 6 | (u64::from(sig) & 0x3f);
            self.write_bits(control, 13);
            self.write_bits(xor >> trailing, sig);
        }
    }
}

/// Prometheus' `bitRange`: whether `x` goes in an `nbits` bucket. The range
/// is `-(2^(n-1) - 1) ..= 2^(n-1)`, one off from two's complement: the
/// pattern `1000…0` means `+2^(n-1)`, and the reader decodes it as such.
fn fits_bits(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Decodes every sample of a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    iter(bytes).collect()
}

/// Iterator form, decoding lazily.
pub fn iter(bytes: &[u8]) -> XorIter<'_> {
    XorIter::new(bytes)
}

/// Encodes samples (strictly increasing t) into chunks of at most SAMPLES_PER_CHUNK samples.
pub fn encode_all(samples: &[(i64, f64)]) -> Vec<Vec<u8>> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|batch| {
            let mut appender = XorAppender::new();
            for &(t, v) in batch {
                appender.append(t, v);
            }
            appender.bytes().to_vec()
        })
        .collect()
}

/// Why reading a varint failed.
enum VarintError {
    Truncated,
    Overflow,
}

/// Lazily decodes the samples of one chunk.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    /// Reads zero bits past the end; `body_bits` tells truncation apart.
    reader: MsbReader<'a>,
    body_bits: usize,
    total: usize,
    read: usize,
    t: i64,
    v_bits: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// An error to yield before stopping (a short header, or a failure).
    pending_error: Option<ChunkError>,
    done: bool,
}

impl<'a> XorIter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let (total, body, pending_error) = match bytes {
            [hi, lo, body @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), body, None),
            _ => (
                0,
                &[][..],
                Some(ChunkError::MissingHeader { len: bytes.len() }),
            ),
        };
        XorIter {
            reader: MsbReader::new(body),
            body_bits: body.len() * 8,
            total,
            read: 0,
            t: 0,
            v_bits: 0,
            t_delta: 0,
            // Prometheus' reader starts from a zero window, not 0xff.
            leading: 0,
            trailing: 0,
            pending_error,
            done: false,
        }
    }

    /// Number of samples the header announces.
    pub fn total(&self) -> usize {
        self.total
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            sample: self.read,
            total: self.total,
        }
    }

    fn corrupt(&self, reason: &'static str) -> ChunkError {
        ChunkError::Corrupt {
            sample: self.read,
            reason,
        }
    }

    /// Go's `binary.ReadUvarint`, over the bit stream.
    fn read_uvarint(&mut self) -> Result<u64, VarintError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            if self.reader.bit_pos() + 8 > self.body_bits {
                return Err(VarintError::Truncated);
            }
            let byte = self.reader.read(8) as u8;
            if byte < 0x80 {
                if i == MAX_VARINT_LEN - 1 && byte > 1 {
                    return Err(VarintError::Overflow);
                }
                return Ok(x | (u64::from(byte) << shift));
            }
            x |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        Err(VarintError::Overflow)
    }

    fn varint_error(&self, err: VarintError) -> ChunkError {
        match err {
            VarintError::Truncated => self.truncated(),
            VarintError::Overflow => self.corrupt("varint overflows 64 bits"),
        }
    }

    /// The next sample; reading past the end of the body is truncation,
    /// whatever the zero bits read there decoded to.
    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        let sample = self.decode_sample();
        if self.reader.bit_pos() > self.body_bits {
            return Err(self.truncated());
        }
        sample
    }

    fn decode_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        match self.read {
            0 => {
                let ux = self.read_uvarint().map_err(|e| self.varint_error(e))?;
                // Undo the zigzag.
                let mut t = (ux >> 1) as i64;
                if ux & 1 != 0 {
                    t = !t;
                }
                self.t = t;
                self.v_bits = self.reader.read(64);
            }
            1 => {
                self.t_delta = self.read_uvarint().map_err(|e| self.varint_error(e))?;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
        }
        Ok((self.t, f64::from_bits(self.v_bits)))
    }

    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        // Up to four prefix bits: the ones before the first zero.
        let ones = self.reader.peek().leading_ones().min(4);
        self.reader.skip(if ones == 4 { 4 } else { ones + 1 });
        let size = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(self.reader.read(64) as i64),
        };
        let mut bits = self.reader.read(size);
        // Sign-extend, with Prometheus' asymmetric range: exactly 2^(n-1)
        // stays positive (see `fits_bits`).
        if bits > 1 << (size - 1) {
            bits = bits.wrapping_sub(1 << size);
        }
        Ok(bits as i64)
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        let control = self.reader.peek() >> 62;
        if control < 0b10 {
            // Same value as before.
            self.reader.skip(1);
            return Ok(());
        }
        self.reader.skip(2);
        if control == 0b11 {
            // A new window: 5 bits of leading zeros, 6 of significant bits.
            let header = self.reader.read(11);
            let leading = (header >> 6) as u8;
            let mut sig = (header & 0x3f) as u8;
            if sig == 0 {
                sig = 64;
            }
            if u32::from(leading) + u32::from(sig) > 64 {
                return Err(self.corrupt("xor window wider than 64 bits"));
            }
            self.leading = leading;
            self.trailing = 64 - leading - sig;
        }
        let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let bits = self.reader.read(sig);
        self.v_bits ^= bits << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(err) = self.pending_error.take() {
            self.done = true;
            return Some(Err(err));
        }
        if self.read >= self.total {
            self.done = true;
            return None;
        }
        match self.next_sample() {
            Ok(sample) => {
                self.read += 1;
                Some(Ok(sample))
            }
            Err(err) => {
                // Later samples depend on this one: stop after the error.
                self.done = true;
                Some(Err(err))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let left = self.total - self.read;
        // An error may stand in for the rest, so at least zero or one items.
        (left.min(1), Some(left + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus' stale marker, a NaN with a specific payload.
    const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

    fn encode(samples: &[(i64, f64)]) -> XorAppender {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        app
    }

    fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let app = encode(samples);
        let decoded = decode(app.bytes()).expect("decodes");
        assert_eq!(bits(&decoded), bits(samples));
    }

    #[test]
    fn hand_computed_small_chunk() {
        // (1000, 1.0), (2000, 1.0), (3000, 2.0):
        // header: 3 samples                          -> 00 03
        // t0 = 1000: zigzag 2000 = 0b1111_101_0000 as uvarint:
        //   low 7 bits 0x50 | 0x80 = D0, then 2000 >> 7 = 0x0F -> D0 0F
        // v0 = 1.0 = 0x3FF0_0000_0000_0000            -> 3F F0 00 00 00 00 00 00
        // delta 1000 = 0x3E8 as uvarint: 0x68|0x80, 7 -> E8 07
        // v1 xor v0 = 0                               -> bit 0
        // dod 0                                       -> bit 0
        // v2 xor v1 = 0x4000.. ^ 0x3FF0.. = 0x7FF0_0000_0000_0000:
        //   leading 1, trailing 52, no window yet -> 1 1, leading 00001,
        //   sigbits 11 = 001011, then 0x7FF = 111_1111_1111
        // bits: 0 0 11 00001 001011 11111111111 (26 bits, 6 padding)
        //   = 00110000 10010111 11111111 11000000   -> 30 97 FF C0
        let app = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
        let expected = [
            0x00, 0x03, 0xD0, 0x0F, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xE8, 0x07, 0x30, 0x97, 0xFF,
            0xC0,
        ];
        assert_eq!(app.bytes(), &expected[..]);
    }

    #[test]
    fn hand_computed_buckets_and_window_reuse() {
        // (0, 1.0), (10, 1.0), (8212, 2.0), (8213, 4.0):
        // header 00 04; t0 = 0 -> 00; v0 -> 3F F0 00 00 00 00 00 00
        // delta 10 -> 0A; v1 same -> 0
        // t2: delta 8202, dod 8192 = 2^13: still the 14-bit bucket
        //   (Prometheus' range is -8191..=8192) -> 10 + 10_0000_0000_0000
        // v2: xor 0x7FF0.. -> 1 1 00001 001011 11111111111
        // t3: delta 1, dod -8201 < -8191 -> 17-bit bucket:
        //   110 + (2^17 - 8201 = 122871) = 1_1101_1111_1111_0111
        // v3: 4.0 ^ 2.0 = 0x0010_0000_0000_0000, leading 11 >= 1 and
        //   trailing 52 >= 52 -> reuse window: 1 0 + 11 bits 000_0000_0001
        // 74 bits: 01010000 00000000 01100001 00101111 11111111
        //          11101110 11111111 10111100 00000000 01(000000)
        let app = encode(&[(0, 1.0), (10, 1.0), (8212, 2.0), (8213, 4.0)]);
        let expected = [
            0x00, 0x04, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x0A, 0x50, 0x00, 0x61, 0x2F, 0xFF,
            0xEE, 0xFF, 0xBC, 0x00, 0x40,
        ];
        assert_eq!(app.bytes(), &expected[..]);
        assert_round_trip(&[(0, 1.0), (10, 1.0), (8212, 2.0), (8213, 4.0)]);
    }

    #[test]
    fn empty_chunk_is_just_a_header() {
        let app = XorAppender::new();
        assert_eq!(app.bytes(), &[0, 0]);
        assert!(app.is_empty());
        assert_eq!(app.min_time(), None);
        assert_eq!(app.max_time(), None);
        assert_eq!(app.last(), None);
        assert_eq!(decode(app.bytes()).expect("decodes"), vec![]);
    }

    #[test]
    fn bucket_boundaries_round_trip() {
        // Step the delta-of-delta across each bucket edge, both signs.
        let mut dods = vec![0i64];
        for n in [14u32, 17, 20] {
            let half = 1i64 << (n - 1);
            dods.extend([half, half + 1, -(half - 1), -half, -(half + 1)]);
        }
        let mut samples = vec![(0i64, 0.0), (1_000_000, 1.0)];
        let mut delta = 1_000_000i64;
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            let (t, _) = samples[samples.len() - 1];
            samples.push((t + delta, i as f64));
        }
        assert_round_trip(&samples);
    }

    #[test]
    fn fits_bits_matches_prometheus_range() {
        assert!(fits_bits(8192, 14));
        assert!(!fits_bits(8193, 14));
        assert!(fits_bits(-8191, 14));
        assert!(!fits_bits(-8192, 14));
    }

    #[test]
    fn special_values_keep_their_bits() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let other_nan = f64::from_bits(0xfff8_0000_0000_0001);
        let samples = [
            (1, f64::NAN),
            (2, stale),
            (3, f64::INFINITY),
            (4, f64::NEG_INFINITY),
            (5, stale),
            (6, -0.0),
            (7, 0.0),
            (8, other_nan),
            (9, f64::MIN_POSITIVE),
            (10, f64::from_bits(1)),
            (11, f64::MAX),
            (12, stale),
        ];
        assert_round_trip(&samples);
        let decoded = decode(encode(&samples).bytes()).expect("decodes");
        assert_eq!(decoded[1].1.to_bits(), STALE_NAN_BITS);
        assert_eq!(decoded[11].1.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn stale_marker_as_first_and_only_sample() {
        let app = encode(&[(42, f64::from_bits(STALE_NAN_BITS))]);
        assert_eq!(
            app.last().map(|(t, v)| (t, v.to_bits())),
            Some((42, STALE_NAN_BITS))
        );
        assert_round_trip(&[(42, f64::from_bits(STALE_NAN_BITS))]);
    }

    #[test]
    fn full_width_xor_uses_64_significant_bits() {
        // 0.0 ^ -NaN(all ones) has no leading or trailing zeros: sigbits 64
        // is written as 0.
        assert_round_trip(&[(1, 0.0), (2, f64::from_bits(u64::MAX)), (3, 0.0)]);
    }

    #[test]
    fn negative_and_huge_timestamps() {
        assert_round_trip(&[(-5_000, 1.0), (-4_000, 2.0), (-1, 3.0), (0, 4.0), (7, 5.0)]);
        assert_round_trip(&[
            (i64::MIN, 1.0),
            (i64::MIN + 1, 1.0),
            (i64::MAX - 1, 2.0),
            (i64::MAX, 3.0),
        ]);
        assert_round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
        assert_round_trip(&[(i64::MAX, 1.0)]);
        assert_round_trip(&[(i64::MIN, 1.0)]);
        assert_round_trip(&[(-1, 1.0), (i64::MAX, 1.0), (i64::MAX, 1.0)]);
    }

    #[test]
    fn irregular_intervals() {
        let samples = [
            (1_700_000_000_000, 1.0),
            (1_700_000_015_000, 2.5),
            (1_700_000_015_001, 2.5),
            (1_700_000_030_000, -3.0),
            (1_700_003_600_000, 1e300),
            (1_700_003_600_007, 1e-300),
            (1_800_000_000_000, 0.1),
            (1_800_000_000_001, 0.2),
        ];
        assert_round_trip(&samples);
        let app = encode(&samples);
        assert_eq!(app.min_time(), Some(1_700_000_000_000));
        assert_eq!(app.max_time(), Some(1_800_000_000_001));
        assert_eq!(app.len(), samples.len());
    }

    #[test]
    fn bytes_decode_after_every_append() {
        let mut app = XorAppender::new();
        let mut expected = Vec::new();
        for i in 0..SAMPLES_PER_CHUNK as i64 {
            let t = i * 15_000 + (i % 7) * 13;
            let v = if i % 11 == 0 {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                (i as f64).sqrt()
            };
            app.append(t, v);
            expected.push((t, v));
            let decoded = decode(app.bytes()).expect("decodes");
            assert_eq!(bits(&decoded), bits(&expected));
            assert_eq!(app.len(), expected.len());
        }
    }

    #[test]
    fn encode_all_cuts_chunks() {
        assert!(encode_all(&[]).is_empty());
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (i * 10, i as f64)).collect();
        let chunks = encode_all(&samples);
        assert_eq!(chunks.len(), 3);
        let mut decoded = Vec::new();
        for chunk in &chunks {
            let part = decode(chunk).expect("decodes");
            assert!(part.len() <= SAMPLES_PER_CHUNK);
            decoded.extend(part);
        }
        assert_eq!(bits(&decoded), bits(&samples));
    }

    #[test]
    fn truncated_and_short_input_is_an_error() {
        assert_eq!(decode(&[]), Err(ChunkError::MissingHeader { len: 0 }));
        assert_eq!(decode(&[0]), Err(ChunkError::MissingHeader { len: 1 }));
        let app = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
        let bytes = app.bytes();
        for cut in HEADER_LEN..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(ChunkError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        // A header claiming more samples than the stream holds.
        let mut lying = bytes.to_vec();
        lying[1] = 200;
        assert!(decode(&lying).is_err());
    }

    #[test]
    fn trailing_padding_bytes_are_ignored() {
        // Prometheus before 3.0 sometimes wrote one extra zero byte.
        let app = encode(&[(1, 1.0), (2, 2.0)]);
        let mut padded = app.bytes().to_vec();
        padded.push(0);
        assert_eq!(
            bits(&decode(&padded).expect("decodes")),
            vec![(1, 1.0f64.to_bits()), (2, 2.0f64.to_bits())]
        );
    }

    #[test]
    fn iterator_stops_after_an_error() {
        let mut it = iter(&[0, 5, 0x01]);
        assert!(matches!(
            it.next(),
            Some(Err(ChunkError::Truncated {
                sample: 0,
                total: 5
            }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn varint_overflow_is_corrupt() {
        let mut bytes = vec![0, 1];
        bytes.extend([0xff; 10]);
        assert!(matches!(decode(&bytes), Err(ChunkError::Corrupt { .. })));
    }

    /// Strictly increasing timestamps: regular steps with jitter, irregular
    /// gaps, and occasional huge jumps.
    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        let step = prop_oneof![
            4 => Just(15_000i64),
            3 => 1i64..100_000,
            2 => 14_990i64..15_010,
            1 => 1i64..(1 << 40),
            1 => 1i64..i64::MAX / 300,
        ];
        (any::<i64>(), prop::collection::vec(step, 0..300)).prop_map(|(start, steps)| {
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
        })
    }

    fn values() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => any::<u64>().prop_map(f64::from_bits),
            2 => (0i32..100).prop_map(f64::from),
            1 => Just(f64::from_bits(STALE_NAN_BITS)),
            1 => Just(1.5),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(ts in timestamps(), vs in prop::collection::vec(values(), 300)) {
            let samples: Vec<(i64, f64)> = ts.iter().zip(vs.iter()).map(|(&t, &v)| (t, v)).collect();
            let mut app = XorAppender::new();
            for &(t, v) in &samples {
                app.append(t, v);
            }
            let decoded = decode(app.bytes()).expect("decodes");
            prop_assert_eq!(bits(&decoded), bits(&samples));
            let lazily: Result<Vec<_>, _> = iter(app.bytes()).collect();
            prop_assert_eq!(bits(&lazily.expect("decodes")), bits(&samples));
            let chunked: Vec<(i64, f64)> = encode_all(&samples)
                .iter()
                .flat_map(|c| decode(c).expect("decodes"))
                .collect();
            prop_assert_eq!(bits(&chunked), bits(&samples));
        }

        #[test]
        fn a_resumed_appender_goes_on_as_the_original(
            ts in timestamps(),
            vs in prop::collection::vec(values(), 300),
            split in 0usize..300,
        ) {
            let samples: Vec<(i64, f64)> = ts.iter().zip(vs.iter()).map(|(&t, &v)| (t, v)).collect();
            let split = split.min(samples.len());
            let mut original = encode(&samples[..split]);
            let mut resumed = XorAppender::resume(original.state()).expect("a real state resumes");
            for &(t, v) in &samples[split..] {
                original.append(t, v);
                resumed.append(t, v);
            }
            prop_assert_eq!(resumed.bytes(), original.bytes());
            prop_assert_eq!(resumed.len(), samples.len());
            prop_assert_eq!(resumed.min_time(), original.min_time());
            prop_assert_eq!(resumed.last().map(|(t, v)| (t, v.to_bits())), original.last().map(|(t, v)| (t, v.to_bits())));
        }

        #[test]
        fn resuming_any_state_never_panics_later(
            bytes in prop::collection::vec(any::<u8>(), 0..8),
            free_bits in any::<u8>(),
            leading in any::<u8>(),
            trailing in any::<u8>(),
            v_bits in any::<u64>(),
        ) {
            let state = XorAppenderState {
                bytes, free_bits, first_t: 0, t: 0, v_bits, t_delta: 0, leading, trailing,
            };
            if let Ok(mut app) = XorAppender::resume(state)
                && !app.is_full()
            {
                app.append(15_000, 1.5);
            }
        }

        #[test]
        fn any_timestamps_round_trip_with_wrapping(ts in prop::collection::vec(any::<i64>(), 0..50)) {
            // Even out-of-order input survives, thanks to wrapping arithmetic.
            let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, t as f64)).collect();
            let decoded = decode(encode(&samples).bytes()).expect("decodes");
            prop_assert_eq!(bits(&decoded), bits(&samples));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
