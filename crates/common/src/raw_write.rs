//! A remote-write 1.0 `WriteRequest` read in place.
//!
//! Decoding with prost builds a `Vec` per series and two byte vectors per
//! label: for a request of 2,000 series that is some 20,000 allocations,
//! only for the store to hash the labels and find that it knows almost
//! every series already. [`RawWrite`] keeps the decompressed buffer and
//! walks the protobuf wire format once, noting where each label's name
//! and value lie in it: a handful of allocations per request. Labels stay
//! bytes, unchecked, so invalid UTF-8 refuses one series (the validator's
//! business), not the request.
//!
//! The whole body is checked while walking it: a malformed message fails
//! here, before anything is written, as it did with prost. Samples are
//! decoded into one vector for the request; native histograms and
//! metadata, rare, are decoded by prost. Unknown fields are skipped.

use std::ops::Range;

use prost::Message;
use strata_proto::ingest::{RawLabel, RawTimeSeries, RawWriteRequest};
use strata_proto::prometheus::{Histogram, MetricMetadata, Sample};

/// Why a body is not a remote-write 1.0 `WriteRequest`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated or overlong varint at byte {offset}")]
    Varint { offset: usize },
    #[error("field at byte {offset} runs past the end of its message")]
    Truncated { offset: usize },
    #[error("invalid field key at byte {offset}")]
    Key { offset: usize },
    #[error("{message}.{field} has wire type {found}, expected {expected} (byte {offset})")]
    WireType {
        message: &'static str,
        field: &'static str,
        found: u8,
        expected: u8,
        offset: usize,
    },
    #[error("unbalanced group at byte {offset}")]
    Group { offset: usize },
    #[error("{message} at byte {offset}: {source}")]
    Embedded {
        message: &'static str,
        offset: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("body of {length} bytes is larger than 4 GiB")]
    TooLarge { length: usize },
    /// The body's series, labels and samples, read, would take more than
    /// the caller allows (a body of many tiny or empty series).
    #[error(
        "its series, labels and samples would take more than {limit} bytes in memory, \
         {per_byte} per byte of the body"
    )]
    TooManyParts { limit: usize, per_byte: usize },
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// `TimeSeries.labels` and `TimeSeries.samples` keys (fields 1 and 2,
/// length-delimited) as one byte each.
const LABELS_KEY: u8 = 1 << 3 | LENGTH_DELIMITED;
const SAMPLES_KEY: u8 = 2 << 3 | LENGTH_DELIMITED;

/// How deeply unknown groups may nest (prost's recursion limit).
const MAX_GROUP_DEPTH: u32 = 100;

/// A decoded `WriteRequest` over its own buffer.
#[derive(Debug, Default)]
pub struct RawWrite {
    buf: Vec<u8>,
    /// Bytes the vectors below take (see `Budget`).
    parts_bytes: usize,
    series: Vec<SeriesSpan>,
    labels: Vec<LabelSpan>,
    samples: Vec<Sample>,
    histograms: Vec<Histogram>,
    metadata: Vec<MetricMetadata>,
}

/// Where one series' parts are in [`RawWrite`]'s vectors. Offsets are
/// `u32`: the body is at most 4 GiB, and every part takes a byte or more.
#[derive(Debug, Clone)]
struct SeriesSpan {
    labels: Range<u32>,
    samples: Range<u32>,
    histograms: Range<u32>,
    longest_name: u32,
    longest_value: u32,
    /// The bytes of all its `labels` fields when they lie one after the
    /// other (as every encoder writes them), keys included.
    label_fields: Option<(u32, u32)>,
}

/// A label's name and value as byte ranges of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct LabelSpan {
    name: (u32, u32),
    value: (u32, u32),
}

impl RawWrite {
    /// Reads `buf`, a decompressed remote-write 1.0 body.
    pub fn decode(buf: Vec<u8>) -> Result<RawWrite, DecodeError> {
        RawWrite::decode_within(buf, usize::MAX)
    }

    /// [`RawWrite::decode`], refusing a body whose parts would take more
    /// than `per_byte` bytes of memory per byte of the body. Real requests
    /// take about one (a series with one short label and one sample, the
    /// smallest useful one, takes about four); a body of empty series
    /// takes 26, and a 100 MiB one would ask for gigabytes.
    pub fn decode_within(buf: Vec<u8>, per_byte: usize) -> Result<RawWrite, DecodeError> {
        if u32::try_from(buf.len()).is_err() {
            return Err(DecodeError::TooLarge { length: buf.len() });
        }
        let mut parts = Parts::for_body(buf.len(), per_byte);
        let mut reader = Reader::new(&buf, 0..buf.len());
        while let Some((field, wire, offset)) = reader.key()? {
            match field {
                1 => {
                    expect(wire, LENGTH_DELIMITED, "WriteRequest", "timeseries", offset)?;
                    let range = reader.length_delimited()?;
                    parts.series(&buf, range)?;
                }
                3 => {
                    expect(wire, LENGTH_DELIMITED, "WriteRequest", "metadata", offset)?;
                    let range = reader.length_delimited()?;
                    let start = range.start;
                    let metadata = MetricMetadata::decode(&buf[range]).map_err(|source| {
                        DecodeError::Embedded {
                            message: "MetricMetadata",
                            offset: start,
                            source,
                        }
                    })?;
                    parts.budget.push(&mut parts.metadata, metadata)?;
                }
                _ => reader.skip(field, wire, offset, 0)?,
            }
        }
        Ok(RawWrite {
            buf,
            parts_bytes: parts.budget.used,
            series: parts.series,
            labels: parts.labels,
            samples: parts.samples,
            histograms: parts.histograms,
            metadata: parts.metadata,
        })
    }

    /// Number of series in the request.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series at `index` (`index < len()`).
    pub fn series(&self, index: usize) -> Option<RawSeries<'_>> {
        let span = self.series.get(index)?;
        Some(RawSeries { write: self, span })
    }

    /// The series in request order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawSeries<'_>> {
        self.series
            .iter()
            .map(move |span| RawSeries { write: self, span })
    }

    /// Bytes of memory the request holds: its buffer and what was read.
    pub fn memory_bytes(&self) -> usize {
        self.buf.capacity() + self.parts_bytes
    }

    /// What was read, as prost's `RawWriteRequest` (exemplars left out:
    /// they are skipped unread), so that this reading can be compared with
    /// another decoder's (the unit tests and the fuzz target do).
    pub fn to_message(&self) -> RawWriteRequest {
        let timeseries = self
            .iter()
            .map(|series| RawTimeSeries {
                labels: series
                    .labels()
                    .map(|(name, value)| RawLabel {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    })
                    .collect(),
                samples: series.samples().to_vec(),
                exemplars: Vec::new(),
                histograms: series.histograms().to_vec(),
            })
            .collect();
        RawWriteRequest {
            timeseries,
            metadata: self.metadata.clone(),
        }
    }

    /// The metric metadata sent with the request.
    pub fn metadata(&self) -> &[MetricMetadata] {
        &self.metadata
    }

    /// The metadata, to filter it before writing.
    pub fn metadata_mut(&mut self) -> &mut Vec<MetricMetadata> {
        &mut self.metadata
    }
}

/// One series of a [`RawWrite`], labels as sent.
#[derive(Debug, Clone, Copy)]
pub struct RawSeries<'a> {
    write: &'a RawWrite,
    span: &'a SeriesSpan,
}

impl<'a> RawSeries<'a> {
    /// The labels as sent: (name, value) bytes, in the sender's order,
    /// empty values and duplicates included.
    pub fn labels(&self) -> RawLabels<'a> {
        RawLabels {
            buf: &self.write.buf,
            spans: slice(&self.write.labels, &self.span.labels).iter(),
        }
    }

    /// The bytes of the series' `labels` fields, keys included, if they
    /// lie one after the other in the request (`None` if another field
    /// comes between two of them, or there are no labels). A canonically
    /// encoded label set gives exactly its packed form in the store.
    pub fn label_fields(&self) -> Option<&'a [u8]> {
        let span = self.span.label_fields?;
        Some(bytes(&self.write.buf, span))
    }

    /// Number of labels as sent.
    pub fn label_count(&self) -> usize {
        (self.span.labels.end - self.span.labels.start) as usize
    }

    /// Length in bytes of the longest label name.
    pub fn longest_name(&self) -> usize {
        self.span.longest_name as usize
    }

    /// Length in bytes of the longest label value.
    pub fn longest_value(&self) -> usize {
        self.span.longest_value as usize
    }

    pub fn samples(&self) -> &'a [Sample] {
        slice(&self.write.samples, &self.span.samples)
    }

    pub fn histograms(&self) -> &'a [Histogram] {
        slice(&self.write.histograms, &self.span.histograms)
    }
}

/// Iterator over a series' (name, value) label bytes.
#[derive(Debug, Clone)]
pub struct RawLabels<'a> {
    buf: &'a [u8],
    spans: std::slice::Iter<'a, LabelSpan>,
}

impl<'a> Iterator for RawLabels<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let span = self.spans.next()?;
        Some((bytes(self.buf, span.name), bytes(self.buf, span.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for RawLabels<'_> {}

/// The ranges come from the decoder, which checked them against the buffer.
#[inline]
fn bytes(buf: &[u8], (start, len): (u32, u32)) -> &[u8] {
    let start = start as usize;
    buf.get(start..start + len as usize).unwrap_or_default()
}

#[inline]
fn slice<'a, T>(items: &'a [T], range: &Range<u32>) -> &'a [T] {
    items
        .get(range.start as usize..range.end as usize)
        .unwrap_or_default()
}

/// The vectors being filled while the buffer is borrowed.
#[derive(Debug)]
struct Parts {
    series: Vec<SeriesSpan>,
    labels: Vec<LabelSpan>,
    samples: Vec<Sample>,
    histograms: Vec<Histogram>,
    metadata: Vec<MetricMetadata>,
    budget: Budget,
}

/// The memory the parts may take, counted before every allocation.
#[derive(Debug)]
struct Budget {
    /// Bytes allocated: the vectors' capacities and an estimate of the
    /// histograms' own vectors.
    used: usize,
    limit: usize,
    per_byte: usize,
}

impl Budget {
    /// Takes `bytes` more, or refuses.
    fn take(&mut self, bytes: usize) -> Result<(), DecodeError> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(DecodeError::TooManyParts {
                limit: self.limit,
                per_byte: self.per_byte,
            });
        }
        self.used = used;
        Ok(())
    }

    /// Pushes `item` onto `items`, taking what growing them allocates first.
    #[inline]
    fn push<T>(&mut self, items: &mut Vec<T>, item: T) -> Result<(), DecodeError> {
        if items.len() == items.capacity() {
            let more = items.capacity().max(4);
            self.take(more * std::mem::size_of::<T>())?;
            items.reserve_exact(more);
        }
        items.push(item);
        Ok(())
    }
}

/// Parts any body may take, whatever its size.
const MIN_PARTS_LIMIT: usize = 64 << 10;

/// Rough sizes of a typical series, for reserving the vectors once
/// instead of growing them while decoding.
const BYTES_PER_SERIES_GUESS: usize = 160;
const LABELS_PER_SERIES_GUESS: usize = 6;

/// Bytes a vector's allocation takes (its elements' own heap parts aside).
fn capacity_bytes<T>(items: &Vec<T>) -> usize {
    items.capacity() * std::mem::size_of::<T>()
}

impl Parts {
    /// Empty parts for a body of `body_len` bytes, reserved for a typical
    /// one (about a byte of parts per byte of body) and bounded to
    /// `per_byte` bytes per byte of it.
    fn for_body(body_len: usize, per_byte: usize) -> Parts {
        let series = body_len / BYTES_PER_SERIES_GUESS + 1;
        let parts = Parts {
            series: Vec::with_capacity(series),
            labels: Vec::with_capacity(series * LABELS_PER_SERIES_GUESS),
            samples: Vec::with_capacity(series),
            histograms: Vec::new(),
            metadata: Vec::new(),
            budget: Budget {
                used: 0,
                // Small bodies get room for the vectors' first allocations.
                limit: body_len.saturating_mul(per_byte).max(MIN_PARTS_LIMIT),
                per_byte,
            },
        };
        Parts {
            budget: Budget {
                used: capacity_bytes(&parts.series)
                    + capacity_bytes(&parts.labels)
                    + capacity_bytes(&parts.samples),
                ..parts.budget
            },
            ..parts
        }
    }

    /// Reads one `TimeSeries` message at `range` of `buf`.
    fn series(&mut self, buf: &[u8], range: Range<usize>) -> Result<(), DecodeError> {
        let labels_start = self.labels.len();
        let samples_start = self.samples.len();
        let histograms_start = self.histograms.len();
        let mut labels = SeriesLabels::default();
        let mut reader = Reader::new(buf, range);
        // What every encoder writes: all labels, then all samples. Read in
        // a loop each, with their one-byte keys, they spare the general
        // loop's jump on the field number, mispredicted at every switch
        // from labels to samples; the general loop reads whatever follows.
        while reader.next_byte() == Some(LABELS_KEY) {
            let offset = reader.pos;
            reader.pos += 1;
            let range = reader.length_delimited()?;
            let label = labels.read(buf, offset, range)?;
            self.budget.push(&mut self.labels, label)?;
        }
        while reader.next_byte() == Some(SAMPLES_KEY) {
            reader.pos += 1;
            let sample = read_sample(buf, reader.length_delimited()?)?;
            self.budget.push(&mut self.samples, sample)?;
        }
        while let Some((field, wire, offset)) = reader.key()? {
            match field {
                1 => {
                    expect(wire, LENGTH_DELIMITED, "TimeSeries", "labels", offset)?;
                    let range = reader.length_delimited()?;
                    let label = labels.read(buf, offset, range)?;
                    self.budget.push(&mut self.labels, label)?;
                }
                2 => {
                    expect(wire, LENGTH_DELIMITED, "TimeSeries", "samples", offset)?;
                    let sample = read_sample(buf, reader.length_delimited()?)?;
                    self.budget.push(&mut self.samples, sample)?;
                }
                3 => {
                    // Exemplars are not stored yet: skipped undecoded.
                    expect(wire, LENGTH_DELIMITED, "TimeSeries", "exemplars", offset)?;
                    reader.length_delimited()?;
                }
                4 => {
                    expect(wire, LENGTH_DELIMITED, "TimeSeries", "histograms", offset)?;
                    let range = reader.length_delimited()?;
                    let start = range.start;
                    // Its own vectors: at most 8 bytes per byte of it.
                    self.budget.take(8 * range.len())?;
                    let histogram =
                        Histogram::decode(&buf[range]).map_err(|source| DecodeError::Embedded {
                            message: "Histogram",
                            offset: start,
                            source,
                        })?;
                    self.budget.push(&mut self.histograms, histogram)?;
                }
                _ => reader.skip(field, wire, offset, 0)?,
            }
        }
        let span = SeriesSpan {
            labels: index(labels_start)..index(self.labels.len()),
            samples: index(samples_start)..index(self.samples.len()),
            histograms: index(histograms_start)..index(self.histograms.len()),
            longest_name: labels.longest_name,
            longest_value: labels.longest_value,
            label_fields: labels.fields.span(),
        };
        self.budget.push(&mut self.series, span)
    }
}

/// What is gathered about a series' labels while they are read.
#[derive(Debug, Default)]
struct SeriesLabels {
    fields: LabelFields,
    longest_name: u32,
    longest_value: u32,
}

impl SeriesLabels {
    /// Reads the `Label` at `range` (its field's key at `key`).
    #[inline]
    fn read(
        &mut self,
        buf: &[u8],
        key: usize,
        range: Range<usize>,
    ) -> Result<LabelSpan, DecodeError> {
        self.fields.add(key..range.end);
        let label = read_label(buf, range)?;
        self.longest_name = self.longest_name.max(label.name.1);
        self.longest_value = self.longest_value.max(label.value.1);
        Ok(label)
    }
}

/// Where a series' `labels` fields lie, while they follow one another.
#[derive(Debug, Default)]
struct LabelFields {
    range: Option<Range<usize>>,
    contiguous: bool,
}

impl LabelFields {
    /// Adds the field (key to end) at `field`.
    fn add(&mut self, field: Range<usize>) {
        match &mut self.range {
            None => {
                self.range = Some(field);
                self.contiguous = true;
            }
            Some(range) => {
                self.contiguous &= range.end == field.start;
                range.end = field.end;
            }
        }
    }

    fn span(&self) -> Option<(u32, u32)> {
        let range = self.range.as_ref().filter(|_| self.contiguous)?;
        Some(span(range.clone()))
    }
}

/// A count of parts, each at least one byte of a body under 4 GiB.
fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A `Label` message: `name` (1) and `value` (2), the last of each wins.
///
/// Inlined, with the general loop apart: a result returned through memory
/// from a call was read back before its stores had landed, which stalled
/// the decoder at every label.
#[inline]
fn read_label(buf: &[u8], range: Range<usize>) -> Result<LabelSpan, DecodeError> {
    match plain_label(buf, &range) {
        Some(label) => Ok(label),
        None => read_any_label(buf, range),
    }
}

#[inline(never)]
fn read_any_label(buf: &[u8], range: Range<usize>) -> Result<LabelSpan, DecodeError> {
    let mut label = LabelSpan::default();
    let mut reader = Reader::new(buf, range);
    while let Some((field, wire, offset)) = reader.key()? {
        match field {
            1 => {
                expect(wire, LENGTH_DELIMITED, "Label", "name", offset)?;
                label.name = span(reader.length_delimited()?);
            }
            2 => {
                expect(wire, LENGTH_DELIMITED, "Label", "value", offset)?;
                label.value = span(reader.length_delimited()?);
            }
            _ => reader.skip(field, wire, offset, 0)?,
        }
    }
    Ok(label)
}

/// The label as every sender writes it, `0x0a len name 0x12 len value`
/// with names and values under 128 bytes: read without the general loop.
/// `None` for anything else.
#[inline]
fn plain_label(buf: &[u8], range: &Range<usize>) -> Option<LabelSpan> {
    let bytes = buf.get(range.clone())?;
    let (&[0x0a, name_len], rest) = bytes.split_first_chunk::<2>()? else {
        return None;
    };
    let name_len = usize::from(name_len);
    let (&[0x12, value_len], value) = rest.get(name_len..)?.split_first_chunk::<2>()? else {
        return None;
    };
    if name_len >= 0x80 || value_len >= 0x80 || usize::from(value_len) != value.len() {
        return None;
    }
    let name_at = range.start + 2;
    let value_at = name_at + name_len + 2;
    Some(LabelSpan {
        name: (index(name_at), index(name_len)),
        value: (index(value_at), index(value.len())),
    })
}

/// The sample as senders write it, `0x09 value(8) 0x10 timestamp`: read
/// without the general loop. `None` for anything else.
#[inline]
fn plain_sample(buf: &[u8], range: &Range<usize>) -> Option<Sample> {
    let bytes = buf.get(range.clone())?;
    let (&[0x09], rest) = bytes.split_first_chunk::<1>()? else {
        return None;
    };
    let (value, rest) = rest.split_first_chunk::<8>()?;
    let (&[0x10], _) = rest.split_first_chunk::<1>()? else {
        return None;
    };
    let mut reader = Reader::new(buf, range.start + 10..range.end);
    let timestamp = reader.varint().ok()?;
    (reader.pos == range.end).then(|| Sample {
        value: f64::from_le_bytes(*value),
        // int64 travels as its two's complement in a varint.
        timestamp: timestamp as i64,
    })
}

fn span(range: Range<usize>) -> (u32, u32) {
    (index(range.start), index(range.len()))
}

/// A `Sample` message: `value` (1, double) and `timestamp` (2, int64).
///
/// Inlined with the general loop apart, as [`read_label`].
#[inline]
fn read_sample(buf: &[u8], range: Range<usize>) -> Result<Sample, DecodeError> {
    match plain_sample(buf, &range) {
        Some(sample) => Ok(sample),
        None => read_any_sample(buf, range),
    }
}

#[inline(never)]
fn read_any_sample(buf: &[u8], range: Range<usize>) -> Result<Sample, DecodeError> {
    let mut sample = Sample::default();
    let mut reader = Reader::new(buf, range);
    while let Some((field, wire, offset)) = reader.key()? {
        match field {
            1 => {
                expect(wire, FIXED64, "Sample", "value", offset)?;
                sample.value = f64::from_bits(reader.fixed64()?);
            }
            2 => {
                expect(wire, VARINT, "Sample", "timestamp", offset)?;
                // int64 travels as its two's complement in a varint.
                sample.timestamp = reader.varint()? as i64;
            }
            _ => reader.skip(field, wire, offset, 0)?,
        }
    }
    Ok(sample)
}

fn expect(
    found: u8,
    expected: u8,
    message: &'static str,
    field: &'static str,
    offset: usize,
) -> Result<(), DecodeError> {
    if found == expected {
        Ok(())
    } else {
        Err(DecodeError::WireType {
            message,
            field,
            found,
            expected,
            offset,
        })
    }
}

/// The varint at `at` of `buf` (at most ten bytes, the tenth at most 1, as
/// prost reads them) and where it ends.
#[inline]
fn long_varint(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in buf.get(at..)?.iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((value, at + i + 1));
        }
    }
    None
}

/// A cursor over one message: `pos..end` of the whole buffer, so that the
/// ranges it hands out are offsets into the buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            buf,
            pos: range.start,
            end: range.end.min(buf.len()),
        }
    }

    /// The next field's number, wire type and offset; `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8, usize)>, DecodeError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let offset = self.pos;
        let key = self.varint()?;
        let wire = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) || wire > FIXED32 {
            return Err(DecodeError::Key { offset });
        }
        Ok(Some((field as u32, wire, offset)))
    }

    /// The next byte, if the message has one.
    #[inline]
    fn next_byte(&self) -> Option<u8> {
        self.buf[..self.end].get(self.pos).copied()
    }

    /// A base-128 varint of at most ten bytes, as prost reads them.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Keys and most lengths are one byte.
        if let Some(&byte) = self.buf[..self.end].get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(byte));
        }
        // Timestamps take six bytes: decoded here too, the error apart.
        match long_varint(&self.buf[..self.end], self.pos) {
            Some((value, end)) => {
                self.pos = end;
                Ok(value)
            }
            None => Err(DecodeError::Varint { offset: self.pos }),
        }
    }

    /// The byte range of a length-delimited field's contents.
    fn length_delimited(&mut self) -> Result<Range<usize>, DecodeError> {
        let offset = self.pos;
        let length = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| start.checked_add(length))
            .filter(|&end| end <= self.end)
            .ok_or(DecodeError::Truncated { offset })?;
        self.pos = end;
        Ok(start..end)
    }

    fn fixed(&mut self, width: usize) -> Result<&'a [u8], DecodeError> {
        let offset = self.pos;
        let bytes = self.buf[..self.end]
            .get(self.pos..self.pos + width)
            .ok_or(DecodeError::Truncated { offset })?;
        self.pos += width;
        Ok(bytes)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.fixed(8)?);
        Ok(u64::from_le_bytes(word))
    }

    /// Skips an unknown field, groups included (deprecated, but valid).
    fn skip(&mut self, field: u32, wire: u8, offset: usize, depth: u32) -> Result<(), DecodeError> {
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.fixed(8)?;
            }
            LENGTH_DELIMITED => {
                self.length_delimited()?;
            }
            FIXED32 => {
                self.fixed(4)?;
            }
            START_GROUP => self.skip_group(field, offset, depth)?,
            _ => return Err(DecodeError::Group { offset }),
        }
        Ok(())
    }

    /// Skips fields up to the end-group key matching `field`.
    fn skip_group(&mut self, field: u32, offset: usize, depth: u32) -> Result<(), DecodeError> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(DecodeError::Group { offset });
        }
        loop {
            let Some((inner, wire, at)) = self.key()? else {
                return Err(DecodeError::Group { offset });
            };
            if wire == END_GROUP {
                return if inner == field {
                    Ok(())
                } else {
                    Err(DecodeError::Group { offset: at })
                };
            }
            self.skip(inner, wire, at, depth + 1)?;
        }
    }
}

#[cfg(test)]
mod tests;
