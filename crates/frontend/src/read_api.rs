//! The Prometheus read APIs that need no PromQL: series, label names, label
//! values, metadata, plus build info, the exemplar and rules endpoints
//! Grafana probes, and the health endpoints.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use strata_common::{Matcher, TenantId};
use strata_proto::prometheus::{Label, MetricMetadata, metric_metadata::MetricType};
use strata_proto::store::{
    LabelNamesRequest, LabelValuesRequest, MatcherSet, MetadataRequest, SeriesRequest,
};

use crate::api_error::ApiError;
use crate::params::{MAX_TIME_MS, MIN_TIME_MS, Params};
use crate::read_cache::CachedRead;
use crate::selector::parse_selector;
use crate::{CACHE_HEADER, Frontend};

/// The warning Prometheus adds when `limit` cut a result.
const TRUNCATED_WARNING: &str = "results truncated due to limit";

/// `{"status":"success","data":...}` with optional warnings.
pub(crate) fn success(data: Value, warnings: Vec<String>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), json!("success"));
    body.insert("data".into(), data);
    if !warnings.is_empty() {
        body.insert("warnings".into(), json!(warnings));
    }
    Json(Value::Object(body)).into_response()
}

fn warnings_if(truncated: bool) -> Vec<String> {
    if truncated {
        vec![TRUNCATED_WARNING.to_owned()]
    } else {
        Vec::new()
    }
}

/// A label set as a JSON object; label sets are sorted so keys come out sorted.
fn labels_json(labels: &[Label]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

/// The `[start, end]` of a series/labels request, open-ended by default.
/// An inverted range is not an error: Prometheus answers it with no data.
fn time_range(params: &Params) -> Result<(i64, i64), ApiError> {
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    Ok((start, end))
}

/// How a handler reports a selector that could match every series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyMatcherError {
    /// `invalid parameter "match[]": match[] must contain ...` (series).
    Prefixed,
    /// `match[] must contain ...` (labels, label values).
    Bare,
}

const EMPTY_MATCHER_MESSAGE: &str = "match[] must contain at least one non-empty matcher";

/// Parses every `match[]` selector into a matcher set. Like Prometheus, a
/// set whose matchers all match the empty string is refused.
fn matcher_sets(params: &Params, empty: EmptyMatcherError) -> Result<Vec<MatcherSet>, ApiError> {
    params
        .all("match[]")
        .into_iter()
        .map(|text| {
            let matchers =
                parse_selector(text).map_err(|e| ApiError::invalid_param("match[]", e))?;
            if matchers.iter().all(Matcher::matches_empty) {
                return Err(match empty {
                    EmptyMatcherError::Prefixed => {
                        ApiError::invalid_param("match[]", EMPTY_MATCHER_MESSAGE)
                    }
                    EmptyMatcherError::Bare => ApiError::bad_data(EMPTY_MATCHER_MESSAGE),
                });
            }
            Ok(MatcherSet {
                matchers: matchers.iter().map(Matcher::to_proto).collect(),
            })
        })
        .collect()
}

/// Decodes Prometheus' `U__` escaping of label names in URL paths
/// (`U__http_2e_status` → `http.status`, `__` → `_`).
pub(crate) fn unescape_label_name(name: &str) -> Option<String> {
    let Some(escaped) = name.strip_prefix("U__") else {
        return Some(name.to_owned());
    };
    let mut out = String::new();
    let mut chars = escaped.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let hex: String = chars.by_ref().take_while(|c| *c != '_').collect();
        let code = u32::from_str_radix(&hex, 16).ok()?;
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

/// Marks whether an answer came from the read cache.
fn with_cache_header(mut response: Response, status: &'static str) -> Response {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(status));
    response
}

impl Frontend {
    /// The read cache's key for an endpoint's request, when its answer can
    /// no longer change (see [`crate::read_cache`]).
    fn read_cache_key(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        name: &str,
        params: &Params,
        (start_ms, end_ms): (i64, i64),
        limit: u64,
    ) -> Option<String> {
        let request = || {
            format!(
                "{endpoint}\u{0}{name}\u{0}{:?}\u{0}{start_ms}\u{0}{end_ms}\u{0}{limit}",
                params.all("match[]")
            )
        };
        self.read_cache()
            .key(tenant.as_str(), request, end_ms, crate::query_api::now_ms())
    }

    /// The answer under `key` from the read cache, or `fetch`ed (and
    /// cached when there is a key); with the cache status for the header.
    async fn cached_read(
        &self,
        key: Option<String>,
        fetch: impl Future<Output = Result<CachedRead, ApiError>>,
    ) -> Result<(CachedRead, &'static str), ApiError> {
        if let Some(hit) = key.as_deref().and_then(|k| self.read_cache().get(k)) {
            return Ok((hit.as_ref().clone(), "hit"));
        }
        let answer = fetch.await?;
        if let Some(key) = key {
            self.read_cache().insert(key, answer.clone());
        }
        Ok((answer, "miss"))
    }

    pub(crate) async fn series(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let sets = matcher_sets(params, EmptyMatcherError::Prefixed)?;
        if sets.is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let (start_ms, end_ms) = time_range(params)?;
        let limit = params.limit()?;
        let key = self.read_cache_key(&tenant, "series", "", params, (start_ms, end_ms), limit);
        let fetch = async {
            let response = self
                .store()
                .series(SeriesRequest {
                    tenant: tenant.to_string(),
                    matcher_sets: sets,
                    start_ms,
                    end_ms,
                    limit,
                })
                .await?;
            let data = response.series.iter().map(|s| labels_json(&s.labels));
            Ok(CachedRead::new(
                Value::Array(data.collect()),
                response.truncated,
            ))
        };
        let (answer, cache) = self.cached_read(key, fetch).await?;
        Ok(with_cache_header(
            success(answer.data, warnings_if(answer.truncated)),
            cache,
        ))
    }

    pub(crate) async fn label_names(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let (start_ms, end_ms) = time_range(params)?;
        let limit = params.limit()?;
        let sets = matcher_sets(params, EmptyMatcherError::Bare)?;
        let key = self.read_cache_key(&tenant, "labels", "", params, (start_ms, end_ms), limit);
        let fetch = async {
            let response = self
                .store()
                .label_names(LabelNamesRequest {
                    tenant: tenant.to_string(),
                    matcher_sets: sets,
                    start_ms,
                    end_ms,
                    limit,
                })
                .await?;
            Ok(CachedRead::new(json!(response.names), response.truncated))
        };
        let (answer, cache) = self.cached_read(key, fetch).await?;
        Ok(with_cache_header(
            success(answer.data, warnings_if(answer.truncated)),
            cache,
        ))
    }

    pub(crate) async fn label_values(
        &self,
        headers: &HeaderMap,
        params: &Params,
        name: &str,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        // Like Prometheus, an escape that does not decode is taken literally.
        let name = unescape_label_name(name).unwrap_or_else(|| name.to_owned());
        if name.is_empty() {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        let (start_ms, end_ms) = time_range(params)?;
        let limit = params.limit()?;
        let sets = matcher_sets(params, EmptyMatcherError::Bare)?;
        let key = self.read_cache_key(&tenant, "values", &name, params, (start_ms, end_ms), limit);
        let fetch = async {
            let response = self
                .store()
                .label_values(LabelValuesRequest {
                    tenant: tenant.to_string(),
                    name,
                    matcher_sets: sets,
                    start_ms,
                    end_ms,
                    limit,
                })
                .await?;
            Ok(CachedRead::new(json!(response.values), response.truncated))
        };
        let (answer, cache) = self.cached_read(key, fetch).await?;
        Ok(with_cache_header(
            success(answer.data, warnings_if(answer.truncated)),
            cache,
        ))
    }

    pub(crate) async fn metadata(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let parse_limit = |name: &str| -> Result<Option<i64>, ApiError> {
            params
                .get(name)
                .map(|text| {
                    text.parse::<i64>()
                        .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))
                })
                .transpose()
        };
        // As in Prometheus: a negative `limit` means no limit and 0 means no
        // families at all; `limit_per_metric` limits only when positive.
        let limit = parse_limit("limit")?;
        if limit == Some(0) {
            return Ok(success(Value::Object(Map::new()), Vec::new()));
        }
        let as_store_limit =
            |limit: Option<i64>| limit.map_or(0, |n| u64::try_from(n).unwrap_or(0));
        let response = self
            .store()
            .metadata(MetadataRequest {
                tenant: tenant.to_string(),
                metric: params.get("metric").unwrap_or("").to_owned(),
                limit: as_store_limit(limit),
                limit_per_metric: as_store_limit(parse_limit("limit_per_metric")?),
            })
            .await?;
        let data: Map<String, Value> = response
            .families
            .iter()
            .map(|f| {
                (
                    f.metric.clone(),
                    Value::Array(f.entries.iter().map(metadata_json).collect()),
                )
            })
            .collect();
        Ok(success(Value::Object(data), Vec::new()))
    }
}

/// One metadata entry as Prometheus renders it.
fn metadata_json(entry: &MetricMetadata) -> Value {
    let kind = match MetricType::try_from(entry.r#type).unwrap_or(MetricType::Unknown) {
        MetricType::Unknown => "unknown",
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Gaugehistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::Stateset => "stateset",
    };
    json!({"type": kind, "help": entry.help, "unit": entry.unit})
}

/// `/api/v1/status/buildinfo`: Prometheus' shape with our version and no
/// `features` key (which would make Grafana treat us as Mimir with a ruler).
pub(crate) async fn build_info() -> Response {
    success(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": option_env!("STRATA_GIT_REVISION").unwrap_or("unknown"),
            "branch": option_env!("STRATA_GIT_BRANCH").unwrap_or("unknown"),
            "buildUser": "strata",
            "buildDate": option_env!("STRATA_BUILD_DATE").unwrap_or("unknown"),
            "goVersion": "n/a (rust)",
        }),
        Vec::new(),
    )
}

/// Exemplars are not stored yet: a successful empty answer, as Prometheus
/// gives when it has none.
pub(crate) async fn query_exemplars() -> Response {
    success(json!([]), Vec::new())
}

/// No recording or alerting rules yet.
pub(crate) async fn rules() -> Response {
    success(json!({"groups": []}), Vec::new())
}

pub(crate) async fn healthy() -> Response {
    (StatusCode::OK, "Strata is Healthy.\n").into_response()
}

pub(crate) fn ready(is_ready: bool) -> Response {
    if is_ready {
        (StatusCode::OK, "Strata is Ready.\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_utf8_label_names() {
        assert_eq!(unescape_label_name("job").as_deref(), Some("job"));
        assert_eq!(
            unescape_label_name("U__http_2e_status__code").as_deref(),
            Some("http.status_code")
        );
        assert_eq!(unescape_label_name("U__a_1f600_").as_deref(), Some("a😀"));
        assert_eq!(unescape_label_name("U__a_zz_"), None);
    }

    #[test]
    fn metadata_types_are_lowercase_names() {
        let entry = MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "x".into(),
            help: "h".into(),
            unit: "".into(),
        };
        assert_eq!(
            metadata_json(&entry),
            json!({"type":"counter","help":"h","unit":""})
        );
    }
}
