//! Helpers over Prometheus label sets (`Vec<Label>`, sorted by name).

use strata_proto::prometheus::Label;

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// The pseudo label of a query shard selector, `__query_shard__="<i>_of_<n>"`
/// (1-based): the querier keeps only the series of shard `i` of `n` and
/// never passes the matcher to storage.
pub const QUERY_SHARD_LABEL: &str = "__query_shard__";

/// Compares two sorted label sets the way Prometheus orders series.
pub fn compare(a: &[Label], b: &[Label]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let ordering = x.name.cmp(&y.name).then_with(|| x.value.cmp(&y.value));
        if ordering.is_ne() {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

/// The value of `name`, or `""` when absent (Prometheus' convention).
pub fn get<'a>(labels: &'a [Label], name: &str) -> &'a str {
    labels
        .iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

/// Renders a label set as PromQL would: `name{a="b", c="d"}`.
pub fn format(labels: &[Label]) -> String {
    let name = get(labels, METRIC_NAME);
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        return name.to_owned();
    }
    format!("{name}{{{}}}", rest.join(", "))
}

/// Shorthand for building a label in code and tests.
pub fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_promql() {
        let ls = vec![label("__name__", "up"), label("job", "a\"b")];
        assert_eq!(format(&ls), r#"up{job="a\"b"}"#);
        assert_eq!(format(&[label("__name__", "up")]), "up");
        assert_eq!(format(&[label("job", "x")]), r#"{job="x"}"#);
    }

    #[test]
    fn orders_by_pairs_then_length() {
        let a = vec![label("a", "1")];
        let b = vec![label("a", "1"), label("b", "1")];
        let c = vec![label("a", "2")];
        assert!(compare(&a, &b).is_lt());
        assert!(compare(&b, &c).is_lt());
        assert!(compare(&a, &a).is_eq());
    }
}
