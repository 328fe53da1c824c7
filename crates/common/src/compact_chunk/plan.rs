//! The encoder's choices: for each section of a chunk, every layout worth
//! trying is sized, and the smallest is written.

use super::{IntSection, MAX_SCALE, Scale, TIME_PACKED, TIME_PATCHED, VALUE_CONST, VALUE_XOR};
use crate::bits::{
    MsbWriter, bit_width, pack, packed_len, put_uvarint, put_varint, uvarint_len, zigzag,
};

/// The timestamp section chosen for a chunk: deltas minus `base`, packed
/// at `width` bits, except those in `exceptions`.
#[derive(Debug)]
pub(super) struct TimePlan {
    base: u64,
    width: u32,
    /// One per delta; 0 for an exception.
    residuals: Vec<u64>,
    /// (delta index, zigzagged offset from `base`)
    exceptions: Vec<(usize, u64)>,
}

impl TimePlan {
    /// Tries every width below the full one: the window of `2^width` deltas
    /// that holds the most of them sets the base, the others become
    /// exceptions; the smallest wins.
    pub(super) fn choose(samples: &[(i64, f64)]) -> TimePlan {
        let deltas: Vec<u64> = samples
            .windows(2)
            .map(|pair| pair[1].0.wrapping_sub(pair[0].0) as u64)
            .collect();
        let min = deltas.iter().copied().min().unwrap_or(0);
        let max = deltas.iter().copied().max().unwrap_or(0);
        let full = bit_width(max - min);
        let mut best = TimePlan::build(&deltas, min, full);
        if full == 0 {
            return best;
        }
        let mut sorted = deltas.clone();
        sorted.sort_unstable();
        for width in 0..full {
            // The window [base, base + 2^width) over the sorted deltas that
            // holds the most of them.
            let span = 1u64 << width;
            let (mut start, mut most, mut base) = (0, 0, min);
            for end in 0..sorted.len() {
                while sorted[end] - sorted[start] >= span {
                    start += 1;
                }
                if end + 1 - start > most {
                    (most, base) = (end + 1 - start, sorted[start]);
                }
            }
            // An exception costs at least two bytes.
            let lower_bound = packed_len(deltas.len(), width) + 2 * (deltas.len() - most);
            if lower_bound >= best.len() {
                continue;
            }
            let plan = TimePlan::build(&deltas, base, width);
            if plan.len() < best.len() {
                best = plan;
            }
        }
        best
    }

    fn build(deltas: &[u64], base: u64, width: u32) -> TimePlan {
        let mut residuals = Vec::with_capacity(deltas.len());
        let mut exceptions = Vec::new();
        for (i, &delta) in deltas.iter().enumerate() {
            let residual = delta.wrapping_sub(base);
            if delta >= base && bit_width(residual) <= width {
                residuals.push(residual);
            } else {
                residuals.push(0);
                exceptions.push((i, zigzag(residual as i64)));
            }
        }
        TimePlan {
            base,
            width,
            residuals,
            exceptions,
        }
    }

    pub(super) fn tag(&self) -> u8 {
        if self.exceptions.is_empty() {
            TIME_PACKED
        } else {
            TIME_PATCHED
        }
    }

    /// Bytes [`TimePlan::write`] appends.
    pub(super) fn len(&self) -> usize {
        let packed = uvarint_len(self.base) + 1 + packed_len(self.residuals.len(), self.width);
        if self.exceptions.is_empty() {
            return packed;
        }
        packed + uvarint_len(self.exceptions.len() as u64) + exceptions_len(&self.exceptions)
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.base);
        out.push(self.width as u8);
        pack(out, &self.residuals, self.width);
        if self.exceptions.is_empty() {
            return;
        }
        put_uvarint(out, self.exceptions.len() as u64);
        let mut next = 0;
        for &(index, offset) in &self.exceptions {
            put_uvarint(out, (index - next) as u64);
            put_uvarint(out, offset);
            next = index + 1;
        }
    }
}

/// Bytes of an exception list's entries (index gaps and uvarint payloads).
fn exceptions_len(exceptions: &[(usize, u64)]) -> usize {
    let mut next = 0;
    let mut len = 0;
    for &(index, payload) in exceptions {
        len += uvarint_len((index - next) as u64) + uvarint_len(payload);
        next = index + 1;
    }
    len
}

/// The most frequent value (the smallest among equally frequent ones).
fn most_common(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mut best = (0usize, sorted.first().copied().unwrap_or(0));
    for run in sorted.chunk_by(|a, b| a == b) {
        if run.len() > best.0 {
            best = (run.len(), run[0]);
        }
    }
    best.1
}

/// The value section chosen for a chunk.
#[derive(Debug)]
pub(super) enum ValuePlan {
    /// The whole section, already encoded.
    Xor(Vec<u8>),
    Const(u64),
    Int(IntPlan),
}

impl ValuePlan {
    pub(super) fn choose(samples: &[(i64, f64)]) -> ValuePlan {
        let values: Vec<f64> = samples.iter().map(|&(_, v)| v).collect();
        let Some(first) = values.first().map(|v| v.to_bits()) else {
            return ValuePlan::Xor(Vec::new());
        };
        let mut best = if values.iter().all(|v| v.to_bits() == first) {
            ValuePlan::Const(first)
        } else {
            ValuePlan::Xor(Vec::new())
        };
        let ints = [
            IntPlan::best(&values),
            IntPlan::build(&values, Scale::Bits, 0),
        ];
        for int in ints.into_iter().flatten() {
            if matches!(best, ValuePlan::Xor(_)) || int.len() < best.len() {
                best = ValuePlan::Int(int);
            }
        }
        // XOR takes at least 8 bytes and a bit per further sample.
        let xor_floor = 8 + (values.len() - 1).div_ceil(8);
        if matches!(best, ValuePlan::Xor(_)) || best.len() > xor_floor {
            let xor = encode_xor_values(&values);
            if matches!(best, ValuePlan::Xor(_)) || xor.len() < best.len() {
                best = ValuePlan::Xor(xor);
            }
        }
        best
    }

    pub(super) fn tag(&self) -> u8 {
        match self {
            ValuePlan::Xor(_) => VALUE_XOR,
            ValuePlan::Const(_) => VALUE_CONST,
            ValuePlan::Int(int) => int.scale.tag(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            ValuePlan::Xor(bytes) => bytes.len(),
            ValuePlan::Const(bits) => uvarint_len(bits.reverse_bits()),
            ValuePlan::Int(int) => int.len(),
        }
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self {
            ValuePlan::Xor(bytes) => out.extend_from_slice(bytes),
            ValuePlan::Const(bits) => put_uvarint(out, bits.reverse_bits()),
            ValuePlan::Int(int) => int.write(out),
        }
    }
}

/// Gorilla XOR of the value bits, as Prometheus' chunks hold them, with the
/// first value's bits in front (little-endian).
fn encode_xor_values(values: &[f64]) -> Vec<u8> {
    let mut prev = values.first().map_or(0, |v| v.to_bits());
    let mut writer = MsbWriter::default();
    // No window yet: the first non-zero XOR always opens one.
    let mut window: Option<(u32, u32)> = None;
    for v in values.iter().skip(1) {
        let bits = v.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            writer.write(0, 1);
            continue;
        }
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        match window {
            Some((lead, trail)) if leading >= lead && trailing >= trail => {
                writer.write(0b10, 2);
                writer.write(xor >> trail, 64 - lead - trail);
            }
            _ => {
                let significant = 64 - leading - trailing;
                writer.write(0b11, 2);
                writer.write(u64::from(leading), 5);
                writer.write(u64::from(significant & 0x3f), 6);
                writer.write(xor >> trailing, significant);
                window = Some((leading, trailing));
            }
        }
    }
    let stream = writer.finish();
    let mut out = Vec::with_capacity(8 + stream.len());
    out.extend_from_slice(&values.first().map_or(0, |v| v.to_bits()).to_le_bytes());
    out.extend_from_slice(&stream);
    out
}

/// An integer value section.
#[derive(Debug)]
pub(super) struct IntPlan {
    scale: Scale,
    k: usize,
    section: IntSection,
    /// Packed at `section.width` bits.
    residuals: Vec<u64>,
    /// (sample index, value bits) of the samples that are not integers.
    exceptions: Vec<(usize, u64)>,
}

/// Whether `v` may be an integer at some scale: not NaN, not infinite, not
/// `-0.0`.
fn may_be_integer(v: f64) -> bool {
    v.is_finite() && !(v == 0.0 && v.is_sign_negative())
}

impl IntPlan {
    /// The smallest integer section over the scales worth trying, if more
    /// than half the values are integers at some scale.
    fn best(values: &[f64]) -> Option<IntPlan> {
        let n = values.len();
        // Dividing: a value that is m / 10^k is also 10m / 10^(k+1), so the
        // smallest k per value is all we need.
        let mut smallest = Vec::with_capacity(n);
        let mut misses = 0;
        for &v in values {
            let k = may_be_integer(v)
                .then(|| (0..=MAX_SCALE).find(|&k| Scale::Divide.fit(v, k).is_some()))
                .flatten();
            if k.is_none() {
                misses += 1;
                if misses * 2 > n {
                    return None;
                }
            }
            smallest.push(k);
        }
        let mut scales: Vec<usize> = smallest.iter().flatten().copied().collect();
        scales.sort_unstable();
        scales.dedup();
        // From the largest k down: a smaller k turns the values that need
        // more into exceptions of 9 bytes each, which soon costs more than
        // the best plan so far.
        let mut best: Option<IntPlan> = None;
        for &k in scales.iter().rev() {
            let exceptions = smallest.iter().filter(|s| s.is_none_or(|s| s > k)).count();
            if best.as_ref().is_some_and(|b| exceptions * 9 >= b.len()) {
                continue;
            }
            keep_smaller(&mut best, IntPlan::build(values, Scale::Divide, k));
        }
        // Multiplying by 10^-k is worth a try when dividing left numbers
        // out or needed an unusually large k: a product m * 0.01 is
        // sometimes one ulp off m / 100. Any k may fit then, so count the
        // fits per k and try the smallest k that fits half the values and
        // the smallest that fits the most.
        let typical = most_common(
            &smallest
                .iter()
                .flatten()
                .map(|&k| k as u64)
                .collect::<Vec<_>>(),
        );
        let try_multiply = best.as_ref().is_none_or(|plan| {
            plan.k as u64 > typical
                || plan
                    .exceptions
                    .iter()
                    .any(|&(_, bits)| may_be_integer(f64::from_bits(bits)))
        });
        if try_multiply {
            let mut fits = [0usize; MAX_SCALE + 1];
            for &v in values.iter().filter(|&&v| may_be_integer(v)) {
                for (k, count) in fits.iter_mut().enumerate() {
                    if Scale::Multiply.fit(v, k).is_some() {
                        *count += 1;
                    }
                }
            }
            let most = fits.iter().copied().max().unwrap_or(0);
            let half = fits.iter().position(|&count| count > 0 && count * 2 >= n);
            let widest = fits.iter().position(|&count| count > 0 && count == most);
            if let Some(k) = half {
                keep_smaller(&mut best, IntPlan::build(values, Scale::Multiply, k));
            }
            if let Some(k) = widest
                && widest != half
            {
                keep_smaller(&mut best, IntPlan::build(values, Scale::Multiply, k));
            }
        }
        best
    }

    /// The section for one scale and exponent, in the order that packs
    /// smallest; `None` if no value fits.
    fn build(values: &[f64], scale: Scale, k: usize) -> Option<IntPlan> {
        let first = values.iter().find_map(|&v| scale.fit(v, k))?;
        let mut ints = Vec::with_capacity(values.len());
        let mut exceptions = Vec::new();
        // A sample that does not fit repeats the previous integer, so it
        // costs nothing in the deltas.
        let mut carried = first;
        for (i, &v) in values.iter().enumerate() {
            match scale.fit(v, k) {
                Some(m) => carried = m,
                None => exceptions.push((i, v.to_bits())),
            }
            ints.push(carried);
        }
        let anchors = [
            ints[0],
            ints.get(1).map_or(0, |m1| m1.wrapping_sub(ints[0])),
        ];
        let mut best: Option<IntSection> = None;
        for order in 0..=2 {
            let count = ints.len().saturating_sub(order);
            if order > 0 && count == 0 {
                break;
            }
            let min = differences(&ints, order).min().unwrap_or(0);
            let (mut divisor, mut max) = (0, 0);
            for d in differences(&ints, order) {
                let residual = d.wrapping_sub(min) as u64;
                max = max.max(residual);
                if divisor != 1 {
                    divisor = gcd(divisor, residual);
                }
            }
            let divisor = divisor.max(1);
            let section = IntSection {
                order,
                anchors,
                min,
                divisor,
                width: bit_width(max / divisor),
            };
            if best
                .as_ref()
                .is_none_or(|b| section.len(count) < b.len(ints.len().saturating_sub(b.order)))
            {
                best = Some(section);
            }
        }
        let section = best?;
        let residuals = differences(&ints, section.order)
            .map(|d| d.wrapping_sub(section.min) as u64 / section.divisor)
            .collect();
        Some(IntPlan {
            scale,
            k,
            section,
            residuals,
            exceptions,
        })
    }

    /// Bytes [`IntPlan::write`] appends.
    pub(super) fn len(&self) -> usize {
        let exceptions: usize = {
            let mut next = 0;
            self.exceptions
                .iter()
                .map(|&(index, _)| {
                    let gap = index - next;
                    next = index + 1;
                    uvarint_len(gap as u64) + 8
                })
                .sum()
        };
        self.section.len(self.residuals.len())
            + uvarint_len(self.exceptions.len() as u64)
            + exceptions
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let section = &self.section;
        out.push(self.k as u8 | (section.order as u8) << 5);
        for &anchor in section.anchors.iter().take(section.order) {
            put_varint(out, anchor);
        }
        put_varint(out, section.min);
        put_uvarint(out, section.divisor);
        out.push(section.width as u8);
        pack(out, &self.residuals, section.width);
        put_uvarint(out, self.exceptions.len() as u64);
        let mut next = 0;
        for &(index, bits) in &self.exceptions {
            put_uvarint(out, (index - next) as u64);
            out.extend_from_slice(&bits.to_le_bytes());
            next = index + 1;
        }
    }
}

/// The integers (order 0), their deltas (1) or delta-of-deltas (2).
fn differences(ints: &[i64], order: usize) -> impl Iterator<Item = i64> + '_ {
    ints.windows(order + 1).map(move |w| match order {
        0 => w[0],
        1 => w[1].wrapping_sub(w[0]),
        _ => w[2]
            .wrapping_sub(w[1])
            .wrapping_sub(w[1].wrapping_sub(w[0])),
    })
}

/// Replaces `best` by `plan` when that is smaller.
fn keep_smaller(best: &mut Option<IntPlan>, plan: Option<IntPlan>) {
    if let Some(plan) = plan
        && best.as_ref().is_none_or(|b| plan.len() < b.len())
    {
        *best = Some(plan);
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
