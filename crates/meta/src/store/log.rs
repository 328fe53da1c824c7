//! The Raft log: `raft.log` plus the vote, purge and commit markers.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::files::{self, Unframed, invalid_data};
use crate::{Entry, NodeId, TypeConfig};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";

/// The disk-backed Raft log. Clones share the same log (the reader openraft
/// asks for is a clone).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    /// `raft.log`, opened for appending.
    file: File,
    /// Every unpurged entry and the offset of its record in `raft.log`.
    entries: BTreeMap<u64, (Entry, u64)>,
    file_len: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`. A torn or corrupt tail is cut
    /// off: it can only hold entries that were never acknowledged.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let vote = read_json(&dir.join(VOTE_FILE))?;
        let last_purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED_FILE))?;
        let committed = read_json(&dir.join(COMMITTED_FILE))?;

        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut entries = BTreeMap::new();
        let mut offset = 0usize;
        while offset < bytes.len() {
            let Unframed::Record(payload, used) = files::unframe(&bytes[offset..]) else {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    len = bytes.len(),
                    "meta log has a torn or corrupt tail, cutting it off"
                );
                break;
            };
            let entry: Entry = serde_json::from_slice(payload).map_err(invalid_data)?;
            let index = entry.log_id.index;
            // Entries up to the purge point may remain when a crash hit
            // between writing `purged.json` and rewriting the log.
            if last_purged.is_none_or(|p| index > p.index) {
                entries.insert(index, (entry, offset as u64));
            }
            offset += used;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if offset < bytes.len() {
            file.set_len(offset as u64)?;
            file.sync_all()?;
        }
        files::sync_parent(&path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_owned(),
                file,
                entries,
                file_len: offset as u64,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    /// Whether nothing was ever written (no entries, no vote, no purge):
    /// the condition for bootstrapping a new cluster.
    pub(crate) fn is_pristine(&self) -> bool {
        let inner = self.inner.lock();
        inner.entries.is_empty() && inner.vote.is_none() && inner.last_purged.is_none()
    }
}

impl LogInner {
    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        // openraft truncates conflicts itself; this keeps the file ordered
        // by index even if an overlapping append ever arrived.
        if self.entries.contains_key(&first.log_id.index) {
            self.truncate(first.log_id.index)?;
        }
        let mut buffer = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(self.file_len + buffer.len() as u64);
            let payload = serde_json::to_vec(entry).map_err(invalid_data)?;
            buffer.extend_from_slice(&files::frame(&payload)?);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.file_len += buffer.len() as u64;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            self.entries.insert(entry.log_id.index, (entry, offset));
        }
        Ok(())
    }

    /// Removes the entries from `index` on, in memory and on disk.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some((_, (_, offset))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        let offset = *offset;
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.file_len = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Drops the entries up to `log_id`: the marker first (so a crash leaves
    /// them ignored), then a rewritten log file without them.
    fn purge(&mut self, log_id: LogId<NodeId>) -> io::Result<()> {
        write_json(&self.dir.join(PURGED_FILE), &log_id)?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&log_id.index.saturating_add(1));

        let path = self.dir.join(LOG_FILE);
        let tmp = path.with_extension("tmp");
        let mut buffer = Vec::new();
        for (entry, offset) in self.entries.values_mut() {
            *offset = buffer.len() as u64;
            let payload = serde_json::to_vec(entry).map_err(invalid_data)?;
            buffer.extend_from_slice(&files::frame(&payload)?);
        }
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&buffer)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        files::sync_parent(&path)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.file_len = buffer.len() as u64;
        Ok(())
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match files::read_atomic(path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(invalid_data),
        None => Ok(None),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(invalid_data)?;
    files::write_atomic(path, &bytes)
}

fn write_error(error: &io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(error)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last_log_id = inner
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        write_json(&inner.dir.join(VOTE_FILE), vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        if inner.committed == committed {
            return Ok(());
        }
        write_json(&inner.dir.join(COMMITTED_FILE), &committed).map_err(|e| write_error(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.inner.lock().append(entries);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let storage_error = write_error(&error);
                callback.log_io_completed(Err(error));
                Err(storage_error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "truncating meta log");
        self.inner
            .lock()
            .truncate(log_id.index)
            .map_err(|e| write_error(&e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "purging meta log");
        self.inner.lock().purge(log_id).map_err(|e| write_error(&e))
    }
}
