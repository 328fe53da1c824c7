//! Reading a compact chunk: the header, then each section in its layout,
//! into preallocated slots. Every length is checked before it is trusted.

use super::{
    DecodeError, INV_POW10, IntSection, MAX_SAMPLES, MAX_SCALE, POW10, Scale, TIME_PACKED,
    TIME_PATCHED, VALUE_BITS, VALUE_CONST, VALUE_DIVIDE, VALUE_MULTIPLY, VALUE_XOR, corrupt,
    truncated, varint_error,
};
use crate::bits::{Cursor, MsbReader, Unpacker, packed_len, unzigzag};

/// The tag's (time layout, value layout) and the sample count.
pub(super) fn read_header(cursor: &mut Cursor<'_>) -> Result<(u8, u8, usize), DecodeError> {
    let tag = cursor.u8().ok_or(DecodeError::Empty)?;
    let (time_layout, value_layout) = (tag >> 4, tag & 0x0f);
    if time_layout > TIME_PATCHED || value_layout > VALUE_BITS {
        return Err(DecodeError::UnknownLayout { tag });
    }
    let count = cursor.uvarint().map_err(varint_error("header"))?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_SAMPLES)
        .ok_or_else(|| corrupt("sample count above 65535"))?;
    Ok((time_layout, value_layout, count))
}

pub(super) fn decode_appending(
    bytes: &[u8],
    out: &mut Vec<(i64, f64)>,
    start: usize,
) -> Result<(), DecodeError> {
    let mut cursor = Cursor::new(bytes);
    let (time_layout, value_layout, count) = read_header(&mut cursor)?;
    if count > 0 {
        let t0 = cursor.varint().map_err(varint_error("timestamps"))?;
        out.resize(start + count, (t0, 0.0));
        let slots = &mut out[start..];
        if count >= 2 {
            match time_layout {
                TIME_PACKED => decode_packed_times(&mut cursor, slots)?,
                _ => decode_patched_times(&mut cursor, slots)?,
            }
        }
        match value_layout {
            VALUE_XOR => decode_xor_values(&mut cursor, slots)?,
            VALUE_CONST => {
                let reversed = cursor.uvarint().map_err(varint_error("values"))?;
                let bits = reversed.reverse_bits();
                for slot in slots.iter_mut() {
                    slot.1 = f64::from_bits(bits);
                }
            }
            VALUE_DIVIDE => decode_int_values(&mut cursor, slots, Scale::Divide)?,
            VALUE_MULTIPLY => decode_int_values(&mut cursor, slots, Scale::Multiply)?,
            _ => decode_int_values(&mut cursor, slots, Scale::Bits)?,
        }
    }
    if !cursor.is_empty() {
        return Err(corrupt("trailing bytes after the last section"));
    }
    Ok(())
}

fn decode_packed_times(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
) -> Result<(), DecodeError> {
    let base = cursor.uvarint().map_err(varint_error("timestamps"))?;
    let width = read_width(cursor, "timestamps")?;
    let data = cursor
        .bytes(packed_len(slots.len() - 1, width))
        .ok_or_else(|| truncated("timestamps"))?;
    let mut residuals = Unpacker::new(data, width);
    let mut t = slots[0].0;
    for slot in slots[1..].iter_mut() {
        t = t.wrapping_add(base.wrapping_add(residuals.next_value()) as i64);
        slot.0 = t;
    }
    Ok(())
}

/// Packed deltas, then a list of exceptions whose deltas replace the
/// packed ones (written as zeros there).
fn decode_patched_times(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
) -> Result<(), DecodeError> {
    let deltas = slots.len() - 1;
    let section = varint_error("timestamps");
    let base = cursor.uvarint().map_err(&section)?;
    let width = read_width(cursor, "timestamps")?;
    let data = cursor
        .bytes(packed_len(deltas, width))
        .ok_or_else(|| truncated("timestamps"))?;
    let mut residuals = Unpacker::new(data, width);
    let mut left = cursor.uvarint().map_err(&section)?;
    if left > deltas as u64 {
        return Err(corrupt("more timestamp exceptions than samples"));
    }
    // The next exception: the index of its delta and its zigzagged offset
    // from `base`; an index no delta has once none is left.
    let read_exception = |cursor: &mut Cursor<'_>, from: usize, left: &mut u64| {
        if *left == 0 {
            return Ok((usize::MAX, 0));
        }
        *left -= 1;
        let gap = cursor.uvarint().map_err(&section)?;
        let index = usize::try_from(gap)
            .ok()
            .and_then(|gap| from.checked_add(gap))
            .filter(|&index| index < deltas)
            .ok_or_else(|| corrupt("timestamp exception past the last sample"))?;
        let offset = cursor.uvarint().map_err(&section)?;
        Ok::<_, DecodeError>((index, offset))
    };
    let mut next = read_exception(cursor, 0, &mut left)?;
    let mut t = slots[0].0;
    for (i, slot) in slots[1..].iter_mut().enumerate() {
        let mut delta = base.wrapping_add(residuals.next_value());
        if i == next.0 {
            delta = base.wrapping_add(unzigzag(next.1) as u64);
            next = read_exception(cursor, i + 1, &mut left)?;
        }
        t = t.wrapping_add(delta as i64);
        slot.0 = t;
    }
    Ok(())
}

fn read_width(cursor: &mut Cursor<'_>, section: &'static str) -> Result<u32, DecodeError> {
    let width = cursor.u8().ok_or_else(|| truncated(section))?;
    if width > 64 {
        return Err(corrupt("bit width above 64"));
    }
    Ok(u32::from(width))
}

fn decode_xor_values(cursor: &mut Cursor<'_>, slots: &mut [(i64, f64)]) -> Result<(), DecodeError> {
    let mut bits = cursor.u64_le().ok_or_else(|| truncated("values"))?;
    let stream = cursor.remaining();
    let mut reader = MsbReader::new(stream);
    slots[0].1 = f64::from_bits(bits);
    // Prometheus' reader starts from a zero window, as does ours.
    let (mut trailing, mut significant) = (0u32, 64u32);
    for slot in slots[1..].iter_mut() {
        let control = reader.peek();
        if control >> 63 == 0 {
            reader.skip(1);
        } else if (control >> 62) & 1 == 0 {
            reader.skip(2);
            bits ^= reader.read(significant) << trailing;
        } else {
            let leading = ((control >> 57) & 0x1f) as u32;
            significant = match ((control >> 51) & 0x3f) as u32 {
                0 => 64,
                n => n,
            };
            if leading + significant > 64 {
                return Err(corrupt("xor window wider than 64 bits"));
            }
            trailing = 64 - leading - significant;
            reader.skip(13);
            bits ^= reader.read(significant) << trailing;
        }
        slot.1 = f64::from_bits(bits);
    }
    let used = reader.bit_pos().div_ceil(8);
    cursor.bytes(used).ok_or_else(|| truncated("values"))?;
    Ok(())
}

fn decode_int_values(
    cursor: &mut Cursor<'_>,
    slots: &mut [(i64, f64)],
    scale: Scale,
) -> Result<(), DecodeError> {
    let section = varint_error("values");
    let header = cursor.u8().ok_or_else(|| truncated("values"))?;
    let (k, order) = (usize::from(header & 0x1f), usize::from(header >> 5));
    if k > MAX_SCALE || order > 2 {
        return Err(corrupt("integer scale or order out of range"));
    }
    let mut anchors = [0i64; 2];
    for anchor in anchors.iter_mut().take(order) {
        *anchor = cursor.varint().map_err(&section)?;
    }
    let ints = IntSection {
        order,
        anchors,
        min: cursor.varint().map_err(&section)?,
        divisor: cursor.uvarint().map_err(&section)?,
        width: read_width(cursor, "values")?,
    };
    let data = cursor
        .bytes(packed_len(slots.len().saturating_sub(order), ints.width))
        .ok_or_else(|| truncated("values"))?;
    let packed = Unpacker::new(data, ints.width);
    match scale {
        Scale::Divide if k == 0 => ints.fill(slots, packed, |m| m as f64),
        Scale::Divide => {
            let p = POW10[k];
            ints.fill(slots, packed, |m| m as f64 / p);
        }
        Scale::Multiply => {
            let f = INV_POW10[k];
            ints.fill(slots, packed, |m| m as f64 * f);
        }
        Scale::Bits => ints.fill(slots, packed, |m| f64::from_bits(m as u64)),
    }
    let exceptions = cursor.uvarint().map_err(&section)?;
    if exceptions > slots.len() as u64 {
        return Err(corrupt("more value exceptions than samples"));
    }
    let mut next = 0usize;
    for _ in 0..exceptions {
        let gap = cursor.uvarint().map_err(&section)?;
        let index = usize::try_from(gap)
            .ok()
            .and_then(|gap| next.checked_add(gap))
            .filter(|&index| index < slots.len())
            .ok_or_else(|| corrupt("value exception past the last sample"))?;
        let bits = cursor.u64_le().ok_or_else(|| truncated("values"))?;
        slots[index].1 = f64::from_bits(bits);
        next = index + 1;
    }
    Ok(())
}
