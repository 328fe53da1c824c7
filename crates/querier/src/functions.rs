//! PromQL functions.

pub(crate) mod range;

use std::collections::HashMap;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr, VectorSelector};
use strata_common::labels::{self, METRIC_NAME};
use strata_proto::prometheus::Label;

use crate::QueryError;
use crate::aggregate::format_float;
use crate::eval::{Evaluator, Grid, VSeries, Val, drop_name, merge_duplicates, set_label};

pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call, grid: &Grid) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    let arg = |i: usize| -> Result<&Expr, QueryError> {
        args.get(i)
            .copied()
            .ok_or_else(|| QueryError::exec(format!("missing argument {i} of {name}")))
    };
    let n = grid.len();
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| grid.t(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let values = ev.eval_scalar(arg(0)?, grid)?;
            Ok(Val::Vector(vec![VSeries {
                labels: Vec::new(),
                points: values.into_iter().enumerate().collect(),
            }]))
        }
        "scalar" => {
            let series = ev.eval_vector(arg(0)?, grid)?;
            let mut values = vec![f64::NAN; n];
            let mut counts = vec![0u32; n];
            for s in &series {
                for &(i, v) in &s.points {
                    counts[i] += 1;
                    values[i] = v;
                }
            }
            for (v, c) in values.iter_mut().zip(&counts) {
                if *c != 1 {
                    *v = f64::NAN;
                }
            }
            Ok(Val::Scalar(values))
        }
        "abs" => map_values(ev, arg(0)?, grid, f64::abs),
        "ceil" => map_values(ev, arg(0)?, grid, f64::ceil),
        "floor" => map_values(ev, arg(0)?, grid, f64::floor),
        "exp" => map_values(ev, arg(0)?, grid, f64::exp),
        "sqrt" => map_values(ev, arg(0)?, grid, f64::sqrt),
        "ln" => map_values(ev, arg(0)?, grid, f64::ln),
        "log2" => map_values(ev, arg(0)?, grid, f64::log2),
        "log10" => map_values(ev, arg(0)?, grid, f64::log10),
        "sgn" => map_values(ev, arg(0)?, grid, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "sin" => map_values(ev, arg(0)?, grid, f64::sin),
        "cos" => map_values(ev, arg(0)?, grid, f64::cos),
        "tan" => map_values(ev, arg(0)?, grid, f64::tan),
        "asin" => map_values(ev, arg(0)?, grid, f64::asin),
        "acos" => map_values(ev, arg(0)?, grid, f64::acos),
        "atan" => map_values(ev, arg(0)?, grid, f64::atan),
        "sinh" => map_values(ev, arg(0)?, grid, f64::sinh),
        "cosh" => map_values(ev, arg(0)?, grid, f64::cosh),
        "tanh" => map_values(ev, arg(0)?, grid, f64::tanh),
        "asinh" => map_values(ev, arg(0)?, grid, f64::asinh),
        "acosh" => map_values(ev, arg(0)?, grid, f64::acosh),
        "atanh" => map_values(ev, arg(0)?, grid, f64::atanh),
        "deg" => map_values(ev, arg(0)?, grid, f64::to_degrees),
        "rad" => map_values(ev, arg(0)?, grid, f64::to_radians),
        "round" => {
            let to_nearest = match args.get(1) {
                Some(e) => ev.eval_scalar(e, grid)?,
                None => vec![1.0; n],
            };
            map_values_at(ev, arg(0)?, grid, |i, v| {
                let inverse = 1.0 / to_nearest[i];
                (v * inverse + 0.5).floor() / inverse
            })
        }
        "clamp" => {
            let min = ev.eval_scalar(arg(1)?, grid)?;
            let max = ev.eval_scalar(arg(2)?, grid)?;
            let mut series = ev.eval_vector(arg(0)?, grid)?;
            for s in &mut series {
                drop_name(&mut s.labels);
                s.points.retain_mut(|(i, v)| {
                    if max[*i] < min[*i] {
                        return false;
                    }
                    *v = go_max(min[*i], go_min(max[*i], *v));
                    true
                });
            }
            Ok(Val::Vector(merge_duplicates(series)?))
        }
        "clamp_min" | "clamp_max" => {
            let bound = ev.eval_scalar(arg(1)?, grid)?;
            let is_min = name == "clamp_min";
            map_values_at(ev, arg(0)?, grid, |i, v| {
                if is_min {
                    go_max(v, bound[i])
                } else {
                    go_min(v, bound[i])
                }
            })
        }
        "timestamp" => {
            let mut inner = arg(0)?;
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            let mut series = match inner {
                Expr::VectorSelector(vs) => ev.vector_selector(vs, grid, true),
                other => {
                    let mut series = ev.eval_vector(other, grid)?;
                    for s in &mut series {
                        for p in &mut s.points {
                            p.1 = grid.t(p.0) as f64 / 1000.0;
                        }
                    }
                    series
                }
            };
            for s in &mut series {
                drop_name(&mut s.labels);
            }
            Ok(Val::Vector(merge_duplicates(series)?))
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let f = date_part(name);
            match args.first() {
                Some(e) => map_values(ev, e, grid, f),
                None => Ok(Val::Vector(vec![VSeries {
                    labels: Vec::new(),
                    points: (0..n).map(|i| (i, f(grid.t(i) as f64 / 1000.0))).collect(),
                }])),
            }
        }
        "sort" | "sort_desc" => {
            let mut series = ev.eval_vector(arg(0)?, grid)?;
            if n == 1 {
                let desc = name == "sort_desc";
                let value = |s: &VSeries| s.points.first().map_or(f64::NAN, |p| p.1);
                series.sort_by(|a, b| {
                    let (x, y) = (value(a), value(b));
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(Val::Vector(series))
        }
        "label_replace" => label_replace(ev, &args, grid),
        "label_join" => label_join(ev, &args, grid),
        "absent" => {
            let series = ev.eval_vector(arg(0)?, grid)?;
            Ok(Val::Vector(absent(
                &series_steps(&series, n),
                absent_labels(arg(0)?),
            )))
        }
        "absent_over_time" => {
            let m = ev.eval_matrix(arg(0)?, grid)?;
            let mut present = vec![false; n];
            for s in &m.series {
                for (i, p) in present.iter_mut().enumerate() {
                    if !*p && !m.window(&s.samples, i).is_empty() {
                        *p = true;
                    }
                }
            }
            Ok(Val::Vector(absent(&present, absent_labels(arg(0)?))))
        }
        "histogram_quantile" => histogram_quantile(ev, &args, grid),
        "histogram_fraction" => histogram_fraction(ev, &args, grid),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms are not stored yet: float samples have no histogram to read.
            for a in &args {
                ev.eval(a, grid)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        _ => range::call(ev, name, &args, grid),
    }
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn map_values(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    grid: &Grid,
    f: impl Fn(f64) -> f64,
) -> Result<Val, QueryError> {
    map_values_at(ev, e, grid, |_, v| f(v))
}

fn map_values_at(
    ev: &mut Evaluator<'_>,
    e: &Expr,
    grid: &Grid,
    f: impl Fn(usize, f64) -> f64,
) -> Result<Val, QueryError> {
    let mut series = ev.eval_vector(e, grid)?;
    for s in &mut series {
        drop_name(&mut s.labels);
        for p in &mut s.points {
            p.1 = f(p.0, p.1);
        }
    }
    Ok(Val::Vector(merge_duplicates(series)?))
}

fn series_steps(series: &[VSeries], n: usize) -> Vec<bool> {
    let mut present = vec![false; n];
    for s in series {
        for &(i, _) in &s.points {
            present[i] = true;
        }
    }
    present
}

fn absent(present: &[bool], labels: Vec<Label>) -> Vec<VSeries> {
    let points: Vec<(usize, f64)> = present
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(i, _)| (i, 1.0))
        .collect();
    if points.is_empty() {
        return Vec::new();
    }
    vec![VSeries { labels, points }]
}

/// The labels `absent()` reports: the selector's equality matchers.
fn absent_labels(e: &Expr) -> Vec<Label> {
    let vs: &VectorSelector = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Vec::new(),
    };
    let mut out: Vec<Label> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        // The query shard is no label of any series.
        if m.name == METRIC_NAME || m.name == strata_common::labels::QUERY_SHARD_LABEL {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !seen.contains(&m.name.as_str()) {
            set_label(&mut out, &m.name, &m.value);
            seen.push(&m.name);
        } else {
            set_label(&mut out, &m.name, "");
        }
    }
    out
}

fn string_arg(
    ev: &mut Evaluator<'_>,
    e: Option<&&Expr>,
    grid: &Grid,
) -> Result<String, QueryError> {
    match e {
        Some(e) => match ev.eval(e, grid)? {
            Val::Str(s) => Ok(s),
            _ => Err(QueryError::exec("expected a string argument")),
        },
        None => Err(QueryError::exec("missing string argument")),
    }
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Val, QueryError> {
    let dst = string_arg(ev, args.get(1), grid)?;
    let replacement = string_arg(ev, args.get(2), grid)?;
    let src = string_arg(ev, args.get(3), grid)?;
    let pattern = string_arg(ev, args.get(4), grid)?;
    let translated = crate::regex_compat::translate(&pattern);
    let regex = regex::Regex::new(&format!("^(?s:{translated})$")).map_err(|e| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    if !crate::aggregate::valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let Some(first) = args.first() else {
        return Err(QueryError::exec("missing argument 0 of label_replace"));
    };
    let mut series = ev.eval_vector(first, grid)?;
    for s in &mut series {
        let value = labels::get(&s.labels, &src).to_owned();
        if let Some(caps) = regex.captures(&value) {
            let mut out = String::new();
            caps.expand(&replacement, &mut out);
            set_label(&mut s.labels, &dst, &out);
        }
    }
    Ok(Val::Vector(merge_duplicates(series)?))
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr], grid: &Grid) -> Result<Val, QueryError> {
    let dst = string_arg(ev, args.get(1), grid)?;
    let sep = string_arg(ev, args.get(2), grid)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        srcs.push(string_arg(ev, args.get(i), grid)?);
    }
    if !crate::aggregate::valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let Some(first) = args.first() else {
        return Err(QueryError::exec("missing argument 0 of label_join"));
    };
    let mut series = ev.eval_vector(first, grid)?;
    for s in &mut series {
        let joined = srcs
            .iter()
            .map(|name| labels::get(&s.labels, name))
            .collect::<Vec<_>>()
            .join(&sep);
        set_label(&mut s.labels, &dst, &joined);
    }
    Ok(Val::Vector(merge_duplicates(series)?))
}

/// A date function of a Unix time in seconds (UTC).
fn date_part(name: &str) -> fn(f64) -> f64 {
    match name {
        "year" => |v| civil(v).0 as f64,
        "month" => |v| civil(v).1 as f64,
        "day_of_month" => |v| civil(v).2 as f64,
        "day_of_week" => |v| (days(v) + 4).rem_euclid(7) as f64,
        "day_of_year" => |v| {
            let (y, m, d) = civil(v);
            let mut doy = d;
            for month in 1..m {
                doy += month_days(y, month);
            }
            doy as f64
        },
        "days_in_month" => |v| {
            let (y, m, _) = civil(v);
            month_days(y, m) as f64
        },
        "hour" => |v| (secs(v).rem_euclid(86_400) / 3600) as f64,
        _ => |v| (secs(v).rem_euclid(3600) / 60) as f64,
    }
}

/// The Unix seconds Go's `time.Unix(int64(v), 0)` stands for, as Prometheus
/// (built for amd64) computes them: a NaN, infinite or out-of-range `v`
/// converts to the minimum int64, and Go's calendar arithmetic, which works
/// modulo 2^64 from an epoch before the minimum, wraps that to 2^63 seconds
/// after 1970 (292277026596-12-04 15:30:08 UTC).
fn secs(v: f64) -> i128 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() || v >= TWO_63 || v <= -TWO_63 {
        return 1 << 63;
    }
    i128::from(v as i64)
}

fn days(v: f64) -> i128 {
    secs(v).div_euclid(86_400)
}

fn is_leap(y: i128) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i128, m: i128) -> i128 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of a Unix time, proleptic Gregorian (days-to-civil).
fn civil(v: f64) -> (i128, i128, i128) {
    let z = days(v) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// What is computed from one step's classic buckets.
enum ClassicHistogramFn {
    /// `histogram_quantile(q, ...)`: q per step.
    Quantile(Vec<f64>),
    /// `histogram_fraction(lower, upper, ...)`: the bounds per step.
    Fraction(Vec<f64>, Vec<f64>),
}

fn histogram_quantile(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Val, QueryError> {
    let (Some(qe), Some(ve)) = (args.first(), args.get(1)) else {
        return Err(QueryError::exec("histogram_quantile needs two arguments"));
    };
    let qs = ev.eval_scalar(qe, grid)?;
    let series = ev.eval_vector(ve, grid)?;
    classic_histograms(ev, &series, grid, &ClassicHistogramFn::Quantile(qs))
}

/// `histogram_fraction` over classic buckets (`le` series), as Prometheus
/// 3.5 computes it; native histograms are not stored yet.
fn histogram_fraction(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    grid: &Grid,
) -> Result<Val, QueryError> {
    let (Some(le), Some(ue), Some(ve)) = (args.first(), args.get(1), args.get(2)) else {
        return Err(QueryError::exec("histogram_fraction needs three arguments"));
    };
    let lowers = ev.eval_scalar(le, grid)?;
    let uppers = ev.eval_scalar(ue, grid)?;
    let series = ev.eval_vector(ve, grid)?;
    classic_histograms(
        ev,
        &series,
        grid,
        &ClassicHistogramFn::Fraction(lowers, uppers),
    )
}

/// Groups bucket series by their labels but `le` (warning about series
/// without a valid `le`) and computes `f` per group and step; the output
/// drops `le` and the name.
fn classic_histograms(
    ev: &mut Evaluator<'_>,
    series: &[VSeries],
    grid: &Grid,
    f: &ClassicHistogramFn,
) -> Result<Val, QueryError> {
    let n = grid.len();
    let mut index: HashMap<Vec<Label>, usize> = HashMap::new();
    // Per group: its labels and its members as (series index, upper bound).
    type Group = (Vec<Label>, Vec<(usize, f64)>);
    let mut groups: Vec<Group> = Vec::new();
    for (si, s) in series.iter().enumerate() {
        let le = labels::get(&s.labels, "le");
        let Some(upper) = parse_le(le) else {
            ev.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of \"{le}\" for metric name \"{}\"",
                labels::get(&s.labels, METRIC_NAME)
            ));
            continue;
        };
        let key: Vec<Label> = s
            .labels
            .iter()
            .filter(|l| l.name != "le")
            .cloned()
            .collect();
        let next = groups.len();
        let g = *index.entry(key.clone()).or_insert(next);
        if g == next {
            groups.push((key, Vec::new()));
        }
        groups[g].1.push((si, upper));
    }
    let mut warned_q = false;
    let mut out = Vec::with_capacity(groups.len());
    // Reused from step to step: no allocation per step.
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (key, members) in &groups {
        let mut points = Vec::new();
        // Per step values of each member.
        let mut cursors = vec![0usize; members.len()];
        for i in 0..n {
            buckets.clear();
            for (mi, &(si, upper)) in members.iter().enumerate() {
                let pts = &series[si].points;
                while cursors[mi] < pts.len() && pts[cursors[mi]].0 < i {
                    cursors[mi] += 1;
                }
                if let Some(&(pi, v)) = pts.get(cursors[mi])
                    && pi == i
                {
                    buckets.push((upper, v));
                }
            }
            if buckets.is_empty() {
                continue;
            }
            let v = match f {
                ClassicHistogramFn::Quantile(qs) => {
                    let q = qs.get(i).copied().unwrap_or(f64::NAN);
                    if (q.is_nan() || !(0.0..=1.0).contains(&q)) && !warned_q {
                        warned_q = true;
                        ev.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            format_float(q)
                        ));
                    }
                    let (v, forced) = bucket_quantile(q, &mut buckets, &mut merged);
                    if forced {
                        ev.info(format!(
                            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"{}\"",
                            labels::get(key, METRIC_NAME)
                        ));
                    }
                    v
                }
                ClassicHistogramFn::Fraction(lowers, uppers) => {
                    let lower = lowers.get(i).copied().unwrap_or(f64::NAN);
                    let upper = uppers.get(i).copied().unwrap_or(f64::NAN);
                    bucket_fraction(lower, upper, &mut buckets, &mut merged)
                }
            };
            points.push((i, v));
        }
        let mut labels = key.clone();
        drop_name(&mut labels);
        out.push(VSeries { labels, points });
    }
    Ok(Val::Vector(merge_duplicates(out)?))
}

/// Sorts classic buckets `(upper bound, cumulative count)` by bound into
/// `merged`, adding up the counts of equal bounds; false when the highest
/// bound is not +Inf.
fn sorted_buckets(buckets: &mut [(f64, f64)], merged: &mut Vec<(f64, f64)>) -> bool {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return false;
    }
    merged.clear();
    for &(upper, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == upper => last.1 += count,
            _ => merged.push((upper, count)),
        }
    }
    true
}

/// The fraction of observations between `lower` and `upper` in classic
/// buckets, interpolating linearly inside a bucket (Prometheus'
/// `BucketFraction`): the lowest bucket starts at -Inf, so a bound inside
/// it gives NaN, as in Prometheus 3.5. `merged` is scratch space.
fn bucket_fraction(
    lower: f64,
    upper: f64,
    buckets: &mut [(f64, f64)],
    merged: &mut Vec<(f64, f64)>,
) -> f64 {
    if !sorted_buckets(buckets, merged) {
        return f64::NAN;
    }
    let count = merged[merged.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let mut lower_rank: Option<f64> = None;
    let mut upper_rank: Option<f64> = None;
    for (i, &(bucket_upper, bucket_count)) in merged.iter().enumerate() {
        let bucket_lower = match i {
            0 => f64::NEG_INFINITY,
            _ => merged[i - 1].0,
        };
        let interpolate = |v: f64| {
            rank + (bucket_count - rank) * (v - bucket_lower) / (bucket_upper - bucket_lower)
        };
        // A bound at or below the bucket's start is reached with the
        // buckets before; one inside the bucket is interpolated.
        if lower_rank.is_none() && bucket_lower >= lower {
            lower_rank = Some(rank);
        }
        if upper_rank.is_none() && bucket_lower >= upper {
            upper_rank = Some(rank);
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        if lower_rank.is_none() && bucket_lower < lower && bucket_upper > lower {
            lower_rank = Some(interpolate(lower));
        }
        if upper_rank.is_none() && bucket_lower < upper && bucket_upper > upper {
            upper_rank = Some(interpolate(upper));
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        rank = bucket_count;
    }
    // Unset or above the count: the count (a NaN rank stays NaN).
    let clamp = |r: Option<f64>| match r {
        Some(r) if r.partial_cmp(&count) != Some(std::cmp::Ordering::Greater) => r,
        _ => count,
    };
    (clamp(upper_rank) - clamp(lower_rank)) / count
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "" => None,
        t => t.parse().ok(),
    }
}

/// Two floats equal within a relative tolerance (Prometheus' `almost.Equal`).
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Quantile of classic buckets `(upper bound, cumulative count)`; also
/// whether monotonicity had to be forced. `merged` is scratch space.
pub(crate) fn bucket_quantile(
    q: f64,
    buckets: &mut [(f64, f64)],
    merged: &mut Vec<(f64, f64)>,
) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if !sorted_buckets(buckets, merged) {
        return (f64::NAN, false);
    }
    let mut forced = false;
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if merged.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|b| b.1 < rank);
    if b == merged.len() - 1 {
        return (merged[merged.len() - 2].0, forced);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return (merged[0].0, forced);
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}
