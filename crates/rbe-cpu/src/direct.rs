//! The exact DCT-domain product shared by the direct modes, never materialising a block.
//!
//! Every block is `W_blk = B + M^T R M`, so a block row of outputs is
//! `y_br = M^T (sum_bc R_{br,bc} (M x_bc)) + sum_bc B_{br,bc} x_bc`. Each input block is
//! transformed once, dense residuals are multiplied from their packed integers ([`crate::pack`])
//! with SIMD, sparse ones from their coefficient lists, and each output block is inverse-
//! transformed once. The base goes through its separable form ([`crate::base`]): four factor
//! sums and one radial product per column block, shared by every block of that column, then a
//! few scalar terms and one f64 axpy per block. Work is split over block rows with rayon; each
//! block row is summed in one fixed order, so results are bit-identical for any thread count.
//!
//! The driver ([`forward`]) is generic over a [`DirectKernel`]: what a mode computes per column
//! from the transformed inputs and how it multiplies one dense or sparse block. This module holds
//! the exact kernel (`DctDirect`); `q8`, `progressive` and `sparse_mask` hold the others.

use crate::base::InputProjection;
use crate::linear::{Env, par_rows};
use crate::pack::PackShape;
use crate::resident::{Blk, DenseBlk, Resident, SparseBlk};
use crate::simd::{self, PlaneF32};
use rayon::prelude::*;
use rbe_format::codec::N_PARAMS;
use std::time::Instant;

/// How many blocks ahead of the one being multiplied the direct modes prefetch (a 5-bit 64x64
/// block is 2.8 KB, so about 22 KB ahead). Dense planes are prefetched by the kernels, one line
/// per line they read, spread through the product; a burst of prefetches per block stalls on the
/// core's fill buffers (measured on the 4096x4096 bench, 2 threads: cold 702 -> 577 us, hot
/// 521 -> 428 us; 4, 8, 16 and 32 blocks ahead within noise of each other).
const PREFETCH_BLOCKS: usize = 8;

/// Sizes used to pad transformed inputs: any packed plane reads at most `b + 32` values.
pub(crate) fn padded(b: usize) -> usize {
    (b + 32).next_multiple_of(16)
}

/// One column block's inputs, shared by every block row.
pub(crate) struct Column<C> {
    /// `nb` transformed inputs `M x_bc`, `padded(b)` apart (zero beyond `b`).
    pub xh: Vec<f32>,
    /// With a base: each input's projection onto the base's factors.
    pub proj: Vec<InputProjection>,
    /// What the mode adds ([`DirectKernel::prepare`]).
    pub extra: C,
}

/// What one product call shares with a mode's block kernels.
pub(crate) struct Ctx<'a> {
    /// The layer's environment.
    pub env: &'a Env<'a>,
    /// Its resident weights.
    pub res: &'a Resident,
    /// Batch size.
    pub nb: usize,
    /// Block edge.
    pub b: usize,
    /// Stride of the transformed inputs ([`padded`]).
    pub p: usize,
}

impl Ctx<'_> {
    /// Bytes ahead the plane kernels prefetch for a plane of `shape`: the same plane
    /// [`PREFETCH_BLOCKS`] blocks on.
    #[inline]
    pub fn prefetch_ahead(&self, shape: &PackShape) -> usize {
        PREFETCH_BLOCKS * shape.words() * 4
    }

    /// `yh += scale * plane * xh` for the plane at word offset `off`.
    #[inline]
    pub fn plane_f32<C>(&self, (shape, off): (PackShape, u32), scale: f32, col: &Column<C>, yh: &mut [f32]) {
        let job = PlaneF32 {
            words: self.res.plane(off),
            shape,
            xs: &col.xh,
            xstride: self.p,
            nb: self.nb,
            scale,
            prefetch_ahead: self.prefetch_ahead(&shape),
        };
        simd::plane_f32(self.env.isa, &job, yh, self.b);
    }

    /// `yh += R x` for a sparse block from its entry list (f32 values, [`rbe_format::codec`]).
    #[inline]
    pub fn sparse_list<C>(&self, s: &SparseBlk, col: &Column<C>, yh: &mut [f32]) -> u64 {
        let (b, p) = (self.b, self.p);
        let reader = &self.res.entries;
        for e in self.res.entries_of(s).chunks_exact(reader.entry_bytes()) {
            let (i, j, val) = reader.entry(e, s.scale);
            for v in 0..self.nb {
                yh[v * b + i] += val * col.xh[v * p + j];
            }
        }
        u64::from(s.k)
    }
}

/// A direct mode's part of the product.
pub(crate) trait DirectKernel: Sync {
    /// Per-column extras computed from the transformed inputs.
    type Col: Send + Sync;
    /// Per-block-row scratch.
    type Row;
    /// The column extras for `nb` transformed inputs `xh` (`p` apart, `b` valid values each).
    fn prepare(&self, xh: &[f32], b: usize, p: usize, nb: usize) -> Self::Col;
    /// The scratch of one block row.
    fn row_scratch(&self, cx: &Ctx<'_>) -> Self::Row;
    /// `yh += R x` for a dense block, outliers aside; returns the coefficients read.
    fn dense(&self, cx: &Ctx<'_>, d: &DenseBlk, col: &Column<Self::Col>, row: &mut Self::Row, yh: &mut [f32]) -> u64;
    /// `yh += R x` for sparse block `idx`; returns the coefficients read.
    fn sparse(&self, cx: &Ctx<'_>, _idx: usize, s: &SparseBlk, col: &Column<Self::Col>, yh: &mut [f32]) -> u64 {
        cx.sparse_list(s, col, yh)
    }
}

/// The associated types and set-up of a [`DirectKernel`] that needs neither per-column extras
/// nor row scratch.
macro_rules! no_direct_scratch {
    () => {
        type Col = ();
        type Row = ();
        fn prepare(&self, _: &[f32], _: usize, _: usize, _: usize) {}
        fn row_scratch(&self, _: &$crate::direct::Ctx<'_>) {}
    };
}
pub(crate) use no_direct_scratch;

/// The exact kernel (`DctDirect`): dense planes in f32.
pub(crate) struct Exact;

impl DirectKernel for Exact {
    no_direct_scratch!();
    #[inline]
    fn dense(&self, cx: &Ctx<'_>, d: &DenseBlk, col: &Column<()>, _: &mut (), yh: &mut [f32]) -> u64 {
        cx.plane_f32(d.main, d.step, col, yh);
        (cx.b * cx.b) as u64
    }
}

/// `y = W x` (residual and base) for `nb` inputs, one `nb x b` buffer per block row.
pub(crate) fn forward<K: DirectKernel>(
    env: &Env<'_>,
    res: &Resident,
    kernel: &K,
    x: &[f32],
    nb: usize,
) -> Vec<Vec<f32>> {
    let b = env.cfg.block;
    let p = padded(b);
    let (br_n, bc_n) = env.grid.dims();
    let cx = Ctx { env, res, nb, b, p };
    let t0 = Instant::now();
    let has_params = res.params.is_some();
    let prep = |bc: usize| {
        let mut xbs = vec![0f32; nb * b];
        let mut xh = vec![0f32; nb * p];
        for v in 0..nb {
            env.input_block(x, v, bc, &mut xbs[v * b..(v + 1) * b]);
        }
        env.tables.forward_batch(env.isa, &xbs, b, nb, &mut xh, p);
        let extra = kernel.prepare(&xh, b, p, nb);
        let proj = if has_params {
            (0..nb).map(|v| env.tables.base.project(env.isa, &xbs[v * b..(v + 1) * b])).collect()
        } else {
            Vec::new()
        };
        Column { xh, proj, extra }
    };
    // Input preparation is small next to the block products: below about half a million
    // multiply-adds it runs on the calling thread, saving a fork-join (and a wake-up) per call.
    let prep_work = nb * bc_n * b * b * if has_params { 2 } else { 1 };
    let cols: Vec<Column<K::Col>> = if prep_work < (1 << 19) {
        (0..bc_n).map(prep).collect()
    } else {
        (0..bc_n).into_par_iter().map(prep).collect()
    };
    let t_in = t0.elapsed().as_nanos() as u64;
    let out: Vec<Vec<f32>> = par_rows(br_n, nb * br_n * bc_n * b * b, |br| {
        let t1 = Instant::now();
        let mut yh = vec![0f32; nb * b];
        let mut row = kernel.row_scratch(&cx);
        let mut unpacked = 0u64;
        for (bc, col) in cols.iter().enumerate() {
            let idx = env.grid.index(br, bc);
            if let Some(Blk::Sparse(ahead)) = res.blocks.get(idx + PREFETCH_BLOCKS) {
                res.prefetch_sparse(ahead);
            }
            match &res.blocks[idx] {
                Blk::Dense(d) => {
                    unpacked += kernel.dense(&cx, d, col, &mut row, &mut yh);
                    for &(pos, val) in res.outliers_of(d) {
                        let (i, j) = (usize::from(pos) / b, usize::from(pos) % b);
                        let wv = d.step * f32::from(val);
                        for v in 0..nb {
                            yh[v * b + i] += wv * col.xh[v * p + j];
                        }
                    }
                }
                Blk::Sparse(s) => unpacked += kernel.sparse(&cx, idx, s, col, &mut yh),
            }
        }
        let t2 = Instant::now();
        let mut y = vec![0f32; nb * b];
        env.tables.inverse_batch(env.isa, &yh, b, nb, &mut y, b);
        if let Some(params) = &res.params {
            for (v, yv) in y.chunks_exact_mut(b).enumerate() {
                let mut acc = env.tables.base.accumulator();
                for (bc, col) in cols.iter().enumerate() {
                    let theta = &params[env.grid.index(br, bc)];
                    env.tables.base.accumulate(
                        env.isa,
                        crate::base::Orientation::Forward,
                        theta,
                        &col.proj[v],
                        &mut acc,
                    );
                }
                env.tables.base.finish(env.isa, &acc, yv);
            }
        }
        env.stats.add_multiply_ns(t2.duration_since(t1).as_nanos() as u64);
        env.stats.add_transform_ns(t2.elapsed().as_nanos() as u64);
        env.stats.add_unpacked(unpacked);
        y
    });
    env.stats.add_transform_ns(t_in);
    let bb = (b * b) as u64;
    let n_blocks = (br_n * bc_n) as u64;
    env.stats.add_multiply_flops(2 * bb * n_blocks * nb as u64);
    let base =
        if has_params { 2 * N_PARAMS as u64 * bb * bc_n as u64 + 2 * N_PARAMS as u64 * b as u64 * n_blocks } else { 0 };
    env.stats.add_decode_flops(nb as u64 * (2 * bb * (br_n + bc_n) as u64 + base));
    out
}
