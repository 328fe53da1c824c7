//! Functions over range vectors: `rate` and friends, `*_over_time`.

use std::collections::HashSet;

use promql_parser::parser::Expr;
use strata_common::labels::{self, METRIC_NAME};
use strata_proto::prometheus::Label;

use crate::QueryError;
use crate::aggregate::{format_float, kahan_inc, quantile};
use crate::eval::{Evaluator, Grid, MatrixVal, VSeries, Val, merge_duplicates};

/// A function of one step's window: the samples, the step index, the range value.
type WindowFn<'p> = dyn Fn(&[(i64, f64)], usize, &MatrixVal) -> Option<f64> + 'p;

/// The functions [`evaluate`] computes (every function of a range vector
/// but `absent_over_time`).
const FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
];

/// The function and arguments of `expr` (in parentheses or not) when it
/// calls a range function [`evaluate`] computes.
pub(crate) fn range_call(mut expr: &Expr) -> Option<(&'static str, Vec<&Expr>)> {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    let Expr::Call(c) = expr else {
        return None;
    };
    FUNCTIONS.contains(&c.func.name).then(|| {
        (
            c.func.name,
            c.args.args.iter().map(|a| a.as_ref()).collect(),
        )
    })
}

/// Receives a range function's result series as they are computed, instead
/// of a vector of them (an aggregation folds them while they are hot).
pub(crate) trait SeriesSink {
    /// Called once, before any series is computed, with every input series'
    /// result labels (all distinct); `false` declines the stream, and the
    /// result is collected into a vector instead.
    fn accept(&mut self, labels: &[Vec<Label>]) -> bool;
    /// The result of input series `index`, which has at least one point.
    /// Series come in input order.
    fn series(&mut self, index: usize, points: &[(usize, f64)]);
}

pub(crate) fn call(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Val, QueryError> {
    match evaluate(ev, name, args, grid, None)? {
        Some(series) => Ok(Val::Vector(series)),
        None => Err(QueryError::exec("range function result was not collected")),
    }
}

/// Evaluates range function `name` series by series. With a `sink` that
/// accepts the stream, every result series goes to it and `None` is
/// returned; otherwise the result vector is. A stream is only offered when
/// the result labels are distinct, so no two series would have been merged
/// (or refused) as duplicates.
pub(crate) fn evaluate(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    grid: &Grid,
    sink: Option<&mut dyn SeriesSink>,
) -> Result<Option<Vec<VSeries>>, QueryError> {
    let (matrix_arg, extra) = match name {
        "quantile_over_time" => (1, args.first()),
        "predict_linear" => (0, args.get(1)),
        _ => (0, None),
    };
    let scalar = match extra {
        Some(e) => Some(ev.eval_scalar(e, grid)?),
        None => None,
    };
    let Some(m_expr) = args.get(matrix_arg) else {
        return Err(QueryError::exec(format!(
            "missing range argument of {name}"
        )));
    };
    let mut m = ev.eval_matrix(m_expr, grid)?;
    // The series move out (their labels become the result's); the window
    // functions below read only the range and the steps of `m`.
    let series = std::mem::take(&mut m.series);
    let param = |i: usize| scalar.as_ref().map_or(f64::NAN, |s| s[i]);
    if name == "quantile_over_time"
        && let Some(qs) = &scalar
    {
        for &q in qs {
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_float(q)
                ));
                break;
            }
        }
    }
    let keep_name = name == "last_over_time";
    let counter_check = name == "rate" || name == "increase";
    let extrapolated = counter_check || name == "delta";
    let range_s = (name == "rate").then(|| m.range as f64 / 1000.0);
    let f: Box<WindowFn<'_>> = match name {
        // rate, increase and delta are computed below (running sums of
        // resets, extrapolations shared between steps).
        "rate" | "increase" | "delta" => Box::new(|_, _, _| None),
        "irate" => Box::new(|w, _, _| instant_delta(w, true)),
        "idelta" => Box::new(|w, _, _| instant_delta(w, false)),
        "deriv" => Box::new(|w, _, _| (w.len() >= 2).then(|| linear_regression(w, w[0].0).0)),
        "predict_linear" => Box::new(|w, i, m| {
            if w.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(w, m.eval_ts[i]);
            Some(slope * param(i) + intercept)
        }),
        "changes" => Box::new(|w, _, _| {
            nonempty(w)?;
            let mut changes = 0.0;
            for pair in w.windows(2) {
                let (prev, cur) = (pair[0].1, pair[1].1);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    changes += 1.0;
                }
            }
            Some(changes)
        }),
        "resets" => Box::new(|w, _, _| {
            nonempty(w)?;
            Some(w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64)
        }),
        "avg_over_time" => Box::new(|w, _, _| {
            nonempty(w)?;
            Some(avg(w.iter().map(|p| p.1)))
        }),
        "sum_over_time" => Box::new(|w, _, _| {
            nonempty(w)?;
            let (mut sum, mut c) = (0.0, 0.0);
            for p in w {
                (sum, c) = kahan_inc(p.1, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }),
        "count_over_time" => Box::new(|w, _, _| nonempty(w).map(|_| w.len() as f64)),
        "min_over_time" => Box::new(|w, _, _| {
            let mut acc = nonempty(w)?[0].1;
            for p in w {
                if p.1 < acc || acc.is_nan() {
                    acc = p.1;
                }
            }
            Some(acc)
        }),
        "max_over_time" => Box::new(|w, _, _| {
            let mut acc = nonempty(w)?[0].1;
            for p in w {
                if p.1 > acc || acc.is_nan() {
                    acc = p.1;
                }
            }
            Some(acc)
        }),
        "last_over_time" => Box::new(|w, _, _| w.last().map(|p| p.1)),
        "present_over_time" => Box::new(|w, _, _| nonempty(w).map(|_| 1.0)),
        "stddev_over_time" => Box::new(|w, _, _| nonempty(w).map(|_| variance(w).sqrt())),
        "stdvar_over_time" => Box::new(|w, _, _| nonempty(w).map(|_| variance(w))),
        "quantile_over_time" => Box::new(|w, i, _| {
            nonempty(w)?;
            let mut values: Vec<f64> = w.iter().map(|p| p.1).collect();
            Some(quantile(param(i), &mut values))
        }),
        other => {
            return Err(QueryError::exec(format!(
                "function {other} is not supported"
            )));
        }
    };
    let n = grid.len();
    // Result labels up front (the metric name dropped, and kept aside for
    // the counter check), so a sink can plan with them.
    let mut metric_names: Vec<String> = Vec::new();
    let mut samples: Vec<Vec<(i64, f64)>> = Vec::with_capacity(series.len());
    let mut out_labels: Vec<Vec<Label>> = Vec::with_capacity(series.len());
    for s in series {
        let mut labels = s.labels;
        if !keep_name {
            let at = labels.iter().position(|l| l.name == METRIC_NAME);
            let name = at.map(|at| labels.remove(at).value).unwrap_or_default();
            if counter_check {
                metric_names.push(name);
            }
        } else if counter_check {
            metric_names.push(labels::get(&labels, METRIC_NAME).to_owned());
        }
        samples.push(s.samples);
        out_labels.push(labels);
    }
    let mut streamed = sink.filter(|_| distinct(&out_labels));
    if let Some(sink) = &mut streamed
        && !sink.accept(&out_labels)
    {
        streamed = None;
    }
    let mut out = Vec::new();
    // For rate/increase: resets[k] = the sum of the values before each
    // counter reset among samples 0..=k, so a window's correction is one subtraction.
    let mut resets: Vec<f64> = Vec::new();
    // One buffer for a series' points, copied out at its exact size.
    let mut points: Vec<(usize, f64)> = Vec::with_capacity(n.min(1024));
    for (k, samples) in samples.iter().enumerate() {
        if k % 1024 == 1023 {
            ev.check_deadline()?;
        }
        // Most counters never reset: then every correction is 0 and the
        // prefix sums (a serial chain of additions) are not needed.
        let has_resets = counter_check && samples.windows(2).any(|p| p[1].1 < p[0].1);
        if has_resets {
            resets.clear();
            let mut acc = 0.0;
            resets.push(acc);
            for pair in samples.windows(2) {
                if pair[1].1 < pair[0].1 {
                    acc += pair[0].1;
                }
                resets.push(acc);
            }
        }
        let mut cache = ShapeCache::default();
        points.clear();
        // Windows only move forward: two cursors instead of searches.
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..n {
            let end = m.refs[i];
            let start = end.saturating_sub(m.range);
            while hi < samples.len() && samples[hi].0 <= end {
                hi += 1;
            }
            while lo < hi && samples[lo].0 <= start {
                lo += 1;
            }
            let w = &samples[lo..hi];
            let value = if counter_check {
                let correction = if has_resets && hi > lo {
                    let from_sums = resets[hi - 1] - resets[lo];
                    if from_sums.is_finite() {
                        from_sums
                    } else {
                        // Infinite values make the prefix sums useless (Inf - Inf):
                        // add this window's reset corrections directly.
                        samples[lo..hi]
                            .windows(2)
                            .filter(|p| p[1].1 < p[0].1)
                            .map(|p| p[0].1)
                            .sum()
                    }
                } else {
                    0.0
                };
                extrapolated_rate(w, end, m.range, Some(correction), range_s, &mut cache)
            } else if extrapolated {
                extrapolated_rate(w, end, m.range, None, range_s, &mut cache)
            } else {
                f(w, i, &m)
            };
            if let Some(v) = value {
                points.push((i, v));
            }
        }
        if points.is_empty() {
            continue;
        }
        if counter_check {
            let metric = metric_names[k].as_str();
            if !metric.is_empty()
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| metric.ends_with(suffix))
            {
                ev.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"{metric}\""
                ));
            }
        }
        match &mut streamed {
            Some(sink) => sink.series(k, &points),
            None => out.push(VSeries {
                labels: std::mem::take(&mut out_labels[k]),
                points: points.clone(),
            }),
        }
    }
    if streamed.is_some() {
        return Ok(None);
    }
    Ok(Some(merge_duplicates(out)?))
}

/// Whether no two label sets are equal.
fn distinct(labels: &[Vec<Label>]) -> bool {
    let mut seen: HashSet<&[Label]> = HashSet::with_capacity(labels.len());
    labels.iter().all(|l| seen.insert(l.as_slice()))
}

fn nonempty(w: &[(i64, f64)]) -> Option<&[(i64, f64)]> {
    (!w.is_empty()).then_some(w)
}

/// The mean, summing with compensation and falling back to an incremental
/// mean when the sum would overflow (as Prometheus does).
pub(crate) fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut mean, mut count, mut c) = (0.0, 0.0, 0.0, 0.0);
    let mut incremental = false;
    for v in values {
        count += 1.0;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(v, sum, c);
            if count == 1.0 || !new_sum.is_infinite() {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(w: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in w {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Where a window's samples sit: everything of `extrapolated_rate` but the
/// values depends only on this, and consecutive steps over regular scrapes
/// usually share it (the window and its samples move by the same amount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowShape {
    /// First sample minus the window's (open) start, ms.
    to_start_ms: i64,
    /// The window's end minus the last sample, ms.
    to_end_ms: i64,
    /// Last sample minus first sample, ms.
    sampled_ms: i64,
    samples: usize,
}

/// The extrapolation of a [`WindowShape`], in seconds, before the
/// counter-specific cap at the zero crossing.
#[derive(Debug, Clone, Copy)]
struct Extrapolation {
    to_start: f64,
    to_end: f64,
    sampled: f64,
    /// `(sampled + to_start + to_end) / sampled`, divided by the range for `rate`.
    factor: f64,
}

/// Remembers the last window shape's extrapolation, so a step whose window
/// has the same shape as the previous step's skips its divisions. The
/// cached numbers are computed by the same operations on the same inputs,
/// so results are bit-for-bit those of computing every step afresh.
#[derive(Debug, Default)]
pub(crate) struct ShapeCache {
    last: Option<(WindowShape, Extrapolation)>,
}

impl ShapeCache {
    fn get(&mut self, shape: WindowShape, range_s: Option<f64>) -> Extrapolation {
        if let Some((cached, e)) = self.last
            && cached == shape
        {
            return e;
        }
        let mut to_start = shape.to_start_ms as f64 / 1000.0;
        let mut to_end = shape.to_end_ms as f64 / 1000.0;
        let sampled = shape.sampled_ms as f64 / 1000.0;
        let average_between = sampled / (shape.samples - 1) as f64;
        let threshold = average_between * 1.1;
        if to_start >= threshold {
            to_start = average_between / 2.0;
        }
        if to_end >= threshold {
            to_end = average_between / 2.0;
        }
        let e = Extrapolation {
            to_start,
            to_end,
            sampled,
            factor: rate_factor(sampled, to_start, to_end, range_s),
        };
        self.last = Some((shape, e));
        e
    }
}

/// How much a window's change is scaled: up to the window's edges, and for
/// `rate` (`range_s` given) per second of the range.
fn rate_factor(sampled: f64, to_start: f64, to_end: f64, range_s: Option<f64>) -> f64 {
    let factor = (sampled + to_start + to_end) / sampled;
    match range_s {
        Some(range_s) => factor / range_s,
        None => factor,
    }
}

/// `rate`, `increase` and `delta`: the change over the window `(range_end -
/// range, range_end]`, extrapolated towards the window's edges as
/// Prometheus does. For counters, `resets` is the sum of the values before
/// each reset inside the window. `range_s` is the range in seconds for
/// `rate`, `None` for the others.
pub(crate) fn extrapolated_rate(
    w: &[(i64, f64)],
    range_end: i64,
    range: i64,
    resets: Option<f64>,
    range_s: Option<f64>,
    cache: &mut ShapeCache,
) -> Option<f64> {
    let is_counter = resets.is_some();
    if w.len() < 2 {
        return None;
    }
    let range_start = range_end.saturating_sub(range);
    let (first_t, first_v) = w[0];
    let (last_t, last_v) = w[w.len() - 1];
    let result = last_v - first_v + resets.unwrap_or(0.0);
    let e = cache.get(
        WindowShape {
            to_start_ms: first_t - range_start,
            to_end_ms: range_end - last_t,
            sampled_ms: last_t - first_t,
            samples: w.len(),
        },
        range_s,
    );
    let mut factor = e.factor;
    // With `first_v >= 2 * result`, `to_zero` is at least `2 * sampled`,
    // beyond any `to_start` (below 1.1 × the average spacing, at most
    // `sampled`): the usual counter needs no division to know.
    if is_counter && result > 0.0 && first_v >= 0.0 && first_v < 2.0 * result {
        // A counter does not extrapolate below zero: the start moves to
        // where the line through the window crosses zero, if that is nearer.
        let to_zero = e.sampled * (first_v / result);
        if to_zero < e.to_start {
            factor = rate_factor(e.sampled, to_zero, e.to_end, range_s);
        }
    }
    Some(result * factor)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_delta(w: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = w[w.len() - 2];
    let (last_t, last_v) = w[w.len() - 1];
    let mut result = if is_rate && last_v < prev_v {
        last_v
    } else {
        last_v - prev_v
    };
    if is_rate {
        let interval = (last_t - prev_t) as f64 / 1000.0;
        if interval == 0.0 {
            return None;
        }
        result /= interval;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_t`.
pub(crate) fn linear_regression(w: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = w[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in w.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}
