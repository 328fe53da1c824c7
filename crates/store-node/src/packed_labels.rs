//! A series' label set in one allocation, in the protobuf wire form a
//! remote-write `TimeSeries` gives its `labels` field: per label
//! `0x0a uvarint(len) [0x0a uvarint(len) name] [0x12 uvarint(len) value]`,
//! in the series' (sorted) order, with the shortest varints and empty
//! strings left out, as every protobuf encoder writes them. The head keeps
//! one per series instead of a `Vec<Label>` of separately allocated
//! strings, which took most of a series' memory; the read paths unpack on
//! demand.
//!
//! Why the wire form: a sender that encodes a known series canonically
//! sends exactly these bytes, so ingest finds the series by hashing the
//! request's label bytes as they lie and comparing them with one `==`,
//! without walking names and values (see `raw_write.rs`). Other encodings
//! of the same labels just miss that path and are looked up by their
//! decoded labels.

use std::cell::RefCell;

use strata_proto::prometheus::Label;

/// Key of `TimeSeries.labels` and of `Label.name` (field 1, length-delimited).
const FIELD_1: u8 = 0x0a;
/// Key of `Label.value` (field 2, length-delimited).
const FIELD_2: u8 = 0x12;

/// Labels packed into one boxed byte slice. Built only from `Label`s, whose
/// names and values are valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedLabels(Box<[u8]>);

impl PackedLabels {
    pub fn pack(labels: &[Label]) -> Self {
        let mut out = Vec::with_capacity(encoded_len(labels));
        encode(labels, &mut out);
        PackedLabels(out.into_boxed_slice())
    }

    /// Runs `f` over the packed form of `labels`, built in a buffer kept
    /// per thread (lookups by `Label`s allocate nothing).
    pub fn with_encoded<T>(labels: &[Label], f: impl FnOnce(&[u8]) -> T) -> T {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                encode(labels, &mut buf);
                f(&buf)
            }
            // Only if `f` itself encodes again: a buffer of its own.
            Err(_) => f(&PackedLabels::pack(labels).0),
        })
    }

    /// The (name, value) byte pairs, in order.
    fn pairs(&self) -> Pairs<'_> {
        Pairs { rest: &self.0 }
    }

    /// Whether these are exactly `labels`, compared without allocating.
    pub fn matches(&self, labels: &[Label]) -> bool {
        PackedLabels::with_encoded(labels, |bytes| self.matches_bytes(bytes))
    }

    /// Whether these are exactly the labels whose packed form is `bytes`.
    #[inline]
    pub fn matches_bytes(&self, bytes: &[u8]) -> bool {
        *self.0 == *bytes
    }

    /// The packed bytes (for a head snapshot and for hashing).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Labels from packed bytes read back from disk: `None` unless the
    /// bytes are whole labels of valid UTF-8 in exactly the form
    /// [`PackedLabels::pack`] writes.
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
        PackedLabels::pack(&labels)
            .matches_bytes(bytes)
            .then_some(labels)
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

/// Bytes `encode` writes for `labels`.
fn encoded_len(labels: &[Label]) -> usize {
    labels
        .iter()
        .map(|l| {
            let inner = label_len(l);
            1 + uvarint_len(inner) + inner
        })
        .sum()
}

/// Length of one `Label` message.
fn label_len(label: &Label) -> usize {
    let field = |s: &str| {
        if s.is_empty() {
            0
        } else {
            1 + uvarint_len(s.len()) + s.len()
        }
    };
    field(&label.name) + field(&label.value)
}

fn uvarint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

fn encode(labels: &[Label], out: &mut Vec<u8>) {
    for label in labels {
        out.push(FIELD_1);
        put_uvarint(out, label_len(label));
        for (key, bytes) in [(FIELD_1, &label.name), (FIELD_2, &label.value)] {
            if !bytes.is_empty() {
                out.push(key);
                put_uvarint(out, bytes.len());
                out.extend_from_slice(bytes.as_bytes());
            }
        }
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads back what `encode` wrote (and nothing else: fields in order,
/// each at most once).
struct Pairs<'a> {
    rest: &'a [u8],
}

impl<'a> Pairs<'a> {
    fn uvarint(&mut self) -> Option<usize> {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(n);
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
    }

    /// A length-delimited field with key `key`: its bytes.
    fn field(&mut self, key: u8) -> Option<&'a [u8]> {
        let (&found, rest) = self.rest.split_first()?;
        if found != key {
            return None;
        }
        self.rest = rest;
        let len = self.uvarint()?;
        let (bytes, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        Some(bytes)
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let message = self.field(FIELD_1)?;
        let mut inner = Pairs { rest: message };
        let name = if inner.rest.first() == Some(&FIELD_1) {
            inner.field(FIELD_1)?
        } else {
            &[]
        };
        let value = if inner.rest.is_empty() {
            &[]
        } else {
            inner.field(FIELD_2)?
        };
        inner.rest.is_empty().then_some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use strata_common::labels::label;
    use strata_proto::prometheus::TimeSeries;

    use super::*;

    /// The `labels` fields of a `TimeSeries` as prost encodes them.
    fn wire(labels: &[Label]) -> Vec<u8> {
        TimeSeries {
            labels: labels.to_vec(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn packs_what_protobuf_encoders_write() {
        let long = "v".repeat(300);
        let labels = [
            label("__name__", "up"),
            label("empty", ""),
            label("", "nameless"),
            label("long", &long),
            label("utf8", "héllo ✓"),
        ];
        for n in 0..=labels.len() {
            let packed = PackedLabels::pack(&labels[..n]);
            assert_eq!(packed.as_bytes(), wire(&labels[..n]), "{n} labels");
            assert_eq!(packed.as_bytes().len(), encoded_len(&labels[..n]));
            assert_eq!(packed.unpack(), &labels[..n]);
            assert_eq!(
                PackedLabels::parse(packed.as_bytes()).as_deref(),
                Some(&labels[..n])
            );
        }
    }

    #[test]
    fn compares_exactly() {
        let labels = vec![label("__name__", "up"), label("job", "node")];
        let packed = PackedLabels::pack(&labels);
        assert!(packed.matches(&labels));
        assert!(!packed.matches(&labels[..1]));
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
        // Encoding inside `matches` while the scratch buffer is in use.
        PackedLabels::with_encoded(&labels, |bytes| {
            assert!(packed.matches_bytes(bytes));
            assert!(packed.matches(&labels));
        });
    }

    #[test]
    fn parse_refuses_anything_pack_does_not_write() {
        let packed = PackedLabels::pack(&[label("a", "b")]);
        let bytes = packed.as_bytes();
        assert_eq!(bytes, [0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);
        assert_eq!(PackedLabels::parse(&bytes[..bytes.len() - 1]), None);
        let refused: &[&[u8]] = &[
            // Value before name.
            &[0x0a, 6, 0x12, 1, b'b', 0x0a, 1, b'a'],
            // An empty value written out.
            &[0x0a, 5, 0x0a, 1, b'a', 0x12, 0],
            // An overlong length.
            &[0x0a, 7, 0x0a, 0x81, 0, b'a', 0x12, 1, b'b'],
            // Not UTF-8.
            &[0x0a, 6, 0x0a, 1, 0xff, 0x12, 1, b'b'],
            // Another field.
            &[0x12, 6, 0x0a, 1, b'a', 0x12, 1, b'b'],
        ];
        for bytes in refused {
            assert_eq!(PackedLabels::parse(bytes), None, "{bytes:?}");
        }
    }
}
