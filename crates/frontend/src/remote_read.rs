//! Remote read (`POST /api/v1/read`): both response types Prometheus knows,
//! chosen by the first supported entry of `accepted_response_types`.
//!
//! - `SAMPLES`: one snappy-compressed `ReadResponse`.
//! - `STREAMED_XOR_CHUNKS`: frames of `uvarint(len) ‖ CRC32C(msg) big-endian
//!   ‖ ChunkedReadResponse`, one series per frame (a series spills over into
//!   more frames when its chunks exceed the frame size), carrying the XOR
//!   chunks exactly as the store holds them. Native histograms are only
//!   returned by `SAMPLES` for now: their chunk encoding is not implemented.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use strata_common::compact_chunk;
use strata_common::{Matcher, TenantId};
use strata_proto::prometheus::{
    Chunk, ChunkedReadResponse, ChunkedSeries, Query, QueryResult, ReadRequest, ReadResponse,
    Sample, TimeSeries, read_request::ResponseType,
};
use strata_proto::store::{SelectRequest, SelectedSeries};

use crate::Frontend;
use crate::api_error::ApiError;
use crate::remote_write::{decompress, read_body};

/// Prometheus' client matches this exact string.
const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
/// Prometheus' `--storage.remote.read-max-bytes-in-frame` default.
pub const DEFAULT_MAX_BYTES_IN_FRAME: usize = 1 << 20;
/// Prometheus' `--storage.remote.read-sample-limit` default.
pub const DEFAULT_SAMPLE_LIMIT: u64 = 50_000_000;

/// Picks the first response type we support, in the client's order.
fn negotiate(accepted: &[i32]) -> Result<ResponseType, ApiError> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    accepted
        .iter()
        .find_map(|t| ResponseType::try_from(*t).ok())
        .ok_or_else(|| {
            ApiError::bad_data("server does not support any of the requested response types")
        })
}

impl Frontend {
    pub(crate) async fn remote_read(&self, headers: &HeaderMap, body: Body) -> Response {
        match self.try_remote_read(headers, body).await {
            Ok(response) => response,
            Err(error) => error.into_text_response(),
        }
    }

    async fn try_remote_read(&self, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
        let tenant = self.tenant(headers)?;
        let limits = &self.config().limits;
        let compressed = read_body(body, limits.max_request_body_bytes).await?;
        let decoded = decompress(&compressed, limits.max_decompressed_body_bytes)?;
        let request = ReadRequest::decode(decoded.as_slice()).map_err(|e| {
            ApiError::bad_data(format!(
                "body is not a valid remote-read protobuf message: {e}"
            ))
        })?;
        match negotiate(&request.accepted_response_types)? {
            ResponseType::Samples => self.read_samples(&tenant, &request.queries).await,
            ResponseType::StreamedXorChunks => self.read_streamed(&tenant, &request.queries).await,
        }
    }

    async fn select(
        &self,
        tenant: &TenantId,
        query: &Query,
    ) -> Result<Vec<SelectedSeries>, ApiError> {
        for m in &query.matchers {
            Matcher::from_proto(m).map_err(|e| ApiError::bad_data(e.to_string()))?;
        }
        Ok(self
            .store()
            .select(SelectRequest {
                tenant: tenant.to_string(),
                matchers: query.matchers.clone(),
                start_ms: query.start_timestamp_ms,
                end_ms: query.end_timestamp_ms,
            })
            .await?)
    }

    async fn read_samples(
        &self,
        tenant: &TenantId,
        queries: &[Query],
    ) -> Result<Response, ApiError> {
        let sample_limit = self.config().remote_read.sample_limit;
        let mut results = Vec::with_capacity(queries.len());
        let mut total: u64 = 0;
        for query in queries {
            let mut timeseries = Vec::new();
            for series in self.select(tenant, query).await? {
                let samples = decode_samples(&series)?;
                total += (samples.len() + series.histograms.len()) as u64;
                if sample_limit > 0 && total > sample_limit {
                    return Err(ApiError::bad_data(format!(
                        "exceeded sample limit ({sample_limit})"
                    )));
                }
                timeseries.push(TimeSeries {
                    labels: series.labels,
                    samples,
                    exemplars: Vec::new(),
                    histograms: series.histograms,
                });
            }
            results.push(QueryResult { timeseries });
        }
        let encoded = ReadResponse { results }.encode_to_vec();
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&encoded)
            .map_err(|e| {
                ApiError::new(
                    strata_common::ErrorClass::Internal,
                    format!("snappy failed: {e}"),
                )
            })?;
        let mut response = (StatusCode::OK, compressed).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        Ok(response)
    }

    async fn read_streamed(
        &self,
        tenant: &TenantId,
        queries: &[Query],
    ) -> Result<Response, ApiError> {
        let max_frame = self.config().remote_read.max_bytes_in_frame;
        let mut frames: Vec<Result<Vec<u8>, std::io::Error>> = Vec::new();
        for (index, query) in queries.iter().enumerate() {
            for mut series in self.select(tenant, query).await? {
                series.chunks = as_xor_chunks(std::mem::take(&mut series.chunks))?;
                for message in series_messages(series, index as i64, max_frame) {
                    frames.push(Ok(frame(&message.encode_to_vec())));
                }
            }
        }
        let mut response = Body::from_stream(futures::stream::iter(frames)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(STREAMED_CONTENT_TYPE),
        );
        Ok(response)
    }
}

/// All float samples of a selected series, decoded from its chunks.
fn decode_samples(series: &SelectedSeries) -> Result<Vec<Sample>, ApiError> {
    let mut decoded = Vec::new();
    for chunk in &series.chunks {
        compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut decoded)
            .map_err(|e| ApiError::new(strata_common::ErrorClass::Internal, e.to_string()))?;
    }
    Ok(decoded
        .into_iter()
        .map(|(timestamp, value)| Sample { value, timestamp })
        .collect())
}

/// The chunks as Prometheus reads them: XOR chunks pass through untouched,
/// Strata's own encodings (blocks) are transcoded to XOR.
fn as_xor_chunks(chunks: Vec<Chunk>) -> Result<Vec<Chunk>, ApiError> {
    let mut out = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        if chunk.r#type == compact_chunk::XOR_CHUNK_ENCODING {
            out.push(chunk);
            continue;
        }
        let mut samples = Vec::new();
        compact_chunk::decode_any(chunk.r#type, &chunk.data, &mut samples)
            .map_err(|e| ApiError::new(strata_common::ErrorClass::Internal, e.to_string()))?;
        for (part, data) in samples
            .chunks(strata_common::chunk::SAMPLES_PER_CHUNK)
            .zip(strata_common::chunk::encode_all(&samples))
        {
            let (Some(first), Some(last)) = (part.first(), part.last()) else {
                continue;
            };
            out.push(Chunk {
                min_time_ms: first.0,
                max_time_ms: last.0,
                r#type: compact_chunk::XOR_CHUNK_ENCODING,
                data,
            });
        }
    }
    Ok(out)
}

/// Splits one series into messages whose chunks stay under the frame size.
fn series_messages(
    series: SelectedSeries,
    query_index: i64,
    max_frame: usize,
) -> Vec<ChunkedReadResponse> {
    let label_bytes: usize = series
        .labels
        .iter()
        .map(|l| l.name.len() + l.value.len())
        .sum();
    let budget = max_frame.saturating_sub(label_bytes).max(1);
    let mut messages = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for chunk in series.chunks {
        let chunk_size = chunk.data.len() + 32;
        if !current.is_empty() && size + chunk_size > budget {
            messages.push(std::mem::take(&mut current));
            size = 0;
        }
        size += chunk_size;
        current.push(chunk);
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
        .into_iter()
        .map(|chunks| ChunkedReadResponse {
            chunked_series: vec![ChunkedSeries {
                labels: series.labels.clone(),
                chunks,
            }],
            query_index,
        })
        .collect()
}

/// `uvarint(len) ‖ CRC32-Castagnoli(msg) as big-endian u32 ‖ msg`.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 14);
    let mut len = message.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::prometheus::Chunk;

    #[test]
    fn negotiation_takes_the_first_supported_type() {
        assert_eq!(negotiate(&[]).expect("default"), ResponseType::Samples);
        assert_eq!(
            negotiate(&[1, 0]).expect("streamed"),
            ResponseType::StreamedXorChunks
        );
        assert_eq!(negotiate(&[7, 0]).expect("samples"), ResponseType::Samples);
        assert!(negotiate(&[7]).is_err());
    }

    #[test]
    fn frames_carry_length_and_castagnoli_crc() {
        let message = vec![1u8; 300];
        let framed = frame(&message);
        assert_eq!(&framed[..2], &[0xac, 0x02]);
        let crc = u32::from_be_bytes([framed[2], framed[3], framed[4], framed[5]]);
        assert_eq!(crc, crc32c::crc32c(&message));
        assert_eq!(&framed[6..], &message[..]);
    }

    #[test]
    fn big_series_spill_over_frames() {
        let chunk = |t: i64| Chunk {
            min_time_ms: t,
            max_time_ms: t,
            r#type: 1,
            data: vec![0; 400],
        };
        let series = SelectedSeries {
            labels: vec![strata_common::labels::label("__name__", "x")],
            chunks: (0..10).map(chunk).collect(),
            histograms: Vec::new(),
        };
        let messages = series_messages(series, 3, 1000);
        assert_eq!(messages.len(), 5);
        assert!(
            messages
                .iter()
                .all(|m| m.query_index == 3 && m.chunked_series.len() == 1)
        );
        let total: usize = messages
            .iter()
            .map(|m| m.chunked_series[0].chunks.len())
            .sum();
        assert_eq!(total, 10);
    }
}
