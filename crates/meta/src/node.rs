//! A running meta node: Raft, its storage, metrics, and the cluster bootstrap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, SnapshotPolicy};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use strata_proto::meta::meta_client::MetaClient;
use strata_proto::meta::meta_server::MetaServer;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::metrics::MetaMetrics;
use crate::network::{self, Network};
use crate::service::MetaService;
use crate::state::{Applied, Command, PlacementSettings, Proposal};
use crate::store::{LogStore, SharedState, StateMachineStore};
use crate::{MetaError, MetaOptions, NodeId, TypeConfig};

/// Entries between snapshots; the log before a snapshot is then purged.
const SNAPSHOT_EVERY: u64 = 1000;

/// A meta node: answers the `Meta` gRPC service and takes part in Raft.
pub struct MetaNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) applied: SharedState,
    pub(crate) settings: PlacementSettings,
    pub(crate) heartbeat_timeout: Duration,
    /// Clients of the leaders this node forwarded to, by address.
    leader_clients: Mutex<HashMap<String, MetaClient<Channel>>>,
    /// Stamps of the commands that may change placement and are being
    /// committed through this node, by proposal number.
    pending_changes: Mutex<std::collections::BTreeMap<u64, i64>>,
    next_proposal: std::sync::atomic::AtomicU64,
    metrics_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MetaNode {
    /// Opens the log/state on disk and starts Raft. Bootstrap: when the log
    /// is empty and this node has the smallest id in `peers`, it initializes
    /// the cluster with all peers as voters. Other nodes wait to be contacted.
    pub async fn start(
        options: MetaOptions,
        registry: &mut Registry,
    ) -> Result<Arc<MetaNode>, MetaError> {
        options.validate()?;
        let dir = options.data_dir.join("meta");
        let open_error = |source| MetaError::OpenStore {
            path: dir.clone(),
            source,
        };
        let log_store = LogStore::open(&dir).map_err(open_error)?;
        let state_machine = StateMachineStore::open(&dir).map_err(open_error)?;
        let pristine = log_store.is_pristine();
        let applied = state_machine.shared();

        let raft = Raft::new(
            options.node_id,
            Arc::new(raft_config(&options)?),
            Network::default(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|fatal| MetaError::Stopped(Box::new(fatal)))?;

        let first_peer = options.peers.keys().next().copied();
        if pristine && first_peer == Some(options.node_id) {
            initialize(&raft, &options.peers).await?;
        }
        tracing::info!(
            node_id = options.node_id,
            dir = %dir.display(),
            pristine,
            "meta node started"
        );

        let metrics = MetaMetrics::register(registry);
        let metrics_task = tokio::spawn(refresh_metrics(
            raft.metrics(),
            Arc::clone(&applied),
            metrics,
        ));
        Ok(Arc::new(MetaNode {
            id: options.node_id,
            raft,
            applied,
            settings: options.placement(),
            heartbeat_timeout: options.heartbeat_timeout,
            leader_clients: Mutex::new(HashMap::new()),
            pending_changes: Mutex::new(std::collections::BTreeMap::new()),
            next_proposal: std::sync::atomic::AtomicU64::new(0),
            metrics_task: Mutex::new(Some(metrics_task)),
        }))
    }

    /// The gRPC service to add to the process's tonic server.
    pub fn service(self: &Arc<Self>) -> MetaServer<impl strata_proto::meta::meta_server::Meta> {
        MetaServer::new(MetaService::new(Arc::clone(self)))
            .max_decoding_message_size(network::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(network::MAX_MESSAGE_SIZE)
    }

    /// A leader is known (for `/-/ready`).
    pub fn is_ready(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    /// Stops Raft; the service answers UNAVAILABLE afterwards.
    pub async fn shutdown(&self) {
        if let Some(task) = self.metrics_task.lock().take() {
            task.abort();
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "meta raft did not shut down cleanly");
        }
        tracing::info!(node_id = self.id, "meta node stopped");
    }

    /// A snapshot of openraft's metrics.
    pub(crate) fn raft_metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The leader's id and gRPC address, when one is known.
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let address = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| node.addr.clone())
            .unwrap_or_default();
        Some((leader, address))
    }

    /// A (cached) client of the leader at `address`.
    pub(crate) fn leader_client(&self, address: &str) -> Result<MetaClient<Channel>, MetaError> {
        let mut clients = self.leader_clients.lock();
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = network::meta_client(address).map_err(|error| {
            tracing::warn!(%address, %error, "meta leader has an invalid address");
            MetaError::NoLeader
        })?;
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }

    /// Proposes `command` through Raft (on the leader) and returns what
    /// applying it produced.
    pub(crate) async fn write(&self, command: Command) -> Result<Applied, MetaError> {
        let stamp = now_ms();
        // While a placement change commits, its epoch (stamp + delay) is
        // not in the state yet: GetState tells clients not to route past it.
        let _pending = matches!(
            command,
            Command::RegisterStore { .. } | Command::RemoveStore { .. } | Command::SetTenant { .. }
        )
        .then(|| PendingChange::new(self, stamp));
        let proposal = Proposal {
            now_ms: stamp,
            settings: self.settings,
            command,
        };
        let response = self
            .raft
            .client_write(proposal)
            .await
            .map_err(MetaError::from_write)?;
        Ok(response.data?)
    }

    /// The stamp of the oldest placement change still being committed.
    pub(crate) fn oldest_pending_change(&self) -> Option<i64> {
        self.pending_changes.lock().values().min().copied()
    }
}

/// A placement change in flight; removed from the node's list when dropped
/// (committed, failed or abandoned).
struct PendingChange<'a> {
    node: &'a MetaNode,
    number: u64,
}

impl<'a> PendingChange<'a> {
    fn new(node: &'a MetaNode, stamp: i64) -> Self {
        let number = node
            .next_proposal
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        node.pending_changes.lock().insert(number, stamp);
        PendingChange { node, number }
    }
}

impl Drop for PendingChange<'_> {
    fn drop(&mut self) {
        self.node.pending_changes.lock().remove(&self.number);
    }
}

/// Milliseconds since the Unix epoch by this node's clock.
pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn raft_config(options: &MetaOptions) -> Result<Config, MetaError> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let election = millis(options.raft_election_timeout);
    let config = Config {
        cluster_name: "strata-meta".to_owned(),
        heartbeat_interval: millis(options.raft_heartbeat_interval),
        election_timeout_min: election,
        election_timeout_max: election.saturating_mul(2),
        // Store heartbeats are writes too: snapshot regularly and keep only
        // a short tail of the log after each snapshot.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: 100,
        // Purging rewrites the log file, so do it in batches.
        purge_batch_size: 256,
        // Snapshot chunks travel as JSON arrays of bytes (about 4x larger).
        snapshot_max_chunk_size: 1024 * 1024,
        ..Config::default()
    };
    config
        .validate()
        .map_err(|error| MetaError::RaftConfig(Box::new(error)))
}

/// Makes `peers` the first voters. A cluster that is already initialized
/// (for example by an earlier run that crashed before any log write) is fine.
async fn initialize(
    raft: &Raft<TypeConfig>,
    peers: &BTreeMap<u64, String>,
) -> Result<(), MetaError> {
    let members: BTreeMap<NodeId, BasicNode> = peers
        .iter()
        .map(|(id, address)| (*id, BasicNode::new(address)))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(voters = ?peers.keys().collect::<Vec<_>>(), "meta cluster initialized");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            tracing::debug!("meta cluster already initialized");
            Ok(())
        }
        Err(error) => Err(MetaError::Initialize(error.to_string())),
    }
}

async fn refresh_metrics(
    mut raft_metrics: tokio::sync::watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    applied: SharedState,
    metrics: MetaMetrics,
) {
    loop {
        {
            let current = raft_metrics.borrow_and_update();
            metrics.update(&current, &applied.read().state);
        }
        if raft_metrics.changed().await.is_err() {
            return;
        }
    }
}
