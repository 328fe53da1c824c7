//! Encoding of WAL record payloads: one format byte, then the protobuf
//! `WalRecord`, snappy-compressed when that is smaller (as Prometheus
//! compresses its WAL). The WAL itself frames and checksums the payload.

use prost::Message;
use strata_proto::wal::WalRecord;

/// The payload is the protobuf message as is.
const RAW: u8 = 0;
/// The payload is a snappy block of the protobuf message.
const SNAPPY: u8 = 1;
/// Below this size compression is not worth trying.
const MIN_COMPRESS_BYTES: usize = 64;
/// A record never decompresses to more than this (the WAL's record limit).
const MAX_DECODED_BYTES: usize = 256 << 20;

/// Encodes a record for the WAL.
pub fn encode(record: &WalRecord) -> Vec<u8> {
    encode_message(record)
}

/// Decodes a WAL payload written by [`encode`].
pub fn decode(payload: &[u8]) -> Result<WalRecord, String> {
    decode_message(payload)
}

/// Encodes any message the way WAL records are (also used for checkpoints).
pub fn encode_message(record: &impl Message) -> Vec<u8> {
    let message = record.encode_to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::wal::{SamplesRecord, wal_record};

    fn samples(n: usize) -> WalRecord {
        WalRecord {
            record: Some(wal_record::Record::Samples(SamplesRecord {
                series_ids: (0..n as u32).collect(),
                timestamps_ms: vec![1_700_000_000_000; n],
                value_bits: (0..n).map(|i| (i as f64).to_bits()).collect(),
            })),
        }
    }

    #[test]
    fn round_trips_small_and_large_records() {
        for n in [0, 1, 5, 2000] {
            let record = samples(n);
            assert_eq!(decode(&encode(&record)).expect("decodes"), record);
        }
    }

    #[test]
    fn large_batches_are_compressed() {
        let record = samples(2000);
        let encoded = encode(&record);
        assert_eq!(encoded[0], SNAPPY);
        assert!(
            encoded.len() < record.encode_to_vec().len() * 3 / 4,
            "{}",
            encoded.len()
        );
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[7, 1, 2]).is_err());
        assert!(decode(&[SNAPPY, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
