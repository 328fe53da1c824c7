//! The replicated cluster state and the commands that change it.
//!
//! Applying a command must give the same result on every meta node, so
//! everything that is not in the state already travels inside the proposal:
//! the leader stamps its clock (`now_ms`) and its placement settings
//! ([`PlacementSettings`]) on every [`Proposal`] before it enters the Raft
//! log. A changed setting therefore takes effect with the next write made
//! by a leader configured with it, identically on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Settings that shape epochs; they come from the proposing leader's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSettings {
    pub replication_factor: u32,
    pub default_shards: u32,
    /// Active stores needed before the first epoch is created.
    pub min_stores: u32,
    /// How far after the change a new epoch starts.
    pub epoch_delay_ms: i64,
}

/// One entry of the Raft log: a command plus the leader's clock and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub now_ms: i64,
    pub settings: PlacementSettings,
    pub command: Command,
}

/// A change of the cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    RegisterStore {
        id: String,
        address: String,
        zone: String,
    },
    Heartbeat {
        id: String,
    },
    RemoveStore {
        id: String,
    },
    EnsureTenant {
        tenant: String,
    },
    SetTenant {
        tenant: String,
        /// 0 keeps the current shard count.
        shards: u32,
        limits: BTreeMap<String, String>,
        replace_limits: bool,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    /// Nothing to report (also the answer to blank and membership entries).
    Done,
    /// The tenant after the command.
    Tenant(Tenant),
}

/// A command that was refused by the state machine (deterministically, on every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("store {id} is not registered")]
    StoreNotFound { id: String },
    #[error("removing store {id} would leave {left} active stores, fewer than the {min} required")]
    TooFewStores { id: String, left: usize, min: usize },
}

/// The state machine's answer, stored as openraft's response type.
pub type CommandResult = Result<Applied, CommandError>;

/// Whether a store takes part in new epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Active,
    Removed,
}

/// A store node known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub address: String,
    pub zone: String,
    pub state: MemberState,
    pub registered_ms: i64,
    pub last_heartbeat_ms: i64,
}

/// Placement from `start_ms` until the next epoch's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub id: u64,
    pub start_ms: i64,
    /// Active member ids when the epoch was made, sorted.
    pub stores: Vec<String>,
    pub replication_factor: u32,
    pub default_shards: u32,
    /// Tenants whose shard count differs from the default.
    pub tenant_shards: BTreeMap<String, u32>,
}

/// A tenant and its overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    /// 0 means the cluster default.
    pub shards: u32,
    pub limits: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// The whole replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub members: BTreeMap<String, Member>,
    /// Ordered by `start_ms` (and `id`).
    pub epochs: Vec<Epoch>,
    pub tenants: BTreeMap<String, Tenant>,
}

impl MetaState {
    /// Applies one proposal; deterministic given the state and the proposal.
    pub fn apply(&mut self, proposal: &Proposal) -> CommandResult {
        let now_ms = proposal.now_ms;
        let settings = &proposal.settings;
        let mut placement_changed = false;
        let applied = match &proposal.command {
            Command::RegisterStore { id, address, zone } => {
                placement_changed = self.register_store(id, address, zone, now_ms);
                Applied::Done
            }
            Command::Heartbeat { id } => {
                let member = self
                    .members
                    .get_mut(id)
                    .ok_or_else(|| CommandError::StoreNotFound { id: id.clone() })?;
                member.last_heartbeat_ms = now_ms;
                Applied::Done
            }
            Command::RemoveStore { id } => {
                let active = self.active_store_ids();
                let min = (settings.min_stores as usize).max(1);
                // Once placement exists, an epoch without stores could hold
                // no data: keep at least `min_stores` active.
                if !self.epochs.is_empty() && active.contains(id) && active.len() - 1 < min {
                    return Err(CommandError::TooFewStores {
                        id: id.clone(),
                        left: active.len() - 1,
                        min,
                    });
                }
                let member = self
                    .members
                    .get_mut(id)
                    .ok_or_else(|| CommandError::StoreNotFound { id: id.clone() })?;
                placement_changed = member.state == MemberState::Active;
                member.state = MemberState::Removed;
                Applied::Done
            }
            Command::EnsureTenant { tenant } => {
                Applied::Tenant(self.tenant_entry(tenant, now_ms).clone())
            }
            Command::SetTenant {
                tenant,
                shards,
                limits,
                replace_limits,
            } => {
                let entry = self.tenant_entry(tenant, now_ms);
                if *shards != 0 && *shards != entry.shards {
                    entry.shards = *shards;
                    placement_changed = true;
                }
                if *replace_limits {
                    entry.limits = limits.clone();
                } else {
                    entry
                        .limits
                        .extend(limits.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Applied::Tenant(entry.clone())
            }
        };
        self.update_epochs(now_ms, settings, placement_changed);
        Ok(applied)
    }

    /// Ids of active members, sorted (the map is ordered).
    pub fn active_store_ids(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Active)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Returns whether the set of active stores changed.
    fn register_store(&mut self, id: &str, address: &str, zone: &str, now_ms: i64) -> bool {
        match self.members.get_mut(id) {
            Some(member) => {
                // The zone stays what it was at the first registration:
                // replicas of every epoch, past ones too, are chosen by
                // zone, so changing it would move data that never moved.
                let _ = zone;
                member.address = address.to_owned();
                member.last_heartbeat_ms = now_ms;
                let reactivated = member.state == MemberState::Removed;
                member.state = MemberState::Active;
                reactivated
            }
            None => {
                self.members.insert(
                    id.to_owned(),
                    Member {
                        id: id.to_owned(),
                        address: address.to_owned(),
                        zone: zone.to_owned(),
                        state: MemberState::Active,
                        registered_ms: now_ms,
                        last_heartbeat_ms: now_ms,
                    },
                );
                true
            }
        }
    }

    fn tenant_entry(&mut self, tenant: &str, now_ms: i64) -> &mut Tenant {
        self.tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Tenant {
                id: tenant.to_owned(),
                shards: 0,
                limits: BTreeMap::new(),
                created_ms: now_ms,
            })
    }

    /// Creates the first epoch once enough stores are active, and a new
    /// epoch after a placement change.
    fn update_epochs(&mut self, now_ms: i64, settings: &PlacementSettings, changed: bool) {
        let Some(last) = self.epochs.last() else {
            // The first epoch covers all of time before it, so data written
            // while the cluster was forming has a home.
            let active = self.active_store_ids();
            if active.len() >= settings.min_stores as usize {
                let epoch = self.make_epoch(1, i64::MIN, settings);
                self.epochs.push(epoch);
            }
            return;
        };
        if !changed {
            return;
        }
        // A pending epoch is never rewritten: distributors may already
        // route by it (their views reach `epoch_delay` ahead). A change
        // before it starts gets an epoch of its own, after it.
        let start_ms = now_ms
            .saturating_add(settings.epoch_delay_ms)
            .max(last.start_ms.saturating_add(1));
        let epoch = self.make_epoch(last.id + 1, start_ms, settings);
        self.epochs.push(epoch);
    }

    fn make_epoch(&self, id: u64, start_ms: i64, settings: &PlacementSettings) -> Epoch {
        let tenant_shards = self
            .tenants
            .values()
            .filter(|t| t.shards != 0 && t.shards != settings.default_shards)
            .map(|t| (t.id.clone(), t.shards))
            .collect();
        Epoch {
            id,
            start_ms,
            stores: self.active_store_ids(),
            replication_factor: settings.replication_factor,
            default_shards: settings.default_shards,
            tenant_shards,
        }
    }
}

#[cfg(test)]
mod tests;
