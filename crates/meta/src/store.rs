//! Raft storage on local disk, without an embedded database.
//!
//! Everything lives in `<data_dir>/meta/`:
//!
//! - `raft.log`: the log, an append-only file of framed records
//!   (`[len u32 LE][crc32c u32 LE][JSON entry]`). Appends are fsynced before
//!   openraft is told they are durable. Truncating the tail cuts the file at
//!   the first removed record; purging the head rewrites the file.
//! - `vote.json`, `purged.json`, `committed.json`: small files, each written
//!   atomically (temporary file, fsync, rename, fsync of the directory) and
//!   carrying a CRC.
//! - `snapshot.json`: the last snapshot (meta plus the serialized state),
//!   written atomically the same way.
//!
//! The meta log is small (it is purged after each snapshot), so the whole
//! unpurged log is also kept in memory and reads never touch the disk.
//! File I/O is synchronous: the files are tiny and meta writes are rare.

mod files;
mod log;
mod state_machine;

pub(crate) use log::LogStore;
pub(crate) use state_machine::{SharedState, StateMachineStore};

#[cfg(test)]
mod tests;
