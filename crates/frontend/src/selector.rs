//! Parser for PromQL series selectors as used by `match[]` parameters:
//! `metric`, `metric{a="b", c=~"d"}`, `{__name__=~"x.*"}`, and Prometheus 3's
//! quoted names `{"my.metric", "some.label"="v"}`. Full PromQL comes with the
//! querier; the metadata APIs need only selectors.

use strata_common::labels::METRIC_NAME;
use strata_common::{MatchOp, Matcher};

/// A selector failed to parse; the message is Prometheus-shaped
/// (`1:7: parse error: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("1:{column}: parse error: {message}")]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

/// Parses a series selector into its matchers.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut parser = Parser { input, pos: 0 };
    let matchers = parser.selector()?;
    parser.skip_space();
    if parser.pos < input.len() {
        return Err(parser.error(format!(
            "unexpected character after selector: {:?}",
            parser.rest().chars().next().unwrap_or(' ')
        )));
    }
    Ok(matchers)
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn error(&self, message: String) -> SelectorError {
        SelectorError {
            column: self.input[..self.pos].chars().count() + 1,
            message,
        }
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, SelectorError> {
        self.skip_space();
        let mut matchers = Vec::new();
        let mut name = None;
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        {
            name = Some(self.identifier(true));
        }
        self.skip_space();
        if self.eat("{") {
            self.label_matchers(&mut matchers)?;
        } else if name.is_none() {
            return Err(self.error("expected a metric name or '{'".to_owned()));
        }
        if let Some(name) = name {
            if matchers.iter().any(|m: &Matcher| m.name == METRIC_NAME) {
                return Err(self.error("metric name must not be set twice".to_owned()));
            }
            matchers.insert(0, self.matcher(MatchOp::Equal, METRIC_NAME, &name)?);
        }
        Ok(matchers)
    }

    fn label_matchers(&mut self, matchers: &mut Vec<Matcher>) -> Result<(), SelectorError> {
        loop {
            self.skip_space();
            if self.eat("}") {
                return Ok(());
            }
            let name = match self.peek() {
                Some('"' | '\'' | '`') => self.string()?,
                Some(c) if c.is_ascii_alphabetic() || c == '_' => self.identifier(false),
                Some(c) => {
                    return Err(self.error(format!("unexpected character inside braces: {c:?}")));
                }
                None => return Err(self.error("unexpected end of input inside braces".to_owned())),
            };
            self.skip_space();
            let op = if self.eat("=~") {
                Some(MatchOp::RegexMatch)
            } else if self.eat("!~") {
                Some(MatchOp::RegexNoMatch)
            } else if self.eat("!=") {
                Some(MatchOp::NotEqual)
            } else if self.eat("=") {
                Some(MatchOp::Equal)
            } else {
                None
            };
            match op {
                Some(op) => {
                    self.skip_space();
                    let value = self.string()?;
                    matchers.push(self.matcher(op, &name, &value)?);
                }
                // A lone quoted string names the metric (Prometheus 3).
                None => {
                    if matchers.iter().any(|m| m.name == METRIC_NAME) {
                        return Err(self.error("metric name must not be set twice".to_owned()));
                    }
                    matchers.push(self.matcher(MatchOp::Equal, METRIC_NAME, &name)?);
                }
            }
            self.skip_space();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(());
            }
            return Err(self.error("expected ',' or '}' in label matching".to_owned()));
        }
    }

    fn matcher(&self, op: MatchOp, name: &str, value: &str) -> Result<Matcher, SelectorError> {
        Matcher::new(op, name, value).map_err(|e| self.error(e.to_string()))
    }

    fn identifier(&mut self, allow_colon: bool) -> String {
        let len = self
            .rest()
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || (allow_colon && *c == ':')))
            .map_or(self.rest().len(), |(i, _)| i);
        let ident = self.rest()[..len].to_owned();
        self.pos += len;
        ident
    }

    /// A Go string literal: "..." or '...' with escapes, or `raw`.
    fn string(&mut self) -> Result<String, SelectorError> {
        let Some(quote) = self.peek().filter(|c| matches!(c, '"' | '\'' | '`')) else {
            return Err(self.error("expected a string literal".to_owned()));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated quoted string".to_owned()));
            };
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                out.push(self.escape(quote)?);
            } else if c == '\n' && quote != '`' {
                return Err(self.error("unterminated quoted string".to_owned()));
            } else {
                out.push(c);
            }
        }
    }

    fn escape(&mut self, quote: char) -> Result<char, SelectorError> {
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated escape sequence".to_owned()));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            _ if c == quote => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => {
                self.pos -= 1;
                (3, 8)
            }
            _ => return Err(self.error(format!("unknown escape sequence \\{c}"))),
        };
        let text = self.rest().get(..digits).unwrap_or("");
        let code = u32::from_str_radix(text, radix)
            .ok()
            .filter(|_| text.len() == digits)
            .ok_or_else(|| self.error("invalid escape sequence".to_owned()))?;
        self.pos += digits;
        char::from_u32(code).ok_or_else(|| {
            self.error("escape sequence is an invalid Unicode code point".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(input: &str) -> Vec<String> {
        parse_selector(input)
            .expect("valid selector")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_common_shapes() {
        assert_eq!(show("up"), vec![r#"__name__="up""#]);
        assert_eq!(
            show(r#"node_cpu:rate5m{job="a", mode!~'idle|iowait',}"#),
            vec![
                r#"__name__="node_cpu:rate5m""#,
                r#"job="a""#,
                r#"mode!~"idle|iowait""#
            ]
        );
        assert_eq!(show(r#"{__name__=~"x.*"}"#), vec![r#"__name__=~"x.*""#]);
        assert_eq!(
            show(r#"{"my.metric", "a.b"!="c"}"#),
            vec![r#"__name__="my.metric""#, r#"a.b!="c""#]
        );
        assert_eq!(show("{job=`a\\d`}"), vec![r#"job="a\\d""#]);
        assert_eq!(show(r#"{job="a\"b\u00e9"}"#), vec![r#"job="a\"bé""#]);
    }

    #[test]
    fn rejects_like_prometheus() {
        let err = |s: &str| parse_selector(s).expect_err(s).to_string();
        // Whether a selector may match everything is the caller's rule.
        assert!(parse_selector(r#"{job=""}"#).is_ok());
        assert!(err("up{").contains("parse error"));
        assert!(err(r#"up{job="a"} x"#).contains("unexpected character"));
        assert!(err(r#"up{__name__="x"}"#).contains("set twice"));
        assert!(err(r#"{job="a}"#).contains("unterminated"));
        assert!(err(r#"{job=~"("}"#).contains("invalid regular expression"));
        assert!(err("").starts_with("1:1:"));
    }
}
