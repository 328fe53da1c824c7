//! Query sharding: an aggregation over per-series work (`sum by (job)
//! (rate(x[5m]))`) is asked as one partial aggregation per shard of the
//! series, each selector carrying `__query_shard__="<i>_of_<n>"`, and the
//! partial answers are combined. Every series is in exactly one shard, so a
//! group's members are split between the partials and combining them gives
//! the unsharded answer.
//!
//! Only shapes where that holds are sharded (a whitelist): a top-level
//! `sum`, `count`, `min`, `max`, `group` or `avg` (as a `sum` and a
//! `count`), with or without `by`/`without`, over an expression built only
//! from selectors of one fixed metric name, per-series functions, and
//! arithmetic or comparisons with number literals. Left out, and why:
//! `topk`/`bottomk` (which of equal values Prometheus keeps is not
//! specified), `quantile`, `stddev`, `stdvar`, `count_values` (not
//! decomposable into per-shard answers), nested aggregations and binary
//! operations between two vectors (they match series across shards),
//! `label_replace`/`label_join` and selectors without an equality on the
//! metric name (they can make two series' labels equal, an error unsharded
//! that sharding could hide), `absent*`, `vector`, `scalar`, `time` and
//! friends (not per series).
//!
//! `sum` and `avg` add in a different order than the unsharded evaluation:
//! equal up to floating-point rounding, as splitting by time is.

use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::token::{
    T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_SUM, TokenId, TokenType,
};
use promql_parser::parser::{self, Expr, VectorSelector};
use strata_common::labels::QUERY_SHARD_LABEL;
use strata_proto::prometheus::Label;
use strata_proto::query::{Matrix, PromSeries, QueryResponse, query_response};

/// Functions whose result at a step depends on one input series only and
/// keeps series apart (their scalar arguments must be number literals).
const PER_SERIES_FUNCTIONS: &[&str] = &[
    "abs",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "delta",
    "deriv",
    "exp",
    "floor",
    "idelta",
    "increase",
    "irate",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "sgn",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "timestamp",
];

/// How partial answers combine into the unsharded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    Sum,
    Count,
    Min,
    Max,
    Group,
    /// Partials are `sum` answers (shards `0..n`) then `count` answers.
    Avg,
}

/// The partial queries of a shardable query and how to combine their answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardPlan {
    combine: Combine,
    shards: usize,
    /// One query per shard (two for `avg`: the sums, then the counts).
    pub queries: Vec<String>,
}

/// The plan for `query` over `shards` shards; `None` when the query is not
/// of a shape that shards exactly, does not parse, or `shards < 2`.
pub(crate) fn plan(query: &str, shards: usize) -> Option<ShardPlan> {
    if shards < 2 {
        return None;
    }
    let mut expr = parser::parse(query).ok()?;
    while let Expr::Paren(p) = expr {
        expr = *p.expr;
    }
    let Expr::Aggregate(aggregate) = expr else {
        return None;
    };
    let combine = match aggregate.op.id() {
        T_SUM => Combine::Sum,
        T_COUNT => Combine::Count,
        T_MIN => Combine::Min,
        T_MAX => Combine::Max,
        T_GROUP => Combine::Group,
        T_AVG => Combine::Avg,
        _ => return None,
    };
    if aggregate.param.is_some() || !shardable(&aggregate.expr) {
        return None;
    }
    let ops: &[TokenId] = match combine {
        Combine::Avg => &[T_SUM, T_COUNT],
        _ => &[aggregate.op.id()],
    };
    let mut queries = Vec::with_capacity(shards * ops.len());
    for &op in ops {
        for shard in 1..=shards {
            let mut partial = aggregate.clone();
            partial.op = TokenType::new(op);
            inject(&mut partial.expr, &format!("{shard}_of_{shards}"));
            let partial = Expr::Aggregate(partial);
            let text = partial.to_string();
            // Only what prints back to the same expression is sent.
            if parser::parse(&text).ok()? != partial {
                return None;
            }
            queries.push(text);
        }
    }
    Some(ShardPlan {
        combine,
        shards,
        queries,
    })
}

/// Whether `expr` is per-series work over selectors (at least one) that
/// shards can evaluate apart.
fn shardable(expr: &Expr) -> bool {
    match expr {
        Expr::VectorSelector(vs) => shardable_selector(vs),
        Expr::MatrixSelector(ms) => shardable_selector(&ms.vs),
        Expr::Subquery(sq) => shardable(&sq.expr),
        Expr::Paren(p) => shardable(&p.expr),
        Expr::Unary(u) => shardable(&u.expr),
        Expr::Call(call) => {
            if !PER_SERIES_FUNCTIONS.contains(&call.func.name) {
                return false;
            }
            let mut vectors = 0;
            for arg in &call.args.args {
                if shardable(arg) {
                    vectors += 1;
                } else if !literal(arg) {
                    return false;
                }
            }
            vectors == 1
        }
        Expr::Binary(b) => {
            !b.op.is_set_operator()
                && ((shardable(&b.lhs) && literal(&b.rhs))
                    || (literal(&b.lhs) && shardable(&b.rhs)))
        }
        Expr::Aggregate(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => false,
    }
}

/// A selector of one metric name (so per-series functions that drop the
/// name cannot make two series equal), not already sharded.
fn shardable_selector(vs: &VectorSelector) -> bool {
    let named = vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal);
    named
        && vs.matchers.or_matchers.is_empty()
        && vs
            .matchers
            .matchers
            .iter()
            .all(|m| m.name != QUERY_SHARD_LABEL)
}

/// A number, or arithmetic over numbers only.
fn literal(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => literal(&p.expr),
        Expr::Unary(u) => literal(&u.expr),
        Expr::Binary(b) => !b.op.is_comparison_operator() && literal(&b.lhs) && literal(&b.rhs),
        _ => false,
    }
}

/// Adds the shard matcher to every selector in `expr`.
fn inject(expr: &mut Expr, shard: &str) {
    let add = |vs: &mut VectorSelector| {
        vs.matchers
            .matchers
            .push(Matcher::new(MatchOp::Equal, QUERY_SHARD_LABEL, shard));
    };
    match expr {
        Expr::VectorSelector(vs) => add(vs),
        Expr::MatrixSelector(ms) => add(&mut ms.vs),
        Expr::Subquery(sq) => inject(&mut sq.expr, shard),
        Expr::Paren(p) => inject(&mut p.expr, shard),
        Expr::Unary(u) => inject(&mut u.expr, shard),
        Expr::Aggregate(a) => inject(&mut a.expr, shard),
        Expr::Call(call) => call.args.args.iter_mut().for_each(|a| inject(a, shard)),
        Expr::Binary(b) => {
            inject(&mut b.lhs, shard);
            inject(&mut b.rhs, shard);
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// One group's running value at one step.
#[derive(Debug, Clone, Copy)]
struct Acc {
    value: f64,
    /// `avg` only: the summed counts.
    count: f64,
    /// `avg` only: whether a partial sum overflowed or was not finite
    /// (Prometheus then averages incrementally, which a ratio of sums
    /// does not reproduce).
    inexact: bool,
}

impl ShardPlan {
    /// Combines the partial answers (in the order of [`ShardPlan::queries`])
    /// into the unsharded answer: a matrix sorted by labels. `None` when a
    /// partial is not a matrix or the combination would not be exact; the
    /// caller then asks the query whole.
    pub(crate) fn combine(&self, partials: Vec<QueryResponse>) -> Option<QueryResponse> {
        let mut groups: HashMap<Vec<Label>, BTreeMap<i64, Acc>> = HashMap::new();
        let mut combined = QueryResponse::default();
        let mut seen_warnings = HashSet::new();
        let mut seen_infos = HashSet::new();
        for (index, partial) in partials.into_iter().enumerate() {
            let counts = self.combine == Combine::Avg && index >= self.shards;
            let matrix = match partial.result {
                Some(query_response::Result::Matrix(m)) => m,
                None => Matrix::default(),
                Some(_) => return None,
            };
            for series in matrix.series {
                let steps = groups.entry(series.labels).or_default();
                for (&t, &v) in series.timestamps_ms.iter().zip(&series.values) {
                    self.fold(steps, t, v, counts);
                }
            }
            for warning in partial.warnings {
                if seen_warnings.insert(warning.clone()) {
                    combined.warnings.push(warning);
                }
            }
            for info in partial.infos {
                if seen_infos.insert(info.clone()) {
                    combined.infos.push(info);
                }
            }
            combined.total_queryable_samples += partial.total_queryable_samples;
            combined.peak_samples = combined.peak_samples.max(partial.peak_samples);
        }
        let mut series = Vec::with_capacity(groups.len());
        for (labels, steps) in groups {
            let mut s = PromSeries {
                labels,
                timestamps_ms: Vec::with_capacity(steps.len()),
                values: Vec::with_capacity(steps.len()),
            };
            for (t, acc) in steps {
                let value = match self.combine {
                    Combine::Avg if acc.inexact => return None,
                    // A step with sums but no counts (or the reverse) cannot happen.
                    Combine::Avg if acc.count == 0.0 => return None,
                    Combine::Avg => acc.value / acc.count,
                    Combine::Group => 1.0,
                    _ => acc.value,
                };
                s.timestamps_ms.push(t);
                s.values.push(value);
            }
            series.push(s);
        }
        series.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
        combined.result = Some(query_response::Result::Matrix(Matrix { series }));
        Some(combined)
    }

    /// Folds one partial value into a group's step, as the querier folds
    /// series values (`min`/`max` ignore NaN unless every value is NaN).
    fn fold(&self, steps: &mut BTreeMap<i64, Acc>, t: i64, v: f64, counts: bool) {
        let avg = self.combine == Combine::Avg;
        let (sum, count) = if counts { (0.0, v) } else { (v, 0.0) };
        let Some(acc) = steps.get_mut(&t) else {
            steps.insert(
                t,
                Acc {
                    value: sum,
                    count,
                    inexact: avg && !counts && !v.is_finite(),
                },
            );
            return;
        };
        match self.combine {
            Combine::Sum | Combine::Count => acc.value += v,
            Combine::Min if acc.value > v || acc.value.is_nan() => acc.value = v,
            Combine::Max if acc.value < v || acc.value.is_nan() => acc.value = v,
            Combine::Avg if counts => acc.count += v,
            Combine::Avg => {
                acc.value += v;
                acc.inexact |= !v.is_finite() || !acc.value.is_finite();
            }
            Combine::Min | Combine::Max | Combine::Group => {}
        }
    }
}

#[cfg(test)]
mod tests;
