//! Request parameters the way Go's `r.FormValue` sees them: the URL query
//! string plus, for `application/x-www-form-urlencoded` bodies, the body.
//! Also Prometheus' time format (`parseTime`).

use axum::http::{HeaderMap, header};

use crate::api_error::ApiError;

/// Every `key=value` pair of a request, URL first then body, keys repeated.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Collects parameters from the query string and a form body.
    pub fn new(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if is_form && !body.is_empty() {
            // Go's FormValue prefers body values: put them first.
            let mut from_body: Vec<(String, String)> =
                form_urlencoded::parse(body).into_owned().collect();
            from_body.append(&mut pairs);
            pairs = from_body;
        }
        Params { pairs }
    }

    /// The first value of `name`, treating an empty value as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter such as `match[]`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, or `default` when absent.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_time(text).ok_or_else(|| {
                ApiError::invalid_param(
                    name,
                    format!("invalid time value for '{name}': cannot parse {text:?} to a valid timestamp"),
                )
            }),
        }
    }

    /// `limit`: absent or 0 means no limit; negative is an error.
    pub fn limit(&self) -> Result<u64, ApiError> {
        let Some(text) = self.get("limit") else {
            return Ok(0);
        };
        let value: i64 = text.parse().map_err(|_| {
            ApiError::invalid_param(
                "limit",
                format!("strconv.Atoi: parsing {text:?}: invalid syntax"),
            )
        })?;
        u64::try_from(value)
            .map_err(|_| ApiError::invalid_param("limit", "limit must be non-negative"))
    }
}

/// Milliseconds standing for "no lower bound" (Prometheus' `MinTime`).
pub const MIN_TIME_MS: i64 = i64::MIN;
/// Milliseconds standing for "no upper bound" (Prometheus' `MaxTime`).
pub const MAX_TIME_MS: i64 = i64::MAX;

/// How Go formats Prometheus' MinTime/MaxTime; clients send them for open ranges.
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// Parses a unix time in (fractional) seconds or an RFC 3339 time into
/// milliseconds, like Prometheus' `parseTime` (fraction rounded to ms).
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return None;
        }
        let whole = seconds.trunc();
        let millis = ((seconds - whole) * 1000.0).round();
        let ms = whole * 1000.0 + millis;
        if ms < i64::MIN as f64 || ms > i64::MAX as f64 {
            return None;
        }
        return Some(ms as i64);
    }
    match text {
        MIN_TIME_FORMATTED => return Some(MIN_TIME_MS),
        MAX_TIME_FORMATTED => return Some(MAX_TIME_MS),
        _ => {}
    }
    parse_rfc3339(text)
}

/// RFC 3339 with optional fraction and `Z` or `±hh:mm` offset, into ms.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't')
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i64 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let padded = format!("{:0<9}", &fraction[..digits]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        // ASCII first: the byte slices below must fall on char boundaries
        // (found by the selector_params fuzz target).
        _ if rest.len() == 6
            && rest.is_ascii()
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    // Go rounds the nanoseconds to ms the way Prometheus' Time conversion does (truncation).
    Some(seconds * 1000 + nanos / 1_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parses_unix_seconds_like_prometheus() {
        assert_eq!(parse_time("4"), Some(4000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("1700000000.1236"), Some(1_700_000_000_124));
        assert_eq!(parse_time("-1.5"), Some(-1500));
        assert_eq!(parse_time("1e3"), Some(1_000_000));
        assert_eq!(parse_time("abc"), None);
        assert_eq!(parse_time("NaN"), None);
        // Grafana's exemplar probe sends milliseconds: still a valid (far future) time.
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000_000));
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:04Z"), Some(4000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Some(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Some(1_435_781_451_781)
        );
        assert_eq!(parse_time("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(parse_time("2015-13-01T00:00:00Z"), None);
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Some(MAX_TIME_MS));
        assert_eq!(parse_time(MIN_TIME_FORMATTED), Some(MIN_TIME_MS));
        // Regression (fuzz/artifacts-found/selector_params): a multi-byte
        // character in the offset must not panic.
        assert_eq!(parse_time("2015-07-01T20:10:51+aéxy"), None);
        assert_eq!(parse_time("2015-07-01T22:10:51+\u{fffd}]0"), None);
    }

    #[test]
    fn reads_url_and_form_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let params = Params::new(
            Some("match%5B%5D=up&start=1"),
            &headers,
            b"match%5B%5D=%7Bjob%3D%22a%22%7D&start=2",
        );
        assert_eq!(params.all("match[]"), vec![r#"{job="a"}"#, "up"]);
        assert_eq!(params.get("start"), Some("2"));
        let no_form = Params::new(Some("a=1"), &HeaderMap::new(), b"a=2");
        assert_eq!(no_form.get("a"), Some("1"));
    }

    #[test]
    fn limit_parsing() {
        let p = |q: &str| Params::new(Some(q), &HeaderMap::new(), b"");
        assert_eq!(p("").limit().expect("none"), 0);
        assert_eq!(p("limit=5").limit().expect("five"), 5);
        assert!(p("limit=-1").limit().is_err());
        assert!(p("limit=x").limit().is_err());
    }
}
