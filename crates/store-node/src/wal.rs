//! Write-ahead log of opaque byte records.
//!
//! The WAL knows nothing about what it stores: callers encode their typed
//! records into bytes and decode them again during replay.
//!
//! # On-disk format
//!
//! One WAL is one directory of segment files named by a zero-padded 8-digit
//! sequence number (`00000001`, `00000002`, ...). Every segment starts with a
//! 5-byte header, the magic `b"SWAL"` followed by the format version (`1`),
//! and then holds records framed as:
//!
//! ```text
//! len: u32 LE (payload length) | crc: u32 LE (CRC32C of payload) | payload
//! ```
//!
//! # Durability invariants
//!
//! * A segment is fully written and fsync'd before the next one is created,
//!   so after a crash only the highest-numbered segment can have a torn tail
//!   (the one exception is a segment abandoned after a write error, see
//!   [`Wal::append`]).
//! * A new segment's header is fsync'd, and then its directory, before any
//!   record goes into it, so a segment that exists after a crash has a valid
//!   header unless the crash happened while creating it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Magic bytes at the start of every segment.
const MAGIC: &[u8; 4] = b"SWAL";
/// Format version written after the magic.
const VERSION: u8 = 1;
/// Length of the segment header (magic + version).
const HEADER_LEN: u64 = 5;
/// Length of a record frame header (length + crc).
const FRAME_HEADER_LEN: u64 = 8;
/// Largest payload accepted on append and on replay. A bigger length found
/// during replay is garbage: refusing it keeps a damaged length field from
/// making us allocate gigabytes.
pub const MAX_RECORD_SIZE: usize = 256 * 1024 * 1024;
/// Default size at which segments rotate.
pub const DEFAULT_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;
/// Read buffer used while replaying a segment.
const REPLAY_BUFFER_SIZE: usize = 256 * 1024;

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before every append returns (default, safe: an acknowledged
    /// write survives power loss).
    Always,
    /// fsync at most this often; a crash of the machine (not of the process)
    /// may lose the last interval. The WAL spawns no thread: the sync happens
    /// inside [`Wal::append`] once the interval has elapsed, or when the owner
    /// calls [`Wal::sync_if_due`] from a timer.
    Interval(Duration),
}

/// How a [`Wal`] writes its segments.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When appended records are made durable.
    pub fsync: FsyncPolicy,
    /// Size in bytes at which the current segment is closed and a new one
    /// started. A record that does not fit in the remaining space starts a new
    /// segment; a record larger than this still goes (alone) into one segment.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: FsyncPolicy::Always,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Errors from the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The WAL directory could not be created or listed.
    #[error("opening wal directory {dir}")]
    Open {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading a segment during replay failed (an I/O error, not corruption).
    #[error("reading wal segment {segment}")]
    Read {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A segment does not start with a known magic and version: it is not a
    /// segment of this format and is left untouched.
    #[error(
        "wal segment {segment} has an unknown header (not a strata wal segment or unsupported version)"
    )]
    BadHeader { segment: PathBuf },
    /// Truncating a torn tail or rewriting a half-created header failed.
    #[error("repairing wal segment {segment}")]
    Repair {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The replay callback refused a record.
    #[error("replaying wal segment {segment} at offset {offset}: {message}")]
    Replay {
        segment: PathBuf,
        offset: u64,
        message: String,
    },
    /// A new segment file could not be created.
    #[error("creating wal segment {segment}")]
    CreateSegment {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory could not be fsync'd after creating or removing segments.
    #[error("syncing wal directory {dir}")]
    SyncDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a batch to a segment failed.
    #[error("appending to wal segment {segment}")]
    Append {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// fsync of a segment failed.
    #[error("syncing wal segment {segment}")]
    Sync {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An old segment could not be deleted.
    #[error("removing wal segment {segment}")]
    Remove {
        segment: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record is larger than [`MAX_RECORD_SIZE`].
    #[error("wal record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// Empty records are refused: an empty frame is eight zero bytes, which
    /// replay cannot tell apart from a zero-filled tail.
    #[error("empty wal record")]
    EmptyRecord,
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Segment files that existed when the WAL was opened.
    pub segments: usize,
    /// Records passed to the replay callback.
    pub records: u64,
    /// Payload bytes passed to the replay callback.
    pub bytes: u64,
    /// Bytes not replayed because they were torn, zero-filled or corrupt:
    /// truncated away from the last segment, or skipped in earlier ones.
    pub truncated_bytes: u64,
}

/// An open write-ahead log, appending to its newest segment.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// The segment being appended to.
    file: File,
    segment: u64,
    /// Size of the current segment, header included.
    segment_bytes: u64,
    /// Framed bytes appended since open.
    bytes_written: u64,
    /// Appended data not yet fsync'd.
    dirty: bool,
    last_sync: Instant,
    /// A write or fsync of the current segment failed, so its tail is in an
    /// unknown state: the next append starts a new segment instead of writing
    /// after possible garbage.
    broken: bool,
    /// Tests: the next write puts only this many bytes on disk and fails.
    #[cfg(test)]
    pub(crate) fail_next_write: Option<usize>,
}

/// Refuses empty records and records over [`MAX_RECORD_SIZE`] before
/// anything of a batch is written.
fn check_records<R: AsRef<[u8]>>(records: &[R]) -> Result<(), WalError> {
    for record in records {
        let len = record.as_ref().len();
        if len == 0 {
            return Err(WalError::EmptyRecord);
        }
        if len > MAX_RECORD_SIZE {
            return Err(WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_SIZE,
            });
        }
    }
    Ok(())
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, replaying every record in
    /// order through `on_record(segment_number, payload)` before returning.
    ///
    /// Damage is handled so that a crash never keeps the node from starting:
    ///
    /// * A torn or corrupt tail of the **last** segment (short length, crc or
    ///   payload, CRC mismatch, a zero length such as a zero-filled tail, or a
    ///   length above [`MAX_RECORD_SIZE`]) is truncated away at the first bad
    ///   record, with one `warn` naming segment, offset and bytes dropped.
    /// * Damage in an **earlier** segment is logged the same way and replay of
    ///   that segment stops at the bad record, but the file is left as is and
    ///   later segments are still replayed. Earlier segments were fsync'd
    ///   before their successor was created, so damage there is not a crash
    ///   artifact but either real corruption or a segment abandoned after a
    ///   write error; the records after it in later segments were acknowledged
    ///   independently and dropping them would lose more than necessary.
    /// * A last segment shorter than the header, or with an all-zero header,
    ///   was being created during a crash and is rewritten as header-only.
    ///   A header that is present but not ours is a [`WalError::BadHeader`].
    ///
    /// Appends then go to a fresh segment numbered after the existing ones,
    /// never after a repaired tail, so a file that was ever damaged is never
    /// written to again.
    ///
    /// `on_record` returning `Err` stops opening with [`WalError::Replay`].
    pub fn open(
        dir: &Path,
        options: WalOptions,
        on_record: impl FnMut(u64, &[u8]) -> Result<(), String>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        Wal::open_from(dir, options, 0, on_record)
    }

    /// [`Wal::open`], replaying only segments numbered `first_segment` or
    /// higher (the older ones are in a head snapshot); they stay on disk.
    pub fn open_from(
        dir: &Path,
        options: WalOptions,
        first_segment: u64,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<(), String>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        fs::create_dir_all(dir).map_err(|source| WalError::Open {
            dir: dir.to_path_buf(),
            source,
        })?;
        let segments = list_segments(dir)?;

        let mut stats = ReplayStats {
            segments: segments.len(),
            ..ReplayStats::default()
        };
        let mut payload = Vec::new();
        for (index, &number) in segments.iter().enumerate() {
            if number < first_segment {
                continue;
            }
            let is_last = index + 1 == segments.len();
            replay_segment(
                &segment_path(dir, number),
                is_last,
                &mut |payload: &[u8]| on_record(number, payload),
                &mut payload,
                &mut stats,
            )?;
        }

        let segment = segments.last().map_or(1, |last| last + 1);
        let file = create_segment(dir, segment)?;
        tracing::info!(
            dir = %dir.display(),
            segments = stats.segments,
            records = stats.records,
            bytes = stats.bytes,
            truncated_bytes = stats.truncated_bytes,
            segment,
            "wal opened"
        );
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            file,
            segment,
            segment_bytes: HEADER_LEN,
            bytes_written: 0,
            dirty: false,
            last_sync: Instant::now(),
            broken: false,
            #[cfg(test)]
            fail_next_write: None,
        };
        Ok((wal, stats))
    }

    /// Appends records as one batch: all are written, then (with
    /// [`FsyncPolicy::Always`]) fdatasync'd once, before returning.
    ///
    /// Records are validated first (non-empty, at most [`MAX_RECORD_SIZE`]),
    /// so an invalid record fails the batch before anything is written. A
    /// batch may span a segment rotation.
    ///
    /// On error nothing about the batch is guaranteed (the caller must not
    /// acknowledge it); part of it may be replayed after a restart. After a
    /// failed write or sync the current segment is abandoned and the next
    /// append starts a new one.
    ///
    /// Only for self-contained records: predicted sample records (format 2)
    /// depend on the segment they land in and must go through
    /// [`Wal::append_batch`], which encodes them for that segment.
    pub fn append(&mut self, records: &[&[u8]]) -> Result<(), WalError> {
        check_records(records)?;
        if records.is_empty() {
            return Ok(());
        }
        if self.broken {
            self.rotate()?;
        }

        let framed_len: usize = records
            .iter()
            .map(|r| FRAME_HEADER_LEN as usize + r.len())
            .sum();
        let mut pending = Vec::with_capacity(framed_len);
        for record in records {
            let frame_len = FRAME_HEADER_LEN + record.len() as u64;
            let used = self.segment_bytes + pending.len() as u64;
            // Rotate only when the segment already holds records, so a
            // record bigger than the segment size gets a segment of its own
            // instead of an endless rotation.
            if used > HEADER_LEN && used + frame_len > self.options.segment_size {
                self.write_pending(&mut pending)?;
                self.rotate()?;
            }
            // Lengths fit in u32: records were checked against MAX_RECORD_SIZE.
            pending.extend_from_slice(&(record.len() as u32).to_le_bytes());
            pending.extend_from_slice(&crc32c::crc32c(record).to_le_bytes());
            pending.extend_from_slice(record);
        }
        self.write_pending(&mut pending)?;

        match self.options.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Interval(_) => self.sync_if_due(),
        }
    }

    /// Appends one batch kept whole in one segment, for records encoded
    /// against what earlier records of their segment hold (the sample
    /// records' per-series prediction).
    ///
    /// First the segment is chosen: a new one when the current one is
    /// broken or already holds records and `size_hint` more bytes would
    /// pass the segment size. Then `encode(segment)` builds the records for
    /// it, and all of them are written there (the segment may end up a
    /// little larger than the size when the hint was low) and synced as
    /// [`Wal::append`] does. Returns the segment the batch went into.
    ///
    /// After any error the next batch starts a new segment, so records
    /// encoded against a batch that may be missing are never written after
    /// it.
    pub fn append_batch(
        &mut self,
        size_hint: u64,
        encode: impl FnOnce(u64) -> Vec<Vec<u8>>,
    ) -> Result<u64, WalError> {
        let result = self.append_batch_inner(size_hint, encode);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn append_batch_inner(
        &mut self,
        size_hint: u64,
        encode: impl FnOnce(u64) -> Vec<Vec<u8>>,
    ) -> Result<u64, WalError> {
        let holds_records = self.segment_bytes > HEADER_LEN;
        if self.broken
            || (holds_records
                && self.segment_bytes.saturating_add(size_hint) > self.options.segment_size)
        {
            self.rotate()?;
        }
        let segment = self.segment;
        let records = encode(segment);
        check_records(&records)?;
        if records.is_empty() {
            return Ok(segment);
        }
        let framed_len: usize = records
            .iter()
            .map(|r| FRAME_HEADER_LEN as usize + r.len())
            .sum();
        let mut pending = Vec::with_capacity(framed_len);
        for record in &records {
            // Lengths fit in u32: records were checked against MAX_RECORD_SIZE.
            pending.extend_from_slice(&(record.len() as u32).to_le_bytes());
            pending.extend_from_slice(&crc32c::crc32c(record).to_le_bytes());
            pending.extend_from_slice(record);
        }
        self.write_pending(&mut pending)?;
        match self.options.fsync {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Interval(_) => self.sync_if_due()?,
        }
        Ok(segment)
    }

    /// Forces durability of everything appended so far (used by interval
    /// flushing and on shutdown; dropping a `Wal` does not sync).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if !self.dirty {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages, so the tail of this segment can no longer be trusted.
            self.broken = true;
            return Err(WalError::Sync {
                segment: segment_path(&self.dir, self.segment),
                source,
            });
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs if there is unsynced data and the [`FsyncPolicy::Interval`] has
    /// elapsed since the last sync. With [`FsyncPolicy::Always`] there is
    /// never anything due. Meant to be called from the owner's timer.
    pub fn sync_if_due(&mut self) -> Result<(), WalError> {
        match self.options.fsync {
            FsyncPolicy::Interval(interval) if self.last_sync.elapsed() >= interval => self.sync(),
            _ => Ok(()),
        }
    }

    /// Directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of the segment being appended to.
    pub fn current_segment(&self) -> u64 {
        self.segment
    }

    /// Size in bytes of the current segment, header included.
    pub fn current_segment_size(&self) -> u64 {
        self.segment_bytes
    }

    /// Framed bytes appended since the WAL was opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Deletes segments numbered below `segment` (used once their data is
    /// durable elsewhere). Never deletes the current segment. Deletes oldest
    /// first, so a crash midway leaves a contiguous run of newer segments.
    pub fn truncate_before(&mut self, segment: u64) -> Result<(), WalError> {
        let limit = segment.min(self.segment);
        let mut removed = 0usize;
        for number in list_segments(&self.dir)? {
            if number >= limit {
                break;
            }
            let path = segment_path(&self.dir, number);
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                // Already gone: the goal is reached either way.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(WalError::Remove {
                        segment: path,
                        source,
                    });
                }
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        tracing::debug!(dir = %self.dir.display(), before = limit, removed, "wal segments removed");
        Ok(())
    }

    /// Writes the framed records in `pending` with a single `write_all` and
    /// empties it.
    fn write_pending(&mut self, pending: &mut Vec<u8>) -> Result<(), WalError> {
        if pending.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if let Some(keep) = self.fail_next_write.take() {
            // Fault injection: a write that reached the disk only in part.
            let keep = keep.min(pending.len());
            let _ = self.file.write_all(&pending[..keep]);
            self.broken = true;
            return Err(WalError::Append {
                segment: segment_path(&self.dir, self.segment),
                source: std::io::Error::other("injected write failure"),
            });
        }
        if let Err(source) = self.file.write_all(pending) {
            // Part of the batch may be on disk; never write after it.
            self.broken = true;
            return Err(WalError::Append {
                segment: segment_path(&self.dir, self.segment),
                source,
            });
        }
        self.segment_bytes += pending.len() as u64;
        self.bytes_written += pending.len() as u64;
        self.dirty = true;
        pending.clear();
        Ok(())
    }

    /// Closes the current segment (synced) and starts the next one, whose
    /// number is returned: everything appended later is in it or after it.
    pub fn start_new_segment(&mut self) -> Result<u64, WalError> {
        self.rotate()?;
        Ok(self.segment)
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        if self.broken {
            // The tail is already suspect and replay skips past it; a failing
            // sync must not keep the WAL from moving on to a healthy segment.
            if let Err(error) = self.file.sync_data() {
                tracing::warn!(
                    segment = %segment_path(&self.dir, self.segment).display(),
                    %error,
                    "syncing abandoned wal segment failed"
                );
            }
        } else {
            // Synced even under the interval policy: it is once per segment,
            // and it is what keeps torn tails confined to the last segment.
            self.file.sync_data().map_err(|source| {
                self.broken = true;
                WalError::Sync {
                    segment: segment_path(&self.dir, self.segment),
                    source,
                }
            })?;
        }
        let next = self.segment + 1;
        self.file = create_segment(&self.dir, next)?;
        self.segment = next;
        self.segment_bytes = HEADER_LEN;
        self.dirty = false;
        self.broken = false;
        Ok(())
    }
}

/// Path of segment `number` in `dir`.
fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:08}"))
}

/// Numbers of the segment files in `dir`, ascending. Files whose name is not
/// a canonical segment name are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let open_err = |source| WalError::Open {
        dir: dir.to_path_buf(),
        source,
    };
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(open_err)? {
        let entry = entry.map_err(open_err)?;
        let name = entry.file_name();
        let parsed = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok().filter(|v| format!("{v:08}") == n));
        match parsed {
            Some(number) => numbers.push(number),
            None => {
                tracing::debug!(dir = %dir.display(), file = ?name, "ignoring non-segment file in wal directory")
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Creates segment `number` with its header, fsyncs it and the directory.
fn create_segment(dir: &Path, number: u64) -> Result<File, WalError> {
    let path = segment_path(dir, number);
    let create_err = |source| WalError::CreateSegment {
        segment: path.clone(),
        source,
    };
    // Truncate rather than create_new: the number is above every segment we
    // know of, so an existing file can only be our own leftover from a
    // rotation that failed halfway.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(create_err)?;
    file.write_all(&header()).map_err(create_err)?;
    file.sync_all().map_err(create_err)?;
    sync_dir(dir)?;
    Ok(file)
}

/// The segment header bytes.
fn header() -> [u8; HEADER_LEN as usize] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION]
}

/// fsyncs a directory so that creations and removals in it are durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::SyncDir {
            dir: dir.to_path_buf(),
            source,
        })
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Replays one segment, repairing it if it is the last one and damaged.
fn replay_segment(
    path: &Path,
    is_last: bool,
    on_record: &mut impl FnMut(&[u8]) -> Result<(), String>,
    payload: &mut Vec<u8>,
    stats: &mut ReplayStats,
) -> Result<(), WalError> {
    let read_err = |source| WalError::Read {
        segment: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut reader = BufReader::with_capacity(REPLAY_BUFFER_SIZE, file);

    let mut head = [0u8; HEADER_LEN as usize];
    let got = read_full(&mut reader, &mut head).map_err(read_err)?;
    if got < head.len() || head.iter().all(|&b| b == 0) {
        // A crash while the segment was being created: nothing in it was
        // ever acknowledged.
        stats.truncated_bytes += file_len;
        if is_last {
            tracing::warn!(
                segment = %path.display(),
                offset = 0u64,
                dropped_bytes = file_len,
                "rewriting half-created wal segment header"
            );
            rewrite_header(path)?;
        } else {
            tracing::warn!(
                segment = %path.display(),
                offset = 0u64,
                dropped_bytes = file_len,
                "skipping wal segment with missing header"
            );
        }
        return Ok(());
    }
    if head != header() {
        return Err(WalError::BadHeader {
            segment: path.to_path_buf(),
        });
    }

    let mut offset = HEADER_LEN;
    let damage = loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break None;
        }
        if remaining < FRAME_HEADER_LEN {
            break Some("short record header");
        }
        let mut frame = [0u8; FRAME_HEADER_LEN as usize];
        reader.read_exact(&mut frame).map_err(read_err)?;
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len == 0 {
            break Some("zero record length (zero-filled tail?)");
        }
        if len as usize > MAX_RECORD_SIZE {
            break Some("record length above maximum");
        }
        if u64::from(len) > remaining - FRAME_HEADER_LEN {
            break Some("short record payload");
        }
        payload.resize(len as usize, 0);
        reader.read_exact(payload).map_err(read_err)?;
        if crc32c::crc32c(payload) != crc {
            break Some("crc mismatch");
        }
        on_record(payload).map_err(|message| WalError::Replay {
            segment: path.to_path_buf(),
            offset,
            message,
        })?;
        stats.records += 1;
        stats.bytes += u64::from(len);
        offset += FRAME_HEADER_LEN + u64::from(len);
    };

    if let Some(reason) = damage {
        let dropped = file_len - offset;
        stats.truncated_bytes += dropped;
        if is_last {
            tracing::warn!(
                segment = %path.display(),
                offset,
                dropped_bytes = dropped,
                reason,
                "truncating torn or corrupt wal tail"
            );
            truncate_file(path, offset)?;
        } else {
            tracing::warn!(
                segment = %path.display(),
                offset,
                dropped_bytes = dropped,
                reason,
                "corrupt record in wal segment, skipping the rest of it"
            );
        }
    }
    Ok(())
}

/// Truncates a segment to `len` bytes and fsyncs it, so the repair is durable
/// before anything new is written.
fn truncate_file(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()));
    file.map_err(|source| WalError::Repair {
        segment: path.to_path_buf(),
        source,
    })
}

/// Replaces a half-created segment with a header-only one.
fn rewrite_header(path: &Path) -> Result<(), WalError> {
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(&header())?;
            f.sync_all()
        });
    result.map_err(|source| WalError::Repair {
        segment: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::error::Error;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;
    use tracing::span;

    type TestResult = Result<(), Box<dyn Error>>;

    /// Counts `warn` events emitted on the current thread.
    struct WarnCounter(Arc<AtomicUsize>);

    impl tracing::Subscriber for WarnCounter {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    /// Runs `f` and returns its result with the number of warnings it logged.
    fn count_warns<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let count = Arc::new(AtomicUsize::new(0));
        let result = tracing::subscriber::with_default(WarnCounter(count.clone()), f);
        (result, count.load(Ordering::SeqCst))
    }

    fn options(segment_size: u64) -> WalOptions {
        WalOptions {
            fsync: FsyncPolicy::Always,
            segment_size,
        }
    }

    /// Opens the WAL collecting every replayed record.
    fn open_collect(
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Vec<Vec<u8>>, ReplayStats), WalError> {
        let mut records = Vec::new();
        let (wal, stats) = Wal::open(dir, opts, |_, r| {
            records.push(r.to_vec());
            Ok(())
        })?;
        Ok((wal, records, stats))
    }

    fn record(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j) as u8 | 1).collect()
    }

    fn append_each(wal: &mut Wal, records: &[Vec<u8>]) -> Result<(), WalError> {
        for r in records {
            wal.append(&[r])?;
        }
        Ok(())
    }

    fn file_len(path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn set_file_len(path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn append_bytes(path: &Path, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new().append(true).open(path)?.write_all(bytes)
    }

    #[test]
    fn round_trip_across_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let first: Vec<Vec<u8>> = (0..10).map(|i| record(i, 1 + i * 7)).collect();
        let (mut wal, replayed, stats) = open_collect(dir.path(), WalOptions::default())?;
        assert!(replayed.is_empty());
        assert_eq!(stats, ReplayStats::default());
        assert_eq!(wal.current_segment(), 1);
        let refs: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
        wal.append(&refs)?;
        assert_eq!(wal.current_segment_size(), HEADER_LEN + wal.bytes_written());
        drop(wal);

        let (mut wal, replayed, stats) = open_collect(dir.path(), WalOptions::default())?;
        assert_eq!(replayed, first);
        assert_eq!(stats.segments, 1);
        assert_eq!(stats.records, 10);
        assert_eq!(
            stats.bytes,
            first.iter().map(|r| r.len() as u64).sum::<u64>()
        );
        assert_eq!(stats.truncated_bytes, 0);
        assert_eq!(wal.current_segment(), 2);
        assert_eq!(wal.dir(), dir.path());
        let second = vec![record(100, 3)];
        append_each(&mut wal, &second)?;
        drop(wal);

        let (_wal, replayed, stats) = open_collect(dir.path(), WalOptions::default())?;
        let all: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
        assert_eq!(replayed, all);
        assert_eq!(stats.segments, 2);
        Ok(())
    }

    #[test]
    fn invalid_records_are_refused_before_writing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        let ok: &[u8] = b"ok";
        assert!(matches!(wal.append(&[ok, b""]), Err(WalError::EmptyRecord)));
        let huge = vec![1u8; MAX_RECORD_SIZE + 1];
        assert!(matches!(
            wal.append(&[ok, &huge]),
            Err(WalError::RecordTooLarge { .. })
        ));
        wal.append(&[])?;
        assert_eq!(wal.bytes_written(), 0);
        Ok(())
    }

    #[test]
    fn rotation_and_replay_order_across_segments() -> TestResult {
        let dir = tempfile::tempdir()?;
        // 5 header + 2 * (8 + 20) = 61: two 20-byte records per segment.
        let opts = options(64);
        let records: Vec<Vec<u8>> = (0..7).map(|i| record(i, 20)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), opts.clone())?;
        // One batch spanning several rotations, then single appends.
        let refs: Vec<&[u8]> = records[..5].iter().map(Vec::as_slice).collect();
        wal.append(&refs)?;
        append_each(&mut wal, &records[5..])?;
        assert_eq!(wal.current_segment(), 4);
        // A record bigger than the segment size goes alone into a new segment.
        let big = record(99, 200);
        wal.append(&[&big])?;
        assert_eq!(wal.current_segment(), 5);
        assert_eq!(wal.current_segment_size(), HEADER_LEN + 8 + 200);
        let after_big = record(98, 20);
        wal.append(&[&after_big])?;
        assert_eq!(wal.current_segment(), 6);
        drop(wal);

        for number in 1..=3 {
            assert_eq!(file_len(&segment_path(dir.path(), number))?, 61);
        }
        let (wal, replayed, stats) = open_collect(dir.path(), opts)?;
        let mut expected = records;
        expected.push(big);
        expected.push(after_big);
        assert_eq!(replayed, expected);
        assert_eq!(stats.segments, 6);
        assert_eq!(wal.current_segment(), 7);
        Ok(())
    }

    #[test]
    fn torn_tail_at_every_offset_of_last_record() -> TestResult {
        let complete: Vec<Vec<u8>> = (0..3).map(|i| record(i, 10 + i)).collect();
        let last = record(50, 13);
        let segment_len_before =
            HEADER_LEN + complete.iter().map(|r| 8 + r.len() as u64).sum::<u64>();
        let segment_len_after = segment_len_before + 8 + last.len() as u64;

        for cut in segment_len_before..=segment_len_after {
            let dir = tempfile::tempdir()?;
            let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
            append_each(&mut wal, &complete)?;
            wal.append(&[&last])?;
            drop(wal);
            let path = segment_path(dir.path(), 1);
            assert_eq!(file_len(&path)?, segment_len_after);
            set_file_len(&path, cut)?;

            let (result, warns) = count_warns(|| open_collect(dir.path(), WalOptions::default()));
            let (mut wal, replayed, stats) = result?;
            let mut expected = complete.clone();
            if cut == segment_len_after {
                expected.push(last.clone());
                assert_eq!(warns, 0, "cut {cut}");
                assert_eq!(file_len(&path)?, segment_len_after);
            } else {
                assert_eq!(warns, usize::from(cut != segment_len_before), "cut {cut}");
                assert_eq!(stats.truncated_bytes, cut - segment_len_before, "cut {cut}");
                assert_eq!(file_len(&path)?, segment_len_before, "cut {cut}");
            }
            assert_eq!(replayed, expected, "cut {cut}");

            let new = record(77, 5);
            wal.append(&[&new])?;
            drop(wal);
            let (_wal, replayed, stats) = open_collect(dir.path(), WalOptions::default())?;
            expected.push(new);
            assert_eq!(replayed, expected, "cut {cut}");
            assert_eq!(stats.truncated_bytes, 0, "cut {cut}");
        }
        Ok(())
    }

    #[test]
    fn crc_mismatch_in_last_record_is_dropped() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records: Vec<Vec<u8>> = (0..3).map(|i| record(i, 16)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        append_each(&mut wal, &records)?;
        drop(wal);

        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path)?;
        let len = bytes.len();
        bytes[len - 1] ^= 0xFF;
        fs::write(&path, &bytes)?;

        let (result, warns) = count_warns(|| open_collect(dir.path(), WalOptions::default()));
        let (_wal, replayed, stats) = result?;
        assert_eq!(replayed, records[..2]);
        assert_eq!(warns, 1);
        assert_eq!(stats.truncated_bytes, 8 + 16);
        assert_eq!(file_len(&path)?, len as u64 - 24);
        Ok(())
    }

    #[test]
    fn zero_filled_tail_is_truncated() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records: Vec<Vec<u8>> = (0..3).map(|i| record(i, 16)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        append_each(&mut wal, &records)?;
        drop(wal);

        let path = segment_path(dir.path(), 1);
        let len = file_len(&path)?;
        append_bytes(&path, &[0u8; 4096])?;

        let (result, warns) = count_warns(|| open_collect(dir.path(), WalOptions::default()));
        let (_wal, replayed, stats) = result?;
        assert_eq!(replayed, records);
        assert_eq!(warns, 1);
        assert_eq!(stats.truncated_bytes, 4096);
        assert_eq!(file_len(&path)?, len);
        Ok(())
    }

    #[test]
    fn garbage_huge_length_is_handled() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records: Vec<Vec<u8>> = (0..2).map(|i| record(i, 16)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        append_each(&mut wal, &records)?;
        drop(wal);

        let path = segment_path(dir.path(), 1);
        let len = file_len(&path)?;
        let mut garbage = Vec::new();
        garbage.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        garbage.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        garbage.extend_from_slice(&[0xAB; 100]);
        append_bytes(&path, &garbage)?;

        let (result, warns) = count_warns(|| open_collect(dir.path(), WalOptions::default()));
        let (_wal, replayed, stats) = result?;
        assert_eq!(replayed, records);
        assert_eq!(warns, 1);
        assert_eq!(stats.truncated_bytes, garbage.len() as u64);
        assert_eq!(file_len(&path)?, len);
        Ok(())
    }

    #[test]
    fn half_created_last_segment_is_rewritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records = vec![record(1, 9)];
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        append_each(&mut wal, &records)?;
        drop(wal);
        // A crash right after creating segment 2: empty, or zero-filled.
        for content in [&[][..], &b"SW"[..], &[0u8; 64][..]] {
            let path = segment_path(dir.path(), 2);
            fs::write(&path, content)?;
            let (result, warns) = count_warns(|| open_collect(dir.path(), WalOptions::default()));
            let (wal, replayed, _) = result?;
            assert_eq!(replayed, records);
            assert_eq!(warns, 1);
            assert_eq!(fs::read(&path)?, header());
            drop(wal);
            // Drop the segment the reopen created so segment 2 is last again.
            fs::remove_file(segment_path(dir.path(), 3))?;
        }
        Ok(())
    }

    #[test]
    fn foreign_header_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::write(segment_path(dir.path(), 1), b"NOPE1 and more")?;
        let result = open_collect(dir.path(), WalOptions::default());
        assert!(matches!(result, Err(WalError::BadHeader { .. })));
        Ok(())
    }

    #[test]
    fn corruption_in_middle_segment_keeps_later_segments() -> TestResult {
        let dir = tempfile::tempdir()?;
        let opts = options(64);
        let records: Vec<Vec<u8>> = (0..6).map(|i| record(i, 20)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), opts.clone())?;
        append_each(&mut wal, &records)?;
        assert_eq!(wal.current_segment(), 3);
        drop(wal);

        // Damage the first record of segment 2: both its records are lost,
        // segment 3 still replays.
        let path = segment_path(dir.path(), 2);
        let mut bytes = fs::read(&path)?;
        bytes[HEADER_LEN as usize + 8] ^= 0xFF;
        fs::write(&path, &bytes)?;

        let (result, warns) = count_warns(|| open_collect(dir.path(), opts.clone()));
        let (_wal, replayed, stats) = result?;
        let expected: Vec<Vec<u8>> = [&records[..2], &records[4..]].concat();
        assert_eq!(replayed, expected);
        assert_eq!(warns, 1);
        assert_eq!(stats.truncated_bytes, 56);
        // Earlier segments are left as found.
        assert_eq!(fs::read(&path)?, bytes);
        Ok(())
    }

    #[test]
    fn replay_callback_error_propagates() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records: Vec<Vec<u8>> = (0..3).map(|i| record(i, 16)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), WalOptions::default())?;
        append_each(&mut wal, &records)?;
        drop(wal);

        let mut seen = 0;
        let result = Wal::open(dir.path(), WalOptions::default(), |_, _| {
            seen += 1;
            if seen == 2 {
                Err("bad record".to_string())
            } else {
                Ok(())
            }
        });
        match result {
            Err(WalError::Replay {
                segment,
                offset,
                message,
            }) => {
                assert_eq!(segment, segment_path(dir.path(), 1));
                assert_eq!(offset, HEADER_LEN + 8 + 16);
                assert_eq!(message, "bad record");
            }
            other => panic!("expected a replay error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn truncate_before_removes_old_segments_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let opts = options(64);
        let records: Vec<Vec<u8>> = (0..8).map(|i| record(i, 20)).collect();
        let (mut wal, _, _) = open_collect(dir.path(), opts.clone())?;
        append_each(&mut wal, &records)?;
        assert_eq!(wal.current_segment(), 4);
        fs::write(dir.path().join("not-a-segment"), b"x")?;

        wal.truncate_before(3)?;
        assert_eq!(list_segments(dir.path())?, vec![3, 4]);
        wal.truncate_before(u64::MAX)?;
        assert_eq!(list_segments(dir.path())?, vec![4]);
        assert!(dir.path().join("not-a-segment").exists());
        let more = record(40, 20);
        wal.append(&[&more])?;
        drop(wal);

        let (_wal, replayed, _) = open_collect(dir.path(), opts)?;
        assert_eq!(replayed, [records[6].clone(), records[7].clone(), more]);
        Ok(())
    }

    #[test]
    fn interval_policy_defers_sync() -> TestResult {
        let dir = tempfile::tempdir()?;
        let opts = WalOptions {
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
            segment_size: DEFAULT_SEGMENT_SIZE,
        };
        let (mut wal, _, _) = open_collect(dir.path(), opts)?;
        wal.append(&[b"a"])?;
        assert!(wal.dirty);
        wal.sync_if_due()?;
        assert!(wal.dirty);
        wal.sync()?;
        assert!(!wal.dirty);

        let opts = WalOptions {
            fsync: FsyncPolicy::Interval(Duration::ZERO),
            segment_size: DEFAULT_SEGMENT_SIZE,
        };
        drop(wal);
        let (mut wal, replayed, _) = open_collect(dir.path(), opts)?;
        assert_eq!(replayed, vec![b"a".to_vec()]);
        wal.append(&[b"b"])?;
        assert!(!wal.dirty);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn truncated_final_segment_replays_a_prefix(
            batches in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..5),
                1..12,
            ),
            segment_size in 20u64..300,
            cut_fraction in 0.0f64..=1.0,
        ) {
            let dir = tempfile::tempdir()?;
            let opts = WalOptions {
                fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
                segment_size,
            };
            let (mut wal, _, _) = open_collect(dir.path(), opts.clone())?;
            // (segment, segment size) after each batch.
            let mut ends = Vec::new();
            for batch in &batches {
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wal.append(&refs)?;
                ends.push((wal.current_segment(), wal.current_segment_size()));
            }
            let last_segment = wal.current_segment();
            drop(wal);

            let path = segment_path(dir.path(), last_segment);
            let len = file_len(&path)?;
            let cut = (len as f64 * cut_fraction) as u64;
            set_file_len(&path, cut)?;

            let (_wal, replayed, _) = open_collect(dir.path(), opts)?;
            let all: Vec<Vec<u8>> = batches.iter().flatten().cloned().collect();
            prop_assert!(replayed.len() <= all.len());
            prop_assert_eq!(&replayed[..], &all[..replayed.len()]);
            let durable: usize = batches
                .iter()
                .zip(&ends)
                .filter(|(_, (segment, size))| *segment < last_segment || *size <= cut)
                .map(|(batch, _)| batch.len())
                .sum();
            prop_assert!(replayed.len() >= durable, "replayed {} < durable {}", replayed.len(), durable);
        }
    }
}
