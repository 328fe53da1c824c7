//! Fan-out reads: every shard of every epoch a request's time range
//! overlaps must be answered by at least `RF - quorum + 1` of its replicas,
//! so that every acknowledged sample is seen with a replica down. Each
//! store node is asked once per epoch (it answers for all the shards it
//! holds); a failed node is replaced by another replica of the shards it
//! covered, and so is one slower than the hedge delay (both are then
//! awaited, the first answers that cover every shard win). Answers are merged: series by labels and, where replicas
//! differ, sample by sample.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use strata_common::error::ErrorClass;
use strata_common::{GrpcStoreClient, ServiceError, StoreApi};
use strata_proto::prometheus::{Label, Labels, MetricMetadata};
use strata_proto::store::{
    FlushRequest, FlushResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, MetadataRequest, MetadataResponse, MetricFamilyMetadata, SelectRequest,
    SelectedSeries, SeriesRequest, SeriesResponse,
};

use crate::ClusterStore;
use crate::merge::merge_selected;
use crate::placement::{EpochView, Placement};

/// One call to one store node for one epoch's clamped time range.
#[derive(Debug, Clone)]
struct Call {
    epoch: usize,
    node: String,
    start_ms: i64,
    end_ms: i64,
}

/// What a read covers: the epochs its range overlaps and, per epoch, the
/// replicas of each of the tenant's shards.
struct Coverage<'a> {
    placement: &'a Placement,
    tenant: &'a str,
    epochs: Vec<(&'a EpochView, i64, i64)>,
    shard_replicas: Vec<Vec<Vec<String>>>,
}

/// Whether a shard short of candidates fails the plan or is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planning {
    /// Every shard must reach its read quorum.
    Strict,
    /// Hedging: ask what there is, shard by shard.
    BestEffort,
}

/// Asks enough replicas for `[start, end]` and returns every answer.
async fn fan_out<T, F, Fut>(
    store: &ClusterStore,
    op: &str,
    tenant: &str,
    start_ms: i64,
    end_ms: i64,
    call: F,
) -> Result<Vec<T>, ServiceError>
where
    F: Fn(GrpcStoreClient, i64, i64) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    // Fresh enough to know every epoch up to the range's end (or now).
    let placement = store
        .watcher
        .view_for(end_ms.min(crate::watcher::now_ms()))
        .await?;
    let epochs = placement.epochs_between(start_ms, end_ms);
    let shard_replicas: Vec<Vec<Vec<String>>> = epochs
        .iter()
        .map(|(epoch, _, _)| {
            (0..epoch.shards(tenant))
                .map(|shard| placement.replicas(epoch, tenant, shard))
                .collect()
        })
        .collect();
    let coverage = Coverage {
        placement: &placement,
        tenant,
        epochs,
        shard_replicas,
    };
    let mut asked: HashSet<(usize, String)> = HashSet::new();
    let mut answered: HashSet<(usize, String)> = HashSet::new();
    let mut in_flight: HashSet<(usize, String)> = HashSet::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut results = Vec::new();
    let mut pending = FuturesUnordered::new();
    // Set when the calls in flight took longer than the hedge delay: plan
    // as if they had failed, so other replicas are asked too.
    let mut hedging = false;
    loop {
        let counted: HashSet<(usize, String)> = if hedging {
            answered.clone()
        } else {
            answered.union(&in_flight).cloned().collect()
        };
        let planned = coverage.plan(
            &asked,
            &counted,
            &failures,
            if hedging {
                Planning::BestEffort
            } else {
                Planning::Strict
            },
        );
        let calls = match planned {
            Ok(calls) => calls,
            // No replica left to hedge with: wait for the ones in flight.
            Err(_) if hedging => Vec::new(),
            Err(error) => return Err(error),
        };
        if !calls.is_empty() && !asked.is_empty() {
            store.metrics.read_retries.inc();
        }
        for c in calls {
            let key = (c.epoch, c.node.clone());
            asked.insert(key.clone());
            in_flight.insert(key);
            let address = placement.address(&c.node).unwrap_or_default().to_owned();
            let client = store.client(&address);
            let timeout = store.options.read_timeout;
            let future = client.map(|client| call(client, c.start_ms, c.end_ms));
            pending.push(async move {
                let outcome = match future {
                    Ok(future) => match tokio::time::timeout(timeout, future).await {
                        Ok(result) => result,
                        Err(_) => Err(ServiceError::new(
                            ErrorClass::Timeout,
                            format!("no answer within {timeout:?}"),
                        )),
                    },
                    Err(error) => Err(error),
                };
                (c, outcome)
            });
        }
        if pending.is_empty() {
            return Ok(results);
        }
        let next = tokio::select! {
            next = pending.next() => next,
            () = tokio::time::sleep(store.options.hedge_delay), if !hedging => {
                hedging = true;
                continue;
            }
        };
        let Some((call, outcome)) = next else {
            continue;
        };
        hedging = false;
        let key = (call.epoch, call.node.clone());
        in_flight.remove(&key);
        store.metrics.call(op, outcome.is_ok());
        match outcome {
            Ok(value) => {
                answered.insert(key);
                results.push(value);
            }
            Err(error) if is_request_error(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(store = %call.node, %error, op, "replica read failed");
                failures.insert(call.node, error.message);
            }
        }
        let covered = matches!(
            coverage.plan(&asked, &answered, &failures, Planning::Strict),
            Ok(calls) if calls.is_empty()
        );
        if covered {
            // Replicas still in flight (hedged or slow) are not waited for.
            return Ok(results);
        }
    }
}

/// Errors every replica would give alike: no point asking another.
fn is_request_error(error: &ServiceError) -> bool {
    matches!(
        error.class,
        ErrorClass::BadData | ErrorClass::Unprocessable | ErrorClass::TooLarge
    )
}

impl Coverage<'_> {
    /// The calls still needed so that every shard has its read quorum;
    /// empty when it has. Healthy replicas and nodes already chosen come
    /// first, so few nodes cover many shards.
    fn plan(
        &self,
        asked: &HashSet<(usize, String)>,
        answered: &HashSet<(usize, String)>,
        failures: &BTreeMap<String, String>,
        planning: Planning,
    ) -> Result<Vec<Call>, ServiceError> {
        let (placement, tenant, epochs, shard_replicas) = (
            self.placement,
            self.tenant,
            &self.epochs,
            &self.shard_replicas,
        );
        let mut chosen: Vec<(usize, String)> = Vec::new();
        for (epoch_index, (epoch, _, _)) in epochs.iter().enumerate() {
            if epoch.stores.is_empty() {
                return Err(ServiceError::new(
                    ErrorClass::Unavailable,
                    format!("placement epoch {} has no store nodes", epoch.id),
                ));
            }
            let needed_per_shard = epoch.read_quorum();
            for (shard, replicas) in shard_replicas[epoch_index].iter().enumerate() {
                let have = replicas
                    .iter()
                    .filter(|r| answered.contains(&(epoch_index, (*r).clone())))
                    .count();
                let picked_now = replicas
                    .iter()
                    .filter(|r| chosen.contains(&(epoch_index, (*r).clone())))
                    .count();
                let mut needed = needed_per_shard.saturating_sub(have + picked_now);
                if needed == 0 {
                    continue;
                }
                let mut candidates: Vec<&String> = replicas
                    .iter()
                    .filter(|r| {
                        let key = (epoch_index, (*r).clone());
                        !asked.contains(&key) && !chosen.contains(&key)
                    })
                    .collect();
                candidates.sort_by_key(|r| !placement.is_healthy(r));
                if candidates.len() < needed && planning == Planning::BestEffort {
                    // Hedging: take what there is for this shard, go on with
                    // the others.
                    needed = candidates.len();
                }
                if candidates.len() < needed {
                    let reasons: Vec<String> = replicas
                        .iter()
                        .filter_map(|r| failures.get(r).map(|why| format!("{r}: {why}")))
                        .collect();
                    return Err(ServiceError::new(
                        ErrorClass::Unavailable,
                        format!(
                            "shard {shard} of tenant {tenant} in placement epoch {} cannot be read: {} of its replicas answered, {} needed ({})",
                            epoch.id,
                            have,
                            needed_per_shard,
                            reasons.join("; ")
                        ),
                    ));
                }
                for candidate in candidates {
                    if needed == 0 {
                        break;
                    }
                    chosen.push((epoch_index, candidate.clone()));
                    needed -= 1;
                }
            }
        }
        Ok(chosen
            .into_iter()
            .map(|(epoch, node)| {
                let (_, start_ms, end_ms) = epochs[epoch];
                Call {
                    epoch,
                    node,
                    start_ms,
                    end_ms,
                }
            })
            .collect())
    }
}

pub(crate) async fn select(
    store: &ClusterStore,
    request: SelectRequest,
) -> Result<Vec<SelectedSeries>, ServiceError> {
    let answers = fan_out(
        store,
        "select",
        &request.tenant,
        request.start_ms,
        request.end_ms,
        |client, start_ms, end_ms| {
            let request = SelectRequest {
                start_ms,
                end_ms,
                ..request.clone()
            };
            async move { client.select(request).await }
        },
    )
    .await?;
    merge_selected(answers)
}

pub(crate) async fn series(
    store: &ClusterStore,
    request: SeriesRequest,
) -> Result<SeriesResponse, ServiceError> {
    let answers = fan_out(
        store,
        "series",
        &request.tenant,
        request.start_ms,
        request.end_ms,
        |client, start_ms, end_ms| {
            let request = SeriesRequest {
                start_ms,
                end_ms,
                ..request.clone()
            };
            async move { client.series(request).await }
        },
    )
    .await?;
    let mut truncated = false;
    let mut all: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    for answer in answers {
        truncated |= answer.truncated;
        for labels in answer.series {
            all.insert(
                labels
                    .labels
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect(),
            );
        }
    }
    let limit = limit_of(request.limit);
    truncated |= all.len() > limit;
    let series = all
        .into_iter()
        .take(limit)
        .map(|labels| Labels {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
        })
        .collect();
    Ok(SeriesResponse { series, truncated })
}

fn limit_of(limit: u64) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX)
    }
}

/// Union of sorted string lists, cut at `limit`.
fn union(lists: impl IntoIterator<Item = (Vec<String>, bool)>, limit: u64) -> (Vec<String>, bool) {
    let mut truncated = false;
    let mut all = BTreeSet::new();
    for (list, cut) in lists {
        truncated |= cut;
        all.extend(list);
    }
    let limit = limit_of(limit);
    truncated |= all.len() > limit;
    (all.into_iter().take(limit).collect(), truncated)
}

pub(crate) async fn label_names(
    store: &ClusterStore,
    request: LabelNamesRequest,
) -> Result<LabelNamesResponse, ServiceError> {
    let answers = fan_out(
        store,
        "label_names",
        &request.tenant,
        request.start_ms,
        request.end_ms,
        |client, start_ms, end_ms| {
            let request = LabelNamesRequest {
                start_ms,
                end_ms,
                ..request.clone()
            };
            async move { client.label_names(request).await }
        },
    )
    .await?;
    let (names, truncated) = union(
        answers.into_iter().map(|a| (a.names, a.truncated)),
        request.limit,
    );
    Ok(LabelNamesResponse { names, truncated })
}

pub(crate) async fn label_values(
    store: &ClusterStore,
    request: LabelValuesRequest,
) -> Result<LabelValuesResponse, ServiceError> {
    let answers = fan_out(
        store,
        "label_values",
        &request.tenant,
        request.start_ms,
        request.end_ms,
        |client, start_ms, end_ms| {
            let request = LabelValuesRequest {
                start_ms,
                end_ms,
                ..request.clone()
            };
            async move { client.label_values(request).await }
        },
    )
    .await?;
    let (values, truncated) = union(
        answers.into_iter().map(|a| (a.values, a.truncated)),
        request.limit,
    );
    Ok(LabelValuesResponse { values, truncated })
}

/// Metadata is written to every store of the newest epoch at the time,
/// so ask every healthy store of every epoch and merge by metric family;
/// one answer is enough.
pub(crate) async fn metadata(
    store: &ClusterStore,
    request: MetadataRequest,
) -> Result<MetadataResponse, ServiceError> {
    let placement = store.watcher.view().await?;
    let nodes: BTreeSet<&String> = placement
        .epochs
        .iter()
        .flat_map(|e| e.stores.iter())
        .filter(|id| placement.is_healthy(id))
        .collect();
    let asked = nodes.iter().map(|id| {
        let client = store.client(placement.address(id).unwrap_or_default());
        let request = MetadataRequest {
            limit: 0,
            ..request.clone()
        };
        let timeout = store.options.read_timeout;
        async move {
            match client {
                Ok(client) => tokio::time::timeout(timeout, client.metadata(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ServiceError::new(
                            ErrorClass::Timeout,
                            format!("no answer within {timeout:?}"),
                        ))
                    }),
                Err(error) => Err(error),
            }
        }
    });
    let mut answers = Vec::new();
    let mut last_error = None;
    for outcome in join_all(asked).await {
        store.metrics.call("metadata", outcome.is_ok());
        match outcome {
            Ok(answer) => answers.push(answer),
            Err(error) => last_error = Some(error),
        }
    }
    if answers.is_empty()
        && let Some(error) = last_error
    {
        return Err(error);
    }
    let mut families: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
    for answer in answers {
        for family in answer.families {
            let entries = families.entry(family.metric).or_default();
            for entry in family.entries {
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
    }
    let per_metric = limit_of(request.limit_per_metric);
    let families = families
        .into_iter()
        .take(limit_of(request.limit))
        .map(|(metric, mut entries)| {
            entries.truncate(per_metric);
            MetricFamilyMetadata { metric, entries }
        })
        .collect();
    Ok(MetadataResponse { families })
}

/// Flushes every store of the newest epoch; fails when one cannot.
pub(crate) async fn flush(
    store: &ClusterStore,
    request: FlushRequest,
) -> Result<FlushResponse, ServiceError> {
    let placement = store.watcher.refresh().await?;
    let newest: Vec<String> = placement
        .epochs
        .last()
        .map(|e| e.stores.clone())
        .unwrap_or_default();
    let calls = newest.iter().map(|id| {
        let client = store.client(placement.address(id).unwrap_or_default());
        let request = request.clone();
        // A flush writes blocks: allow it longer than a read.
        let timeout = store.options.read_timeout * 4;
        async move {
            let result = match client {
                Ok(client) => tokio::time::timeout(timeout, client.flush(request))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ServiceError::new(
                            ErrorClass::Timeout,
                            format!("no answer within {timeout:?}"),
                        ))
                    }),
                Err(error) => Err(error),
            };
            result.map_err(|e| ServiceError::new(e.class, format!("{id}: {}", e.message)))
        }
    });
    let mut blocks = 0;
    for outcome in join_all(calls).await {
        blocks += outcome?.blocks;
    }
    Ok(FlushResponse { blocks })
}
