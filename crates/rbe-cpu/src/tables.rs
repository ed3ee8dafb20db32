//! Per-block-size tables shared by every layer of the process: the 1-D transform matrix `M`
//! (and its transpose) in f32, and the eight RBE basis planes in f32.

use rbe_format::basis::{BasisTable, N_PARAMS};
use rbe_format::transform::transform_matrix;
use rbe_format::Transform;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Shared tables for one `(block, transform)`.
#[derive(Debug)]
pub struct Tables {
    /// Block edge.
    pub block: usize,
    /// `M[k][n]`, row-major (rows are basis vectors).
    pub m: Vec<f32>,
    /// `M^T`, row-major.
    pub mt: Vec<f32>,
    /// `phi_k[r][c]`, 8 planes of `b * b`, row-major.
    pub basis: Vec<f32>,
}

impl Tables {
    /// The tables for `block` and `transform`, built once per process.
    pub fn shared(block: usize, transform: Transform) -> Arc<Tables> {
        static ALL: OnceLock<Mutex<HashMap<(usize, Transform), Arc<Tables>>>> = OnceLock::new();
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
                let bt = BasisTable::shared(block);
                let basis = (0..N_PARAMS).flat_map(|k| bt.plane(k).iter().map(|&v| v as f32).collect::<Vec<_>>()).collect();
                Arc::new(Tables { block, m, mt, basis })
            })
            .clone()
    }

    /// `out = M x` (forward 1-D transform), `x` and `out` of length `b`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let b = self.block;
        out[..b].fill(0.0);
        for (n, &xn) in x.iter().enumerate().take(b) {
            if xn != 0.0 {
                axpy(xn, &self.mt[n * b..(n + 1) * b], &mut out[..b]);
            }
        }
    }

    /// `out = M^T y` (inverse 1-D transform).
    pub fn inverse(&self, y: &[f32], out: &mut [f32]) {
        let b = self.block;
        out[..b].fill(0.0);
        for (k, &yk) in y.iter().enumerate().take(b) {
            if yk != 0.0 {
                axpy(yk, &self.m[k * b..(k + 1) * b], &mut out[..b]);
            }
        }
    }

    /// Plane `k` of the basis.
    pub fn plane(&self, k: usize) -> &[f32] {
        let n = self.block * self.block;
        &self.basis[k * n..(k + 1) * n]
    }
}

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yy, xx) in y.iter_mut().zip(x) {
        *yy += a * xx;
    }
}
