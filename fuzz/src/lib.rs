//! Helpers shared by the fuzz targets in `fuzz_targets/` and by the seed
//! generator in `examples/seeds.rs`. Nothing here is fuzzed itself.

use strata_frontend::LimitsConfig;

/// Decompresses a snappy block the way the frontend's remote-write and
/// remote-read handlers do (their `decompress` is private to the crate):
/// the body limit first, then snappy's declared length against the
/// decompressed-body limit, and only then the allocation.
pub fn decompress_like_frontend(body: &[u8], limits: &LimitsConfig) -> Option<Vec<u8>> {
    if body.len() > limits.max_request_body_bytes {
        return None;
    }
    let declared = snap::raw::decompress_len(body).ok()?;
    if declared > limits.max_decompressed_body_bytes {
        return None;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the declared length was checked above"
    )]
    let decoded = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    // Snappy writes exactly the length it declared.
    assert_eq!(
        decoded.len(),
        declared,
        "snappy output differs from its declared length"
    );
    Some(decoded)
}

/// WAL segment header: magic and format version (`crates/store-node/src/wal.rs`).
pub const WAL_HEADER: &[u8; 5] = b"SWAL\x01";

/// Frames one WAL record: `len u32 LE | crc32c u32 LE | payload`.
pub fn wal_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The `wal_replay` target's input layout, shared with the seed generator.
///
/// Byte 0 holds flags, the rest is the body:
///
/// * bit 0 clear: the body is written as the segment file, as is (header
///   included, or not).
/// * bit 0 set: the segment is the WAL header followed by the body cut into
///   records, each `u16 LE length | payload`, every one framed with a
///   correct length and CRC so payloads reach the record decoder; a last
///   piece too short for its length is appended unframed (a torn tail).
/// * bit 1 set: the segment bytes are split in two segment files at the
///   offset in bytes 1-2 (u16 LE, taken modulo the length); the second
///   gets a header of its own when bit 0 is set. Damage then sits in an
///   earlier segment, which replay treats differently from the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalLayout {
    pub framed: bool,
    pub split: bool,
}

impl WalLayout {
    pub const FRAMED: u8 = 1;
    pub const SPLIT: u8 = 2;

    pub fn from_flags(flags: u8) -> Self {
        WalLayout {
            framed: flags & Self::FRAMED != 0,
            split: flags & Self::SPLIT != 0,
        }
    }
}

/// Builds the segment files (in order) for a `wal_replay` input.
pub fn wal_segments(input: &[u8]) -> Vec<Vec<u8>> {
    let Some((&flags, rest)) = input.split_first() else {
        return Vec::new();
    };
    let layout = WalLayout::from_flags(flags);
    let (split_at, body) = if layout.split && rest.len() >= 2 {
        (Some(u16::from_le_bytes([rest[0], rest[1]])), &rest[2..])
    } else {
        (None, rest)
    };
    let segment = if layout.framed {
        let mut out = WAL_HEADER.to_vec();
        let mut body = body;
        while let [lo, hi, tail @ ..] = body {
            let len = usize::from(u16::from_le_bytes([*lo, *hi]));
            if len > tail.len() {
                break;
            }
            wal_frame(&mut out, &tail[..len]);
            body = &tail[len..];
        }
        out.extend_from_slice(body);
        out
    } else {
        body.to_vec()
    };
    match split_at {
        None => vec![segment],
        Some(at) => {
            let at = if segment.is_empty() {
                0
            } else {
                usize::from(at) % segment.len()
            };
            let (first, second) = segment.split_at(at);
            let mut second_file = Vec::new();
            if layout.framed {
                second_file.extend_from_slice(WAL_HEADER);
            }
            second_file.extend_from_slice(second);
            vec![first.to_vec(), second_file]
        }
    }
}

/// Encodes a `wal_replay` input whose records are `payloads`, framed.
pub fn wal_input(payloads: &[Vec<u8>], split_at: Option<u16>) -> Vec<u8> {
    let mut flags = WalLayout::FRAMED;
    if split_at.is_some() {
        flags |= WalLayout::SPLIT;
    }
    let mut out = vec![flags];
    if let Some(at) = split_at {
        out.extend_from_slice(&at.to_le_bytes());
    }
    for payload in payloads {
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&payload[..usize::from(len)]);
    }
    out
}

/// Splits fuzz input into at most `n` fields separated by `0xff`, a byte
/// that never occurs in UTF-8, lossily decoded. Missing fields are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |&b| b == 0xff)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}
