//! The distributor's write: every series goes to the replicas of its shard
//! in the epoch of each sample's timestamp; the request succeeds once every
//! (epoch, shard) it touched has a quorum of acknowledgements. Replicas
//! still writing when that happens finish in the background.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use prost::bytes::Bytes;
use strata_common::ServiceError;
use strata_common::error::ErrorClass;
use strata_proto::prometheus::{MetricMetadata, TimeSeries};
use strata_proto::store::{EncodedWriteRequest, RejectedSeries, WriteRequest, WriteResponse};

use crate::ClusterStore;
use crate::placement::{Placement, series_hash, shard_of};

/// (epoch id, shard): the unit that needs a quorum.
type GroupKey = (u64, u32);

/// The replicas of one (epoch, shard) and what they answered so far.
#[derive(Debug)]
struct Group {
    replicas: Vec<String>,
    quorum: usize,
    acks: usize,
    failures: Vec<String>,
}

impl Group {
    fn decided(&self) -> bool {
        self.acks >= self.quorum || self.replicas.len() - self.failures.len() < self.quorum
    }
}

/// What one store node is sent: its series (each encoded once, the bytes
/// shared by every replica's batch), and where each came from.
#[derive(Debug, Default)]
struct NodeBatch {
    series: Vec<Bytes>,
    /// Index in the client's request of each entry of `series`, and the
    /// group the entry is written for (a series split across epochs has
    /// one entry per epoch).
    origin: Vec<(u32, GroupKey)>,
    groups: Vec<GroupKey>,
}

pub(crate) async fn write(
    store: &ClusterStore,
    request: WriteRequest,
) -> Result<WriteResponse, ServiceError> {
    let newest = newest_timestamp(&request.timeseries);
    let placement = store.watcher.view_for(newest.unwrap_or(i64::MIN)).await?;
    if placement.epochs.is_empty() {
        return Err(ServiceError::new(
            ErrorClass::Unavailable,
            format!(
                "the cluster has no placement yet: {} of {} store nodes registered",
                placement.registered, placement.min_stores
            ),
        ));
    }
    // (floats, histograms) per series, to count what was written.
    let counts: Vec<(u64, u64)> = request
        .timeseries
        .iter()
        .map(|s| (s.samples.len() as u64, s.histograms.len() as u64))
        .collect();
    store.ensure_tenant(&request.tenant);
    let tenant = request.tenant;
    let metadata = request.metadata;
    // The view is as fresh as meta could give (`view_for` refreshed it
    // when needed), so samples beyond its horizon are from the future.
    let mut timeseries = request.timeseries;
    let future = refuse_future_samples(&mut timeseries, placement.routable_until_ms());
    let mut rejected: BTreeMap<u32, RejectedSeries> = BTreeMap::new();
    let (mut groups, batches) = route(&placement, &tenant, timeseries, !metadata.is_empty())?;

    // Health is a hint: a replica believed down is held back while its
    // groups can reach quorum without it, and asked as soon as they cannot
    // (meta may only have missed its heartbeats, e.g. during an election).
    let mut pending = FuturesUnordered::new();
    let mut deferred: HashMap<String, NodeBatch> = HashMap::new();
    let mut launched: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    for (node, batch) in batches {
        let needed = batch.groups.iter().any(|key| {
            groups.get(key).is_some_and(|g| {
                g.replicas
                    .iter()
                    .filter(|r| placement.is_healthy(r))
                    .count()
                    < g.quorum
            })
        });
        if placement.is_healthy(&node) || needed {
            launched.insert(node.clone());
            pending.push(launch(store, &placement, &tenant, &metadata, node, batch));
        } else {
            deferred.insert(node, batch);
        }
    }

    let mut refusal: Option<ServiceError> = None;
    let mut refused_parts: BTreeMap<(u32, GroupKey), RejectedSeries> = BTreeMap::new();
    while let Some((node, origin, node_groups, joined)) = pending.next().await {
        finished.insert(node.clone());
        let result = joined.unwrap_or_else(|e| Err(ServiceError::internal(e.to_string())));
        store.metrics.call("write", result.is_ok());
        match result {
            Ok(response) => {
                for r in response.rejected {
                    let Some(&(index, key)) = origin.get(r.index as usize) else {
                        continue;
                    };
                    // Replicas of one part refuse alike: keep the most any
                    // refused; parts of a split series add up below.
                    let part =
                        refused_parts
                            .entry((index, key))
                            .or_insert_with(|| RejectedSeries {
                                index,
                                reason: r.reason.clone(),
                                rejected_samples: 0,
                            });
                    part.rejected_samples = part.rejected_samples.max(r.rejected_samples);
                }
                for key in node_groups {
                    if let Some(group) = groups.get_mut(&key) {
                        group.acks += 1;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(store = %node, %error, "replica write failed");
                if matches!(
                    error.class,
                    ErrorClass::BadData | ErrorClass::TooLarge | ErrorClass::Unprocessable
                ) {
                    refusal.get_or_insert(error.clone());
                }
                for key in &node_groups {
                    if let Some(group) = groups.get_mut(key) {
                        group.failures.push(format!("{node}: {}", error.message));
                    }
                }
                // Groups that can no longer reach quorum with the replicas
                // in flight: ask their held-back replicas now.
                for key in &node_groups {
                    let Some(group) = groups.get(key) else {
                        continue;
                    };
                    let in_flight = group
                        .replicas
                        .iter()
                        .filter(|r| launched.contains(*r) && !finished.contains(*r))
                        .count();
                    if group.acks + in_flight >= group.quorum {
                        continue;
                    }
                    for replica in group.replicas.clone() {
                        if let Some(batch) = deferred.remove(&replica) {
                            tracing::info!(store = %replica, "asking a replica believed down, a healthy one failed");
                            launched.insert(replica.clone());
                            pending.push(launch(
                                store, &placement, &tenant, &metadata, replica, batch,
                            ));
                        }
                    }
                }
            }
        }
        if finished.len() < launched.len() && groups.values().all(Group::decided) {
            // Quorum (or its impossibility) is known everywhere; the
            // remaining replicas finish on their own.
            break;
        }
    }

    if let Some(((epoch, shard), group)) = groups.iter().find(|(_, g)| g.acks < g.quorum) {
        store.metrics.quorum_failures.inc();
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        return Err(ServiceError::new(
            ErrorClass::Unavailable,
            format!(
                "write quorum not reached for shard {shard} of tenant {tenant} in placement epoch {epoch}: {} of {} acknowledgements needed ({})",
                group.acks,
                group.quorum,
                group.failures.join("; ")
            ),
        ));
    }
    for ((index, _), part) in refused_parts {
        match rejected.get_mut(&index) {
            Some(entry) => entry.rejected_samples += part.rejected_samples,
            None => {
                rejected.insert(index, part);
            }
        }
    }
    for (index, refusal) in future {
        match rejected.get_mut(&index) {
            Some(entry) => entry.rejected_samples += refusal.rejected_samples,
            None => {
                rejected.insert(index, refusal);
            }
        }
    }
    let rejected: Vec<RejectedSeries> = rejected.into_values().collect();
    let (mut floats, mut histograms): (u64, u64) = counts
        .iter()
        .fold((0, 0), |(f, h), (sf, sh)| (f + sf, h + sh));
    for r in &rejected {
        // A replica counts a series' refused floats and histograms together.
        let (series_floats, series_histograms) = counts[r.index as usize];
        let refused_floats = r.rejected_samples.min(series_floats);
        floats -= refused_floats;
        histograms -= (r.rejected_samples - refused_floats).min(series_histograms);
    }
    Ok(WriteResponse {
        samples_written: floats,
        histograms_written: histograms,
        rejected,
    })
}

/// A write of `batch` to store `node`, spawned so it finishes even when
/// the request returns first (its quorum reached); the answer comes with
/// what routing needs to account for it.
fn launch(
    store: &ClusterStore,
    placement: &Placement,
    tenant: &str,
    metadata: &[MetricMetadata],
    node: String,
    batch: NodeBatch,
) -> impl Future<Output = Answer> + use<> {
    let address = placement.address(&node).unwrap_or_default().to_owned();
    let client = store.client(&address);
    let write = EncodedWriteRequest {
        tenant: tenant.to_owned(),
        timeseries: batch.series,
        // Every node of a request gets its metadata (see `route`).
        metadata: metadata.to_vec(),
    };
    let timeout = store.options.write_timeout;
    let task = tokio::spawn(async move {
        let client = client?;
        match tokio::time::timeout(timeout, client.write_encoded(write)).await {
            Ok(result) => result,
            Err(_) => Err(ServiceError::new(
                ErrorClass::Timeout,
                format!("no answer within {timeout:?}"),
            )),
        }
    });
    async move { (node, batch.origin, batch.groups, task.await) }
}

/// A node's answer: its name, the origin of its series, its groups, and
/// the write's outcome.
type Answer = (
    String,
    Vec<(u32, GroupKey)>,
    Vec<GroupKey>,
    Result<Result<WriteResponse, ServiceError>, tokio::task::JoinError>,
);

/// Removes samples newer than `horizon` (the newest time the placement can
/// route: a placement epoch may start after it that this process does not
/// know yet) and reports them as refused, like any invalid sample.
fn refuse_future_samples(
    timeseries: &mut [TimeSeries],
    horizon: i64,
) -> BTreeMap<u32, RejectedSeries> {
    let mut refused = BTreeMap::new();
    for (index, series) in timeseries.iter_mut().enumerate() {
        let before = series.samples.len() + series.histograms.len();
        let newest = series
            .samples
            .iter()
            .map(|s| s.timestamp)
            .chain(series.histograms.iter().map(|h| h.timestamp))
            .max();
        if newest.is_none_or(|t| t <= horizon) {
            continue;
        }
        series.samples.retain(|s| s.timestamp <= horizon);
        series.histograms.retain(|h| h.timestamp <= horizon);
        let count = before - series.samples.len() - series.histograms.len();
        refused.insert(
            index as u32,
            RejectedSeries {
                index: index as u32,
                reason: format!(
                    "{count} samples are too far in the future (after {horizon} ms, the placement horizon: now + meta.epoch_delay - 1s) for series {}",
                    strata_common::labels::format(&series.labels)
                ),
                rejected_samples: count as u64,
            },
        );
    }
    refused
}

fn newest_timestamp(series: &[TimeSeries]) -> Option<i64> {
    series
        .iter()
        .flat_map(|s| {
            s.samples
                .iter()
                .map(|x| x.timestamp)
                .chain(s.histograms.iter().map(|h| h.timestamp))
        })
        .max()
}

/// The quorum groups of a request, and one batch per store node.
type Routed = (HashMap<GroupKey, Group>, HashMap<String, NodeBatch>);

/// Splits the request into one batch per store node, and the groups whose
/// quorum decides the outcome.
fn route(
    placement: &Placement,
    tenant: &str,
    timeseries: Vec<TimeSeries>,
    has_metadata: bool,
) -> Result<Routed, ServiceError> {
    let mut groups: HashMap<GroupKey, Group> = HashMap::new();
    let mut batches: HashMap<String, NodeBatch> = HashMap::new();
    for (index, series) in timeseries.into_iter().enumerate() {
        if series.samples.is_empty() && series.histograms.is_empty() {
            continue;
        }
        let hash = series_hash(&series.labels);
        for (epoch_index, part) in split_by_epoch(placement, series) {
            let epoch = &placement.epochs[epoch_index];
            let shard = shard_of(hash, epoch.shards(tenant));
            let key = (epoch.id, shard);
            let group = groups.entry(key).or_insert_with(|| {
                let replicas = placement.replicas(epoch, tenant, shard);
                Group {
                    quorum: replicas.len() / 2 + 1,
                    replicas,
                    acks: 0,
                    failures: Vec::new(),
                }
            });
            let encoded = Bytes::from(part.encode_to_vec());
            for node in &group.replicas {
                let batch = match batches.get_mut(node) {
                    Some(batch) => batch,
                    None => batches.entry(node.clone()).or_default(),
                };
                batch.series.push(encoded.clone());
                batch.origin.push((index as u32, key));
                if !batch.groups.contains(&key) {
                    batch.groups.push(key);
                }
            }
        }
    }
    if has_metadata {
        // Metadata (often sent alone) goes to every store of the newest
        // epoch, where the metadata read finds it.
        let newest = &placement.epochs[placement.epochs.len() - 1];
        let key = (u64::MAX, 0);
        groups.insert(
            key,
            Group {
                replicas: newest.stores.clone(),
                quorum: newest.write_quorum(),
                acks: 0,
                failures: Vec::new(),
            },
        );
        for node in &newest.stores {
            let batch = batches.entry(node.clone()).or_default();
            batch.groups.push(key);
        }
    }
    if groups.values().any(|g| g.replicas.is_empty()) {
        return Err(ServiceError::new(
            ErrorClass::Unavailable,
            "a placement epoch has no store nodes",
        ));
    }
    Ok((groups, batches))
}

/// The series cut into the parts that fall into each epoch; the series
/// itself in the usual case of a single epoch.
fn split_by_epoch(placement: &Placement, series: TimeSeries) -> Vec<(usize, TimeSeries)> {
    let epoch_of = |t: i64| {
        placement
            .epochs
            .partition_point(|e| e.start_ms <= t)
            .saturating_sub(1)
    };
    let times = || {
        series
            .samples
            .iter()
            .map(|s| s.timestamp)
            .chain(series.histograms.iter().map(|h| h.timestamp))
    };
    let (Some(min), Some(max)) = (times().min(), times().max()) else {
        return vec![(placement.epochs.len() - 1, series)];
    };
    let (first, last) = (epoch_of(min), epoch_of(max));
    if first == last {
        return vec![(first, series)];
    }
    (first..=last)
        .map(|e| {
            let part = TimeSeries {
                labels: series.labels.clone(),
                samples: series
                    .samples
                    .iter()
                    .filter(|s| epoch_of(s.timestamp) == e)
                    .cloned()
                    .collect(),
                histograms: series
                    .histograms
                    .iter()
                    .filter(|h| epoch_of(h.timestamp) == e)
                    .cloned()
                    .collect(),
                exemplars: Vec::new(),
            };
            (e, part)
        })
        .filter(|(_, part)| !part.samples.is_empty() || !part.histograms.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use strata_proto::meta::{ClusterState, Epoch, MemberState, StoreMember};
    use strata_proto::prometheus::{Label, Sample};

    fn placement() -> Placement {
        let member = |id: &str| StoreMember {
            id: id.to_owned(),
            address: format!("http://{id}:9095"),
            state: MemberState::Active as i32,
            healthy: true,
            ..StoreMember::default()
        };
        let epoch = |id: u64, start_ms: i64, stores: &[&str]| Epoch {
            id,
            start_ms,
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
            replication_factor: 3,
            default_shards: 4,
            ..Epoch::default()
        };
        let state = ClusterState {
            members: ["a", "b", "c", "d"].into_iter().map(member).collect(),
            epochs: vec![
                epoch(1, i64::MIN, &["a", "b", "c"]),
                epoch(2, 1_000, &["a", "b", "c", "d"]),
            ],
            epoch_delay_ms: 10_000,
            ..ClusterState::default()
        };
        Placement::new(&state, Instant::now(), 0)
    }

    fn series(name: &str, times: &[i64]) -> TimeSeries {
        TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: times
                .iter()
                .map(|&t| Sample {
                    value: t as f64,
                    timestamp: t,
                })
                .collect(),
            ..TimeSeries::default()
        }
    }

    #[test]
    fn a_series_across_an_epoch_boundary_is_split_by_sample_time() {
        let parts = split_by_epoch(&placement(), series("x", &[998, 999, 1_000, 1_001]));
        let times: Vec<(usize, Vec<i64>)> = parts
            .iter()
            .map(|(e, s)| (*e, s.samples.iter().map(|x| x.timestamp).collect()))
            .collect();
        assert_eq!(times, vec![(0, vec![998, 999]), (1, vec![1_000, 1_001])]);
        let whole = split_by_epoch(&placement(), series("x", &[5, 6]));
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].0, 0);
    }

    #[test]
    fn every_replica_of_a_shard_gets_the_series_once() {
        let placement = placement();
        let timeseries: Vec<TimeSeries> = (0..20).map(|i| series(&format!("m{i}"), &[i])).collect();
        let (groups, batches) = route(&placement, "t", timeseries, false).expect("route");
        // Epoch 1 has 3 stores and RF 3: each group is all of them.
        assert!(
            groups
                .values()
                .all(|g| g.replicas.len() == 3 && g.quorum == 2)
        );
        let mut copies = 0;
        for batch in batches.values() {
            assert_eq!(batch.series.len(), batch.origin.len());
            let mut origins: Vec<u32> = batch.origin.iter().map(|(i, _)| *i).collect();
            origins.sort_unstable();
            origins.dedup();
            assert_eq!(
                origins.len(),
                batch.origin.len(),
                "no series twice on a node"
            );
            copies += batch.series.len();
        }
        assert_eq!(copies, 20 * 3);
        assert!(!batches.contains_key("d"), "d is only in epoch 2");
    }

    #[test]
    fn future_samples_are_refused_per_series() {
        let mut timeseries = vec![series("now", &[100, 200]), series("later", &[100, 5_000])];
        let refused = refuse_future_samples(&mut timeseries, 1_000);
        assert_eq!(timeseries[0].samples.len(), 2);
        assert_eq!(timeseries[1].samples.len(), 1);
        assert_eq!(refused.len(), 1);
        let only = &refused[&1];
        assert_eq!(only.rejected_samples, 1);
        assert!(
            only.reason.contains("too far in the future"),
            "{}",
            only.reason
        );
    }
}
