//! The frontend's queriers. Each request goes to the querier with the most
//! free slots (round-robin among equals), at most
//! `max_concurrent_per_querier` at once on one querier; a querier that
//! cannot be reached is skipped and the request retried on the next one,
//! while an error a querier answered with is returned as it is.
//!
//! An address whose host name resolves to several IPs (a Kubernetes
//! headless Service) stands for every one of them, resolved again by
//! [`QuerierPool::run`], so new querier pods are used without a restart.
//!
//! Shuffle sharding ([`QuerierPool::set_queriers_per_tenant`]): a tenant
//! limited to `n` queriers sends its queries only to the `n` that rank
//! highest by a hash of (tenant, querier endpoint) — rendezvous hashing, so
//! the subset is the same on every frontend and changes only where a
//! querier of it comes or goes. A tenant whose queries crash or overload
//! queriers then hurts only the tenants sharing its subset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use strata_common::{GrpcQueryClient, QueryApi, ServiceError};
use strata_proto::query::{QueryRequest, QueryResponse};
use tokio::sync::{Semaphore, watch};

use crate::placement::{FNV_OFFSET, fnv1a, mix};

/// One querier endpoint and its free slots.
#[derive(Debug, Clone)]
struct Querier {
    endpoint: String,
    client: GrpcQueryClient,
    slots: Arc<Semaphore>,
}

/// Several queriers as one [`QueryApi`].
pub struct QuerierPool {
    /// The configured addresses (URLs, possibly naming several hosts each).
    addresses: Vec<String>,
    max_concurrent_per_querier: usize,
    queriers: RwLock<Vec<Querier>>,
    next: AtomicUsize,
    /// How many queriers a tenant may use (0 = all), once set.
    queriers_per_tenant: OnceLock<QueriersPerTenant>,
}

/// A tenant's querier subset size (0 = all queriers).
pub type QueriersPerTenant = Arc<dyn Fn(&str) -> usize + Send + Sync>;

impl std::fmt::Debug for QuerierPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerierPool")
            .field("addresses", &self.addresses)
            .field(
                "max_concurrent_per_querier",
                &self.max_concurrent_per_querier,
            )
            .field("queriers", &self.queriers.read().len())
            .finish_non_exhaustive()
    }
}

impl QuerierPool {
    /// Lazily connected clients of `addresses` (gRPC URLs); until
    /// [`QuerierPool::resolve`] runs, each address is one querier.
    pub fn new(
        addresses: &[String],
        max_concurrent_per_querier: usize,
    ) -> Result<Self, ServiceError> {
        if addresses.is_empty() {
            return Err(ServiceError::bad_data("no querier addresses configured"));
        }
        let pool = QuerierPool {
            addresses: addresses.to_vec(),
            max_concurrent_per_querier: max_concurrent_per_querier.max(1),
            queriers: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            queriers_per_tenant: OnceLock::new(),
        };
        let endpoints: Vec<String> = addresses.to_vec();
        pool.set_endpoints(&endpoints)?;
        Ok(pool)
    }

    /// Replaces the endpoints, keeping the clients (and busy slots) of
    /// those that remain.
    fn set_endpoints(&self, endpoints: &[String]) -> Result<(), ServiceError> {
        let current: BTreeMap<String, Querier> = self
            .queriers
            .read()
            .iter()
            .map(|q| (q.endpoint.clone(), q.clone()))
            .collect();
        let mut next = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let querier = match current.get(endpoint) {
                Some(existing) => existing.clone(),
                None => Querier {
                    endpoint: endpoint.clone(),
                    client: GrpcQueryClient::connect_lazy(endpoint)?,
                    slots: Arc::new(Semaphore::new(self.max_concurrent_per_querier)),
                },
            };
            next.push(querier);
        }
        *self.queriers.write() = next;
        Ok(())
    }

    /// Resolves every address's host to all its IPs (one querier each);
    /// an address that does not resolve is kept as it is.
    pub async fn resolve(&self) {
        let mut endpoints = Vec::new();
        for address in &self.addresses {
            endpoints.extend(expand(address).await);
        }
        endpoints.sort();
        endpoints.dedup();
        if let Err(error) = self.set_endpoints(&endpoints) {
            tracing::warn!(%error, "cannot use the resolved querier addresses");
        }
    }

    /// Resolves the addresses every `period` until `stopped`.
    pub async fn run(self: Arc<Self>, period: Duration, mut stopped: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            self.resolve().await;
        }
    }

    /// Limits each tenant to the queriers of its shuffle shard from now on:
    /// `per_tenant(tenant)` of them (0 = all). Only the first call counts.
    pub fn set_queriers_per_tenant(&self, per_tenant: QueriersPerTenant) {
        let _ = self.queriers_per_tenant.set(per_tenant);
    }

    /// `tenant`'s queriers in the order to try them: most free slots first,
    /// rotating among equals.
    fn ranked(&self, tenant: &str) -> Vec<Querier> {
        let mut queriers = self.queriers.read().clone();
        let allowed = self
            .queriers_per_tenant
            .get()
            .map_or(0, |per_tenant| per_tenant(tenant));
        if allowed > 0 && allowed < queriers.len() {
            queriers = tenant_shard(queriers, tenant, allowed);
        }
        if queriers.is_empty() {
            return queriers;
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % queriers.len();
        queriers.rotate_left(first);
        // Stable: equals keep the rotated order.
        queriers.sort_by_key(|q| std::cmp::Reverse(q.slots.available_permits()));
        queriers
    }
}

/// The `size` queriers ranking highest for `tenant` (rendezvous hashing
/// of tenant and endpoint), in endpoint order.
fn tenant_shard(mut queriers: Vec<Querier>, tenant: &str, size: usize) -> Vec<Querier> {
    let tenant_hash = fnv1a(FNV_OFFSET, tenant.as_bytes());
    queriers.sort_by_cached_key(|q| {
        let score = mix(fnv1a(fnv1a(tenant_hash, &[0xff]), q.endpoint.as_bytes()));
        (std::cmp::Reverse(score), q.endpoint.clone())
    });
    queriers.truncate(size);
    queriers.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
    queriers
}

/// `http://host:port` as one URL per IP `host` resolves to.
async fn expand(address: &str) -> Vec<String> {
    let Some((scheme, rest)) = address.split_once("://") else {
        return vec![address.to_owned()];
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match tokio::net::lookup_host(authority).await {
        Ok(found) => {
            let urls: Vec<String> = found.map(|ip| format!("{scheme}://{ip}")).collect();
            if urls.is_empty() {
                vec![address.to_owned()]
            } else {
                urls
            }
        }
        Err(error) => {
            tracing::debug!(%address, %error, "querier address does not resolve, kept as given");
            vec![address.to_owned()]
        }
    }
}

/// The querier could not be reached (connection refused or broken): the
/// failure carries the transport error as its source. A querier that
/// answered with an error (a bad query, or store nodes it could not read)
/// is not retried here: another querier would do the same work to fail
/// alike, and the query frontend decides about retries.
fn querier_unreachable(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    status.source().is_some()
        && matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        )
}

#[async_trait]
impl QueryApi for QuerierPool {
    async fn query(&self, request: QueryRequest) -> Result<QueryResponse, ServiceError> {
        let mut last_error = None;
        for querier in self.ranked(&request.tenant) {
            // Waits when even the least busy querier is full.
            let _slot = querier
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ServiceError::internal("querier pool closed"))?;
            match querier.client.query_status(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(status) if querier_unreachable(&status) => {
                    let error = ServiceError::from(status);
                    tracing::warn!(querier = %querier.endpoint, %error, "querier unreachable, retrying on the next");
                    last_error = Some(error);
                }
                Err(status) => return Err(status.into()),
            }
        }
        Err(last_error.unwrap_or_else(|| ServiceError::internal("no querier answered")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_with_several_addresses_stands_for_each() {
        // "localhost" may resolve to 127.0.0.1 and ::1: one querier each.
        let expanded = expand("http://localhost:9095").await;
        assert!(!expanded.is_empty());
        assert!(
            expanded
                .iter()
                .all(|u| u.starts_with("http://") && u.ends_with(":9095")),
            "{expanded:?}"
        );
        assert!(
            expanded
                .iter()
                .any(|u| u.contains("127.0.0.1") || u.contains("::1"))
        );
        assert_eq!(
            expand("http://10.1.2.3:9095").await,
            vec!["http://10.1.2.3:9095".to_owned()]
        );
        assert_eq!(
            expand("http://no-such-host.invalid:9095").await,
            vec!["http://no-such-host.invalid:9095".to_owned()]
        );
    }

    #[tokio::test]
    async fn the_least_busy_querier_comes_first() {
        let pool = QuerierPool::new(
            &[
                "http://10.0.0.1:1".to_owned(),
                "http://10.0.0.2:1".to_owned(),
            ],
            2,
        )
        .expect("pool");
        let busy = pool.queriers.read()[0].clone();
        let _held = busy.slots.clone().acquire_owned().await.expect("slot");
        for _ in 0..4 {
            assert_eq!(pool.ranked("t")[0].endpoint, "http://10.0.0.2:1");
        }
        drop(_held);
        // Equals rotate.
        let firsts: std::collections::BTreeSet<String> = (0..4)
            .map(|_| pool.ranked("t")[0].endpoint.clone())
            .collect();
        assert_eq!(firsts.len(), 2);
    }

    fn pool_of(count: usize) -> QuerierPool {
        let addresses: Vec<String> = (1..=count)
            .map(|i| format!("http://10.0.0.{i}:1"))
            .collect();
        QuerierPool::new(&addresses, 1).expect("pool")
    }

    fn endpoints(queriers: &[Querier]) -> std::collections::BTreeSet<String> {
        queriers.iter().map(|q| q.endpoint.clone()).collect()
    }

    #[tokio::test]
    async fn a_tenant_is_sent_only_to_its_stable_subset_of_queriers() {
        let pool = pool_of(10);
        pool.set_queriers_per_tenant(Arc::new(|tenant: &str| match tenant {
            "all" => 0,
            "many" => 12,
            _ => 3,
        }));
        let mut subsets = std::collections::BTreeSet::new();
        for t in 0..40 {
            let tenant = format!("tenant-{t}");
            let subset = endpoints(&pool.ranked(&tenant));
            assert_eq!(subset.len(), 3, "{tenant}: {subset:?}");
            // Whatever is busy, the tenant's calls stay inside its subset.
            let mut held = Vec::new();
            for round in 0..6 {
                let ranked = pool.ranked(&tenant);
                assert_eq!(endpoints(&ranked), subset, "{tenant}, round {round}");
                held.push(ranked[0].slots.clone().try_acquire_owned().ok());
            }
            drop(held);
            // The same subset from another pool (another frontend) and
            // with the queriers listed in another order.
            let other = pool_of(10);
            let mut reversed = other.queriers.read().clone();
            reversed.reverse();
            *other.queriers.write() = reversed;
            assert_eq!(
                endpoints(&tenant_shard(other.queriers.read().clone(), &tenant, 3)),
                subset
            );
            subsets.insert(subset.into_iter().collect::<Vec<_>>());
        }
        // Tenants spread over different subsets.
        assert!(
            subsets.len() >= 20,
            "only {} distinct subsets",
            subsets.len()
        );
        assert_eq!(pool.ranked("all").len(), 10);
        assert_eq!(pool.ranked("many").len(), 10);
    }

    #[tokio::test]
    async fn a_querier_leaving_moves_only_the_tenants_it_served() {
        let before = pool_of(10);
        let after = pool_of(10);
        let gone = "http://10.0.0.4:1";
        let kept: Vec<String> = (1..=10)
            .map(|i| format!("http://10.0.0.{i}:1"))
            .filter(|e| e != gone)
            .collect();
        after.set_endpoints(&kept).expect("endpoints");
        for pool in [&before, &after] {
            pool.set_queriers_per_tenant(Arc::new(|_: &str| 3));
        }
        for t in 0..40 {
            let tenant = format!("tenant-{t}");
            let old = endpoints(&before.ranked(&tenant));
            let new = endpoints(&after.ranked(&tenant));
            if old.contains(gone) {
                assert_eq!(old.intersection(&new).count(), 2, "{tenant}");
            } else {
                assert_eq!(old, new, "{tenant}");
            }
        }
    }
}
