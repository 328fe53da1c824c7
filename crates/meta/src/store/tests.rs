//! openraft's storage conformance suite over the disk store.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, StateMachineStore};
use crate::{NodeId, TypeConfig};

/// Builds a fresh store in a new temporary directory for every test case.
struct DiskStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for DiskStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let io_error = |e: std::io::Error| {
            StorageError::from(openraft::StorageIOError::write(openraft::AnyError::new(&e)))
        };
        let dir = tempfile::tempdir().map_err(io_error)?;
        let log = LogStore::open(dir.path()).map_err(io_error)?;
        let sm = StateMachineStore::open(dir.path()).map_err(io_error)?;
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err, reason = "openraft's error type")]
fn openraft_storage_conformance() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(DiskStoreBuilder)
}

mod reopen {
    //! What survives closing and reopening the files.

    use std::io::Write;

    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{blank_ent, log_id};
    use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};

    use super::super::{LogStore, StateMachineStore};
    use crate::TypeConfig;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn indexes(entries: &[crate::Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn log_vote_truncate_and_purge_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let mut log = LogStore::open(dir.path())?;
            assert!(log.is_pristine());
            let entries = (1..=10).map(|i| blank_ent::<TypeConfig>(1, 1, i));
            log.blocking_append(entries).await?;
            log.save_vote(&Vote::new(3, 2)).await?;
            log.truncate(log_id(1, 1, 8)).await?;
            log.purge(log_id(1, 1, 3)).await?;
            // A conflicting tail rewritten after a truncation.
            log.blocking_append([blank_ent::<TypeConfig>(2, 2, 8)])
                .await?;
            log.save_committed(Some(log_id(2, 2, 8))).await?;
        }
        let mut log = LogStore::open(dir.path())?;
        assert!(!log.is_pristine());
        assert_eq!(log.read_vote().await?, Some(Vote::new(3, 2)));
        assert_eq!(log.read_committed().await?, Some(log_id(2, 2, 8)));
        let state = log.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 2, 8)));
        let entries = log.try_get_log_entries(0..100).await?;
        assert_eq!(indexes(&entries), [4, 5, 6, 7, 8]);
        assert_eq!(entries[4].log_id, log_id(2, 2, 8));
        // Appends after reopening land after the existing records.
        log.blocking_append([blank_ent::<TypeConfig>(2, 2, 9)])
            .await?;
        drop(log);
        let mut log = LogStore::open(dir.path())?;
        let entries = log.try_get_log_entries(0..100).await?;
        assert_eq!(indexes(&entries), [4, 5, 6, 7, 8, 9]);
        Ok(())
    }

    #[tokio::test]
    async fn torn_tail_is_cut_off() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let mut log = LogStore::open(dir.path())?;
            let entries = (1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i));
            log.blocking_append(entries).await?;
        }
        let path = dir.path().join("raft.log");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        // Half a record: a header promising more bytes than follow.
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{'])?;
        drop(file);
        let mut log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log.try_get_log_entries(0..).await?), [1, 2, 3]);
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 4)])
            .await?;
        drop(log);
        let mut log = LogStore::open(dir.path())?;
        assert_eq!(indexes(&log.try_get_log_entries(0..).await?), [1, 2, 3, 4]);
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_vote_file_is_an_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let mut log = LogStore::open(dir.path())?;
            log.save_vote(&Vote::new(1, 1)).await?;
        }
        let path = dir.path().join("vote.json");
        let mut bytes = std::fs::read(&path)?;
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xff;
        }
        std::fs::write(&path, bytes)?;
        assert!(LogStore::open(dir.path()).is_err());
        Ok(())
    }

    #[tokio::test]
    async fn snapshot_survives_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let mut sm = StateMachineStore::open(dir.path())?;
            sm.apply([
                blank_ent::<TypeConfig>(1, 1, 1),
                blank_ent::<TypeConfig>(1, 1, 2),
            ])
            .await?;
            sm.shared().write().state.tenants.insert(
                "t".to_owned(),
                crate::state::Tenant {
                    id: "t".to_owned(),
                    shards: 2,
                    limits: Default::default(),
                    created_ms: 5,
                },
            );
            sm.get_snapshot_builder().await.build_snapshot().await?;
        }
        let mut sm = StateMachineStore::open(dir.path())?;
        let (applied, _) = sm.applied_state().await?;
        assert_eq!(applied, Some(log_id(1, 1, 2)));
        assert_eq!(sm.shared().read().state.tenants["t"].shards, 2);
        let snapshot = sm.get_current_snapshot().await?.ok_or("no snapshot")?;
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 2)));
        Ok(())
    }
}
