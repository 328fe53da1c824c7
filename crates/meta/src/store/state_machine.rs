//! The state machine: [`MetaState`] in memory, persisted as snapshots.
//!
//! Between snapshots the state is rebuilt by openraft re-applying the
//! committed log entries after the snapshot's last log id at start-up.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::files::{self, invalid_data};
use crate::state::{Applied, CommandResult, MetaState};
use crate::{Entry, NodeId, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.json";

/// What the state machine has applied; shared with the gRPC service, which
/// answers reads from it.
#[derive(Debug, Default)]
pub(crate) struct AppliedState {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) last_membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) state: MetaState,
}

/// The applied state behind a lock, readable by the service.
pub(crate) type SharedState = Arc<RwLock<AppliedState>>;

/// The snapshot file's content.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: MetaState,
}

/// The last snapshot: its meta and the serialized [`MetaState`].
#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// openraft's state machine and snapshot builder over [`SharedState`].
#[derive(Debug, Clone)]
pub(crate) struct StateMachineStore {
    dir: PathBuf,
    applied: SharedState,
    snapshot: Arc<Mutex<Option<CurrentSnapshot>>>,
    /// Makes snapshot ids unique within this process.
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from the last snapshot.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut applied = AppliedState::default();
        let mut current = None;
        if let Some(bytes) = files::read_atomic(&dir.join(SNAPSHOT_FILE))? {
            let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(invalid_data)?;
            applied.last_applied = file.meta.last_log_id;
            applied.last_membership = file.meta.last_membership.clone();
            let data = serde_json::to_vec(&file.state).map_err(invalid_data)?;
            applied.state = file.state;
            current = Some(CurrentSnapshot {
                meta: file.meta,
                data,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            applied: Arc::new(RwLock::new(applied)),
            snapshot: Arc::new(Mutex::new(current)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The applied state, for the service's reads.
    pub(crate) fn shared(&self) -> SharedState {
        Arc::clone(&self.applied)
    }

    /// Writes the snapshot file, then makes it the current snapshot.
    #[allow(clippy::result_large_err, reason = "openraft's error type")]
    fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        state: &MetaState,
        data: Vec<u8>,
    ) -> Result<(), StorageError<NodeId>> {
        let file = SnapshotFile {
            meta: meta.clone(),
            state: state.clone(),
        };
        let write_error = |e: &(dyn std::error::Error + 'static)| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::from_dyn(e, None),
            ))
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| write_error(&e))?;
        files::write_atomic(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(|e| write_error(&e))?;
        *self.snapshot.lock() = Some(CurrentSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }
}

fn snapshot_of(current: CurrentSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: current.meta,
        snapshot: Box::new(Cursor::new(current.data)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (last_applied, last_membership, state) = {
            let applied = self.applied.read();
            (
                applied.last_applied,
                applied.last_membership.clone(),
                applied.state.clone(),
            )
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(log_id) => format!("{}-{}-{seq}", log_id.leader_id.term, log_id.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let data = serde_json::to_vec(&state).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        self.save_snapshot(&meta, &state, data.clone())?;
        tracing::debug!(snapshot = %meta, "meta snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let applied = self.applied.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.write();
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(Applied::Done),
                EntryPayload::Normal(proposal) => applied.state.apply(&proposal),
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(Applied::Done)
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state: MetaState = serde_json::from_slice(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        self.save_snapshot(meta, &state, data)?;
        let mut applied = self.applied.write();
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        applied.state = state;
        tracing::info!(snapshot = %meta, "meta snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.snapshot.lock().clone().map(snapshot_of))
    }
}
