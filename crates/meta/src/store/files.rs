//! Framing and atomic replacement of the small files of the meta store.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// Bytes before each record's payload: length and CRC32C, both little endian.
pub(super) const FRAME_HEADER: usize = 8;

/// Largest record accepted when reading, so a corrupt length cannot make us
/// allocate gigabytes.
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Frames `payload` as `[len][crc][payload]`.
pub(super) fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Outcome of reading one record at the start of `bytes`.
pub(super) enum Unframed<'a> {
    /// A valid record and the total number of bytes it took.
    Record(&'a [u8], usize),
    /// Not a complete, valid record (torn write or corruption).
    Invalid,
}

/// Reads the record at the start of `bytes`.
pub(super) fn unframe(bytes: &[u8]) -> Unframed<'_> {
    let Some(header) = bytes.get(..FRAME_HEADER) else {
        return Unframed::Invalid;
    };
    let mut len_bytes = [0u8; 4];
    let mut crc_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&header[..4]);
    crc_bytes.copy_from_slice(&header[4..]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD {
        return Unframed::Invalid;
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Unframed::Invalid;
    };
    if crc32c::crc32c(payload) != u32::from_le_bytes(crc_bytes) {
        return Unframed::Invalid;
    }
    Unframed::Record(payload, FRAME_HEADER + len)
}

/// Replaces `path` with one framed record holding `payload`, atomically:
/// readers see either the old or the new content, even after a crash.
pub(super) fn write_atomic(path: &Path, payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&frame(payload)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Reads a file written by [`write_atomic`]; `None` when it does not exist.
pub(super) fn read_atomic(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    match unframe(&bytes) {
        Unframed::Record(payload, used) if used == bytes.len() => Ok(Some(payload.to_vec())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is corrupt", path.display()),
        )),
    }
}

/// Makes a rename or a file creation in `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    OpenOptions::new().read(true).open(dir)?.sync_all()
}

/// Turns a serde error into an I/O error so every storage failure has one type.
pub(super) fn invalid_data(error: serde_json::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
