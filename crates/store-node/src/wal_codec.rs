//! Encoding of WAL record payloads: one format byte, then the protobuf
//! `WalRecord`, snappy-compressed when that is smaller (as Prometheus
//! compresses its WAL), or ([`PREDICTED_SAMPLES`]) a float samples record
//! encoded against each series' previous sample in the same segment
//! ([`samples`]). The WAL itself frames and checksums the payload.
//!
//! Formats 0 and 1 decode on their own; format 2 needs the records before
//! it in its segment, which [`SegmentCodec`] keeps track of. Every format
//! ever written stays readable: a data directory of an older build opens.

use prost::Message;
use strata_proto::wal::{SamplesRecord, SeriesEntry, WalRecord, wal_record};

mod samples;
#[cfg(test)]
mod tests;

/// The payload is the protobuf message as is.
const RAW: u8 = 0;
/// The payload is a snappy block of the protobuf message.
const SNAPPY: u8 = 1;
/// The payload is a float samples record predicted from the earlier
/// records of its segment ([`samples`]).
const PREDICTED_SAMPLES: u8 = 2;
/// Below this size compression is not worth trying.
const MIN_COMPRESS_BYTES: usize = 64;
/// A record never decompresses to more than this (the WAL's record limit).
const MAX_DECODED_BYTES: usize = 256 << 20;

/// Encodes a record for the WAL.
pub fn encode(record: &WalRecord) -> Vec<u8> {
    encode_message(record)
}

/// Decodes a WAL payload written by [`encode`] (or a predicted samples
/// record as if it were the first of its segment; replay uses
/// [`SegmentCodec`]).
pub fn decode(payload: &[u8]) -> Result<WalRecord, String> {
    if payload.first() == Some(&PREDICTED_SAMPLES) {
        return SegmentCodec::new().decode(0, payload);
    }
    decode_message(payload)
}

/// Encodes and decodes the records of a WAL one segment at a time: float
/// sample records are predicted from the series' previous samples in the
/// same segment. The writer keeps one for appending and replay one for
/// reading; both see the same records of a segment in the same order, so
/// their predictions agree.
#[derive(Debug, Default)]
pub struct SegmentCodec {
    state: samples::SegmentState,
}

impl SegmentCodec {
    /// A codec with no predictions yet.
    pub fn new() -> Self {
        SegmentCodec::default()
    }

    /// Encodes float samples for `segment`, as the next record of that
    /// segment: every record encoded before for the same segment must be
    /// written before it (the WAL starts a new segment after a failed
    /// batch, see [`crate::wal::Wal::append_batch`]).
    pub fn encode_samples(&mut self, segment: u64, record: &SamplesRecord) -> Vec<u8> {
        self.state.enter(segment);
        let mut out = Vec::with_capacity(16 + record.series_ids.len() * 4);
        out.push(PREDICTED_SAMPLES);
        samples::encode(&mut self.state, record, &mut out);
        out
    }

    /// Decodes the next record of `segment` (records of a segment must be
    /// given in order, from its first).
    pub fn decode(&mut self, segment: u64, payload: &[u8]) -> Result<WalRecord, String> {
        self.state.enter(segment);
        match payload.split_first() {
            Some((&PREDICTED_SAMPLES, body)) => {
                let samples = samples::decode(&mut self.state, body)?;
                Ok(WalRecord {
                    record: Some(wal_record::Record::Samples(samples)),
                })
            }
            _ => decode(payload),
        }
    }
}

/// Most bytes [`SegmentCodec::encode_samples`] writes for `samples` samples.
pub fn max_samples_len(samples: usize) -> usize {
    1 + samples::max_encoded_len(samples)
}

/// Encodes a series record of `entries`: the bytes of [`encode`] of a
/// `WalRecord` holding them, without copying them into one first.
pub fn encode_series(entries: &[SeriesEntry]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, message};
    // WalRecord.series (1) → SeriesRecord.entries (1), repeated.
    let record_len = message::encoded_len_repeated(1, entries);
    let mut out = Vec::with_capacity(record_len + 11);
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(record_len as u64, &mut out);
    for entry in entries {
        message::encode(1, entry, &mut out);
    }
    frame(out)
}

/// Encodes any message the way WAL records are (also used for checkpoints).
pub fn encode_message(record: &impl Message) -> Vec<u8> {
    frame(record.encode_to_vec())
}

/// A payload of the protobuf bytes `message`: compressed when smaller.
fn frame(message: Vec<u8>) -> Vec<u8> {
    if message.len() >= MIN_COMPRESS_BYTES
        && let Ok(compressed) = snap::raw::Encoder::new().compress_vec(&message)
        && compressed.len() < message.len()
    {
        let mut out = Vec::with_capacity(compressed.len() + 1);
        out.push(SNAPPY);
        out.extend_from_slice(&compressed);
        return out;
    }
    let mut out = Vec::with_capacity(message.len() + 1);
    out.push(RAW);
    out.extend_from_slice(&message);
    out
}

/// Decodes a message written by [`encode_message`].
pub fn decode_message<M: Message + Default>(payload: &[u8]) -> Result<M, String> {
    let Some((&format, body)) = payload.split_first() else {
        return Err("empty wal record".to_owned());
    };
    let message = match format {
        RAW => std::borrow::Cow::Borrowed(body),
        SNAPPY => {
            let declared = snap::raw::decompress_len(body)
                .map_err(|e| format!("wal record is not valid snappy: {e}"))?;
            if declared > MAX_DECODED_BYTES {
                return Err(format!(
                    "wal record declares {declared} bytes, more than the limit"
                ));
            }
            #[allow(
                clippy::disallowed_methods,
                reason = "the declared length was checked above"
            )]
            let decoded = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("wal record is not valid snappy: {e}"))?;
            std::borrow::Cow::Owned(decoded)
        }
        other => return Err(format!("unknown wal record format {other}")),
    };
    M::decode(message.as_ref()).map_err(|e| format!("undecodable wal record: {e}"))
}
