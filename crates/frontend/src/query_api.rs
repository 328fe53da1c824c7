//! `/api/v1/query` and `/api/v1/query_range`: parameter parsing and limits
//! as Prometheus does them, evaluation by a querier ([`QueryApi`]), and
//! Prometheus' exact JSON rendering (values as Go formats floats, times as
//! seconds with millisecond precision).

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use strata_proto::prometheus::Label;
use strata_proto::query::{QueryRequest, QueryResponse, query_response};

use strata_common::TenantId;

use crate::Frontend;
use crate::api_error::ApiError;
use crate::params::Params;
use strata_common::duration::parse_seconds_or_duration_ms as parse_duration_ms;

/// Prometheus' limit on points per series in a range query.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

impl Frontend {
    pub(crate) async fn instant_query(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let now = now_ms();
        let time = params.time_or("time", now)?;
        let request = QueryRequest {
            tenant: tenant.to_string(),
            query: params.get("query").unwrap_or("").to_owned(),
            start_ms: time,
            end_ms: time,
            step_ms: 0,
            lookback_delta_ms: optional_duration(params, "lookback_delta")?,
            timeout_ms: optional_duration(params, "timeout")?,
        };
        self.run_query(&tenant, request, wants_stats(params)).await
    }

    pub(crate) async fn range_query(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let start = required_time(params, "start")?;
        let end = required_time(params, "end")?;
        if end < start {
            return Err(ApiError::invalid_param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step = match params.get("step") {
            None => {
                return Err(ApiError::invalid_param(
                    "step",
                    "cannot parse \"\" to a valid duration",
                ));
            }
            Some(text) => parse_duration_ms(text).ok_or_else(|| {
                ApiError::invalid_param(
                    "step",
                    format!("cannot parse {text:?} to a valid duration"),
                )
            })?,
        };
        if step <= 0 {
            return Err(ApiError::invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        // For safety, limit the number of returned points per timeseries (Prometheus' rule).
        if (end - start) / step > MAX_POINTS_PER_SERIES {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let request = QueryRequest {
            tenant: tenant.to_string(),
            query: params.get("query").unwrap_or("").to_owned(),
            start_ms: start,
            end_ms: end,
            step_ms: step,
            lookback_delta_ms: optional_duration(params, "lookback_delta")?,
            timeout_ms: optional_duration(params, "timeout")?,
        };
        self.run_query(&tenant, request, wants_stats(params)).await
    }

    async fn run_query(
        &self,
        tenant: &TenantId,
        request: QueryRequest,
        stats: bool,
    ) -> Result<Response, ApiError> {
        check_query_size(&request.query, self.limits_for(tenant).max_query_bytes)?;
        let Some(querier) = self.querier() else {
            return Err(ApiError::new(
                strata_common::ErrorClass::Unavailable,
                "no querier is configured for this frontend",
            ));
        };
        let started = std::time::Instant::now();
        let now = now_ms();
        // Answers with `stats` carry their own timings: never kept whole.
        let rendered_key = if stats {
            None
        } else {
            querier.rendered_key(&request, now)
        };
        if let Some(key) = &rendered_key
            && let Some(body) = querier.rendered(key, &request, now)?
        {
            return Ok(json_response(body, "hit"));
        }
        let (response, outcome) = querier.query(request, now).await?;
        let stats = stats.then(|| QueryStats {
            seconds: started.elapsed().as_secs_f64(),
            total_queryable_samples: response.total_queryable_samples,
            peak_samples: response.peak_samples,
            frontend: Some(outcome.clone()),
        });
        let body = Bytes::from(render_success(&response, stats.as_ref()));
        if let Some(key) = rendered_key.filter(|_| outcome.whole_cached) {
            querier.keep_rendered(key, body.clone());
        }
        Ok(json_response(body, outcome.cache_status()))
    }
}

/// Whether the request asked for `stats` (any non-empty value, as Prometheus).
fn wants_stats(params: &Params) -> bool {
    params.get("stats").is_some()
}

/// What `stats=true` reports: Prometheus' shape. The querier runs in one
/// phase here, so every evaluation timing is the query's wall time and the
/// queue and preparation times are zero; samples are those the selectors
/// loaded. (`stats=all`'s per-step counts are not produced yet.)
#[derive(Debug, Clone)]
pub(crate) struct QueryStats {
    seconds: f64,
    total_queryable_samples: u64,
    peak_samples: u64,
    /// What the query frontend did: splits, shards, cache, querier calls, queue time.
    frontend: Option<crate::query_frontend::QueryOutcome>,
}

fn write_stats(out: &mut String, stats: &QueryStats) {
    let t = stats.seconds;
    let queue = stats.frontend.as_ref().map_or(0.0, |f| f.queue_seconds);
    let _ = write!(
        out,
        r#","stats":{{"timings":{{"evalTotalTime":{t},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{t},"execQueueTime":{queue},"execTotalTime":{t}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}"#,
        stats.total_queryable_samples, stats.peak_samples
    );
    if let Some(f) = &stats.frontend {
        let _ = write!(
            out,
            r#","queryFrontend":{{"splits":{},"shards":{},"cachedExtents":{},"querierCalls":{},"cache":"{}"}}"#,
            f.splits,
            f.shards,
            f.cached,
            f.fetched,
            f.cache_status()
        );
    }
    out.push('}');
}

/// Refuses expressions longer than `limit` bytes (0 = no limit) before any work.
fn check_query_size(query: &str, limit: usize) -> Result<(), ApiError> {
    if limit > 0 && query.len() > limit {
        return Err(ApiError::invalid_param(
            "query",
            format!(
                "the query is {} bytes long, more than the limit of {limit} bytes (limits.max_query_bytes)",
                query.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn required_time(params: &Params, name: &str) -> Result<i64, ApiError> {
    let text = params.get(name).unwrap_or("");
    crate::params::parse_time(text).ok_or_else(|| {
        ApiError::invalid_param(name, format!("cannot parse {text:?} to a valid timestamp"))
    })
}

/// A duration parameter in ms, 0 when absent.
fn optional_duration(params: &Params, name: &str) -> Result<i64, ApiError> {
    match params.get(name) {
        None => Ok(0),
        Some(text) => parse_duration_ms(text).ok_or_else(|| {
            ApiError::invalid_param(name, format!("cannot parse {text:?} to a valid duration"))
        }),
    }
}

/// A 200 JSON answer whose `X-Strata-Cache` header says `cache`.
fn json_response(body: Bytes, cache: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(crate::CACHE_HEADER, HeaderValue::from_static(cache));
    response
}

/// `{"status":"success","data":{"resultType":...,"result":...}}` plus
/// warnings and infos, written by hand so numbers come out as Prometheus'.
pub(crate) fn render_success(response: &QueryResponse, stats: Option<&QueryStats>) -> String {
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"#);
    match &response.result {
        Some(query_response::Result::Scalar(s)) => {
            out.push_str(r#""scalar","result":"#);
            write_point(&mut out, s.timestamp_ms, s.value);
        }
        Some(query_response::Result::String(s)) => {
            out.push_str(r#""string","result":["#);
            out.push_str(&format_timestamp(s.timestamp_ms));
            out.push(',');
            push_json_string(&mut out, &s.value);
            out.push(']');
        }
        Some(query_response::Result::Vector(v)) => {
            out.push_str(r#""vector","result":["#);
            for (i, sample) in v.samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &sample.labels);
                out.push_str(r#","value":"#);
                write_point(&mut out, sample.timestamp_ms, sample.value);
                out.push('}');
            }
            out.push(']');
        }
        Some(query_response::Result::Matrix(m)) => {
            out.push_str(r#""matrix","result":["#);
            for (i, series) in m.series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(&mut out, &series.labels);
                out.push_str(r#","values":["#);
                for (j, (t, v)) in series.timestamps_ms.iter().zip(&series.values).enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
        None => out.push_str(r#""vector","result":[]"#),
    }
    if let Some(stats) = stats {
        write_stats(&mut out, stats);
    }
    out.push('}');
    write_annotations(&mut out, "warnings", &response.warnings);
    write_annotations(&mut out, "infos", &response.infos);
    out.push('}');
    out
}

fn write_annotations(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, r#","{key}":["#);
    // Prometheus caps each list at 10 entries.
    for (i, item) in items.iter().take(10).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, item);
    }
    out.push(']');
}

/// `[<seconds>,"<value>"]`, written in place (a matrix has millions of points).
fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    let sign = if t < 0 { "-" } else { "" };
    let (seconds, fraction) = (t.unsigned_abs() / 1000, t.unsigned_abs() % 1000);
    let _ = if fraction == 0 {
        write!(out, "{sign}{seconds}")
    } else {
        write!(out, "{sign}{seconds}.{fraction:03}")
    };
    out.push_str(",\"");
    // Plain decimals (the common case) need no rewriting of Rust's output.
    if v.is_finite() && (v == 0.0 || (1e-6..1e21).contains(&v.abs())) {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_value(v));
    }
    out.push_str("\"]");
}

fn write_labels(out: &mut String, labels: &[Label]) {
    out.push('{');
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, &label.name);
        out.push(':');
        push_json_string(out, &label.value);
    }
    out.push('}');
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::String(text.to_owned()).to_string());
}

/// Milliseconds as Prometheus writes them: seconds, then `.` and exactly
/// three digits when the milliseconds are not zero (`1435781451.780`).
pub(crate) fn format_timestamp(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (seconds, fraction) = (abs / 1000, abs % 1000);
    if fraction == 0 {
        format!("{sign}{seconds}")
    } else {
        format!("{sign}{seconds}.{fraction:03}")
    }
}

/// A float as Prometheus renders it: Go's shortest round-trip formatting,
/// `'e'` notation below 1e-6 or from 1e21 on, `NaN`, `+Inf`, `-Inf`.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e-7` / `1.5e21`; Go writes `1e-07` / `1.5e+21`.
        let rust = format!("{v:e}");
        let Some((mantissa, exponent)) = rust.split_once('e') else {
            return rust;
        };
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(digits) => ('-', digits),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    // Rust's Display is the shortest round-trip decimal without exponent, like Go's 'f', -1.
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::query::Scalar;

    #[test]
    fn formats_values_like_go() {
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(-0.5), "-0.5");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(1e-7), "1e-07");
        assert_eq!(format_value(1.5e21), "1.5e+21");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(
            format_value(123456789012345680000.0),
            "123456789012345680000"
        );
        assert_eq!(format_value(0.000001), "0.000001");
        assert_eq!(format_value(-2.5e-300), "-2.5e-300");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "-0");
    }

    #[test]
    fn formats_timestamps_like_prometheus() {
        assert_eq!(format_timestamp(4000), "4");
        assert_eq!(format_timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_timestamp(1_435_781_451_780), "1435781451.780");
        assert_eq!(format_timestamp(5), "0.005");
        assert_eq!(format_timestamp(-1500), "-1.500");
    }

    #[test]
    fn stats_have_prometheus_shape() {
        let response = QueryResponse {
            result: Some(query_response::Result::Scalar(Scalar {
                timestamp_ms: 4000,
                value: 2.0,
            })),
            ..Default::default()
        };
        let stats = QueryStats {
            seconds: 0.5,
            total_queryable_samples: 7,
            peak_samples: 3,
            frontend: None,
        };
        let json: serde_json::Value =
            serde_json::from_str(&render_success(&response, Some(&stats))).expect("valid json");
        let data = &json["data"];
        assert_eq!(data["result"], serde_json::json!([4, "2"]));
        assert_eq!(data["stats"]["samples"]["totalQueryableSamples"], 7);
        assert_eq!(data["stats"]["samples"]["peakSamples"], 3);
        assert_eq!(data["stats"]["timings"]["execTotalTime"], 0.5);
        let keys: Vec<&String> = data["stats"]["timings"]
            .as_object()
            .expect("object")
            .keys()
            .collect();
        assert_eq!(
            keys,
            [
                "evalTotalTime",
                "resultSortTime",
                "queryPreparationTime",
                "innerEvalTime",
                "execQueueTime",
                "execTotalTime"
            ]
        );
    }

    #[test]
    fn long_queries_are_refused_before_evaluation() {
        assert!(check_query_size("up", 2).is_ok());
        assert!(check_query_size("up", 0).is_ok());
        let error = check_query_size("sum(up)", 3).expect_err("too long");
        assert_eq!(error.class, strata_common::ErrorClass::BadData);
        assert!(
            error
                .message
                .contains("7 bytes long, more than the limit of 3"),
            "{}",
            error.message
        );
    }

    #[test]
    fn grafana_health_check_shape() {
        let response = QueryResponse {
            result: Some(query_response::Result::Scalar(Scalar {
                timestamp_ms: 4000,
                value: 2.0,
            })),
            ..Default::default()
        };
        assert_eq!(
            render_success(&response, None),
            r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
        );
    }
}
