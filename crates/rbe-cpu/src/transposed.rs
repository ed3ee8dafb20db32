//! The transposed product `x_grad = W^T y_grad` (`RbeLinear::backward_input`), always at full
//! precision whatever the mode: per column block, `x_bc = M^T (sum_br R^T (M y_br)) + sum_br B^T
//! y_br`, with the exact coefficients `R` of each block from the layer's resident form
//! ([`ExactBlocks`]) and the base through its separable factors, transposed.

use crate::base::{BaseAccumulator, InputProjection, Orientation};
use crate::error::CpuError;
use crate::linear::Env;
use crate::resident::Resident;
use crate::tables::axpy;
use rayon::prelude::*;
use rbe_format::codec::N_PARAMS;

/// A resident form that can give each block's exact coefficients and parameters.
pub(crate) trait ExactBlocks: Sync {
    /// Per-thread scratch.
    type Scratch;
    /// Fresh scratch.
    fn scratch(&self) -> Self::Scratch;
    /// Whether blocks carry a base.
    fn has_params(&self) -> bool;
    /// Writes block `idx`'s residual coefficients `R` (`b * b`, row-major, f64) to `out` and
    /// returns its parameters.
    fn coefficients(
        &self,
        idx: usize,
        out: &mut [f64],
        scratch: &mut Self::Scratch,
    ) -> Result<[f32; N_PARAMS], CpuError>;
}

impl ExactBlocks for Resident {
    type Scratch = (Vec<i32>, Vec<i32>);
    fn scratch(&self) -> Self::Scratch {
        let bb = self.block() * self.block();
        (vec![0; bb], vec![0; bb])
    }
    fn has_params(&self) -> bool {
        self.params.is_some()
    }
    fn coefficients(
        &self,
        idx: usize,
        out: &mut [f64],
        (q, lo): &mut Self::Scratch,
    ) -> Result<[f32; N_PARAMS], CpuError> {
        self.exact_coefficients(idx, out, q, lo);
        Ok(self.params.as_ref().map_or([0.0; N_PARAMS], |p| p[idx]))
    }
}

/// `W^T y` for a row-major batch (`batch x rows` in, `batch x cols` out).
pub(crate) fn backward<S: ExactBlocks>(
    env: &Env<'_>,
    src: &S,
    y_grad: &[f32],
    nb: usize,
) -> Result<Vec<f32>, CpuError> {
    let b = env.cfg.block;
    let (rows, cols) = (env.grid.rows(), env.grid.cols());
    let (br_n, bc_n) = env.grid.dims();
    let has_params = src.has_params();
    // Transformed output-gradient blocks and, with a base, Phi_k^T y_br.
    let mut yh = vec![0f32; br_n * nb * b];
    let mut yb = vec![0f32; br_n * nb * b];
    for br in 0..br_n {
        let h = env.grid.row_height(br);
        for v in 0..nb {
            let dst = &mut yb[(br * nb + v) * b..][..h];
            dst.copy_from_slice(&y_grad[v * rows + br * b..][..h]);
            let (yin, dsth) = (&yb[(br * nb + v) * b..][..b], &mut yh[(br * nb + v) * b..][..b]);
            env.tables.forward(yin, dsth);
        }
    }
    // With a base: each output-gradient block projected onto the base's factors, once.
    let projections: Vec<InputProjection> = if has_params {
        (0..br_n * nb).map(|i| env.tables.base.project(env.isa, &yb[i * b..(i + 1) * b])).collect()
    } else {
        Vec::new()
    };
    let parts: Vec<Vec<f32>> = (0..bc_n)
        .into_par_iter()
        .map(|bc| -> Result<Vec<f32>, CpuError> {
            let mut r64 = vec![0f64; b * b];
            let mut r = vec![0f32; b * b];
            let mut scratch = src.scratch();
            let mut zh = vec![0f32; nb * b];
            let mut base_acc: Vec<BaseAccumulator> = (0..nb).map(|_| env.tables.base.accumulator()).collect();
            for br in 0..br_n {
                let theta = src.coefficients(env.grid.index(br, bc), &mut r64, &mut scratch)?;
                for (d, s) in r.iter_mut().zip(&r64) {
                    *d = *s as f32;
                }
                for v in 0..nb {
                    let yv = &yh[(br * nb + v) * b..][..b];
                    let z = &mut zh[v * b..(v + 1) * b];
                    for (i, &yi) in yv.iter().enumerate() {
                        if yi != 0.0 {
                            axpy(yi, &r[i * b..(i + 1) * b], z);
                        }
                    }
                }
                if has_params {
                    for (v, acc) in base_acc.iter_mut().enumerate() {
                        let proj = &projections[br * nb + v];
                        env.tables.base.accumulate(env.isa, Orientation::Transposed, &theta, proj, acc);
                    }
                }
            }
            let mut out = vec![0f32; nb * b];
            for (v, acc) in base_acc.iter().enumerate() {
                env.tables.inverse(&zh[v * b..(v + 1) * b], &mut out[v * b..(v + 1) * b]);
                if has_params {
                    env.tables.base.finish(env.isa, acc, &mut out[v * b..(v + 1) * b]);
                }
            }
            Ok(out)
        })
        .collect::<Result<_, _>>()?;
    let mut x = vec![0f32; nb * cols];
    for (bc, part) in parts.iter().enumerate() {
        let w = env.grid.col_width(bc);
        for v in 0..nb {
            x[v * cols + bc * b..][..w].copy_from_slice(&part[v * b..v * b + w]);
        }
    }
    Ok(x)
}
