//! Fast non-cryptographic hashing for in-memory lookup tables. SipHash
//! costs a measurable share of ingest CPU, so these are folded-multiply
//! hashes instead — keyed with secrets drawn once per process, because
//! label sets come from senders: with known constants a sender could make
//! any number of series share one hash (a multiply by a zero it can
//! arrange) and turn every lookup of the tenant into a scan.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use strata_proto::prometheus::Label;

use crate::packed_labels::PackedLabels;

const MULTIPLIER: u64 = 0xa076_1d64_78bd_642f;

/// Per-process secrets of the hashes (never persisted: nothing on disk
/// depends on a hash value).
struct Keys {
    seed: u64,
    first: u64,
    second: u64,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    // std's RandomState is seeded from the OS's randomness.
    let random = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.finish()
    };
    Keys {
        seed: random(1),
        first: random(2),
        second: random(3) | 1,
    }
});

/// A word-at-a-time hasher: each 8-byte word is mixed in with a folded
/// 64×64→128-bit multiply, which spreads every input bit over the result.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

impl Default for FastHasher {
    fn default() -> Self {
        FastHasher { hash: KEYS.seed }
    }
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        let product = u128::from(self.hash ^ word) * u128::from(MULTIPLIER);
        self.hash = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap`/`HashSet` state using [`FastHasher`].
pub type FastBuild = BuildHasherDefault<FastHasher>;

/// A hash of a label set: [`packed_labels_hash`] of its packed form.
pub fn labels_hash(labels: &[Label]) -> u64 {
    PackedLabels::with_encoded(labels, packed_labels_hash)
}

/// The hash of a label set in its packed form ([`PackedLabels`]), which is
/// also how a remote-write request carries a canonically encoded series'
/// labels: ingest hashes those bytes as they lie. The form's length
/// prefixes keep `a="bc"` and `ab="c"` apart.
#[inline]
pub fn packed_labels_hash(bytes: &[u8]) -> u64 {
    let keys = &*KEYS;
    fold(mix_bytes(keys, keys.seed, bytes), MULTIPLIER)
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Mixes `bytes` into `state`. The state (secret through the seed) goes
/// into both factors of each multiply, so no choice of input bytes is
/// known to zero one of them.
#[inline]
fn mix_bytes(keys: &Keys, state: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let (state, tail) = if len > 16 {
        let mut state = state;
        let mut rest = bytes;
        while rest.len() > 16 {
            state = fold(
                state ^ word(rest, 0) ^ keys.first,
                state.rotate_left(29) ^ word(rest, 8) ^ keys.second,
            );
            rest = &rest[16..];
        }
        // The last 16 bytes, overlapping what the loop took.
        (state, &bytes[len - 16..])
    } else {
        (state, bytes)
    };
    let (a, b) = match tail.len() {
        8..=16 => (word(tail, 0), word(tail, tail.len() - 8)),
        4..=7 => (half(tail, 0), half(tail, tail.len() - 4)),
        1..=3 => (
            u64::from(tail[0]) | u64::from(tail[tail.len() / 2]) << 8,
            u64::from(tail[tail.len() - 1]),
        ),
        _ => (0, 0),
    };
    fold(
        state ^ a ^ keys.first,
        state.rotate_left(29) ^ b ^ keys.second ^ (len as u64).rotate_left(32),
    )
}

/// Eight bytes at `at` (the caller checked that they exist).
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Four bytes at `at` (the caller checked that they exist).
#[inline]
fn half(bytes: &[u8], at: usize) -> u64 {
    let mut half = [0u8; 4];
    half.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(half))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    #[test]
    fn separates_names_from_values() {
        let a = labels_hash(&[label("a", "bc")]);
        let b = labels_hash(&[label("ab", "c")]);
        assert_ne!(a, b);
        assert_eq!(a, labels_hash(&[label("a", "bc")]));
    }

    #[test]
    fn every_length_and_every_byte_counts() {
        let mut seen = std::collections::HashSet::new();
        let text = "abcdefghijklmnopqrstuvwxyz0123456789_abcdefghijklmnopqrstuvwxyz";
        for len in 0..text.len() {
            let value = &text[..len];
            assert!(seen.insert(labels_hash(&[label("a", value)])), "{len}");
            let mut changed = value.as_bytes().to_vec();
            for at in 0..len {
                changed[at] ^= 1;
                let changed_value = std::str::from_utf8(&changed).expect("ascii");
                assert!(seen.insert(labels_hash(&[label("a", changed_value)])));
                changed[at] ^= 1;
            }
        }
        // An empty name or value still counts as a label.
        assert_ne!(labels_hash(&[]), labels_hash(&[label("", "")]));
    }

    #[test]
    fn a_collision_family_of_the_unkeyed_hash_no_longer_collides() {
        // With the old public constants these 16-byte values zeroed one
        // factor of a multiply, so their last 8 bytes were ignored and all
        // of them shared one hash.
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let value = format!("?cSF}}QJy{i:08}");
            seen.insert(labels_hash(&[
                label("__name__", "m544"),
                label("a", &value),
            ]));
        }
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn few_collisions_on_similar_series() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            let hash = labels_hash(&[
                label("__name__", "node_cpu_seconds_total"),
                label("cpu", &(i % 64).to_string()),
                label("instance", &format!("host-{}:9100", i / 64)),
            ]);
            seen.insert(hash);
        }
        assert_eq!(seen.len(), 100_000);
    }
}
