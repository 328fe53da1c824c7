//! Runs the project's own PromQL test scripts (`tests/promql/*.test`) and
//! Prometheus' (`../shared/promqltest/*.test`, when present) against the
//! engine, with a checked-in skip list
//! (`tests/promqltest-skip.txt`, one `file:line  reason` per skipped eval).
//!
//! The test fails on any eval that neither passes nor is skipped, and on
//! any skipped eval that passes (so the list stays honest). Set
//! `PROMQLTEST_PRINT_FAILURES=1` to print every failing eval with its error.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use strata_common::labels;
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::Label;
use strata_querier::{Engine, EngineOptions, MemoryQueryable, QueryOutput, Value};

const EPSILON: f64 = 1e-6;

#[derive(Debug, Clone, Copy)]
enum Point {
    Value(f64),
    Omitted,
    /// A native histogram (not supported yet).
    Histogram,
}

#[derive(Debug)]
struct Expected {
    labels: Vec<Label>,
    points: Vec<Point>,
    /// 1-based position in the expectation block (for ordered results).
    pos: usize,
}

#[derive(Debug, Default)]
struct Eval {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    fail: bool,
    fail_message: Option<String>,
    fail_regex: Option<String>,
    warn: bool,
    info: bool,
    ordered: bool,
    warn_msgs: Vec<(bool, String)>,
    info_msgs: Vec<(bool, String)>,
    no_warn: bool,
    no_info: bool,
    scalar: Option<f64>,
    string: Option<String>,
    series: Vec<Expected>,
    uses_histograms: bool,
}

/// One loaded series: labels, float samples, and whether it had native histogram points.
type LoadedSeries = (Vec<Label>, Vec<(i64, f64)>, bool);

#[derive(Debug)]
enum Command {
    Load(Vec<LoadedSeries>),
    Clear,
    Eval(Box<Eval>),
}

fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn parse_time(s: &str) -> i64 {
    if let Some(d) = parse_duration(s) {
        return d;
    }
    let secs: f64 = s.parse().unwrap_or_else(|_| panic!("bad time {s:?}"));
    (secs * 1000.0).round() as i64
}

fn parse_number(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    s.parse::<f64>().ok()
}

/// Reads a Go-style quoted string starting at `s[0] == '"'`; returns the value and bytes consumed.
fn read_quoted(s: &str) -> (String, usize) {
    let bytes = s.as_bytes();
    let quote = bytes[0];
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if b == quote {
            return (String::from_utf8_lossy(&out).into_owned(), i + 1);
        }
        if b == b'\\' && i + 1 < bytes.len() {
            i += 1;
            match bytes[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'"' => out.push(b'"'),
                b'\'' => out.push(b'\''),
                b'x' => {
                    let hex = &s[i + 1..i + 3];
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                b'u' => {
                    let hex = &s[i + 1..i + 5];
                    let c = char::from_u32(u32::from_str_radix(hex, 16).unwrap_or(0xfffd))
                        .unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 4;
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), bytes.len())
}

/// Parses `name{a="b", ...}` at the start of `s`; returns sorted labels and the rest.
fn parse_metric(s: &str) -> (Vec<Label>, &str) {
    let mut ls: Vec<Label> = Vec::new();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    if name_end > 0 {
        ls.push(labels::label("__name__", &s[..name_end]));
    }
    let mut rest = &s[name_end..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if rest.is_empty() {
                break;
            }
            let (name, used) = if rest.starts_with('"') {
                read_quoted(rest)
            } else {
                let end = rest
                    .find(|c: char| c == '=' || c == ',' || c == '}' || c.is_whitespace())
                    .unwrap_or(rest.len());
                (rest[..end].to_owned(), end)
            };
            rest = rest[used..].trim_start();
            if let Some(r) = rest.strip_prefix('=') {
                let r = r.trim_start();
                let (value, used) = read_quoted(r);
                rest = &r[used..];
                ls.retain(|l| l.name != name);
                ls.push(labels::label(&name, &value));
            } else {
                // A bare quoted metric name: `{"foo.bar", a="b"}`.
                ls.retain(|l| l.name != "__name__");
                ls.push(labels::label("__name__", &name));
            }
        }
    }
    ls.sort_by(|a, b| a.name.cmp(&b.name));
    (ls, rest)
}

/// Expands the series notation (`1 2 _ stale 0+10x5 _x3 1x2 {{...}}`).
fn parse_values(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
            rest = rest[end..].trim_start();
            // A histogram with an optional expansion suffix (`+{{...}}xN`): count it once.
            if rest.starts_with('+') || rest.starts_with('-') {
                let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
                rest = &rest[end..];
                let digits: String = rest
                    .trim_start_matches('x')
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let times: usize = digits.parse().unwrap_or(0);
                rest = rest[1 + digits.len()..].trim_start();
                out.extend(std::iter::repeat_n(Point::Histogram, times + 1));
            } else if let Some(r) = rest.strip_prefix('x') {
                let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
                let times: usize = digits.parse().unwrap_or(0);
                rest = r[digits.len()..].trim_start();
                out.extend(std::iter::repeat_n(Point::Histogram, times + 1));
            } else {
                out.push(Point::Histogram);
            }
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        out.extend(expand_token(token)?);
    }
    Ok(out)
}

fn expand_token(token: &str) -> Result<Vec<Point>, String> {
    if token == "_" {
        return Ok(vec![Point::Omitted]);
    }
    if token == "stale" {
        return Ok(vec![Point::Value(f64::from_bits(STALE_NAN_BITS))]);
    }
    if let Some(n) = token.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| format!("bad token {token}"))?;
        return Ok(vec![Point::Omitted; n]);
    }
    if let Some(v) = parse_number(token) {
        return Ok(vec![Point::Value(v)]);
    }
    let x = token
        .rfind('x')
        .ok_or_else(|| format!("bad token {token}"))?;
    let times: usize = token[x + 1..]
        .parse()
        .map_err(|_| format!("bad token {token}"))?;
    let head = &token[..x];
    if let Some(v) = parse_number(head) {
        return Ok(vec![Point::Value(v); times + 1]);
    }
    // `start+incr` or `start-incr`: the operator is the first sign not at the
    // start and not part of an exponent.
    let bytes = head.as_bytes();
    let split = (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'))
        .ok_or_else(|| format!("bad token {token}"))?;
    let start = parse_number(&head[..split]).ok_or_else(|| format!("bad token {token}"))?;
    let incr = parse_number(&head[split..]).ok_or_else(|| format!("bad token {token}"))?;
    let mut v = start;
    let mut out = vec![Point::Value(v)];
    for _ in 0..times {
        v += incr;
        out.push(Point::Value(v));
    }
    Ok(out)
}

fn parse_script(text: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_owned()
            }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let lineno = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first == "clear" {
            cmds.push(Command::Clear);
            continue;
        }
        if first == "load" || first == "load_with_nhcb" {
            let interval =
                parse_duration(words.next().unwrap_or_default()).ok_or("bad load interval")?;
            let mut series = Vec::new();
            while i < lines.len() && !lines[i].is_empty() {
                let (ls, rest) = parse_metric(&lines[i]);
                let points = parse_values(rest)?;
                let samples = points
                    .iter()
                    .enumerate()
                    .filter_map(|(k, p)| match p {
                        Point::Value(v) => Some((k as i64 * interval, *v)),
                        _ => None,
                    })
                    .collect();
                let histograms = points.iter().any(|p| matches!(p, Point::Histogram));
                series.push((ls, samples, histograms || first == "load_with_nhcb"));
                i += 1;
            }
            cmds.push(Command::Load(series));
            continue;
        }
        if !first.starts_with("eval") {
            return Err(format!("line {lineno}: unknown command {line:?}"));
        }
        let mut ev = Eval {
            line: lineno,
            ..Eval::default()
        };
        match first {
            "eval" => {}
            "eval_fail" => ev.fail = true,
            "eval_warn" => ev.warn = true,
            "eval_info" => ev.info = true,
            "eval_ordered" => ev.ordered = true,
            other => return Err(format!("line {lineno}: unknown eval {other}")),
        }
        let kind = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        if kind == "instant" {
            // at <time> <expr>
            ev.at = parse_time(rest[1]);
            ev.expr = rest[2..].join(" ");
            // Keep the expression's own spacing.
            let idx = line.find(rest[1]).unwrap_or(0) + rest[1].len();
            ev.expr = line[idx..].trim().to_owned();
        } else {
            // from <t> to <t> step <d> <expr>
            let start = parse_time(rest[1]);
            let end = parse_time(rest[3]);
            let step = parse_time(rest[5]);
            ev.range = Some((start, end, step));
            let marker = format!("step {}", rest[5]);
            let idx = line.find(&marker).unwrap_or(0) + marker.len();
            ev.expr = line[idx..].trim().to_owned();
        }
        let mut pos = 0;
        while i < lines.len() && !lines[i].is_empty() {
            let def = lines[i].clone();
            i += 1;
            if let Some(msg) = def.strip_prefix("expected_fail_message ") {
                ev.fail_message = Some(msg.trim().to_owned());
                continue;
            }
            if let Some(re) = def.strip_prefix("expected_fail_regexp ") {
                ev.fail_regex = Some(re.trim().to_owned());
                continue;
            }
            if let Some(e) = def.strip_prefix("expect ") {
                let (head, msg) = match e.split_once(':') {
                    Some((h, m)) => (h.trim(), Some(m.trim().to_owned())),
                    None => (e.trim(), None),
                };
                let mut parts = head.split_whitespace();
                let what = parts.next().unwrap_or_default();
                let regex = parts.next() == Some("regex");
                match what {
                    "fail" => {
                        ev.fail = true;
                        let msg = msg.map(|m| m.trim_matches('"').to_owned());
                        if regex {
                            ev.fail_regex = msg
                        } else {
                            ev.fail_message = msg
                        }
                    }
                    "warn" => {
                        ev.warn = true;
                        if let Some(m) = msg {
                            ev.warn_msgs.push((regex, m));
                        }
                    }
                    "info" => {
                        ev.info = true;
                        if let Some(m) = msg {
                            ev.info_msgs.push((regex, m));
                        }
                    }
                    "no_warn" => ev.no_warn = true,
                    "no_info" => ev.no_info = true,
                    "ordered" => ev.ordered = true,
                    other => return Err(format!("line {}: unknown expect {other}", i)),
                }
                continue;
            }
            if let Some(v) = parse_number(&def) {
                ev.scalar = Some(v);
                continue;
            }
            if def.starts_with('"') {
                ev.string = Some(read_quoted(&def).0);
                continue;
            }
            pos += 1;
            let (ls, rest) = parse_metric(&def);
            let points = parse_values(rest)?;
            if points.iter().any(|p| matches!(p, Point::Histogram)) {
                ev.uses_histograms = true;
            }
            ev.series.push(Expected {
                labels: ls,
                points,
                pos,
            });
        }
        cmds.push(Command::Eval(Box::new(ev)));
    }
    Ok(cmds)
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn key(ls: &[Label]) -> String {
    labels::format(ls)
}

fn check_annotations(ev: &Eval, out: &QueryOutput) -> Result<(), String> {
    if ev.warn && out.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.info && out.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    let check =
        |expected: &[(bool, String)], actual: &[String], kind: &str| -> Result<(), String> {
            if expected.is_empty() {
                return Ok(());
            }
            let matches = |(is_re, m): &(bool, String), a: &str| {
                if *is_re {
                    regex::Regex::new(m).map(|r| r.is_match(a)).unwrap_or(false)
                } else {
                    m == a
                }
            };
            for e in expected {
                if !actual.iter().any(|a| matches(e, a)) {
                    return Err(format!(
                        "expected {kind} annotation {:?}, got {actual:?}",
                        e.1
                    ));
                }
            }
            for a in actual {
                if !expected.iter().any(|e| matches(e, a)) {
                    return Err(format!("unexpected {kind} annotation {a:?}"));
                }
            }
            Ok(())
        };
    check(&ev.warn_msgs, &out.warnings, "warn")?;
    check(&ev.info_msgs, &out.infos, "info")?;
    if ev.no_warn && !out.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", out.warnings));
    }
    if ev.no_info && !out.infos.is_empty() {
        return Err(format!("unexpected infos {:?}", out.infos));
    }
    Ok(())
}

fn compare(ev: &Eval, value: &Value, ordered: bool) -> Result<(), String> {
    let expected: HashMap<String, &Expected> =
        ev.series.iter().map(|e| (key(&e.labels), e)).collect();
    match value {
        Value::Scalar { v, .. } => {
            let Some(exp) = ev.scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {v}"
                ));
            };
            if !almost_equal(exp, *v) {
                return Err(format!("expected scalar {exp} but got {v}"));
            }
        }
        Value::String { v, .. } => {
            if ev.string.as_deref() != Some(v.as_str()) {
                return Err(format!("expected string {:?} but got {v:?}", ev.string));
            }
        }
        Value::Vector(samples) => {
            if ev.scalar.is_some() {
                return Err(format!(
                    "expected scalar result, but got vector of {}",
                    samples.len()
                ));
            }
            let mut seen = 0;
            for (pos, s) in samples.iter().enumerate() {
                let k = key(&s.labels);
                let Some(exp) = expected.get(&k) else {
                    return Err(format!(
                        "unexpected metric {k} in result, has value {}",
                        s.v
                    ));
                };
                if ordered && exp.pos != pos + 1 {
                    return Err(format!(
                        "expected metric {k} at position {} but was at {}",
                        exp.pos,
                        pos + 1
                    ));
                }
                match exp.points.first() {
                    Some(Point::Value(e)) if almost_equal(*e, s.v) => {}
                    other => return Err(format!("expected {other:?} for {k} but got {}", s.v)),
                }
                seen += 1;
            }
            if seen != expected.len() {
                let missing: Vec<&String> = expected
                    .keys()
                    .filter(|k| !samples.iter().any(|s| &key(&s.labels) == *k))
                    .collect();
                return Err(format!("expected metrics {missing:?} not found"));
            }
        }
        Value::Matrix(series) => {
            if ev.scalar.is_some() {
                return Err("expected scalar result, but got matrix".into());
            }
            for w in series.windows(2) {
                if labels::compare(&w[0].labels, &w[1].labels).is_ge() {
                    return Err("matrix is not sorted by labels".into());
                }
            }
            let (start, end, step) = ev.range.unwrap_or((ev.at, ev.at, 1));
            for s in series {
                let k = key(&s.labels);
                let Some(exp) = expected.get(&k) else {
                    return Err(format!(
                        "unexpected metric {k} in result, has {:?}",
                        s.points
                    ));
                };
                let mut want = Vec::new();
                for (i, p) in exp.points.iter().enumerate() {
                    let t = start + i as i64 * step;
                    if t > end {
                        return Err(format!(
                            "expected {} points for {k}, more than the range has",
                            exp.points.len()
                        ));
                    }
                    match p {
                        Point::Value(v) => want.push((t, *v)),
                        Point::Omitted => {}
                        Point::Histogram => return Err("expected histogram points".into()),
                    }
                }
                if want.len() != s.points.len() {
                    return Err(format!(
                        "expected {} points for {k}, got {:?}",
                        want.len(),
                        s.points
                    ));
                }
                for (w, a) in want.iter().zip(&s.points) {
                    if w.0 != a.0 || !almost_equal(w.1, a.1) {
                        return Err(format!("expected {want:?} for {k}, got {:?}", s.points));
                    }
                }
            }
            if series.len() != expected.len() {
                let missing: Vec<&String> = expected
                    .keys()
                    .filter(|k| !series.iter().any(|s| &key(&s.labels) == *k))
                    .collect();
                return Err(format!("expected metrics {missing:?} not found"));
            }
        }
    }
    Ok(())
}

async fn run_eval(engine: &Engine, store: &MemoryQueryable, ev: &Eval) -> Result<(), String> {
    if ev.uses_histograms {
        return Err("expects native histogram values".into());
    }
    let result = match ev.range {
        Some((start, end, step)) => engine.range(store, &ev.expr, start, end, step).await,
        None => engine.instant(store, &ev.expr, ev.at).await,
    };
    if ev.fail {
        let err = match result {
            Ok(out) => return Err(format!("expected an error, got {:?}", out.value)),
            Err(e) => e.to_string(),
        };
        if let Some(m) = &ev.fail_message
            && &err != m
        {
            return Err(format!("expected error {m:?}, got {err:?}"));
        }
        if let Some(r) = &ev.fail_regex
            && !regex::Regex::new(r).is_ok_and(|re| re.is_match(&err))
        {
            return Err(format!("expected error matching {r:?}, got {err:?}"));
        }
        return Ok(());
    }
    let out = result.map_err(|e| format!("error: {e}"))?;
    check_annotations(ev, &out)?;
    compare(ev, &out.value, ev.ordered)?;
    if ev.range.is_none() && !ev.ordered {
        // Like Prometheus' runner: the same query in range mode must agree at the instant.
        let ranged = engine
            .range(store, &ev.expr, ev.at - 60_000, ev.at + 60_000, 60_000)
            .await
            .map_err(|e| format!("range mode: error: {e}"))?;
        let Value::Matrix(series) = ranged.value else {
            return Err("range mode: not a matrix".into());
        };
        let samples: Vec<strata_querier::Sample> = series
            .into_iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.0 == ev.at)
                    .map(|p| strata_querier::Sample {
                        labels: s.labels.clone(),
                        t: p.0,
                        v: p.1,
                    })
            })
            .collect();
        let as_value = if matches!(out.value, Value::Scalar { .. }) {
            Value::Scalar {
                t: ev.at,
                v: samples.first().map_or(f64::NAN, |s| s.v),
            }
        } else {
            Value::Vector(samples)
        };
        compare(ev, &as_value, false).map_err(|e| format!("range mode: {e}"))?;
    }
    Ok(())
}

/// A first guess at why an eval fails, for writing the skip list.
fn suggest_reason(file: &str, ev: &Eval, error: &str, histogram_metrics: &[String]) -> String {
    let by_file = match file {
        "native_histograms.test" => Some("native histograms are not supported yet"),
        "limit.test" => {
            Some("limitk/limit_ratio need --enable-feature=promql-experimental-functions")
        }
        "duration_expression.test" => {
            Some("duration expressions need --enable-feature=promql-duration-expr")
        }
        "type_and_unit.test" => {
            Some("__type__/__unit__ labels need --enable-feature=type-and-unit-labels")
        }
        "name_label_dropping.test" => {
            Some("delayed __name__ removal needs --enable-feature=promql-delayed-name-removal")
        }
        _ => None,
    };
    if let Some(reason) = by_file {
        return reason.to_owned();
    }
    if error.contains("is not enabled") {
        return "experimental function: needs --enable-feature=promql-experimental-functions"
            .to_owned();
    }
    if ev.uses_histograms
        || histogram_metrics
            .iter()
            .any(|m| !m.is_empty() && ev.expr.contains(m.as_str()))
    {
        return "native histograms are not supported yet".to_owned();
    }
    if !histogram_metrics.is_empty() {
        return format!("native histograms in the loaded data (TODO check): {error}");
    }
    format!("TODO: {error}")
}

/// Writes a line straight to stderr, past the test harness' output capture,
/// so the per-file counts show in every run.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The `.test` files of a directory, sorted.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "test"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promqltest")
}

fn load_skip_list() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest-skip.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((k, reason)) => (k.to_owned(), reason.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

#[tokio::test]
async fn prometheus_promql_test_scripts() {
    let dir = scripts_dir();
    let mut files = test_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql"));
    assert!(
        !files.is_empty(),
        "the project's own .test files are missing"
    );
    if dir.is_dir() {
        files.extend(test_files(&dir));
    } else {
        report("skipping: ../shared/promqltest not found");
    }
    let skip = load_skip_list();
    let print_failures = std::env::var_os("PROMQLTEST_PRINT_FAILURES").is_some();
    let engine = Engine::new(EngineOptions::default());
    let mut unexpected_failures = Vec::new();
    let mut unexpected_passes = Vec::new();
    let mut suggested = Vec::new();
    let (mut total_pass, mut total_skip) = (0, 0);
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(file).expect("read script");
        let cmds = parse_script(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut store = MemoryQueryable::new();
        let mut histogram_metrics: Vec<String> = Vec::new();
        let (mut passed, mut skipped) = (0, 0);
        for cmd in cmds {
            match cmd {
                Command::Clear => {
                    store.clear();
                    histogram_metrics.clear();
                }
                Command::Load(series) => {
                    for (ls, samples, histograms) in series {
                        if histograms {
                            histogram_metrics.push(labels::get(&ls, "__name__").to_owned());
                        }
                        store.add(ls, &samples);
                    }
                }
                Command::Eval(ev) => {
                    let id = format!("{name}:{}", ev.line);
                    let result = run_eval(&engine, &store, &ev).await;
                    let skipped_here = skip.contains_key(&id);
                    match (result, skipped_here) {
                        (Ok(()), false) => passed += 1,
                        (Ok(()), true) => unexpected_passes.push(id),
                        (Err(_), true) => skipped += 1,
                        (Err(e), false) => {
                            if print_failures {
                                eprintln!("FAIL {id}  {}\n    {e}", ev.expr);
                            }
                            unexpected_failures.push(format!("{id}  {}  =>  {e}", ev.expr));
                            suggested.push(format!(
                                "{id}  {}",
                                suggest_reason(&name, &ev, &e, &histogram_metrics)
                            ));
                        }
                    }
                }
            }
        }
        report(&format!(
            "promqltest {name}: {passed} passed, {skipped} skipped"
        ));
        total_pass += passed;
        total_skip += skipped;
    }
    if let Some(path) = std::env::var_os("PROMQLTEST_WRITE_SUGGESTIONS") {
        std::fs::write(path, suggested.join("\n") + "\n").expect("write suggestions");
    }
    report(&format!(
        "promqltest total: {total_pass} passed, {total_skip} skipped, {} failed, {} skip-listed but passing",
        unexpected_failures.len(),
        unexpected_passes.len()
    ));
    assert!(
        unexpected_failures.is_empty() && unexpected_passes.is_empty(),
        "failing evals not in the skip list:\n{}\nskip-listed evals that now pass (remove them from tests/promqltest-skip.txt):\n{}",
        unexpected_failures.join("\n"),
        unexpected_passes.join("\n")
    );
}
