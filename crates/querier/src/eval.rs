//! The evaluator: expressions over a grid of steps.
//!
//! Instant-vector values are kept series-major: each series carries the
//! steps (indices into the grid) at which it has a value. Range values
//! ([`MatrixVal`]) keep raw samples plus, per step, the end of the window
//! `(end - range, end]` the step reads (Prometheus 3: left-open).
//!
//! Hot paths stay series-major: range functions slide two cursors over a
//! series' samples, aggregations fold whole series into per-group step
//! vectors (or take a range function's results as they are computed), and
//! vector matching merges the sorted points of matched series.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use strata_common::labels::METRIC_NAME;
use strata_common::{MatchOp, Matcher};
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::Label;

use crate::QueryError;
use crate::engine::{EngineOptions, Fetched};

/// Evaluation times `start, start + step, ..., <= end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        let steps = (i128::from(self.end) - i128::from(self.start)) / i128::from(self.step) + 1;
        usize::try_from(steps).unwrap_or(usize::MAX)
    }

    pub fn t(&self, i: usize) -> i64 {
        self.start
            .saturating_add((i as i64).saturating_mul(self.step))
    }
}

/// An instant-vector series over the grid.
#[derive(Debug, Clone)]
pub(crate) struct VSeries {
    pub labels: Vec<Label>,
    /// `(step index, value)`, ascending.
    pub points: Vec<(usize, f64)>,
}

/// A series of raw samples (stale markers removed).
#[derive(Debug, Clone)]
pub(crate) struct RawSeries {
    pub labels: Vec<Label>,
    pub samples: Vec<(i64, f64)>,
}

/// A range vector over the grid.
#[derive(Debug, Clone)]
pub(crate) struct MatrixVal {
    pub series: Vec<RawSeries>,
    pub range: i64,
    /// Per step: the (inclusive) end of the window.
    pub refs: Vec<i64>,
    /// Per step: the step's own time (what `predict_linear` extrapolates from).
    pub eval_ts: Vec<i64>,
}

impl MatrixVal {
    /// The samples of a series in step `i`'s window `(end - range, end]`.
    pub fn window<'s>(&self, samples: &'s [(i64, f64)], i: usize) -> &'s [(i64, f64)] {
        let end = self.refs[i];
        let start = end.saturating_sub(self.range);
        let lo = samples.partition_point(|&(t, _)| t <= start);
        let hi = samples.partition_point(|&(t, _)| t <= end);
        &samples[lo..hi.max(lo)]
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<VSeries>),
    Matrix(MatrixVal),
}

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
        None => 0,
    }
}

/// The `@` time in ms, resolving `start()`/`end()` against the query.
pub(crate) fn at_millis(at: &Option<AtModifier>, query: &Grid) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(query.start),
        Some(AtModifier::End) => Some(query.end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => duration_ms(&d),
            Err(e) => -duration_ms(&e.duration()),
        }),
    }
}

/// Our matchers for a selector (the metric name becomes `__name__="..."`).
pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::parse(
            "\"or\" inside a selector is not supported",
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(build_matcher(MatchOp::Equal, METRIC_NAME, name)?);
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(build_matcher(op, &m.name, &m.value)?);
    }
    Ok(out)
}

fn build_matcher(op: MatchOp, name: &str, value: &str) -> Result<Matcher, QueryError> {
    let value = match op {
        MatchOp::RegexMatch | MatchOp::RegexNoMatch => crate::regex_compat::translate(value),
        MatchOp::Equal | MatchOp::NotEqual => value.to_owned(),
    };
    Matcher::new(op, name, &value).map_err(|e| QueryError::parse(e.to_string()))
}

/// Evaluation state of one query.
pub(crate) struct Evaluator<'a> {
    fetched: Fetched,
    pub options: &'a EngineOptions,
    /// The whole query's grid (for `@ start()` / `@ end()`).
    pub query: Grid,
    deadline: Instant,
    canceled: &'a AtomicBool,
    warnings: BTreeSet<String>,
    infos: BTreeSet<String>,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        fetched: Fetched,
        options: &'a EngineOptions,
        query: Grid,
        deadline: Instant,
        canceled: &'a AtomicBool,
    ) -> Self {
        Evaluator {
            fetched,
            options,
            query,
            deadline,
            canceled,
            warnings: BTreeSet::new(),
            infos: BTreeSet::new(),
        }
    }

    pub fn warn(&mut self, message: String) {
        self.warnings.insert(format!("PromQL warning: {message}"));
    }

    pub fn info(&mut self, message: String) {
        self.infos.insert(format!("PromQL info: {message}"));
    }

    pub fn annotations(self) -> (Vec<String>, Vec<String>) {
        (
            self.warnings.into_iter().collect(),
            self.infos.into_iter().collect(),
        )
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if self.canceled.load(Ordering::Relaxed) {
            return Err(QueryError::Canceled);
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    pub fn eval(&mut self, expr: &Expr, grid: &Grid) -> Result<Val, QueryError> {
        self.check_deadline()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; grid.len()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Ok(Val::Scalar(v))
                }
                Val::Vector(mut series) => {
                    for s in &mut series {
                        drop_name(&mut s.labels);
                        s.points.iter_mut().for_each(|p| p.1 = -p.1);
                    }
                    Ok(Val::Vector(merge_duplicates(series)?))
                }
                _ => Err(QueryError::exec(
                    "unary minus needs a scalar or an instant vector",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, grid, false))),
            Expr::MatrixSelector(ms) => {
                let key = &ms.vs as *const _ as usize;
                // Every selector node is evaluated once: its data moves out, uncopied.
                let series = self
                    .fetched
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut s| {
                        s.floats.retain(|&(_, v)| !is_stale(v));
                        RawSeries {
                            labels: s.labels,
                            samples: s.floats,
                        }
                    })
                    .collect();
                let off = offset_ms(&ms.vs.offset);
                let at = at_millis(&ms.vs.at, &self.query);
                Ok(Val::Matrix(MatrixVal {
                    series,
                    range: duration_ms(&ms.range),
                    refs: (0..grid.len())
                        .map(|i| at.unwrap_or(grid.t(i)).saturating_sub(off))
                        .collect(),
                    eval_ts: (0..grid.len()).map(|i| grid.t(i)).collect(),
                }))
            }
            Expr::Subquery(sq) => {
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map_or(self.options.default_subquery_step_ms, duration_ms)
                    .max(1);
                let at = at_millis(&sq.at, &self.query);
                let (lo, hi) = match at {
                    Some(at) => (at, at),
                    None => (grid.start, grid.end),
                };
                let first = lo.saturating_sub(off).saturating_sub(range);
                // The first step-aligned time after the window's open start.
                let mut start = first.div_euclid(step).saturating_mul(step);
                if start <= first {
                    start = start.saturating_add(step);
                }
                let inner = Grid {
                    start,
                    end: hi.saturating_sub(off),
                    step,
                };
                if inner.len() > self.options.max_samples {
                    return Err(QueryError::exec(
                        "query processing would load too many samples into memory in subquery evaluation",
                    ));
                }
                let series = match self.eval(&sq.expr, &inner)? {
                    Val::Vector(series) => series
                        .into_iter()
                        .map(|s| RawSeries {
                            labels: s.labels,
                            samples: s.points.iter().map(|&(i, v)| (inner.t(i), v)).collect(),
                        })
                        .collect(),
                    Val::Scalar(values) => vec![RawSeries {
                        labels: Vec::new(),
                        samples: values
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| (inner.t(i), v))
                            .collect(),
                    }],
                    _ => {
                        return Err(QueryError::exec(
                            "subquery needs an instant vector or scalar",
                        ));
                    }
                };
                Ok(Val::Matrix(MatrixVal {
                    series,
                    range,
                    refs: (0..grid.len())
                        .map(|i| at.unwrap_or(grid.t(i)).saturating_sub(off))
                        .collect(),
                    eval_ts: (0..grid.len()).map(|i| grid.t(i)).collect(),
                }))
            }
            Expr::Binary(b) => crate::binary::eval(self, b, grid),
            Expr::Aggregate(a) => crate::aggregate::eval(self, a, grid),
            Expr::Call(c) => crate::functions::call(self, c, grid),
            Expr::Extension(_) => Err(QueryError::exec("unsupported expression")),
        }
    }

    /// An instant selector: per step, the newest sample within the lookback
    /// window `(t - lookback, t]`, unless it is a stale marker. With
    /// `timestamps`, the value is the sample's timestamp in seconds.
    pub fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        grid: &Grid,
        timestamps: bool,
    ) -> Vec<VSeries> {
        let key = vs as *const _ as usize;
        // Every selector node is evaluated once: its data moves out.
        let Some(all) = self.fetched.remove(&key) else {
            return Vec::new();
        };
        let off = offset_ms(&vs.offset);
        let at = at_millis(&vs.at, &self.query);
        let lookback = self.options.lookback_delta_ms;
        let n = grid.len();
        let mut out = Vec::with_capacity(all.len());
        for s in all {
            let mut points = Vec::new();
            let mut cursor = 0usize;
            for i in 0..n {
                let ref_t = at.unwrap_or(grid.t(i)).saturating_sub(off);
                while cursor < s.floats.len() && s.floats[cursor].0 <= ref_t {
                    cursor += 1;
                }
                if cursor == 0 {
                    continue;
                }
                let (t, v) = s.floats[cursor - 1];
                if t <= ref_t.saturating_sub(lookback) || is_stale(v) {
                    continue;
                }
                points.push((i, if timestamps { t as f64 / 1000.0 } else { v }));
            }
            if !points.is_empty() {
                out.push(VSeries {
                    labels: s.labels,
                    points,
                });
            }
        }
        out
    }

    /// Evaluates an expression that must yield a scalar per step.
    pub fn eval_scalar(&mut self, expr: &Expr, grid: &Grid) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr, grid)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::exec("expected a scalar")),
        }
    }

    pub fn eval_vector(&mut self, expr: &Expr, grid: &Grid) -> Result<Vec<VSeries>, QueryError> {
        match self.eval(expr, grid)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::exec("expected an instant vector")),
        }
    }

    pub fn eval_matrix(&mut self, expr: &Expr, grid: &Grid) -> Result<MatrixVal, QueryError> {
        match self.eval(expr, grid)? {
            Val::Matrix(m) => Ok(m),
            _ => Err(QueryError::exec("expected a range vector")),
        }
    }
}

/// Removes `__name__` from a sorted label set.
pub(crate) fn drop_name(labels: &mut Vec<Label>) {
    labels.retain(|l| l.name != METRIC_NAME);
}

/// Merges series whose label sets became equal (after dropping names);
/// two values at the same step are Prometheus' duplicate-labelset error.
pub(crate) fn merge_duplicates(mut series: Vec<VSeries>) -> Result<Vec<VSeries>, QueryError> {
    series.retain(|s| !s.points.is_empty());
    // The usual case, all label sets distinct, checked on borrowed labels:
    // nothing to merge, and no label set is cloned.
    let mut seen: HashSet<&[Label]> = HashSet::with_capacity(series.len());
    if series.iter().all(|s| seen.insert(s.labels.as_slice())) {
        return Ok(series);
    }
    drop(seen);
    let mut index: HashMap<Vec<Label>, usize> = HashMap::with_capacity(series.len());
    let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
    let mut merged = false;
    for s in series {
        if s.points.is_empty() {
            continue;
        }
        match index.get(&s.labels) {
            Some(&i) => {
                merged = true;
                out[i].points.extend(s.points);
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged {
        for s in &mut out {
            s.points.sort_by_key(|p| p.0);
            if s.points.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    Ok(out)
}

/// Sets (or with an empty value removes) a label, keeping the set sorted.
pub(crate) fn set_label(labels: &mut Vec<Label>, name: &str, value: &str) {
    match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        Ok(i) => {
            if value.is_empty() {
                labels.remove(i);
            } else {
                labels[i].value = value.to_owned();
            }
        }
        Err(i) => {
            if !value.is_empty() {
                labels.insert(
                    i,
                    Label {
                        name: name.to_owned(),
                        value: value.to_owned(),
                    },
                );
            }
        }
    }
}

/// The labels `on(...)`/`by(...)` keep, or all but those `ignoring(...)`/
/// `without(...)` name (and the metric name); no modifier keeps all but the
/// metric name (vector matching's default).
pub(crate) fn matched_labels<'a>(
    labels: &'a [Label],
    modifier: Option<&'a promql_parser::parser::LabelModifier>,
) -> impl Iterator<Item = &'a Label> + 'a {
    use promql_parser::parser::LabelModifier;
    labels.iter().filter(move |l| match modifier {
        Some(LabelModifier::Include(names)) => names.labels.contains(&l.name),
        Some(LabelModifier::Exclude(names)) => {
            l.name != METRIC_NAME && !names.labels.contains(&l.name)
        }
        None => l.name != METRIC_NAME,
    })
}

/// Transposes series-major points into, per step, `(series index, value)`.
/// Only for the rare step-by-step paths (`count_values`, set operators, the
/// general vector matching): evaluation otherwise stays series-major.
pub(crate) fn by_step(series: &[VSeries], n: usize) -> Vec<Vec<(usize, f64)>> {
    let mut steps: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (si, s) in series.iter().enumerate() {
        for &(i, v) in &s.points {
            steps[i].push((si, v));
        }
    }
    steps
}
