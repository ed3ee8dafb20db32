//! `BlockView<'a>`: one block read in place from its runtime bytes (format.md 3.3), validated
//! once when parsed and never copied: the parameters, the residual kind, the sparse entries (read
//! through the one value decoder, [`crate::codec`]) or the dense payload and its outliers.
//!
//! Every reader of runtime bytes goes through this view: the reference decoder, the owned
//! [`EncodedBlock`] (`EncodedBlock::parse` is a view turned owned) and the CPU backend's
//! resident form.

use crate::block::{
    Coefficient, DenseResidual, EncodedBlock, RbeParams, Residual, SparseResidual, check_coefficient, check_scale,
    check_step, check_width, read_params, read_scale, take,
};
use crate::error::BlockError;
use crate::layout::{dense_payload_bytes, fits_width, unpack_bits, unpack_entry};
use crate::settings::{BlockConfig, Layout, ValueCodec};
use crate::values::decode_value;
use crate::varint::read_varint;

/// A validated block borrowed from runtime bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockView<'a> {
    params: RbeParams,
    residual: ResidualView<'a>,
}

/// The residual of a [`BlockView`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResidualView<'a> {
    /// Top-K coefficient list.
    Sparse(SparseView<'a>),
    /// Every coefficient, fixed width.
    Dense(DenseView<'a>),
}

/// A sparse residual in place: the scale and the `K` packed entries (sorted by `(row, col)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseView<'a> {
    layout: Layout,
    codec: ValueCodec,
    scale: f32,
    entries: &'a [u8],
}

/// A dense residual in place: width, step, the fixed-width payload (zero where a value is an
/// outlier) and the outlier list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseView<'a> {
    width: u8,
    step: f32,
    area: usize,
    payload: &'a [u8],
    outliers: &'a [u8],
}

impl<'a> BlockView<'a> {
    /// Parses and validates one block of exactly `bytes.len()` bytes (the same rules, checked in
    /// the same order, as the owned [`EncodedBlock::parse`]). Allocates nothing.
    pub fn parse(bytes: &'a [u8], cfg: &BlockConfig) -> Result<Self, BlockError> {
        let mut pos = 0;
        let params = read_params(bytes, &mut pos, cfg.params)?;
        let head = read_varint(bytes, &mut pos, 3)?;
        let residual = if head <= cfg.block_area() as u64 {
            ResidualView::Sparse(SparseView::parse(bytes, &mut pos, head as usize, cfg)?)
        } else if head == cfg.dense_head() {
            ResidualView::Dense(DenseView::parse(bytes, &mut pos, cfg)?)
        } else {
            return Err(BlockError::UnknownHead(head));
        };
        if pos != bytes.len() {
            return Err(BlockError::TrailingBytes(bytes.len() - pos));
        }
        Ok(BlockView { params, residual })
    }

    /// The smooth base's parameters (zeros when the tensor stores none).
    pub fn params(&self) -> &RbeParams {
        &self.params
    }

    /// The residual.
    pub fn residual(&self) -> ResidualView<'a> {
        self.residual
    }

    /// Whether the residual is dense.
    pub fn is_dense(&self) -> bool {
        matches!(self.residual, ResidualView::Dense(_))
    }

    /// Number of stored coefficients (K for sparse, b*b for dense).
    pub fn coefficient_count(&self) -> usize {
        match &self.residual {
            ResidualView::Sparse(s) => s.len(),
            ResidualView::Dense(d) => d.area,
        }
    }

    /// The residual coefficient matrix `R` (`b * b`, row-major), dequantised in f64: sparse values
    /// through [`decode_value`], dense ones as `q * step`.
    ///
    /// # Panics
    /// When `out` is shorter than `b * b`.
    pub fn residual_coefficients(&self, block: usize, out: &mut [f64]) {
        out.fill(0.0);
        match &self.residual {
            ResidualView::Sparse(s) => {
                for (r, c, v) in s.values() {
                    out[r * block + c] = v;
                }
            }
            ResidualView::Dense(d) => {
                let step = f64::from(d.step);
                for (o, q) in out[..d.area].iter_mut().zip(d.payload_values()) {
                    *o = f64::from(q) * step;
                }
                for (p, v) in d.outliers() {
                    out[usize::from(p)] = f64::from(v) * step;
                }
            }
        }
    }

    /// The owned block.
    pub fn to_block(&self) -> EncodedBlock {
        let residual = match &self.residual {
            ResidualView::Sparse(s) => {
                Residual::Sparse(SparseResidual { scale: s.scale, coefficients: s.coefficients().collect() })
            }
            ResidualView::Dense(d) => {
                let mut q = vec![0i32; d.area];
                d.unpack(&mut q);
                Residual::Dense(DenseResidual {
                    width: d.width,
                    step: d.step,
                    values: q.into_iter().map(|v| v as i16).collect(),
                })
            }
        };
        EncodedBlock { params: self.params, residual }
    }
}

impl<'a> SparseView<'a> {
    fn parse(bytes: &'a [u8], pos: &mut usize, k: usize, cfg: &BlockConfig) -> Result<Self, BlockError> {
        let scale = read_scale(bytes, pos, cfg.values.scale_bytes(cfg.layout))?;
        let entry = cfg.layout.entry_bytes();
        let entries = take(bytes, pos, k.checked_mul(entry).ok_or(BlockError::Truncated)?)?;
        // Every entry's reserved bits first, then the coefficient rules (the owned parser's order).
        for e in entries.chunks_exact(entry) {
            unpack_entry(cfg.layout, e)?;
        }
        let view = SparseView { layout: cfg.layout, codec: cfg.values, scale, entries };
        check_scale(cfg, scale)?;
        let mut prev = None;
        for (i, c) in view.coefficients().enumerate() {
            check_coefficient(cfg, prev, i, &c)?;
            prev = Some((c.row, c.col));
        }
        Ok(view)
    }

    /// Number of coefficients `K`.
    pub fn len(&self) -> usize {
        self.entries.len() / self.layout.entry_bytes()
    }

    /// Whether `K` is zero.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scale of quantised codecs (1.0 when the codec stores none).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The packed entries as stored: `K` entries of `layout.entry_bytes()` bytes each.
    pub fn entry_bytes(&self) -> &'a [u8] {
        self.entries
    }

    /// The coefficients as stored (coordinates and raw value field), in `(row, col)` order.
    pub fn coefficients(&self) -> impl ExactSizeIterator<Item = Coefficient> + 'a {
        let layout = self.layout;
        self.entries.chunks_exact(layout.entry_bytes()).map(move |e| {
            // Validated when the view was parsed.
            let (row, col, field) = unpack_entry(layout, e).unwrap_or((0, 0, 0));
            Coefficient { row, col, field }
        })
    }

    /// `(row, col, value)` of every coefficient, the value through [`decode_value`] (f64).
    pub fn values(&self) -> impl ExactSizeIterator<Item = (usize, usize, f64)> + 'a {
        let (codec, scale) = (self.codec, self.scale);
        self.coefficients().map(move |c| (usize::from(c.row), usize::from(c.col), decode_value(codec, c.field, scale)))
    }
}

/// Sign-extended `width`-bit field `i` of a dense payload (LSB-first bit stream). `width <= 16`,
/// and the payload must hold the field.
fn field_at(payload: &[u8], width: u8, i: usize) -> i32 {
    let w = u32::from(width);
    let bit = i * usize::from(width);
    let mut acc = 0u32;
    for (k, byte) in payload[bit / 8..].iter().take(3).enumerate() {
        acc |= u32::from(*byte) << (8 * k);
    }
    let field = (acc >> (bit % 8)) & ((1u32 << w) - 1);
    ((field << (32 - w)) as i32) >> (32 - w)
}

/// The fields of a dense payload in order, sign-extended ([`DenseView::payload_values`]).
#[derive(Debug, Clone)]
pub struct PayloadFields<'a> {
    bytes: std::slice::Iter<'a, u8>,
    width: u32,
    acc: u64,
    bits: u32,
    left: usize,
}

impl Iterator for PayloadFields<'_> {
    type Item = i32;
    #[inline]
    fn next(&mut self) -> Option<i32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        while self.bits < self.width {
            // The payload holds `area * width` bits (validated with the view).
            self.acc |= u64::from(self.bytes.next().copied().unwrap_or(0)) << self.bits;
            self.bits += 8;
        }
        let shift = 64 - self.width;
        let v = (((self.acc << shift) as i64) >> shift) as i32;
        self.acc >>= self.width;
        self.bits -= self.width;
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for PayloadFields<'_> {}

impl<'a> DenseView<'a> {
    fn parse(bytes: &'a [u8], pos: &mut usize, cfg: &BlockConfig) -> Result<Self, BlockError> {
        let width = *take(bytes, pos, 1)?.first().ok_or(BlockError::Truncated)?;
        check_width(width)?;
        let s = take(bytes, pos, 4)?;
        let step = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        check_step(step)?;
        let n = cfg.block_area();
        let payload = take(bytes, pos, dense_payload_bytes(n, width))?;
        let used = (n * usize::from(width)) % 8;
        if used != 0 && payload.last().is_some_and(|&last| last >> used != 0) {
            return Err(BlockError::ReservedBits("dense payload padding"));
        }
        let n_outliers = read_varint(bytes, pos, 3)?;
        if n_outliers > n as u64 {
            return Err(BlockError::BadOutlier("more outliers than coefficients"));
        }
        let outliers = take(bytes, pos, n_outliers as usize * 4)?;
        let view = DenseView { width, step, area: n, payload, outliers };
        let mut prev: Option<usize> = None;
        for (p, v) in view.outliers() {
            let p = usize::from(p);
            if p >= n {
                return Err(BlockError::BadOutlier("position outside the block"));
            }
            if prev.is_some_and(|x| x >= p) {
                return Err(BlockError::BadOutlier("positions not strictly ascending"));
            }
            if field_at(payload, width, p) != 0 || fits_width(i32::from(v), width) {
                return Err(BlockError::BadOutlier("outlier fits the payload width"));
            }
            prev = Some(p);
        }
        Ok(view)
    }

    /// Payload field width in bits (1..=16).
    pub fn width(&self) -> u8 {
        self.width
    }

    /// Quantisation step.
    pub fn step(&self) -> f32 {
        self.step
    }

    /// Coefficients in the block, `b * b`.
    pub fn area(&self) -> usize {
        self.area
    }

    /// The packed payload as stored: `b * b` two's-complement fields of `width` bits, LSB first.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// `(position, value)` of each outlier (row-major position, ascending), whose payload field is 0.
    pub fn outliers(&self) -> impl ExactSizeIterator<Item = (u16, i16)> + 'a {
        self.outliers.chunks_exact(4).map(|o| (u16::from_le_bytes([o[0], o[1]]), i16::from_le_bytes([o[2], o[3]])))
    }

    /// The payload's `b * b` fields in order (zero at the outliers' positions).
    pub fn payload_values(&self) -> PayloadFields<'a> {
        PayloadFields { bytes: self.payload.iter(), width: u32::from(self.width), acc: 0, bits: 0, left: self.area }
    }

    /// Writes the payload's fields to `out` (`b * b` values; zero where an outlier goes).
    ///
    /// # Panics
    /// When `out` does not hold exactly `b * b` values.
    pub fn unpack_payload(&self, out: &mut [i32]) {
        assert_eq!(out.len(), self.area, "dense unpack wants b*b values");
        // Length and padding were validated when the view was parsed.
        let _ = unpack_bits(self.payload, self.width, out);
    }

    /// Writes all `b * b` integer coefficients to `out`: the payload with the outliers in place.
    ///
    /// # Panics
    /// When `out` does not hold exactly `b * b` values.
    pub fn unpack(&self, out: &mut [i32]) {
        self.unpack_payload(out);
        for (p, v) in self.outliers() {
            out[usize::from(p)] = i32::from(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{ParamsPrecision, Transform};

    #[test]
    fn field_at_matches_unpack_bits_for_every_width() {
        for width in 1..=16u8 {
            let (values, bytes) = crate::layout::packed_test_values(width);
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(field_at(&bytes, width, i), v, "width {width} field {i}");
            }
            let view = DenseView { width, step: 1.0, area: values.len(), payload: &bytes, outliers: &[] };
            assert_eq!(view.payload_values().collect::<Vec<_>>(), values);
        }
    }

    #[test]
    fn views_agree_with_owned_blocks() {
        let cfg = BlockConfig {
            block: 8,
            transform: Transform::Dct,
            layout: Layout::P32,
            values: ValueCodec::Q16,
            params: ParamsPrecision::F16,
        };
        let mut values: Vec<i16> = (0..64).map(|i| (i % 7 - 3) as i16).collect();
        values[9] = 900;
        let block = EncodedBlock {
            params: RbeParams([0.5, 0.0, -1.0, 0.0, 0.0, 0.25, 0.0, 0.0]),
            residual: Residual::Dense(DenseResidual { width: 3, step: 0.5, values }),
        };
        let mut bytes = Vec::new();
        block.write(&cfg, &mut bytes).unwrap();
        let view = BlockView::parse(&bytes, &cfg).unwrap();
        assert_eq!(view.to_block(), block);
        let (mut a, mut b) = (vec![0f64; 64], vec![0f64; 64]);
        view.residual_coefficients(8, &mut a);
        block.residual_coefficients(&cfg, &mut b);
        assert_eq!(a, b);
        let ResidualView::Dense(d) = view.residual() else { panic!("dense") };
        assert_eq!(d.outliers().collect::<Vec<_>>(), [(9, 900)]);
    }
}
