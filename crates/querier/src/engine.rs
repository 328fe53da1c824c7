//! The query entry points: parse, fetch, evaluate, shape the result.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, AtModifier, Expr, Offset};

use crate::eval::{Evaluator, Grid, Val, at_millis, duration_ms, offset_ms};
use crate::shard::take_shard;
use crate::value::{QueryOutput, Sample, Series, Value};
use crate::{QueryError, Queryable, SeriesData};

/// Limits and defaults of query evaluation.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may load (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Duration,
    /// The step of a subquery written without one (Prometheus uses the
    /// global evaluation interval, 1m by default).
    pub default_subquery_step_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60 * 1000,
        }
    }
}

/// Evaluates PromQL over a [`Queryable`].
#[derive(Debug, Clone)]
pub struct Engine {
    options: EngineOptions,
}

/// The data every selector of a query needs, keyed by the selector's address in the AST.
pub(crate) type Fetched = HashMap<usize, Vec<SeriesData>>;

impl Engine {
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    /// The options this engine was built with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at one instant.
    pub async fn instant(
        &self,
        q: &dyn Queryable,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryOutput, QueryError> {
        let expr = parse(query)?;
        let grid = Grid {
            start: time_ms,
            end: time_ms,
            step: 1,
        };
        let (val, warnings, infos) = self.run(q, expr, grid).await?;
        let value = match val {
            Val::Scalar(v) => Value::Scalar {
                t: time_ms,
                v: v.first().copied().unwrap_or(f64::NAN),
            },
            Val::Str(s) => Value::String { t: time_ms, v: s },
            Val::Vector(series) => Value::Vector(
                series
                    .into_iter()
                    .filter_map(|s| {
                        s.points.first().map(|&(_, v)| Sample {
                            labels: s.labels,
                            t: time_ms,
                            v,
                        })
                    })
                    .collect(),
            ),
            Val::Matrix(m) => {
                let mut out: Vec<Series> = m
                    .series
                    .into_iter()
                    .filter_map(|s| {
                        let end = m.refs.first().copied().unwrap_or(time_ms);
                        let start = end.saturating_sub(m.range);
                        let points: Vec<(i64, f64)> = s
                            .samples
                            .into_iter()
                            .filter(|&(t, _)| t > start && t <= end)
                            .collect();
                        (!points.is_empty()).then_some(Series {
                            labels: s.labels,
                            points,
                        })
                    })
                    .collect();
                out.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
                Value::Matrix(out)
            }
        };
        Ok(QueryOutput {
            value,
            warnings,
            infos,
        })
    }

    /// Evaluates `query` at `start_ms + k * step_ms` for every such time up to `end_ms`.
    pub async fn range(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryOutput, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::exec(
                "zero or negative query resolution step widths are not accepted",
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::exec(
                "end timestamp must not be before start time",
            ));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            // A bad parameter, not an execution error: 400 `bad_data` as in Prometheus.
            other => {
                return Err(QueryError::Parse {
                    message: format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        type_name(other)
                    ),
                });
            }
        }
        let grid = Grid {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        if grid.len() > self.options.max_samples {
            return Err(QueryError::exec(
                "query processing would load too many samples into memory in query execution",
            ));
        }
        let (val, warnings, infos) = self.run(q, expr, grid).await?;
        let mut series: Vec<Series> = match val {
            Val::Scalar(values) => vec![Series {
                labels: Vec::new(),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (grid.t(i), v))
                    .collect(),
            }],
            Val::Vector(series) => series
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .map(|s| Series {
                    labels: s.labels,
                    points: s.points.iter().map(|&(i, v)| (grid.t(i), v)).collect(),
                })
                .collect(),
            Val::Str(_) | Val::Matrix(_) => {
                return Err(QueryError::exec(
                    "range query must return a scalar or a vector",
                ));
            }
        };
        series.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
        Ok(QueryOutput {
            value: Value::Matrix(series),
            warnings,
            infos,
        })
    }

    /// Fetches every selector's series, then evaluates on a blocking thread
    /// (evaluation is CPU-bound). Dropping the returned future cancels the
    /// evaluation at its next check.
    async fn run(
        &self,
        q: &dyn Queryable,
        expr: Box<Expr>,
        grid: Grid,
    ) -> Result<(Val, Vec<String>, Vec<String>), QueryError> {
        let started = Instant::now();
        let deadline = started + self.options.timeout;
        let mut plans = Vec::new();
        plan(
            &expr,
            grid.start,
            grid.end,
            &grid,
            &self.options,
            &mut plans,
        )?;
        let mut fetched: Fetched = HashMap::new();
        let mut loaded = 0usize;
        for p in plans {
            let fetch = async {
                match &p.shard {
                    Some(shard) => q.select_shard(&p.matchers, p.mint, p.maxt, shard).await,
                    None => q.select(&p.matchers, p.mint, p.maxt).await,
                }
            };
            let series = match tokio::time::timeout_at(deadline.into(), fetch).await {
                Ok(result) => result?,
                Err(_) => return Err(QueryError::Timeout),
            };
            loaded += series.iter().map(|s| s.floats.len()).sum::<usize>();
            if loaded > self.options.max_samples {
                return Err(QueryError::exec(
                    "query processing would load too many samples into memory in query execution",
                ));
            }
            fetched.insert(p.key, series);
        }
        let canceled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&canceled));
        let options = self.options.clone();
        // The fetched data is keyed by the addresses of the AST's selectors:
        // the boxed expression moves without moving its nodes.
        let evaluation = tokio::task::spawn_blocking(move || {
            let mut evaluator = Evaluator::new(fetched, &options, grid, deadline, &canceled);
            let val = evaluator.eval(&expr, &grid)?;
            let (warnings, infos) = evaluator.annotations();
            Ok((val, warnings, infos))
        });
        match evaluation.await {
            Ok(result) => result,
            Err(e) => Err(QueryError::exec(format!("query evaluation failed: {e}"))),
        }
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Scalar => "scalar",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// Sets the flag when the query's future is dropped (the client went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Parses a query, mapping the parser's errors to Prometheus' shape.
pub(crate) fn parse(query: &str) -> Result<Box<Expr>, QueryError> {
    let rewritten = raw_strings_to_quoted(query);
    let expr = parser::parse(&rewritten).map_err(|e| {
        crate::parse_error::diagnose(query).map_or_else(
            || positioned_parse_error(query, &e.to_string()),
            |message| QueryError::Parse { message },
        )
    })?;
    check(&expr).map_err(|e| match crate::parse_error::diagnose(query) {
        Some(message) => QueryError::Parse { message },
        None => e,
    })?;
    Ok(Box::new(expr))
}

/// Rewrites PromQL raw strings (`` `a\b` ``) as double-quoted strings with
/// their backslashes and quotes escaped: `promql-parser` applies escape
/// sequences inside backticks, Prometheus (like Go) does not. Quoted strings
/// and `#` comments are copied untouched.
fn raw_strings_to_quoted(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.contains('`') {
        return std::borrow::Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len() + 8);
    let mut chars = query.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' if !chars.as_str().contains('`') => {
                // Unterminated: left for the parser to refuse.
                out.push(c);
            }
            '`' => {
                out.push('"');
                for d in chars.by_ref() {
                    match d {
                        '`' => break,
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        other => out.push(other),
                    }
                }
                out.push('"');
            }
            other => out.push(other),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A parse error in Prometheus' shape (`1:4: parse error: ...`).
/// `promql-parser` reports no positions; errors about the input ending early
/// are positioned where Prometheus puts them, at the end of the input, and
/// an empty query says `unknown position` as Prometheus does. Other errors
/// carry no position.
fn positioned_parse_error(query: &str, message: &str) -> QueryError {
    if query.trim().is_empty() {
        return QueryError::Parse {
            message: "unknown position: parse error: no expression found in input".to_owned(),
        };
    }
    if message.contains("end of input") || message.contains("unclosed") {
        let line = query.matches('\n').count() + 1;
        let column = query.len() - query.rfind('\n').map_or(0, |i| i + 1) + 1;
        return QueryError::Parse {
            message: format!("{line}:{column}: parse error: {message}"),
        };
    }
    QueryError::parse(message)
}

/// `promql-parser` folds `-1` into a number literal after its argument type
/// check, so `ln(-1)` gets through where Prometheus refuses a scalar at parse
/// time; refuse a scalar where an instant vector is expected here.
fn check_scalar_argument(
    function: &str,
    expected: &[ValueType],
    index: usize,
    arg: &Expr,
) -> Result<(), QueryError> {
    let Some(expected) = expected.get(index).or(expected.last()).copied() else {
        return Ok(());
    };
    let actual = arg.value_type();
    if expected == ValueType::Vector && actual == ValueType::Scalar {
        return Err(QueryError::parse(format!(
            "expected type {} in call to function \"{function}\", got {}",
            type_name(expected),
            type_name(actual)
        )));
    }
    Ok(())
}

/// Checks the parser leaves to the engine.
fn check(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::Call(call) => {
            if !crate::parse_error::is_enabled_function(call.func.name) {
                return Err(QueryError::parse(format!(
                    "function \"{}\" is not enabled",
                    call.func.name
                )));
            }
            for (i, arg) in call.args.args.iter().enumerate() {
                check_scalar_argument(call.func.name, &call.func.arg_types, i, arg)?;
                check(arg)?;
            }
            Ok(())
        }
        Expr::Aggregate(agg) => {
            let name = agg.op.to_string();
            if name == "limitk" || name == "limit_ratio" {
                return Err(QueryError::parse(format!(
                    "limit and limit_ratio are experimental: {name} is not enabled"
                )));
            }
            if let Some(p) = &agg.param {
                check(p)?;
            }
            check(&agg.expr)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(s) => check(&s.expr),
        Expr::VectorSelector(vs) => check_regexes(vs),
        Expr::MatrixSelector(ms) => check_regexes(&ms.vs),
        Expr::Extension(_) => Err(QueryError::parse("unsupported expression")),
        _ => Ok(()),
    }
}

/// Refuses regexes Go does not compile though Rust does.
fn check_regexes(vs: &promql_parser::parser::VectorSelector) -> Result<(), QueryError> {
    for m in &vs.matchers.matchers {
        if let promql_parser::label::MatchOp::Re(_) | promql_parser::label::MatchOp::NotRe(_) = m.op
            && let Some(message) = crate::regex_compat::go_syntax_error(&m.value)
        {
            return Err(QueryError::parse(format!(
                "error parsing regexp: {message}"
            )));
        }
    }
    Ok(())
}

/// One selector's fetch.
struct FetchPlan {
    key: usize,
    matchers: Vec<strata_common::Matcher>,
    /// The selector's query shard (its matcher removed from `matchers`).
    shard: Option<crate::QueryShard>,
    mint: i64,
    maxt: i64,
}

/// Walks the AST and records, for every selector, the time range it reads.
fn plan(
    expr: &Expr,
    start: i64,
    end: i64,
    query: &Grid,
    options: &EngineOptions,
    out: &mut Vec<FetchPlan>,
) -> Result<(), QueryError> {
    let window = |at: &Option<AtModifier>, offset: &Option<Offset>| -> (i64, i64) {
        let off = offset_ms(offset);
        match at_millis(at, query) {
            Some(at) => (at.saturating_sub(off), at.saturating_sub(off)),
            None => (start.saturating_sub(off), end.saturating_sub(off)),
        }
    };
    match expr {
        Expr::VectorSelector(vs) => {
            let (lo, hi) = window(&vs.at, &vs.offset);
            let mut matchers = crate::eval::matchers(vs)?;
            let shard = take_shard(&mut matchers)?;
            out.push(FetchPlan {
                key: vs as *const _ as usize,
                matchers,
                shard,
                mint: lo.saturating_sub(options.lookback_delta_ms) + 1,
                maxt: hi,
            });
        }
        Expr::MatrixSelector(ms) => {
            let (lo, hi) = window(&ms.vs.at, &ms.vs.offset);
            let mut matchers = crate::eval::matchers(&ms.vs)?;
            let shard = take_shard(&mut matchers)?;
            out.push(FetchPlan {
                key: &ms.vs as *const _ as usize,
                matchers,
                shard,
                mint: lo.saturating_sub(duration_ms(&ms.range)) + 1,
                maxt: hi,
            });
        }
        Expr::Subquery(sq) => {
            let (lo, hi) = window(&sq.at, &sq.offset);
            let step = sq
                .step
                .as_ref()
                .map_or(options.default_subquery_step_ms, duration_ms);
            plan(
                &sq.expr,
                lo.saturating_sub(duration_ms(&sq.range))
                    .saturating_sub(step),
                hi,
                query,
                options,
                out,
            )?;
        }
        Expr::Aggregate(agg) => {
            if let Some(p) = &agg.param {
                plan(p, start, end, query, options, out)?;
            }
            plan(&agg.expr, start, end, query, options, out)?;
        }
        Expr::Unary(u) => plan(&u.expr, start, end, query, options, out)?,
        Expr::Binary(b) => {
            plan(&b.lhs, start, end, query, options, out)?;
            plan(&b.rhs, start, end, query, options, out)?;
        }
        Expr::Paren(p) => plan(&p.expr, start, end, query, options, out)?,
        Expr::Call(call) => {
            for arg in &call.args.args {
                plan(arg, start, end, query, options, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod parse_error_tests {
    use super::*;

    #[test]
    fn raw_strings_keep_their_backslashes() {
        assert_eq!(
            raw_strings_to_quoted(r#"`raw \string`"#),
            r#""raw \\string""#
        );
        assert_eq!(
            raw_strings_to_quoted(r#"{a=~`\d+"x`}"#),
            r#"{a=~"\\d+\"x"}"#
        );
        assert_eq!(raw_strings_to_quoted(r#"{a="`"} # `c"#), r#"{a="`"} # `c"#);
        assert_eq!(raw_strings_to_quoted("up"), "up");
        assert!(parse(r#"`raw \string`"#).is_ok());
    }

    #[test]
    fn a_negated_scalar_is_not_an_instant_vector() {
        let message = parse("ln(-1)").expect_err("scalar argument").to_string();
        assert_eq!(
            message,
            "1:4: parse error: expected type instant vector in call to function \"ln\", got scalar"
        );
        assert!(parse("ln(-up)").is_ok());
        assert!(parse("clamp(up, -1, 1)").is_ok());
        assert!(parse("round(up, -1)").is_ok());
    }

    #[test]
    fn errors_at_the_end_of_input_are_positioned_like_prometheus() {
        let message = |q: &str| parse(q).expect_err(q).to_string();
        assert!(
            message("up{").starts_with("1:4: parse error: "),
            "{}",
            message("up{")
        );
        assert!(message("up offset").starts_with("1:10: parse error: "));
        assert!(message("sum(\n  up").starts_with("2:5: parse error: "));
        assert_eq!(
            message(""),
            "unknown position: parse error: no expression found in input"
        );
    }
}
