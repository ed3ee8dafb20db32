//! Scalar pack/unpack of every sparse entry layout and of the dense fixed-width payload
//! (format.md 3.1, 3.2). These are the oracle for SIMD and shader unpackers.

use crate::error::BlockError;
use crate::settings::{Layout, ValueCodec};

/// Largest field value a layout/codec pair can hold.
pub fn field_max(layout: Layout, codec: ValueCodec) -> u32 {
    match (layout, codec) {
        (_, ValueCodec::F32) => u32::MAX,
        (_, ValueCodec::MuLaw8) => 255,
        (Layout::P24, _) => 1023,
        _ => u32::from(u16::MAX),
    }
}

/// Appends one entry. The caller guarantees `row, col < 64` for packed layouts and a field within
/// [`field_max`].
pub fn pack_entry(layout: Layout, row: u16, col: u16, field: u32, out: &mut Vec<u8>) {
    match layout {
        Layout::Wide => {
            out.extend_from_slice(&row.to_le_bytes());
            out.extend_from_slice(&col.to_le_bytes());
            out.extend_from_slice(&field.to_le_bytes());
        }
        Layout::B4 => {
            out.push(row as u8);
            out.push(col as u8);
            out.extend_from_slice(&(field as u16).to_le_bytes());
        }
        Layout::P32 => {
            let w = (u32::from(row) << 26) | (u32::from(col) << 20) | (field & 0xFFFF);
            out.extend_from_slice(&w.to_le_bytes());
        }
        Layout::P24 => {
            let u = (u32::from(row) << 18) | (u32::from(col) << 12) | ((field & 1023) << 2);
            out.extend_from_slice(&u.to_le_bytes()[..3]);
        }
    }
}

/// Reads one entry from the first `layout.entry_bytes()` bytes of `bytes`: `(row, col, field)`.
pub fn unpack_entry(layout: Layout, bytes: &[u8]) -> Result<(u16, u16, u32), BlockError> {
    if bytes.len() < layout.entry_bytes() {
        return Err(BlockError::Truncated);
    }
    Ok(match layout {
        Layout::Wide => (
            u16::from_le_bytes([bytes[0], bytes[1]]),
            u16::from_le_bytes([bytes[2], bytes[3]]),
            u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        ),
        Layout::B4 => (u16::from(bytes[0]), u16::from(bytes[1]), u32::from(u16::from_le_bytes([bytes[2], bytes[3]]))),
        Layout::P32 => {
            let w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if (w >> 16) & 15 != 0 {
                return Err(BlockError::ReservedBits("p32 entry"));
            }
            ((w >> 26) as u16, ((w >> 20) & 63) as u16, w & 0xFFFF)
        }
        Layout::P24 => {
            let u = u32::from(bytes[0]) | (u32::from(bytes[1]) << 8) | (u32::from(bytes[2]) << 16);
            if u & 3 != 0 {
                return Err(BlockError::ReservedBits("p24 entry"));
            }
            ((u >> 18) as u16, ((u >> 12) & 63) as u16, (u >> 2) & 1023)
        }
    })
}

/// Bytes of a dense payload of `count` fields of `width` bits.
pub fn dense_payload_bytes(count: usize, width: u8) -> usize {
    (count * usize::from(width)).div_ceil(8)
}

/// Whether `q` fits a `width`-bit two's-complement field.
#[inline]
pub fn fits_width(q: i32, width: u8) -> bool {
    needed_width(q) <= width
}

/// Smallest two's-complement width (1..=32) that holds `q`.
#[inline]
pub fn needed_width(q: i32) -> u8 {
    // Bits of the magnitude-like value `q ^ (q >> 31)`, plus the sign bit.
    (33 - (q ^ (q >> 31)).leading_zeros()) as u8
}

/// Appends `values` as `width`-bit two's-complement fields, LSB first. Values must fit.
pub fn pack_bits(values: impl Iterator<Item = i32>, width: u8, out: &mut Vec<u8>) {
    let mask = (1u64 << width) - 1;
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for v in values {
        acc |= ((v as u64) & mask) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Reads `out.len()` sign-extended `width`-bit fields from `bytes` (exactly
/// [`dense_payload_bytes`] long); the unused high bits of the last byte must be zero.
pub fn unpack_bits(bytes: &[u8], width: u8, out: &mut [i32]) -> Result<(), BlockError> {
    if bytes.len() != dense_payload_bytes(out.len(), width) {
        return Err(BlockError::Truncated);
    }
    let w = u32::from(width);
    let mask = (1u64 << w) - 1;
    let shift = 64 - w;
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    let mut src = bytes.iter();
    for o in out.iter_mut() {
        while bits < w {
            acc |= u64::from(*src.next().ok_or(BlockError::Truncated)?) << bits;
            bits += 8;
        }
        let field = acc & mask;
        *o = (((field << shift) as i64) >> shift) as i32;
        acc >>= w;
        bits -= w;
    }
    if acc != 0 {
        return Err(BlockError::ReservedBits("dense payload padding"));
    }
    Ok(())
}

/// Test fixture shared with `view.rs`: 77 values spread over the whole range of `width` bits,
/// and their dense payload.
#[cfg(test)]
pub(crate) fn packed_test_values(width: u8) -> (Vec<i32>, Vec<u8>) {
    let half = 1i32 << (width - 1);
    let values: Vec<i32> = (0..77).map(|i| (i * 7919) % (2 * half) - half).collect();
    let mut bytes = Vec::new();
    pack_bits(values.iter().copied(), width, &mut bytes);
    (values, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_bits_round_trip_every_width() {
        for width in 1..=16u8 {
            let (values, bytes) = packed_test_values(width);
            assert_eq!(bytes.len(), dense_payload_bytes(values.len(), width));
            let mut back = vec![0; values.len()];
            unpack_bits(&bytes, width, &mut back).unwrap();
            assert_eq!(back, values, "width {width}");
        }
    }

    #[test]
    fn needed_width_matches_the_range_definition() {
        for q in -70_000..70_000 {
            let w = needed_width(q);
            let fits = |w: u8| w >= 32 || (-(1i64 << (w - 1))..(1i64 << (w - 1))).contains(&i64::from(q));
            assert!(fits(w) && (w == 1 || !fits(w - 1)), "{q} -> {w}");
        }
    }

    #[test]
    fn p32_and_p24_bit_positions() {
        let mut out = Vec::new();
        pack_entry(Layout::P32, 2, 5, 0xB800, &mut out);
        assert_eq!(out, [0x00, 0xB8, 0x50, 0x08]);
        out.clear();
        pack_entry(Layout::P24, 63, 1, 0x3FF, &mut out);
        assert_eq!(unpack_entry(Layout::P24, &out).unwrap(), (63, 1, 0x3FF));
        assert!(unpack_entry(Layout::P32, &[0, 0, 1, 0]).is_err());
    }
}
