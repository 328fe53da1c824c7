//! Where a series lives: pure functions over the meta service's
//! [`ClusterState`].
//!
//! A tenant's series are hashed into S shards; in each placement epoch a
//! shard has RF replicas among the epoch's store nodes, chosen by
//! rendezvous hashing of (tenant, shard, node) with replicas spread across
//! zones first. Epochs are ranges of *sample time*: a sample goes to the
//! replicas of the epoch its timestamp falls in, and a read over a time
//! range asks the owners in every epoch that range overlaps. Adding a node
//! starts a new epoch in the near future and moves no data.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use strata_proto::meta::{ClusterState, Epoch, MemberState};
use strata_proto::prometheus::Label;

/// A stable 64-bit FNV-1a: every process must agree on it forever, so no
/// std hasher (their seeds and algorithms may change).
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    let mut hash = hash;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A final avalanche so that nearby FNV values spread over all buckets.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Hash of a series' label set, independent of the order labels came in.
pub fn series_hash(labels: &[Label]) -> u64 {
    let sorted = labels.windows(2).all(|w| w[0].name <= w[1].name);
    let mut hash = FNV_OFFSET;
    let mut add = |label: &Label| {
        hash = fnv1a(hash, label.name.as_bytes());
        hash = fnv1a(hash, &[0xff]);
        hash = fnv1a(hash, label.value.as_bytes());
        hash = fnv1a(hash, &[0xff]);
    };
    if sorted {
        labels.iter().for_each(&mut add);
    } else {
        let mut refs: Vec<&Label> = labels.iter().collect();
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.into_iter().for_each(&mut add);
    }
    mix(hash)
}

/// The shard of a series among `shards` (at least 1).
pub fn shard_of(series_hash: u64, shards: u32) -> u32 {
    (series_hash % u64::from(shards.max(1))) as u32
}

/// Slack for [`Placement::routable_until_ms`]: meta followers' apply lag
/// and clock skew between processes.
pub const ROUTING_MARGIN: Duration = Duration::from_secs(1);

/// A store node as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub id: String,
    pub address: String,
    pub zone: String,
    pub healthy: bool,
}

/// One epoch, ready for routing.
#[derive(Debug, Clone)]
pub struct EpochView {
    pub id: u64,
    /// Inclusive.
    pub start_ms: i64,
    /// Exclusive; `i64::MAX` for the newest epoch.
    pub end_ms: i64,
    /// Store ids, sorted.
    pub stores: Vec<String>,
    pub replication_factor: u32,
    default_shards: u32,
    tenant_shards: BTreeMap<String, u32>,
}

impl EpochView {
    /// The tenant's shard count in this epoch.
    pub fn shards(&self, tenant: &str) -> u32 {
        self.tenant_shards
            .get(tenant)
            .copied()
            .unwrap_or(self.default_shards)
            .max(1)
    }

    /// Replicas actually kept: RF, or fewer when the epoch has fewer stores.
    pub fn effective_rf(&self) -> usize {
        (self.replication_factor.max(1) as usize).min(self.stores.len())
    }

    /// Acknowledgements a write needs: a majority of the replicas.
    pub fn write_quorum(&self) -> usize {
        self.effective_rf() / 2 + 1
    }

    /// Replicas a read must hear from to see every acknowledged sample.
    pub fn read_quorum(&self) -> usize {
        let rf = self.effective_rf();
        (rf + 1).saturating_sub(self.write_quorum())
    }

    /// The replicas of a shard, best first: rendezvous order, taking one
    /// store per zone before a second store of any zone.
    pub fn replicas(
        &self,
        tenant: &str,
        shard: u32,
        zones: &dyn Fn(&str) -> String,
    ) -> Vec<String> {
        let base = fnv1a(fnv1a(FNV_OFFSET, tenant.as_bytes()), &shard.to_le_bytes());
        let mut ranked: Vec<(u64, &String)> = self
            .stores
            .iter()
            .map(|id| (mix(fnv1a(base, id.as_bytes())), id))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let rf = self.effective_rf();
        let mut chosen: Vec<String> = Vec::with_capacity(rf);
        let mut zones_used: HashSet<String> = HashSet::new();
        for (_, id) in &ranked {
            if chosen.len() == rf {
                break;
            }
            let zone = zones(id);
            if zone.is_empty() || zones_used.insert(zone) {
                chosen.push((*id).clone());
            }
        }
        for (_, id) in &ranked {
            if chosen.len() == rf {
                break;
            }
            if !chosen.contains(id) {
                chosen.push((*id).clone());
            }
        }
        chosen
    }

    /// `[start, end]` (inclusive) clamped to this epoch, if they overlap.
    pub fn clamp(&self, start_ms: i64, end_ms: i64) -> Option<(i64, i64)> {
        let start = start_ms.max(self.start_ms);
        let end = end_ms.min(self.end_ms.saturating_sub(1));
        (start <= end).then_some((start, end))
    }
}

/// The cluster as one client sees it at one moment.
#[derive(Debug, Clone)]
pub struct Placement {
    pub epochs: Vec<EpochView>,
    pub stores: BTreeMap<String, Store>,
    /// Stores registered so far and needed before the first epoch.
    pub registered: usize,
    pub min_stores: u32,
    /// When this view was asked for (monotonic clock).
    pub fetched_at: Instant,
    /// How far ahead new epochs start ([`ClusterState::epoch_delay_ms`]).
    pub epoch_delay: Duration,
    /// Wall-clock milliseconds when the view was asked for.
    pub fetched_at_ms: i64,
    /// Limit overrides by tenant (configuration key → value).
    pub tenant_limits: BTreeMap<String, BTreeMap<String, String>>,
    /// The meta Raft index this view reflects; views never go back.
    pub applied_index: u64,
    /// When a placement change still being committed was stamped (its
    /// epoch starts `epoch_delay` later), if one was.
    pub pending_change_ms: Option<i64>,
}

impl Placement {
    /// Builds the routing view of a state fetched at `fetched_at`.
    pub fn new(state: &ClusterState, fetched_at: Instant, fetched_at_ms: i64) -> Self {
        let stores: BTreeMap<String, Store> = state
            .members
            .iter()
            .map(|m| {
                let store = Store {
                    id: m.id.clone(),
                    address: m.address.clone(),
                    zone: m.zone.clone(),
                    healthy: m.healthy,
                };
                (m.id.clone(), store)
            })
            .collect();
        let mut epochs: Vec<&Epoch> = state.epochs.iter().collect();
        epochs.sort_by_key(|e| e.start_ms);
        let views = epochs
            .iter()
            .enumerate()
            .map(|(i, e)| EpochView {
                id: e.id,
                start_ms: e.start_ms,
                end_ms: epochs.get(i + 1).map_or(i64::MAX, |next| next.start_ms),
                stores: {
                    let mut ids = e.stores.clone();
                    ids.sort();
                    ids
                },
                replication_factor: e.replication_factor,
                default_shards: e.default_shards,
                tenant_shards: e.tenant_shards.clone().into_iter().collect(),
            })
            .collect();
        let registered = state
            .members
            .iter()
            .filter(|m| m.state == MemberState::Active as i32)
            .count();
        Placement {
            epochs: views,
            stores,
            registered,
            min_stores: state.min_stores,
            fetched_at,
            epoch_delay: Duration::from_millis(state.epoch_delay_ms.max(0) as u64),
            fetched_at_ms,
            tenant_limits: state
                .tenants
                .iter()
                .filter(|t| !t.limits.is_empty())
                .map(|t| (t.id.clone(), t.limits.clone().into_iter().collect()))
                .collect(),
            applied_index: state.applied_index,
            pending_change_ms: (state.pending_change_ms != 0).then_some(state.pending_change_ms),
        }
    }

    /// The epoch a sample at `t_ms` belongs to.
    pub fn epoch_at(&self, t_ms: i64) -> Option<&EpochView> {
        let after = self.epochs.partition_point(|e| e.start_ms <= t_ms);
        after.checked_sub(1).map(|i| &self.epochs[i])
    }

    /// Epochs overlapping `[start, end]` (inclusive), with the clamped range.
    pub fn epochs_between(&self, start_ms: i64, end_ms: i64) -> Vec<(&EpochView, i64, i64)> {
        self.epochs
            .iter()
            .filter_map(|e| e.clamp(start_ms, end_ms).map(|(s, t)| (e, s, t)))
            .collect()
    }

    /// Newest sample time this view may route. An epoch this view does not
    /// know was created after it was fetched, so it starts at least
    /// `epoch_delay` after the fetch: samples before that route correctly.
    /// [`ROUTING_MARGIN`] covers a follower's apply lag and clock skew.
    /// A change meta is still committing (slowly) bounds it too: its epoch
    /// starts `epoch_delay` after its stamp and is not in this view.
    pub fn routable_until_ms(&self) -> i64 {
        let known_since = match self.pending_change_ms {
            Some(stamp) => stamp.min(self.fetched_at_ms),
            None => self.fetched_at_ms,
        };
        known_since
            .saturating_add(self.epoch_delay.as_millis() as i64)
            .saturating_sub(ROUTING_MARGIN.as_millis() as i64)
    }

    /// The zone of a store (empty when unknown or not given).
    pub fn zone(&self, id: &str) -> String {
        self.stores
            .get(id)
            .map(|s| s.zone.clone())
            .unwrap_or_default()
    }

    /// The replicas of a tenant's shard in an epoch.
    pub fn replicas(&self, epoch: &EpochView, tenant: &str, shard: u32) -> Vec<String> {
        epoch.replicas(tenant, shard, &|id| self.zone(id))
    }

    /// Is the store believed to be up?
    pub fn is_healthy(&self, id: &str) -> bool {
        self.stores.get(id).is_some_and(|s| s.healthy)
    }

    /// The gRPC address of a store.
    pub fn address(&self, id: &str) -> Option<&str> {
        self.stores.get(id).map(|s| s.address.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::meta::StoreMember;

    fn state(stores: &[(&str, &str)], epochs: &[(i64, &[&str])]) -> ClusterState {
        ClusterState {
            members: stores
                .iter()
                .map(|(id, zone)| StoreMember {
                    id: (*id).to_owned(),
                    address: format!("http://{id}:9095"),
                    zone: (*zone).to_owned(),
                    state: MemberState::Active as i32,
                    healthy: true,
                    ..StoreMember::default()
                })
                .collect(),
            epochs: epochs
                .iter()
                .enumerate()
                .map(|(i, (start, ids))| Epoch {
                    id: i as u64,
                    start_ms: *start,
                    stores: ids.iter().map(|s| (*s).to_owned()).collect(),
                    replication_factor: 3,
                    default_shards: 8,
                    tenant_shards: [("big".to_owned(), 32)].into(),
                })
                .collect(),
            epoch_delay_ms: 10_000,
            ..ClusterState::default()
        }
    }

    fn placement(state: &ClusterState) -> Placement {
        Placement::new(state, Instant::now(), 1_000_000)
    }

    #[test]
    fn replicas_are_distinct_and_capped_by_the_store_count() {
        let p = placement(&state(
            &[("a", ""), ("b", ""), ("c", ""), ("d", "")],
            &[(i64::MIN, &["a", "b"]), (0, &["a", "b", "c", "d"])],
        ));
        for shard in 0..8 {
            let two = p.replicas(&p.epochs[0], "t", shard);
            assert_eq!(two.len(), 2);
            assert_ne!(two[0], two[1]);
            let mut three = p.replicas(&p.epochs[1], "t", shard);
            assert_eq!(three.len(), 3);
            three.sort();
            three.dedup();
            assert_eq!(three.len(), 3);
        }
        assert_eq!(p.epochs[0].write_quorum(), 2);
        assert_eq!(p.epochs[0].read_quorum(), 1);
        assert_eq!(p.epochs[1].write_quorum(), 2);
        assert_eq!(p.epochs[1].read_quorum(), 2);
    }

    #[test]
    fn replicas_take_every_zone_before_a_second_store_of_one() {
        let stores = [
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("b2", "b"),
            ("c1", "c"),
            ("c2", "c"),
        ];
        let ids: Vec<&str> = stores.iter().map(|(id, _)| *id).collect();
        let p = placement(&state(&stores, &[(i64::MIN, &ids)]));
        for tenant in ["x", "y", "big"] {
            for shard in 0..p.epochs[0].shards(tenant) {
                let zones: HashSet<String> = p
                    .replicas(&p.epochs[0], tenant, shard)
                    .iter()
                    .map(|id| p.zone(id))
                    .collect();
                assert_eq!(zones.len(), 3, "tenant {tenant} shard {shard}");
            }
        }
    }

    #[test]
    fn shards_spread_over_all_stores() {
        let ids = ["s1", "s2", "s3", "s4", "s5", "s6"];
        let stores: Vec<(&str, &str)> = ids.iter().map(|id| (*id, "")).collect();
        let p = placement(&state(&stores, &[(i64::MIN, &ids)]));
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for shard in 0..32 {
            for id in p.replicas(&p.epochs[0], "big", shard) {
                *load.entry(id).or_default() += 1;
            }
        }
        assert_eq!(load.len(), 6, "{load:?}");
        // 96 replicas over 6 stores: none should hold more than twice its share.
        assert!(load.values().all(|&n| n <= 32), "{load:?}");
    }

    #[test]
    fn epochs_by_sample_time() {
        let p = placement(&state(
            &[("a", ""), ("b", "")],
            &[(i64::MIN, &["a"]), (1000, &["a", "b"])],
        ));
        assert_eq!(p.epoch_at(i64::MIN).map(|e| e.id), Some(0));
        assert_eq!(p.epoch_at(999).map(|e| e.id), Some(0));
        assert_eq!(p.epoch_at(1000).map(|e| e.id), Some(1));
        assert_eq!(p.epoch_at(i64::MAX).map(|e| e.id), Some(1));
        let overlapping: Vec<(u64, i64, i64)> = p
            .epochs_between(500, 2000)
            .iter()
            .map(|(e, s, t)| (e.id, *s, *t))
            .collect();
        assert_eq!(overlapping, vec![(0, 500, 999), (1, 1000, 2000)]);
        assert_eq!(p.epochs_between(0, 10).len(), 1);
        assert_eq!(p.epochs[0].shards("big"), 32);
        assert_eq!(p.epochs[0].shards("other"), 8);
        // Fetched at 1_000_000 with a 10 s delay, less the margin.
        assert_eq!(p.routable_until_ms(), 1_000_000 + 10_000 - 1_000);
        // A change stamped earlier and still committing bounds it further.
        let mut pending = state(
            &[("a", ""), ("b", "")],
            &[(i64::MIN, &["a"]), (1000, &["a", "b"])],
        );
        pending.pending_change_ms = 990_000;
        let p = placement(&pending);
        assert_eq!(p.routable_until_ms(), 990_000 + 10_000 - 1_000);
    }

    #[test]
    fn series_hash_ignores_label_order() {
        let a = Label {
            name: "a".into(),
            value: "1".into(),
        };
        let b = Label {
            name: "b".into(),
            value: "2".into(),
        };
        assert_eq!(
            series_hash(&[a.clone(), b.clone()]),
            series_hash(&[b.clone(), a.clone()])
        );
        let swapped = Label {
            name: "a".into(),
            value: "2".into(),
        };
        assert_ne!(series_hash(&[a, b.clone()]), series_hash(&[swapped, b]));
        // Pinned: placement must never change between versions.
        assert_eq!(
            series_hash(&[Label {
                name: "__name__".into(),
                value: "up".into()
            }]),
            PINNED_UP_HASH
        );
    }

    const PINNED_UP_HASH: u64 = 10_036_259_687_699_930_418;
}
