//! Label matchers with Prometheus semantics: `=`, `!=`, `=~`, `!~`.
//!
//! Regular expressions are fully anchored, as in Prometheus. Two fast paths
//! avoid running the regex engine for the shapes Grafana generates most:
//! alternations of literals (`a|b|c`, from multi-value template variables)
//! and literal prefixes (`foo.*`).

use regex::Regex;

use strata_proto::prometheus::{LabelMatcher, label_matcher};

/// The comparison a matcher applies to a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    /// The operator as PromQL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

/// How a regex matcher decides, computed once at construction.
#[derive(Debug, Clone)]
enum RegexPlan {
    /// `a|b|c`: the value must equal one of the literals (kept sorted).
    Literals(Vec<String>),
    /// `foo.*`: the value must start with the prefix.
    Prefix(String),
    /// Anything else: the anchored regex decides.
    General(Regex),
}

/// One label matcher, e.g. `job=~"api|web"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    plan: Option<RegexPlan>,
}

/// A matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid regular expression {pattern:?}: {message}")]
    InvalidRegex { pattern: String, message: String },
    #[error("unknown matcher type {0}")]
    UnknownType(i32),
}

impl Matcher {
    /// Builds a matcher; regexes are compiled fully anchored.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let plan = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(plan_regex(value)?),
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            plan,
        })
    }

    /// Converts a wire matcher (remote read, internal gRPC).
    pub fn from_proto(m: &LabelMatcher) -> Result<Self, MatcherError> {
        let op = match label_matcher::Type::try_from(m.r#type) {
            Ok(label_matcher::Type::Eq) => MatchOp::Equal,
            Ok(label_matcher::Type::Neq) => MatchOp::NotEqual,
            Ok(label_matcher::Type::Re) => MatchOp::RegexMatch,
            Ok(label_matcher::Type::Nre) => MatchOp::RegexNoMatch,
            Err(_) => return Err(MatcherError::UnknownType(m.r#type)),
        };
        Matcher::new(op, &m.name, &m.value)
    }

    /// The wire form of this matcher.
    pub fn to_proto(&self) -> LabelMatcher {
        let kind = match self.op {
            MatchOp::Equal => label_matcher::Type::Eq,
            MatchOp::NotEqual => label_matcher::Type::Neq,
            MatchOp::RegexMatch => label_matcher::Type::Re,
            MatchOp::RegexNoMatch => label_matcher::Type::Nre,
        };
        LabelMatcher {
            r#type: kind as i32,
            name: self.name.clone(),
            value: self.value.clone(),
        }
    }

    /// Whether a label value (`""` for an absent label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex_matches(value),
            MatchOp::RegexNoMatch => !self.regex_matches(value),
        }
    }

    /// Whether series lacking the label match (Prometheus treats absence as `""`).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=` and for regexes that are alternations of literals: the exact
    /// values that match, sorted. Lets an index look values up instead of
    /// scanning them.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match (&self.op, &self.plan) {
            (MatchOp::Equal, _) => Some(vec![self.value.as_str()]),
            (MatchOp::RegexMatch, Some(RegexPlan::Literals(values))) => {
                Some(values.iter().map(String::as_str).collect())
            }
            _ => None,
        }
    }

    /// For `=~"prefix.*"`: the literal prefix every matching value starts with.
    pub fn prefix(&self) -> Option<&str> {
        match (&self.op, &self.plan) {
            (MatchOp::RegexMatch, Some(RegexPlan::Prefix(prefix))) => Some(prefix),
            _ => None,
        }
    }

    fn regex_matches(&self, value: &str) -> bool {
        match &self.plan {
            Some(RegexPlan::Literals(values)) => {
                values.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
            }
            Some(RegexPlan::Prefix(prefix)) => value.starts_with(prefix.as_str()),
            Some(RegexPlan::General(regex)) => regex.is_match(value),
            None => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Regex metacharacters; a pattern without them (apart from `|`) is literal.
fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|'
    )
}

fn plan_regex(pattern: &str) -> Result<RegexPlan, MatcherError> {
    if !pattern.is_empty() && pattern.split('|').all(|part| !part.chars().any(is_meta)) {
        let mut values: Vec<String> = pattern.split('|').map(str::to_owned).collect();
        values.sort();
        values.dedup();
        return Ok(RegexPlan::Literals(values));
    }
    if let Some(prefix) = pattern.strip_suffix(".*")
        && !prefix.is_empty()
        && !prefix.chars().any(is_meta)
    {
        // `.` in Prometheus 3 matches newlines too, so `foo.*` is a pure prefix test.
        return Ok(RegexPlan::Prefix(prefix.to_owned()));
    }
    // Prometheus 3 anchors the whole pattern and lets `.` match `\n`.
    // Known gap: Go's `\d`, `\w`, `\s` are ASCII-only, Rust's are Unicode.
    let anchored = format!("^(?s:{pattern})$");
    let regex = Regex::new(&anchored).map_err(|e| MatcherError::InvalidRegex {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })?;
    Ok(RegexPlan::General(regex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, value: &str) -> Matcher {
        Matcher::new(op, "job", value).expect("valid matcher")
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let re = m(MatchOp::RegexMatch, "a.c");
        assert!(re.matches("abc"));
        assert!(!re.matches("xabc"));
        assert!(!re.matches("abcx"));
        assert!(m(MatchOp::RegexMatch, "a|b").matches("a"));
        assert!(!m(MatchOp::RegexMatch, "a|b").matches("ab"));
    }

    #[test]
    fn literal_alternations_take_the_fast_path() {
        let re = m(MatchOp::RegexMatch, "web|api|web");
        assert_eq!(re.set_matches(), Some(vec!["api", "web"]));
        assert!(re.matches("api"));
        assert!(!re.matches("ap"));
        assert!(!re.matches_empty());
    }

    #[test]
    fn prefix_fast_path_agrees_with_regex() {
        let fast = m(MatchOp::RegexMatch, "node_.*");
        assert_eq!(fast.prefix(), Some("node_"));
        let slow = Regex::new("^(?s:node_.*)$").expect("regex");
        for v in ["node_cpu", "node_", "nod", "xnode_a", "node_\nx"] {
            assert_eq!(fast.matches(v), slow.is_match(v), "{v}");
        }
    }

    #[test]
    fn empty_value_semantics() {
        assert!(m(MatchOp::Equal, "").matches_empty());
        assert!(m(MatchOp::NotEqual, "x").matches_empty());
        assert!(m(MatchOp::RegexMatch, ".*").matches_empty());
        assert!(!m(MatchOp::RegexMatch, ".+").matches_empty());
        assert!(m(MatchOp::RegexNoMatch, ".+").matches_empty());
        assert!(m(MatchOp::RegexMatch, "").matches_empty());
    }

    #[test]
    fn dot_matches_newline() {
        assert!(m(MatchOp::RegexMatch, "a.b").matches("a\nb"));
    }

    #[test]
    fn invalid_regex_is_an_error() {
        assert!(Matcher::new(MatchOp::RegexMatch, "job", "(").is_err());
    }

    #[test]
    fn proto_round_trip() {
        let original = m(MatchOp::RegexNoMatch, "x|y");
        let back = Matcher::from_proto(&original.to_proto()).expect("valid");
        assert_eq!(back.op, MatchOp::RegexNoMatch);
        assert_eq!(back.value, "x|y");
    }
}
