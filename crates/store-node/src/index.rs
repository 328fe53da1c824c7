//! Label index: for every label name and value, the roaring bitmap of the
//! series ids carrying it.
//!
//! Series are identified by dense `u32` ids handed out by the caller.
//! Selection follows Prometheus: a series without a label behaves as if the
//! label had the value `""`.

use std::collections::BTreeMap;
use std::ops::Bound;

use roaring::RoaringBitmap;
use strata_common::matcher::{MatchOp, Matcher};
use strata_proto::prometheus::Label;

/// Postings lists of every label pair, plus the set of all series.
#[derive(Debug, Default)]
pub struct LabelIndex {
    /// name -> value -> series carrying `name=value`. Never holds an empty
    /// bitmap: entries are only created on insertion.
    postings: BTreeMap<String, BTreeMap<String, RoaringBitmap>>,
    all: RoaringBitmap,
}

impl LabelIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes series `id` under each of its labels.
    ///
    /// Labels with an empty value are not indexed: Prometheus treats them as
    /// absent. Label names are expected to be unique within a series, as
    /// Prometheus guarantees. Adding the same series twice is harmless.
    pub fn add(&mut self, id: u32, labels: &[Label]) {
        self.all.insert(id);
        for label in labels {
            if label.value.is_empty() {
                continue;
            }
            // Names and values are owned by the index once: no copy of
            // them is made for the (usual) entries that exist already.
            if !self.postings.contains_key(&label.name) {
                self.postings.insert(label.name.clone(), BTreeMap::new());
            }
            let Some(values) = self.postings.get_mut(&label.name) else {
                continue;
            };
            match values.get_mut(&label.value) {
                Some(series) => {
                    series.insert(id);
                }
                None => {
                    values.insert(label.value.clone(), RoaringBitmap::from_iter([id]));
                }
            }
        }
    }

    /// Removes series `id`, indexed under `labels`, from the index.
    pub fn remove(&mut self, id: u32, labels: &[Label]) {
        self.all.remove(id);
        for label in labels {
            let Some(values) = self.postings.get_mut(&label.name) else {
                continue;
            };
            if let Some(series) = values.get_mut(&label.value) {
                series.remove(id);
                if series.is_empty() {
                    values.remove(&label.value);
                }
            }
            if values.is_empty() {
                self.postings.remove(&label.name);
            }
        }
    }

    /// Every indexed series.
    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    /// Series matching every matcher (Prometheus semantics: a missing label
    /// equals ""). An empty matcher list matches all series.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        select_postings(self, matchers)
    }

    /// Sorted label names of the given series (all series when None).
    pub fn label_names(&self, within: Option<&RoaringBitmap>) -> Vec<String> {
        self.postings
            .iter()
            .filter(|(_, values)| values.values().any(|series| overlaps(series, within)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Sorted values of `name` among the given series (all when None).
    pub fn label_values(&self, name: &str, within: Option<&RoaringBitmap>) -> Vec<String> {
        let Some(values) = self.postings.get(name) else {
            return Vec::new();
        };
        values
            .iter()
            .filter(|(_, series)| overlaps(series, within))
            .map(|(value, _)| value.clone())
            .collect()
    }
}

impl Postings for LabelIndex {
    fn all(&self) -> RoaringBitmap {
        self.all.clone()
    }

    /// Series carrying `matcher.name` with a value the matcher accepts.
    fn matching(&self, matcher: &Matcher) -> RoaringBitmap {
        let mut matching = RoaringBitmap::new();
        let Some(values) = self.postings.get(&matcher.name) else {
            return matching;
        };
        if let Some(set) = matcher.set_matches() {
            for value in set {
                if let Some(series) = values.get(value) {
                    matching |= series;
                }
            }
        } else if let Some(prefix) = matcher.prefix() {
            // Values are sorted, so those with the prefix form one range.
            for (value, series) in
                values.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            {
                if !value.starts_with(prefix) {
                    break;
                }
                matching |= series;
            }
        } else {
            for (value, series) in values {
                if matcher.matches(value) {
                    matching |= series;
                }
            }
        }
        matching
    }

    /// Series carrying `matcher.name` with a value the matcher rejects. For
    /// a matcher accepting `""`, these are exactly the series it excludes:
    /// series without the label match.
    fn not_matching(&self, matcher: &Matcher) -> RoaringBitmap {
        let mut rejected = RoaringBitmap::new();
        let Some(values) = self.postings.get(&matcher.name) else {
            return rejected;
        };
        if matcher.op == MatchOp::NotEqual {
            // `!= v` rejects exactly one value: look it up.
            if let Some(series) = values.get(&matcher.value) {
                rejected |= series;
            }
        } else {
            for (value, series) in values {
                if !matcher.matches(value) {
                    rejected |= series;
                }
            }
        }
        rejected
    }
}

/// Postings of some series set (the head's index or a block's): the three
/// lookups the selection algorithm needs.
pub trait Postings {
    /// Every series.
    fn all(&self) -> RoaringBitmap;
    /// Series carrying `matcher.name` with a value the matcher accepts.
    fn matching(&self, matcher: &Matcher) -> RoaringBitmap;
    /// Series carrying `matcher.name` with a value the matcher rejects. For
    /// a matcher accepting `""`, these are exactly the series it excludes:
    /// series without the label match.
    fn not_matching(&self, matcher: &Matcher) -> RoaringBitmap;
}

/// Series matching every matcher, with Prometheus' semantics: a series
/// without a label behaves as if it had the value `""`, so `foo=""`,
/// `foo!="x"` and `foo=~".*"` match series without foo. An empty matcher
/// list matches all series.
pub fn select_postings(source: &impl Postings, matchers: &[Matcher]) -> RoaringBitmap {
    // Matchers that reject "" bound the result from above; evaluate them
    // first so the cheap intersections come before the subtractions, and
    // stop as soon as one of them matches nothing.
    let mut includes = Vec::new();
    let mut excluding = Vec::new();
    for matcher in matchers {
        if matcher.matches_empty() {
            excluding.push(matcher);
            continue;
        }
        let matching = source.matching(matcher);
        if matching.is_empty() {
            return matching;
        }
        includes.push(matching);
    }

    // Most selective first keeps the intermediate results small.
    includes.sort_by_key(RoaringBitmap::len);
    let mut includes = includes.into_iter();
    let mut result = match includes.next() {
        Some(first) => first,
        None => source.all(),
    };
    for bitmap in includes {
        result &= &bitmap;
        if result.is_empty() {
            return result;
        }
    }

    for matcher in excluding {
        if result.is_empty() {
            break;
        }
        result -= &source.not_matching(matcher);
    }
    result
}
/// Whether `series` has a member in `within` (any member when `None`).
fn overlaps(series: &RoaringBitmap, within: Option<&RoaringBitmap>) -> bool {
    match within {
        None => !series.is_empty(),
        Some(within) => !series.is_disjoint(within),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use proptest::prelude::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).expect("valid matcher")
    }

    fn ids(bitmap: &RoaringBitmap) -> Vec<u32> {
        bitmap.iter().collect()
    }

    /// 0: job=api,env=prod  1: job=web,env=dev  2: job=api  3: env=prod
    /// 4: job=apiserver,env=""  5: (no labels)
    fn sample_index() -> LabelIndex {
        let mut index = LabelIndex::new();
        index.add(0, &[label("job", "api"), label("env", "prod")]);
        index.add(1, &[label("job", "web"), label("env", "dev")]);
        index.add(2, &[label("job", "api")]);
        index.add(3, &[label("env", "prod")]);
        index.add(4, &[label("job", "apiserver"), label("env", "")]);
        index.add(5, &[]);
        index
    }

    #[test]
    fn empty_matcher_list_selects_all() {
        let index = sample_index();
        assert_eq!(ids(&index.select(&[])), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(index.all().len(), 6);
    }

    #[test]
    fn equal() {
        let index = sample_index();
        assert_eq!(
            ids(&index.select(&[m(MatchOp::Equal, "job", "api")])),
            vec![0, 2]
        );
        assert!(index.select(&[m(MatchOp::Equal, "job", "nope")]).is_empty());
        assert!(
            index
                .select(&[m(MatchOp::Equal, "missing", "x")])
                .is_empty()
        );
    }

    #[test]
    fn equal_empty_selects_series_without_the_label() {
        let index = sample_index();
        assert_eq!(
            ids(&index.select(&[m(MatchOp::Equal, "env", "")])),
            vec![2, 4, 5]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::Equal, "missing", "")])),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn not_equal_includes_series_without_the_label() {
        let index = sample_index();
        assert_eq!(
            ids(&index.select(&[m(MatchOp::NotEqual, "env", "prod")])),
            vec![1, 2, 4, 5]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::NotEqual, "env", "")])),
            vec![0, 1, 3]
        );
    }

    #[test]
    fn regex_match() {
        let index = sample_index();
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "job", "api|web")])),
            vec![0, 1, 2]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "job", "api.*")])),
            vec![0, 2, 4]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "job", "a.i")])),
            vec![0, 2]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "job", ".+")])),
            vec![0, 1, 2, 4]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "job", ".*")])),
            vec![0, 1, 2, 3, 4, 5]
        );
        // An alternation with an empty branch also matches series without the label.
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexMatch, "env", "dev|")])),
            vec![1, 2, 4, 5]
        );
    }

    #[test]
    fn regex_no_match() {
        let index = sample_index();
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexNoMatch, "job", "api.*")])),
            vec![1, 3, 5]
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexNoMatch, "job", ".+")])),
            vec![3, 5]
        );
        assert!(
            index
                .select(&[m(MatchOp::RegexNoMatch, "job", ".*")])
                .is_empty()
        );
        assert_eq!(
            ids(&index.select(&[m(MatchOp::RegexNoMatch, "job", "")])),
            vec![0, 1, 2, 4]
        );
    }

    #[test]
    fn matchers_intersect() {
        let index = sample_index();
        let selected = index.select(&[
            m(MatchOp::RegexMatch, "job", "api.*"),
            m(MatchOp::NotEqual, "env", "prod"),
        ]);
        assert_eq!(ids(&selected), vec![2, 4]);
        let none = index.select(&[
            m(MatchOp::Equal, "job", "web"),
            m(MatchOp::Equal, "env", "prod"),
        ]);
        assert!(none.is_empty());
    }

    #[test]
    fn names_and_values() {
        let index = sample_index();
        assert_eq!(index.label_names(None), vec!["env", "job"]);
        assert_eq!(
            index.label_values("job", None),
            vec!["api", "apiserver", "web"]
        );
        // The empty env of series 4 is not a value.
        assert_eq!(index.label_values("env", None), vec!["dev", "prod"]);
        assert!(index.label_values("missing", None).is_empty());

        let within: RoaringBitmap = [2u32, 4, 5].into_iter().collect();
        assert_eq!(index.label_names(Some(&within)), vec!["job"]);
        assert_eq!(
            index.label_values("job", Some(&within)),
            vec!["api", "apiserver"]
        );
        assert!(index.label_values("env", Some(&within)).is_empty());
        assert!(index.label_names(Some(&RoaringBitmap::new())).is_empty());
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];
    const VALUES: [&str; 6] = ["", "x", "y", "xy", "yx", "xyz"];
    const PATTERNS: [&str; 14] = [
        "", "x", "y", "xy", "x|y", "x|yx", "y|", "x.*", "xy.*", ".*", ".+", "[xy]+", "(x|y)y?", "z",
    ];

    /// Each series: for every name, maybe a value ("" meaning present but empty).
    fn series_strategy() -> impl Strategy<Value = Vec<Vec<Option<&'static str>>>> {
        let value = prop_oneof![
            2 => Just(None),
            5 => prop::sample::select(&VALUES[..]).prop_map(Some),
        ];
        prop::collection::vec(prop::collection::vec(value, NAMES.len()), 0..40)
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        let op = prop::sample::select(
            &[
                MatchOp::Equal,
                MatchOp::NotEqual,
                MatchOp::RegexMatch,
                MatchOp::RegexNoMatch,
            ][..],
        );
        let name = prop::sample::select(&["a", "b", "c", "missing"][..]);
        let value = prop::sample::select(&PATTERNS[..]);
        (op, name, value).prop_map(|(op, name, value)| m(op, name, value))
    }

    fn value_of(series: &[Option<&'static str>], name: &str) -> &'static str {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| series[i])
            .unwrap_or("")
    }

    fn build(series: &[Vec<Option<&'static str>>]) -> LabelIndex {
        let mut index = LabelIndex::new();
        for (id, values) in series.iter().enumerate() {
            let labels: Vec<Label> = NAMES
                .iter()
                .zip(values)
                .filter_map(|(name, value)| value.map(|v| label(name, v)))
                .collect();
            index.add(id as u32, &labels);
        }
        index
    }

    proptest! {
        #[test]
        fn select_matches_brute_force(
            series in series_strategy(),
            matchers in prop::collection::vec(matcher_strategy(), 0..4),
        ) {
            let index = build(&series);
            let expected: BTreeSet<u32> = series
                .iter()
                .enumerate()
                .filter(|(_, s)| matchers.iter().all(|m| m.matches(value_of(s, &m.name))))
                .map(|(id, _)| id as u32)
                .collect();
            let got: BTreeSet<u32> = index.select(&matchers).iter().collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn names_and_values_match_brute_force(
            series in series_strategy(),
            within_ids in prop::option::of(prop::collection::btree_set(0u32..40, 0..40)),
        ) {
            let index = build(&series);
            let within: Option<RoaringBitmap> =
                within_ids.as_ref().map(|w| w.iter().copied().collect());
            let in_scope = |id: usize| within_ids.as_ref().is_none_or(|w| w.contains(&(id as u32)));

            let mut names = BTreeSet::new();
            for (id, s) in series.iter().enumerate() {
                for name in NAMES {
                    if in_scope(id) && !value_of(s, name).is_empty() {
                        names.insert(name.to_owned());
                    }
                }
            }
            prop_assert_eq!(index.label_names(within.as_ref()), names.into_iter().collect::<Vec<_>>());

            for name in NAMES.iter().chain(["missing"].iter()) {
                let values: BTreeSet<String> = series
                    .iter()
                    .enumerate()
                    .filter(|(id, _)| in_scope(*id))
                    .map(|(_, s)| value_of(s, name))
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect();
                prop_assert_eq!(
                    index.label_values(name, within.as_ref()),
                    values.into_iter().collect::<Vec<_>>()
                );
            }
        }
    }
}
