//! Blocks on disk answer exactly like the head: the same data pushed into
//! a server that keeps everything in its head and into one whose data is
//! cut into several blocks (and a head) gives identical answers on every
//! read API, also after a restart; the admin flush endpoint and the block
//! tools work on a real data directory.

use std::process::Command;

use serde_json::Value;
use strata_common::labels::label;
use strata_proto::prometheus::{Sample, TimeSeries, WriteRequest};

use crate::crash::read_all;
use crate::support::{Strata, encode, get_json, post_form, push, seconds};

/// 2026-01-01T00:00:00Z, a multiple of every block range used here.
const START: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;
const STALE: u64 = 0x7ff0_0000_0000_0002;

/// The samples of one scrape at `t`: counters for 4 instances × 2 jobs, a
/// classic histogram, a gauge, a series that ends (stale marker) after
/// 90 minutes and one that starts at 4 h.
fn scrape(t: i64) -> Vec<TimeSeries> {
    let i = (t - START) / STEP;
    let sample = |value: f64| {
        vec![Sample {
            value,
            timestamp: t,
        }]
    };
    let mut out = Vec::new();
    for job in ["api", "web"] {
        for instance in 0..4 {
            out.push(TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("instance", &format!("i{instance}")),
                    label("job", job),
                ],
                samples: sample((i * (instance + 1)) as f64 + (i % 7) as f64 * 0.5),
                ..Default::default()
            });
        }
        for (le, share) in [("0.1", 3), ("0.5", 6), ("+Inf", 10)] {
            out.push(TimeSeries {
                labels: vec![
                    label("__name__", "latency_seconds_bucket"),
                    label("job", job),
                    label("le", le),
                ],
                samples: sample((i * share) as f64),
                ..Default::default()
            });
        }
    }
    out.push(TimeSeries {
        labels: vec![label("__name__", "temperature_celsius"), label("room", "a")],
        samples: sample(20.0 + ((i % 40) as f64) * 0.25),
        ..Default::default()
    });
    let ending = t - START;
    if ending <= 90 * 60_000 {
        let value = if ending == 90 * 60_000 {
            f64::from_bits(STALE)
        } else {
            i as f64
        };
        out.push(TimeSeries {
            labels: vec![label("__name__", "ending_metric")],
            samples: sample(value),
            ..Default::default()
        });
    }
    if t - START >= 4 * HOUR {
        out.push(TimeSeries {
            labels: vec![label("__name__", "late_metric"), label("job", "api")],
            samples: sample(1.0),
            ..Default::default()
        });
    }
    out
}

/// Pushes scrapes in `[from, to)` in batches of 20 scrapes.
fn load(strata: &Strata, from: i64, to: i64) {
    let times: Vec<i64> = (from..to).step_by(STEP as usize).collect();
    for batch in times.chunks(20) {
        let request = WriteRequest {
            timeseries: batch.iter().flat_map(|t| scrape(*t)).collect(),
            ..Default::default()
        };
        let (status, body) = push(&strata.base(), None, &request);
        assert_eq!(status, 204, "{body}");
    }
}

fn flush(strata: &Strata) -> u64 {
    crate::support::flush(&strata.base(), None)
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "increase(http_requests_total[1h])",
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[10m])))",
    "max_over_time(temperature_celsius[45m])",
    "count_over_time(ending_metric[1h])",
    "ending_metric",
    "late_metric",
    "count({__name__=~\".+\"})",
];

/// Every read API's answer for the loaded data, as comparable JSON.
fn answers(strata: &Strata) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let end = START + 5 * HOUR;
    for query in QUERIES {
        for (from, to, step) in [
            (START, end, "60"),
            (START + HOUR - 7 * 60_000, START + HOUR + 11 * 60_000, "15"),
            (START + 3 * HOUR + 17_000, START + 4 * HOUR + 3_000, "37"),
        ] {
            let form = format!(
                "query={}&start={}&end={}&step={step}",
                encode(query),
                seconds(from),
                seconds(to)
            );
            let (status, body) = post_form(&strata.url("/api/v1/query_range"), None, &form);
            assert_eq!(status, 200, "{query}: {body}");
            out.push((format!("{query} {from} {to} {step}"), body["data"].clone()));
        }
    }
    for path in [
        "/api/v1/labels".to_owned(),
        "/api/v1/label/__name__/values".to_owned(),
        "/api/v1/label/job/values".to_owned(),
        format!("/api/v1/series?match[]={}", encode("{job=~\".+\"}")),
        format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            encode("{__name__=~\".+\"}"),
            seconds(START + 100 * 60_000),
            seconds(START + 110 * 60_000)
        ),
        format!(
            "/api/v1/label/__name__/values?start={}&end={}",
            seconds(START),
            seconds(START + 30 * 60_000)
        ),
    ] {
        let (status, body) = get_json(&strata.url(&path), None);
        assert_eq!(status, 200, "{path}: {body}");
        out.push((path, body["data"].clone()));
    }
    let mut raw: Vec<String> = read_all(&strata.base(), None)
        .iter()
        .map(|s| {
            let samples: Vec<(i64, u64)> = s
                .samples
                .iter()
                .map(|x| (x.timestamp, x.value.to_bits()))
                .collect();
            format!("{:?} {samples:?}", s.labels)
        })
        .collect();
    raw.sort();
    out.push(("remote read".to_owned(), Value::from(raw)));
    out
}

fn assert_same(expected: &[(String, Value)], got: &[(String, Value)], what: &str) {
    assert_eq!(expected.len(), got.len());
    for ((name, want), (_, have)) in expected.iter().zip(got) {
        assert_eq!(want, have, "{what}: {name} differs");
    }
}

#[test]
fn queries_over_head_and_blocks_equal_the_same_queries_over_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No automatic maintenance during the test: cuts happen by flush only.
    let head_only = Strata::start(
        &dir.path().join("head"),
        &["--blocks.maintenance-interval", "1h"],
    );
    let flags = [
        "--blocks.range",
        "1h",
        "--blocks.maintenance-interval",
        "1h",
    ];
    let data = dir.path().join("blocks");
    let mut with_blocks = Strata::start(&data, &flags);

    load(&head_only, START, START + 5 * HOUR);
    load(&with_blocks, START, START + 2 * HOUR);
    assert_eq!(flush(&with_blocks), 2, "one block per hour of data");
    load(&with_blocks, START + 2 * HOUR, START + 4 * HOUR);
    assert_eq!(flush(&with_blocks), 2);
    load(&with_blocks, START + 4 * HOUR, START + 5 * HOUR);

    let expected = answers(&head_only);
    assert!(
        expected
            .iter()
            .any(|(_, v)| v["result"].as_array().is_some_and(|r| !r.is_empty())),
        "the reference answers are empty"
    );
    assert_same(&expected, &answers(&with_blocks), "head + 4 blocks");

    // A restart reads the blocks, the WAL checkpoint and the rest of the WAL.
    with_blocks.kill9();
    let with_blocks = Strata::start(&data, &flags);
    assert_same(&expected, &answers(&with_blocks), "after a restart");

    // Everything in blocks: still the same.
    assert_eq!(flush(&with_blocks), 1);
    assert_same(&expected, &answers(&with_blocks), "all in blocks");

    // The tools see five healthy blocks.
    let verify = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tool", "verify"])
        .arg(&data)
        .output()
        .expect("strata tool verify");
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        5,
        "{report}"
    );
    let block_dir = data.join("tenants/anonymous/blocks");
    let first = std::fs::read_dir(&block_dir)
        .expect("blocks")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("a block");
    let inspect = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tool", "inspect-block"])
        .arg(&first)
        .output()
        .expect("strata tool inspect-block");
    let text = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.status.success(), "{text}");
    // 8 counters + 6 buckets + 1 gauge + 1 ending series in the first hour.
    assert!(text.contains("series            16"), "{text}");
    assert!(text.contains("float samples     3840"), "{text}");
    assert!(text.contains("bytes per sample"), "{text}");
}

#[test]
fn samples_older_than_the_head_are_out_of_bounds_unless_backfill_is_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = [
        "--blocks.range",
        "1h",
        "--blocks.maintenance-interval",
        "1h",
    ];
    let strata = Strata::start(&dir.path().join("data"), &flags);
    load(&strata, START, START + 2 * HOUR);
    flush(&strata);
    let old = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "backfilled")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: START + 60_000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let (status, body) = push(&strata.base(), None, &old);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of bounds"), "{body}");
    drop(strata);

    let flags = [
        "--blocks.range",
        "1h",
        "--blocks.maintenance-interval",
        "1h",
        "--blocks.backfill",
        "true",
    ];
    let strata = Strata::start(&dir.path().join("data"), &flags);
    let (status, body) = push(&strata.base(), None, &old);
    assert_eq!(status, 204, "{body}");
    flush(&strata);
    let (_, body) = get_json(
        &strata.url(&format!(
            "/api/v1/query?query=backfilled&time={}",
            seconds(START + 120_000)
        )),
        None,
    );
    assert_eq!(body["data"]["result"][0]["value"][1], "1", "{body}");
}
