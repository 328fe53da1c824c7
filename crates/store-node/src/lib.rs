//! The store node: durable, per-tenant storage of series.
//!
//! Writes enter through [`Engine`] (in-process, or over gRPC via
//! [`grpc::StoreService`]), go to the tenant's write-ahead log ([`wal`]) and
//! then into its in-memory [`head`]: Gorilla/XOR-compressed [`chunk`]s and a
//! label [`index`] of roaring postings.

pub mod engine;
pub mod grpc;
pub mod hash;
pub mod head;
pub mod index;
pub mod metrics;
pub mod tenant_db;
pub mod wal;
pub mod wal_codec;

/// The XOR chunk codec lives in `strata-common`: remote read ships it as is.
pub use strata_common::chunk;

pub use engine::{Engine, EngineError, EngineOptions, LocalStore};
pub use metrics::StoreMetrics;
pub use wal::{FsyncPolicy, WalOptions};
