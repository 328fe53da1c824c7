//! Remote write ingestion as the frontend runs it, minus the store: body
//! limit, snappy's declared length against the decompressed-body limit,
//! decompression, the lenient protobuf decoding and per-series validation.
//!
//! Each input is used twice: as a snappy body (the real path), and as the
//! already decompressed protobuf, so mutations reach the decoder and the
//! validator without having to keep a snappy stream intact.
//!
//! Oracle: no panic; a series that passes validation is in the canonical
//! form `validate_series` promises (labels sorted, unique, non-empty, a
//! metric name, within the limits).

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::raw_write::RawWrite;
use strata_frontend::LimitsConfig;
use strata_frontend::validation::{is_valid_label_name, is_valid_metric_name, validate_series};
use strata_proto::prometheus::Label;

fuzz_target!(|data: &[u8]| {
    let limits = LimitsConfig::default();
    if let Some(decoded) = strata_fuzz::decompress_like_frontend(data, &limits) {
        ingest(&decoded, &limits);
    }
    ingest(data, &limits);
});

fn ingest(message: &[u8], limits: &LimitsConfig) {
    let Ok(request) = RawWrite::decode(message.to_vec()) else {
        return;
    };
    for raw in request.iter() {
        match validate_series(raw, limits) {
            Ok(labels) => check_canonical(&labels, limits),
            Err(message) => assert!(!message.is_empty(), "refusal without a message"),
        }
    }
}

fn check_canonical(labels: &[Label], limits: &LimitsConfig) {
    assert!(
        labels.windows(2).all(|w| w[0].name < w[1].name),
        "labels not sorted and unique: {labels:?}"
    );
    assert!(labels.len() <= limits.max_label_names_per_series);
    let mut has_name = false;
    for label in labels {
        assert!(
            !label.value.is_empty(),
            "empty label value kept: {labels:?}"
        );
        assert!(label.name.len() <= limits.max_label_name_length);
        assert!(label.value.len() <= limits.max_label_value_length);
        if label.name == "__name__" {
            has_name = true;
            assert!(is_valid_metric_name(&label.value), "{labels:?}");
        }
        assert!(is_valid_label_name(&label.name), "{labels:?}");
    }
    assert!(
        has_name,
        "series without a metric name accepted: {labels:?}"
    );
}
