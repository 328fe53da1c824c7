//! Strata next to a real Prometheus 3.5: Prometheus remote-writes its own
//! metrics (and their metadata) to Strata, and reads Strata's data back
//! through `remote_read`, so our wire formats meet the reference client and
//! our answers are compared with Prometheus' own answers for the same data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::{
    ChunkedReadResponse, Label, LabelMatcher, Query, ReadRequest, ReadResponse, Sample, TimeSeries,
    WriteRequest, chunk, label_matcher, read_request::ResponseType,
};

use crate::support::{
    Prometheus, Strata, agent, encode, free_port, get_json, now_ms, push, seconds, wait_until,
};

// ---------------------------------------------------------------------------
// helpers

/// How long Prometheus may take to scrape and remote-write (its service
/// discovery alone waits ~5 s before the first scrape).
const ARRIVAL: Duration = Duration::from_secs(60);

/// A label set as JSON objects and PromQL results show it.
type LabelSet = BTreeMap<String, String>;

/// One series and its samples; values as bits so NaNs compare exactly.
type ReadSeries = (LabelSet, Vec<(i64, u64)>);

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn proto_labels(set: &[Label]) -> LabelSet {
    set.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn json_labels(value: &Value) -> LabelSet {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not a label set: {value}"))
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_else(|| panic!("label value {v}"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// `data` of a successful JSON API answer; panics with the body otherwise.
fn data(url: &str, tenant: Option<&str>) -> Value {
    let (status, body) = get_json(url, tenant);
    assert_eq!(status, 200, "GET {url} (tenant {tenant:?}): {body}");
    assert_eq!(body["status"], "success", "GET {url}: {body}");
    body["data"].clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_owned()
        })
        .collect()
}

/// A JSON API timestamp (float seconds) in milliseconds.
fn json_ms(value: &Value) -> i64 {
    let seconds = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    (seconds * 1000.0).round() as i64
}

/// A JSON API sample value (`"1.5"`, `"NaN"`, `"+Inf"`).
fn json_value(value: &Value) -> f64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a value string: {value}"));
    text.parse()
        .unwrap_or_else(|e| panic!("bad value {text:?}: {e}"))
}

/// Prometheus' instant query: series → (timestamp, value).
fn instant(prometheus: &Prometheus, query: &str, time_ms: i64) -> BTreeMap<LabelSet, (i64, f64)> {
    let url = prometheus.url(&format!(
        "/api/v1/query?query={}&time={}",
        encode(query),
        seconds(time_ms)
    ));
    let data = data(&url, None);
    assert_eq!(data["resultType"], "vector", "{query}: {data}");
    let result = data["result"].as_array().expect("result array");
    let out: BTreeMap<LabelSet, (i64, f64)> = result
        .iter()
        .map(|r| {
            let value = &r["value"];
            (
                json_labels(&r["metric"]),
                (json_ms(&value[0]), json_value(&value[1])),
            )
        })
        .collect();
    assert_eq!(out.len(), result.len(), "duplicate series: {data}");
    out
}

/// Prometheus' range query: series → [(timestamp, value)].
fn range(
    prometheus: &Prometheus,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step: &str,
) -> BTreeMap<LabelSet, Vec<(i64, f64)>> {
    let url = prometheus.url(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={step}",
        encode(query),
        seconds(start_ms),
        seconds(end_ms)
    ));
    let data = data(&url, None);
    assert_eq!(data["resultType"], "matrix", "{query}: {data}");
    data["result"]
        .as_array()
        .expect("result array")
        .iter()
        .map(|r| {
            let values = r["values"]
                .as_array()
                .expect("values array")
                .iter()
                .map(|p| (json_ms(&p[0]), json_value(&p[1])))
                .collect();
            (json_labels(&r["metric"]), values)
        })
        .collect()
}

/// Raw samples of `selector` in Prometheus' own TSDB over `(time - 5m, time]`.
fn prometheus_raw(prometheus: &Prometheus, selector: &str, time_ms: i64) -> Vec<ReadSeries> {
    let url = prometheus.url(&format!(
        "/api/v1/query?query={}&time={}",
        encode(&format!("{selector}[5m]")),
        seconds(time_ms)
    ));
    let data = data(&url, None);
    assert_eq!(data["resultType"], "matrix", "{selector}: {data}");
    data["result"]
        .as_array()
        .expect("result array")
        .iter()
        .map(|r| {
            let samples = r["values"]
                .as_array()
                .expect("values array")
                .iter()
                .map(|p| (json_ms(&p[0]), json_value(&p[1]).to_bits()))
                .collect();
            (json_labels(&r["metric"]), samples)
        })
        .collect()
}

/// Starts a Prometheus that scrapes itself every second (on a second listen
/// address we choose, so the config can name it) and remote-writes
/// everything, metadata included, to Strata as `tenant`. Returns the
/// Prometheus and the `instance` label of its self-scrape.
fn self_scraping_prometheus(dir: &Path, strata: &Strata, tenant: &str) -> (Prometheus, String) {
    let scrape_port = free_port();
    let instance = format!("127.0.0.1:{scrape_port}");
    let config = format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['{instance}']
remote_write:
  - url: {write_url}
    headers:
      X-Scope-OrgID: {tenant}
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 2000
    metadata_config:
      send: true
      send_interval: 2s
",
        write_url = strata.url("/api/v1/write"),
    );
    let listen = format!("--web.listen-address={instance}");
    let prometheus = Prometheus::start(dir, &config, &[&listen]);
    (prometheus, instance)
}

/// Label values of `name` in Strata (optionally restricted by `match[]`).
fn strata_values(strata: &Strata, tenant: Option<&str>, name: &str, matcher: &str) -> Vec<String> {
    let mut path = format!("/api/v1/label/{name}/values");
    if !matcher.is_empty() {
        path.push_str(&format!("?match[]={}", encode(matcher)));
    }
    strings(&data(&strata.url(&path), tenant))
}

fn eq_matcher(name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: label_matcher::Type::Eq as i32,
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn query(metric: &str, start_ms: i64, end_ms: i64) -> Query {
    Query {
        start_timestamp_ms: start_ms,
        end_timestamp_ms: end_ms,
        matchers: vec![eq_matcher("__name__", metric)],
        hints: None,
    }
}

/// A remote-read exchange: status, content type, content encoding, body.
#[derive(Debug)]
struct ReadReply {
    status: u16,
    content_type: String,
    content_encoding: Option<String>,
    body: Vec<u8>,
}

fn remote_read(
    strata: &Strata,
    tenant: Option<&str>,
    queries: &[Query],
    accepted: &[ResponseType],
) -> ReadReply {
    let request = ReadRequest {
        queries: queries.to_vec(),
        accepted_response_types: accepted.iter().map(|t| *t as i32).collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compress");
    let mut call = agent()
        .post(&strata.url("/api/v1/read"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("Accept-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0");
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    let mut response = call.send(&body[..]).expect("remote read request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let content_encoding = header("content-encoding");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .expect("read remote-read body");
    ReadReply {
        status,
        content_type,
        content_encoding,
        body,
    }
}

/// Remote read with `SAMPLES`: per query, its series in answer order.
fn read_samples(strata: &Strata, tenant: Option<&str>, queries: &[Query]) -> Vec<Vec<ReadSeries>> {
    let reply = remote_read(strata, tenant, queries, &[ResponseType::Samples]);
    assert_eq!(
        reply.status,
        200,
        "remote read: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type, "application/x-protobuf");
    assert_eq!(reply.content_encoding.as_deref(), Some("snappy"));
    let len = snap::raw::decompress_len(&reply.body).expect("snappy length");
    assert!(len < 256 << 20, "implausible decoded size {len}");
    let mut decoded = vec![0; len];
    let written = snap::raw::Decoder::new()
        .decompress(&reply.body, &mut decoded)
        .expect("snappy body");
    decoded.truncate(written);
    let response = ReadResponse::decode(decoded.as_slice()).expect("ReadResponse");
    assert_eq!(
        response.results.len(),
        queries.len(),
        "one result per query"
    );
    response
        .results
        .into_iter()
        .map(|result| {
            result
                .timeseries
                .into_iter()
                .map(|ts| {
                    let samples = ts
                        .samples
                        .iter()
                        .map(|s| (s.timestamp, s.value.to_bits()))
                        .collect();
                    (proto_labels(&ts.labels), samples)
                })
                .collect()
        })
        .collect()
}

/// CRC-32C (Castagnoli), bit by bit: reflected polynomial 0x82F63B78.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Splits a `STREAMED_XOR_CHUNKS` body into its messages, checking each
/// frame's length prefix and big-endian CRC32C.
fn frames(body: &[u8]) -> Vec<ChunkedReadResponse> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut len: u64 = 0;
        let mut used = 0;
        loop {
            let byte = *rest
                .get(used)
                .unwrap_or_else(|| panic!("truncated uvarint in frame {}", out.len()));
            len |= u64::from(byte & 0x7f) << (7 * used);
            used += 1;
            if byte & 0x80 == 0 {
                break;
            }
            assert!(used < 10, "uvarint too long in frame {}", out.len());
        }
        let len = usize::try_from(len).expect("frame length");
        rest = &rest[used..];
        assert!(
            rest.len() >= 4 + len,
            "frame {} wants {len} bytes, {} left",
            out.len(),
            rest.len()
        );
        let crc = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let message = &rest[4..4 + len];
        assert_eq!(crc, crc32c(message), "CRC32C of frame {}", out.len());
        out.push(ChunkedReadResponse::decode(message).expect("ChunkedReadResponse"));
        rest = &rest[4 + len..];
    }
    out
}

/// Remote read with `STREAMED_XOR_CHUNKS`: per query, its series with the
/// samples decoded from the XOR chunks (a series spanning several frames is
/// joined back together).
fn read_chunks(strata: &Strata, tenant: Option<&str>, queries: &[Query]) -> Vec<Vec<ReadSeries>> {
    let reply = remote_read(strata, tenant, queries, &[ResponseType::StreamedXorChunks]);
    assert_eq!(
        reply.status,
        200,
        "remote read: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.content_type,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    assert_eq!(
        reply.content_encoding, None,
        "streamed bodies are not snappy"
    );
    let mut results: Vec<Vec<ReadSeries>> = vec![Vec::new(); queries.len()];
    let mut last_index = 0;
    let mut previous: Option<LabelSet> = None;
    for message in frames(&reply.body) {
        let index = usize::try_from(message.query_index).expect("query index");
        assert!(index < queries.len(), "query_index {index} out of range");
        assert!(index >= last_index, "queries answered out of order");
        if index != last_index {
            previous = None;
        }
        last_index = index;
        assert_eq!(
            message.chunked_series.len(),
            1,
            "Prometheus sends one series per frame"
        );
        for series in message.chunked_series {
            let labels = proto_labels(&series.labels);
            let mut samples = Vec::new();
            for c in &series.chunks {
                assert_eq!(c.r#type, chunk::Encoding::Xor as i32, "chunk encoding");
                let decoded = strata_common::chunk::decode(&c.data)
                    .unwrap_or_else(|e| panic!("chunk of {labels:?} does not decode: {e}"));
                assert!(!decoded.is_empty(), "empty chunk sent for {labels:?}");
                assert_eq!(
                    (c.min_time_ms, c.max_time_ms),
                    (decoded[0].0, decoded[decoded.len() - 1].0),
                    "chunk time bounds of {labels:?}"
                );
                samples.extend(decoded.into_iter().map(|(t, v)| (t, v.to_bits())));
            }
            let list = &mut results[index];
            if previous.as_ref() == Some(&labels) {
                let last = list.last_mut().expect("previous series");
                last.1.extend(samples);
            } else {
                if let Some(before) = &previous {
                    assert!(before < &labels, "series not sorted: {before:?} {labels:?}");
                }
                list.push((labels.clone(), samples));
                previous = Some(labels);
            }
        }
    }
    results
}

// ---------------------------------------------------------------------------
// 1. Prometheus remote-writes to Strata

#[test]
fn prometheus_remote_writes_to_strata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("strata"), &[]);
    let (prometheus, instance) =
        self_scraping_prometheus(&dir.path().join("prometheus"), &strata, "team-a");
    let tenant = Some("team-a");

    let stable = [
        "go_goroutines",
        "process_cpu_seconds_total",
        "prometheus_build_info",
        "prometheus_http_requests_total",
        "prometheus_tsdb_head_series",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "up",
    ];
    wait_until("Strata to hold Prometheus' self-scrape", ARRIVAL, || {
        let names = strata_values(&strata, tenant, "__name__", "{job=\"prometheus\"}");
        stable.iter().all(|n| names.iter().any(|m| m == n))
    });
    // A few scrapes, so remote read has samples to trim at both ends.
    wait_until("four samples of up in Strata", ARRIVAL, || {
        let now = now_ms();
        let got = read_samples(&strata, tenant, &[query("up", now - 300_000, now)]);
        got[0].first().is_some_and(|s| s.1.len() >= 4)
    });

    // Series, label names, label values.
    let series = data(&strata.url("/api/v1/series?match[]=up"), tenant);
    let up = labels(&[
        ("__name__", "up"),
        ("instance", &instance),
        ("job", "prometheus"),
    ]);
    let listed: Vec<LabelSet> = series
        .as_array()
        .expect("array")
        .iter()
        .map(json_labels)
        .collect();
    assert_eq!(listed, vec![up.clone()]);

    let strata_labels = strings(&data(&strata.url("/api/v1/labels"), tenant));
    for name in ["__name__", "instance", "job"] {
        assert!(
            strata_labels.iter().any(|l| l == name),
            "{name} in {strata_labels:?}"
        );
    }
    assert_eq!(
        strata_values(&strata, tenant, "job", ""),
        vec!["prometheus".to_owned()]
    );
    assert_eq!(
        strata_values(&strata, tenant, "instance", ""),
        vec![instance.clone()]
    );

    let strata_names = strata_values(&strata, tenant, "__name__", "");
    let mut sorted = strata_names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(strata_names, sorted, "label values are sorted and unique");
    // Prometheus holds everything it ever sent, so ask it second.
    let prometheus_labels = strings(&data(&prometheus.url("/api/v1/labels"), None));
    let prometheus_names = strings(&data(
        &prometheus.url("/api/v1/label/__name__/values"),
        None,
    ));
    for name in &strata_names {
        assert!(
            prometheus_names.contains(name),
            "Strata has {name}, Prometheus does not"
        );
    }
    for name in stable {
        assert!(strata_names.iter().any(|n| n == name), "{name} in Strata");
        assert!(
            prometheus_names.iter().any(|n| n == name),
            "{name} in Prometheus"
        );
    }
    for name in &strata_labels {
        assert!(
            prometheus_labels.contains(name),
            "Strata has label {name}, Prometheus does not"
        );
    }
    // Remote write ships whole scrapes: Strata cannot be missing a family
    // that Prometheus had long before (allow for ones that appear late).
    assert!(
        strata_names.len() * 10 >= prometheus_names.len() * 9,
        "Strata has {} names, Prometheus {}",
        strata_names.len(),
        prometheus_names.len()
    );

    // Tenant isolation: the anonymous tenant and another team see nothing.
    for other in [None, Some("team-b")] {
        let empty: Vec<String> = Vec::new();
        assert_eq!(
            data(&strata.url("/api/v1/series?match[]=up"), other),
            Value::Array(vec![])
        );
        assert_eq!(strings(&data(&strata.url("/api/v1/labels"), other)), empty);
        assert_eq!(strata_values(&strata, other, "job", ""), empty);
        assert_eq!(strata_values(&strata, other, "__name__", ""), empty);
        let now = now_ms();
        let read = read_samples(&strata, other, &[query("up", now - 300_000, now)]);
        assert_eq!(read, vec![Vec::new()], "remote read as {other:?}");
    }

    // Remote read, SAMPLES: every `up` sample is 1 and inside the range, and
    // they are exactly the samples Prometheus stored up to Strata's newest.
    let now = now_ms();
    let start = now - 300_000;
    let queries = [
        query("up", start, now),
        query("scrape_samples_scraped", start, now),
    ];
    let sampled = read_samples(&strata, tenant, &queries);
    assert_eq!(sampled[0].len(), 1, "one up series: {:?}", sampled[0]);
    let (up_labels, up_samples) = &sampled[0][0];
    assert_eq!(up_labels, &up);
    assert!(up_samples.len() >= 4, "{up_samples:?}");
    for (t, v) in up_samples {
        assert_eq!(f64::from_bits(*v), 1.0, "up at {t}");
        assert!(
            (start..=now).contains(t),
            "up sample at {t} outside [{start}, {now}]"
        );
    }
    assert!(
        up_samples.windows(2).all(|w| w[0].0 < w[1].0),
        "timestamps increase: {up_samples:?}"
    );
    for (index, selector) in ["up", "scrape_samples_scraped"].iter().enumerate() {
        let newest = sampled[index]
            .iter()
            .filter_map(|s| s.1.last().map(|x| x.0))
            .max()
            .expect("samples in Strata");
        let reference: Vec<ReadSeries> = prometheus_raw(&prometheus, selector, now)
            .into_iter()
            .map(|(l, s)| (l, s.into_iter().filter(|x| x.0 <= newest).collect()))
            .collect();
        assert_eq!(
            sampled[index], reference,
            "{selector}: Strata's samples differ from Prometheus' own"
        );
    }

    // STREAMED_XOR_CHUNKS returns the very same samples, query by query.
    let streamed = read_chunks(&strata, tenant, &queries);
    assert_eq!(streamed, sampled, "chunks decode to the SAMPLES answer");

    // A range that cuts the series at both ends: only samples inside it,
    // by either response type.
    let first = up_samples[0].0;
    let last = up_samples[up_samples.len() - 1].0;
    let inner = [query("up", first + 1, last - 1)];
    let trimmed = read_samples(&strata, tenant, &inner);
    let expected: Vec<(i64, u64)> = up_samples[1..up_samples.len() - 1].to_vec();
    assert_eq!(trimmed, vec![vec![(up.clone(), expected)]]);
    assert_eq!(read_chunks(&strata, tenant, &inner), trimmed);
}

// ---------------------------------------------------------------------------
// 2. Prometheus reads Strata's data through remote_read

/// Prometheus with no scrape jobs, reading only from Strata.
fn reading_prometheus(dir: &Path, strata: &Strata, tenant: Option<&str>) -> Prometheus {
    let headers = tenant
        .map(|t| format!("    headers:\n      X-Scope-OrgID: {t}\n"))
        .unwrap_or_default();
    let config = format!(
        "global:
  scrape_interval: 15s
remote_read:
  - url: {read_url}
    read_recent: true
{headers}",
        read_url = strata.url("/api/v1/read"),
    );
    Prometheus::start(dir, &config, &[])
}

fn series(pairs: &[(&str, &str)], samples: Vec<Sample>) -> TimeSeries {
    TimeSeries {
        labels: pairs
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        samples,
        exemplars: Vec::new(),
        histograms: Vec::new(),
    }
}

#[test]
fn prometheus_remote_read_from_strata() {
    const STEP: i64 = 15_000;
    const STEPS: i64 = 120; // 30 minutes
    const STALE_AT: i64 = 80;

    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("strata"), &[]);

    // t(0) .. t(120) = end, 15 s apart, the last at or before now.
    let end = now_ms() / STEP * STEP;
    let t = |i: i64| end - (STEPS - i) * STEP;
    let metric = "strata_only_metric";
    let i1 = [
        ("__name__", metric),
        ("instance", "i1"),
        ("job", "synthetic"),
    ];
    let i2 = [
        ("__name__", metric),
        ("instance", "i2"),
        ("job", "synthetic"),
    ];
    let i3 = [
        ("__name__", metric),
        ("instance", "i3"),
        ("job", "synthetic"),
    ];
    let anon = [("__name__", metric), ("instance", "a1"), ("job", "anon")];
    let v1 = |i: i64| 10.0 * i as f64;
    let v2 = |i: i64| 1000.0 + 10.0 * i as f64;
    let v3 = |i: i64| 5.0 * i as f64;
    let counter = |f: &dyn Fn(i64) -> f64, until: i64| -> Vec<Sample> {
        (0..=until)
            .map(|i| Sample {
                value: f(i),
                timestamp: t(i),
            })
            .collect()
    };
    let mut i3_samples = counter(&v3, STALE_AT - 1);
    i3_samples.push(Sample {
        value: f64::from_bits(STALE_NAN_BITS),
        timestamp: t(STALE_AT),
    });
    let team_b = WriteRequest {
        timeseries: vec![
            series(&i1, counter(&v1, STEPS)),
            series(&i2, counter(&v2, STEPS)),
            series(&i3, i3_samples),
        ],
        metadata: Vec::new(),
    };
    let (status, body) = push(&strata.base(), Some("team-b"), &team_b);
    assert!((200..300).contains(&status), "push team-b: {status} {body}");
    let anonymous = WriteRequest {
        timeseries: vec![series(&anon, counter(&|_| 7.0, STEPS))],
        metadata: Vec::new(),
    };
    let (status, body) = push(&strata.base(), None, &anonymous);
    assert!(
        (200..300).contains(&status),
        "push anonymous: {status} {body}"
    );

    // Strata keeps the stale marker as pushed.
    let stored = read_samples(&strata, Some("team-b"), &[query(metric, t(0), end)]);
    let (labels_3, samples_3) = &stored[0][2];
    assert_eq!(labels_3, &labels(&i3));
    assert_eq!(samples_3.last(), Some(&(t(STALE_AT), STALE_NAN_BITS)));
    assert_eq!(stored[0][0].1.len(), 121, "{:?}", stored[0][0]);
    // ... and the chunks carry the same samples, stale marker included.
    assert_eq!(
        read_chunks(&strata, Some("team-b"), &[query(metric, t(0), end)]),
        stored
    );

    // Cut everything into blocks (stored in Strata's compact encoding): the
    // streamed chunks are then transcoded to XOR and still carry the same
    // samples, and Prometheus below reads the blocks.
    assert!(crate::support::flush(&strata.base(), Some("team-b")) >= 1);
    assert_eq!(
        read_chunks(&strata, Some("team-b"), &[query(metric, t(0), end)]),
        stored,
        "chunks read back from blocks"
    );

    let prometheus = reading_prometheus(&dir.path().join("prometheus-b"), &strata, Some("team-b"));
    let anon_prometheus = reading_prometheus(&dir.path().join("prometheus-anon"), &strata, None);

    // Instant query at the newest sample: i1 and i2 with their last values;
    // i3 went stale long ago.
    let at_end = instant(&prometheus, metric, end);
    let expected: BTreeMap<LabelSet, (i64, f64)> = [
        (labels(&i1), (end, v1(STEPS))),
        (labels(&i2), (end, v2(STEPS))),
    ]
    .into_iter()
    .collect();
    assert_eq!(at_end, expected, "{metric} at the end");

    // Staleness: i3 is there up to its last sample, gone from the marker on
    // (well within the 5 m lookback, so only the marker can hide it).
    let i3_at = |time: i64| {
        instant(&prometheus, metric, time)
            .get(&labels(&i3))
            .copied()
    };
    assert_eq!(
        i3_at(t(STALE_AT - 1)),
        Some((t(STALE_AT - 1), v3(STALE_AT - 1)))
    );
    assert_eq!(
        i3_at(t(STALE_AT - 1) + 10_000),
        Some((t(STALE_AT - 1) + 10_000, v3(STALE_AT - 1)))
    );
    assert_eq!(i3_at(t(STALE_AT)), None, "i3 at its stale marker");
    assert_eq!(
        i3_at(t(STALE_AT) + 10_000),
        None,
        "i3 after its stale marker"
    );
    assert_eq!(instant(&prometheus, metric, t(STALE_AT)).len(), 2);

    // Lookback: the last values stay visible for 5 minutes after `end`.
    let later = end + 299_000;
    let expected_later: BTreeMap<LabelSet, (i64, f64)> = [
        (labels(&i1), (later, v1(STEPS))),
        (labels(&i2), (later, v2(STEPS))),
    ]
    .into_iter()
    .collect();
    assert_eq!(instant(&prometheus, metric, later), expected_later);
    assert_eq!(instant(&prometheus, metric, end + 301_000), BTreeMap::new());

    // Range queries: on the sample grid, and 7 s after it (lookback picks
    // the sample of the step before).
    for offset in [0, 7_000] {
        let got = range(&prometheus, metric, t(0) + offset, end, "15s");
        let steps =
            |until: i64| -> Vec<i64> { (0..=until).filter(|i| t(*i) + offset <= end).collect() };
        let expected: BTreeMap<LabelSet, Vec<(i64, f64)>> = [
            (
                labels(&i1),
                steps(STEPS)
                    .iter()
                    .map(|i| (t(*i) + offset, v1(*i)))
                    .collect(),
            ),
            (
                labels(&i2),
                steps(STEPS)
                    .iter()
                    .map(|i| (t(*i) + offset, v2(*i)))
                    .collect(),
            ),
            (
                labels(&i3),
                steps(STALE_AT - 1)
                    .iter()
                    .map(|i| (t(*i) + offset, v3(*i)))
                    .collect(),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, expected, "range query with offset {offset} ms");
    }

    // rate: both counters grow by 10 every 15 s.
    let rate = instant(&prometheus, &format!("sum(rate({metric}[5m]))"), end);
    assert_eq!(rate.len(), 1, "{rate:?}");
    let (labels_rate, (_, value)) = rate.iter().next().expect("one sample");
    assert!(labels_rate.is_empty(), "{labels_rate:?}");
    let want = 2.0 * 10.0 / 15.0;
    assert!(
        (value - want).abs() < 1e-9,
        "sum(rate) = {value}, want {want}"
    );

    // Without the tenant header Prometheus reads the anonymous tenant: its
    // one series, none of team-b's.
    let anon_at_end = instant(&anon_prometheus, metric, end);
    let expected_anon: BTreeMap<LabelSet, (i64, f64)> =
        [(labels(&anon), (end, 7.0))].into_iter().collect();
    assert_eq!(anon_at_end, expected_anon);
    assert_eq!(
        range(
            &anon_prometheus,
            &format!("{metric}{{job=\"synthetic\"}}"),
            t(0),
            end,
            "15s"
        ),
        BTreeMap::new()
    );
    assert!(
        !instant(&prometheus, metric, end).contains_key(&labels(&anon)),
        "team-b sees the anonymous tenant"
    );
}

// ---------------------------------------------------------------------------
// 3. Metadata sent by Prometheus matches Prometheus' own metadata API

/// Families both servers must know, of every type Prometheus exposes.
const FAMILIES: [&str; 7] = [
    "go_gc_duration_seconds",                   // summary
    "go_goroutines",                            // gauge
    "process_cpu_seconds_total",                // counter
    "prometheus_build_info",                    // gauge
    "prometheus_http_request_duration_seconds", // histogram
    "prometheus_http_requests_total",           // counter
    "prometheus_tsdb_head_series",              // gauge
];

fn metadata(url: &str, tenant: Option<&str>) -> BTreeMap<String, Value> {
    let data = data(url, tenant);
    data.as_object()
        .unwrap_or_else(|| panic!("metadata is not an object: {data}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Strata and a self-scraping Prometheus once Strata has metadata for
/// every family Prometheus' own metadata API lists.
fn metadata_setup(dir: &Path, tenant: &str) -> (Strata, Prometheus) {
    let strata = Strata::start(&dir.join("strata"), &[]);
    let (prometheus, _) = self_scraping_prometheus(&dir.join("prometheus"), &strata, tenant);
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let ours: BTreeSet<String> = metadata(&strata.url("/api/v1/metadata"), Some(tenant))
            .into_keys()
            .collect();
        let theirs: BTreeSet<String> = metadata(&prometheus.url("/api/v1/metadata"), None)
            .into_keys()
            .collect();
        if FAMILIES.iter().all(|f| ours.contains(*f)) && ours == theirs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metadata families never matched:\n only in Strata: {:?}\n only in Prometheus: {:?}",
            ours.difference(&theirs).collect::<Vec<_>>(),
            theirs.difference(&ours).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (strata, prometheus)
}

#[test]
fn metadata_matches_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "team-m";
    let (strata, prometheus) = metadata_setup(dir.path(), tenant);
    let ours = |query: &str| {
        metadata(
            &strata.url(&format!("/api/v1/metadata{query}")),
            Some(tenant),
        )
    };
    let theirs = |query: &str| metadata(&prometheus.url(&format!("/api/v1/metadata{query}")), None);

    // Every family: the same [{type, help, unit}] (as sets: Prometheus lists
    // a family's distinct entries in no particular order).
    let as_set = |entries: &Value| -> BTreeSet<(String, String, String)> {
        entries
            .as_array()
            .unwrap_or_else(|| panic!("entries: {entries}"))
            .iter()
            .map(|e| {
                let keys: BTreeSet<&String> = e.as_object().expect("entry object").keys().collect();
                assert_eq!(
                    keys.into_iter().cloned().collect::<Vec<_>>(),
                    ["help", "type", "unit"],
                    "entry fields: {e}"
                );
                let field = |name: &str| {
                    e[name]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name} of {e}"))
                        .to_owned()
                };
                (field("type"), field("help"), field("unit"))
            })
            .collect()
    };
    let all_ours = ours("");
    let all_theirs = theirs("");
    for (family, entries) in &all_ours {
        let reference = all_theirs
            .get(family)
            .unwrap_or_else(|| panic!("{family} is not in Prometheus' metadata"));
        assert_eq!(as_set(entries), as_set(reference), "metadata of {family}");
    }

    // The fixed families, exactly (order included: each has one entry),
    // through `metric=` in both.
    let kinds = [
        ("go_gc_duration_seconds", "summary"),
        ("go_goroutines", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("prometheus_build_info", "gauge"),
        ("prometheus_http_request_duration_seconds", "histogram"),
        ("prometheus_http_requests_total", "counter"),
        ("prometheus_tsdb_head_series", "gauge"),
    ];
    for (family, kind) in kinds {
        let query = format!("?metric={family}");
        let one = ours(&query);
        assert_eq!(one, theirs(&query), "metadata?metric={family}");
        assert_eq!(one.keys().collect::<Vec<_>>(), [family]);
        assert_eq!(one[family][0]["type"], kind, "{family}: {}", one[family]);
        assert_eq!(one[family], all_ours[family]);
    }
    assert_eq!(ours("?metric=no_such_metric"), BTreeMap::new());
    assert_eq!(theirs("?metric=no_such_metric"), BTreeMap::new());
    // `up` and the other synthetic scrape series carry no metadata in either.
    assert_eq!(ours("?metric=up"), theirs("?metric=up"));

    // limit: as many families in each (which ones is up to the server),
    // each with its complete entries.
    for limit in [1, 2, 5] {
        let query = format!("?limit={limit}");
        for (who, got, all) in [
            ("Strata", ours(&query), &all_ours),
            ("Prometheus", theirs(&query), &all_theirs),
        ] {
            assert_eq!(got.len(), limit, "{who} metadata{query}: {got:?}");
            for (family, entries) in &got {
                assert_eq!(Some(entries), all.get(family), "{who} {family}");
            }
        }
    }
    // A negative limit means no limit in both; limit_per_metric=1 keeps one
    // entry per family (all have one here).
    // (Families keep appearing as Prometheus runs: compare with the earlier
    // complete listing as a lower bound.)
    for (who, unlimited, all) in [
        ("Strata", ours("?limit=-1"), &all_ours),
        ("Prometheus", theirs("?limit=-1"), &all_theirs),
    ] {
        for family in all.keys() {
            assert!(
                unlimited.contains_key(family),
                "{who} limit=-1 lacks {family}"
            );
        }
    }
    let per_metric = ours("?limit_per_metric=1&metric=go_goroutines");
    assert_eq!(
        per_metric,
        theirs("?limit_per_metric=1&metric=go_goroutines")
    );

    // Tenant isolation: other tenants see no metadata at all.
    assert_eq!(
        metadata(&strata.url("/api/v1/metadata"), None),
        BTreeMap::new()
    );
    assert_eq!(
        metadata(&strata.url("/api/v1/metadata"), Some("team-a")),
        BTreeMap::new()
    );
}

/// Prometheus 3.5 answers `metadata?limit=0` with no families (its loop
/// stops once `len(res) >= limit` for any `limit >= 0`; only a negative
/// limit means "no limit"). The label and series APIs treat 0 as "no limit",
/// but metadata does not.
#[test]
fn metadata_limit_zero_matches_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = "team-z";
    let (strata, prometheus) = metadata_setup(dir.path(), tenant);
    let theirs = metadata(&prometheus.url("/api/v1/metadata?limit=0"), None);
    let ours = metadata(&strata.url("/api/v1/metadata?limit=0"), Some(tenant));
    assert_eq!(theirs, BTreeMap::new(), "Prometheus' answer to limit=0");
    assert!(
        ours.is_empty(),
        "metadata?limit=0 gave {} families, Prometheus gives none",
        ours.len()
    );
}
