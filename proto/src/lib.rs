//! Generated wire types.
//!
//! - [`prometheus`]: Prometheus' `prompb` (remote write 1.0, remote read), field
//!   numbers identical to Prometheus v3.5.
//! - [`store`]: Strata's internal store-node gRPC service.
//! - [`ingest`]: a lenient decoding of remote write 1.0 (labels as bytes).
//! - [`query`]: the querier's PromQL service.
//! - [`wal`]: the store node's write-ahead-log records.
//! - [`meta`]: the Raft-replicated cluster metadata service.

#![allow(missing_debug_implementations, clippy::all)]

pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Module nesting mirrors the proto packages so generated cross-package paths resolve.
pub mod strata {
    pub mod store {
        pub mod v1 {
            tonic::include_proto!("strata.store.v1");
        }
    }
    pub mod ingest {
        pub mod v1 {
            tonic::include_proto!("strata.ingest.v1");
        }
    }
    pub mod query {
        pub mod v1 {
            tonic::include_proto!("strata.query.v1");
        }
    }
    pub mod wal {
        pub mod v1 {
            tonic::include_proto!("strata.wal.v1");
        }
    }
    pub mod meta {
        pub mod v1 {
            tonic::include_proto!("strata.meta.v1");
        }
    }
}

pub use strata::ingest::v1 as ingest;
pub use strata::meta::v1 as meta;
pub use strata::query::v1 as query;
pub use strata::store::v1 as store;
pub use strata::wal::v1 as wal;

/// The bit pattern Prometheus uses for a stale marker (a special NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
