//! Validation of incoming series, as Prometheus and Mimir do it, and the
//! per-tenant limits it enforces.
//!
//! Decisions (documented in docs/configuration.md): labels are sorted by
//! name when they arrive unsorted (remote write requires sorted labels, but
//! sorting costs little and loses nothing); labels with an empty value are
//! dropped, since Prometheus treats an empty value as an absent label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_common::SeriesValidator;
use strata_common::labels::{self, METRIC_NAME};
use strata_common::raw_write::RawSeries;
use strata_proto::prometheus::{Histogram, Label, histogram};

/// Limits applied to every write (per tenant overrides come with meta).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most labels a series may have, `__name__` included.
    pub max_label_names_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
    /// Largest compressed remote-write or remote-read body, in bytes (413 beyond).
    pub max_request_body_bytes: usize,
    /// Largest body once decompressed, checked against snappy's declared length
    /// before decompressing (413 beyond).
    pub max_decompressed_body_bytes: usize,
    /// Longest PromQL expression accepted, in bytes (0 = no limit).
    pub max_query_bytes: usize,
    /// Decompressed remote-write bytes being written at once; a request
    /// beyond it gets 429 (0 = no limit).
    pub max_inflight_write_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_request_body_bytes: 10 << 20,
            max_decompressed_body_bytes: 100 << 20,
            max_query_bytes: 256 << 10,
            max_inflight_write_bytes: 512 << 20,
        }
    }
}

impl LimitsConfig {
    /// These limits with a tenant's overrides (configuration key → value,
    /// as stored in meta) applied. Unknown keys and values that do not
    /// parse are skipped: an override can only change a limit it names.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> LimitsConfig {
        let mut limits = self.clone();
        for (key, value) in overrides {
            let slot = match key.as_str() {
                "max_label_names_per_series" => &mut limits.max_label_names_per_series,
                "max_label_name_length" => &mut limits.max_label_name_length,
                "max_label_value_length" => &mut limits.max_label_value_length,
                "max_request_body_bytes" => &mut limits.max_request_body_bytes,
                "max_decompressed_body_bytes" => &mut limits.max_decompressed_body_bytes,
                "max_query_bytes" => &mut limits.max_query_bytes,
                _ => continue,
            };
            match value.parse::<usize>() {
                Ok(parsed) => *slot = parsed,
                Err(_) => {
                    tracing::warn!(%key, %value, "tenant limit override is not a number, ignored");
                }
            }
        }
        limits
    }

    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            (
                "limits.max_label_names_per_series",
                self.max_label_names_per_series,
            ),
            ("limits.max_label_name_length", self.max_label_name_length),
            ("limits.max_label_value_length", self.max_label_value_length),
            ("limits.max_request_body_bytes", self.max_request_body_bytes),
            (
                "limits.max_decompressed_body_bytes",
                self.max_decompressed_body_bytes,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Longest rendering of a series in an error message.
const MAX_SERIES_IN_MESSAGE: usize = 512;

/// Checks one series and returns its labels in canonical form (valid
/// UTF-8, sorted, no empty values), or a message naming the series and the
/// problem. Its histograms are checked too.
pub fn validate_series(raw: RawSeries<'_>, limits: &LimitsConfig) -> Result<Vec<Label>, String> {
    // Check the raw bytes first, so messages can show the series as sent.
    let mut labels: Vec<Label> = Vec::with_capacity(raw.label_count());
    for (name, value) in raw.labels() {
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(format!(
                "label name is not valid UTF-8 in series {}",
                render(raw)
            ));
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return Err(format!(
                "label value of {name:?} is not valid UTF-8 in series {}",
                render(raw)
            ));
        };
        if name.is_empty() {
            return Err(format!("empty label name in series {}", render(raw)));
        }
        if !value.is_empty() {
            labels.push(Label {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let shown = || capped(labels::format(&labels));

    if let Some(pair) = labels.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!(
            "duplicate label name {:?} in series {}",
            pair[0].name,
            shown()
        ));
    }
    let metric = labels::get(&labels, METRIC_NAME);
    if metric.is_empty() {
        return Err(format!("series has no metric name: {}", shown()));
    }
    if !is_valid_metric_name(metric) {
        return Err(format!(
            "invalid metric name {metric:?} in series {}",
            shown()
        ));
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err(format!(
            "series has {} labels, more than the limit of {}: {}",
            labels.len(),
            limits.max_label_names_per_series,
            shown()
        ));
    }
    for label in &labels {
        if !is_valid_label_name(&label.name) {
            return Err(format!(
                "invalid label name {:?} in series {}",
                label.name,
                shown()
            ));
        }
        if label.name.len() > limits.max_label_name_length {
            return Err(format!(
                "label name {:?} is longer than {} bytes in series {}",
                label.name,
                limits.max_label_name_length,
                shown()
            ));
        }
        if label.value.len() > limits.max_label_value_length {
            return Err(format!(
                "value of label {:?} is longer than {} bytes in series {}",
                label.name,
                limits.max_label_value_length,
                shown()
            ));
        }
    }
    for histogram in raw.histograms() {
        validate_histogram(histogram).map_err(|why| format!("{why} in series {}", shown()))?;
    }
    Ok(labels)
}

/// The frontend's series rules under one tenant's limits, for the store's
/// [`StoreApi::write_raw`](strata_common::StoreApi::write_raw).
#[derive(Debug)]
pub struct SeriesRules {
    pub limits: LimitsConfig,
}

impl SeriesValidator for SeriesRules {
    fn validate(&self, series: RawSeries<'_>) -> Result<Vec<Label>, String> {
        validate_series(series, &self.limits)
    }

    fn accepts_stored(&self, series: RawSeries<'_>) -> bool {
        // Stored labels are canonical, so as sent they are also what
        // validate_series would count and measure: only the limits (maybe
        // lowered since) and histograms remain to be checked. Anything
        // else goes through validate_series for its exact message.
        series.histograms().is_empty()
            && series.label_count() <= self.limits.max_label_names_per_series
            && series.longest_name() <= self.limits.max_label_name_length
            && series.longest_value() <= self.limits.max_label_value_length
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the legacy label name syntax.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: the legacy metric name syntax.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Structural checks on a native histogram: the spans must describe exactly
/// the buckets sent, in the representation (integer or float) its count uses.
fn validate_histogram(h: &Histogram) -> Result<(), String> {
    let is_float = matches!(h.count, Some(histogram::Count::CountFloat(_)));
    let span_total = |spans: &[strata_proto::prometheus::BucketSpan]| -> u64 {
        spans.iter().map(|s| u64::from(s.length)).sum()
    };
    let (positive, negative) = if is_float {
        (h.positive_counts.len(), h.negative_counts.len())
    } else {
        (h.positive_deltas.len(), h.negative_deltas.len())
    };
    if span_total(&h.positive_spans) != positive as u64 {
        return Err(format!(
            "histogram at {} has positive spans for {} buckets but {positive} buckets",
            h.timestamp,
            span_total(&h.positive_spans)
        ));
    }
    if span_total(&h.negative_spans) != negative as u64 {
        return Err(format!(
            "histogram at {} has negative spans for {} buckets but {negative} buckets",
            h.timestamp,
            span_total(&h.negative_spans)
        ));
    }
    if !(-4..=8).contains(&h.schema) && h.schema != -53 {
        return Err(format!(
            "histogram at {} has unsupported schema {}",
            h.timestamp, h.schema
        ));
    }
    Ok(())
}

/// A series as sent, for messages: lossy for invalid UTF-8, capped.
fn render(raw: RawSeries<'_>) -> String {
    let labels: Vec<Label> = raw
        .labels()
        .map(|(name, value)| Label {
            name: String::from_utf8_lossy(name).into_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
        })
        .collect();
    capped(labels::format(&labels))
}

/// Caps a rendered series at [`MAX_SERIES_IN_MESSAGE`] bytes.
fn capped(mut text: String) -> String {
    if text.len() > MAX_SERIES_IN_MESSAGE {
        let mut cut = MAX_SERIES_IN_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_overrides_change_only_the_limits_they_name() {
        let defaults = LimitsConfig::default();
        let overrides = BTreeMap::from([
            ("max_label_names_per_series".to_owned(), "3".to_owned()),
            ("max_query_bytes".to_owned(), "not a number".to_owned()),
            ("no_such_limit".to_owned(), "7".to_owned()),
        ]);
        let limits = defaults.with_overrides(&overrides);
        assert_eq!(limits.max_label_names_per_series, 3);
        assert_eq!(limits.max_query_bytes, defaults.max_query_bytes);
        assert_eq!(
            LimitsConfig {
                max_label_names_per_series: defaults.max_label_names_per_series,
                ..limits
            },
            defaults
        );
    }
    use prost::Message;
    use strata_common::raw_write::RawWrite;
    use strata_proto::ingest::{RawLabel, RawTimeSeries, RawWriteRequest};
    use strata_proto::prometheus::Sample;

    /// A one-series request as a sender would encode it.
    fn raw_with(pairs: &[(&[u8], &[u8])], histograms: Vec<Histogram>) -> RawWrite {
        let series = RawTimeSeries {
            labels: pairs
                .iter()
                .map(|(n, v)| RawLabel {
                    name: n.to_vec(),
                    value: v.to_vec(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            histograms,
            ..Default::default()
        };
        let request = RawWriteRequest {
            timeseries: vec![series],
            metadata: Vec::new(),
        };
        RawWrite::decode(request.encode_to_vec()).expect("decodes")
    }

    fn raw(pairs: &[(&[u8], &[u8])]) -> RawWrite {
        raw_with(pairs, Vec::new())
    }

    fn validate(write: &RawWrite, limits: &LimitsConfig) -> Result<Vec<Label>, String> {
        validate_series(write.series(0).expect("one series"), limits)
    }

    fn check(pairs: &[(&[u8], &[u8])]) -> Result<Vec<Label>, String> {
        validate(&raw(pairs), &LimitsConfig::default())
    }

    #[test]
    fn sorts_and_drops_empty_values() {
        let labels = check(&[(b"job", b"a"), (b"__name__", b"up"), (b"env", b"")]).expect("valid");
        let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["__name__", "job"]);
    }

    #[test]
    fn each_rule_names_the_series() {
        type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;
        let cases: Vec<(Pairs, &str)> = vec![
            (
                vec![(b"job", b"a")],
                "series has no metric name: {job=\"a\"}",
            ),
            (
                vec![(b"__name__", b"up"), (b"1x", b"a")],
                "invalid label name \"1x\"",
            ),
            (vec![(b"__name__", b"up"), (b"", b"a")], "empty label name"),
            (
                vec![(b"__name__", b"up"), (b"a", b"1"), (b"a", b"2")],
                "duplicate label name \"a\"",
            ),
            (
                vec![(b"__name__", b"up"), (b"a", b"\xff")],
                "not valid UTF-8",
            ),
            (vec![(b"__name__", b"a-b")], "invalid metric name \"a-b\""),
        ];
        for (pairs, expected) in cases {
            let error = check(&pairs).expect_err(expected);
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
        let error = check(&[(b"__name__", b"up"), (b"a", b"\xff")]).expect_err("utf8");
        assert!(error.contains("up{a=\"\u{fffd}\"}"), "{error}");
    }

    #[test]
    fn enforces_limits() {
        let limits = LimitsConfig {
            max_label_names_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 4,
            ..LimitsConfig::default()
        };
        let too_many = raw(&[(b"__name__", b"up"), (b"a", b"1"), (b"b", b"2")]);
        assert!(
            validate(&too_many, &limits)
                .expect_err("count")
                .contains("more than the limit of 2")
        );
        let long_name = raw(&[(b"__name__", b"up"), (b"abcdefghi", b"1")]);
        assert!(
            validate(&long_name, &limits)
                .expect_err("name")
                .contains("longer than 8 bytes")
        );
        let long_value = raw(&[(b"__name__", b"up"), (b"a", b"12345")]);
        assert!(
            validate(&long_value, &limits)
                .expect_err("value")
                .contains("longer than 4 bytes")
        );
    }

    #[test]
    fn histogram_spans_must_match_buckets() {
        let histogram = Histogram {
            count: Some(histogram::Count::CountInt(3)),
            positive_spans: vec![strata_proto::prometheus::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![1],
            ..Default::default()
        };
        let series = raw_with(&[(b"__name__", b"h")], vec![histogram]);
        let error = validate(&series, &LimitsConfig::default()).expect_err("mismatch");
        assert!(
            error.contains("positive spans for 2 buckets but 1 buckets"),
            "{error}"
        );
    }

    #[test]
    fn stored_series_pass_unless_limits_or_histograms_say_otherwise() {
        let series = raw(&[(b"__name__", b"up"), (b"job", b"api")]);
        let series = series.series(0).expect("one series");
        let rules = |limits: LimitsConfig| SeriesRules { limits };
        assert!(rules(LimitsConfig::default()).accepts_stored(series));
        let lowered = [
            LimitsConfig {
                max_label_names_per_series: 1,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                max_label_name_length: 7,
                ..LimitsConfig::default()
            },
            LimitsConfig {
                max_label_value_length: 2,
                ..LimitsConfig::default()
            },
        ];
        for limits in lowered {
            assert!(!rules(limits.clone()).accepts_stored(series), "{limits:?}");
        }
        let with_histogram = raw_with(&[(b"__name__", b"h")], vec![Histogram::default()]);
        let with_histogram = with_histogram.series(0).expect("one series");
        assert!(!rules(LimitsConfig::default()).accepts_stored(with_histogram));
    }

    #[test]
    fn name_syntax() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(!is_valid_metric_name("1a"));
    }
}
