//! The meta node's own metrics, refreshed whenever openraft's metrics change
//! (which includes every applied entry).

use openraft::{BasicNode, RaftMetrics, ServerState};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::NodeId;
use crate::state::{MemberState, MetaState};

/// Gauges registered in the process's registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetaMetrics {
    term: Gauge,
    leader: Gauge,
    applied_index: Gauge,
    members: Family<Vec<(String, String)>, Gauge>,
    epochs: Gauge,
}

impl MetaMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "strata_meta_raft_term",
            "Current Raft term of this meta node",
            metrics.term.clone(),
        );
        registry.register(
            "strata_meta_raft_leader",
            "1 when this meta node is the Raft leader",
            metrics.leader.clone(),
        );
        registry.register(
            "strata_meta_raft_applied_index",
            "Last Raft log index applied to the meta state",
            metrics.applied_index.clone(),
        );
        registry.register(
            "strata_meta_store_members",
            "Store nodes known to the cluster, by state",
            metrics.members.clone(),
        );
        registry.register(
            "strata_meta_epochs",
            "Placement epochs in the cluster state",
            metrics.epochs.clone(),
        );
        metrics
    }

    pub(crate) fn update(&self, raft: &RaftMetrics<NodeId, BasicNode>, state: &MetaState) {
        self.term.set(saturating_i64(raft.current_term));
        self.leader
            .set(i64::from(raft.state == ServerState::Leader));
        let applied = raft.last_applied.map_or(0, |log_id| log_id.index);
        self.applied_index.set(saturating_i64(applied));
        for (label, wanted) in [
            ("active", MemberState::Active),
            ("removed", MemberState::Removed),
        ] {
            let count = state.members.values().filter(|m| m.state == wanted).count();
            self.members
                .get_or_create(&vec![("state".to_owned(), label.to_owned())])
                .set(saturating_i64(count as u64));
        }
        self.epochs.set(saturating_i64(state.epochs.len() as u64));
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
