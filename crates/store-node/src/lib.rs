//! The store node: durable, per-tenant storage of series.
//!
//! Writes enter through [`Engine`] (in-process, or over gRPC via
//! [`grpc::StoreService`]), go to the tenant's write-ahead log ([`wal`]) and
//! then into its in-memory [`head`]: Gorilla/XOR-compressed [`chunk`]s and a
//! label [`index`] of roaring postings.

pub mod block;
pub mod engine;
pub mod grpc;
pub mod hash;
pub mod head;
pub mod index;
pub mod maintenance;
pub mod merge;
pub mod metrics;
pub mod packed_labels;
pub mod raw_write;
pub mod tenant_db;
pub mod wal;
pub mod wal_codec;

/// An error and its sources on one line, for logs and for messages that
/// cross the wire.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The XOR chunk codec lives in `strata-common`: remote read ships it as is.
pub use strata_common::chunk;

pub use engine::{Engine, EngineError, EngineOptions, LocalStore, RetentionOverride};
pub use metrics::StoreMetrics;
pub use wal::{FsyncPolicy, WalOptions};
