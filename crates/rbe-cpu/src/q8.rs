//! `DctDirectQ8`: the direct product with each transformed input block quantised to int8 (one
//! scale per [`Q8_SEGMENT`] values) and dense planes multiplied as integers by the int16-pair
//! kernels ([`crate::simd::plane_i16`]: `vpdpwssd` / `pmaddwd`, `sdot` on aarch64), folding the
//! integer sums into f32 at each scale segment. Sparse blocks and outliers stay in f32. The only
//! error is the activations' rounding.

use crate::direct::{Column, Ctx, DirectKernel};
use crate::resident::DenseBlk;
use crate::simd::{self, PlaneI16};

/// Transformed inputs per Q8 activation scale: a 64-value block gets four scales, each the
/// max-abs of its 16 values over 127. One scale per block let the largest of 64 values set the
/// rounding step of all of them (1.1 % max-based error on the MiniLM query fixtures).
pub(crate) const Q8_SEGMENT: usize = 16;

/// Quantises one block of transformed inputs for the Q8 kernels: segments of [`Q8_SEGMENT`]
/// values, each rounded to int8 (`|q| <= 127`) with its own max-abs scale. Writes `x.len() / 2`
/// pairs (zero beyond) and one scale per segment of `scales` (segments past `x` get 0; a
/// non-finite input gives its segment a NaN scale, which carries it into the product).
fn quantise_q8(x: &[f32], pairs: &mut [u32], scales: &mut [f32]) {
    pairs.fill(0);
    scales.fill(0.0);
    for (g, (seg, sc)) in x.chunks(Q8_SEGMENT).zip(scales.iter_mut()).enumerate() {
        let m = seg.iter().fold(0f32, |a, &t| a.max(t.abs()));
        if seg.iter().any(|t| !t.is_finite()) {
            *sc = f32::NAN;
            continue;
        }
        if m == 0.0 {
            continue;
        }
        let s = m / 127.0;
        *sc = s;
        for (i, &t) in seg.iter().enumerate() {
            let j = g * Q8_SEGMENT + i;
            let q = (t / s).round().clamp(-127.0, 127.0) as i16;
            pairs[j / 2] |= u32::from(q as u16) << (16 * (j as u32 & 1));
        }
    }
}

/// The Q8 kernel for one call of `nb` inputs.
pub(crate) struct Q8 {
    /// Stream `v` adds into output `v`.
    outs: Vec<usize>,
}

impl Q8 {
    /// The kernel for a batch of `nb`.
    pub fn new(nb: usize) -> Self {
        Q8 { outs: (0..nb).collect() }
    }
}

/// A column's quantised inputs.
pub(crate) struct Q8Col {
    /// Int16 pairs, `p / 2` per input.
    pairs: Vec<u32>,
    /// Activation scales, `p / Q8_SEGMENT` per input.
    qscale: Vec<f32>,
}

impl DirectKernel for Q8 {
    type Col = Q8Col;
    /// Plane scales (step times activation scale) per input and segment.
    type Row = Vec<f32>;

    fn prepare(&self, xh: &[f32], b: usize, p: usize, nb: usize) -> Q8Col {
        let segs = p / Q8_SEGMENT;
        let mut pairs = vec![0u32; nb * p / 2];
        let mut qscale = vec![0f32; nb * segs];
        for v in 0..nb {
            quantise_q8(
                &xh[v * p..v * p + b],
                &mut pairs[v * p / 2..(v + 1) * p / 2],
                &mut qscale[v * segs..(v + 1) * segs],
            );
        }
        Q8Col { pairs, qscale }
    }

    fn row_scratch(&self, cx: &Ctx<'_>) -> Vec<f32> {
        vec![0f32; cx.nb * (cx.p / Q8_SEGMENT)]
    }

    #[inline]
    fn dense(&self, cx: &Ctx<'_>, d: &DenseBlk, col: &Column<Q8Col>, scales: &mut Vec<f32>, yh: &mut [f32]) -> u64 {
        let (shape, off) = d.main;
        let q8_segs = cx.p / Q8_SEGMENT;
        let mut job = PlaneI16 {
            words: cx.res.plane(off),
            shape,
            pairs: &col.extra.pairs,
            pstride: cx.p / 2,
            segment_pairs: Q8_SEGMENT / 2,
            scales: &[],
            outs: &self.outs,
            prefetch_ahead: cx.prefetch_ahead(&shape),
        };
        // The plane's segments (its padded width) use the first of the column's `q8_segs`
        // scales per input.
        let segs = job.segments();
        for v in 0..cx.nb {
            for g in 0..segs {
                scales[v * segs + g] = d.step * col.extra.qscale[v * q8_segs + g];
            }
        }
        job.scales = &scales[..cx.nb * segs];
        simd::plane_i16(cx.env.isa, &job, yh, cx.b);
        (cx.b * cx.b) as u64
    }
}
