//! Cluster metadata: store-node membership, shard placement epochs, tenants
//! and their limit overrides, replicated with `openraft`.
//!
//! Code map:
//! - `state`: the replicated `MetaState` and the epoch rules;
//! - `store`: the Raft log and snapshots on disk (`<data_dir>/meta/`);
//! - `network`: Raft messages over the `Meta.Raft` gRPC call;
//! - `node`: [`MetaNode`], which starts Raft and bootstraps the cluster;
//! - `service`: the `Meta` gRPC service (followers forward writes to the leader).

mod error;
mod metrics;
mod network;
mod node;
mod service;
mod state;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

pub use error::MetaError;
pub use node::MetaNode;

/// A meta node's Raft id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the meta service.
    pub(crate) TypeConfig:
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

/// Default gRPC URL of a single local meta node.
pub const DEFAULT_PEER_ADDRESS: &str = "http://127.0.0.1:9095";

/// Settings of a meta node, fixed at start.
#[derive(Debug, Clone)]
pub struct MetaOptions {
    /// This node's Raft id, at least 1.
    pub node_id: u64,
    /// Every initial voter including this node: id -> gRPC URL.
    pub peers: BTreeMap<u64, String>,
    /// The meta files go in `data_dir/meta`.
    pub data_dir: PathBuf,
    /// Replicas per shard in new epochs.
    pub replication_factor: u32,
    /// Shards of a tenant without its own count, in new epochs.
    pub default_shards: u32,
    /// Active stores needed before the first epoch exists.
    pub min_stores: u32,
    /// How far in the future a new epoch starts.
    pub epoch_delay: Duration,
    /// A store silent for longer is reported unhealthy.
    pub heartbeat_timeout: Duration,
    /// How often the Raft leader sends heartbeats to followers.
    pub raft_heartbeat_interval: Duration,
    /// Minimum Raft election timeout; the maximum is twice this.
    pub raft_election_timeout: Duration,
}

impl MetaOptions {
    /// Defaults for a single node: this node is the only peer, at
    /// [`DEFAULT_PEER_ADDRESS`].
    pub fn new(node_id: u64, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            peers: BTreeMap::from([(node_id, DEFAULT_PEER_ADDRESS.to_owned())]),
            data_dir,
            replication_factor: 3,
            default_shards: 8,
            min_stores: 1,
            epoch_delay: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(10),
            raft_heartbeat_interval: Duration::from_millis(250),
            raft_election_timeout: Duration::from_secs(1),
        }
    }

    /// Rejects settings the node cannot run with, naming the option.
    pub fn validate(&self) -> Result<(), MetaError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(MetaError::InvalidOption {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.node_id == 0 {
            return invalid("node_id", "must be at least 1");
        }
        if !self.peers.contains_key(&self.node_id) {
            return invalid("peers", "must include this node's id");
        }
        if self.peers.contains_key(&0) {
            return invalid("peers", "ids must be at least 1");
        }
        if self.replication_factor == 0 {
            return invalid("replication_factor", "must be at least 1");
        }
        if self.default_shards == 0 {
            return invalid("default_shards", "must be at least 1");
        }
        if self.raft_heartbeat_interval.is_zero()
            || self.raft_election_timeout <= self.raft_heartbeat_interval
        {
            return invalid(
                "raft_election_timeout",
                "must be longer than the raft heartbeat interval, which must not be zero",
            );
        }
        Ok(())
    }

    /// The leader's placement settings, stamped on every proposal.
    pub(crate) fn placement(&self) -> state::PlacementSettings {
        state::PlacementSettings {
            replication_factor: self.replication_factor,
            default_shards: self.default_shards,
            min_stores: self.min_stores,
            epoch_delay_ms: i64::try_from(self.epoch_delay.as_millis()).unwrap_or(i64::MAX),
        }
    }
}
