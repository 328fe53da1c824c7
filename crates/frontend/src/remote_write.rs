//! Remote write 1.0 ingestion (`/api/v1/push`, `/api/v1/write`): size checks
//! before decompression, snappy + protobuf decoding, per-series validation,
//! then one write to the store. Valid series are written even when others
//! are refused; the answer is then 400 naming the first refused series.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_common::raw_write::RawWrite;
use strata_common::{ErrorClass, RawWriteResponse, TenantId};
use strata_proto::store::WriteResponse;

use crate::Frontend;
use crate::api_error::ApiError;
use crate::validation::SeriesRules;

const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// Reads a request body, refusing (413) more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorClass::TooLarge,
            format!("request body larger than the limit of {limit} bytes"),
        )
    })
}

/// Decompresses a snappy block, checking its declared length against `limit`
/// first so a tiny body cannot make us allocate gigabytes.
pub(crate) fn decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = snap::raw::decompress_len(compressed)
        .map_err(|e| ApiError::bad_data(format!("body is not snappy-compressed: {e}")))?;
    if declared > limit {
        return Err(ApiError::new(
            ErrorClass::TooLarge,
            format!(
                "decompressed body of {declared} bytes is larger than the limit of {limit} bytes"
            ),
        ));
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the declared length was checked above"
    )]
    snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|e| ApiError::bad_data(format!("body is not snappy-compressed: {e}")))
}

/// Remote write 2.0 and unknown encodings are refused with 415, as the spec asks.
fn check_content_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |message: String| ApiError::new(ErrorClass::UnsupportedMediaType, message);
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("").trim();
        if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("snappy") {
            return Err(unsupported(format!(
                "unsupported content encoding {encoding:?}"
            )));
        }
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or("");
        let proto = content_type
            .split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == "proto")
            .map(|(_, v)| v.trim());
        if let Some(proto) = proto
            && proto != "prometheus.WriteRequest"
        {
            return Err(unsupported(format!(
                "unsupported remote write message {proto:?}"
            )));
        }
    }
    Ok(())
}

/// Most bytes of memory a request's series, labels and samples may take
/// once read, per byte of its decompressed body: real requests take about
/// one, the smallest useful series (one short label, one sample) about
/// four; a body of empty series or histograms would take 26 to 100.
const MAX_PARTS_PER_BODY_BYTE: usize = 8;

/// What a remote-write request did, for the response.
#[derive(Debug, Default)]
struct Ingested {
    written: WriteResponse,
    refused_series: usize,
    refused_samples: u64,
    first_refusal: Option<String>,
}

impl Frontend {
    pub(crate) async fn remote_write(&self, headers: &HeaderMap, body: Body) -> Response {
        match self.try_remote_write(headers, body).await {
            Ok(ingested) => ingested.into_response(),
            Err(error) => error.into_text_response(),
        }
    }

    async fn try_remote_write(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Ingested, ApiError> {
        let tenant = self.tenant(headers)?;
        check_content_headers(headers)?;
        let limits = self.limits_for(&tenant);
        let compressed = read_body(body, limits.max_request_body_bytes).await?;
        let decoded = decompress(&compressed, limits.max_decompressed_body_bytes)?;
        let mut in_flight = self.admit_write_bytes(decoded.len())?;
        let body_len = decoded.len();
        let request = RawWrite::decode_within(decoded, MAX_PARTS_PER_BODY_BYTE).map_err(|e| {
            ApiError::bad_data(format!(
                "body is not a valid remote-write protobuf message: {e}"
            ))
        })?;
        // What reading it took beyond the body counts too.
        in_flight.grow(
            request.memory_bytes().saturating_sub(body_len),
            self.config().limits.max_inflight_write_bytes,
        )?;
        self.ingest(&tenant, request).await
    }

    /// Counts `bytes` as being written until the guard drops; 429 when
    /// that would exceed `limits.max_inflight_write_bytes` (senders back
    /// off and retry, and the frontend's memory stays bounded).
    fn admit_write_bytes(&self, bytes: usize) -> Result<InFlightWrite, ApiError> {
        admit(
            self.inflight_write_bytes(),
            self.config().limits.max_inflight_write_bytes,
            bytes,
        )
    }

    async fn ingest(&self, tenant: &TenantId, mut request: RawWrite) -> Result<Ingested, ApiError> {
        let rules = SeriesRules {
            limits: self.limits_for(tenant).into_owned(),
        };
        request
            .metadata_mut()
            .retain(|m| !m.metric_family_name.is_empty());
        let RawWriteResponse { written, invalid } = self
            .store()
            .write_raw(tenant.as_str(), request, Arc::new(rules))
            .await?;
        // The validator's refusals first (they are what the sender must
        // fix), then the store's, each in request order.
        let mut ingested = Ingested {
            refused_series: usize::try_from(invalid.series).unwrap_or(usize::MAX),
            refused_samples: invalid.samples,
            first_refusal: invalid.first.map(|first| first.reason),
            ..Ingested::default()
        };
        for refused in &written.rejected {
            ingested.refused_series += 1;
            ingested.refused_samples += refused.rejected_samples;
            ingested
                .first_refusal
                .get_or_insert_with(|| refused.reason.clone());
        }
        self.metrics()
            .observe_ingest(&written, ingested.refused_samples);
        if let Some(first) = &ingested.first_refusal {
            tracing::debug!(
                tenant = %tenant,
                refused_series = ingested.refused_series,
                refused_samples = ingested.refused_samples,
                first = %first,
                "remote write refused some series"
            );
        }
        ingested.written = written;
        Ok(ingested)
    }
}

impl IntoResponse for Ingested {
    fn into_response(self) -> Response {
        let mut response = match &self.first_refusal {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(first) => ApiError::bad_data(format!(
                "{} series with {} samples refused; the first: {first}",
                self.refused_series, self.refused_samples
            ))
            .into_text_response(),
        };
        let headers = response.headers_mut();
        let count = |n: u64| HeaderValue::from(n);
        headers.insert(SAMPLES_WRITTEN, count(self.written.samples_written));
        headers.insert(HISTOGRAMS_WRITTEN, count(self.written.histograms_written));
        headers.insert(EXEMPLARS_WRITTEN, count(0));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_is_checked_before_decompressing() {
        let big = vec![0u8; 1 << 20];
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&big)
            .expect("compress");
        assert!(compressed.len() < 100_000);
        let error = decompress(&compressed, 1000).expect_err("too large");
        assert_eq!(error.class, ErrorClass::TooLarge);
        assert_eq!(
            decompress(&compressed, 1 << 20).expect("fits").len(),
            1 << 20
        );
        let error = decompress(b"\xff\xff\xff\xff\xff\xff", 1000).expect_err("garbage");
        assert_eq!(error.class, ErrorClass::BadData);
    }

    #[test]
    fn in_flight_bytes_are_bounded_and_released() {
        let counter = Arc::new(AtomicUsize::new(0));
        let first = admit(&counter, 100, 60).expect("room");
        let refused = admit(&counter, 100, 60).expect_err("over the limit");
        assert_eq!(refused.class, ErrorClass::RateLimited);
        assert_eq!(
            counter.load(Ordering::Acquire),
            60,
            "a refusal holds nothing"
        );
        let small = admit(&counter, 100, 40).expect("fits exactly");
        drop(first);
        drop(small);
        assert_eq!(counter.load(Ordering::Acquire), 0);
        // Alone, a request larger than the limit is admitted.
        let big = admit(&counter, 100, 500).expect("alone");
        drop(big);
        assert_eq!(counter.load(Ordering::Acquire), 0);
        // 0: no limit.
        let _a = admit(&counter, 0, 1 << 30).expect("unlimited");
        let _b = admit(&counter, 0, 1 << 30).expect("unlimited");
    }

    #[test]
    fn a_write_grows_on_the_same_terms() {
        let counter = Arc::new(AtomicUsize::new(0));
        // Alone: its own bytes do not count against it.
        let mut alone = admit(&counter, 100, 80).expect("room");
        alone.grow(300, 100).expect("alone");
        drop(alone);
        assert_eq!(counter.load(Ordering::Acquire), 0);
        // Beside another write: refused past the limit, and released.
        let other = admit(&counter, 100, 30).expect("room");
        let mut write = admit(&counter, 100, 50).expect("room");
        write.grow(10, 100).expect("fits");
        let refused = write.grow(20, 100).expect_err("over the limit");
        assert_eq!(refused.class, ErrorClass::RateLimited);
        drop(write);
        assert_eq!(counter.load(Ordering::Acquire), 30);
        drop(other);
        assert_eq!(counter.load(Ordering::Acquire), 0);
    }

    #[test]
    fn content_headers() {
        let mut headers = HeaderMap::new();
        assert!(check_content_headers(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        assert!(check_content_headers(&headers).is_ok());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request",
            ),
        );
        assert!(check_content_headers(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(check_content_headers(&headers).is_err());
    }
}

/// Counts `bytes` in `counter` unless that exceeds `limit` while something
/// else is in flight. A request alone above the limit still gets through,
/// or it could never be written.
fn admit(
    counter: &Arc<AtomicUsize>,
    limit: usize,
    bytes: usize,
) -> Result<InFlightWrite, ApiError> {
    let before = counter.fetch_add(bytes, Ordering::AcqRel);
    let guard = InFlightWrite {
        counter: counter.clone(),
        bytes,
    };
    check_in_flight(limit, before, before + bytes)?;
    Ok(guard)
}

/// 429 when `total` bytes in flight exceed `limit` and `others` of them
/// belong to other writes.
fn check_in_flight(limit: usize, others: usize, total: usize) -> Result<(), ApiError> {
    if limit > 0 && others > 0 && total > limit {
        return Err(ApiError::new(
            ErrorClass::RateLimited,
            format!(
                "too many remote-write bytes in flight: {total} of at most {limit} (limits.max_inflight_write_bytes); retry later"
            ),
        ));
    }
    Ok(())
}

/// Bytes of one write (its decompressed body, then what reading it
/// took), counted while it is in flight.
#[derive(Debug)]
struct InFlightWrite {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl InFlightWrite {
    /// Counts `extra` more bytes of this write, on [`admit`]'s terms: its
    /// own bytes are not "something else in flight".
    fn grow(&mut self, extra: usize, limit: usize) -> Result<(), ApiError> {
        let before = self.counter.fetch_add(extra, Ordering::AcqRel);
        let others = before.saturating_sub(self.bytes);
        self.bytes += extra;
        check_in_flight(limit, others, before + extra)
    }
}

impl Drop for InFlightWrite {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}
