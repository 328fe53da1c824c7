//! `strata tool meta ...`: the meta service for operators — cluster status,
//! Raft voters, store decommissioning, tenant settings. Any meta node
//! answers (followers forward writes to the leader); the addresses are
//! tried in turn until one does.

use std::io::Write;
use std::time::Duration;

use strata_proto::meta::meta_client::MetaClient;
use strata_proto::meta::{
    AddVoterRequest, ClusterState, GetStateRequest, MemberState, RaftStatusRequest,
    RemoveStoreRequest, RemoveVoterRequest, SetTenantRequest,
};
use tonic::transport::Channel;

use crate::cli::MetaCommand;
use crate::logging::format_rfc3339_ms;

/// Runs one meta command against `addresses`; `Ok(false)` when it failed.
pub fn run(
    addresses: &[String],
    command: &MetaCommand,
    out: &mut impl Write,
) -> Result<bool, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(run_async(addresses, command, out))
}

async fn connect(address: &str) -> Result<MetaClient<Channel>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
        .map_err(|e| format!("invalid meta address {address:?}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    Ok(MetaClient::new(channel))
}

/// The first meta node that accepts a connection.
async fn any_node(addresses: &[String]) -> Result<(String, MetaClient<Channel>), String> {
    let mut errors = Vec::new();
    for address in addresses {
        match connect(address).await {
            Ok(client) => return Ok((address.clone(), client)),
            Err(error) => errors.push(error),
        }
    }
    Err(format!("no meta node answers: {}", errors.join("; ")))
}

fn status_error(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

async fn run_async(
    addresses: &[String],
    command: &MetaCommand,
    out: &mut impl Write,
) -> Result<bool, String> {
    if addresses.is_empty() {
        return Err("--meta.addresses is required".to_owned());
    }
    let w = |e: std::io::Error| e.to_string();
    match command {
        MetaCommand::Status => {
            for address in addresses {
                match connect(address).await {
                    Ok(mut client) => match client.raft_status(RaftStatusRequest {}).await {
                        Ok(status) => {
                            let s = status.into_inner();
                            writeln!(
                                out,
                                "meta {address}: node {} {} term {} leader {} ({}) applied {} voters {:?}",
                                s.node_id, s.role, s.term, s.leader_id, s.leader_address, s.applied_index, s.voters
                            )
                            .map_err(w)?;
                        }
                        Err(status) => {
                            writeln!(out, "meta {address}: {}", status_error(status)).map_err(w)?
                        }
                    },
                    Err(error) => {
                        writeln!(out, "meta {address}: unreachable ({error})").map_err(w)?
                    }
                }
            }
            let (_, mut client) = any_node(addresses).await?;
            let state = client
                .get_state(GetStateRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_state(&state, out).map_err(w)?;
        }
        MetaCommand::AddVoter { id, address } => {
            let (_, mut client) = any_node(addresses).await?;
            let voters = client
                .add_voter(AddVoterRequest {
                    node_id: *id,
                    address: address.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .voters;
            writeln!(out, "voters: {voters:?}").map_err(w)?;
        }
        MetaCommand::RemoveVoter { id } => {
            let (_, mut client) = any_node(addresses).await?;
            let voters = client
                .remove_voter(RemoveVoterRequest { node_id: *id })
                .await
                .map_err(status_error)?
                .into_inner()
                .voters;
            writeln!(out, "voters: {voters:?}").map_err(w)?;
        }
        MetaCommand::RemoveStore { id } => {
            let (_, mut client) = any_node(addresses).await?;
            let state = client
                .remove_store(RemoveStoreRequest { id: id.clone() })
                .await
                .map_err(status_error)?
                .into_inner()
                .state
                .unwrap_or_default();
            print_state(&state, out).map_err(w)?;
        }
        MetaCommand::SetTenant {
            tenant,
            shards,
            limit,
            replace_limits,
        } => {
            let mut limits = std::collections::HashMap::new();
            for pair in limit {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--limit {pair:?} is not key=value"))?;
                limits.insert(key.to_owned(), value.to_owned());
            }
            let (_, mut client) = any_node(addresses).await?;
            let tenant = client
                .set_tenant(SetTenantRequest {
                    tenant: tenant.clone(),
                    shards: shards.unwrap_or(0),
                    limits,
                    replace_limits: *replace_limits,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .tenant
                .unwrap_or_default();
            let mut limits: Vec<_> = tenant.limits.iter().collect();
            limits.sort();
            writeln!(
                out,
                "tenant {}: shards {} limits {limits:?}",
                tenant.id, tenant.shards
            )
            .map_err(w)?;
        }
    }
    Ok(true)
}

fn print_state(state: &ClusterState, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "leader {} ({}), applied index {}, min stores {}, epoch delay {} ms",
        state.leader_id,
        state.leader_address,
        state.applied_index,
        state.min_stores,
        state.epoch_delay_ms
    )?;
    for m in &state.members {
        let member_state = match MemberState::try_from(m.state) {
            Ok(MemberState::Active) => "active",
            Ok(MemberState::Removed) => "removed",
            _ => "unknown",
        };
        let health = if m.healthy { "healthy" } else { "unhealthy" };
        writeln!(
            out,
            "store {} {} zone={:?} {member_state} {health} last heartbeat {}",
            m.id,
            m.address,
            m.zone,
            format_rfc3339_ms(m.last_heartbeat_ms)
        )?;
    }
    for e in &state.epochs {
        let start = if e.start_ms == i64::MIN {
            "the beginning".to_owned()
        } else {
            format_rfc3339_ms(e.start_ms)
        };
        writeln!(
            out,
            "epoch {} from {start}: stores {:?}, RF {}, {} shards by default",
            e.id, e.stores, e.replication_factor, e.default_shards
        )?;
    }
    for t in &state.tenants {
        let mut limits: Vec<_> = t.limits.iter().collect();
        limits.sort();
        writeln!(
            out,
            "tenant {}: shards {} limits {limits:?}",
            t.id, t.shards
        )?;
    }
    Ok(())
}
