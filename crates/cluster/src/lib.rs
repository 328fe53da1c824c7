//! Cluster plumbing shared by the roles: where series live
//! ([`placement`]), the meta service client ([`MetaClient`]) and the
//! placement it keeps fresh ([`PlacementWatcher`]), a store node's
//! registration ([`membership`]), and [`ClusterStore`], which offers the
//! whole cluster's store nodes as one [`strata_common::StoreApi`]: quorum
//! writes for the distributor, fan-out reads merged across replicas for the
//! querier and the frontend's metadata APIs.

mod cluster_store;
pub mod membership;
mod merge;
mod meta_client;
mod metrics;
pub mod placement;
mod querier_pool;
mod read;
mod watcher;
mod write;

pub use cluster_store::{ClusterStore, ClusterStoreOptions};
pub use merge::merge_selected;
pub use meta_client::MetaClient;
pub use metrics::ClusterMetrics;
pub use querier_pool::QuerierPool;
pub use watcher::{PlacementWatcher, now_ms};
