//! Go RE2 semantics on top of Rust's `regex`: PromQL regexes are Go's.
//!
//! Two differences matter in practice: Go's `\d`, `\w`, `\s` and `\b` are
//! ASCII-only where Rust's are Unicode-aware, and Go takes a `{` that does
//! not start a valid repetition (`a{b}`) literally where Rust rejects it.
//! [`translate`] rewrites a pattern so Rust matches what Go matches.

/// Rewrites a Go regex into an equivalent Rust regex.
pub(crate) fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                let next = chars[i + 1];
                i += 2;
                let replacement = match (next, in_class) {
                    ('d', false) => "[0-9]",
                    ('D', false) => "[^0-9]",
                    ('w', false) => "[0-9A-Za-z_]",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('s', false) => "[\\t\\n\\f\\r ]",
                    ('S', false) => "[^\\t\\n\\f\\r ]",
                    ('b', false) => "(?-u:\\b)",
                    ('B', false) => "(?-u:\\B)",
                    ('d', true) => "0-9",
                    ('w', true) => "0-9A-Za-z_",
                    ('s', true) => "\\t\\n\\f\\r ",
                    _ => {
                        out.push('\\');
                        out.push(next);
                        continue;
                    }
                };
                out.push_str(replacement);
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                i += 1;
                // A leading `^` and a leading `]` belong to the class.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '[' if in_class && chars.get(i + 1) == Some(&':') => {
                // A POSIX class like `[:alpha:]` inside a bracket expression.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
                    .map_or(chars.len(), |j| j + 2);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            ']' if in_class => in_class = false,
            '{' if !in_class && !is_repetition(&chars[i..]) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Go's error for a pattern Go refuses and Rust accepts: a repetition
/// operator applied to a repetition (`a**`, `a+*`, `a{2}*`; a `?` right
/// after a repetition only makes it lazy).
pub(crate) fn go_syntax_error(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut in_class = false;
    // Where the last repetition operator began, while it is the last thing
    // seen; and whether it already took its lazy `?`.
    let mut repetition: Option<usize> = None;
    let mut lazy = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                '\\' => i += 1,
                ']' => in_class = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let op_len = match c {
            '*' | '+' | '?' => 1,
            '{' if is_repetition(&chars[i..]) => chars[i..].iter().position(|&c| c == '}')? + 1,
            _ => 0,
        };
        if op_len == 0 {
            repetition = None;
            match c {
                '\\' => i += 1,
                '[' => {
                    in_class = true;
                    // A leading `]` (after an optional `^`) is a literal.
                    if chars.get(i + 1) == Some(&'^') {
                        i += 1;
                    }
                    if chars.get(i + 1) == Some(&']') {
                        i += 1;
                    }
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match repetition {
            Some(_) if c == '?' && !lazy => lazy = true,
            Some(start) => {
                let text: String = chars[start..i + op_len].iter().collect();
                return Some(format!("invalid nested repetition operator: `{text}`"));
            }
            None => {
                repetition = Some(i);
                lazy = false;
            }
        }
        i += op_len;
    }
    None
}

/// Whether `s` (starting at `{`) is a repetition `{n}`, `{n,}` or `{n,m}`.
fn is_repetition(s: &[char]) -> bool {
    let Some(close) = s.iter().position(|&c| c == '}') else {
        return false;
    };
    let body: String = s[1..close].iter().collect();
    let mut parts = body.splitn(2, ',');
    let min = parts.next().unwrap_or_default();
    let max = parts.next();
    let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    digits(min) && max.is_none_or(|m| m.is_empty() || digits(m))
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn full(pattern: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?s:{})$", translate(pattern))).expect("valid regex")
    }

    #[test]
    fn perl_classes_are_ascii_only() {
        assert!(full(r"\d+").is_match("123"));
        assert!(!full(r"\d").is_match("٣"));
        assert!(!full(r"\w").is_match("é"));
        assert!(full(r"\W").is_match("é"));
        assert!(!full(r"\s").is_match("\u{a0}"));
        assert!(full(r"[\d_]+").is_match("1_2"));
        assert!(!full(r"[\d]").is_match("٣"));
    }

    #[test]
    fn literal_braces_like_go() {
        assert!(full("a{b}").is_match("a{b}"));
        assert!(full("a{2}").is_match("aa"));
        assert!(full("a{1,}").is_match("aaa"));
        assert!(full("a{1,2}b").is_match("aab"));
        assert!(full("{").is_match("{"));
    }

    #[test]
    fn nested_repetitions_are_refused_as_go_refuses_them() {
        use super::go_syntax_error;
        for bad in ["a**", "a+*", "a{2}*", "a*?+", "(x)??*"] {
            assert!(
                go_syntax_error(bad).is_some_and(|e| e.starts_with("invalid nested repetition")),
                "{bad}"
            );
        }
        assert_eq!(
            go_syntax_error("a**").as_deref(),
            Some("invalid nested repetition operator: `**`")
        );
        for fine in ["a*", "a*?", "(a*)*", "[*+]+", "a\\**", "a{b}*", "x?y*"] {
            assert_eq!(go_syntax_error(fine), None, "{fine}");
        }
    }

    #[test]
    fn classes_and_escapes_survive() {
        assert!(full(r"[]a]").is_match("]"));
        assert!(full(r"[^]a]").is_match("b"));
        assert!(full(r"[[:alpha:]]+").is_match("abc"));
        assert!(full(r"a\.b").is_match("a.b"));
        assert!(!full(r"a\.b").is_match("axb"));
        assert!(full(r"\\d").is_match("\\d"));
    }
}
