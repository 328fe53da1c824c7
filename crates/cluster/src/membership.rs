//! A store node's side of membership: register with the meta service, then
//! heartbeat; register again whenever meta forgot the node. Beside that,
//! the node reads the cluster state (placement, tenants and their
//! overrides) as often and hands it to the caller.

use std::sync::Arc;
use std::time::Duration;

use strata_common::error::ErrorClass;
use strata_proto::meta::ClusterState;
use tokio::sync::watch;

use crate::MetaClient;

/// Who this store node is.
#[derive(Debug, Clone)]
pub struct StoreIdentity {
    pub id: String,
    /// gRPC URL the other roles use to reach this node.
    pub address: String,
    pub zone: String,
}

/// Registers `identity` and heartbeats every `interval` until `stopped`,
/// passing the cluster state to `on_state` after each heartbeat. Failures
/// are logged and retried: a store keeps serving while meta is down.
pub async fn run_membership(
    meta: Arc<MetaClient>,
    identity: StoreIdentity,
    interval: Duration,
    on_state: impl Fn(&ClusterState) + Send + Sync + 'static,
    mut stopped: watch::Receiver<bool>,
) {
    // The state is read in a task of its own, so a slow meta read never
    // delays a heartbeat.
    tokio::spawn(poll_state(
        meta.clone(),
        interval,
        Arc::new(on_state),
        stopped.clone(),
    ));
    let mut registered = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        if !registered {
            match meta
                .register_store(&identity.id, &identity.address, &identity.zone)
                .await
            {
                Ok(state) => {
                    registered = true;
                    tracing::info!(store = %identity.id, address = %identity.address, epochs = state.epochs.len(), "registered with the meta service");
                }
                Err(error) => {
                    tracing::warn!(store = %identity.id, %error, "cannot register with the meta service, retrying");
                }
            }
            continue;
        }
        match meta.heartbeat(&identity.id).await {
            Ok(()) => {}
            Err(error) if error.class == ErrorClass::NotFound => {
                tracing::warn!(store = %identity.id, "meta does not know this store, registering again");
                registered = false;
            }
            Err(error) => tracing::warn!(store = %identity.id, %error, "heartbeat failed"),
        }
    }
}

/// Reads the cluster state every `interval` and hands it to `on_state`;
/// a state older than one already handed over is skipped.
async fn poll_state(
    meta: Arc<MetaClient>,
    interval: Duration,
    on_state: Arc<dyn Fn(&ClusterState) + Send + Sync>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut newest_index = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match meta.state().await {
            Ok(state) if state.applied_index >= newest_index => {
                newest_index = state.applied_index;
                on_state(&state);
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "cannot read the cluster state"),
        }
    }
}
