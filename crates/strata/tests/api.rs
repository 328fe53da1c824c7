//! The HTTP behaviour of a real `strata` process: remote write (happy path,
//! validation, bad bodies), tenancy, the Prometheus read APIs, and the
//! binary itself (flags, start-up failures, SIGTERM, log format).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{Value, json};
use strata_common::labels::label;
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::{
    BucketSpan, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest, histogram,
    metric_metadata::MetricType,
};

use crate::crash::read_all;
use crate::support::{Strata, agent, encode_write, free_port, get_json, post_form, push};

// ---------------------------------------------------------------------------
// helpers

/// Status, headers and body text of one HTTP exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    text: String,
}

impl Reply {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            text,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

/// POSTs `body` with `headers` (and an optional tenant).
fn post(url: &str, tenant: Option<&str>, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut call = agent().post(url);
    for (name, value) in headers {
        call = call.header(*name, *value);
    }
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    Reply::from(call.send(body).expect("POST request"))
}

/// GETs `url` (with an optional tenant).
fn get(url: &str, tenant: Option<&str>) -> Reply {
    let mut call = agent().get(url);
    if let Some(tenant) = tenant {
        call = call.header("X-Scope-OrgID", tenant);
    }
    Reply::from(call.call().expect("GET request"))
}

const REMOTE_WRITE_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// Pushes an encoded body to `path` with remote-write 1.0 headers.
fn push_to(strata: &Strata, path: &str, tenant: Option<&str>, body: &[u8]) -> Reply {
    post(&strata.url(path), tenant, &REMOTE_WRITE_HEADERS, body)
}

/// Percent-encodes a query parameter value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(n, v)| label(n, v)).collect()
}

/// A series with float samples `(t, v)`, labels exactly as given.
fn floats(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels(pairs),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn write(timeseries: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries,
        ..Default::default()
    }
}

/// Pushes and insists on 204.
fn push_ok(strata: &Strata, tenant: Option<&str>, request: &WriteRequest) {
    let (status, body) = push(&strata.base(), tenant, request);
    assert_eq!(status, 204, "push refused: {body}\n{}", strata.log());
}

/// `data` of a successful `/api/v1/series` for one selector.
fn series_of(strata: &Strata, tenant: Option<&str>, selector: &str) -> Value {
    let (status, json) = get_json(
        &strata.url(&format!("/api/v1/series?match[]={}", enc(selector))),
        tenant,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "success", "{json}");
    json["data"].clone()
}

/// `data` of a successful GET.
fn data_of(strata: &Strata, tenant: Option<&str>, path_and_query: &str) -> Value {
    let (status, json) = get_json(&strata.url(path_and_query), tenant);
    assert_eq!(status, 200, "{path_and_query}: {json}");
    assert_eq!(json["status"], "success", "{json}");
    json["data"].clone()
}

/// Asserts a Prometheus JSON error: status, `bad_data`, message prefix.
fn assert_bad_data(reply: &Reply, message_prefix: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text);
    let json = reply.json();
    assert_eq!(json["status"], "error", "{json}");
    assert_eq!(json["errorType"], "bad_data", "{json}");
    let message = json["error"].as_str().expect("error message");
    assert!(
        message.starts_with(message_prefix),
        "{message:?} should start with {message_prefix:?}"
    );
    assert!(
        reply
            .text
            .starts_with(r#"{"status":"error","errorType":"bad_data","error":"#),
        "key order: {}",
        reply.text
    );
}

/// A small deterministic byte generator (xorshift) for incompressible data.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn int_histogram(timestamp: i64) -> Histogram {
    Histogram {
        count: Some(histogram::Count::CountInt(4)),
        sum: 10.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![1, 1],
        timestamp,
        ..Default::default()
    }
}

fn metadata(name: &str, kind: MetricType, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        r#type: kind as i32,
        metric_family_name: name.to_owned(),
        help: help.to_owned(),
        unit: unit.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// remote write: happy path

#[test]
fn remote_write_stores_floats_histograms_and_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let stale = f64::from_bits(STALE_NAN_BITS);
    let request = WriteRequest {
        timeseries: vec![
            // Unsorted labels and an empty value: stored sorted, without it.
            floats(
                &[
                    ("job", "api"),
                    ("__name__", "happy_float"),
                    ("empty", ""),
                    ("instance", "i1"),
                ],
                &[
                    (1_000, 1.5),
                    (2_000, f64::NAN),
                    (3_000, f64::INFINITY),
                    (4_000, stale),
                ],
            ),
            TimeSeries {
                labels: labels(&[("__name__", "happy_hist"), ("job", "api")]),
                histograms: vec![int_histogram(1_000)],
                ..Default::default()
            },
        ],
        metadata: vec![
            metadata("happy_float", MetricType::Gauge, "A float.", "seconds"),
            metadata("happy_hist", MetricType::Histogram, "A histogram.", ""),
        ],
    };
    let reply = push_to(&strata, "/api/v1/push", None, &encode_write(&request));
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty(), "{}", reply.text);
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("4")
    );
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("1")
    );
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Exemplars-Written"),
        Some("0")
    );

    // Prometheus' own receiver path works the same.
    let other = write(vec![floats(
        &[("__name__", "happy_write")],
        &[(5_000, 7.0)],
    )]);
    let reply = push_to(&strata, "/api/v1/write", None, &encode_write(&other));
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("1")
    );

    let series = series_of(&strata, None, r#"{job="api"}"#);
    assert_eq!(
        series,
        json!([
            {"__name__": "happy_float", "instance": "i1", "job": "api"},
            {"__name__": "happy_hist", "job": "api"},
        ])
    );
    let keys: Vec<&String> = series[0].as_object().expect("labels").keys().collect();
    assert_eq!(keys, ["__name__", "instance", "job"], "labels come sorted");
    assert_eq!(
        series_of(&strata, None, "happy_write"),
        json!([{"__name__": "happy_write"}])
    );
    assert_eq!(
        data_of(&strata, None, "/api/v1/label/empty/values"),
        json!([])
    );

    // The values themselves, bit for bit, through remote read.
    let stored = read_all(&strata.base(), None);
    let float = stored
        .iter()
        .find(|s| strata_common::labels::get(&s.labels, "__name__") == "happy_float")
        .expect("happy_float stored");
    assert_eq!(
        float.labels,
        labels(&[
            ("__name__", "happy_float"),
            ("instance", "i1"),
            ("job", "api")
        ])
    );
    let got: Vec<(i64, u64)> = float
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    let sent: Vec<(i64, u64)> = request.timeseries[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    assert_eq!(got, sent, "NaN, +Inf and the stale marker keep their bits");
    let hist = stored
        .iter()
        .find(|s| strata_common::labels::get(&s.labels, "__name__") == "happy_hist")
        .expect("happy_hist stored");
    assert_eq!(hist.histograms, vec![int_histogram(1_000)]);

    assert_eq!(
        data_of(&strata, None, "/api/v1/metadata"),
        json!({
            "happy_float": [{"type": "gauge", "help": "A float.", "unit": "seconds"}],
            "happy_hist": [{"type": "histogram", "help": "A histogram.", "unit": ""}],
        })
    );
}

#[test]
fn a_large_body_within_the_default_limit_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    // ~3 MiB of incompressible label values: above common 2 MiB body
    // defaults, below Strata's documented 10 MiB.
    let random = noise(3 << 20, 7);
    let timeseries: Vec<TimeSeries> = random
        .chunks(1024)
        .enumerate()
        .map(|(i, chunk)| {
            let value: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
            floats(
                &[
                    ("__name__", "large_body"),
                    ("i", &i.to_string()),
                    ("v", &value),
                ],
                &[(1_000, i as f64)],
            )
        })
        .collect();
    let count = timeseries.len();
    let body = encode_write(&write(timeseries));
    assert!(body.len() > 3 << 20, "{} bytes", body.len());
    let reply = push_to(&strata, "/api/v1/push", None, &body);
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some(count.to_string().as_str())
    );
}

// ---------------------------------------------------------------------------
// remote write: validation

/// A request body where the label value `@@BAD@@` is replaced by bytes
/// that are not UTF-8 (the protobuf lengths stay the same).
fn with_invalid_utf8(request: &WriteRequest) -> Vec<u8> {
    let mut encoded = request.encode_to_vec();
    let marker = b"@@BAD@@";
    let at = encoded
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in the encoded request");
    encoded[at..at + marker.len()].copy_from_slice(b"\xff\xfe\xc3\x28\xa0\xa1\xff");
    snap::raw::Encoder::new()
        .compress_vec(&encoded)
        .expect("compress")
}

#[test]
fn invalid_series_are_refused_and_the_valid_rest_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        &dir.path().join("data"),
        &[
            "--limits.max-label-names-per-series",
            "5",
            "--limits.max-label-name-length",
            "20",
            "--limits.max-label-value-length",
            "30",
        ],
    );
    let one = [(1_000, 1.0)];
    let long_name = "n".repeat(21);
    let long_value = "v".repeat(31);
    let bad: Vec<(TimeSeries, &str)> = vec![
        (
            floats(&[("__name__", "bad_name"), ("1x", "a")], &one),
            r#"invalid label name "1x""#,
        ),
        (
            floats(&[("__name__", "bad_dup"), ("a", "1"), ("a", "2")], &one),
            r#"duplicate label name "a""#,
        ),
        (floats(&[("job", "no_name")], &one), "no metric name"),
        (
            floats(&[("__name__", "bad_utf8"), ("a", "@@BAD@@")], &one),
            "not valid UTF-8",
        ),
        (
            floats(
                &[
                    ("__name__", "bad_many"),
                    ("a", "1"),
                    ("b", "2"),
                    ("c", "3"),
                    ("d", "4"),
                    ("e", "5"),
                ],
                &one,
            ),
            "more than the limit of 5",
        ),
        (
            floats(&[("__name__", "bad_long_name"), (&long_name, "x")], &one),
            "longer than 20 bytes",
        ),
        (
            floats(&[("__name__", "bad_long_value"), ("a", &long_value)], &one),
            "longer than 30 bytes",
        ),
    ];

    // Each rule alone: 400, plain text naming the series and the rule.
    for (series, expected) in &bad {
        let body = with_invalid_utf8_or_plain(&write(vec![series.clone()]));
        let reply = push_to(&strata, "/api/v1/push", None, &body);
        assert_eq!(reply.status, 400, "{expected}: {}", reply.text);
        assert!(
            reply.text.contains(expected),
            "{:?} should contain {expected:?}",
            reply.text
        );
        assert!(
            reply.text.contains("1 series"),
            "{:?} should count the refused series",
            reply.text
        );
        let name = strata_common::labels::get(&series.labels, "__name__");
        let shown = if name.is_empty() { "no_name" } else { name };
        assert!(
            reply.text.contains(shown),
            "{:?} should name the series {shown}",
            reply.text
        );
        assert!(
            reply
                .header("Content-Type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            reply.headers
        );
    }

    // All in one request between two valid series.
    let mut timeseries = vec![floats(&[("__name__", "valid_a"), ("job", "x")], &one)];
    timeseries.extend(bad.iter().map(|(s, _)| s.clone()));
    timeseries.push(floats(&[("__name__", "valid_b"), ("job", "y")], &one));
    let body = with_invalid_utf8_or_plain(&write(timeseries));
    let reply = push_to(&strata, "/api/v1/push", None, &body);
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply.text.contains("7 series"),
        "the count of refused series: {}",
        reply.text
    );
    assert!(
        reply.text.contains(r#"invalid label name "1x""#) && reply.text.contains("bad_name"),
        "the first refused series is named: {}",
        reply.text
    );
    assert_eq!(
        reply.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("2")
    );
    assert_eq!(
        series_of(&strata, None, r#"{__name__=~"valid_.*"}"#),
        json!([
            {"__name__": "valid_a", "job": "x"},
            {"__name__": "valid_b", "job": "y"},
        ])
    );
    assert_eq!(
        series_of(&strata, None, r#"{__name__=~"bad_.*"}"#),
        json!([])
    );
    assert_eq!(series_of(&strata, None, r#"{job="no_name"}"#), json!([]));
}

/// Encodes a request, patching the `@@BAD@@` marker if present.
fn with_invalid_utf8_or_plain(request: &WriteRequest) -> Vec<u8> {
    let has_marker = request
        .timeseries
        .iter()
        .flat_map(|s| &s.labels)
        .any(|l| l.value == "@@BAD@@");
    if has_marker {
        with_invalid_utf8(request)
    } else {
        encode_write(request)
    }
}

#[test]
fn out_of_order_and_duplicate_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let sample = |t: i64, v: f64| write(vec![floats(&[("__name__", "ooo")], &[(t, v)])]);
    push_ok(&strata, None, &sample(2_000, 2.0));

    let (status, body) = push(&strata.base(), None, &sample(1_000, 1.0));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of order"), "{body}");
    assert!(body.contains("ooo"), "names the series: {body}");

    let (status, body) = push(&strata.base(), None, &sample(2_000, 5.0));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate sample"), "{body}");

    // The identical sample again is fine, and stored once.
    push_ok(&strata, None, &sample(2_000, 2.0));

    // A refused series does not take the others of its request down.
    let mixed = write(vec![
        floats(&[("__name__", "ooo")], &[(500, 0.5)]),
        floats(&[("__name__", "ooo_neighbour")], &[(500, 0.5)]),
    ]);
    let (status, body) = push(&strata.base(), None, &mixed);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of order"), "{body}");

    let stored = read_all(&strata.base(), None);
    let samples: Vec<(String, Vec<(i64, f64)>)> = stored
        .iter()
        .map(|s| {
            (
                strata_common::labels::get(&s.labels, "__name__").to_owned(),
                s.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
            )
        })
        .collect();
    assert_eq!(
        samples,
        vec![
            ("ooo".to_owned(), vec![(2_000, 2.0)]),
            ("ooo_neighbour".to_owned(), vec![(500, 0.5)]),
        ]
    );
}

#[test]
fn an_identical_histogram_sent_again_is_accepted() {
    // Prometheus' head accepts an exact duplicate of the newest histogram
    // (as it does for floats): retries and federation resend them. Only a
    // different histogram at the same timestamp is a duplicate-sample error.
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let request = |h: Histogram| {
        write(vec![TimeSeries {
            labels: labels(&[("__name__", "dup_hist")]),
            histograms: vec![h],
            ..Default::default()
        }])
    };
    push_ok(&strata, None, &request(int_histogram(1_000)));
    let (status, body) = push(&strata.base(), None, &request(int_histogram(1_000)));
    assert_eq!(
        status, 204,
        "an identical histogram resent must be accepted like an identical float: {body}"
    );
    let mut different = int_histogram(1_000);
    different.sum = 99.0;
    let (status, body) = push(&strata.base(), None, &request(different));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("duplicate sample for timestamp"),
        "a different histogram at the same timestamp is a duplicate, not out of order: {body}"
    );
    let stored = read_all(&strata.base(), None);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].histograms, vec![int_histogram(1_000)]);
}

#[test]
fn one_series_has_one_sample_per_timestamp_across_floats_and_histograms() {
    // Prometheus orders a series' samples by time whatever their kind: a
    // histogram older than the newest float is out of order, one at the same
    // timestamp a duplicate, and so the other way round (PROTOCOLS §2.3: one
    // sample per timestamp). Prometheus 3.5.3 answers 204, 400, 400, 204, 400.
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let name = [("__name__", "mixed_kind")];
    let float_at = |t: i64| write(vec![floats(&name, &[(t, 1.0)])]);
    let histogram_at = |t: i64| {
        write(vec![TimeSeries {
            labels: labels(&name),
            histograms: vec![int_histogram(t)],
            ..Default::default()
        }])
    };
    let steps = [
        ("float at 2000", float_at(2_000), 204),
        ("histogram at 1000", histogram_at(1_000), 400),
        ("histogram at 2000", histogram_at(2_000), 400),
        ("histogram at 3000", histogram_at(3_000), 204),
        ("float at 2500", float_at(2_500), 400),
    ];
    let mut got = Vec::new();
    for (what, request, expected) in &steps {
        let (status, body) = push(&strata.base(), None, request);
        got.push((*what, status, *expected, body));
    }
    let stored = read_all(&strata.base(), None);
    let mut timestamps: Vec<i64> = stored
        .iter()
        .flat_map(|s| {
            s.samples
                .iter()
                .map(|x| x.timestamp)
                .chain(s.histograms.iter().map(|h| h.timestamp))
        })
        .collect();
    timestamps.sort_unstable();
    let wrong: Vec<String> = got
        .iter()
        .filter(|(_, status, expected, _)| status != expected)
        .map(|(what, status, expected, body)| {
            format!("{what}: {status} (expected {expected}) {}", body.trim_end())
        })
        .collect();
    assert!(
        wrong.is_empty() && timestamps == [2_000, 3_000],
        "samples of one series must be in time order across kinds:\n{}\nstored timestamps: \
         {timestamps:?} (expected [2000, 3000])",
        wrong.join("\n")
    );
}

#[test]
fn remote_write_wants_post() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    for path in ["/api/v1/push", "/api/v1/write"] {
        assert_eq!(get(&strata.url(path), None).status, 405, "{path}");
    }
}

// ---------------------------------------------------------------------------
// remote write: bad bodies

/// What is wrong, the headers, the body, the expected status.
type BadBody = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
);

#[test]
fn bad_bodies_are_refused_without_harm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        &dir.path().join("data"),
        &[
            "--limits.max-request-body-bytes",
            "200000",
            "--limits.max-decompressed-body-bytes",
            "1048576",
        ],
    );
    let good = write(vec![floats(
        &[("__name__", "survivor"), ("job", "x")],
        &[(1_000, 1.0)],
    )]);
    push_ok(&strata, None, &good);

    let compress = |bytes: &[u8]| {
        snap::raw::Encoder::new()
            .compress_vec(bytes)
            .expect("compress")
    };
    // A snappy block claiming 1 GiB (uvarint length), followed by a few bytes.
    let mut huge_claim = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    huge_claim.extend_from_slice(b"\x00abc");
    let zeros = compress(&vec![0u8; 2 << 20]);
    assert!(zeros.len() < 200_000, "{} bytes", zeros.len());

    let cases: Vec<BadBody> = vec![
        (
            "not snappy",
            REMOTE_WRITE_HEADERS.to_vec(),
            b"this is not snappy at all".to_vec(),
            400,
        ),
        (
            "not snappy (bad length)",
            REMOTE_WRITE_HEADERS.to_vec(),
            vec![0xff; 12],
            400,
        ),
        (
            "snappy but not protobuf",
            REMOTE_WRITE_HEADERS.to_vec(),
            compress(&[0x0f, 0x0f, 0x0f, 0xff, 0xff, 0xff]),
            400,
        ),
        (
            "compressed body above the limit",
            REMOTE_WRITE_HEADERS.to_vec(),
            noise(250_000, 3),
            413,
        ),
        (
            "2 MiB of zeros with a 1 MiB decompressed limit",
            REMOTE_WRITE_HEADERS.to_vec(),
            zeros,
            413,
        ),
        (
            "tiny body declaring 1 GiB",
            REMOTE_WRITE_HEADERS.to_vec(),
            huge_claim,
            413,
        ),
        (
            // 200 KB that would take 4 MB once read.
            "a body of 100,000 empty series",
            REMOTE_WRITE_HEADERS.to_vec(),
            compress(&[0x0a, 0x00].repeat(100_000)),
            400,
        ),
        (
            "remote write 2.0",
            vec![
                (
                    "Content-Type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                ),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            ],
            encode_write(&good),
            415,
        ),
        (
            "gzip",
            vec![
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            encode_write(&good),
            415,
        ),
    ];
    for (what, headers, body, expected) in cases {
        for path in ["/api/v1/push", "/api/v1/write"] {
            let reply = post(&strata.url(path), None, &headers, &body);
            assert_eq!(reply.status, expected, "{what} on {path}: {}", reply.text);
            assert!(!reply.text.trim().is_empty(), "{what}: an explanation");
        }
    }

    // Refused for what reading it would take, not series by series.
    let empty_series = compress(&[0x0a, 0x00].repeat(100_000));
    let reply = post(
        &strata.url("/api/v1/push"),
        None,
        &REMOTE_WRITE_HEADERS,
        &empty_series,
    );
    assert!(
        reply.text.contains("would take more than"),
        "{}",
        reply.text
    );

    // The server is alive and nothing was lost or added.
    assert_eq!(
        series_of(&strata, None, r#"{__name__=~".+"}"#),
        json!([{"__name__": "survivor", "job": "x"}])
    );
    push_ok(
        &strata,
        None,
        &write(vec![floats(
            &[("__name__", "survivor"), ("job", "x")],
            &[(2_000, 2.0)],
        )]),
    );
}

// ---------------------------------------------------------------------------
// tenancy

#[test]
fn invalid_tenant_ids_are_refused_like_mimir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let request = write(vec![floats(&[("__name__", "t")], &[(1_000, 1.0)])]);
    let too_long = "x".repeat(151);
    let cases = [
        ("..", "tenant ID is '.' or '..'"),
        (".", "tenant ID is '.' or '..'"),
        ("a/b", "tenant ID 'a/b' contains unsupported character '/'"),
        (
            too_long.as_str(),
            "tenant ID is too long: max 150 characters",
        ),
    ];
    for (tenant, message) in cases {
        let (status, body) = push(&strata.base(), Some(tenant), &request);
        assert_eq!(status, 400, "{tenant}: {body}");
        assert_eq!(body.trim_end(), message, "push as {tenant:?}");
        let reply = get(&strata.url("/api/v1/series?match[]=t"), Some(tenant));
        assert_bad_data(&reply, message);
        let reply = get(&strata.url("/api/v1/labels"), Some(tenant));
        assert_bad_data(&reply, message);
    }
    // 150 characters of every allowed kind are fine.
    let longest = format!("{}!-_.*'()", "a".repeat(142));
    assert_eq!(longest.len(), 150);
    push_ok(&strata, Some(&longest), &request);
    assert_eq!(
        series_of(&strata, Some(&longest), "t"),
        json!([{"__name__": "t"}])
    );
    // Nothing was written under a refused ID, not even a directory.
    let tenants: Vec<String> = std::fs::read_dir(dir.path().join("data/tenants"))
        .expect("tenants dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tenants, vec![longest]);
}

#[test]
fn a_required_tenant_header_is_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        &dir.path().join("data"),
        &["--tenancy.require-tenant", "true"],
    );
    let request = write(vec![floats(&[("__name__", "t")], &[(1_000, 1.0)])]);
    let (status, body) = push(&strata.base(), None, &request);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body.trim_end(), "no org id");
    for path in [
        "/api/v1/series?match[]=t",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/metadata",
    ] {
        let reply = get(&strata.url(path), None);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text);
        assert_eq!(reply.text.trim_end(), "no org id", "{path}");
    }
    push_ok(&strata, Some("team-a"), &request);
    assert_eq!(
        series_of(&strata, Some("team-a"), "t"),
        json!([{"__name__": "t"}])
    );
}

#[test]
fn an_empty_tenant_header_counts_as_missing() {
    // dskit's ExtractOrgIDFromHTTPRequest reads the header with Get and
    // treats "" like no header at all: 401 `no org id`.
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(
        &dir.path().join("data"),
        &["--tenancy.require-tenant", "true"],
    );
    let request = write(vec![floats(&[("__name__", "t")], &[(1_000, 1.0)])]);
    let (status, body) = push(&strata.base(), Some(""), &request);
    assert_eq!(
        (status, body.trim_end()),
        (401, "no org id"),
        "push with an empty X-Scope-OrgID"
    );
    let reply = get(&strata.url("/api/v1/labels"), Some(""));
    assert_eq!(
        (reply.status, reply.text.trim_end()),
        (401, "no org id"),
        "labels with an empty X-Scope-OrgID"
    );
}

#[test]
fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let tenants: [(Option<&str>, &str); 3] = [
        (Some("team-a"), "only_a"),
        (Some("team-b"), "only_b"),
        (None, "only_default"),
    ];
    for (tenant, name) in tenants {
        let request = WriteRequest {
            timeseries: vec![floats(
                &[("__name__", name), (name, "secret")],
                &[(1_000, 1.0)],
            )],
            metadata: vec![metadata(name, MetricType::Counter, name, "")],
        };
        push_ok(&strata, tenant, &request);
    }
    for (tenant, name) in tenants {
        assert_eq!(
            series_of(&strata, tenant, r#"{__name__=~".+"}"#),
            json!([{"__name__": name, name: "secret"}]),
            "{tenant:?}"
        );
        let mut expected_labels = vec!["__name__", name];
        expected_labels.sort_unstable();
        assert_eq!(
            data_of(&strata, tenant, "/api/v1/labels"),
            json!(expected_labels),
            "{tenant:?}"
        );
        assert_eq!(
            data_of(&strata, tenant, "/api/v1/label/__name__/values"),
            json!([name]),
            "{tenant:?}"
        );
        for (_, other) in tenants.iter().filter(|(_, n)| *n != name) {
            assert_eq!(
                data_of(&strata, tenant, &format!("/api/v1/label/{other}/values")),
                json!([]),
                "{tenant:?} sees the labels of {other}"
            );
        }
        assert_eq!(
            data_of(&strata, tenant, "/api/v1/metadata"),
            json!({name: [{"type": "counter", "help": name, "unit": ""}]}),
            "{tenant:?}"
        );
        let read = read_all(&strata.base(), tenant);
        assert_eq!(read.len(), 1, "{tenant:?}: {read:?}");
        assert_eq!(
            strata_common::labels::get(&read[0].labels, "__name__"),
            name
        );
    }
    // A tenant that never wrote sees nothing at all.
    assert_eq!(
        series_of(&strata, Some("team-c"), r#"{__name__=~".+"}"#),
        json!([])
    );
    assert_eq!(
        data_of(&strata, Some("team-c"), "/api/v1/labels"),
        json!([])
    );
    assert_eq!(
        data_of(&strata, Some("team-c"), "/api/v1/metadata"),
        json!({})
    );
}

// ---------------------------------------------------------------------------
// read APIs

#[test]
fn read_api_envelope_and_parameter_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    push_ok(
        &strata,
        None,
        &write(vec![
            floats(&[("__name__", "up"), ("job", "a")], &[(1_000, 1.0)]),
            floats(&[("__name__", "up"), ("job", "b")], &[(1_000, 1.0)]),
        ]),
    );

    let reply = get(&strata.url("/api/v1/series?match[]=up"), None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.text.starts_with(r#"{"status":"success","data":["#),
        "status comes first: {}",
        reply.text
    );
    assert!(
        reply
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.headers
    );

    let reply = get(&strata.url("/api/v1/series"), None);
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.text,
        r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
    );
    let reply = get(
        &strata.url(&format!("/api/v1/series?match[]={}", enc("{"))),
        None,
    );
    assert_bad_data(&reply, r#"invalid parameter "match[]""#);
    let reply = get(
        &strata.url(&format!("/api/v1/series?match[]={}", enc(r#"{job=""}"#))),
        None,
    );
    assert_bad_data(&reply, r#"invalid parameter "match[]""#);

    for path in ["/api/v1/series?match[]=up&", "/api/v1/labels?"] {
        // Prometheus 3.5.3 answers an inverted range with an empty success.
        let reply = get(&strata.url(&format!("{path}start=20&end=10")), None);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json(), json!({"status": "success", "data": []}));
        let reply = get(&strata.url(&format!("{path}start=abc")), None);
        assert_bad_data(
            &reply,
            r#"invalid parameter "start": invalid time value for 'start': cannot parse "abc" to a valid timestamp"#,
        );
        let reply = get(&strata.url(&format!("{path}end=tomorrow")), None);
        assert_bad_data(
            &reply,
            r#"invalid parameter "end": invalid time value for 'end': cannot parse "tomorrow" to a valid timestamp"#,
        );
    }

    // limit cuts and says so.
    let reply = get(&strata.url("/api/v1/labels?limit=1"), None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"status": "success", "data": ["__name__"], "warnings": ["results truncated due to limit"]})
    );
    let reply = get(&strata.url("/api/v1/series?match[]=up&limit=1"), None);
    assert_eq!(
        reply.json(),
        json!({"status": "success", "data": [{"__name__": "up", "job": "a"}], "warnings": ["results truncated due to limit"]})
    );
    // A limit that cuts nothing adds no warning.
    let reply = get(&strata.url("/api/v1/labels?limit=2"), None);
    assert_eq!(
        reply.json(),
        json!({"status": "success", "data": ["__name__", "job"]})
    );
    let reply = get(&strata.url("/api/v1/label/job/values?limit=1"), None);
    assert_eq!(
        reply.json(),
        json!({"status": "success", "data": ["a"], "warnings": ["results truncated due to limit"]})
    );

    // UTF-8 label names in the path are U__-escaped.
    assert_eq!(
        data_of(&strata, None, "/api/v1/label/U__http_2e_status/values"),
        json!([])
    );
    assert_eq!(
        data_of(&strata, None, "/api/v1/label/U__job/values"),
        json!(["a", "b"]),
        "U__job decodes to job"
    );
    // An escape that does not decode is taken literally, as Prometheus does.
    assert_eq!(
        data_of(&strata, None, "/api/v1/label/U__a_zz_/values"),
        json!([])
    );
}

#[test]
fn parameter_error_messages_are_prometheus_own() {
    // The texts Prometheus 3.5.3 answers to the same requests.
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let empty_matcher = enc(r#"{job=""}"#);
    let cases = [
        (
            format!("/api/v1/series?match[]={empty_matcher}"),
            r#"invalid parameter "match[]": match[] must contain at least one non-empty matcher"#,
        ),
        (
            format!("/api/v1/labels?match[]={empty_matcher}"),
            "match[] must contain at least one non-empty matcher",
        ),
        (
            "/api/v1/series?match[]=up&limit=-1".to_owned(),
            r#"invalid parameter "limit": limit must be non-negative"#,
        ),
        (
            "/api/v1/label/job/values?limit=-1".to_owned(),
            r#"invalid parameter "limit": limit must be non-negative"#,
        ),
        (
            "/api/v1/series?match[]=up&limit=abc".to_owned(),
            r#"invalid parameter "limit": strconv.Atoi: parsing "abc": invalid syntax"#,
        ),
        (
            "/api/v1/metadata?limit=abc".to_owned(),
            "limit must be a number",
        ),
        (
            "/api/v1/metadata?limit_per_metric=abc".to_owned(),
            "limit_per_metric must be a number",
        ),
        (
            format!("/api/v1/series?match[]={}", enc("{")),
            r#"invalid parameter "match[]": 1:2: parse error: unexpected end of input inside braces"#,
        ),
    ];
    let mut wrong = Vec::new();
    for (path, message) in cases {
        let reply = get(&strata.url(&path), None);
        let expected = json!({"status": "error", "errorType": "bad_data", "error": message});
        if reply.status != 400 || reply.json() != expected {
            wrong.push(format!(
                "{path}\n  got      {} {}\n  expected 400 {expected}",
                reply.status, reply.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn get_and_post_forms_give_identical_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    push_ok(
        &strata,
        None,
        &write(vec![
            floats(
                &[("__name__", "form_a"), ("job", "x")],
                &[(10_000, 1.0), (20_000, 1.0)],
            ),
            floats(&[("__name__", "form_b"), ("job", "y")], &[(30_000, 1.0)]),
            floats(&[("__name__", "form_c"), ("zone", "z")], &[(10_000, 1.0)]),
        ]),
    );
    let params = format!(
        "match[]={}&match[]={}&start=15&end=40",
        enc("form_a"),
        enc(r#"{job="y"}"#)
    );
    for endpoint in ["/api/v1/series", "/api/v1/labels"] {
        let url = strata.url(endpoint);
        let (status, via_get) = get_json(&format!("{url}?{params}"), None);
        assert_eq!(status, 200, "{via_get}");
        let (status, in_body) = post_form(&url, None, &params);
        assert_eq!(status, 200, "{in_body}");
        let (status, in_url) = post_form(&format!("{url}?{params}"), None, "");
        assert_eq!(status, 200, "{in_url}");
        let split_url = format!("{url}?match[]={}&start=15", enc("form_a"));
        let split_body = format!("match[]={}&end=40", enc(r#"{job="y"}"#));
        let (status, split) = post_form(&split_url, None, &split_body);
        assert_eq!(status, 200, "{split}");
        assert_eq!(in_body, via_get, "{endpoint}: body vs GET");
        assert_eq!(in_url, via_get, "{endpoint}: URL vs GET");
        assert_eq!(split, via_get, "{endpoint}: split vs GET");
        let expected = if endpoint.ends_with("series") {
            json!([
                {"__name__": "form_a", "job": "x"},
                {"__name__": "form_b", "job": "y"},
            ])
        } else {
            json!(["__name__", "job"])
        };
        assert_eq!(via_get["data"], expected, "{endpoint}");
    }
}

#[test]
fn start_and_end_select_series_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    // 2023-11-14T22:13:20Z = 1_700_000_000 s.
    let old_t = 1_600_000_000_000;
    let new_t = 1_700_000_000_000;
    push_ok(
        &strata,
        None,
        &write(vec![
            floats(
                &[("__name__", "timed"), ("age", "old"), ("old_only", "1")],
                &[(old_t, 1.0)],
            ),
            floats(
                &[("__name__", "timed"), ("age", "new"), ("new_only", "1")],
                &[(new_t, 1.0)],
            ),
        ]),
    );
    let both = json!([
        {"__name__": "timed", "age": "new", "new_only": "1"},
        {"__name__": "timed", "age": "old", "old_only": "1"},
    ]);
    let only_new = json!([{"__name__": "timed", "age": "new", "new_only": "1"}]);
    assert_eq!(series_of(&strata, None, "timed"), both);
    let windows = [
        ("1699999999", "1700000001"),
        ("1699999999.5", "1700000000.001"),
        ("1700000000", "1700000000"),
        ("2023-11-14T22:13:19Z", "2023-11-14T22:13:21Z"),
        ("2023-11-14T22:13:20.000Z", "2023-11-14T23:13:20+01:00"),
    ];
    for (start, end) in windows {
        let q = format!("start={}&end={}", enc(start), enc(end));
        assert_eq!(
            data_of(&strata, None, &format!("/api/v1/series?match[]=timed&{q}")),
            only_new,
            "{q}"
        );
        assert_eq!(
            data_of(&strata, None, &format!("/api/v1/labels?{q}")),
            json!(["__name__", "age", "new_only"]),
            "{q}"
        );
        assert_eq!(
            data_of(&strata, None, &format!("/api/v1/label/age/values?{q}")),
            json!(["new"]),
            "{q}"
        );
    }
    // Only a start, only an end, and a window between the two samples.
    assert_eq!(
        data_of(
            &strata,
            None,
            "/api/v1/series?match[]=timed&start=1650000000"
        ),
        only_new
    );
    assert_eq!(
        data_of(&strata, None, "/api/v1/series?match[]=timed&end=1650000000"),
        json!([{"__name__": "timed", "age": "old", "old_only": "1"}])
    );
    assert_eq!(
        data_of(
            &strata,
            None,
            "/api/v1/series?match[]=timed&start=1650000000&end=1650000001"
        ),
        json!([])
    );
}

#[test]
fn metadata_api_like_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let request = WriteRequest {
        timeseries: Vec::new(),
        metadata: vec![
            metadata("http_requests_total", MetricType::Counter, "Requests.", ""),
            metadata(
                "http_requests_total",
                MetricType::Counter,
                "Requests served.",
                "",
            ),
            metadata("temperature", MetricType::Gauge, "Temperature.", "celsius"),
            metadata("latency", MetricType::Histogram, "Latency.", "seconds"),
        ],
    };
    push_ok(&strata, None, &request);
    // Sent again: nothing doubles.
    push_ok(&strata, None, &request);

    let all = data_of(&strata, None, "/api/v1/metadata");
    assert_eq!(
        all,
        json!({
            "http_requests_total": [
                {"type": "counter", "help": "Requests.", "unit": ""},
                {"type": "counter", "help": "Requests served.", "unit": ""},
            ],
            "latency": [{"type": "histogram", "help": "Latency.", "unit": "seconds"}],
            "temperature": [{"type": "gauge", "help": "Temperature.", "unit": "celsius"}],
        })
    );
    let limited = data_of(&strata, None, "/api/v1/metadata?limit=2");
    assert_eq!(limited.as_object().expect("object").len(), 2, "{limited}");
    let per_metric = data_of(&strata, None, "/api/v1/metadata?limit_per_metric=1");
    assert_eq!(
        per_metric["http_requests_total"]
            .as_array()
            .expect("array")
            .len(),
        1,
        "{per_metric}"
    );
    assert_eq!(per_metric.as_object().expect("object").len(), 3);
    assert_eq!(
        data_of(&strata, None, "/api/v1/metadata?metric=temperature"),
        json!({"temperature": [{"type": "gauge", "help": "Temperature.", "unit": "celsius"}]})
    );
    assert_eq!(
        data_of(&strata, None, "/api/v1/metadata?metric=nothing"),
        json!({})
    );
    assert_eq!(
        data_of(&strata, None, "/api/v1/metadata?limit=-1"),
        all,
        "a negative limit is no limit"
    );
}

#[test]
fn stubs_health_prefix_and_own_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);

    let build = data_of(&strata, None, "/api/v1/status/buildinfo");
    let version = build["version"].as_str().expect("version");
    let parts: Vec<&str> = version
        .split(['-', '+'])
        .next()
        .expect("core")
        .split('.')
        .collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u64>().is_ok()),
        "not semver: {version}"
    );
    assert!(build.get("features").is_none(), "{build}");
    for key in ["revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(build[key].is_string(), "{key} missing: {build}");
    }

    assert_eq!(
        get_json(&strata.url("/api/v1/query_exemplars?query=up"), None).1,
        json!({"status": "success", "data": []})
    );
    assert_eq!(
        post_form(&strata.url("/api/v1/query_exemplars"), None, "query=up").1,
        json!({"status": "success", "data": []})
    );
    assert_eq!(
        get_json(&strata.url("/api/v1/rules"), None).1,
        json!({"status": "success", "data": {"groups": []}})
    );
    assert_eq!(get(&strata.url("/api/v1/status/flags"), None).status, 404);
    assert_eq!(get(&strata.url("/-/healthy"), None).status, 200);
    assert_eq!(get(&strata.url("/-/ready"), None).status, 200);
    assert_eq!(
        get_json(&strata.url("/api/v1/metadata"), None).1,
        json!({"status": "success", "data": {}})
    );

    // Mimir's /prometheus prefix: the same API, push included.
    let request = write(vec![floats(
        &[("__name__", "prefixed"), ("job", "p")],
        &[(1_000, 1.0), (2_000, 2.0)],
    )]);
    let reply = push_to(
        &strata,
        "/prometheus/api/v1/push",
        None,
        &encode_write(&request),
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    for path in [
        "/api/v1/series?match[]=prefixed",
        "/api/v1/labels",
        "/api/v1/label/job/values",
        "/api/v1/status/buildinfo",
        "/api/v1/rules",
    ] {
        let plain = get(&strata.url(path), None);
        let prefixed = get(&strata.url(&format!("/prometheus{path}")), None);
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(prefixed.status, 200, "/prometheus{path}");
        assert_eq!(prefixed.json(), plain.json(), "{path}");
    }
    let (status, _) = post_form(
        &strata.url("/prometheus/api/v1/series"),
        None,
        "match[]=prefixed",
    );
    assert_eq!(status, 200);
    assert_eq!(get(&strata.url("/prometheus/-/healthy"), None).status, 200);

    let metrics = get(&strata.url("/metrics"), None);
    assert_eq!(metrics.status, 200);
    let value_of = |name: &str| -> Option<f64> {
        metrics.text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = rest.strip_prefix(' ')?;
            value.split(' ').next()?.parse().ok()
        })
    };
    let appended = value_of("strata_store_samples_appended_total")
        .unwrap_or_else(|| panic!("no samples counter in:\n{}", metrics.text));
    assert!(appended >= 2.0, "{appended} < 2 samples pushed");
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("strata_frontend_http_requests_total{")),
        "no request counter in:\n{}",
        metrics.text
    );
}

// ---------------------------------------------------------------------------
// the binary

/// Runs `strata` with `args` (no harness flags) and waits at most `timeout`.
fn run_strata(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait strata").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "strata {args:?} still running after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The non-empty lines of a process's stderr.
fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_names_every_flag() {
    let output = run_strata(&["--help"], Duration::from_secs(10));
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--target",
        "--config.file",
        "--http-addr",
        "--grpc-addr",
        "--data-dir",
        "--log.level",
        "--log.format",
        "--wal.fsync",
        "--tenancy.require-tenant",
        "--limits.max-label-names-per-series",
        "--limits.max-request-body-bytes",
        "--limits.max-decompressed-body-bytes",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_port_in_use_fails_fast_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let free_addr = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    for (http, grpc) in [(&taken_addr, &free_addr), (&free_addr, &taken_addr)] {
        let started = Instant::now();
        let output = run_strata(
            &["--http-addr", http, "--grpc-addr", grpc, "--data-dir", data],
            Duration::from_secs(10),
        );
        assert!(!output.status.success(), "{output:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "not fast");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "one line: {lines:#?}");
        assert!(lines[0].contains(&taken_addr), "{lines:?}");
    }
}

#[test]
fn an_unusable_data_dir_is_named() {
    let args = [
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--data-dir",
        "/dev/null/x",
    ];
    let output = run_strata(&args, Duration::from_secs(10));
    assert!(!output.status.success(), "{output:?}");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert!(lines[0].contains("/dev/null/x"), "{lines:?}");
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = Strata::start(&data, &[]);
    let args = [
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ];
    let output = run_strata(&args, Duration::from_secs(10));
    assert!(!output.status.success(), "{output:?}");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert!(
        lines[0].contains(data.to_str().expect("utf-8")),
        "{lines:?}"
    );
    assert_eq!(get(&first.url("/-/ready"), None).status, 200);
}

#[test]
fn an_invalid_config_file_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("strata.yaml");
    std::fs::write(&config, "limits:\n  max_series_per_tenant: 3\n").expect("write config");
    let output = run_strata(
        &["--config.file", config.to_str().expect("utf-8 path")],
        Duration::from_secs(10),
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert!(lines[0].contains("max_series_per_tenant"), "{lines:?}");
}

#[test]
fn sigterm_exits_zero_and_keeps_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut strata = Strata::start(&data, &[]);
    let request = write(vec![floats(
        &[("__name__", "kept"), ("job", "sigterm")],
        &[(1_000, 1.0), (2_000, 2.0)],
    )]);
    push_ok(&strata, Some("team-a"), &request);
    // An idle keep-alive connection (as Grafana and Prometheus hold) must
    // not hold the shutdown up.
    let idle = agent();
    let mut reply = idle.get(&strata.url("/-/healthy")).call().expect("GET");
    assert_eq!(reply.status().as_u16(), 200);
    // Read to the end, so the connection goes back to the agent's pool.
    let _ = reply.body_mut().read_to_string();
    let asked = Instant::now();
    let status = strata.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", strata.log());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
    drop(idle);
    let strata = Strata::start(&data, &[]);
    assert_eq!(
        series_of(&strata, Some("team-a"), "kept"),
        json!([{"__name__": "kept", "job": "sigterm"}])
    );
    let read = read_all(&strata.base(), Some("team-a"));
    let samples: Vec<(i64, f64)> = read[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(samples, vec![(1_000, 1.0), (2_000, 2.0)]);
}

#[test]
fn json_logs_are_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut strata = Strata::start(&dir.path().join("data"), &["--log.format", "json"]);
    push_ok(
        &strata,
        None,
        &write(vec![floats(&[("__name__", "logged")], &[(1_000, 1.0)])]),
    );
    let status = strata.terminate();
    assert!(status.success(), "{status:?}");
    let log = strata.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in lines {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        assert!(value.get("level").is_some(), "no level: {line}");
    }
}

#[test]
fn label_and_series_answers_of_old_ranges_are_cached_per_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &[]);
    let now = crate::support::now_ms();
    let old = now - 3 * 3_600_000;
    push_ok(
        &strata,
        Some("a"),
        &write(vec![floats(
            &[("__name__", "m"), ("job", "a-job")],
            &[(old, 1.0)],
        )]),
    );
    push_ok(
        &strata,
        Some("b"),
        &write(vec![floats(
            &[("__name__", "m"), ("job", "b-job")],
            &[(old, 1.0)],
        )]),
    );
    let ask = |tenant: &str, end_ms: i64| -> (String, Value) {
        let url = strata.url(&format!(
            "/api/v1/label/job/values?start={}&end={}",
            (old - 60_000) as f64 / 1000.0,
            end_ms as f64 / 1000.0
        ));
        let mut response = agent()
            .get(&url)
            .header("X-Scope-OrgID", tenant)
            .call()
            .expect("label values");
        let cache = response
            .headers()
            .get("x-strata-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value =
            serde_json::from_str(&response.body_mut().read_to_string().expect("body"))
                .expect("json");
        (cache, body["data"].clone())
    };
    let end = now - 3_600_000;
    assert_eq!(ask("a", end), ("miss".to_owned(), json!(["a-job"])));
    assert_eq!(ask("a", end), ("hit".to_owned(), json!(["a-job"])));
    // The same request from another tenant is its own entry.
    assert_eq!(ask("b", end), ("miss".to_owned(), json!(["b-job"])));
    assert_eq!(ask("b", end), ("hit".to_owned(), json!(["b-job"])));
    // A range reaching into the freshness window is never cached.
    assert_eq!(ask("a", now), ("miss".to_owned(), json!(["a-job"])));
    assert_eq!(ask("a", now), ("miss".to_owned(), json!(["a-job"])));
}

#[test]
fn a_query_loading_more_series_than_the_limit_fails_with_422() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strata = Strata::start(&dir.path().join("data"), &["--querier.max-series", "2"]);
    let t = crate::support::now_ms() - 60_000;
    let series = (0..3)
        .map(|i| floats(&[("__name__", "m"), ("i", &i.to_string())], &[(t, 1.0)]))
        .collect();
    push_ok(&strata, None, &write(series));
    let time = t as f64 / 1000.0;
    let (status, body) = get_json(
        &strata.url(&format!("/api/v1/query?query=m&time={time}")),
        None,
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("more than 2 series")),
        "{body}"
    );
    let query = enc("m{i!=\"2\"}");
    let (status, body) = get_json(
        &strata.url(&format!("/api/v1/query?query={query}&time={time}")),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(2));
}
