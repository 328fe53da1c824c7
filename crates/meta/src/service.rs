//! The `Meta` gRPC service.
//!
//! Reads are answered from this node's applied state. Writes go through
//! Raft on the leader; a follower forwards the same call to the leader it
//! knows (once: a forwarded call is never forwarded again, so two nodes
//! with different views cannot bounce a request between them).

mod convert;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Membership};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_common::TenantId;
use strata_proto::meta as pb;
use strata_proto::meta::meta_client::MetaClient;
use strata_proto::meta::meta_server::Meta;
use strata_proto::meta::raft_request::Kind;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::node::{MetaNode, now_ms};
use crate::state::{Applied, Command};
use crate::{MetaError, NodeId};

/// Marks a call forwarded by a follower.
const FORWARDED_HEADER: &str = "x-strata-meta-forwarded";

/// Deadline of a call forwarded to the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a write is handled.
enum Route {
    /// This node is the leader.
    Local,
    /// Another node is the leader: forward the call to it.
    Forward(MetaClient<Channel>),
}

/// Handles a write on the leader, or returns the leader's answer to the
/// same call forwarded to it.
macro_rules! forward_unless_leader {
    ($self:ident, $request:ident, $method:ident) => {
        if let Route::Forward(mut client) = $self.route($request.metadata())? {
            let mut forwarded = Request::new($request.into_inner());
            forwarded.metadata_mut().insert(
                FORWARDED_HEADER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            forwarded.set_timeout(FORWARD_TIMEOUT);
            return client.$method(forwarded).await;
        }
    };
}

/// The `Meta` service of one meta node.
#[derive(Debug)]
pub(crate) struct MetaService {
    node: Arc<MetaNode>,
}

impl MetaService {
    pub(crate) fn new(node: Arc<MetaNode>) -> Self {
        Self { node }
    }

    fn route(&self, metadata: &MetadataMap) -> Result<Route, MetaError> {
        let Some((leader, address)) = self.node.leader() else {
            return Err(MetaError::NoLeader);
        };
        if leader == self.node.id {
            return Ok(Route::Local);
        }
        if metadata.contains_key(FORWARDED_HEADER) || address.is_empty() {
            return Err(MetaError::NotLeader);
        }
        Ok(Route::Forward(self.node.leader_client(&address)?))
    }

    /// The cluster state as this node has applied it.
    fn cluster_state(&self) -> pb::ClusterState {
        let now_ms = now_ms();
        let heartbeat_timeout_ms =
            i64::try_from(self.node.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        let (leader_id, leader_address) = self.node.leader().unwrap_or_default();
        let applied = self.node.applied.read();
        let state = &applied.state;
        pb::ClusterState {
            members: state
                .members
                .values()
                .map(|m| convert::member(m, now_ms, heartbeat_timeout_ms))
                .collect(),
            epochs: state.epochs.iter().map(convert::epoch).collect(),
            tenants: state.tenants.values().map(convert::tenant).collect(),
            leader_id,
            leader_address,
            applied_index: applied.last_applied.map_or(0, |log_id| log_id.index),
            now_ms,
            epoch_delay_ms: self.node.settings.epoch_delay_ms,
            min_stores: self.node.settings.min_stores,
            pending_change_ms: self.node.oldest_pending_change().unwrap_or(0),
        }
    }

    /// Voters after a membership change: from the change's own entry (the
    /// metrics may not show it yet), else as this node currently sees them.
    fn voters_after(&self, membership: Option<Membership<NodeId, BasicNode>>) -> Vec<NodeId> {
        match membership {
            Some(membership) => membership.voter_ids().collect(),
            None => self
                .node
                .raft_metrics()
                .membership_config
                .membership()
                .voter_ids()
                .collect(),
        }
    }

    async fn write_tenant(&self, command: Command) -> Result<pb::Tenant, MetaError> {
        match self.node.write(command).await? {
            Applied::Tenant(tenant) => Ok(convert::tenant(&tenant)),
            Applied::Done => Err(MetaError::InvalidArgument(
                "tenant command produced no tenant".to_owned(),
            )),
        }
    }
}

fn validate_tenant(tenant: &str) -> Result<(), MetaError> {
    TenantId::new(tenant)
        .map(|_| ())
        .map_err(MetaError::InvalidTenant)
}

fn require(value: &str, what: &str) -> Result<(), MetaError> {
    if value.is_empty() {
        return Err(MetaError::InvalidArgument(format!("{what} is empty")));
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(payload).map_err(MetaError::RaftMessage)
}

/// A Raft answer: the JSON response, or the JSON of openraft's error.
fn raft_answer<T: Serialize, E: Serialize>(
    result: Result<T, E>,
) -> Result<pb::RaftResponse, MetaError> {
    let response = match result {
        Ok(value) => pb::RaftResponse {
            payload: serde_json::to_vec(&value).map_err(MetaError::Encode)?,
            error: String::new(),
        },
        Err(error) => pb::RaftResponse {
            payload: Vec::new(),
            error: serde_json::to_string(&error).map_err(MetaError::Encode)?,
        },
    };
    Ok(response)
}

#[tonic::async_trait]
impl Meta for MetaService {
    #[tracing::instrument(skip_all, fields(store = %request.get_ref().id))]
    async fn register_store(
        &self,
        request: Request<pb::RegisterStoreRequest>,
    ) -> Result<Response<pb::RegisterStoreResponse>, Status> {
        require(&request.get_ref().id, "store id")?;
        require(&request.get_ref().address, "store address")?;
        forward_unless_leader!(self, request, register_store);
        let pb::RegisterStoreRequest { id, address, zone } = request.into_inner();
        self.node
            .write(Command::RegisterStore { id, address, zone })
            .await?;
        Ok(Response::new(pb::RegisterStoreResponse {
            state: Some(self.cluster_state()),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        require(&request.get_ref().id, "store id")?;
        forward_unless_leader!(self, request, heartbeat);
        let id = request.into_inner().id;
        self.node.write(Command::Heartbeat { id }).await?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    #[tracing::instrument(skip_all, fields(store = %request.get_ref().id))]
    async fn remove_store(
        &self,
        request: Request<pb::RemoveStoreRequest>,
    ) -> Result<Response<pb::RemoveStoreResponse>, Status> {
        require(&request.get_ref().id, "store id")?;
        forward_unless_leader!(self, request, remove_store);
        let id = request.into_inner().id;
        self.node.write(Command::RemoveStore { id }).await?;
        Ok(Response::new(pb::RemoveStoreResponse {
            state: Some(self.cluster_state()),
        }))
    }

    async fn ensure_tenant(
        &self,
        request: Request<pb::EnsureTenantRequest>,
    ) -> Result<Response<pb::EnsureTenantResponse>, Status> {
        validate_tenant(&request.get_ref().tenant)?;
        // Tenants are never deleted: one this node knows exists, no write needed.
        let known = {
            let applied = self.node.applied.read();
            applied
                .state
                .tenants
                .get(&request.get_ref().tenant)
                .map(convert::tenant)
        };
        if let Some(tenant) = known {
            return Ok(Response::new(pb::EnsureTenantResponse {
                tenant: Some(tenant),
            }));
        }
        forward_unless_leader!(self, request, ensure_tenant);
        let tenant = request.into_inner().tenant;
        let tenant = self.write_tenant(Command::EnsureTenant { tenant }).await?;
        Ok(Response::new(pb::EnsureTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(tenant = %request.get_ref().tenant))]
    async fn set_tenant(
        &self,
        request: Request<pb::SetTenantRequest>,
    ) -> Result<Response<pb::SetTenantResponse>, Status> {
        validate_tenant(&request.get_ref().tenant)?;
        forward_unless_leader!(self, request, set_tenant);
        let pb::SetTenantRequest {
            tenant,
            shards,
            limits,
            replace_limits,
        } = request.into_inner();
        let command = Command::SetTenant {
            tenant,
            shards,
            limits: limits.into_iter().collect(),
            replace_limits,
        };
        let tenant = self.write_tenant(command).await?;
        Ok(Response::new(pb::SetTenantResponse {
            tenant: Some(tenant),
        }))
    }

    /// Answered by the leader after a linearizable read barrier: a
    /// follower's applied state may lag (or be empty after a restart), and
    /// distributors route samples by this state for `epoch_delay` ahead.
    async fn get_state(
        &self,
        request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        forward_unless_leader!(self, request, get_state);
        self.node
            .raft
            .ensure_linearizable()
            .await
            .map_err(|_| MetaError::NotLeader)?;
        Ok(Response::new(self.cluster_state()))
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn add_voter(
        &self,
        request: Request<pb::AddVoterRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        if request.get_ref().node_id == 0 {
            return Err(MetaError::InvalidArgument("node id must be at least 1".to_owned()).into());
        }
        require(&request.get_ref().address, "address")?;
        forward_unless_leader!(self, request, add_voter);
        let pb::AddVoterRequest { node_id, address } = request.into_inner();
        // A learner first, so the new node has caught up before it counts
        // towards the quorum.
        self.node
            .raft
            .add_learner(node_id, BasicNode::new(&address), true)
            .await
            .map_err(MetaError::from_write)?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
        let response = self
            .node
            .raft
            .change_membership(change, false)
            .await
            .map_err(MetaError::from_write)?;
        tracing::info!(node_id, %address, "meta voter added");
        Ok(Response::new(pb::MembershipResponse {
            voters: self.voters_after(response.membership),
        }))
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn remove_voter(
        &self,
        request: Request<pb::RemoveVoterRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        forward_unless_leader!(self, request, remove_voter);
        let node_id = request.into_inner().node_id;
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([node_id]));
        let response = self
            .node
            .raft
            .change_membership(change, false)
            .await
            .map_err(MetaError::from_write)?;
        tracing::info!(node_id, "meta voter removed");
        Ok(Response::new(pb::MembershipResponse {
            voters: self.voters_after(response.membership),
        }))
    }

    async fn raft_status(
        &self,
        _request: Request<pb::RaftStatusRequest>,
    ) -> Result<Response<pb::RaftStatusResponse>, Status> {
        let metrics = self.node.raft_metrics();
        let (leader_id, leader_address) = self.node.leader().unwrap_or_default();
        Ok(Response::new(pb::RaftStatusResponse {
            node_id: self.node.id,
            leader_id,
            leader_address,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |log_id| log_id.index),
            voters: metrics.membership_config.membership().voter_ids().collect(),
            role: format!("{:?}", metrics.state),
        }))
    }

    async fn raft(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftResponse>, Status> {
        let request = request.into_inner();
        let raft = &self.node.raft;
        let response = match request.kind() {
            Kind::AppendEntries => {
                raft_answer(raft.append_entries(decode(&request.payload)?).await)?
            }
            Kind::Vote => raft_answer(raft.vote(decode(&request.payload)?).await)?,
            Kind::InstallSnapshot => {
                raft_answer(raft.install_snapshot(decode(&request.payload)?).await)?
            }
            Kind::Unspecified => {
                return Err(MetaError::InvalidArgument(
                    "raft request kind is unspecified".to_owned(),
                )
                .into());
            }
        };
        Ok(Response::new(response))
    }
}
