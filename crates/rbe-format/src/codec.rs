//! The scalar oracles a kernel author needs, in one place: value decoding of sparse fields
//! (format.md 3.1), the mu-law table, field-width checks and bit (un)packing of the dense payload
//! (format.md 3.2), sparse entry unpacking, the base-surface basis (format.md 2.1) and the
//! transform matrices (format.md 2.2). SIMD and shader paths are tested against these;
//! backends use them instead of keeping copies.
//!
//! Two value rules exist and both are exact definitions, not approximations of each other:
//! [`decode_value`] evaluates in f64 (the reference decoder's rule), and [`EntryReader::value`]
//! evaluates in f32 for products that work in f32: `q * scale` rounded once, which equals
//! `decode_value` rounded to f32 for every codec except mu-law, whose table entry
//! ([`mulaw_table`]) is itself an f32 rounding of [`mulaw_expand`].

use crate::settings::{Layout, ValueCodec};
use half::f16;
use std::sync::OnceLock;

pub use crate::basis::{BasisTable, N_PARAMS, basis_at};
pub use crate::layout::{
    dense_payload_bytes, field_max, fits_width, needed_width, pack_bits, unpack_bits, unpack_entry,
};
pub use crate::transform::transform_matrix;
pub use crate::values::{MU, decode_value, encode_value, error_bound, mulaw_expand, scale_for};

/// The storage coding's pieces (format.md 5) for encoders that estimate rates and for fuzzing:
/// the per-tensor rANS model, the coder and the token alphabet of zigzagged values.
pub mod entropy {
    pub use crate::coded::{EntropyModel, zigzag};
    pub use crate::entropy::rans::RansEncoder;
    pub use crate::entropy::token::UintTokenizer;
}

/// The 128 magnitudes of the 7-bit mu-law code, [`mulaw_expand`] rounded to f32 (built once).
pub fn mulaw_table() -> &'static [f32; 128] {
    static TABLE: OnceLock<[f32; 128]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f32; 128];
        for (c, v) in t.iter_mut().enumerate() {
            *v = mulaw_expand(c as u32) as f32;
        }
        t
    })
}

/// Reads the sparse entries of one tensor (its layout and value codec) in f32. Entries must
/// come from a validated block ([`crate::BlockView`]); a malformed one reads as `(0, 0, 0)`.
#[derive(Debug, Clone, Copy)]
pub struct EntryReader {
    layout: Layout,
    codec: ValueCodec,
    mulaw: &'static [f32; 128],
}

impl EntryReader {
    /// A reader for `layout` and `codec`.
    pub fn new(layout: Layout, codec: ValueCodec) -> Self {
        EntryReader { layout, codec, mulaw: mulaw_table() }
    }

    /// The value codec.
    pub fn codec(&self) -> ValueCodec {
        self.codec
    }

    /// Bytes per entry.
    #[inline]
    pub fn entry_bytes(&self) -> usize {
        self.layout.entry_bytes()
    }

    /// `(row, col, field)` of the entry at the start of `e`.
    #[inline]
    pub fn coefficient(&self, e: &[u8]) -> (u16, u16, u32) {
        match (self.layout, e) {
            // The common layout without the reserved-bit check (done at validation).
            (Layout::P32, [a, b, c, d, ..]) => {
                let w = u32::from_le_bytes([*a, *b, *c, *d]);
                ((w >> 26) as u16, ((w >> 20) & 63) as u16, w & 0xFFFF)
            }
            _ => unpack_entry(self.layout, e).unwrap_or((0, 0, 0)),
        }
    }

    /// The f32 value of a field given the block's scale (see the module docs for the rule).
    #[inline]
    pub fn value(&self, field: u32, scale: f32) -> f32 {
        match self.codec {
            ValueCodec::Q16 => f32::from(field as u16 as i16) * scale,
            ValueCodec::F16 => f16::from_bits(field as u16).to_f32(),
            ValueCodec::F32 => f32::from_bits(field),
            ValueCodec::Q9s => {
                let m = (field & 511) as f32 * scale;
                if field & 512 != 0 { -m } else { m }
            }
            ValueCodec::MuLaw8 => {
                let m = self.mulaw[(field & 127) as usize] * scale;
                if field & 128 != 0 { -m } else { m }
            }
        }
    }

    /// `(row, col, f32 value)` of the entry at the start of `e`.
    #[inline]
    pub fn entry(&self, e: &[u8], scale: f32) -> (usize, usize, f32) {
        let (r, c, field) = self.coefficient(e);
        (usize::from(r), usize::from(c), self.value(field, scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_values_round_the_f64_rule_once_except_mulaw() {
        let fields = [0u32, 1, 77, 127, 128, 255, 511, 512, 700, 1023, 0x3c00, 0xbc00, 0x7fff, 0x8001];
        for codec in ValueCodec::ALL.iter().copied() {
            let reader = EntryReader::new(Layout::Wide, codec);
            for &f in &fields {
                let field = match codec {
                    ValueCodec::F32 => (f as f32 * 0.001).to_bits(),
                    ValueCodec::MuLaw8 => f & 255,
                    _ => f,
                };
                let (got, want) = (reader.value(field, 0.37), decode_value(codec, field, 0.37));
                if codec == ValueCodec::MuLaw8 {
                    assert!((f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{codec} {field}");
                } else if !want.is_nan() {
                    assert_eq!(got, want as f32, "{codec} {field}");
                }
            }
        }
    }
}
