//! Writes the starting corpora in `fuzz/seeds/<target>/`: a few small valid
//! (and a few deliberately invalid) inputs per target, so the fuzzer starts
//! from the real formats instead of from nothing. Regenerate with
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::path::Path;

use prost::Message;
use strata_common::chunk;
use strata_common::labels::label;
use strata_proto::STALE_NAN_BITS;
use strata_proto::prometheus::{
    BucketSpan, Histogram, LabelMatcher, MetricMetadata, Query, ReadRequest, Sample, TimeSeries,
    WriteRequest, histogram, label_matcher, read_request,
};
use strata_proto::wal::{
    HistogramsRecord, MetadataRecord, SamplesRecord, SeriesEntry, SeriesRecord, WalRecord,
    wal_record,
};
use strata_store_node::wal_codec;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };
    for (name, bytes) in remote_write() {
        write("remote_write", &name, &bytes)?;
    }
    for (name, bytes) in raw_write_decode() {
        write("raw_write_decode", &name, &bytes)?;
    }
    for (name, bytes) in remote_read() {
        write("remote_read", &name, &bytes)?;
    }
    for (name, bytes) in wal_replay() {
        write("wal_replay", &name, &bytes)?;
    }
    for (name, bytes) in chunk_decode() {
        write("chunk_decode", &name, &bytes)?;
    }
    for (i, query) in PROMQL.iter().enumerate() {
        write("promql", &format!("q{i:02}"), query.as_bytes())?;
    }
    for (name, bytes) in selector_params() {
        write("selector_params", &name, &bytes)?;
    }
    Ok(())
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy compresses")
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: pairs.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..TimeSeries::default()
    }
}

fn native_histogram(timestamp: i64) -> Histogram {
    Histogram {
        count: Some(histogram::Count::CountInt(3)),
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
        sum: 4.5,
        schema: 3,
        zero_threshold: 1e-128,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![1, 0],
        timestamp,
        ..Histogram::default()
    }
}

fn remote_write() -> Vec<(String, Vec<u8>)> {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let valid = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "up"), ("instance", "a:9090"), ("job", "api")],
                &[(1_700_000_000_000, 1.0), (1_700_000_015_000, stale)],
            ),
            series(
                &[("__name__", "http_requests_total"), ("code", "200")],
                &[(1_700_000_000_000, 42.0)],
            ),
        ],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".to_owned(),
            help: "requests".to_owned(),
            unit: String::new(),
        }],
    }
    .encode_to_vec();
    let mut with_histogram = series(&[("__name__", "latency")], &[]);
    with_histogram.histograms = vec![native_histogram(1_700_000_000_000)];
    let histograms = WriteRequest {
        timeseries: vec![with_histogram],
        metadata: Vec::new(),
    }
    .encode_to_vec();
    // Refused series: unsorted, duplicate name, empty value, bad names.
    let refused = WriteRequest {
        timeseries: vec![
            series(
                &[("job", "a"), ("__name__", "up"), ("env", "")],
                &[(1, 1.0)],
            ),
            series(&[("__name__", "up"), ("a", "1"), ("a", "2")], &[(1, 1.0)]),
            series(&[("__name__", "1bad"), ("x-y", "1")], &[(1, 1.0)]),
            series(&[("job", "no_name")], &[(1, 1.0)]),
        ],
        metadata: Vec::new(),
    }
    .encode_to_vec();
    vec![
        ("valid.snappy".to_owned(), snappy(&valid)),
        ("histogram.snappy".to_owned(), snappy(&histograms)),
        ("refused.snappy".to_owned(), snappy(&refused)),
        ("valid.proto".to_owned(), valid),
    ]
}

/// The remote-write seeds decompressed: the in-place decoder reads
/// protobuf only.
fn raw_write_decode() -> Vec<(String, Vec<u8>)> {
    remote_write()
        .into_iter()
        .filter_map(|(name, bytes)| match name.strip_suffix(".snappy") {
            Some(stem) => {
                #[allow(clippy::disallowed_methods, reason = "our own small seeds")]
                let decoded = snap::raw::Decoder::new().decompress_vec(&bytes).ok()?;
                Some((format!("{stem}.proto"), decoded))
            }
            None => None,
        })
        .collect()
}

fn remote_read() -> Vec<(String, Vec<u8>)> {
    let matcher = |kind: label_matcher::Type, name: &str, value: &str| LabelMatcher {
        r#type: kind as i32,
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let request = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 1_700_000_000_000,
            end_timestamp_ms: 1_700_000_300_000,
            matchers: vec![
                matcher(label_matcher::Type::Eq, "__name__", "up"),
                matcher(label_matcher::Type::Re, "job", "api|web"),
                matcher(label_matcher::Type::Re, "instance", "node_.*"),
                matcher(label_matcher::Type::Nre, "env", "(dev|test)[0-9]+"),
                matcher(label_matcher::Type::Neq, "code", "500"),
            ],
            hints: None,
        }],
        accepted_response_types: vec![
            read_request::ResponseType::StreamedXorChunks as i32,
            read_request::ResponseType::Samples as i32,
        ],
    }
    .encode_to_vec();
    vec![
        ("query.snappy".to_owned(), snappy(&request)),
        ("query.proto".to_owned(), request),
    ]
}

fn wal_replay() -> Vec<(String, Vec<u8>)> {
    let record = |r: wal_record::Record| wal_codec::encode(&WalRecord { record: Some(r) });
    let series_record = record(wal_record::Record::Series(SeriesRecord {
        entries: vec![
            SeriesEntry {
                id: 0,
                labels: vec![label("__name__", "up"), label("job", "api")],
            },
            SeriesEntry {
                id: 1,
                labels: vec![label("__name__", "latency")],
            },
        ],
    }));
    let few = record(wal_record::Record::Samples(SamplesRecord {
        series_ids: vec![0, 0, 0],
        timestamps_ms: vec![1000, 16_000, 31_000],
        value_bits: vec![1f64.to_bits(), 0f64.to_bits(), STALE_NAN_BITS],
    }));
    // Enough samples that the codec snappy-compresses the record and the
    // head cuts more than one chunk.
    let n = 300;
    let many = record(wal_record::Record::Samples(SamplesRecord {
        series_ids: vec![0; n],
        timestamps_ms: (0..n as i64).map(|i| 60_000 + i * 15_000).collect(),
        value_bits: (0..n).map(|i| (i as f64).to_bits()).collect(),
    }));
    let histograms = record(wal_record::Record::Histograms(HistogramsRecord {
        series_ids: vec![1],
        histograms: vec![native_histogram(2000)],
    }));
    let metadata = record(wal_record::Record::Metadata(MetadataRecord {
        entries: vec![MetricMetadata {
            r#type: 2,
            metric_family_name: "up".to_owned(),
            help: "whether the target is up".to_owned(),
            unit: String::new(),
        }],
    }));
    let all = vec![
        series_record.clone(),
        few.clone(),
        histograms,
        metadata,
        many,
    ];
    let framed = strata_fuzz::wal_input(&all, None);
    let split = strata_fuzz::wal_input(&all, Some(200));
    // Layout 0: the segment file as is, here a real one with a torn tail.
    let mut file = vec![0u8];
    file.extend_from_slice(strata_fuzz::WAL_HEADER);
    strata_fuzz::wal_frame(&mut file, &series_record);
    strata_fuzz::wal_frame(&mut file, &few);
    file.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    vec![
        ("framed".to_owned(), framed),
        ("split".to_owned(), split),
        ("torn_file".to_owned(), file),
    ]
}

fn chunk_decode() -> Vec<(String, Vec<u8>)> {
    let regular: Vec<(i64, f64)> = (0..120)
        .map(|i| (1_700_000_000_000 + i * 15_000, (i % 7) as f64))
        .collect();
    let irregular = vec![
        (-5, 1.5),
        (0, f64::from_bits(STALE_NAN_BITS)),
        (1, f64::INFINITY),
        (70_000, -0.0),
        (1 << 40, f64::NAN),
        (i64::MAX, f64::MIN_POSITIVE),
    ];
    let mut out = Vec::new();
    for (name, samples) in [("regular", &regular), ("irregular", &irregular)] {
        for (i, bytes) in chunk::encode_all(samples).into_iter().enumerate() {
            out.push((format!("{name}{i}"), bytes));
        }
    }
    // Structured inputs (see `samples` in the target): start time, then
    // selector and value bytes.
    let mut steps = 1_700_000_000_000i64.to_be_bytes().to_vec();
    for selector in [0x00u8, 0x10, 0x22, 0x33, 0x44, 0x55, 0x66, 0x67, 0x01] {
        steps.push(selector);
        steps.extend_from_slice(&[0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]);
    }
    out.push(("structured".to_owned(), steps));
    out
}

fn selector_params() -> Vec<(String, Vec<u8>)> {
    // Fields are separated by the raw byte 0xff.
    let raw = |op: u8, fields: &[&str]| -> Vec<u8> {
        let mut out = vec![op];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(0xff);
            }
            out.extend_from_slice(field.as_bytes());
        }
        out
    };
    vec![
        ("equal".to_owned(), raw(0, &["job", "api", "api", "web"])),
        (
            "literals".to_owned(),
            raw(2, &["job", "api|web|db", "web", "x"]),
        ),
        (
            "prefix".to_owned(),
            raw(2, &["instance", "node_.*", "node_1", "nod"]),
        ),
        (
            "general".to_owned(),
            raw(3, &["env", "(dev|test)[0-9]+", "dev1", "prod"]),
        ),
        (
            "classes".to_owned(),
            raw(2, &["path", "/api/\\d+/.*", "/api/12/x", "/api/a"]),
        ),
        (
            "durations".to_owned(),
            raw(1, &["1h30m", "15s", "1.5", "2w1d", "100ms", "1y"]),
        ),
        (
            "times".to_owned(),
            raw(
                0,
                &[
                    "2015-07-01T20:10:51.781Z",
                    "2015-07-01T22:10:51+02:00",
                    "1700000000.123",
                    "-292273086-05-16T16:47:06Z",
                ],
            ),
        ),
    ]
}

/// Queries covering the parser's and the engine's main paths.
const PROMQL: &[&str] = &[
    "up",
    "up{job=\"api\"}",
    "up{job=~\"a.*|web\", instance!=\"b\"}",
    "{__name__=~\"http_.*\"}",
    "http_requests_total[5m]",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[1m]))",
    "sum without (instance) (increase(http_requests_total[10m]))",
    "topk(2, http_requests_total)",
    "quantile(0.9, temperature)",
    "count_values(\"v\", up)",
    "histogram_quantile(0.5, sum by (le) (rate(latency_bucket[5m])))",
    "up offset 5m",
    "up @ 300",
    "up @ start()",
    "max_over_time(temperature[5m:30s])",
    "rate(http_requests_total[5m])[10m:1m]",
    "deriv(temperature[10m])",
    "predict_linear(http_requests_total[5m], 600)",
    "holt_winters(temperature[10m], 0.5, 0.5)",
    "absent(nonexistent{job=\"x\"})",
    "absent_over_time(up[1m])",
    "label_replace(up, \"dst\", \"$1\", \"instance\", \"(.*)\")",
    "label_join(up, \"both\", \"-\", \"job\", \"instance\")",
    "up * on (job) group_left (instance) sum by (job) (up)",
    "up and ignoring (instance) up",
    "up or vector(1)",
    "up unless up{job=\"web\"}",
    "http_requests_total > bool 100",
    "-temperature ^ 2 % 3",
    "clamp(temperature, -1, 1)",
    "round(temperature, 0.5)",
    "scalar(sum(up)) + time()",
    "sort_desc(sum by (job) (up))",
    "timestamp(up)",
    "changes(up[20m]) + resets(http_requests_total[20m])",
    "stddev_over_time(temperature[20m])",
    "quantile_over_time(0.5, temperature[20m])",
    "last_over_time(up[1m]) == 1",
    "count(count by (job) (up))",
    "1 / 0",
    "\"a string\"",
    "sum(up) by (job) / ignoring(job) group_left count(up)",
];
