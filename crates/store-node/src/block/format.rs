//! Byte-level pieces of the block format shared by the writer and the
//! reader: varints, a bounds-checked reader, section framing and the chunk
//! record layout. See [`crate::block`] for the whole format.

use std::fmt;

/// Magic at the start and end of an index file.
pub const INDEX_MAGIC: &[u8; 4] = b"SIDX";
/// Magic at the start of a chunk segment file.
pub const CHUNKS_MAGIC: &[u8; 4] = b"SCHK";
/// Format version written after either magic and in `meta.json`.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the first record of a chunk segment (magic + version).
pub const CHUNKS_HEADER_LEN: usize = 5;
/// A chunk segment is closed once it reaches this size.
pub const MAX_SEGMENT_SIZE: u64 = 512 << 20;

/// Chunk record encoding of Prometheus XOR float chunks (as `prompb`).
pub const ENCODING_XOR: u8 = 1;
/// Chunk record encoding of Strata's compact float chunks
/// (`strata_common::compact_chunk`), the encoding blocks are written in.
pub const ENCODING_COMPACT: u8 = 64;
/// Chunk record encoding of a run of native histograms: length-delimited
/// `prometheus.Histogram` messages, time-ordered. Internal to Strata.
pub const ENCODING_HISTOGRAMS: u8 = 65;

/// The sections of an index file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Symbols,
    Series,
    SeriesOffsets,
    Postings,
    PostingsTable,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Symbols,
        Section::Series,
        Section::SeriesOffsets,
        Section::Postings,
        Section::PostingsTable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Symbols => "symbols",
            Section::Series => "series",
            Section::SeriesOffsets => "series offsets",
            Section::Postings => "postings",
            Section::PostingsTable => "postings table",
        }
    }
}

/// One entry of the index footer: where a section is and its checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SectionRef {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// Footer: one [`SectionRef`] per section (20 bytes each), the CRC32C of
/// those bytes, then the magic.
pub const FOOTER_LEN: usize = Section::ALL.len() * 20 + 4 + 4;

/// Damaged or unexpected bytes, with what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct FormatError {
    pub what: String,
    pub reason: String,
}

impl FormatError {
    pub fn new(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        FormatError {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads values from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the structure in errors ("series entry", ...).
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    fn error(&self, reason: &str) -> FormatError {
        FormatError::new(self.what, format!("{reason} at byte {}", self.pos))
    }

    pub fn uvarint(&mut self) -> Result<u64, FormatError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| self.error("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    pub fn varint(&mut self) -> Result<i64, FormatError> {
        let raw = self.uvarint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A uvarint that must fit a `usize` no larger than `max`.
    pub fn length(&mut self, max: usize) -> Result<usize, FormatError> {
        let value = self.uvarint()?;
        usize::try_from(value)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| self.error("length out of range"))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error("truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error("truncated"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let len = self.length(self.bytes.len())?;
        self.take(len)
    }

    pub fn u32_le(&mut self) -> Result<u32, FormatError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, FormatError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }
}

/// Encodes the footer of an index file.
pub fn encode_footer(sections: &[SectionRef; 5]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FOOTER_LEN);
    for section in sections {
        out.extend_from_slice(&section.offset.to_le_bytes());
        out.extend_from_slice(&section.len.to_le_bytes());
        out.extend_from_slice(&section.crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(INDEX_MAGIC);
    out
}

/// Decodes and checks an index file's footer (the file's last bytes).
pub fn decode_footer(file: &[u8]) -> Result<[SectionRef; 5], FormatError> {
    if file.len() < 5 + FOOTER_LEN || &file[..4] != INDEX_MAGIC {
        return Err(FormatError::new("index", "missing header or footer"));
    }
    if file[4] != FORMAT_VERSION {
        return Err(FormatError::new(
            "index",
            format!("unsupported format version {}", file[4]),
        ));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    if &footer[FOOTER_LEN - 4..] != INDEX_MAGIC {
        return Err(FormatError::new("index", "footer magic missing"));
    }
    let entries = &footer[..FOOTER_LEN - 8];
    let mut reader = Reader::new(&footer[FOOTER_LEN - 8..], "index footer");
    if reader.u32_le()? != crc32c::crc32c(entries) {
        return Err(FormatError::new("index footer", "checksum mismatch"));
    }
    let mut reader = Reader::new(entries, "index footer");
    let mut sections = [SectionRef::default(); 5];
    for section in &mut sections {
        section.offset = reader.u64_le()?;
        section.len = reader.u64_le()?;
        section.crc = reader.u32_le()?;
    }
    Ok(sections)
}

/// Appends one chunk record: `encoding u8 | len uvarint | data | crc32c`,
/// the checksum covering encoding, length and data.
pub fn put_chunk_record(out: &mut Vec<u8>, encoding: u8, data: &[u8]) {
    let start = out.len();
    out.push(encoding);
    put_bytes(out, data);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A chunk record read back from a segment.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRecord<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
}

/// Reads the chunk record at `offset` of a segment, checking its CRC.
pub fn read_chunk_record(segment: &[u8], offset: usize) -> Result<ChunkRecord<'_>, FormatError> {
    let Some(rest) = segment.get(offset..) else {
        return Err(FormatError::new(
            "chunk",
            format!("offset {offset} beyond segment end"),
        ));
    };
    let mut reader = Reader::new(rest, "chunk");
    let encoding = reader.u8()?;
    let data = reader.bytes()?;
    let covered = reader.pos;
    let crc = reader.u32_le()?;
    if crc != crc32c::crc32c(&rest[..covered]) {
        return Err(FormatError::new(
            "chunk",
            format!("checksum mismatch at offset {offset}"),
        ));
    }
    Ok(ChunkRecord { encoding, data })
}

/// A chunk reference: segment number in the high 32 bits, byte offset in
/// the low 32.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

pub fn split_chunk_ref(reference: u64) -> (u32, u32) {
    ((reference >> 32) as u32, reference as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(Reader::new(&out, "t").varint(), Ok(value));
        }
        let mut out = Vec::new();
        put_uvarint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(Reader::new(&out, "t").uvarint(), Ok(u64::MAX));
        assert!(Reader::new(&[0xff; 11], "t").uvarint().is_err());
        assert!(Reader::new(&[0x80], "t").uvarint().is_err());
    }

    #[test]
    fn chunk_records_detect_damage() {
        let mut segment = vec![0u8; 3];
        put_chunk_record(&mut segment, ENCODING_XOR, b"hello");
        let record = read_chunk_record(&segment, 3).expect("record");
        assert_eq!(
            (record.encoding, record.data),
            (ENCODING_XOR, &b"hello"[..])
        );
        segment[6] ^= 1;
        assert!(read_chunk_record(&segment, 3).is_err());
        assert!(read_chunk_record(&segment, 100).is_err());
        assert!(read_chunk_record(&segment[..8], 3).is_err());
    }

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let sections = [SectionRef {
            offset: 5,
            len: 7,
            crc: 9,
        }; 5];
        let mut file = INDEX_MAGIC.to_vec();
        file.push(FORMAT_VERSION);
        file.extend(encode_footer(&sections));
        assert_eq!(decode_footer(&file), Ok(sections));
        file[10] ^= 1;
        assert!(decode_footer(&file).is_err());
    }
}
