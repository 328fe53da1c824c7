//! Cluster metadata: store-node membership, shard placement epochs, tenants
//! and their limit overrides, replicated with `openraft`.

mod state;
mod store;

use std::io::Cursor;

pub use state::{
    Command, Epoch, Member, MemberState, MetaState, PlacementSettings, Proposal, Tenant,
};

/// A meta node's Raft id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the meta service.
    pub TypeConfig:
        D = state::Proposal,
        R = state::CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of the meta service.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
