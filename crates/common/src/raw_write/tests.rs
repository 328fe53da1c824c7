use proptest::prelude::*;
use prost::Message;
use strata_proto::ingest::{RawLabel, RawTimeSeries, RawWriteRequest};
use strata_proto::prometheus::{BucketSpan, histogram};

use super::*;

/// The in-place reading, encoded by prost (so NaN payloads compare by bits).
fn as_prost(write: &RawWrite) -> Vec<u8> {
    write.to_message().encode_to_vec()
}

fn prost_view(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut request = RawWriteRequest::decode(bytes).ok()?;
    for series in &mut request.timeseries {
        series.exemplars.clear();
    }
    Some(request.encode_to_vec())
}

/// Both decoders accept `bytes` or both refuse it, and agree on what it says.
fn agrees_with_prost(bytes: &[u8]) {
    let ours = RawWrite::decode(bytes.to_vec());
    match (ours, prost_view(bytes)) {
        (Ok(write), Some(theirs)) => assert_eq!(as_prost(&write), theirs, "{bytes:?}"),
        (Err(_), None) => {}
        (ours, theirs) => panic!(
            "decoders disagree on {bytes:?}: ours {:?}, prost accepts: {}",
            ours.map(|w| w.len()),
            theirs.is_some()
        ),
    }
}

fn label(name: &[u8], value: &[u8]) -> RawLabel {
    RawLabel {
        name: name.to_vec(),
        value: value.to_vec(),
    }
}

fn sample_request() -> RawWriteRequest {
    RawWriteRequest {
        timeseries: vec![
            RawTimeSeries {
                labels: vec![label(b"__name__", b"up"), label(b"job", b"api")],
                samples: vec![
                    Sample {
                        value: 1.0,
                        timestamp: 1_700_000_000_000,
                    },
                    Sample {
                        value: f64::from_bits(0x7ff0_0000_0000_0002),
                        timestamp: -5,
                    },
                ],
                exemplars: vec![b"\x0a\x00".to_vec()],
                histograms: Vec::new(),
            },
            RawTimeSeries {
                labels: vec![label(b"__name__", b"h"), label(b"bad", b"\xff\xfe")],
                samples: Vec::new(),
                exemplars: Vec::new(),
                histograms: vec![Histogram {
                    count: Some(histogram::Count::CountInt(3)),
                    schema: 3,
                    positive_spans: vec![BucketSpan {
                        offset: 0,
                        length: 1,
                    }],
                    positive_deltas: vec![3],
                    timestamp: 7,
                    ..Default::default()
                }],
            },
            RawTimeSeries::default(),
        ],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "up".to_owned(),
            help: "whether it is up".to_owned(),
            unit: String::new(),
        }],
    }
}

#[test]
fn reads_what_prost_writes() {
    let bytes = sample_request().encode_to_vec();
    let write = RawWrite::decode(bytes.clone()).expect("valid");
    assert_eq!(write.len(), 3);
    let first = write.series(0).expect("first");
    let labels: Vec<_> = first.labels().collect();
    assert_eq!(
        labels,
        vec![(&b"__name__"[..], &b"up"[..]), (&b"job"[..], &b"api"[..])]
    );
    assert_eq!(first.label_count(), 2);
    assert_eq!(first.longest_name(), 8);
    assert_eq!(first.longest_value(), 3);
    assert_eq!(first.samples().len(), 2);
    assert_eq!(first.samples()[1].value.to_bits(), 0x7ff0_0000_0000_0002);
    assert_eq!(first.samples()[1].timestamp, -5);
    // Invalid UTF-8 stays bytes: the validator refuses that one series.
    let second = write.series(1).expect("second");
    assert_eq!(
        second.labels().nth(1),
        Some((&b"bad"[..], &b"\xff\xfe"[..]))
    );
    assert_eq!(second.histograms().len(), 1);
    assert_eq!(write.series(2).expect("empty").label_count(), 0);
    assert!(write.series(3).is_none());
    assert_eq!(write.metadata().len(), 1);
    agrees_with_prost(&bytes);
}

#[test]
fn label_fields_are_the_labels_bytes_when_they_follow_one_another() {
    let labels = vec![label(b"__name__", b"up"), label(b"job", b"api")];
    let alone = RawTimeSeries {
        labels: labels.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let bytes = sample_request().encode_to_vec();
    let write = RawWrite::decode(bytes).expect("valid");
    let first = write.series(0).expect("first");
    assert_eq!(first.label_fields(), Some(&alone[..]));
    assert_eq!(write.series(2).expect("empty").label_fields(), None);

    // A sample between two labels: no contiguous label bytes.
    let sample = field(1, FIXED64, &1f64.to_le_bytes());
    let label_field = |l: &RawLabel| field(1, LENGTH_DELIMITED, &l.encode_to_vec());
    let series = [
        label_field(&labels[0]),
        field(2, LENGTH_DELIMITED, &sample),
        label_field(&labels[1]),
    ]
    .concat();
    let split = RawWrite::decode(field(1, LENGTH_DELIMITED, &series)).expect("valid");
    let series = split.series(0).expect("one series");
    assert_eq!(series.label_count(), 2);
    assert_eq!(series.label_fields(), None);
    // After the samples, but together: their bytes.
    let series = [
        field(2, LENGTH_DELIMITED, &sample),
        label_field(&labels[0]),
        label_field(&labels[1]),
    ]
    .concat();
    let late = RawWrite::decode(field(1, LENGTH_DELIMITED, &series)).expect("valid");
    assert_eq!(
        late.series(0).expect("one").label_fields(),
        Some(&alone[..])
    );
}

#[test]
fn empty_body_is_an_empty_request() {
    let write = RawWrite::decode(Vec::new()).expect("empty");
    assert!(write.is_empty());
}

#[test]
fn every_truncation_is_refused_or_read_like_prost() {
    let bytes = sample_request().encode_to_vec();
    for end in 0..bytes.len() {
        agrees_with_prost(&bytes[..end]);
    }
    // A cut inside a label is refused, with the offset of the field.
    let error = RawWrite::decode(bytes[..8].to_vec()).expect_err("truncated");
    assert!(matches!(error, DecodeError::Truncated { .. }), "{error}");
}

/// `field` of wire type `wire` with a payload, as bytes.
fn field(number: u32, wire: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(number) << 3 | u64::from(wire), &mut out);
    if wire == LENGTH_DELIMITED {
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
    }
    out.extend_from_slice(payload);
    out
}

#[test]
fn unknown_fields_are_skipped_at_every_level() {
    let unknown = [
        field(9, VARINT, &[0x96, 0x01]),
        field(10, FIXED64, &[1; 8]),
        field(11, LENGTH_DELIMITED, b"whatever"),
        field(12, FIXED32, &[2; 4]),
        [
            field(13, START_GROUP, &field(1, VARINT, &[5])),
            field(13, END_GROUP, &[]),
        ]
        .concat(),
    ]
    .concat();
    let label = [
        unknown.clone(),
        field(1, LENGTH_DELIMITED, b"__name__"),
        field(2, LENGTH_DELIMITED, b"first"),
        // The last value wins, as in prost.
        field(2, LENGTH_DELIMITED, b"up"),
    ]
    .concat();
    let sample = [
        field(2, VARINT, &[0x02]),
        unknown.clone(),
        field(1, FIXED64, &2.5f64.to_le_bytes()),
    ]
    .concat();
    let series = [
        field(1, LENGTH_DELIMITED, &label),
        unknown.clone(),
        field(2, LENGTH_DELIMITED, &sample),
    ]
    .concat();
    let request = [
        unknown.clone(),
        field(1, LENGTH_DELIMITED, &series),
        // Field 2 is reserved in WriteRequest: skipped like any other.
        field(2, LENGTH_DELIMITED, b"old"),
    ]
    .concat();
    let write = RawWrite::decode(request.clone()).expect("valid");
    let series = write.series(0).expect("one series");
    assert_eq!(
        series.labels().collect::<Vec<_>>(),
        vec![(&b"__name__"[..], &b"up"[..])]
    );
    assert_eq!(
        series.samples(),
        &[Sample {
            value: 2.5,
            timestamp: 2
        }]
    );
    agrees_with_prost(&request);
}

#[test]
fn damaged_input_is_a_clear_error() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x0a, 0x05, 0x0a], "runs past the end"),
        (vec![0x80; 11], "varint"),
        (vec![0x0a], "varint"),
        (vec![0x00], "invalid field key"),
        (vec![0x0e], "invalid field key"),
        (
            field(1, VARINT, &[1]),
            "WriteRequest.timeseries has wire type 0",
        ),
        (
            field(
                1,
                LENGTH_DELIMITED,
                &field(2, LENGTH_DELIMITED, &field(1, VARINT, &[1])),
            ),
            "Sample.value has wire type 0",
        ),
        (
            field(
                1,
                LENGTH_DELIMITED,
                &field(1, LENGTH_DELIMITED, &field(1, FIXED32, &[0; 4])),
            ),
            "Label.name has wire type 5",
        ),
        (field(7, END_GROUP, &[]), "unbalanced group"),
        (field(7, START_GROUP, &[]), "unbalanced group"),
        (
            [field(7, START_GROUP, &[]), field(8, END_GROUP, &[])].concat(),
            "unbalanced group",
        ),
        (
            field(3, LENGTH_DELIMITED, &field(2, LENGTH_DELIMITED, b"\xff")),
            "MetricMetadata",
        ),
        (
            field(1, LENGTH_DELIMITED, &field(4, LENGTH_DELIMITED, &[0x08])),
            "Histogram",
        ),
    ];
    for (bytes, expected) in cases {
        let error = RawWrite::decode(bytes.clone()).expect_err(expected);
        let message = error.to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        agrees_with_prost(&bytes);
    }
}

#[test]
fn deep_groups_are_refused_without_overflowing_the_stack() {
    let depth = 10_000;
    let mut bytes = Vec::new();
    for _ in 0..depth {
        bytes.extend(field(7, START_GROUP, &[]));
    }
    for _ in 0..depth {
        bytes.extend(field(7, END_GROUP, &[]));
    }
    assert!(RawWrite::decode(bytes.clone()).is_err());
    agrees_with_prost(&bytes);
}

proptest! {
    #[test]
    fn arbitrary_bytes_decode_like_prost(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        agrees_with_prost(&bytes);
    }

    #[test]
    fn damaged_requests_decode_like_prost(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_request().encode_to_vec();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let cut = cut.index(bytes.len() + 1);
        agrees_with_prost(&bytes[..cut]);
        agrees_with_prost(&bytes);
    }
}

#[test]
fn a_body_of_tiny_parts_is_refused_within_a_memory_bound() {
    // Empty series: two bytes each, some 44 bytes each once read.
    let empty_series = field(1, LENGTH_DELIMITED, &[]).repeat(100_000);
    let error = RawWrite::decode_within(empty_series.clone(), 8).expect_err("too many parts");
    assert!(
        matches!(
            error,
            DecodeError::TooManyParts {
                limit: 1_600_000,
                per_byte: 8
            }
        ),
        "{error}"
    );
    assert_eq!(
        RawWrite::decode(empty_series).expect("no bound").len(),
        100_000
    );
    // Empty histograms in one series: a Histogram struct for two bytes.
    let histograms = field(4, LENGTH_DELIMITED, &[]).repeat(10_000);
    let series = field(1, LENGTH_DELIMITED, &histograms);
    let error = RawWrite::decode_within(series, 8).expect_err("too many histograms");
    assert!(matches!(error, DecodeError::TooManyParts { .. }), "{error}");
    // One series of empty samples: refused before its vector outgrows the bound.
    let samples = field(2, LENGTH_DELIMITED, &[]).repeat(100_000);
    let series = field(1, LENGTH_DELIMITED, &samples);
    let error = RawWrite::decode_within(series.clone(), 8).expect_err("too many samples");
    assert!(matches!(error, DecodeError::TooManyParts { .. }), "{error}");
    let write = RawWrite::decode_within(series.clone(), 16).expect("room for them");
    assert!(
        write.memory_bytes() <= series.len() * 17,
        "{}",
        write.memory_bytes()
    );
    // A real request stays well within the bound.
    let real = sample_request().encode_to_vec();
    let write = RawWrite::decode_within(real.clone(), 8).expect("real request");
    assert_eq!(write.len(), 3);
    assert!(write.memory_bytes() >= real.len());
}
