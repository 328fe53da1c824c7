//! Query shards: the pseudo matcher `__query_shard__="<i>_of_<n>"` on a
//! selector keeps only the series whose label-set hash falls in shard `i`
//! (1-based) of `n`. The query frontend asks one partial aggregation per
//! shard and combines them; the matcher never reaches storage and never
//! appears in results (it is not a label of any series).

use strata_common::labels::QUERY_SHARD_LABEL;
use strata_common::{MatchOp, Matcher};
use strata_proto::prometheus::Label;

use crate::QueryError;

/// One shard of a selector's series: shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryShard {
    index: u64,
    count: u64,
}

impl QueryShard {
    /// Parses `<i>_of_<n>` with `1 <= i <= n`.
    fn parse(value: &str) -> Option<QueryShard> {
        let (i, n) = value.split_once("_of_")?;
        let (i, n) = (i.parse::<u64>().ok()?, n.parse::<u64>().ok()?);
        (i >= 1 && i <= n).then(|| QueryShard {
            index: i - 1,
            count: n,
        })
    }

    /// Whether the series with these labels (sorted by name) is in this shard.
    pub fn contains(&self, labels: &[Label]) -> bool {
        series_hash(labels) % self.count == self.index
    }
}

/// Removes the shard matcher from a selector's matchers. Errors when it is
/// malformed, not an equality, given twice, or the only thing the selector
/// would select by.
pub(crate) fn take_shard(matchers: &mut Vec<Matcher>) -> Result<Option<QueryShard>, QueryError> {
    let mut shard = None;
    let mut error = None;
    matchers.retain(|m| {
        if m.name != QUERY_SHARD_LABEL {
            return true;
        }
        let parsed = (m.op == MatchOp::Equal)
            .then(|| QueryShard::parse(&m.value))
            .flatten();
        match (parsed, shard) {
            (Some(s), None) => shard = Some(s),
            _ => {
                error = Some(format!(
                    "invalid query shard matcher {QUERY_SHARD_LABEL}{}{:?} (expected one {QUERY_SHARD_LABEL}=\"<i>_of_<n>\" with 1 <= i <= n)",
                    m.op.as_str(),
                    m.value
                ));
            }
        }
        false
    });
    if let Some(message) = error {
        return Err(QueryError::parse(message));
    }
    if shard.is_some() && matchers.iter().all(Matcher::matches_empty) {
        return Err(QueryError::parse(
            "vector selector must contain at least one non-empty matcher besides the query shard",
        ));
    }
    Ok(shard)
}

/// A stable hash of a label set (FNV-1a, 64 bits, over each name and value
/// followed by a 0xff separator, in the set's order: sorted by name). Stable
/// across processes and versions: shards of one query may run anywhere.
pub(crate) fn series_hash(labels: &[Label]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for label in labels {
        eat(label.name.as_bytes());
        eat(label.value.as_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    fn matcher(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).expect("valid matcher")
    }

    #[test]
    fn shard_matchers_parse_and_are_removed() {
        let mut ms = vec![
            matcher(MatchOp::Equal, "__name__", "x"),
            matcher(MatchOp::Equal, QUERY_SHARD_LABEL, "2_of_3"),
        ];
        let shard = take_shard(&mut ms).expect("valid");
        assert_eq!(shard, Some(QueryShard { index: 1, count: 3 }));
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].name, "__name__");

        let mut plain = vec![matcher(MatchOp::Equal, "__name__", "x")];
        assert_eq!(take_shard(&mut plain).expect("valid"), None);
    }

    #[test]
    fn malformed_shard_matchers_are_rejected() {
        for (op, value) in [
            (MatchOp::Equal, "0_of_3"),
            (MatchOp::Equal, "4_of_3"),
            (MatchOp::Equal, "1_of_0"),
            (MatchOp::Equal, "1of3"),
            (MatchOp::Equal, "a_of_b"),
            (MatchOp::RegexMatch, "1_of_2"),
            (MatchOp::NotEqual, "1_of_2"),
        ] {
            let mut ms = vec![
                matcher(MatchOp::Equal, "__name__", "x"),
                matcher(op, QUERY_SHARD_LABEL, value),
            ];
            assert!(take_shard(&mut ms).is_err(), "{value}");
        }
        let mut twice = vec![
            matcher(MatchOp::Equal, "__name__", "x"),
            matcher(MatchOp::Equal, QUERY_SHARD_LABEL, "1_of_2"),
            matcher(MatchOp::Equal, QUERY_SHARD_LABEL, "2_of_2"),
        ];
        assert!(take_shard(&mut twice).is_err());
        let mut alone = vec![matcher(MatchOp::Equal, QUERY_SHARD_LABEL, "1_of_2")];
        assert!(take_shard(&mut alone).is_err());
    }

    #[test]
    fn every_series_is_in_exactly_one_shard() {
        for n in 1..=5u64 {
            for k in 0..200 {
                let labels = vec![
                    label("__name__", "x"),
                    label("instance", &format!("host-{k}")),
                ];
                let owners = (1..=n)
                    .filter(|i| {
                        QueryShard::parse(&format!("{i}_of_{n}"))
                            .expect("valid")
                            .contains(&labels)
                    })
                    .count();
                assert_eq!(owners, 1);
            }
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned: shards of one query may be evaluated by different versions.
        assert_eq!(series_hash(&[]), 0xcbf2_9ce4_8422_2325);
        let a = series_hash(&[label("a", "b")]);
        assert_eq!(a, series_hash(&[label("a", "b")]));
        assert_ne!(a, series_hash(&[label("ab", "")]));
    }
}
