//! Parse errors worded and positioned as Prometheus 3.5 words them.
//!
//! `promql-parser` reports no positions, and for many syntax errors only a
//! generic message. When it (or the engine's own checks) refuses a query,
//! [`diagnose`] reads the query again with a small recursive-descent parser
//! that follows Prometheus' lexer, grammar and type checks only far enough
//! to find the errors Prometheus reports, where they are, and how they are
//! worded (`1:5: parse error: unexpected ...`). It builds no usable AST:
//! evaluation always works on `promql-parser`'s.

use strata_common::{MatchOp, Matcher, MatcherError};

/// Prometheus' error for a query that does not parse, as
/// `line:column: parse error: message` (of several, Prometheus reports the
/// first found), or `None` when this parser finds nothing to report.
pub(crate) fn diagnose(query: &str) -> Option<String> {
    let first = find_errors(query).into_iter().next()?;
    Some(format!(
        "{}: parse error: {}",
        position(query, first.pos),
        first.message
    ))
}

/// `line:column` of a byte offset: columns count bytes from 1, as in Go.
fn position(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = &query.as_bytes()[..pos];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(newline) => pos - newline,
        None => pos + 1,
    };
    format!("{line}:{column}")
}

#[derive(Debug, Clone, PartialEq)]
struct ParseError {
    pos: usize,
    message: String,
}

fn find_errors(query: &str) -> Vec<ParseError> {
    let tokens = lex(query);
    let mut parser = Parser {
        tokens,
        at: 0,
        errors: Vec::new(),
    };
    if parser.peek().kind == Kind::Eof {
        return Vec::new();
    }
    match parser.expr(0) {
        Ok(node) => {
            let next = parser.peek().clone();
            if next.kind != Kind::Eof {
                parser.errors.push(parser.unexpected(&next, "", ""));
                return parser.errors;
            }
            if parser.errors.is_empty() {
                check(&node, query, &mut parser.errors);
            }
            parser.errors
        }
        Err(e) => {
            parser.errors.push(e);
            parser.errors
        }
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    Str,
    /// `by`, `bool`, `offset`, ... (Prometheus' keywords).
    Keyword,
    /// `sum`, `topk`, ... (aggregation operators).
    Aggregator,
    /// Binary operators, `and`/`or`/`unless`/`atan2`, `=`, `=~`, `!~`, `@`.
    Operator,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Colon,
    /// A lexer error: the message is the token's text.
    Error,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    pos: usize,
    text: String,
}

const KEYWORDS: &[&str] = &[
    "bool",
    "by",
    "group_left",
    "group_right",
    "ignoring",
    "offset",
    "on",
    "without",
];
const AGGREGATORS: &[&str] = &[
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
];
const WORD_OPERATORS: &[&str] = &["and", "or", "unless", "atan2"];

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Go's `%q` of a rune.
fn quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".to_owned(),
        '\\' => "'\\\\'".to_owned(),
        '\n' => "'\\n'".to_owned(),
        '\t' => "'\\t'".to_owned(),
        '\r' => "'\\r'".to_owned(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// Go's `%#U` of a rune: `U+007A 'z'`.
fn unicode_char(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// Go's `%q` of a string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Tokens up to the end of input or the first lexer error (then the last
/// token is an [`Kind::Error`]), as Prometheus' lexer produces them.
fn lex(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        src,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
    };
    lexer.run();
    lexer.tokens
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn emit(&mut self, kind: Kind, start: usize) {
        self.tokens.push(Token {
            kind,
            pos: start,
            text: self.src[start..self.pos].to_owned(),
        });
    }

    fn error(&mut self, start: usize, message: String) {
        self.tokens.push(Token {
            kind: Kind::Error,
            pos: start,
            text: message,
        });
    }

    fn run(&mut self) {
        loop {
            let start = self.pos;
            let Some(c) = self.bump() else {
                if self.brace_open {
                    return self.error(start, "unexpected end of input inside braces".into());
                }
                if self.paren_depth > 0 {
                    return self.error(start, "unclosed left parenthesis".into());
                }
                if self.bracket_open {
                    return self.error(start, "unclosed left bracket".into());
                }
                self.tokens.push(Token {
                    kind: Kind::Eof,
                    pos: start,
                    text: String::new(),
                });
                return;
            };
            let ok = if self.brace_open {
                self.inside_braces(start, c)
            } else {
                self.statement(start, c)
            };
            if !ok {
                return;
            }
        }
    }

    /// Lexes one token outside braces; false after an error.
    fn statement(&mut self, start: usize, c: char) -> bool {
        match c {
            '#' => self.comment(),
            c if is_space(c) => {}
            ',' => self.emit(Kind::Comma, start),
            '*' | '/' | '%' | '+' | '-' | '^' | '@' => self.emit(Kind::Operator, start),
            '=' => {
                match self.peek() {
                    Some('=') => {
                        self.bump();
                    }
                    Some('~') => {
                        self.error(start, "unexpected character after '=': '~'".into());
                        return false;
                    }
                    _ => {}
                }
                self.emit(Kind::Operator, start);
            }
            '!' => match self.bump() {
                Some('=') => self.emit(Kind::Operator, start),
                other => {
                    let shown = other.map_or("U+FFFFFFFFFFFFFFFF".to_owned(), quote_char);
                    self.error(start, format!("unexpected character after '!': {shown}"));
                    return false;
                }
            },
            '<' | '>' => {
                if self.peek() == Some('=') {
                    self.bump();
                }
                self.emit(Kind::Operator, start);
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                return self.number_or_duration(start);
            }
            '"' | '\'' => return self.string(start, c),
            '`' => return self.raw_string(start),
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.word(start);
                } else if self.got_colon {
                    self.error(start, format!("unexpected colon {}", quote_char(c)));
                    return false;
                } else if c == ':' {
                    self.emit(Kind::Colon, start);
                    self.got_colon = true;
                } else {
                    self.error(start, format!("unexpected character: {}", quote_char(c)));
                    return false;
                }
            }
            '(' => {
                self.emit(Kind::LeftParen, start);
                self.paren_depth += 1;
            }
            ')' => {
                if self.paren_depth == 0 {
                    // Prometheus positions this one after the parenthesis.
                    let after = self.pos;
                    self.error(
                        after,
                        format!("unexpected right parenthesis {}", quote_char(c)),
                    );
                    return false;
                }
                self.paren_depth -= 1;
                self.emit(Kind::RightParen, start);
            }
            '{' => {
                self.emit(Kind::LeftBrace, start);
                self.brace_open = true;
            }
            '[' => {
                if self.bracket_open {
                    self.error(start, format!("unexpected left bracket {}", quote_char(c)));
                    return false;
                }
                self.got_colon = false;
                self.emit(Kind::LeftBracket, start);
                self.bracket_open = true;
            }
            ']' => {
                if !self.bracket_open {
                    self.error(start, format!("unexpected right bracket {}", quote_char(c)));
                    return false;
                }
                self.emit(Kind::RightBracket, start);
                self.bracket_open = false;
            }
            c => {
                self.error(start, format!("unexpected character: {}", quote_char(c)));
                return false;
            }
        }
        true
    }

    fn inside_braces(&mut self, start: usize, c: char) -> bool {
        match c {
            '#' => self.comment(),
            c if is_space(c) => {}
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alnum) {
                    self.bump();
                }
                self.emit(Kind::Identifier, start);
            }
            ',' => self.emit(Kind::Comma, start),
            '"' | '\'' => return self.string(start, c),
            '`' => return self.raw_string(start),
            '=' => {
                if self.peek() == Some('~') {
                    self.bump();
                }
                self.emit(Kind::Operator, start);
            }
            '!' => match self.bump() {
                Some('~' | '=') => self.emit(Kind::Operator, start),
                other => {
                    let shown = other.map_or("U+FFFFFFFFFFFFFFFF".to_owned(), quote_char);
                    self.error(
                        start,
                        format!("unexpected character after '!' inside braces: {shown}"),
                    );
                    return false;
                }
            },
            '{' => {
                self.error(start, format!("unexpected left brace {}", quote_char(c)));
                return false;
            }
            '}' => {
                self.emit(Kind::RightBrace, start);
                self.brace_open = false;
            }
            c => {
                self.error(
                    start,
                    format!("unexpected character inside braces: {}", quote_char(c)),
                );
                return false;
            }
        }
        true
    }

    fn comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn word(&mut self, start: usize) {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.bump();
        }
        let word = self.src[start..self.pos].to_ascii_lowercase();
        let kind = if KEYWORDS.contains(&word.as_str()) {
            Kind::Keyword
        } else if AGGREGATORS.contains(&word.as_str()) {
            Kind::Aggregator
        } else if WORD_OPERATORS.contains(&word.as_str()) {
            Kind::Operator
        } else if word == "inf" || word == "nan" {
            Kind::Number
        } else if word.contains(':') {
            Kind::MetricIdentifier
        } else {
            Kind::Identifier
        };
        self.emit(kind, start);
    }

    fn accept_run(&mut self, valid: impl Fn(char) -> bool) -> bool {
        let before = self.pos;
        while self.peek().is_some_and(&valid) {
            self.bump();
        }
        self.pos > before
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.bump();
                true
            }
            _ => false,
        }
    }

    fn number_or_duration(&mut self, start: usize) -> bool {
        self.pos = start;
        if self.scan_number() {
            self.emit(Kind::Number, start);
            return true;
        }
        // A duration: from where the number stopped, units, then digits and
        // units again, then no alphanumeric (Prometheus does not rewind).
        if self.accept("nsuµmhdwy") {
            self.accept("s");
            let mut valid = true;
            while self.accept_run(|c| c.is_ascii_digit()) {
                if !self.accept("nsuµmhdw") {
                    valid = false;
                    break;
                }
                self.accept("s");
            }
            if valid {
                let end = self.pos;
                if !self.bump().is_some_and(is_alnum) {
                    self.pos = end;
                    self.emit(Kind::Duration, start);
                    return true;
                }
            }
        }
        let text = self.src[start..self.pos].to_owned();
        self.error(
            start,
            format!("bad number or duration syntax: {}", quote(&text)),
        );
        false
    }

    /// A number ending in no alphanumeric; leaves `pos` where it stopped.
    fn scan_number(&mut self) -> bool {
        let hex = self.src[self.pos..].starts_with("0x") || self.src[self.pos..].starts_with("0X");
        if hex {
            self.pos += 2;
            self.accept_run(|c| c.is_ascii_hexdigit());
        } else {
            self.accept_run(|c| c.is_ascii_digit());
            if self.accept(".") {
                self.accept_run(|c| c.is_ascii_digit());
            }
            if self.accept("eE") {
                self.accept("+-");
                if !self.accept_run(|c| c.is_ascii_digit()) {
                    return false;
                }
            }
        }
        match self.peek() {
            Some('.') => {
                self.bump();
                false
            }
            Some(c) => !is_alnum(c),
            None => true,
        }
    }

    fn string(&mut self, start: usize, quote_mark: char) -> bool {
        loop {
            match self.bump() {
                None | Some('\n') => {
                    self.error(start, "unterminated quoted string".into());
                    return false;
                }
                Some('\\') => {
                    if let Err(message) = self.escape(quote_mark) {
                        self.error(start, message);
                        return false;
                    }
                }
                Some(c) if c == quote_mark => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str, start);
        true
    }

    fn escape(&mut self, quote_mark: char) -> Result<(), String> {
        let (digits, base, max) = match self.bump() {
            None => return Err("escape sequence not terminated".into()),
            Some(c) if "abfnrtv\\".contains(c) || c == quote_mark => return Ok(()),
            Some(c @ '0'..='7') => {
                self.pos -= c.len_utf8();
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10_ffff),
            Some('U') => (8, 16, 0x10_ffff),
            Some(c) => return Err(format!("unknown escape sequence {}", unicode_char(c))),
        };
        let mut value: u32 = 0;
        for _ in 0..digits {
            match self.bump() {
                None => return Err("escape sequence not terminated".into()),
                Some(c) => match c.to_digit(base) {
                    Some(d) => value = value * base + d,
                    None => {
                        return Err(format!(
                            "illegal character {} in escape sequence",
                            unicode_char(c)
                        ));
                    }
                },
            }
        }
        if value > max || (0xD800..0xE000).contains(&value) {
            return Err("escape sequence is an invalid Unicode code point".into());
        }
        Ok(())
    }

    fn raw_string(&mut self, start: usize) -> bool {
        loop {
            match self.bump() {
                None => {
                    self.error(start, "unterminated raw string".into());
                    return false;
                }
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str, start);
        true
    }
}

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Scalar,
    Vector,
    Matrix,
    Str,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            Type::Str => "string",
        }
    }

    /// A type by its letter in [`FUNCTIONS`].
    fn of(letter: u8) -> Type {
        match letter {
            b's' => Type::Scalar,
            b'm' => Type::Matrix,
            b'S' => Type::Str,
            _ => Type::Vector,
        }
    }
}

/// What the checks need to know of an expression.
#[derive(Debug)]
struct Node {
    pos: usize,
    /// Byte offset just past the expression.
    end: usize,
    shape: Shape,
}

#[derive(Debug)]
enum Shape {
    Number,
    Str,
    Selector {
        named: bool,
        /// Every matcher matches the empty string.
        all_empty: bool,
        offset: bool,
        at: bool,
    },
    Matrix {
        offset: bool,
        at: bool,
    },
    Subquery {
        expr: Box<Node>,
        offset: bool,
        at: bool,
    },
    Call {
        name: String,
        args: Vec<Node>,
    },
    Aggregate {
        op: String,
        param: Option<Box<Node>>,
        expr: Option<Box<Node>>,
    },
    Unary(Box<Node>),
    Paren(Box<Node>),
    Binary {
        op: String,
        lhs: Box<Node>,
        rhs: Box<Node>,
        bool_modifier: bool,
        /// `on`/`ignoring` given with labels.
        matching_labels: Vec<String>,
        on: bool,
        /// `group_left`/`group_right` given, with their labels.
        group: Option<Vec<String>>,
        has_matching: bool,
    },
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Errors found while parsing that do not stop it (Prometheus' grammar
    /// actions record them and go on).
    errors: Vec<ParseError>,
}

type Parsed<T> = Result<T, ParseError>;

/// Binary operators by precedence (higher binds tighter).
fn precedence(token: &Token) -> Option<u8> {
    if token.kind != Kind::Operator {
        return None;
    }
    match token.text.to_ascii_lowercase().as_str() {
        "or" => Some(1),
        "and" | "unless" => Some(2),
        "==" | "!=" | "<=" | "<" | ">=" | ">" => Some(3),
        "+" | "-" => Some(4),
        "*" | "/" | "%" | "atan2" => Some(5),
        "^" => Some(6),
        _ => None,
    }
}

const POW: u8 = 6;

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Parsed<Token> {
        let token = self.peek().clone();
        if token.kind == Kind::Error {
            return Err(ParseError {
                pos: token.pos,
                message: token.text,
            });
        }
        if token.kind != Kind::Eof {
            self.at += 1;
        }
        Ok(token)
    }

    /// Peeks, turning a lexer error into the parse error.
    fn look(&self) -> Parsed<&Token> {
        let token = self.peek();
        if token.kind == Kind::Error {
            return Err(ParseError {
                pos: token.pos,
                message: token.text.clone(),
            });
        }
        Ok(token)
    }

    fn is(&self, kind: Kind, text: &str) -> bool {
        let t = self.peek();
        t.kind == kind && t.text.eq_ignore_ascii_case(text)
    }

    /// Prometheus' `unexpected <token> [in <context>][, expected <what>]`.
    fn unexpected(&self, token: &Token, context: &str, expected: &str) -> ParseError {
        if token.kind == Kind::Error {
            return ParseError {
                pos: token.pos,
                message: token.text.clone(),
            };
        }
        let mut message = format!("unexpected {}", describe(token));
        if !context.is_empty() {
            message.push_str(" in ");
            message.push_str(context);
        }
        if !expected.is_empty() {
            message.push_str(", expected ");
            message.push_str(expected);
        }
        ParseError {
            pos: token.pos,
            message,
        }
    }

    fn record(&mut self, pos: usize, message: impl Into<String>) {
        self.errors.push(ParseError {
            pos,
            message: message.into(),
        });
    }

    fn expr(&mut self, min_precedence: u8) -> Parsed<Node> {
        let mut lhs = self.unary()?;
        loop {
            let token = self.look()?.clone();
            let Some(prec) = precedence(&token) else {
                return Ok(lhs);
            };
            if prec < min_precedence {
                return Ok(lhs);
            }
            self.next()?;
            let op = token.text.to_ascii_lowercase();
            let mut bool_modifier = false;
            if self.is(Kind::Keyword, "bool") {
                self.next()?;
                bool_modifier = true;
            }
            let mut has_matching = false;
            let mut on = false;
            let mut matching_labels = Vec::new();
            if self.is(Kind::Keyword, "on") || self.is(Kind::Keyword, "ignoring") {
                on = self.is(Kind::Keyword, "on");
                self.next()?;
                has_matching = true;
                matching_labels = self.grouping_labels()?;
            }
            let mut group = None;
            if has_matching
                && (self.is(Kind::Keyword, "group_left") || self.is(Kind::Keyword, "group_right"))
            {
                self.next()?;
                let next = self.look()?.clone();
                if next.kind == Kind::LeftParen {
                    group = Some(self.grouping_labels()?);
                } else if starts_expression(&next) {
                    group = Some(Vec::new());
                } else {
                    return Err(self.unexpected(&next, "grouping opts", "\"(\""));
                }
            }
            // `^` is right-associative, the others left-associative.
            let next_min = if prec == POW { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Node {
                pos: lhs.pos,
                end: rhs.end,
                shape: Shape::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                    bool_modifier,
                    matching_labels,
                    on,
                    group,
                    has_matching,
                },
            };
        }
    }

    fn unary(&mut self) -> Parsed<Node> {
        let token = self.look()?.clone();
        if token.kind == Kind::Operator && (token.text == "-" || token.text == "+") {
            self.next()?;
            // A unary operator binds like `*`: tighter only `^` and postfixes.
            let operand = self.expr(POW)?;
            return Ok(Node {
                pos: token.pos,
                end: operand.end,
                shape: Shape::Unary(Box::new(operand)),
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Parsed<Node> {
        let token = self.look()?.clone();
        let end = token.pos + token.text.len();
        match token.kind {
            Kind::Number => {
                self.next()?;
                self.check_number(&token);
                Ok(Node {
                    pos: token.pos,
                    end,
                    shape: Shape::Number,
                })
            }
            Kind::Duration => {
                self.next()?;
                Ok(Node {
                    pos: token.pos,
                    end,
                    shape: Shape::Number,
                })
            }
            Kind::Str => {
                self.next()?;
                Ok(Node {
                    pos: token.pos,
                    end,
                    shape: Shape::Str,
                })
            }
            Kind::LeftParen => {
                self.next()?;
                let inner = self.expr(0)?;
                let close = self.next()?;
                if close.kind != Kind::RightParen {
                    return Err(self.unexpected(&close, "", ""));
                }
                Ok(Node {
                    pos: token.pos,
                    end: close.pos + 1,
                    shape: Shape::Paren(Box::new(inner)),
                })
            }
            Kind::LeftBrace => self.selector(None),
            Kind::Aggregator => {
                let after = self
                    .tokens
                    .get(self.at + 1)
                    .map(|t| (t.kind, t.text.as_str()));
                match after {
                    Some((Kind::LeftParen, _)) => self.aggregate(),
                    Some((Kind::Keyword, by))
                        if by.eq_ignore_ascii_case("by") || by.eq_ignore_ascii_case("without") =>
                    {
                        self.aggregate()
                    }
                    _ => {
                        self.next()?;
                        self.selector(Some(token))
                    }
                }
            }
            Kind::Identifier
                if self.tokens.get(self.at + 1).map(|t| t.kind) == Some(Kind::LeftParen) =>
            {
                self.call()
            }
            Kind::Identifier | Kind::MetricIdentifier => {
                self.next()?;
                self.selector(Some(token))
            }
            // Of the keywords, these may also name a metric.
            Kind::Keyword
                if ["by", "offset", "without"]
                    .iter()
                    .any(|k| token.text.eq_ignore_ascii_case(k)) =>
            {
                self.next()?;
                self.selector(Some(token))
            }
            Kind::Operator
                if token.text.eq_ignore_ascii_case("and")
                    || token.text.eq_ignore_ascii_case("or")
                    || token.text.eq_ignore_ascii_case("unless")
                    || token.text.eq_ignore_ascii_case("atan2") =>
            {
                // Word operators are metric names where an expression starts.
                self.next()?;
                self.selector(Some(token))
            }
            _ => Err(self.unexpected(&token, "", "")),
        }
    }

    /// A number literal Go's `strconv.ParseFloat` refuses.
    fn check_number(&mut self, token: &Token) {
        let text = token.text.to_ascii_lowercase();
        let digits = text.strip_prefix("0x");
        let valid = match digits {
            Some(hex) => !hex.is_empty(),
            None => true,
        };
        if !valid {
            self.record(
                token.pos,
                format!(
                    "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
                    quote(&token.text)
                ),
            );
        }
    }

    fn postfix(&mut self, mut node: Node) -> Parsed<Node> {
        loop {
            let token = self.look()?.clone();
            match token.kind {
                Kind::LeftBracket => node = self.range(node)?,
                Kind::Keyword if token.text.eq_ignore_ascii_case("offset") => {
                    self.next()?;
                    let next = self.look()?.clone();
                    let negative = next.kind == Kind::Operator && next.text == "-";
                    if negative {
                        self.next()?;
                    }
                    let value = self.look()?.clone();
                    if !matches!(value.kind, Kind::Number | Kind::Duration) {
                        return Err(self.unexpected(&value, "offset", "number or duration"));
                    }
                    self.next()?;
                    self.set_modifier(&mut node, Modifier::Offset);
                    node.end = value.pos + value.text.len();
                }
                Kind::Operator if token.text == "@" => {
                    self.next()?;
                    let next = self.look()?.clone();
                    let preprocessor = matches!(next.kind, Kind::Identifier)
                        && (next.text.eq_ignore_ascii_case("start")
                            || next.text.eq_ignore_ascii_case("end"));
                    if preprocessor {
                        self.next()?;
                        let open = self.look()?.clone();
                        if open.kind != Kind::LeftParen {
                            return Err(self.unexpected(&open, "@", "timestamp"));
                        }
                        self.next()?;
                        let close = self.next()?;
                        if close.kind != Kind::RightParen {
                            return Err(self.unexpected(&close, "@", "timestamp"));
                        }
                        node.end = close.pos + 1;
                    } else {
                        let sign =
                            next.kind == Kind::Operator && (next.text == "-" || next.text == "+");
                        if sign {
                            self.next()?;
                        }
                        let value = self.look()?.clone();
                        if value.kind != Kind::Number {
                            return Err(self.unexpected(&value, "@", "timestamp"));
                        }
                        self.next()?;
                        node.end = value.pos + value.text.len();
                    }
                    self.set_modifier(&mut node, Modifier::At);
                }
                _ => return Ok(node),
            }
        }
    }

    fn set_modifier(&mut self, node: &mut Node, modifier: Modifier) {
        let (offset, at) = match &mut node.shape {
            Shape::Selector { offset, at, .. }
            | Shape::Matrix { offset, at }
            | Shape::Subquery { offset, at, .. } => (offset, at),
            _ => {
                let what = match modifier {
                    Modifier::Offset => "offset modifier",
                    Modifier::At => "@ modifier",
                };
                self.record(
                    node.pos,
                    format!(
                        "{what} must be preceded by an instant vector selector or range vector selector or a subquery"
                    ),
                );
                return;
            }
        };
        let (flag, message) = match modifier {
            Modifier::Offset => (offset, "offset may not be set multiple times"),
            Modifier::At => (at, "@ <timestamp> may not be set multiple times"),
        };
        if *flag {
            let pos = node.pos;
            self.record(pos, message);
        } else {
            *flag = true;
        }
    }

    /// `[range]` or `[range:step]` after an expression.
    fn range(&mut self, node: Node) -> Parsed<Node> {
        let open = self.next()?;
        self.duration()?;
        let next = self.next()?;
        match next.kind {
            Kind::RightBracket => {
                let message = match &node.shape {
                    Shape::Selector { offset: true, .. } => {
                        Some("no offset modifiers allowed before range")
                    }
                    Shape::Selector { at: true, .. } => Some("no @ modifiers allowed before range"),
                    Shape::Selector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(message) = message {
                    self.record(open.pos, message);
                }
                Ok(Node {
                    pos: node.pos,
                    end: next.pos + 1,
                    shape: Shape::Matrix {
                        offset: false,
                        at: false,
                    },
                })
            }
            Kind::Colon => {
                if self.look()?.kind != Kind::RightBracket {
                    self.duration()?;
                }
                let close = self.next()?;
                if close.kind != Kind::RightBracket {
                    return Err(self.unexpected(&close, "subquery selector", "\"]\""));
                }
                Ok(Node {
                    pos: node.pos,
                    end: close.pos + 1,
                    shape: Shape::Subquery {
                        expr: Box::new(node),
                        offset: false,
                        at: false,
                    },
                })
            }
            _ => Err(self.unexpected(&next, "", "")),
        }
    }

    /// A duration (or a number of seconds) inside brackets; must be > 0.
    fn duration(&mut self) -> Parsed<()> {
        let token = self.look()?.clone();
        let negative = token.kind == Kind::Operator && token.text == "-";
        if negative {
            self.next()?;
        }
        let value = self.next()?;
        match value.kind {
            Kind::Number | Kind::Duration => {}
            _ => return Err(self.unexpected(&value, "", "")),
        }
        let zero = match value.kind {
            Kind::Number => value.text.parse::<f64>().is_ok_and(|v| v == 0.0),
            _ => value.text.chars().all(|c| !c.is_ascii_digit() || c == '0'),
        };
        if value.kind == Kind::Duration && !valid_duration(&value.text) {
            self.record(
                value.pos,
                format!("not a valid duration string: {}", quote(&value.text)),
            );
        } else if negative || zero {
            self.record(token.pos, "duration must be greater than 0");
        }
        Ok(())
    }

    fn grouping_labels(&mut self) -> Parsed<Vec<String>> {
        let open = self.look()?.clone();
        if open.kind != Kind::LeftParen {
            return Err(self.unexpected(&open, "grouping opts", "\"(\""));
        }
        self.next()?;
        let mut labels = Vec::new();
        loop {
            let token = self.look()?.clone();
            match token.kind {
                Kind::RightParen => {
                    self.next()?;
                    return Ok(labels);
                }
                Kind::Identifier
                | Kind::MetricIdentifier
                | Kind::Keyword
                | Kind::Aggregator
                | Kind::Str => {
                    self.next()?;
                    labels.push(token.text.clone());
                }
                Kind::Operator
                    if WORD_OPERATORS.contains(&token.text.to_ascii_lowercase().as_str()) =>
                {
                    self.next()?;
                    labels.push(token.text.clone());
                }
                _ => return Err(self.unexpected(&token, "grouping opts", "label")),
            }
            let after = self.look()?.clone();
            match after.kind {
                Kind::Comma => {
                    self.next()?;
                }
                Kind::RightParen => {}
                _ => return Err(self.unexpected(&after, "grouping opts", "\",\" or \")\"")),
            }
        }
    }

    fn aggregate(&mut self) -> Parsed<Node> {
        let op_token = self.next()?;
        let mut modified = false;
        if self.is(Kind::Keyword, "by") || self.is(Kind::Keyword, "without") {
            self.next()?;
            self.grouping_labels()?;
            modified = true;
        }
        let open = self.look()?.clone();
        if open.kind != Kind::LeftParen {
            return Err(self.unexpected(&open, "aggregation", ""));
        }
        let (args, close) = self.arguments()?;
        let mut end = close + 1;
        if !modified && (self.is(Kind::Keyword, "by") || self.is(Kind::Keyword, "without")) {
            self.next()?;
            let before = self.at;
            self.grouping_labels()?;
            if self.at > before {
                end = self.tokens[self.at - 1].pos + 1;
            }
        }
        let op = op_token.text.to_ascii_lowercase();
        if op == "limitk" || op == "limit_ratio" {
            self.record(
                op_token.pos,
                format!(
                    "{op}() is experimental and must be enabled with --enable-feature=promql-experimental-functions"
                ),
            );
        }
        let with_param = matches!(
            op.as_str(),
            "topk" | "bottomk" | "quantile" | "count_values" | "limitk" | "limit_ratio"
        );
        let wanted = if with_param { 2 } else { 1 };
        let mut args = args.into_iter();
        let (param, expr) = if args.len() == 0 {
            self.record(
                op_token.pos,
                "no arguments for aggregate expression provided",
            );
            (None, None)
        } else if args.len() != wanted {
            self.record(
                op_token.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {wanted}, got {}",
                    args.len()
                ),
            );
            (None, None)
        } else if with_param {
            (args.next().map(Box::new), args.next().map(Box::new))
        } else {
            (None, args.next().map(Box::new))
        };
        Ok(Node {
            pos: op_token.pos,
            end,
            shape: Shape::Aggregate { op, param, expr },
        })
    }

    fn call(&mut self) -> Parsed<Node> {
        let name = self.next()?;
        // Prometheus checks the name once the arguments are parsed.
        let (args, close) = self.arguments()?;
        match get_function(&name.text) {
            None => self.record(
                name.pos,
                format!("unknown function with name {}", quote(&name.text)),
            ),
            Some(f) if f.experimental => {
                self.record(
                    name.pos,
                    format!("function {} is not enabled", quote(&name.text)),
                );
            }
            Some(_) => {}
        }
        Ok(Node {
            pos: name.pos,
            end: close + 1,
            shape: Shape::Call {
                name: name.text,
                args,
            },
        })
    }

    /// `( expr, ... )`; returns the arguments and the closing paren's offset.
    fn arguments(&mut self) -> Parsed<(Vec<Node>, usize)> {
        self.next()?;
        let mut args = Vec::new();
        if self.look()?.kind == Kind::RightParen {
            let close = self.next()?;
            return Ok((args, close.pos));
        }
        loop {
            args.push(self.expr(0)?);
            let token = self.next()?;
            match token.kind {
                Kind::RightParen => return Ok((args, token.pos)),
                Kind::Comma => {
                    if self.look()?.kind == Kind::RightParen {
                        self.record(
                            token.pos,
                            "trailing commas not allowed in function call args",
                        );
                        let close = self.next()?;
                        return Ok((args, close.pos));
                    }
                }
                _ => return Err(self.unexpected(&token, "", "")),
            }
        }
    }

    /// A vector selector: an optional metric name, then optional matchers.
    fn selector(&mut self, name: Option<Token>) -> Parsed<Node> {
        let pos = name.as_ref().map_or(self.peek().pos, |t| t.pos);
        let mut end = name.as_ref().map_or(pos, |t| t.pos + t.text.len());
        let mut all_empty = true;
        let mut named = name.is_some();
        if self.look()?.kind == Kind::LeftBrace {
            self.next()?;
            loop {
                let token = self.look()?.clone();
                match token.kind {
                    Kind::RightBrace => {
                        self.next()?;
                        end = token.pos + 1;
                        break;
                    }
                    Kind::Identifier | Kind::Str => {
                        self.next()?;
                        let op = self.look()?.clone();
                        let is_match_op = op.kind == Kind::Operator
                            && matches!(op.text.as_str(), "=" | "!=" | "=~" | "!~");
                        if !is_match_op {
                            if token.kind == Kind::Str
                                && matches!(op.kind, Kind::Comma | Kind::RightBrace)
                            {
                                // A quoted metric name alone: `{"foo"}`.
                                named = true;
                                all_empty = false;
                            } else {
                                return Err(self.unexpected(
                                    &op,
                                    "label matching",
                                    "label matching operator",
                                ));
                            }
                        } else {
                            self.next()?;
                            let value = self.look()?.clone();
                            if value.kind != Kind::Str {
                                return Err(self.unexpected(&value, "label matching", "string"));
                            }
                            self.next()?;
                            let unquoted = unquote(&value.text);
                            if !self.matches_empty(&op.text, &unquoted, token.pos) {
                                all_empty = false;
                            }
                        }
                    }
                    _ => {
                        return Err(self.unexpected(
                            &token,
                            "label matching",
                            "identifier or \"}\"",
                        ));
                    }
                }
                let after = self.look()?.clone();
                match after.kind {
                    Kind::Comma => {
                        self.next()?;
                    }
                    Kind::RightBrace => {}
                    _ => {
                        return Err(self.unexpected(&after, "label matching", "\",\" or \"}\""));
                    }
                }
            }
        }
        Ok(Node {
            pos,
            end,
            shape: Shape::Selector {
                named,
                all_empty,
                offset: false,
                at: false,
            },
        })
    }

    /// Whether a matcher matches the empty string; records a regex that
    /// does not compile.
    fn matches_empty(&mut self, op: &str, value: &str, pos: usize) -> bool {
        match op {
            "=" => value.is_empty(),
            "!=" => !value.is_empty(),
            _ => {
                if let Some(message) = crate::regex_compat::go_syntax_error(value) {
                    self.record(pos, format!("error parsing regexp: {message}"));
                    return false;
                }
                // The engine's own matcher, so "matches empty" means the same.
                let op = if op == "=~" {
                    MatchOp::RegexMatch
                } else {
                    MatchOp::RegexNoMatch
                };
                match Matcher::new(op, "", &crate::regex_compat::translate(value)) {
                    Ok(matcher) => matcher.matches_empty(),
                    Err(e) => {
                        self.record(pos, format!("error parsing regexp: {}", regex_message(&e)));
                        false
                    }
                }
            }
        }
    }
}

enum Modifier {
    Offset,
    At,
}

/// Whether a token can begin an expression (after `group_left` without
/// labels, the right-hand side follows).
fn starts_expression(token: &Token) -> bool {
    match token.kind {
        Kind::Identifier
        | Kind::MetricIdentifier
        | Kind::Number
        | Kind::Duration
        | Kind::Str
        | Kind::Aggregator
        | Kind::LeftParen
        | Kind::LeftBrace => true,
        Kind::Operator => token.text == "-" || token.text == "+",
        _ => false,
    }
}

/// A valid Prometheus duration: units in decreasing order, each once.
fn valid_duration(text: &str) -> bool {
    const UNITS: &[&str] = &["y", "w", "d", "h", "m", "s", "ms"];
    let mut last: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit_len = if rest.starts_with("ms") {
            2
        } else {
            rest.chars().next().map_or(0, char::len_utf8)
        };
        let unit = &rest[..unit_len];
        let Some(index) = UNITS.iter().position(|u| *u == unit) else {
            return false;
        };
        if last.is_some_and(|l| index <= l) {
            return false;
        }
        last = Some(index);
        rest = &rest[unit_len..];
    }
    true
}

/// The text of a string token without its quotes (escapes left as they
/// are: only whether it is empty and the regex matter here).
fn unquote(text: &str) -> String {
    let inner = &text[1..text.len().saturating_sub(1).max(1)];
    if text.starts_with('`') {
        return inner.to_owned();
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => {
                if "\\\"'".contains(other) {
                    out.push(other);
                } else {
                    out.push('\\');
                    out.push(other);
                }
            }
            None => {}
        }
    }
    out
}

/// The part of a regex error Prometheus' (Go's) would say; Go's exact
/// wording is only matched for the most common mistakes.
fn regex_message(e: &MatcherError) -> String {
    let text = match e {
        MatcherError::InvalidRegex { message, .. } => message.as_str(),
        MatcherError::UnknownType(_) => return e.to_string(),
    };
    if text.contains("unclosed group") {
        return "missing closing ): `(`".to_owned();
    }
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or(text);
    last.trim_start_matches("error:").trim().to_owned()
}

/// How Prometheus names a token in "unexpected ..." messages.
fn describe(token: &Token) -> String {
    let text = &token.text;
    match token.kind {
        Kind::Eof => "end of input".to_owned(),
        Kind::Identifier => format!("identifier {}", quote(text)),
        Kind::MetricIdentifier => format!("metric identifier {}", quote(text)),
        Kind::Keyword => format!("<{text}>"),
        Kind::Aggregator => format!("<aggr:{text}>"),
        Kind::Operator if text == "@" => "\"<Item 57400>\" <op:@>".to_owned(),
        Kind::Operator => format!("<op:{text}>"),
        Kind::Number | Kind::Duration | Kind::Str => {
            let kind = match token.kind {
                Kind::Number => "number",
                Kind::Duration => "duration",
                _ => "string",
            };
            if text.chars().count() > 10 {
                let short: String = text.chars().take(10).collect();
                format!("{kind} {}...", quote(&short))
            } else {
                format!("{kind} {}", quote(text))
            }
        }
        Kind::LeftParen
        | Kind::RightParen
        | Kind::LeftBrace
        | Kind::RightBrace
        | Kind::LeftBracket
        | Kind::RightBracket
        | Kind::Comma
        | Kind::Colon => quote(text),
        Kind::Error => text.clone(),
    }
}

// ---------------------------------------------------------------- functions

/// A PromQL function of Prometheus 3.5 as its parser knows it.
struct Function {
    name: &'static str,
    /// Argument types, one letter each: `s` scalar, `v` instant vector,
    /// `m` range vector, `S` string.
    args: &'static str,
    /// Prometheus' `Variadic`: 0 fixed, n > 0 up to n optional trailing
    /// arguments (the last declared type), -1 any number of them.
    variadic: i32,
    returns: u8,
    experimental: bool,
}

const fn f(name: &'static str, args: &'static str, variadic: i32, returns: u8) -> Function {
    Function {
        name,
        args,
        variadic,
        returns,
        experimental: false,
    }
}

const fn experimental(
    name: &'static str,
    args: &'static str,
    variadic: i32,
    returns: u8,
) -> Function {
    Function {
        name,
        args,
        variadic,
        returns,
        experimental: true,
    }
}

/// Prometheus 3.5's functions (its parser's table, not the engine's).
const FUNCTIONS: &[Function] = &[
    f("abs", "v", 0, b'v'),
    f("absent", "v", 0, b'v'),
    f("absent_over_time", "m", 0, b'v'),
    f("acos", "v", 0, b'v'),
    f("acosh", "v", 0, b'v'),
    f("asin", "v", 0, b'v'),
    f("asinh", "v", 0, b'v'),
    f("atan", "v", 0, b'v'),
    f("atanh", "v", 0, b'v'),
    f("avg_over_time", "m", 0, b'v'),
    f("ceil", "v", 0, b'v'),
    f("changes", "m", 0, b'v'),
    f("clamp", "vss", 0, b'v'),
    f("clamp_max", "vs", 0, b'v'),
    f("clamp_min", "vs", 0, b'v'),
    f("cos", "v", 0, b'v'),
    f("cosh", "v", 0, b'v'),
    f("count_over_time", "m", 0, b'v'),
    f("day_of_month", "v", 1, b'v'),
    f("day_of_week", "v", 1, b'v'),
    f("day_of_year", "v", 1, b'v'),
    f("days_in_month", "v", 1, b'v'),
    f("deg", "v", 0, b'v'),
    f("delta", "m", 0, b'v'),
    f("deriv", "m", 0, b'v'),
    experimental("double_exponential_smoothing", "mss", 0, b'v'),
    f("exp", "v", 0, b'v'),
    f("floor", "v", 0, b'v'),
    f("histogram_avg", "v", 0, b'v'),
    f("histogram_count", "v", 0, b'v'),
    f("histogram_fraction", "ssv", 0, b'v'),
    f("histogram_quantile", "sv", 0, b'v'),
    f("histogram_stddev", "v", 0, b'v'),
    f("histogram_stdvar", "v", 0, b'v'),
    f("histogram_sum", "v", 0, b'v'),
    f("hour", "v", 1, b'v'),
    f("idelta", "m", 0, b'v'),
    f("increase", "m", 0, b'v'),
    experimental("info", "vv", 1, b'v'),
    f("irate", "m", 0, b'v'),
    f("label_join", "vSSS", -1, b'v'),
    f("label_replace", "vSSSS", 0, b'v'),
    f("last_over_time", "m", 0, b'v'),
    f("ln", "v", 0, b'v'),
    f("log10", "v", 0, b'v'),
    f("log2", "v", 0, b'v'),
    experimental("mad_over_time", "m", 0, b'v'),
    f("max_over_time", "m", 0, b'v'),
    f("min_over_time", "m", 0, b'v'),
    f("minute", "v", 1, b'v'),
    f("month", "v", 1, b'v'),
    f("pi", "", 0, b's'),
    f("predict_linear", "ms", 0, b'v'),
    f("present_over_time", "m", 0, b'v'),
    f("quantile_over_time", "sm", 0, b'v'),
    f("rad", "v", 0, b'v'),
    f("rate", "m", 0, b'v'),
    f("resets", "m", 0, b'v'),
    f("round", "vs", 1, b'v'),
    f("scalar", "v", 0, b's'),
    f("sgn", "v", 0, b'v'),
    f("sin", "v", 0, b'v'),
    f("sinh", "v", 0, b'v'),
    f("sort", "v", 0, b'v'),
    experimental("sort_by_label", "vS", -1, b'v'),
    experimental("sort_by_label_desc", "vS", -1, b'v'),
    f("sort_desc", "v", 0, b'v'),
    f("sqrt", "v", 0, b'v'),
    f("stddev_over_time", "m", 0, b'v'),
    f("stdvar_over_time", "m", 0, b'v'),
    f("sum_over_time", "m", 0, b'v'),
    f("tan", "v", 0, b'v'),
    f("tanh", "v", 0, b'v'),
    f("time", "", 0, b's'),
    f("timestamp", "v", 0, b'v'),
    experimental("ts_of_last_over_time", "m", 0, b'v'),
    experimental("ts_of_max_over_time", "m", 0, b'v'),
    experimental("ts_of_min_over_time", "m", 0, b'v'),
    f("vector", "s", 0, b'v'),
    f("year", "v", 1, b'v'),
];

fn get_function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Whether Prometheus 3.5 offers a function without feature flags
/// (`promql-parser` also knows experimental and newer ones).
pub(crate) fn is_enabled_function(name: &str) -> bool {
    get_function(name).is_some_and(|f| !f.experimental)
}

// ---------------------------------------------------------------- checks

/// Prometheus' type checks (`checkAST`), children first; returns the type.
fn check(node: &Node, src: &str, errors: &mut Vec<ParseError>) -> Type {
    let mut err = |pos: usize, message: String| errors.push(ParseError { pos, message });
    match &node.shape {
        Shape::Number => Type::Scalar,
        Shape::Str => Type::Str,
        Shape::Selector {
            named, all_empty, ..
        } => {
            if !named && *all_empty {
                err(
                    node.pos,
                    "vector selector must contain at least one non-empty matcher".into(),
                );
            }
            Type::Vector
        }
        Shape::Matrix { .. } => Type::Matrix,
        Shape::Subquery { expr, .. } => {
            let t = check(expr, src, errors);
            if t != Type::Vector {
                errors.push(ParseError {
                    pos: node.pos,
                    message: format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        t.name()
                    ),
                });
            }
            Type::Matrix
        }
        Shape::Paren(inner) => check(inner, src, errors),
        Shape::Unary(inner) => {
            let t = check(inner, src, errors);
            if t != Type::Scalar && t != Type::Vector {
                errors.push(ParseError {
                    pos: node.pos,
                    message: format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        quote(t.name())
                    ),
                });
            }
            t
        }
        Shape::Call { name, args } => check_call(node, name, args, src, errors),
        Shape::Aggregate { op, param, expr } => {
            if let Some(expr) = expr {
                expect(expr, Type::Vector, "aggregation expression", src, errors);
            }
            if let Some(param) = param {
                let wanted = if op == "count_values" {
                    Type::Str
                } else {
                    Type::Scalar
                };
                expect(param, wanted, "aggregation parameter", src, errors);
            }
            Type::Vector
        }
        Shape::Binary { .. } => check_binary(node, src, errors),
    }
}

fn expect(node: &Node, wanted: Type, context: &str, src: &str, errors: &mut Vec<ParseError>) {
    let t = check(node, src, errors);
    if t != wanted {
        errors.push(ParseError {
            pos: node.pos,
            message: format!(
                "expected type {} in {context}, got {}",
                wanted.name(),
                t.name()
            ),
        });
    }
}

fn check_call(
    node: &Node,
    name: &str,
    args: &[Node],
    src: &str,
    errors: &mut Vec<ParseError>,
) -> Type {
    let Some(f) = get_function(name) else {
        return Type::Vector;
    };
    let declared = f.args.len();
    let given = args.len();
    if f.variadic == 0 {
        if declared != given {
            errors.push(ParseError {
                pos: node.pos,
                message: format!(
                    "expected {declared} argument(s) in call to {}, got {given}",
                    quote(name)
                ),
            });
        }
    } else {
        let required = declared.saturating_sub(1);
        if required > given {
            errors.push(ParseError {
                pos: node.pos,
                message: format!(
                    "expected at least {required} argument(s) in call to {}, got {given}",
                    quote(name)
                ),
            });
        } else if f.variadic > 0 {
            let most = required + f.variadic as usize;
            if most < given {
                errors.push(ParseError {
                    pos: node.pos,
                    message: format!(
                        "expected at most {most} argument(s) in call to {}, got {given}",
                        quote(name)
                    ),
                });
            }
        }
    }
    for (i, arg) in args.iter().enumerate() {
        let index = if i >= declared {
            if f.variadic == 0 {
                break;
            }
            declared - 1
        } else {
            i
        };
        let wanted = Type::of(f.args.as_bytes()[index]);
        expect(
            arg,
            wanted,
            &format!("call to function {}", quote(name)),
            src,
            errors,
        );
    }
    Type::of(f.returns)
}

fn check_binary(node: &Node, src: &str, errors: &mut Vec<ParseError>) -> Type {
    let Shape::Binary {
        op,
        lhs,
        rhs,
        bool_modifier,
        matching_labels,
        on,
        group,
        has_matching,
    } = &node.shape
    else {
        return Type::Vector;
    };
    let lt = check(lhs, src, errors);
    let rt = check(rhs, src, errors);
    // The operator's position: the first non-space after the left side.
    let op_pos = src[lhs.end.min(src.len())..]
        .find(|c: char| !is_space(c))
        .map_or(lhs.end, |i| lhs.end + i);
    let comparison = matches!(op.as_str(), "==" | "!=" | "<=" | "<" | ">=" | ">");
    let set = matches!(op.as_str(), "and" | "or" | "unless");
    let mut err = |pos: usize, message: String| errors.push(ParseError { pos, message });
    if *bool_modifier && !comparison {
        err(
            op_pos,
            "bool modifier can only be used on comparison operators".into(),
        );
    }
    if comparison && !*bool_modifier && lt == Type::Scalar && rt == Type::Scalar {
        err(
            op_pos,
            "comparisons between scalars must use BOOL modifier".into(),
        );
    }
    if *on && let Some(include) = group {
        for label in matching_labels {
            if include.contains(label) {
                err(
                    op_pos,
                    format!(
                        "label {} must not occur in ON and GROUP clause at once",
                        quote(label)
                    ),
                );
            }
        }
    }
    if lt != Type::Scalar && lt != Type::Vector {
        err(
            lhs.pos,
            "binary expression must contain only scalar and instant vector types".into(),
        );
    }
    if rt != Type::Scalar && rt != Type::Vector {
        err(
            rhs.pos,
            "binary expression must contain only scalar and instant vector types".into(),
        );
    }
    let both_vectors = lt == Type::Vector && rt == Type::Vector;
    if !both_vectors && *has_matching {
        if !matching_labels.is_empty() {
            err(
                node.pos,
                "vector matching only allowed between instant vectors".into(),
            );
        }
    } else if set && group.is_some() {
        err(
            node.pos,
            format!("no grouping allowed for {} operation", quote(op)),
        );
    }
    if (lt == Type::Scalar || rt == Type::Scalar) && set {
        err(
            node.pos,
            format!(
                "set operator {} not allowed in binary scalar expression",
                quote(op)
            ),
        );
    }
    if lt == Type::Scalar && rt == Type::Scalar {
        Type::Scalar
    } else {
        Type::Vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input: no panic, and a reported position lies in the input.
        #[test]
        fn errors_are_positioned_inside_the_input(
            query in "([a-z_(){}\\[\\]\"'`,:=!~@^*+/%<>.0-9 #\n\\\\-]|by |on |offset |sum|rate|x\\[5m\\]){0,30}"
        ) {
            if let Some(message) = diagnose(&query) {
                let (position, rest) = message.split_once(": parse error: ").expect("shape");
                prop_assert!(!rest.is_empty());
                let (line, column) = position.split_once(':').expect("line:column");
                let line: usize = line.parse().expect("line");
                let column: usize = column.parse().expect("column");
                let lines: Vec<&str> = query.split('\n').collect();
                prop_assert!(line >= 1 && line <= lines.len(), "{message}");
                prop_assert!(column >= 1 && column <= lines[line - 1].len() + 1, "{message}");
            }
        }
    }

    #[test]
    fn positions_count_bytes_from_one_per_line() {
        assert_eq!(position("up", 0), "1:1");
        assert_eq!(position("up +", 4), "1:5");
        assert_eq!(position("sum(\n  up", 9), "2:5");
    }

    #[test]
    fn valid_queries_have_nothing_to_report() {
        for query in [
            "up",
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / 2",
            "-up ^ 2",
            "up offset -5m @ end()",
            "rate(up[5m:1m] offset 1h)",
            "foo{\"a\"=\"b\"} * on(x) group_left bar",
            "histogram_quantile(0.9, sum without (instance) (rate(x_bucket[1m])))",
            "topk(3, up) by (job)",
            "sum",
            "1 > bool 2",
        ] {
            assert_eq!(diagnose(query), None, "{query}");
        }
    }
}
