//! Fair scheduling of querier calls: one FIFO queue per tenant, served
//! round-robin whenever one of the `max_concurrent` slots frees up, so a
//! tenant flooding the frontend waits behind itself, not in front of others.
//!
//! A caller that goes away (its future dropped, e.g. the HTTP client hung
//! up) leaves the queue at once; a slot handed to it as it left is passed on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

/// The tenant already has `limit` calls waiting.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "too many outstanding requests for tenant {tenant:?} (limit {limit}, query_frontend.max_outstanding_per_tenant)"
)]
pub(crate) struct QueueFull {
    pub tenant: String,
    pub limit: usize,
}

/// Per-tenant queues in front of a bounded number of concurrent calls.
#[derive(Debug)]
pub(crate) struct FairQueue {
    state: Mutex<State>,
    max_concurrent: usize,
    queued: Gauge,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    queues: HashMap<String, VecDeque<Waiter>>,
    /// Tenants with waiters, in the order they are served next.
    ring: VecDeque<String>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
}

/// A running slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub(crate) struct Slot {
    queue: Arc<FairQueue>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.queue.release();
    }
}

impl FairQueue {
    /// `max_concurrent` calls at once (at least 1).
    pub(crate) fn new(max_concurrent: usize, queued: Gauge) -> Arc<Self> {
        Arc::new(FairQueue {
            state: Mutex::new(State::default()),
            max_concurrent: max_concurrent.max(1),
            queued,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (no
        // multi-step updates), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot, in `tenant`'s queue if none is free; refused when
    /// `max_outstanding` (the tenant's limit, 0 = none) are waiting already.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        tenant: &str,
        max_outstanding: usize,
    ) -> Result<Slot, QueueFull> {
        let (id, receiver) = {
            let mut state = self.lock();
            if state.running < self.max_concurrent && state.ring.is_empty() {
                state.running += 1;
                return Ok(Slot {
                    queue: Arc::clone(self),
                });
            }
            let waiting = state.queues.get(tenant).map_or(0, VecDeque::len);
            if max_outstanding > 0 && waiting >= max_outstanding {
                return Err(QueueFull {
                    tenant: tenant.to_owned(),
                    limit: max_outstanding,
                });
            }
            let id = state.next_id;
            state.next_id += 1;
            let (grant, receiver) = oneshot::channel();
            if waiting == 0 {
                state.ring.push_back(tenant.to_owned());
            }
            state
                .queues
                .entry(tenant.to_owned())
                .or_default()
                .push_back(Waiter { id, grant });
            self.queued.inc();
            (id, receiver)
        };
        let mut waiting = Waiting {
            queue: Arc::clone(self),
            tenant: tenant.to_owned(),
            id,
            receiver: Some(receiver),
        };
        let granted = match waiting.receiver.as_mut() {
            Some(receiver) => receiver.await.is_ok(),
            None => false,
        };
        // The slot is ours now: the guard must not give it back.
        waiting.receiver = None;
        if !granted {
            // Senders are only dropped after a send; treat anything else as a free slot lost.
            tracing::warn!(tenant = %tenant, "query queue waiter lost its grant");
        }
        Ok(Slot {
            queue: Arc::clone(self),
        })
    }

    /// Gives a finished call's slot to the next waiter, round-robin over tenants.
    fn release(&self) {
        let mut state = self.lock();
        while let Some(tenant) = state.ring.pop_front() {
            let Some(queue) = state.queues.get_mut(&tenant) else {
                continue;
            };
            let waiter = queue.pop_front();
            if queue.is_empty() {
                state.queues.remove(&tenant);
            } else {
                state.ring.push_back(tenant);
            }
            if let Some(waiter) = waiter {
                self.queued.dec();
                if waiter.grant.send(()).is_ok() {
                    return;
                }
            }
        }
        state.running = state.running.saturating_sub(1);
    }

    /// Calls waiting, all tenants together.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().queues.values().map(VecDeque::len).sum()
    }
}

/// A place in a queue; leaving (drop) before the grant removes it, leaving
/// just after the grant passes the slot on.
struct Waiting {
    queue: Arc<FairQueue>,
    tenant: String,
    id: u64,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else {
            return;
        };
        let removed = {
            let mut state = self.queue.lock();
            let mut removed = false;
            if let Some(queue) = state.queues.get_mut(&self.tenant) {
                if let Some(position) = queue.iter().position(|w| w.id == self.id) {
                    queue.remove(position);
                    removed = true;
                }
                if queue.is_empty() {
                    state.queues.remove(&self.tenant);
                    state.ring.retain(|t| t != &self.tenant);
                }
            }
            removed
        };
        if removed {
            self.queue.queued.dec();
        } else if receiver.try_recv().is_ok() {
            // Granted as we left: pass the slot on.
            self.queue.release();
        }
    }
}
