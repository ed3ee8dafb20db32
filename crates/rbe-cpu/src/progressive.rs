//! `Progressive`: the direct product over bit planes. Dense values of more than 4 bits were split
//! at load ([`crate::resident`]) into a high plane (4 bits) and a low plane stored as the signed
//! offset from the low bits' midpoint. `Coarse` reads the high planes only and adds the midpoint
//! (one scaled input sum per block); `Full` adds the low planes too, which is exact.

use crate::direct::{Column, Ctx, DirectKernel};
use crate::linear::Precision;
use crate::resident::DenseBlk;

/// The progressive kernel at one precision.
pub(crate) struct Progressive {
    /// Whether the low planes are read.
    pub precision: Precision,
}

impl DirectKernel for Progressive {
    /// Per input, the sum of its `b` transformed values (for the midpoint term).
    type Col = Vec<f32>;
    type Row = ();

    fn prepare(&self, xh: &[f32], b: usize, p: usize, nb: usize) -> Vec<f32> {
        (0..nb).map(|v| xh[v * p..v * p + b].iter().sum()).collect()
    }

    fn row_scratch(&self, _: &Ctx<'_>) {}

    #[inline]
    fn dense(&self, cx: &Ctx<'_>, d: &DenseBlk, col: &Column<Vec<f32>>, _: &mut (), yh: &mut [f32]) -> u64 {
        let b = cx.b;
        let lo_scale = (1u32 << d.lo_bits) as f32;
        cx.plane_f32(d.main, d.step * lo_scale, col, yh);
        let mut unpacked = (b * b) as u64;
        if let Some(lo) = d.lo {
            let full = self.precision == Precision::Full;
            if full {
                cx.plane_f32(lo, d.step, col, yh);
                unpacked += (b * b) as u64;
            }
            let mid = if full { (lo_scale / 2.0) * d.step } else { (lo_scale - 1.0) / 2.0 * d.step };
            for v in 0..cx.nb {
                let c = mid * col.extra[v];
                yh[v * b..(v + 1) * b].iter_mut().for_each(|t| *t += c);
            }
        }
        unpacked
    }
}
