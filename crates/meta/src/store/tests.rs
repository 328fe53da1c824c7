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
fn openraft_storage_conformance() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(DiskStoreBuilder)
}
