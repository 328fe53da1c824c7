//! Meta nodes in one process talking real gRPC over loopback: election,
//! forwarding, fail-over and restart from the data directory.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_meta::{MetaNode, MetaOptions};
use strata_proto::meta as pb;
use strata_proto::meta::meta_client::MetaClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long a condition may take to become true.
const DEADLINE: Duration = Duration::from_secs(15);

/// A meta node serving gRPC on its own loopback port.
struct TestNode {
    id: u64,
    addr: SocketAddr,
    data_dir: PathBuf,
    node: Arc<MetaNode>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    registry: Registry,
}

impl TestNode {
    async fn start(
        id: u64,
        listener: TcpListener,
        peers: &BTreeMap<u64, String>,
        data_dir: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let addr = listener.local_addr()?;
        let mut options = MetaOptions::new(id, data_dir.to_owned());
        options.peers = peers.clone();
        options.raft_heartbeat_interval = Duration::from_millis(100);
        options.raft_election_timeout = Duration::from_millis(300);
        options.epoch_delay = Duration::from_millis(0);
        let mut registry = Registry::default();
        let node = MetaNode::start(options, &mut registry).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(node.service())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Ok(Self {
            id,
            addr,
            data_dir: data_dir.to_owned(),
            node,
            stop: Some(stop),
            server,
            registry,
        })
    }

    async fn client(&self) -> Result<MetaClient<Channel>, Box<dyn std::error::Error>> {
        Ok(MetaClient::connect(format!("http://{}", self.addr)).await?)
    }

    /// Stops Raft and the gRPC server, as a crash of the process would.
    async fn stop(mut self) -> Result<(), Box<dyn std::error::Error>> {
        self.node.shutdown().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.await??;
        Ok(())
    }
}

fn peer_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The leader all of `nodes` agree on.
async fn agreed_leader(nodes: &[&TestNode]) -> Result<u64, Box<dyn std::error::Error>> {
    agreed_leader_other_than(nodes, 0).await
}

/// The leader all of `nodes` agree on, once it is not `old`.
async fn agreed_leader_other_than(
    nodes: &[&TestNode],
    old: u64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut clients = Vec::new();
    for node in nodes {
        clients.push(node.client().await?);
    }
    wait_for("an agreed leader", || {
        let mut clients = clients.clone();
        async move {
            let mut leaders = Vec::new();
            for client in &mut clients {
                let status = client.raft_status(pb::RaftStatusRequest {}).await.ok()?;
                leaders.push(status.into_inner().leader_id);
            }
            let first = *leaders.first()?;
            (first != 0 && first != old && leaders.iter().all(|l| *l == first)).then_some(first)
        }
    })
    .await
}

/// Registers a store through `client`, retrying while no leader is known.
async fn register(
    client: &MetaClient<Channel>,
    id: &str,
) -> Result<pb::ClusterState, Box<dyn std::error::Error>> {
    let request = pb::RegisterStoreRequest {
        id: id.to_owned(),
        address: format!("http://{id}:9095"),
        zone: String::new(),
    };
    wait_for("a registration", || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            let response = client.register_store(request).await.ok()?;
            response.into_inner().state
        }
    })
    .await
}

/// Waits until every node's applied state satisfies `check`.
async fn wait_all_states(
    nodes: &[&TestNode],
    what: &str,
    check: impl Fn(&pb::ClusterState) -> bool + Clone,
) -> TestResult {
    for node in nodes {
        let client = node.client().await?;
        let check = check.clone();
        wait_for(&format!("{what} on node {}", node.id), || {
            let mut client = client.clone();
            let check = check.clone();
            async move {
                let state = client.get_state(pb::GetStateRequest {}).await.ok()?;
                check(&state.into_inner()).then_some(())
            }
        })
        .await?;
    }
    Ok(())
}

fn has_member(state: &pb::ClusterState, id: &str) -> bool {
    state.members.iter().any(|m| m.id == id)
}

async fn bind() -> Result<TcpListener, std::io::Error> {
    TcpListener::bind("127.0.0.1:0").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_restart() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let listeners = [bind().await?, bind().await?, bind().await?];
    let mut peers = BTreeMap::new();
    for (i, listener) in listeners.iter().enumerate() {
        peers.insert(i as u64 + 1, peer_url(listener.local_addr()?));
    }
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        nodes.push(TestNode::start(i as u64 + 1, listener, &peers, dirs[i].path()).await?);
    }

    let all: Vec<&TestNode> = nodes.iter().collect();
    let leader = agreed_leader(&all).await?;
    assert!(nodes.iter().all(|n| n.node.is_ready()));

    // A write sent to a follower is forwarded and applied everywhere.
    let follower = nodes.iter().find(|n| n.id != leader).ok_or("no follower")?;
    let mut follower_client = follower.client().await?;
    let state = register(&follower_client, "store-1").await?;
    assert!(has_member(&state, "store-1"));
    assert_eq!(state.leader_id, leader);
    wait_all_states(&all, "store-1 and the first epoch", |s| {
        has_member(s, "store-1") && s.epochs.len() == 1 && s.epochs[0].start_ms == i64::MIN
    })
    .await?;

    // Tenants, through the follower too.
    let tenant = follower_client
        .ensure_tenant(pb::EnsureTenantRequest {
            tenant: "team-a".to_owned(),
        })
        .await?
        .into_inner()
        .tenant
        .ok_or("no tenant")?;
    assert_eq!(tenant.shards, 0);
    let invalid = follower_client
        .ensure_tenant(pb::EnsureTenantRequest {
            tenant: "no/slash".to_owned(),
        })
        .await;
    assert_eq!(
        invalid.err().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    let unknown = follower_client
        .heartbeat(pb::HeartbeatRequest {
            id: "never-registered".to_owned(),
        })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(tonic::Code::NotFound));

    // Members are healthy right after registering.
    let state = follower_client
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    assert!(state.members.iter().all(|m| m.healthy));
    assert_eq!(state.min_stores, 1);

    // The leader goes away: the other two elect a new one and keep writing.
    let leader_index = nodes
        .iter()
        .position(|n| n.id == leader)
        .ok_or("leader not found")?;
    let old_leader = nodes.remove(leader_index);
    let old_leader_id = old_leader.id;
    let old_leader_addr = old_leader.addr;
    let old_leader_dir = old_leader.data_dir.clone();
    old_leader.stop().await?;

    let survivors: Vec<&TestNode> = nodes.iter().collect();
    let started = Instant::now();
    let new_leader = agreed_leader_other_than(&survivors, leader).await?;
    assert_ne!(new_leader, leader);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let client = nodes[0].client().await?;
    register(&client, "store-2").await?;
    wait_all_states(&survivors, "store-2 and a second epoch", |s| {
        has_member(s, "store-2") && s.epochs.len() == 2
    })
    .await?;

    // The old leader restarts from its data directory and catches up.
    let listener = TcpListener::bind(old_leader_addr).await?;
    let restarted = TestNode::start(old_leader_id, listener, &peers, &old_leader_dir).await?;
    nodes.push(restarted);
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_all_states(&all, "store-2 everywhere", |s| {
        has_member(s, "store-1") && has_member(s, "store-2") && s.epochs.len() == 2
    })
    .await?;
    agreed_leader(&all).await?;

    // Voters are visible in the Raft status.
    let status = nodes[0]
        .client()
        .await?
        .raft_status(pb::RaftStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.voters, vec![1, 2, 3]);

    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_restores_state_from_snapshot_and_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let listener = bind().await?;
    let addr = listener.local_addr()?;
    let peers = BTreeMap::from([(1, peer_url(addr))]);
    let node = TestNode::start(1, listener, &peers, dir.path()).await?;
    agreed_leader(&[&node]).await?;
    let client = node.client().await?;
    register(&client, "store-a").await?;
    register(&client, "store-b").await?;

    // Enough writes for a snapshot and a purge of the log before it.
    let mut heartbeats = Vec::new();
    for _ in 0..1200 {
        let mut client = client.clone();
        heartbeats.push(tokio::spawn(async move {
            client
                .heartbeat(pb::HeartbeatRequest {
                    id: "store-a".to_owned(),
                })
                .await
        }));
    }
    for heartbeat in heartbeats {
        heartbeat.await??;
    }
    client
        .clone()
        .set_tenant(pb::SetTenantRequest {
            tenant: "team-b".to_owned(),
            shards: 4,
            limits: [("max_series".to_owned(), "10".to_owned())].into(),
            replace_limits: false,
        })
        .await?;
    let before = client
        .clone()
        .get_state(pb::GetStateRequest {})
        .await?
        .into_inner();
    assert!(before.applied_index > 1200);
    assert_eq!(before.epochs.len(), 3);
    let meta_dir = dir.path().join("meta");
    wait_for("a snapshot file", || {
        let exists = meta_dir.join("snapshot.json").exists();
        async move { exists.then_some(()) }
    })
    .await?;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry)?;
    assert!(text.contains("strata_meta_raft_leader 1"), "{text}");
    assert!(text.contains("strata_meta_epochs 3"), "{text}");
    node.stop().await?;

    let listener = TcpListener::bind(addr).await?;
    let node = TestNode::start(1, listener, &peers, dir.path()).await?;
    agreed_leader(&[&node]).await?;
    let expected = before.clone();
    wait_all_states(
        &[&node],
        "the state from before the restart",
        move |after| {
            after.members == expected.members
                && after.epochs == expected.epochs
                && after.tenants == expected.tenants
                && after.applied_index >= expected.applied_index
        },
    )
    .await?;
    node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_are_added_and_removed_at_runtime() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let (first, second) = (bind().await?, bind().await?);
    let (first_url, second_url) = (
        peer_url(first.local_addr()?),
        peer_url(second.local_addr()?),
    );
    // Node 1 starts alone; node 2 knows it is not the bootstrapper and waits.
    let node1 = TestNode::start(
        1,
        first,
        &BTreeMap::from([(1, first_url.clone())]),
        dirs[0].path(),
    )
    .await?;
    agreed_leader(&[&node1]).await?;
    register(&node1.client().await?, "store-x").await?;
    let peers2 = BTreeMap::from([(1, first_url), (2, second_url.clone())]);
    let node2 = TestNode::start(2, second, &peers2, dirs[1].path()).await?;
    assert!(
        !node2.node.is_ready(),
        "a node that is not the bootstrapper waits"
    );

    let added = node1
        .client()
        .await?
        .add_voter(pb::AddVoterRequest {
            node_id: 2,
            address: second_url,
        })
        .await?
        .into_inner();
    assert_eq!(added.voters, vec![1, 2]);
    agreed_leader(&[&node1, &node2]).await?;
    // The new voter has the state and forwards writes.
    register(&node2.client().await?, "store-y").await?;
    wait_all_states(&[&node1, &node2], "both stores", |s| {
        has_member(s, "store-x") && has_member(s, "store-y")
    })
    .await?;

    // Removing it again goes through a follower too.
    let removed = node2
        .client()
        .await?
        .remove_voter(pb::RemoveVoterRequest { node_id: 2 })
        .await?
        .into_inner();
    assert_eq!(removed.voters, vec![1]);
    node2.stop().await?;
    register(&node1.client().await?, "store-z").await?;
    node1.stop().await?;
    Ok(())
}
