//! Shared building blocks of every Strata role: tenant IDs, label helpers,
//! matchers, the error classification, the store service trait and the
//! Prometheus XOR chunk encoding (a wire format: remote read ships it).

mod bits;
pub mod chunk;
pub mod compact_chunk;
pub mod duration;
pub mod error;
pub mod labels;
pub mod matcher;
pub mod raw_write;
pub mod service;
pub mod tenant;

pub use error::ErrorClass;
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use service::{
    GrpcQueryClient, GrpcStoreClient, QueryApi, RawWriteResponse, SeriesValidator, ServiceError,
    StoreApi,
};
pub use tenant::TenantId;
