//! Query results as the HTTP layer renders them.

use strata_proto::prometheus::Label;

/// The result of a query, shaped like Prometheus' `resultType`s.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        v: String,
    },
    /// An instant vector (instant queries).
    Vector(Vec<Sample>),
    /// A range vector: range queries, or an instant query of a range expression.
    Matrix(Vec<Series>),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<Label>,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector, points sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<Label>,
    pub points: Vec<(i64, f64)>,
}

/// A query's value and its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    /// `PromQL warning: ...` annotations.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` annotations.
    pub infos: Vec<String>,
}
