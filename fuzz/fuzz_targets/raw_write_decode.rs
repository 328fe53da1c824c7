//! The in-place remote-write decoder (`strata_common::raw_write`) against
//! prost decoding the same bytes as `strata.ingest.v1.RawWriteRequest`.
//!
//! Oracle: no panic; both accept the input or both refuse it; when both
//! accept, they read the same series, labels, samples (compared by bits),
//! histograms and metadata (exemplars are skipped by the in-place decoder).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_common::raw_write::RawWrite;
use strata_proto::ingest::RawWriteRequest;

fuzz_target!(|data: &[u8]| {
    let ours = RawWrite::decode(data.to_vec());
    let theirs = RawWriteRequest::decode(data);
    match (ours, theirs) {
        (Ok(write), Ok(mut request)) => {
            for series in &mut request.timeseries {
                series.exemplars.clear();
            }
            assert_eq!(
                reencode(&write),
                request.encode_to_vec(),
                "decoders read different requests"
            );
        }
        (Err(_), Err(_)) => {}
        (ours, theirs) => panic!(
            "decoders disagree: in place {:?}, prost {:?}",
            ours.err(),
            theirs.err()
        ),
    }
});

/// The in-place reading as prost's message, encoded (so NaNs compare by bits).
fn reencode(write: &RawWrite) -> Vec<u8> {
    write.to_message().encode_to_vec()
}
