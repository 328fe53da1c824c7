//! Byte and bit level helpers of the chunk encodings: varints, a
//! bounds-checked cursor, fixed-width bit packing (least significant bit
//! first, for integer sections) and an MSB-first bit stream (for XOR
//! chunks and the compact chunk's XOR value section).
//!
//! Every reader here is total: reading past the end yields zero bits or a
//! `None`, never a panic, and callers check lengths before trusting them.

/// Longest uvarint of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Zigzag: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `x` as a LEB128 uvarint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Appends `x` zigzagged as a uvarint.
pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, zigzag(x));
}

/// Bytes [`put_uvarint`] writes for `x`.
pub(crate) fn uvarint_len(x: u64) -> usize {
    let bits = 64 - (x | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes [`put_varint`] writes for `x`.
pub(crate) fn varint_len(x: i64) -> usize {
    uvarint_len(zigzag(x))
}

/// Bits needed to hold every value up to `max`.
pub(crate) fn bit_width(max: u64) -> u32 {
    64 - max.leading_zeros()
}

/// Bytes of `count` values packed at `width` bits.
pub(crate) fn packed_len(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(8)
}

/// The low `width` bits set (`width` at most 64).
pub(crate) fn low_mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// Appends `values` packed at `width` bits each: value `i` occupies bits
/// `i * width ..` of the little-endian bit string, least significant first.
/// Exactly [`packed_len`] bytes are appended.
pub(crate) fn pack(out: &mut Vec<u8>, values: &[u64], width: u32) {
    if width == 0 {
        return;
    }
    let mask = u128::from(low_mask(width));
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for &value in values {
        acc |= (u128::from(value) & mask) << filled;
        filled += width;
        if filled >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            filled -= 64;
        }
    }
    let tail = filled.div_ceil(8) as usize;
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..tail]);
}

/// Eight bytes big-endian from `at`, zero-filled past the end.
#[inline]
fn load_be(data: &[u8], at: usize) -> u64 {
    match data.get(at..at + 8) {
        Some(bytes) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            u64::from_be_bytes(word)
        }
        None => {
            let mut word = [0u8; 8];
            let tail = data.get(at..).unwrap_or(&[]);
            word[..tail.len()].copy_from_slice(tail);
            u64::from_be_bytes(word)
        }
    }
}

/// Reads back, in order, the values [`pack`] wrote. Each value is one
/// unaligned 8-byte load (two for widths above 56), independent of the
/// previous one; the section's last bytes are read from a zero-padded copy.
#[derive(Debug, Clone)]
pub(crate) struct Unpacker<'a> {
    data: &'a [u8],
    /// The last (up to) 8 bytes of `data`, then zeros.
    tail: [u8; 16],
    /// Where `tail` starts in `data`.
    tail_start: usize,
    /// Bit position of the next value.
    bit: usize,
    width: u32,
    mask: u64,
}

impl<'a> Unpacker<'a> {
    /// `width` must be at most 64 (the caller validates it).
    pub(crate) fn new(data: &'a [u8], width: u32) -> Self {
        let tail_start = data.len().saturating_sub(8);
        let mut tail = [0u8; 16];
        let last = data.get(tail_start..).unwrap_or(&[]);
        tail[..last.len()].copy_from_slice(last);
        Unpacker {
            data,
            tail,
            tail_start,
            bit: 0,
            width,
            mask: low_mask(width),
        }
    }

    /// Eight bytes little-endian from byte `at`, zeros past the end.
    #[inline]
    fn word(&self, at: usize) -> u64 {
        let bytes = match self.data.get(at..at + 8) {
            Some(bytes) => bytes,
            None => {
                let offset = at.saturating_sub(self.tail_start);
                match self.tail.get(offset..offset + 8) {
                    Some(bytes) => bytes,
                    None => return 0,
                }
            }
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    }

    /// The next value; zero bits past the end of the section.
    #[inline]
    pub(crate) fn next_value(&mut self) -> u64 {
        // Constant deltas are common: no loads at all then.
        if self.width == 0 {
            return 0;
        }
        let byte = self.bit / 8;
        let shift = (self.bit % 8) as u32;
        self.bit += self.width as usize;
        let low = self.word(byte) >> shift;
        if shift + self.width <= 64 {
            low & self.mask
        } else {
            // Only widths above 56 straddle nine bytes; shift is 1..=7 here.
            let high = self.word(byte + 8) << (64 - shift);
            (low | high) & self.mask
        }
    }
}

/// A bounds-checked reader of a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let byte = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        let bytes = self.bytes(8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        Some(u64::from_le_bytes(word))
    }

    /// The next `len` bytes, if there are that many.
    pub(crate) fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// A LEB128 uvarint of at most 64 bits.
    pub(crate) fn uvarint(&mut self) -> Result<u64, VarintError> {
        let mut x = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.u8().ok_or(VarintError::Truncated)?;
            let payload = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && byte > 1 {
                return Err(VarintError::Overflow);
            }
            x |= payload << (7 * i);
            if byte < 0x80 {
                return Ok(x);
            }
        }
        Err(VarintError::Overflow)
    }

    pub(crate) fn varint(&mut self) -> Result<i64, VarintError> {
        self.uvarint().map(unzigzag)
    }
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    Truncated,
    Overflow,
}

/// Writes bits most significant first.
#[derive(Debug, Default)]
pub(crate) struct MsbWriter {
    out: Vec<u8>,
    /// The low `pending` bits are not flushed yet.
    acc: u64,
    pending: u32,
}

impl MsbWriter {
    /// Writes the low `bits` (at most 64) bits of `value`.
    pub(crate) fn write(&mut self, value: u64, bits: u32) {
        if bits > 32 {
            self.write(value >> 32, bits - 32);
            self.write(value & 0xffff_ffff, 32);
            return;
        }
        if bits == 0 {
            return;
        }
        self.acc = (self.acc << bits) | (value & low_mask(bits));
        self.pending += bits;
        while self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
        }
    }

    /// The bytes, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.out.push((self.acc << (8 - self.pending)) as u8);
        }
        self.out
    }
}

/// Reads bits most significant first; zero bits past the end (the caller
/// compares [`MsbReader::bit_pos`] with the length when done).
#[derive(Debug, Clone)]
pub(crate) struct MsbReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> MsbReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        MsbReader { data, pos: 0 }
    }

    /// The next 64 bits without consuming them; at least the top 57 are
    /// real stream bits (or zeros past the end).
    #[inline]
    pub(crate) fn peek(&self) -> u64 {
        load_be(self.data, self.pos / 8) << (self.pos % 8)
    }

    #[inline]
    pub(crate) fn skip(&mut self, bits: u32) {
        self.pos += bits as usize;
    }

    /// Reads `bits` bits, 1 to 64.
    #[inline]
    pub(crate) fn read(&mut self, bits: u32) -> u64 {
        if bits <= 56 {
            let value = self.peek() >> (64 - bits);
            self.pos += bits as usize;
            value
        } else {
            let high = self.read(bits - 32);
            (high << 32) | self.read(32)
        }
    }

    /// Bits consumed so far.
    pub(crate) fn bit_pos(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_lengths_match() {
        for x in [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, x);
            assert_eq!(out.len(), varint_len(x), "{x}");
            let mut cursor = Cursor::new(&out);
            assert_eq!(cursor.varint(), Ok(x));
            assert!(cursor.is_empty());
        }
        let mut cursor = Cursor::new(&[0xff; 10]);
        assert_eq!(cursor.uvarint(), Err(VarintError::Overflow));
        let mut cursor = Cursor::new(&[0x80]);
        assert_eq!(cursor.uvarint(), Err(VarintError::Truncated));
    }

    #[test]
    fn packing_round_trips_every_width() {
        for width in 0..=64u32 {
            let values: Vec<u64> = (0..37u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & low_mask(width))
                .collect();
            let mut out = Vec::new();
            pack(&mut out, &values, width);
            assert_eq!(out.len(), packed_len(values.len(), width), "width {width}");
            let mut unpacker = Unpacker::new(&out, width);
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(unpacker.next_value(), v, "width {width} index {i}");
            }
            assert_eq!(unpacker.next_value(), 0, "zeros past the end");
        }
    }

    #[test]
    fn msb_stream_round_trips() {
        let items = [
            (1u64, 1u32),
            (0, 1),
            (0x1f, 5),
            (u64::MAX, 64),
            (5, 3),
            (1 << 56, 57),
        ];
        let mut writer = MsbWriter::default();
        for &(v, n) in &items {
            writer.write(v, n);
        }
        let bytes = writer.finish();
        let mut reader = MsbReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(reader.read(n), v & low_mask(n));
        }
        assert_eq!(reader.bit_pos().div_ceil(8), bytes.len());
    }
}
