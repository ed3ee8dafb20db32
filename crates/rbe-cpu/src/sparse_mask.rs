//! `SparseMask`: the exact direct product with sparse blocks held as one 64-bit column mask per
//! row plus their values in mask order, walked with `trailing_zeros` loops. Dense blocks go
//! through the exact plane kernels.

use crate::direct::{Column, Ctx, DirectKernel, Exact};
use crate::error::CpuError;
use crate::resident::{DenseBlk, SparseBlk};
use rbe_format::codec::decode_value;
use rbe_format::{EncodedTensor, ResidualView};

/// The masks and values of every sparse block of a layer.
#[derive(Debug)]
pub(crate) struct SparseMasks {
    /// Per block: offsets into `masks` (`b` masks) and `vals` (`K` values); unused for dense ones.
    at: Vec<(u32, u32)>,
    masks: Vec<u64>,
    vals: Vec<f32>,
    block: usize,
}

impl SparseMasks {
    /// Builds the masks of `tensor`'s sparse blocks.
    pub fn build(tensor: &EncodedTensor) -> Result<Self, CpuError> {
        let cfg = tensor.config();
        let b = cfg.block;
        let mut m =
            SparseMasks { at: Vec::with_capacity(tensor.block_count()), masks: Vec::new(), vals: Vec::new(), block: b };
        for (i, view) in tensor.blocks().enumerate() {
            let view = view?;
            let (mask, vals) = (m.masks.len(), m.vals.len());
            let too_big = || CpuError::Block {
                tensor: tensor.name().to_owned(),
                block: i,
                reason: "resident data exceeds 4 G entries".into(),
            };
            m.at.push((u32::try_from(mask).map_err(|_| too_big())?, u32::try_from(vals).map_err(|_| too_big())?));
            if let ResidualView::Sparse(s) = view.residual() {
                m.masks.resize(mask + b, 0u64);
                for c in s.coefficients() {
                    m.masks[mask + usize::from(c.row)] |= 1u64 << c.col;
                    m.vals.push(decode_value(cfg.values, c.field, s.scale()) as f32);
                }
            }
        }
        Ok(m)
    }

    /// Resident bytes of the masks and values.
    pub fn bytes(&self) -> usize {
        8 * self.masks.len() + 4 * self.vals.len() + 8 * self.at.len()
    }
}

impl DirectKernel for SparseMasks {
    crate::direct::no_direct_scratch!();

    #[inline]
    fn dense(&self, cx: &Ctx<'_>, d: &DenseBlk, col: &Column<()>, row: &mut (), yh: &mut [f32]) -> u64 {
        Exact.dense(cx, d, col, row, yh)
    }

    #[inline]
    fn sparse(&self, cx: &Ctx<'_>, idx: usize, s: &SparseBlk, col: &Column<()>, yh: &mut [f32]) -> u64 {
        let (b, p) = (self.block, cx.p);
        let (mask, vals) = self.at[idx];
        let masks = &self.masks[mask as usize..mask as usize + b];
        let values = &self.vals[vals as usize..(vals + s.k) as usize];
        for v in 0..cx.nb {
            let xv = &col.xh[v * p..v * p + b];
            let mut at = 0;
            for (i, &m0) in masks.iter().enumerate() {
                let mut m = m0;
                let mut acc = 0f32;
                while m != 0 {
                    let j = m.trailing_zeros() as usize;
                    acc += values[at] * xv[j];
                    at += 1;
                    m &= m - 1;
                }
                yh[v * b + i] += acc;
            }
        }
        u64::from(s.k)
    }
}
