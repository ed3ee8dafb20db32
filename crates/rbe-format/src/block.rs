//! The block model (`EncodedBlock` = RBE parameters + one residual), its byte layout
//! (format.md 3.3) and the reference block decoder.

use crate::basis::{BasisTable, N_PARAMS};
use crate::error::BlockError;
use crate::layout::{self, dense_payload_bytes, fits_width, pack_bits, unpack_bits};
use crate::settings::{BlockConfig, ParamsPrecision, ValueCodec};
use crate::transform::TransformPlan;
use crate::values::decode_value;
use crate::varint::{read_varint, write_varint};
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

fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], BlockError> {
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
    /// Parses one block of exactly `bytes.len()` bytes.
    pub fn parse(bytes: &[u8], cfg: &BlockConfig) -> Result<Self, BlockError> {
        let mut pos = 0;
        let params = read_params(bytes, &mut pos, cfg.params)?;
        let head = read_varint(bytes, &mut pos, 3)?;
        let residual = if head <= cfg.block_area() as u64 {
            Residual::Sparse(parse_sparse(bytes, &mut pos, head as usize, cfg)?)
        } else if head == cfg.dense_head() {
            Residual::Dense(parse_dense(bytes, &mut pos, cfg)?)
        } else {
            return Err(BlockError::UnknownHead(head));
        };
        if pos != bytes.len() {
            return Err(BlockError::TrailingBytes(bytes.len() - pos));
        }
        Ok(EncodedBlock { params, residual })
    }

    /// Appends the block's bytes, validating it against `cfg` first.
    pub fn write(&self, cfg: &BlockConfig, out: &mut Vec<u8>) -> Result<(), BlockError> {
        self.validate(cfg)?;
        write_params(&self.params, cfg.params, out);
        match &self.residual {
            Residual::Sparse(s) => {
                write_varint(out, s.coefficients.len() as u64);
                write_scale(s.scale, cfg.values.scale_bytes(cfg.layout), out);
                for c in &s.coefficients {
                    layout::pack_entry(cfg.layout, c.row, c.col, c.field, out);
                }
            }
            Residual::Dense(d) => {
                write_varint(out, cfg.dense_head());
                out.push(d.width);
                out.extend_from_slice(&d.step.to_le_bytes());
                let w = d.width;
                pack_bits(d.values.iter().map(|&v| if fits_width(i32::from(v), w) { i32::from(v) } else { 0 }), w, out);
                let outliers: Vec<(usize, i16)> = d
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !fits_width(i32::from(**v), w))
                    .map(|(i, v)| (i, *v))
                    .collect();
                write_varint(out, outliers.len() as u64);
                for (i, v) in outliers {
                    out.extend_from_slice(&(i as u16).to_le_bytes());
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
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
        let b = cfg.block;
        match &self.residual {
            Residual::Sparse(s) => {
                finite(s.scale, "scale")?;
                if cfg.values.scale_bytes(cfg.layout) == 2 {
                    finite(f16::from_f32(s.scale).to_f32(), "scale (beyond f16 range)")?;
                }
                if s.coefficients.len() > cfg.block_area() {
                    return Err(BlockError::UnknownHead(s.coefficients.len() as u64));
                }
                let max_field = layout::field_max(cfg.layout, cfg.values);
                let mut prev: Option<(u16, u16)> = None;
                for (i, c) in s.coefficients.iter().enumerate() {
                    if usize::from(c.row) >= b || usize::from(c.col) >= b {
                        return Err(BlockError::CoordinateOutOfRange {
                            row: c.row.into(),
                            col: c.col.into(),
                            block: b,
                        });
                    }
                    if prev.is_some_and(|p| p >= (c.row, c.col)) {
                        return Err(BlockError::NotSorted(i));
                    }
                    prev = Some((c.row, c.col));
                    if c.field > max_field {
                        return Err(BlockError::ValueRange("field wider than the layout's value bits"));
                    }
                    check_field(cfg.values, c.field)?;
                }
            }
            Residual::Dense(d) => {
                if !(1..=16).contains(&d.width) {
                    return Err(BlockError::BadWidth(d.width));
                }
                if !(d.step.is_finite() && d.step > 0.0) {
                    return Err(BlockError::BadStep);
                }
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

fn write_params(p: &RbeParams, precision: ParamsPrecision, out: &mut Vec<u8>) {
    match precision {
        ParamsPrecision::None => {}
        ParamsPrecision::F32 => p.0.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes())),
        ParamsPrecision::F16 => p.0.iter().for_each(|t| out.extend_from_slice(&f16::from_f32(*t).to_le_bytes())),
    }
}

pub(crate) fn write_scale(scale: f32, bytes: usize, out: &mut Vec<u8>) {
    match bytes {
        0 => {}
        2 => out.extend_from_slice(&f16::from_f32(scale).to_le_bytes()),
        _ => out.extend_from_slice(&scale.to_le_bytes()),
    }
}

fn parse_sparse(bytes: &[u8], pos: &mut usize, k: usize, cfg: &BlockConfig) -> Result<SparseResidual, BlockError> {
    let scale = read_scale(bytes, pos, cfg.values.scale_bytes(cfg.layout))?;
    let entry = cfg.layout.entry_bytes();
    let body = take(bytes, pos, k.checked_mul(entry).ok_or(BlockError::Truncated)?)?;
    let mut coefficients = Vec::with_capacity(k);
    for e in body.chunks_exact(entry) {
        let (row, col, field) = layout::unpack_entry(cfg.layout, e)?;
        coefficients.push(Coefficient { row, col, field });
    }
    let s = SparseResidual { scale, coefficients };
    let block = EncodedBlock { params: RbeParams::default(), residual: Residual::Sparse(s) };
    let cfg_no_params = BlockConfig { params: ParamsPrecision::None, ..*cfg };
    block.validate(&cfg_no_params)?;
    match block.residual {
        Residual::Sparse(s) => Ok(s),
        Residual::Dense(_) => unreachable!("constructed as sparse above"),
    }
}

fn parse_dense(bytes: &[u8], pos: &mut usize, cfg: &BlockConfig) -> Result<DenseResidual, BlockError> {
    let width = *take(bytes, pos, 1)?.first().ok_or(BlockError::Truncated)?;
    if !(1..=16).contains(&width) {
        return Err(BlockError::BadWidth(width));
    }
    let s = take(bytes, pos, 4)?;
    let step = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    if !(step.is_finite() && step > 0.0) {
        return Err(BlockError::BadStep);
    }
    let n = cfg.block_area();
    let payload = take(bytes, pos, dense_payload_bytes(n, width))?;
    let mut q = vec![0i32; n];
    unpack_bits(payload, width, &mut q)?;
    let n_outliers = read_varint(bytes, pos, 3)?;
    if n_outliers > n as u64 {
        return Err(BlockError::BadOutlier("more outliers than coefficients"));
    }
    let list = take(bytes, pos, n_outliers as usize * 4)?;
    let mut prev: Option<usize> = None;
    for o in list.chunks_exact(4) {
        let p = usize::from(u16::from_le_bytes([o[0], o[1]]));
        let v = i16::from_le_bytes([o[2], o[3]]);
        if p >= n {
            return Err(BlockError::BadOutlier("position outside the block"));
        }
        if prev.is_some_and(|x| x >= p) {
            return Err(BlockError::BadOutlier("positions not strictly ascending"));
        }
        if q[p] != 0 || fits_width(i32::from(v), width) {
            return Err(BlockError::BadOutlier("outlier fits the payload width"));
        }
        prev = Some(p);
        q[p] = i32::from(v);
    }
    Ok(DenseResidual { width, step, values: q.into_iter().map(|v| v as i16).collect() })
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
        self.plan.inverse(&mut self.buf);
        self.basis.add_base(&block.params.0, &mut self.buf);
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
