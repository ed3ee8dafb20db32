//! The block model (`EncodedBlock` = RBE parameters + one residual), its byte layout
//! (format.md 3.3) and the reference block decoder.

use crate::basis::{BasisTable, N_PARAMS};
use crate::error::BlockError;
use crate::layout::{self, fits_width, pack_bits};
use crate::settings::{BlockConfig, ParamsPrecision, ValueCodec};
use crate::transform::TransformPlan;
use crate::values::decode_value;
use crate::varint::write_varint;
use crate::view::BlockView;
use half::f16;

/// The 8 RBE parameters `theta_1..theta_8` of a block (format.md 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RbeParams(pub [f32; N_PARAMS]);

/// One stored sparse residual coefficient: coordinates and the raw value field of the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coefficient {
    /// Row (vertical frequency) index, `< b`.
    pub row: u16,
    /// Column (horizontal frequency) index, `< b`.
    pub col: u16,
    /// The value field as stored (f32/f16 bits, i16, q9s or mu-law code).
    pub field: u32,
}

/// Top-K residual: a per-block scale and coefficients sorted by (row, col).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseResidual {
    /// Scale of quantised codecs (stored only when the codec has one; 1.0 otherwise).
    pub scale: f32,
    /// The kept coefficients.
    pub coefficients: Vec<Coefficient>,
}

/// Dense residual: all `b * b` coefficients as integers times one step.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseResidual {
    /// Payload field width in bits (1..=16); values outside it are stored as outliers.
    pub width: u8,
    /// Quantisation step.
    pub step: f32,
    /// `b * b` integer coefficients, row-major.
    pub values: Vec<i16>,
}

/// The residual of a block.
#[derive(Debug, Clone, PartialEq)]
pub enum Residual {
    /// Top-K coefficient list.
    Sparse(SparseResidual),
    /// Every coefficient, fixed width.
    Dense(DenseResidual),
}

/// One encoded block.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBlock {
    /// The smooth base.
    pub params: RbeParams,
    /// The residual.
    pub residual: Residual,
}

pub(crate) fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], BlockError> {
    let end = pos.checked_add(n).ok_or(BlockError::Truncated)?;
    let s = bytes.get(*pos..end).ok_or(BlockError::Truncated)?;
    *pos = end;
    Ok(s)
}

fn finite(v: f32, what: &'static str) -> Result<f32, BlockError> {
    if v.is_finite() { Ok(v) } else { Err(BlockError::NonFinite(what)) }
}

/// Reads the parameters at `*pos`.
pub(crate) fn read_params(bytes: &[u8], pos: &mut usize, p: ParamsPrecision) -> Result<RbeParams, BlockError> {
    let mut theta = [0f32; N_PARAMS];
    match p {
        ParamsPrecision::None => {}
        ParamsPrecision::F32 => {
            for (t, c) in theta.iter_mut().zip(take(bytes, pos, 32)?.chunks_exact(4)) {
                *t = finite(f32::from_le_bytes([c[0], c[1], c[2], c[3]]), "parameter")?;
            }
        }
        ParamsPrecision::F16 => {
            for (t, c) in theta.iter_mut().zip(take(bytes, pos, 16)?.chunks_exact(2)) {
                *t = finite(f16::from_le_bytes([c[0], c[1]]).to_f32(), "parameter")?;
            }
        }
    }
    Ok(RbeParams(theta))
}

/// Reads a sparse scale of `n` bytes (0, 2 = f16, 4 = f32).
pub(crate) fn read_scale(bytes: &[u8], pos: &mut usize, n: usize) -> Result<f32, BlockError> {
    Ok(match n {
        0 => 1.0,
        2 => {
            let s = take(bytes, pos, 2)?;
            finite(f16::from_le_bytes([s[0], s[1]]).to_f32(), "scale")?
        }
        _ => {
            let s = take(bytes, pos, 4)?;
            finite(f32::from_le_bytes([s[0], s[1], s[2], s[3]]), "scale")?
        }
    })
}

impl EncodedBlock {
    /// Parses one block of exactly `bytes.len()` bytes into an owned block (see [`BlockView`]
    /// for the borrowed form, which readers should prefer).
    pub fn parse(bytes: &[u8], cfg: &BlockConfig) -> Result<Self, BlockError> {
        BlockView::parse(bytes, cfg).map(|v| v.to_block())
    }

    /// Appends the block's bytes, validating it against `cfg` first.
    pub fn write(&self, cfg: &BlockConfig, out: &mut Vec<u8>) -> Result<(), BlockError> {
        self.validate(cfg)?;
        write_params(&self.params, cfg.params, out);
        match &self.residual {
            Residual::Sparse(s) => {
                write_sparse_head(s.coefficients.len(), s.scale, cfg, out);
                for c in &s.coefficients {
                    layout::pack_entry(cfg.layout, c.row, c.col, c.field, out);
                }
            }
            Residual::Dense(d) => write_dense(cfg, d.width, d.step, &d.values, out),
        }
        Ok(())
    }

    /// Byte length of [`EncodedBlock::write`]'s output.
    pub fn encoded_len(&self, cfg: &BlockConfig) -> usize {
        let mut v = Vec::new();
        // Cheap enough for the sizes involved; keeps one source of truth for the layout.
        let _ = self.write(cfg, &mut v);
        v.len()
    }

    /// Checks the block against the format's rules for `cfg`.
    pub fn validate(&self, cfg: &BlockConfig) -> Result<(), BlockError> {
        for &t in &self.params.0 {
            finite(t, "parameter")?;
            if cfg.params == ParamsPrecision::F16 {
                finite(f16::from_f32(t).to_f32(), "parameter (beyond f16 range)")?;
            }
        }
        if cfg.params == ParamsPrecision::None && self.params.0.iter().any(|&t| t != 0.0) {
            return Err(BlockError::ValueRange("parameters must be zero when params = none"));
        }
        match &self.residual {
            Residual::Sparse(s) => {
                check_scale(cfg, s.scale)?;
                if s.coefficients.len() > cfg.block_area() {
                    return Err(BlockError::UnknownHead(s.coefficients.len() as u64));
                }
                let mut prev: Option<(u16, u16)> = None;
                for (i, c) in s.coefficients.iter().enumerate() {
                    check_coefficient(cfg, prev, i, c)?;
                    prev = Some((c.row, c.col));
                }
            }
            Residual::Dense(d) => {
                check_width(d.width)?;
                check_step(d.step)?;
                if d.values.len() != cfg.block_area() {
                    return Err(BlockError::ValueRange("dense residual must hold b*b values"));
                }
            }
        }
        Ok(())
    }

    /// The residual coefficient matrix `R` (`b * b`, row-major), dequantised in f64.
    pub fn residual_coefficients(&self, cfg: &BlockConfig, out: &mut [f64]) {
        out.fill(0.0);
        match &self.residual {
            Residual::Sparse(s) => {
                for c in &s.coefficients {
                    out[usize::from(c.row) * cfg.block + usize::from(c.col)] =
                        decode_value(cfg.values, c.field, s.scale);
                }
            }
            Residual::Dense(d) => {
                let step = f64::from(d.step);
                for (o, &q) in out.iter_mut().zip(&d.values) {
                    *o = f64::from(q) * step;
                }
            }
        }
    }

    /// Reference decode to a `b x b` f32 block (row-major). Plans a transform per call: use
    /// [`BlockDecoder`] for many blocks.
    pub fn decode(&self, cfg: &BlockConfig) -> Vec<f32> {
        let mut dec = BlockDecoder::new(*cfg);
        dec.decode(self).iter().map(|&v| v as f32).collect()
    }

    /// Number of stored coefficients (K for sparse, b*b for dense).
    pub fn coefficient_count(&self) -> usize {
        match &self.residual {
            Residual::Sparse(s) => s.coefficients.len(),
            Residual::Dense(d) => d.values.len(),
        }
    }
}

/// The scale rules of a sparse residual (finite, and within f16 when stored as f16).
pub(crate) fn check_scale(cfg: &BlockConfig, scale: f32) -> Result<(), BlockError> {
    finite(scale, "scale")?;
    if cfg.values.scale_bytes(cfg.layout) == 2 {
        finite(f16::from_f32(scale).to_f32(), "scale (beyond f16 range)")?;
    }
    Ok(())
}

/// The rules of sparse coefficient `i`, given the one before it (`prev`): coordinates inside the
/// block, strictly ascending `(row, col)`, a field the layout and codec can hold.
pub(crate) fn check_coefficient(
    cfg: &BlockConfig,
    prev: Option<(u16, u16)>,
    i: usize,
    c: &Coefficient,
) -> Result<(), BlockError> {
    let b = cfg.block;
    if usize::from(c.row) >= b || usize::from(c.col) >= b {
        return Err(BlockError::CoordinateOutOfRange { row: c.row.into(), col: c.col.into(), block: b });
    }
    if prev.is_some_and(|p| p >= (c.row, c.col)) {
        return Err(BlockError::NotSorted(i));
    }
    if c.field > layout::field_max(cfg.layout, cfg.values) {
        return Err(BlockError::ValueRange("field wider than the layout's value bits"));
    }
    check_field(cfg.values, c.field)
}

/// A dense residual's payload width: `1..=16` bits.
pub(crate) fn check_width(width: u8) -> Result<(), BlockError> {
    if (1..=16).contains(&width) { Ok(()) } else { Err(BlockError::BadWidth(width)) }
}

/// A dense residual's step: finite and positive.
pub(crate) fn check_step(step: f32) -> Result<(), BlockError> {
    if step.is_finite() && step > 0.0 { Ok(()) } else { Err(BlockError::BadStep) }
}

fn check_field(codec: ValueCodec, field: u32) -> Result<(), BlockError> {
    match codec {
        ValueCodec::F32 => {
            finite(f32::from_bits(field), "coefficient value")?;
        }
        ValueCodec::F16 => {
            finite(f16::from_bits(field as u16).to_f32(), "coefficient value")?;
        }
        ValueCodec::MuLaw8 if field > 255 => return Err(BlockError::ReservedBits("mu-law value")),
        _ => {}
    }
    Ok(())
}

/// Appends the parameters in `precision` (nothing for `None`).
pub(crate) fn write_params(p: &RbeParams, precision: ParamsPrecision, out: &mut Vec<u8>) {
    match precision {
        ParamsPrecision::None => {}
        ParamsPrecision::F32 => p.0.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes())),
        ParamsPrecision::F16 => p.0.iter().for_each(|t| out.extend_from_slice(&f16::from_f32(*t).to_le_bytes())),
    }
}

/// Appends a sparse residual's head: `K` and the scale (when the codec stores one).
pub(crate) fn write_sparse_head(k: usize, scale: f32, cfg: &BlockConfig, out: &mut Vec<u8>) {
    write_varint(out, k as u64);
    match cfg.values.scale_bytes(cfg.layout) {
        0 => {}
        2 => out.extend_from_slice(&f16::from_f32(scale).to_le_bytes()),
        _ => out.extend_from_slice(&scale.to_le_bytes()),
    }
}

/// Appends a dense residual (format.md 3.3): head, width, step, the `width`-bit payload with
/// zeros where a value does not fit, and those values as the outlier list.
pub(crate) fn write_dense<T: Copy + Into<i32>>(
    cfg: &BlockConfig,
    width: u8,
    step: f32,
    values: &[T],
    out: &mut Vec<u8>,
) {
    write_varint(out, cfg.dense_head());
    out.push(width);
    out.extend_from_slice(&step.to_le_bytes());
    let fits = |v: i32| fits_width(v, width);
    pack_bits(values.iter().map(|&v| v.into()).map(|v| if fits(v) { v } else { 0 }), width, out);
    let n_outliers = values.iter().filter(|&&v| !fits(v.into())).count();
    write_varint(out, n_outliers as u64);
    for (i, &v) in values.iter().enumerate() {
        let v: i32 = v.into();
        if !fits(v) {
            out.extend_from_slice(&(i as u16).to_le_bytes());
            out.extend_from_slice(&(v as i16).to_le_bytes());
        }
    }
}

/// Reference decoder for many blocks of one tensor: keeps the basis table, the transform plan and
/// scratch (all f64).
pub struct BlockDecoder {
    cfg: BlockConfig,
    basis: std::sync::Arc<BasisTable>,
    plan: TransformPlan<f64>,
    buf: Vec<f64>,
}

impl BlockDecoder {
    /// Plans decoding for `cfg`.
    pub fn new(cfg: BlockConfig) -> Self {
        BlockDecoder {
            cfg,
            basis: BasisTable::shared(cfg.block),
            plan: TransformPlan::new(cfg.block, cfg.transform),
            buf: vec![0.0; cfg.block_area()],
        }
    }

    /// The configuration this decoder was planned for.
    pub fn config(&self) -> &BlockConfig {
        &self.cfg
    }

    /// Decodes `block` to `b * b` f64 values (row-major); valid until the next call.
    pub fn decode(&mut self, block: &EncodedBlock) -> &[f64] {
        block.residual_coefficients(&self.cfg, &mut self.buf);
        self.finish(&block.params)
    }

    /// Decodes a block read in place (same values as [`BlockDecoder::decode`] of its owned form).
    pub fn decode_view(&mut self, view: &BlockView<'_>) -> &[f64] {
        view.residual_coefficients(self.cfg.block, &mut self.buf);
        self.finish(view.params())
    }

    fn finish(&mut self, params: &RbeParams) -> &[f64] {
        self.plan.inverse(&mut self.buf);
        self.basis.add_base(&params.0, &mut self.buf);
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Layout, Transform};

    fn cfg(layout: Layout, values: ValueCodec, params: ParamsPrecision) -> BlockConfig {
        BlockConfig { block: 64, transform: Transform::Dct, layout, values, params }
    }

    #[test]
    fn notes_reference_block_is_433_bytes() {
        let c = cfg(Layout::B4, ValueCodec::F16, ParamsPrecision::F32);
        let coefficients = (0..100u16)
            .map(|i| Coefficient {
                row: i / 10,
                col: i % 10,
                field: u32::from(f16::from_f32(0.01 * f32::from(i)).to_bits()),
            })
            .collect();
        let block = EncodedBlock {
            params: RbeParams([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.5]),
            residual: Residual::Sparse(SparseResidual { scale: 1.0, coefficients }),
        };
        let mut out = Vec::new();
        block.write(&c, &mut out).unwrap();
        assert_eq!(out.len(), 433);
        assert_eq!(EncodedBlock::parse(&out, &c).unwrap(), block);
    }

    #[test]
    fn dense_with_outliers_round_trips() {
        let c = cfg(Layout::P32, ValueCodec::Q16, ParamsPrecision::None);
        let mut values: Vec<i16> = (0..4096).map(|i| ((i * 31) % 15 - 7) as i16).collect();
        values[10] = 300;
        values[4000] = -2000;
        let block = EncodedBlock {
            params: RbeParams::default(),
            residual: Residual::Dense(DenseResidual { width: 4, step: 0.01, values }),
        };
        let mut out = Vec::new();
        block.write(&c, &mut out).unwrap();
        assert_eq!(out.len(), 2 + 1 + 4 + 2048 + 1 + 8);
        assert_eq!(EncodedBlock::parse(&out, &c).unwrap(), block);
    }

    #[test]
    fn decode_matches_the_formula_in_f64() {
        for transform in [Transform::Dct, Transform::Dwt] {
            let c = BlockConfig {
                block: 8,
                transform,
                layout: Layout::Wide,
                values: ValueCodec::F32,
                params: ParamsPrecision::F32,
            };
            let theta = [0.5f32, -0.25, 0.125, 0.3, -0.1, 0.05, 0.02, -0.4];
            let coefs = [(0u16, 0u16, 1.0f32), (1, 3, -0.5), (7, 7, 0.25)];
            let block = EncodedBlock {
                params: RbeParams(theta),
                residual: Residual::Sparse(SparseResidual {
                    scale: 1.0,
                    coefficients: coefs
                        .iter()
                        .map(|&(row, col, v)| Coefficient { row, col, field: v.to_bits() })
                        .collect(),
                }),
            };
            let got = block.decode(&c);
            let m = crate::transform::transform_matrix(8, transform);
            for r in 0..8 {
                for col in 0..8 {
                    let x = (2.0 * col as f64 - 7.0) / 7.0;
                    let y = (2.0 * r as f64 - 7.0) / 7.0;
                    let phi = crate::basis::basis_at(x, y);
                    let mut want: f64 = theta.iter().zip(phi).map(|(t, p)| f64::from(*t) * p).sum();
                    for &(i, j, v) in &coefs {
                        want += f64::from(v) * m[usize::from(i) * 8 + r] * m[usize::from(j) * 8 + col];
                    }
                    assert!((f64::from(got[r * 8 + col]) - want).abs() < 1e-6, "{transform} ({r},{col})");
                }
            }
        }
    }

    #[test]
    fn corrupt_blocks_are_errors() {
        let c = cfg(Layout::P32, ValueCodec::F16, ParamsPrecision::None);
        assert_eq!(EncodedBlock::parse(&[], &c), Err(BlockError::Truncated));
        assert_eq!(EncodedBlock::parse(&[0x82, 0x20], &c), Err(BlockError::UnknownHead(4098)));
        assert_eq!(EncodedBlock::parse(&[0x00, 0x00], &c), Err(BlockError::TrailingBytes(1)));
        // Two entries out of order.
        let mut b = vec![2];
        layout::pack_entry(Layout::P32, 3, 0, 0, &mut b);
        layout::pack_entry(Layout::P32, 1, 0, 0, &mut b);
        assert_eq!(EncodedBlock::parse(&b, &c), Err(BlockError::NotSorted(1)));
    }
}
