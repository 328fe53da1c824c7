//! Binary operators: arithmetic, comparison (with `bool`), `and`/`or`/`unless`,
//! with `on`/`ignoring`/`group_left`/`group_right` vector matching.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_common::labels;
use strata_proto::prometheus::Label;

use crate::QueryError;
use crate::eval::{
    Evaluator, Grid, VSeries, Val, by_step, drop_name, matched_labels, merge_duplicates, set_label,
};

pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, grid: &Grid) -> Result<Val, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, grid)?;
    let rhs = ev.eval(&b.rhs, grid)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let values = l
                .iter()
                .zip(&r)
                .map(|(&a, &b)| {
                    let (v, keep) = apply(op, a, b);
                    if is_comparison(op) {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect();
            Ok(Val::Scalar(values))
        }
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, &s, false, return_bool),
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, &s, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
                let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
                return Ok(Val::Vector(set_op(op, l, r, matching, grid.len())?));
            }
            vector_vector(op, l, r, b, return_bool, grid.len())
        }
        _ => Err(QueryError::exec(
            "binary operation on unsupported operand types",
        )),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Whether the operator removes the metric name from its result.
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// Applies an operator; comparisons yield `(lhs, holds)`.
pub(crate) fn apply(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: TokenId,
    mut series: Vec<VSeries>,
    scalar: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Result<Val, QueryError> {
    let comparison = is_comparison(op);
    let drop = drops_name(op) || return_bool;
    for s in &mut series {
        if drop {
            drop_name(&mut s.labels);
        }
        s.points.retain_mut(|(i, v)| {
            let (l, r) = if scalar_left {
                (scalar[*i], *v)
            } else {
                (*v, scalar[*i])
            };
            let (value, keep) = apply(op, l, r);
            if !comparison {
                *v = value;
                return true;
            }
            if return_bool {
                *v = if keep { 1.0 } else { 0.0 };
                return true;
            }
            keep
        });
    }
    Ok(Val::Vector(merge_duplicates(series)?))
}

/// The matching signature of a series.
fn signature(labels: &[Label], matching: Option<&LabelModifier>) -> String {
    let mut key = String::new();
    let mut push = |l: &Label| {
        key.push_str(&l.name);
        key.push('\u{ff}');
        key.push_str(&l.value);
        key.push('\u{ff}');
    };
    matched_labels(labels, matching).for_each(&mut push);
    key
}

/// Interns signatures to small integers.
fn sig_ids(
    series: &[VSeries],
    matching: Option<&LabelModifier>,
    ids: &mut HashMap<String, usize>,
) -> Vec<usize> {
    series
        .iter()
        .map(|s| {
            let next = ids.len();
            *ids.entry(signature(&s.labels, matching)).or_insert(next)
        })
        .collect()
}

fn set_op(
    op: TokenId,
    lhs: Vec<VSeries>,
    rhs: Vec<VSeries>,
    matching: Option<&LabelModifier>,
    n: usize,
) -> Result<Vec<VSeries>, QueryError> {
    let mut ids = HashMap::new();
    let lsig = sig_ids(&lhs, matching, &mut ids);
    let rsig = sig_ids(&rhs, matching, &mut ids);
    let nsig = ids.len();
    // present[sig] == step + 1 when some series of that side has that signature at the step.
    let mut present_r = vec![usize::MAX; nsig];
    let rsteps = by_step(&rhs, n);
    let lsteps = by_step(&lhs, n);
    let mut out_l: Vec<VSeries> = lhs
        .iter()
        .map(|s| VSeries {
            labels: s.labels.clone(),
            points: Vec::new(),
        })
        .collect();
    match op {
        T_LAND | T_LUNLESS => {
            for i in 0..n {
                for &(ri, _) in &rsteps[i] {
                    present_r[rsig[ri]] = i;
                }
                for &(li, v) in &lsteps[i] {
                    let matched = present_r[lsig[li]] == i;
                    if matched == (op == T_LAND) {
                        out_l[li].points.push((i, v));
                    }
                }
            }
            out_l.retain(|s| !s.points.is_empty());
            Ok(out_l)
        }
        _ => {
            let mut present_l = vec![usize::MAX; nsig];
            let mut out_r: Vec<VSeries> = rhs
                .iter()
                .map(|s| VSeries {
                    labels: s.labels.clone(),
                    points: Vec::new(),
                })
                .collect();
            for i in 0..n {
                for &(li, v) in &lsteps[i] {
                    present_l[lsig[li]] = i;
                    out_l[li].points.push((i, v));
                }
                for &(ri, v) in &rsteps[i] {
                    if present_l[rsig[ri]] != i {
                        out_r[ri].points.push((i, v));
                    }
                }
            }
            out_l.extend(out_r);
            // Over a range, one label set may come from the left at some steps
            // and from the right at others: it is still one series.
            merge_duplicates(out_l)
        }
    }
}

fn matching_labels_display(labels: &[Label], b: &BinaryExpr) -> String {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let kept: Vec<Label> = matched_labels(labels, matching).cloned().collect();
    labels::format(&kept)
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<VSeries>,
    rhs: Vec<VSeries>,
    b: &BinaryExpr,
    return_bool: bool,
    n: usize,
) -> Result<Val, QueryError> {
    let modifier = b.modifier.as_ref();
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let card = modifier.map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
    let (swapped, include) = match card {
        VectorMatchCardinality::OneToMany(ls) => (true, Some(ls)),
        VectorMatchCardinality::ManyToOne(ls) => (false, Some(ls)),
        _ => (false, None),
    };
    let one_to_one = include.is_none();
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut ids = HashMap::new();
    let msig = sig_ids(&many, matching, &mut ids);
    let osig = sig_ids(&one, matching, &mut ids);
    let nsig = ids.len();
    let comparison = is_comparison(op);
    let drop = drops_name(op) || return_bool;
    let shape = JoinShape {
        op,
        swapped,
        comparison,
        return_bool,
        one_to_one,
        matching,
        include,
        drop,
    };
    if let Some(out) = join_by_series(&shape, &many, &one, &msig, &osig, nsig) {
        return Ok(Val::Vector(out));
    }
    let msteps = by_step(&many, n);
    let osteps = by_step(&one, n);

    // Per signature: (step it was last seen at, one-side series, its value).
    let mut slot: Vec<(usize, usize, f64)> = vec![(usize::MAX, 0, 0.0); nsig];
    let mut matched: Vec<usize> = vec![usize::MAX; nsig];
    let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
    // Per many-side series: the last (one-side series, output index) pair, the usual case.
    let mut last_pair: Vec<(usize, usize)> = vec![(usize::MAX, 0); many.len()];
    let mut label_out: HashMap<Vec<Label>, usize> = HashMap::new();
    let mut out: Vec<VSeries> = Vec::new();
    // Per output series: (last step written, signature that wrote it).
    let mut written: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        for &(oi, ov) in &osteps[i] {
            let sig = osig[oi];
            if slot[sig].0 == i {
                let side = if swapped { "left" } else { "right" };
                let first = &one[slot[sig].1].labels;
                return Err(QueryError::exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    matching_labels_display(first, b),
                    labels::format(first),
                    labels::format(&one[oi].labels),
                )));
            }
            slot[sig] = (i, oi, ov);
        }
        for &(mi, mv) in &msteps[i] {
            let sig = msig[mi];
            if slot[sig].0 != i {
                continue;
            }
            let (_, oi, ov) = slot[sig];
            let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
            let (mut value, keep) = apply(op, l, r);
            if comparison {
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
            }
            if one_to_one {
                if matched[sig] == i {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched[sig] = i;
            }
            let cached = last_pair[mi];
            let idx = if cached.0 == oi {
                cached.1
            } else {
                match pair_out.get(&(mi, oi)) {
                    Some(&idx) => idx,
                    None => {
                        let labels = result_labels(
                            &many[mi].labels,
                            &one[oi].labels,
                            matching,
                            include,
                            drop,
                        );
                        let idx = match label_out.get(&labels) {
                            Some(&idx) => idx,
                            None => {
                                label_out.insert(labels.clone(), out.len());
                                out.push(VSeries {
                                    labels,
                                    points: Vec::new(),
                                });
                                written.push((usize::MAX, usize::MAX));
                                out.len() - 1
                            }
                        };
                        pair_out.insert((mi, oi), idx);
                        idx
                    }
                }
            };
            last_pair[mi] = (oi, idx);
            if written[idx].0 == i {
                if !one_to_one && written[idx].1 == sig {
                    return Err(QueryError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                return Err(QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
            written[idx] = (i, sig);
            out[idx].points.push((i, value));
        }
    }
    out.retain(|s| !s.points.is_empty());
    Ok(Val::Vector(out))
}

/// What a vector-vector operation does, for [`join_by_series`].
struct JoinShape<'a> {
    op: TokenId,
    /// `group_right`: the many side is the right-hand side.
    swapped: bool,
    comparison: bool,
    return_bool: bool,
    one_to_one: bool,
    matching: Option<&'a LabelModifier>,
    include: Option<&'a promql_parser::label::Labels>,
    drop: bool,
}

/// The usual join, series by series: every signature has at most one series
/// on the one side (and, one-to-one, on the many side), and every matched
/// pair yields distinct output labels. Then no step can fail and each output
/// series is one many-side series merged with its match, step by step over
/// the two sorted point lists. `None` when the data is not that simple: the
/// step-by-step evaluation then decides (including which error to report).
/// The output is ordered as the step-by-step evaluation orders it.
fn join_by_series(
    shape: &JoinShape<'_>,
    many: &[VSeries],
    one: &[VSeries],
    msig: &[usize],
    osig: &[usize],
    nsig: usize,
) -> Option<Vec<VSeries>> {
    // Per signature: the one-side series carrying it.
    let mut one_of: Vec<Option<usize>> = vec![None; nsig];
    for (oi, &sig) in osig.iter().enumerate() {
        if one[oi].points.is_empty() {
            continue;
        }
        if one_of[sig].replace(oi).is_some() {
            return None;
        }
    }
    if shape.one_to_one {
        let mut seen = vec![false; nsig];
        for (mi, &sig) in msig.iter().enumerate() {
            if many[mi].points.is_empty() || one_of[sig].is_none() {
                continue;
            }
            if std::mem::replace(&mut seen[sig], true) {
                return None;
            }
        }
    }
    let mut labels_seen: HashSet<Vec<Label>> = HashSet::new();
    // Output series with the (first step, many-side index) that created
    // them in a step-by-step evaluation.
    let mut out: Vec<((usize, usize), VSeries)> = Vec::new();
    let mut points: Vec<(usize, f64)> = Vec::new();
    for (mi, m) in many.iter().enumerate() {
        let Some(oi) = one_of[msig[mi]] else {
            continue;
        };
        let other = &one[oi].points;
        points.clear();
        let mut cursor = 0usize;
        for &(i, mv) in &m.points {
            while cursor < other.len() && other[cursor].0 < i {
                cursor += 1;
            }
            let Some(&(oi_step, ov)) = other.get(cursor) else {
                break;
            };
            if oi_step != i {
                continue;
            }
            let (l, r) = if shape.swapped { (ov, mv) } else { (mv, ov) };
            let (mut value, keep) = apply(shape.op, l, r);
            if shape.comparison {
                if shape.return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
            }
            points.push((i, value));
        }
        let Some(&(first_step, _)) = points.first() else {
            continue;
        };
        let labels = result_labels(
            &m.labels,
            &one[oi].labels,
            shape.matching,
            shape.include,
            shape.drop,
        );
        if !labels_seen.insert(labels.clone()) {
            return None;
        }
        out.push((
            (first_step, mi),
            VSeries {
                labels,
                points: points.clone(),
            },
        ));
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Some(out.into_iter().map(|(_, s)| s).collect())
}

fn result_labels(
    many: &[Label],
    one: &[Label],
    matching: Option<&LabelModifier>,
    include: Option<&promql_parser::label::Labels>,
    drop: bool,
) -> Vec<Label> {
    let mut labels = many.to_vec();
    if drop {
        drop_name(&mut labels);
    }
    match include {
        None => match matching {
            Some(LabelModifier::Include(names)) => {
                labels.retain(|l| names.labels.contains(&l.name))
            }
            Some(LabelModifier::Exclude(names)) => {
                labels.retain(|l| !names.labels.contains(&l.name))
            }
            None => {}
        },
        Some(extra) => {
            for name in &extra.labels {
                set_label(&mut labels, name, labels::get(one, name));
            }
        }
    }
    labels
}
