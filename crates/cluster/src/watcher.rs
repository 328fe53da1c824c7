//! Keeps a recent [`Placement`] in memory: polls the meta service every
//! refresh period, and on demand when a request finds its view too old.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use strata_common::ServiceError;
use tokio::sync::watch;

use crate::MetaClient;
use crate::placement::Placement;

/// On-demand refreshes are at most this frequent.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(200);

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The latest placement view of one process.
#[derive(Debug)]
pub struct PlacementWatcher {
    meta: Arc<MetaClient>,
    current: RwLock<Option<Arc<Placement>>>,
    /// Serializes on-demand refreshes so a burst of requests asks meta once.
    refreshing: tokio::sync::Mutex<()>,
    /// The last failed refresh: requests arriving soon after it share its
    /// error instead of each waiting for meta again.
    last_failure: parking_lot::Mutex<Option<(Instant, ServiceError)>>,
    /// Gauges of the current view, when set.
    metrics: parking_lot::Mutex<Option<crate::ClusterMetrics>>,
}

impl PlacementWatcher {
    pub fn new(meta: Arc<MetaClient>) -> Arc<Self> {
        Arc::new(PlacementWatcher {
            meta,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            last_failure: parking_lot::Mutex::new(None),
            metrics: parking_lot::Mutex::new(None),
        })
    }

    /// Keeps `metrics`' placement gauges up to date with each view.
    pub fn set_metrics(&self, metrics: crate::ClusterMetrics) {
        *self.metrics.lock() = Some(metrics);
    }

    /// The meta client this watcher polls.
    pub fn meta(&self) -> &Arc<MetaClient> {
        &self.meta
    }

    /// A tenant's limit overrides in the view last fetched.
    pub fn tenant_limits(
        &self,
        tenant: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.current()?.tenant_limits.get(tenant).cloned()
    }

    /// The view last fetched, if any.
    pub fn current(&self) -> Option<Arc<Placement>> {
        self.current.read().clone()
    }

    /// Fetches a fresh view now.
    pub async fn refresh(&self) -> Result<Arc<Placement>, ServiceError> {
        let asked_at = Instant::now();
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(current) = self.current()
            && current.fetched_at >= asked_at
        {
            // Another request refreshed while this one waited.
            return Ok(current);
        }
        if let Some((failed_at, error)) = self.last_failure.lock().clone()
            && failed_at >= asked_at.checked_sub(MIN_REFRESH_GAP).unwrap_or(asked_at)
        {
            // Meta just failed another request: share that answer.
            return Err(error);
        }
        let fetched_at = Instant::now();
        let fetched_at_ms = now_ms();
        let state = match self.meta.state().await {
            Ok(state) => state,
            Err(error) => {
                *self.last_failure.lock() = Some((Instant::now(), error.clone()));
                return Err(error);
            }
        };
        let placement = Arc::new(Placement::new(&state, fetched_at, fetched_at_ms));
        let mut current = self.current.write();
        if let Some(known) = current.as_ref()
            && known.applied_index > placement.applied_index
        {
            // An older state than one already seen (another meta node that
            // lags): never route by it.
            return Ok(known.clone());
        }
        *current = Some(placement.clone());
        if let Some(metrics) = self.metrics.lock().as_ref() {
            let healthy = placement.stores.values().filter(|s| s.healthy).count();
            let unhealthy = placement.stores.len() - healthy;
            for (health, count) in [("healthy", healthy), ("unhealthy", unhealthy)] {
                metrics
                    .stores
                    .get_or_create(&vec![("health".to_owned(), health.to_owned())])
                    .set(count as i64);
            }
            metrics.epochs.set(placement.epochs.len() as i64);
        }
        Ok(placement)
    }

    /// A view fresh enough to route samples up to `newest_ms`: the current
    /// one, or a refreshed one when the current cannot route that far.
    pub async fn view_for(&self, newest_ms: i64) -> Result<Arc<Placement>, ServiceError> {
        if let Some(current) = self.current() {
            let routable = current.routable_until_ms() >= newest_ms && !current.epochs.is_empty();
            // Samples from the future would otherwise ask meta on every request.
            let just_fetched = current.fetched_at.elapsed() < MIN_REFRESH_GAP;
            if routable || just_fetched {
                return Ok(current);
            }
        }
        self.refresh().await
    }

    /// A view for reads: the current one, or a first fetch.
    pub async fn view(&self) -> Result<Arc<Placement>, ServiceError> {
        match self.current() {
            Some(current) => Ok(current),
            None => self.refresh().await,
        }
    }

    /// Polls meta every `period` until `stopped`.
    pub async fn run(self: Arc<Self>, period: Duration, mut stopped: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot refresh the placement from meta");
            }
        }
    }
}
