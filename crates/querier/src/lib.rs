//! The querier: stateless PromQL evaluation with Prometheus 3.5 semantics.
//!
//! Queries are parsed with `promql-parser` and evaluated by our own code
//! ([`Engine`]). Series come from a [`Queryable`]: an in-memory one for
//! tests ([`MemoryQueryable`]), the store service later.
//!
//! Evaluation happens in two phases: every selector's time range is
//! computed from the AST and its series are fetched (the only async part),
//! then the expression is evaluated synchronously over the step grid,
//! series by series, with sliding windows for range functions.
//!
//! Known gaps (see `tests/promqltest-skip.txt` for the test-script cases):
//! native histograms; feature-flagged Prometheus features (experimental
//! functions, `limitk`/`limit_ratio`, duration expressions, delayed
//! `__name__` removal, type-and-unit labels); parse errors carry no
//! `line:column` position (the parser reports none); string escapes like
//! `"\xff"` decode to a code point, not a raw byte. Regexes are rewritten
//! to Go's semantics (ASCII `\d`/`\w`/`\s`, literal `{`) before compiling.

mod aggregate;
mod binary;
mod engine;
mod eval;
mod functions;
mod memory;
mod parse_error;
mod regex_compat;
mod shard;
mod value;

#[cfg(test)]
mod tests;

pub use engine::{Engine, EngineOptions};
pub use memory::MemoryQueryable;
pub use shard::QueryShard;
pub use value::{QueryOutput, Sample, Series, Value};

use strata_common::ErrorClass;
use strata_proto::prometheus::Label;

/// Reads series for the engine. Implementations: in-memory (tests), the store service (later).
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching all matchers, with samples in [start_ms, end_ms] (inclusive), sorted by labels.
    async fn select(
        &self,
        matchers: &[strata_common::Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, QueryError>;

    /// Like [`Queryable::select`], keeping only the series in `shard`
    /// (from a `__query_shard__` matcher, which is not in `matchers`).
    /// Implementations that decode samples should skip the other series
    /// before decoding them.
    async fn select_shard(
        &self,
        matchers: &[strata_common::Matcher],
        start_ms: i64,
        end_ms: i64,
        shard: &QueryShard,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let mut series = self.select(matchers, start_ms, end_ms).await?;
        series.retain(|s| shard.contains(&s.labels));
        Ok(series)
    }
}

/// One series as read from storage: labels sorted by name, samples sorted by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesData {
    pub labels: Vec<Label>,
    /// `(timestamp ms, value)`; stale markers included (NaN with
    /// [`strata_proto::STALE_NAN_BITS`]).
    pub floats: Vec<(i64, f64)>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse or is invalid (HTTP 400, `bad_data`).
    #[error("{message}")]
    Parse { message: String },
    /// The query cannot be executed (HTTP 422, `execution`).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query was canceled in expression evaluation")]
    Canceled,
    #[error("{0}")]
    Storage(String),
    /// Storage could not be read now (a shard without enough replicas);
    /// retryable (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

impl QueryError {
    /// The shared classification (HTTP status and Prometheus `errorType`).
    pub fn class(&self) -> ErrorClass {
        match self {
            QueryError::Parse { .. } => ErrorClass::BadData,
            QueryError::Execution(_) => ErrorClass::Unprocessable,
            QueryError::Timeout => ErrorClass::Timeout,
            QueryError::Canceled => ErrorClass::Canceled,
            QueryError::Storage(_) => ErrorClass::Internal,
            QueryError::Unavailable(_) => ErrorClass::Unavailable,
        }
    }

    pub(crate) fn parse(message: impl std::fmt::Display) -> Self {
        QueryError::Parse {
            message: format!("parse error: {message}"),
        }
    }

    pub(crate) fn exec(message: impl Into<String>) -> Self {
        QueryError::Execution(message.into())
    }
}
