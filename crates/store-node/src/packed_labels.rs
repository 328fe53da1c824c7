//! A series' label set in one allocation: `uvarint(len) name uvarint(len)
//! value` per label, in the series' (sorted) order. The head keeps one per
//! series instead of a `Vec<Label>` of separately allocated strings, which
//! took most of a series' memory; the read paths unpack on demand.

use strata_proto::prometheus::Label;

/// Labels packed into one boxed byte slice. Built only from `Label`s, whose
/// names and values are valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedLabels(Box<[u8]>);

impl PackedLabels {
    pub fn pack(labels: &[Label]) -> Self {
        let len: usize = labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len);
        for label in labels {
            put(&mut out, label.name.as_bytes());
            put(&mut out, label.value.as_bytes());
        }
        PackedLabels(out.into_boxed_slice())
    }

    /// The (name, value) byte pairs, in order.
    fn pairs(&self) -> Pairs<'_> {
        Pairs { rest: &self.0 }
    }

    /// Whether these are exactly `labels`, compared without allocating.
    pub fn matches(&self, labels: &[Label]) -> bool {
        self.matches_bytes(
            labels
                .iter()
                .map(|l| (l.name.as_bytes(), l.value.as_bytes())),
        )
    }

    /// Whether these are exactly `labels`, given as (name, value) bytes.
    pub fn matches_bytes<'a>(&self, labels: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
        let mut pairs = self.pairs();
        for (name, value) in labels {
            match pairs.next() {
                Some((packed_name, packed_value))
                    if same(packed_name, name) && same(packed_value, value) => {}
                _ => return false,
            }
        }
        pairs.next().is_none()
    }

    /// The packed bytes (for a head snapshot).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Labels from packed bytes read back from disk: `None` unless the
    /// bytes are whole pairs of valid UTF-8.
    pub fn parse(bytes: &[u8]) -> Option<Vec<Label>> {
        let mut pairs = Pairs { rest: bytes };
        let mut labels = Vec::new();
        while !pairs.rest.is_empty() {
            let (name, value) = pairs.next()?;
            labels.push(Label {
                name: String::from_utf8(name.to_vec()).ok()?,
                value: String::from_utf8(value.to_vec()).ok()?,
            });
        }
        Some(labels)
    }

    pub fn unpack(&self) -> Vec<Label> {
        self.pairs()
            .map(|(name, value)| Label {
                name: String::from_utf8_lossy(name).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
            })
            .collect()
    }
}

/// `a == b`, without a call to `memcmp` for the short names and values
/// most labels have (a call per label showed in ingest profiles).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let len = a.len();
    match len {
        8..=16 => word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8),
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// Eight bytes at `at` (the caller checked that they exist).
#[inline]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

struct Pairs<'a> {
    rest: &'a [u8],
}

impl<'a> Pairs<'a> {
    fn take(&mut self) -> Option<&'a [u8]> {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            len |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
        let (bytes, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        Some(bytes)
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.take()?, self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::labels::label;

    #[test]
    fn round_trips_and_compares_exactly() {
        let long = "v".repeat(300);
        let labels = vec![
            label("__name__", "up"),
            label("empty", ""),
            label("long", &long),
            label("utf8", "héllo ✓"),
        ];
        let packed = PackedLabels::pack(&labels);
        assert_eq!(packed.unpack(), labels);
        assert!(packed.matches(&labels));
        assert!(!packed.matches(&labels[..3]));
        let mut other = labels.clone();
        other[2].value.push('x');
        assert!(!packed.matches(&other));
        let mut more = labels.clone();
        more.push(label("z", "1"));
        assert!(!packed.matches(&more));
        assert!(PackedLabels::pack(&[]).matches(&[]));
        // Every length up to past 16 bytes, differing at either end.
        for len in 0..40 {
            let value = "x".repeat(len);
            let packed = PackedLabels::pack(&[label("a", &value)]);
            assert!(packed.matches(&[label("a", &value)]));
            for at in [0, len / 2, len.saturating_sub(1)]
                .into_iter()
                .filter(|_| len > 0)
            {
                let mut other = value.clone().into_bytes();
                other[at] = b'y';
                let other = String::from_utf8(other).expect("ascii");
                assert!(!packed.matches(&[label("a", &other)]), "{len} {at}");
            }
        }
        assert!(PackedLabels::pack(&[]).unpack().is_empty());
        assert_eq!(PackedLabels::parse(packed.as_bytes()), Some(labels));
        let bytes = packed.as_bytes();
        assert_eq!(PackedLabels::parse(&bytes[..bytes.len() - 1]), None);
        assert_eq!(
            PackedLabels::parse(&[1, b'a']),
            None,
            "a name without its value"
        );
        assert_eq!(PackedLabels::parse(&[1, 0xff, 0]), None, "not UTF-8");
    }
}
