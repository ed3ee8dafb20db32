//! Per-block-size tables shared by every layer of the process: the 1-D transform matrix `M`
//! (and its transpose) in f32, and the separable form of the RBE basis ([`crate::base`]).

use crate::base::SeparableBasis;
use crate::simd::{self, Isa};
use rbe_format::Transform;
use rbe_format::codec::transform_matrix;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

type Registry<K, V> = OnceLock<Mutex<HashMap<K, Arc<V>>>>;

/// Shared tables for one `(block, transform)`.
#[derive(Debug)]
pub struct Tables {
    /// Block edge.
    pub block: usize,
    /// `M[k][n]`, row-major (rows are basis vectors).
    pub m: Vec<f32>,
    /// `M^T`, row-major.
    pub mt: Vec<f32>,
    /// The RBE basis as 1-D factors plus the radial plane.
    pub base: SeparableBasis,
}

impl Tables {
    /// The tables for `block` and `transform`, built once per process.
    pub fn shared(block: usize, transform: Transform) -> Arc<Tables> {
        static ALL: Registry<(usize, Transform), Tables> = OnceLock::new();
        let map = ALL.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = match map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard
            .entry((block, transform))
            .or_insert_with(|| {
                let m64 = transform_matrix(block, transform);
                let m: Vec<f32> = m64.iter().map(|&v| v as f32).collect();
                let mut mt = vec![0f32; block * block];
                for k in 0..block {
                    for n in 0..block {
                        mt[n * block + k] = m[k * block + n];
                    }
                }
                Arc::new(Tables { block, m, mt, base: SeparableBasis::new(block) })
            })
            .clone()
    }

    /// `out = M x` (forward 1-D transform), `x` and `out` of length `b`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        combine_rows(&self.mt, self.block, x, out);
    }

    /// `out = M^T y` (inverse 1-D transform).
    pub fn inverse(&self, y: &[f32], out: &mut [f32]) {
        combine_rows(&self.m, self.block, y, out);
    }

    /// `out[v] += M xs[v]` for `nb` inputs (`xstride` apart, `b` values each) into outputs
    /// `ostride` apart, through the run-time dispatched block kernel ([`crate::simd::cols_f32`]).
    pub fn forward_batch(&self, isa: Isa, xs: &[f32], xstride: usize, nb: usize, out: &mut [f32], ostride: usize) {
        // `M x = sum_n x[n] * column n of M`, and column n of M is row n of `M^T`.
        simd::cols_f32(isa, &self.mt, self.block, xs, xstride, nb, out, ostride);
    }

    /// `out[v] += M^T ys[v]` for `nb` inputs, like [`Tables::forward_batch`].
    pub fn inverse_batch(&self, isa: Isa, ys: &[f32], ystride: usize, nb: usize, out: &mut [f32], ostride: usize) {
        simd::cols_f32(isa, &self.m, self.block, ys, ystride, nb, out, ostride);
    }
}

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yy, xx) in y.iter_mut().zip(x) {
        *yy += a * xx;
    }
}

/// `out = sum_n x[n] * rows[n]` over the first `b` rows (`b` values each) of `rows`: the 1-D
/// transform by whichever matrix `rows` holds (skipping zero inputs, which sparse vectors have).
#[inline]
fn combine_rows(rows: &[f32], b: usize, x: &[f32], out: &mut [f32]) {
    out[..b].fill(0.0);
    for (n, &xn) in x.iter().enumerate().take(b) {
        if xn != 0.0 {
            axpy(xn, &rows[n * b..(n + 1) * b], &mut out[..b]);
        }
    }
}
