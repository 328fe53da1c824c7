//! From the replicated state to the protobuf messages.

use strata_proto::meta as pb;

use crate::state::{Epoch, Member, MemberState, Tenant};

pub(super) fn member(member: &Member, now_ms: i64, heartbeat_timeout_ms: i64) -> pb::StoreMember {
    let state = match member.state {
        MemberState::Active => pb::MemberState::Active,
        MemberState::Removed => pb::MemberState::Removed,
    };
    let silent_ms = now_ms.saturating_sub(member.last_heartbeat_ms);
    pb::StoreMember {
        id: member.id.clone(),
        address: member.address.clone(),
        zone: member.zone.clone(),
        state: state as i32,
        registered_ms: member.registered_ms,
        last_heartbeat_ms: member.last_heartbeat_ms,
        healthy: member.state == MemberState::Active && silent_ms <= heartbeat_timeout_ms,
    }
}

pub(super) fn epoch(epoch: &Epoch) -> pb::Epoch {
    pb::Epoch {
        id: epoch.id,
        start_ms: epoch.start_ms,
        stores: epoch.stores.clone(),
        replication_factor: epoch.replication_factor,
        default_shards: epoch.default_shards,
        tenant_shards: epoch
            .tenant_shards
            .iter()
            .map(|(tenant, shards)| (tenant.clone(), *shards))
            .collect(),
    }
}

pub(super) fn tenant(tenant: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: tenant.id.clone(),
        shards: tenant.shards,
        limits: tenant
            .limits
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        created_ms: tenant.created_ms,
    }
}
