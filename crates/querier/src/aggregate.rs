//! Aggregation operators with `by` / `without`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::eval::matched_labels;
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK, TokenId,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use strata_proto::prometheus::Label;

use crate::QueryError;
use crate::eval::{Evaluator, Grid, VSeries, Val, by_step, set_label};
use crate::functions::range::{self, SeriesSink, range_call};

/// Neumaier-compensated addition, as Prometheus sums: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

/// Formats a float as Go's `%g`-ish `strconv` shortest form (`+Inf`, `-Inf`, `NaN`).
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// Series grouped by their grouping labels, computed once per series (not
/// per step): a group's members are in series order, so per step each group
/// still sees its values in the order a step-by-step evaluation would.
pub(crate) struct Groups {
    /// Per group: its labels (empty without `by`/`without`).
    pub labels: Vec<Vec<Label>>,
    /// Per group: indices of its series, ascending.
    pub members: Vec<Vec<usize>>,
}

/// Groups the series that have points, in order of first appearance.
pub(crate) fn group_series(series: &[VSeries], modifier: Option<&LabelModifier>) -> Groups {
    let nonempty = series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.points.is_empty())
        .map(|(si, s)| (si, s.labels.as_slice()));
    group_labels(nonempty, modifier)
}

/// Groups label sets `(index, labels)` in order of first appearance. Keys
/// are looked up by a hash of the grouping labels, computed without
/// building the label set; equal hashes compare the labels themselves.
fn group_labels<'s>(
    series: impl Iterator<Item = (usize, &'s [Label])>,
    modifier: Option<&LabelModifier>,
) -> Groups {
    let mut groups = Groups {
        labels: Vec::new(),
        members: Vec::new(),
    };
    // Hash -> groups with that hash (almost always one).
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    for (si, labels) in series {
        // No `by`/`without`: everything aggregates into one group.
        let key = || matched_labels(labels, modifier).filter(|_| modifier.is_some());
        let mut hasher = std::hash::DefaultHasher::new();
        for l in key() {
            l.name.hash(&mut hasher);
            l.value.hash(&mut hasher);
        }
        let candidates = by_hash.entry(hasher.finish()).or_default();
        let found = candidates
            .iter()
            .copied()
            .find(|&g| key().eq(groups.labels[g].iter()));
        match found {
            Some(g) => groups.members[g].push(si),
            None => {
                candidates.push(groups.labels.len());
                groups.labels.push(key().cloned().collect());
                groups.members.push(vec![si]);
            }
        }
    }
    groups
}

/// One group's running aggregate at one step.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    count: f64,
    value: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

/// Adds one value to a step's accumulator (the first value starts it).
/// Inlined: it runs once per point.
#[inline]
fn fold(op: TokenId, acc: &mut Acc, f: f64) {
    if acc.count == 0.0 {
        *acc = Acc {
            count: 1.0,
            value: f,
            c: 0.0,
            mean: f,
            incremental: false,
        };
        if matches!(op, T_STDDEV | T_STDVAR) {
            acc.value = if f.is_finite() { 0.0 } else { f64::NAN };
        }
        return;
    }
    acc.count += 1.0;
    match op {
        T_SUM => (acc.value, acc.c) = kahan_inc(f, acc.value, acc.c),
        T_AVG => {
            if !acc.incremental {
                let (sum, c) = kahan_inc(f, acc.value, acc.c);
                if !sum.is_infinite() {
                    acc.value = sum;
                    acc.c = c;
                    return;
                }
                acc.incremental = true;
                acc.mean = acc.value / (acc.count - 1.0);
                acc.c /= acc.count - 1.0;
            }
            let q = (acc.count - 1.0) / acc.count;
            (acc.mean, acc.c) = kahan_inc(f / acc.count, q * acc.mean, q * acc.c);
        }
        T_MAX if acc.value < f || acc.value.is_nan() => acc.value = f,
        T_MIN if acc.value > f || acc.value.is_nan() => acc.value = f,
        T_STDDEV | T_STDVAR => {
            let delta = f - acc.mean;
            acc.mean += delta / acc.count;
            acc.value += delta * (f - acc.mean);
        }
        _ => {}
    }
}

/// A started accumulator's value (every operator but `quantile`).
fn result(op: TokenId, acc: &Acc) -> f64 {
    match op {
        T_SUM => acc.value + acc.c,
        T_AVG => {
            if acc.incremental {
                acc.mean + acc.c
            } else {
                acc.value / acc.count + acc.c / acc.count
            }
        }
        T_COUNT => acc.count,
        T_GROUP => 1.0,
        T_STDVAR => acc.value / acc.count,
        T_STDDEV => (acc.value / acc.count).sqrt(),
        _ => acc.value,
    }
}

pub(crate) fn eval(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    grid: &Grid,
) -> Result<Val, QueryError> {
    let op = a.op.id();
    let n = grid.len();
    let modifier = a.modifier.as_ref();
    let mut count_values_label = None;
    let mut param = None;
    if let Some(p) = &a.param {
        if op == T_COUNT_VALUES {
            match ev.eval(p, grid)? {
                Val::Str(s) => count_values_label = Some(s),
                _ => return Err(QueryError::exec("count_values needs a string parameter")),
            }
        } else {
            param = Some(ev.eval_scalar(p, grid)?);
        }
    }
    let series = match range_call(&a.expr) {
        // The common `sum by (...) (rate(...))`: fold each result series
        // while it is hot instead of collecting them all first.
        Some((name, args))
            if matches!(
                op,
                T_SUM | T_AVG | T_COUNT | T_MIN | T_MAX | T_GROUP | T_STDDEV | T_STDVAR
            ) =>
        {
            let mut stream = StreamFold::new(op, modifier, n);
            match range::evaluate(ev, name, &args, grid, Some(&mut stream))? {
                None => return Ok(Val::Vector(stream.finish())),
                Some(series) => series,
            }
        }
        _ => ev.eval_vector(&a.expr, grid)?,
    };
    let groups = group_series(&series, modifier);

    match op {
        T_TOPK | T_BOTTOMK => {
            let ks = param.unwrap_or_default();
            return top_bottom(op == T_TOPK, series, &groups, n, &ks);
        }
        T_COUNT_VALUES => {
            let label = count_values_label.unwrap_or_default();
            if !valid_label_name(&label) {
                return Err(QueryError::exec(format!("invalid label name {label:?}")));
            }
            return Ok(Val::Vector(count_values(&label, &series, &groups, n)));
        }
        _ => {}
    }
    if op == T_QUANTILE
        && let Some(qs) = &param
    {
        for &q in qs {
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.warn(format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_float(q)
                ));
            }
        }
    }

    // Group by group: whole step vectors of its members are folded into one
    // accumulator per step, reused from group to group.
    let mut out: Vec<VSeries> = Vec::with_capacity(groups.labels.len());
    let mut accs: Vec<Acc> = vec![Acc::default(); n];
    let mut values: Vec<Vec<f64>> = if op == T_QUANTILE {
        vec![Vec::new(); n]
    } else {
        Vec::new()
    };
    let mut folded = 0usize;
    for (labels, members) in groups.labels.into_iter().zip(&groups.members) {
        accs.iter_mut().for_each(|acc| acc.count = 0.0);
        values.iter_mut().for_each(Vec::clear);
        for &si in members {
            folded += 1;
            if folded.is_multiple_of(1024) {
                ev.check_deadline()?;
            }
            for &(i, f) in &series[si].points {
                if op == T_QUANTILE {
                    values[i].push(f);
                }
                fold(op, &mut accs[i], f);
            }
        }
        let mut points = Vec::new();
        for (i, acc) in accs.iter().enumerate() {
            if acc.count == 0.0 {
                continue;
            }
            let v = if op == T_QUANTILE {
                let q = param.as_ref().map_or(f64::NAN, |p| p[i]);
                quantile(q, &mut values[i])
            } else {
                result(op, acc)
            };
            points.push((i, v));
        }
        out.push(VSeries { labels, points });
    }
    Ok(Val::Vector(out))
}

/// Most accumulators a streamed aggregation holds at once (40 bytes each);
/// with more groups × steps the range function's result is collected and
/// aggregated group by group instead.
const STREAM_ACCS: usize = 1 << 20;

/// An aggregation (but `quantile`, `topk`, `bottomk`, `count_values`) that
/// folds a range function's result series as they are computed. Per group
/// and step the values arrive in series order, as in [`eval`], and groups
/// are output in order of their first series with a point, so the result is
/// the one `eval` computes from the collected vector.
struct StreamFold<'m> {
    op: TokenId,
    modifier: Option<&'m LabelModifier>,
    n: usize,
    /// Per input series: its group.
    group_of: Vec<usize>,
    /// Per group: its labels.
    labels: Vec<Vec<Label>>,
    /// Per group: its first series with a point (`usize::MAX`: none yet).
    first: Vec<usize>,
    /// Per group, `n` accumulators (one per step).
    accs: Vec<Acc>,
}

impl<'m> StreamFold<'m> {
    fn new(op: TokenId, modifier: Option<&'m LabelModifier>, n: usize) -> Self {
        StreamFold {
            op,
            modifier,
            n,
            group_of: Vec::new(),
            labels: Vec::new(),
            first: Vec::new(),
            accs: Vec::new(),
        }
    }

    fn finish(self) -> Vec<VSeries> {
        let StreamFold {
            op,
            n,
            labels,
            first,
            accs,
            ..
        } = self;
        let mut order: Vec<usize> = (0..labels.len())
            .filter(|&g| first[g] != usize::MAX)
            .collect();
        order.sort_unstable_by_key(|&g| first[g]);
        let mut labels: Vec<Option<Vec<Label>>> = labels.into_iter().map(Some).collect();
        order
            .into_iter()
            .map(|g| {
                let points = accs[g * n..(g + 1) * n]
                    .iter()
                    .enumerate()
                    .filter(|(_, acc)| acc.count != 0.0)
                    .map(|(i, acc)| (i, result(op, acc)))
                    .collect();
                VSeries {
                    labels: labels[g].take().unwrap_or_default(),
                    points,
                }
            })
            .collect()
    }
}

impl SeriesSink for StreamFold<'_> {
    fn accept(&mut self, labels: &[Vec<Label>]) -> bool {
        let all = labels.iter().map(Vec::as_slice).enumerate();
        let groups = group_labels(all, self.modifier);
        if groups.labels.len().saturating_mul(self.n) > STREAM_ACCS {
            return false;
        }
        self.group_of = vec![0; labels.len()];
        for (g, members) in groups.members.iter().enumerate() {
            for &si in members {
                self.group_of[si] = g;
            }
        }
        self.first = vec![usize::MAX; groups.labels.len()];
        self.accs = vec![Acc::default(); groups.labels.len() * self.n];
        self.labels = groups.labels;
        true
    }

    fn series(&mut self, index: usize, points: &[(usize, f64)]) {
        let g = self.group_of[index];
        if self.first[g] == usize::MAX {
            self.first[g] = index;
        }
        let accs = &mut self.accs[g * self.n..(g + 1) * self.n];
        for &(i, f) in points {
            fold(self.op, &mut accs[i], f);
        }
    }
}

/// Prometheus' `quantile`: linear interpolation between closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        // NaN sorts first, like Prometheus' vectorByValueHeap.
        match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => a.total_cmp(b),
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

pub(crate) fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && std::str::from_utf8(name.as_bytes()).is_ok() && !name.contains('\u{fffd}')
}

fn count_values(label: &str, series: &[VSeries], groups: &Groups, n: usize) -> Vec<VSeries> {
    // Step by step over all groups: two groups can yield the same output
    // labels when `label` is one of the grouping labels.
    let mut group_of = vec![0usize; series.len()];
    for (g, members) in groups.members.iter().enumerate() {
        for &si in members {
            group_of[si] = g;
        }
    }
    let mut index: HashMap<Vec<Label>, usize> = HashMap::new();
    let mut out: Vec<VSeries> = Vec::new();
    for (i, step) in by_step(series, n).iter().enumerate() {
        let mut counts: Vec<(usize, f64)> = Vec::new();
        for &(si, f) in step {
            let mut labels = groups.labels[group_of[si]].clone();
            set_label(&mut labels, label, &format_float(f));
            let next = out.len();
            let idx = *index.entry(labels.clone()).or_insert(next);
            if idx == next {
                out.push(VSeries {
                    labels,
                    points: Vec::new(),
                });
            }
            match counts.iter_mut().find(|c| c.0 == idx) {
                Some(c) => c.1 += 1.0,
                None => counts.push((idx, 1.0)),
            }
        }
        for (idx, c) in counts {
            out[idx].points.push((i, c));
        }
    }
    out
}

/// `topk`/`bottomk` select as Prometheus 3.5 does, ties included: per group
/// and step a binary heap of at most k members with the worst on top, built
/// by Go's `container/heap` rules from the members in series order; a later
/// member replaces the top only when strictly better. The kept members come
/// out best first as Go's `sort.Sort` orders them: an insertion sort (stable)
/// up to 12 members; above that Go's pattern-defeating quicksort may order
/// ties differently from the stable order used here.
struct KHeap {
    top: bool,
    /// (series, value), a heap ordered by [`KHeap::less`].
    items: Vec<(usize, f64)>,
}

impl KHeap {
    /// The heap's order (`vectorByValueHeap` / `vectorByReverseValueHeap`):
    /// NaN first, then the worst.
    fn less(&self, a: f64, b: f64) -> bool {
        a.is_nan() || if self.top { a < b } else { a > b }
    }

    fn offer(&mut self, k: usize, si: usize, f: f64) {
        if self.items.len() < k {
            self.items.push((si, f));
            self.up(self.items.len() - 1);
            return;
        }
        let worst = self.items[0].1;
        let better = if self.top { worst < f } else { worst > f };
        if better || (worst.is_nan() && !f.is_nan()) {
            self.items[0] = (si, f);
            self.down(0);
        }
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let parent = (j - 1) / 2;
            if !self.less(self.items[j].1, self.items[parent].1) {
                break;
            }
            self.items.swap(parent, j);
            j = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        let n = self.items.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let mut j = left;
            if left + 1 < n && self.less(self.items[left + 1].1, self.items[left].1) {
                j = left + 1;
            }
            if !self.less(self.items[j].1, self.items[i].1) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }

    /// The kept members, best first, in Go's order (see the type's comment).
    fn sorted(&mut self) -> &[(usize, f64)] {
        let n = self.items.len();
        if n <= 12 {
            for i in 1..n {
                let mut j = i;
                while j > 0 && self.less(self.items[j - 1].1, self.items[j].1) {
                    self.items.swap(j, j - 1);
                    j -= 1;
                }
            }
        } else {
            let top = self.top;
            let rank = |f: f64| if top { -f } else { f };
            self.items
                .sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                    (false, false) => rank(a.1).total_cmp(&rank(b.1)),
                    (x, y) => x.cmp(&y),
                });
        }
        &self.items
    }
}

fn top_bottom(
    top: bool,
    series: Vec<VSeries>,
    groups: &Groups,
    n: usize,
    ks: &[f64],
) -> Result<Val, QueryError> {
    // Per step: how many to keep (0: none). An overflowing k fails the query
    // whatever the data; Prometheus 3.5 selects nothing at a step whose k is NaN.
    let mut keep: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        let kf = ks.get(i).copied().unwrap_or(f64::NAN);
        if kf.is_nan() {
            keep.push(0);
            continue;
        }
        if kf >= 9.223_372_036_854_776e18 {
            return Err(QueryError::exec(format!(
                "Scalar value {kf} overflows int64"
            )));
        }
        keep.push(usize::try_from(kf as i64).unwrap_or(0));
    }
    // Per series: its selected points (most series get none).
    let mut selected: Vec<Vec<(usize, f64)>> = vec![Vec::new(); series.len()];
    let mut order: Vec<usize> = Vec::new();
    // Group by group, series by series, every step keeping its heap: points
    // are read in storage order, and each step's members arrive in series
    // order as they do in Prometheus' per-step evaluation.
    let mut heaps: Vec<KHeap> = (0..n)
        .map(|_| KHeap {
            top,
            items: Vec::new(),
        })
        .collect();
    for members in &groups.members {
        heaps.iter_mut().for_each(|h| h.items.clear());
        for &si in members {
            for &(i, f) in &series[si].points {
                if keep[i] > 0 {
                    heaps[i].offer(keep[i], si, f);
                }
            }
        }
        for (i, heap) in heaps.iter_mut().enumerate() {
            for &(si, f) in heap.sorted() {
                selected[si].push((i, f));
                if i == 0 {
                    order.push(si);
                }
            }
        }
    }
    let mut out: Vec<Option<VSeries>> = series
        .into_iter()
        .zip(selected)
        .map(|(s, points)| {
            (!points.is_empty()).then_some(VSeries {
                labels: s.labels,
                points,
            })
        })
        .collect();
    if n == 1 {
        // An instant query returns the selection in rank order.
        let ordered = order.into_iter().filter_map(|si| out[si].take()).collect();
        return Ok(Val::Vector(ordered));
    }
    Ok(Val::Vector(out.into_iter().flatten().collect()))
}
