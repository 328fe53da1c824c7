//! `--target store` and `--target frontend` as separate processes talking
//! gRPC: the same answers as one `--target all` process.

use strata_common::labels::label;
use strata_proto::prometheus::{Sample, TimeSeries, WriteRequest};

use crate::support::{Strata, get_json, push};

fn request() -> WriteRequest {
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "roles_metric"), label("job", "split")],
            samples: vec![Sample {
                value: 42.0,
                timestamp: 1_000,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The frontend lists team-a's one series.
fn assert_series_listed(frontend: &Strata) {
    let (status, json) = get_json(
        &frontend.url("/api/v1/series?match[]=roles_metric"),
        Some("team-a"),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["data"],
        serde_json::json!([{"__name__": "roles_metric", "job": "split"}])
    );
}

#[test]
fn frontend_and_store_as_separate_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Strata::start(&dir.path().join("store"), &["--target", "store"]);
    let store_address = format!("http://127.0.0.1:{}", store.grpc_port);
    let frontend = Strata::start(
        &dir.path().join("frontend"),
        &[
            "--target",
            "frontend",
            "--frontend.store-address",
            &store_address,
        ],
    );

    let (status, body) = push(&frontend.base(), Some("team-a"), &request());
    assert_eq!(
        status,
        204,
        "push through the frontend failed: {body}\n{}",
        frontend.log()
    );

    assert_series_listed(&frontend);
    // The store node itself serves no Prometheus API, only health and metrics.
    let (status, _) = get_json(
        &store.url("/api/v1/series?match[]=roles_metric"),
        Some("team-a"),
    );
    assert_eq!(status, 404);
    let (status, _) = get_json(&store.url("/-/ready"), None);
    assert_eq!(status, 200);

    // A refused sample crosses gRPC as a per-series rejection, not an error.
    let (status, body) = push(&frontend.base(), Some("team-a"), &request());
    assert_eq!(status, 204, "an identical repeat is accepted: {body}");
    let mut older = request();
    older.timeseries[0].samples[0].timestamp = 500;
    let (status, body) = push(&frontend.base(), Some("team-a"), &older);
    assert_eq!(status, 400);
    assert!(body.contains("out of order sample"), "{body}");

    // The admin flush crosses gRPC too: the store cuts team-a's head into a
    // block on its own disk, and the series is still there.
    assert_eq!(crate::support::flush(&frontend.base(), Some("team-a")), 1);
    let blocks = std::fs::read_dir(dir.path().join("store/tenants/team-a/blocks"))
        .expect("the store's blocks directory")
        .count();
    assert_eq!(blocks, 1);
    assert_series_listed(&frontend);
}

#[test]
fn frontend_without_a_store_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unused = crate::support::free_port();
    let frontend = Strata::start(
        dir.path(),
        &[
            "--target",
            "frontend",
            "--frontend.store-address",
            &format!("http://127.0.0.1:{unused}"),
        ],
    );
    let (status, body) = push(&frontend.base(), None, &request());
    assert_eq!(status, 503, "{body}");
}
