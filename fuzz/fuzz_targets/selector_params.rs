//! The HTTP API's parameter parsers that are public: durations
//! (`parse_duration_ms`, `parse_seconds_or_duration_ms`), times
//! (`strata_frontend::parse_time`: unix seconds or RFC 3339), and label
//! matchers (`Matcher::new` with its regex fast paths). The frontend's
//! selector parser is private; the `promql` target reaches the same
//! matchers through the PromQL parser.
//!
//! Input: byte 0 picks the matcher operator; the rest is split at `0xff`
//! into a label name, a pattern and up to four values to match.
//!
//! Oracles: no panic; a parsed duration is never negative and survives
//! formatting and parsing again; a regex matcher agrees with the plain
//! anchored regex (`^(?s:pattern)$`) that its fast paths stand in for, on
//! every value tried; the values a matcher lists as its exact matches do
//! match, and so does its literal prefix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use regex::Regex;
use strata_common::duration::{parse_duration_ms, parse_seconds_or_duration_ms};
use strata_common::{MatchOp, Matcher};

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let fields = strata_fuzz::fields(rest, 6);
    for text in &fields {
        durations(text);
        let _ = strata_frontend::parse_time(text);
    }
    let op = [
        MatchOp::Equal,
        MatchOp::NotEqual,
        MatchOp::RegexMatch,
        MatchOp::RegexNoMatch,
    ][usize::from(op % 4)];
    matcher(op, &fields[0], &fields[1], &fields[2..]);
});

fn durations(text: &str) {
    if let Some(ms) = parse_duration_ms(text) {
        assert!(ms >= 0, "duration {text:?} parsed as {ms} ms");
        let formatted = format_duration(ms);
        assert_eq!(
            parse_duration_ms(&formatted),
            Some(ms),
            "{text:?} -> {ms} ms -> {formatted:?}"
        );
    }
    let _ = parse_seconds_or_duration_ms(text);
}

/// Formats milliseconds with the largest units first, as Prometheus does.
fn format_duration(mut ms: i64) -> String {
    const UNITS: [(&str, i64); 7] = [
        ("y", 31_536_000_000),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn matcher(op: MatchOp, name: &str, pattern: &str, values: &[String]) {
    let Ok(m) = Matcher::new(op, name, pattern) else {
        return;
    };
    let mut tried: Vec<&str> = values.iter().map(String::as_str).collect();
    tried.extend(["", pattern, name]);
    if let Some(prefix) = m.prefix() {
        assert!(m.matches(prefix), "prefix {prefix:?} of {m} does not match");
        tried.push(prefix);
    }
    if let Some(set) = m.set_matches() {
        for value in &set {
            assert!(m.matches(value), "{value:?} listed by {m} does not match");
        }
        assert!(set.windows(2).all(|w| w[0] < w[1]), "set of {m} not sorted");
    }
    let reference = match op {
        MatchOp::Equal | MatchOp::NotEqual => None,
        MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
            match Regex::new(&format!("^(?s:{pattern})$")) {
                Ok(regex) => Some(regex),
                // A fast path may accept what the regex engine refuses for
                // size; there is nothing to compare against then.
                Err(_) => return,
            }
        }
    };
    for value in tried {
        let expected = match (&reference, op) {
            (None, MatchOp::Equal) => value == pattern,
            (None, _) => value != pattern,
            (Some(regex), MatchOp::RegexMatch) => regex.is_match(value),
            (Some(regex), _) => !regex.is_match(value),
        };
        assert_eq!(m.matches(value), expected, "{m} on {value:?}");
    }
}
