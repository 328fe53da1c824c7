//! Remote read request decoding as the frontend runs it: body limit,
//! snappy's declared length against the decompressed-body limit,
//! decompression, `ReadRequest` decoding and the conversion of every wire
//! matcher (`Matcher::from_proto`, which compiles regexes).
//!
//! Each input is used as a snappy body and as the decompressed protobuf.
//!
//! Oracle: no panic; a converted matcher converts back to the same wire
//! matcher, and a regex matcher whose pattern is a literal string matches
//! that string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_common::{MatchOp, Matcher};
use strata_frontend::LimitsConfig;
use strata_proto::prometheus::ReadRequest;
use strata_proto::prometheus::read_request::ResponseType;

fuzz_target!(|data: &[u8]| {
    let limits = LimitsConfig::default();
    if let Some(decoded) = strata_fuzz::decompress_like_frontend(data, &limits) {
        read(&decoded);
    }
    read(data);
});

fn read(message: &[u8]) {
    let Ok(request) = ReadRequest::decode(message) else {
        return;
    };
    // The negotiation reads the types as the frontend does.
    let _supported: Vec<ResponseType> = request
        .accepted_response_types
        .iter()
        .filter_map(|t| ResponseType::try_from(*t).ok())
        .collect();
    for query in &request.queries {
        for wire in &query.matchers {
            let Ok(matcher) = Matcher::from_proto(wire) else {
                continue;
            };
            assert_eq!(matcher.to_proto(), *wire, "matcher does not round-trip");
            for value in [wire.value.as_str(), "", wire.name.as_str()] {
                let _ = matcher.matches(value);
            }
            let literal = !wire.value.chars().any(|c| "\\.+*?()[]{}^$|".contains(c));
            if literal && matcher.op == MatchOp::RegexMatch {
                assert!(
                    matcher.matches(&wire.value),
                    "literal regex {:?} does not match itself",
                    wire.value
                );
            }
        }
    }
}
