//! Splitting a range query into step-aligned pieces, one per split
//! interval, and merging the pieces' answers back into one.
//!
//! Every step of a PromQL range query is evaluated independently of the
//! others, so evaluating the grid points `start + k·step` in groups and
//! concatenating the groups gives the unsplit answer. The pieces keep the
//! user's grid: a piece's start is the first grid point in its interval and
//! its end the last one, never a shifted time. The one thing that depends on
//! the query's range rather than the evaluation time is `@ start()` and
//! `@ end()`, so queries using them run whole.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{self, AtModifier, Expr, Offset};
use promql_parser::util::{ExprVisitor, walk_expr};
use strata_proto::prometheus::Label;
use strata_proto::query::{Matrix, PromSeries, QueryResponse, query_response};

/// A contiguous run of the query's grid points, `start..=end` every step,
/// all inside split interval number `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub start: i64,
    pub end: i64,
    /// `floor(start / interval)`: which interval of the time line this is.
    pub index: i64,
}

/// The grid points of `start..=end` every `step`, grouped by the interval
/// of length `interval` (aligned to multiples of it) each falls in. `None`
/// when the arithmetic would overflow or the arguments make no sense; the
/// caller then runs the query whole.
pub(crate) fn split(start: i64, end: i64, step: i64, interval: i64) -> Option<Vec<Piece>> {
    if step <= 0 || interval <= 0 || end < start {
        return None;
    }
    let last_k = (i128::from(end) - i128::from(start)) / i128::from(step);
    let mut pieces = Vec::new();
    let mut t = i128::from(start);
    let (start, step, interval) = (i128::from(start), i128::from(step), i128::from(interval));
    while (t - start) / step <= last_k {
        let index = t.div_euclid(interval);
        let boundary = (index + 1) * interval;
        // The last grid point before the next interval, or the query's end.
        let k = ((boundary - 1 - start) / step).min(last_k);
        let piece_end = start + k * step;
        pieces.push(Piece {
            start: i64::try_from(t).ok()?,
            end: i64::try_from(piece_end).ok()?,
            index: i64::try_from(index).ok()?,
        });
        t = piece_end + step;
    }
    Some(pieces)
}

/// What the frontend needs to know about a query's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// The expression as the cache keys it: the parser's canonical form when
    /// printing it parses back to the same expression, else the text as sent.
    pub normalized: String,
    /// Whether the query's answer depends on its range (`@ start()`,
    /// `@ end()`), so it must not be split or cached.
    pub range_dependent: bool,
    /// Whether a step may read samples after its own time (a negative
    /// `offset`, an `@ <time>`): its answer may still change while the step
    /// is older than the freshness window, so it is not cached.
    pub reads_ahead: bool,
}

/// Parses `query`; `None` when it does not parse (the querier then reports
/// the error as Prometheus words it).
pub(crate) fn analyze(query: &str) -> Option<Analysis> {
    let expr = parser::parse(query).ok()?;
    let mut finder = Modifiers::default();
    // The visitor never fails.
    let _ = walk_expr(&mut finder, &expr);
    let printed = expr.to_string();
    let normalized = match parser::parse(&printed) {
        Ok(reparsed) if reparsed == expr => printed,
        _ => query.trim().to_owned(),
    };
    Some(Analysis {
        normalized,
        range_dependent: finder.range_dependent,
        reads_ahead: finder.reads_ahead,
    })
}

/// Finds `@` modifiers and negative offsets anywhere in an expression.
#[derive(Default)]
struct Modifiers {
    range_dependent: bool,
    reads_ahead: bool,
}

impl ExprVisitor for Modifiers {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let (at, offset) = match expr {
            Expr::VectorSelector(vs) => (vs.at.as_ref(), vs.offset.as_ref()),
            Expr::MatrixSelector(ms) => (ms.vs.at.as_ref(), ms.vs.offset.as_ref()),
            Expr::Subquery(sq) => (sq.at.as_ref(), sq.offset.as_ref()),
            _ => (None, None),
        };
        match at {
            Some(AtModifier::Start | AtModifier::End) => self.range_dependent = true,
            Some(AtModifier::At(_)) => self.reads_ahead = true,
            None => {}
        }
        if matches!(offset, Some(Offset::Neg(_))) {
            self.reads_ahead = true;
        }
        Ok(true)
    }
}

/// Concatenates the answers of consecutive pieces (in time order): series
/// joined by label set and sorted as Prometheus sorts a matrix, warnings
/// and infos deduplicated, loaded samples summed, peak samples the largest.
/// `None` when a part is not a matrix (the caller then runs the query whole).
pub(crate) fn merge(parts: Vec<QueryResponse>) -> Option<QueryResponse> {
    let mut by_labels: HashMap<Vec<Label>, PromSeries> = HashMap::new();
    let mut merged = QueryResponse::default();
    let mut seen_warnings = HashSet::new();
    let mut seen_infos = HashSet::new();
    for part in parts {
        let matrix = match part.result {
            Some(query_response::Result::Matrix(m)) => m,
            None => Matrix::default(),
            Some(_) => return None,
        };
        for series in matrix.series {
            match by_labels.get_mut(&series.labels) {
                Some(existing) => {
                    existing.timestamps_ms.extend(series.timestamps_ms);
                    existing.values.extend(series.values);
                }
                None => {
                    by_labels.insert(series.labels.clone(), series);
                }
            }
        }
        for warning in part.warnings {
            if seen_warnings.insert(warning.clone()) {
                merged.warnings.push(warning);
            }
        }
        for info in part.infos {
            if seen_infos.insert(info.clone()) {
                merged.infos.push(info);
            }
        }
        merged.total_queryable_samples += part.total_queryable_samples;
        merged.peak_samples = merged.peak_samples.max(part.peak_samples);
    }
    let mut series: Vec<PromSeries> = by_labels.into_values().collect();
    series.sort_by(|a, b| strata_common::labels::compare(&a.labels, &b.labels));
    merged.result = Some(query_response::Result::Matrix(Matrix { series }));
    Some(merged)
}

/// The part of a matrix answer at `from..=to`: points outside dropped,
/// series left without points dropped (Prometheus never returns those).
pub(crate) fn slice(response: &QueryResponse, from: i64, to: i64) -> QueryResponse {
    let series = match &response.result {
        Some(query_response::Result::Matrix(m)) => m
            .series
            .iter()
            .filter_map(|s| {
                let first = s.timestamps_ms.partition_point(|&t| t < from);
                let last = s.timestamps_ms.partition_point(|&t| t <= to);
                (first < last).then(|| PromSeries {
                    labels: s.labels.clone(),
                    timestamps_ms: s.timestamps_ms[first..last].to_vec(),
                    values: s.values[first..last.min(s.values.len())].to_vec(),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    QueryResponse {
        result: Some(query_response::Result::Matrix(Matrix { series })),
        warnings: response.warnings.clone(),
        infos: response.infos.clone(),
        total_queryable_samples: 0,
        peak_samples: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn pieces_keep_the_users_grid() {
        // Start 30 s past an hour, step 7 min, 2 h intervals.
        let start = 10 * HOUR + 30_000;
        let pieces = split(start, start + 5 * HOUR, 420_000, 2 * HOUR).expect("splits");
        let mut points = Vec::new();
        for piece in &pieces {
            assert_eq!((piece.start - start) % 420_000, 0);
            assert_eq!((piece.end - start) % 420_000, 0);
            assert_eq!(piece.start.div_euclid(2 * HOUR), piece.index);
            assert_eq!(piece.end.div_euclid(2 * HOUR), piece.index);
            let mut t = piece.start;
            while t <= piece.end {
                points.push(t);
                t += 420_000;
            }
        }
        let expected: Vec<i64> = (0..)
            .map(|k| start + k * 420_000)
            .take_while(|&t| t <= start + 5 * HOUR)
            .collect();
        assert_eq!(points, expected);
        assert_eq!(pieces.len(), 3);
    }

    #[test]
    fn negative_times_split_on_the_same_grid() {
        let pieces = split(-3 * HOUR, HOUR, HOUR, 2 * HOUR).expect("splits");
        assert_eq!(
            pieces,
            [
                Piece {
                    start: -3 * HOUR,
                    end: -3 * HOUR,
                    index: -2
                },
                Piece {
                    start: -2 * HOUR,
                    end: -HOUR,
                    index: -1
                },
                Piece {
                    start: 0,
                    end: HOUR,
                    index: 0
                },
            ]
        );
    }

    #[test]
    fn range_dependent_queries_are_found() {
        assert!(
            analyze("rate(x[5m] @ start())")
                .expect("parses")
                .range_dependent
        );
        assert!(analyze("sum(x @ end())").expect("parses").range_dependent);
        assert!(
            analyze("max_over_time(x[1h:5m] @ end())")
                .expect("parses")
                .range_dependent
        );
        assert!(!analyze("x @ 100").expect("parses").range_dependent);
        assert!(
            !analyze("rate(x[5m] offset 1h)")
                .expect("parses")
                .range_dependent
        );
        assert!(analyze("sum(").is_none());
    }

    #[test]
    fn normalization_ignores_spacing() {
        let a = analyze("sum by (job) (rate(x[5m]))").expect("parses");
        let b = analyze("sum  by(job)(rate( x[5m] ))").expect("parses");
        assert_eq!(a.normalized, b.normalized);
    }
}
