//! Durations as Prometheus writes them: `1h30m`, `15s`, `100ms`, `1d`,
//! `2w`, `1y` (units `ms s m h d w y`, largest first, each at most once),
//! and, where the HTTP API accepts it, plain (fractional) seconds.

/// Parses a Prometheus duration such as `1m0s` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 31_536_000_000),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut total: i64 = 0;
    let mut rest = text;
    // Units must come largest first, each at most once (Prometheus' rule).
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let position = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)?
            + next_unit;
        next_unit = position + 1;
        total = total.checked_add(number.checked_mul(UNITS[position].1)?)?;
    }
    Some(total)
}

/// The HTTP API's duration parameters: a float number of seconds, else a
/// Prometheus duration. Milliseconds; `None` if unparsable or overflowing.
pub fn parse_seconds_or_duration_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        let ms = (seconds * 1000.0).round();
        if !ms.is_finite() || ms >= i64::MAX as f64 || ms <= i64::MIN as f64 {
            return None;
        }
        return Some(ms as i64);
    }
    parse_duration_ms(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_duration_ms("1m0s"), Some(60_000));
        assert_eq!(parse_duration_ms("1h0m0s"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("2w1d"), Some(15 * 86_400_000));
        assert_eq!(parse_duration_ms("1y"), Some(31_536_000_000));
        assert_eq!(parse_duration_ms("30s1m"), None, "units must decrease");
        assert_eq!(parse_duration_ms("1m1m"), None, "each unit once");
        assert_eq!(parse_duration_ms("1x"), None);
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_duration_ms(""), None);
    }

    #[test]
    fn api_durations_accept_seconds() {
        assert_eq!(parse_seconds_or_duration_ms("15"), Some(15_000));
        assert_eq!(parse_seconds_or_duration_ms("0.5"), Some(500));
        assert_eq!(parse_seconds_or_duration_ms("15s"), Some(15_000));
        assert_eq!(parse_seconds_or_duration_ms("1e300"), None);
        assert_eq!(parse_seconds_or_duration_ms("abc"), None);
    }
}
