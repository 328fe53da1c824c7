//! openraft's network over the `Meta.Raft` gRPC call.
//!
//! Each openraft message is serialized as JSON into a `RaftRequest`; the
//! answer comes back as JSON in `RaftResponse.payload`, or, when the remote
//! Raft refused it, as the JSON of openraft's `RaftError` in
//! `RaftResponse.error`, so the sender sees the same error a local call
//! would give.

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::meta::meta_client::MetaClient;
use strata_proto::meta::raft_request::Kind;
use strata_proto::meta::{RaftRequest, RaftResponse};
use tonic::transport::{Channel, Endpoint};

use crate::{NodeId, TypeConfig};

/// Largest gRPC message between meta nodes (snapshot chunks are JSON).
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// How long establishing a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A gRPC client for `address`; the connection is made on first use.
pub(crate) fn meta_client(address: &str) -> Result<MetaClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(address.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(MetaClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE))
}

/// Creates the per-peer clients openraft replicates through. Connections
/// are cached by address so a re-created peer client reuses its channel.
#[derive(Debug, Default)]
pub(crate) struct Network {
    clients: HashMap<String, MetaClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = match self.clients.get(&node.addr) {
            Some(client) => Ok(client.clone()),
            None => meta_client(&node.addr).inspect(|client| {
                self.clients.insert(node.addr.clone(), client.clone());
            }),
        };
        if let Err(error) = &client {
            tracing::warn!(target_node = target, address = %node.addr, %error, "invalid meta peer address");
        }
        PeerClient {
            target,
            client: client.map_err(|e| e.to_string()),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    /// The error text when the peer's address is unusable.
    client: Result<MetaClient<Channel>, String>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

fn network_error<E: Error + 'static, X: Error>(error: &E) -> RPCError<NodeId, BasicNode, X> {
    RPCError::Network(NetworkError::new(error))
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error,
        RaftError<NodeId, E>: DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(text) => {
                return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(
                    text,
                ))));
            }
        };
        let payload = serde_json::to_vec(request).map_err(|e| network_error(&e))?;
        let mut grpc_request = tonic::Request::new(RaftRequest {
            kind: kind as i32,
            payload,
        });
        grpc_request.set_timeout(option.hard_ttl());
        let response: RaftResponse = match client.raft(grpc_request).await {
            Ok(response) => response.into_inner(),
            // The peer is down or not listening: openraft backs off.
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
            Err(status) => return Err(network_error(&status)),
        };
        if !response.error.is_empty() {
            let remote: RaftError<NodeId, E> =
                serde_json::from_str(&response.error).map_err(|e| network_error(&e))?;
            return Err(RPCError::RemoteError(RemoteError::new(self.target, remote)));
        }
        serde_json::from_slice(&response.payload).map_err(|e| network_error(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.call(Kind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Kind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}
