//! Per-block-size tables shared by every layer of the process: the 1-D transform matrix `M`
//! (and its transpose) in f32, and the eight RBE basis planes in f32.

use crate::simd::{self, Isa};
use rbe_format::Transform;
use rbe_format::basis::{BasisTable, N_PARAMS};
use rbe_format::transform::transform_matrix;
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
    /// `phi_k[r][c]`, 8 planes of `b * b`, row-major.
    pub basis: Vec<f32>,
    /// The basis orthonormalised (Gram-Schmidt in f64, planes as vectors of `b * b`): `q_l`.
    pub ortho: Vec<f32>,
    /// `phi_k = sum_l gs[k][l] q_l`.
    pub gs: [[f64; N_PARAMS]; N_PARAMS],
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
                let bt = BasisTable::shared(block);
                let basis =
                    (0..N_PARAMS).flat_map(|k| bt.plane(k).iter().map(|&v| v as f32).collect::<Vec<_>>()).collect();
                let (ortho, gs) = gram_schmidt(&bt, block, block);
                Arc::new(Tables { block, m, mt, basis, ortho, gs })
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

    /// Orthonormal plane `l`.
    pub fn ortho_plane(&self, l: usize) -> &[f32] {
        let n = self.block * self.block;
        &self.ortho[l * n..(l + 1) * n]
    }

    /// Coefficients over the orthonormal planes of `sum_k theta_k phi_k` (f64, rounded once).
    pub fn ortho_params(&self, theta: &[f32; N_PARAMS]) -> [f32; N_PARAMS] {
        let mut out = [0f32; N_PARAMS];
        for (l, o) in out.iter_mut().enumerate() {
            *o = theta.iter().enumerate().map(|(k, &t)| f64::from(t) * self.gs[k][l]).sum::<f64>() as f32;
        }
        out
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

/// Gram-Schmidt (modified, f64) over the eight basis planes. The fitted parameters of nearly
/// collinear planes (`1`, `d`, `d^2`) are large and cancel; over orthonormal planes every term is
/// bounded by the base's own norm, so f32 products stay accurate.
/// Only the valid `h x w` corner of the block counts (the rest is zeroed): an edge block's base
/// may be large in its padding, which no output reads.
fn gram_schmidt(bt: &BasisTable, h: usize, w: usize) -> (Vec<f32>, [[f64; N_PARAMS]; N_PARAMS]) {
    let b = bt.block();
    let n = b * b;
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(N_PARAMS);
    let mut gs = [[0f64; N_PARAMS]; N_PARAMS];
    for (k, row) in gs.iter_mut().enumerate() {
        let mut v: Vec<f64> =
            bt.plane(k).iter().enumerate().map(|(i, &p)| if i / b < h && i % b < w { p } else { 0.0 }).collect();
        for (l, ql) in q.iter().enumerate() {
            let d: f64 = v.iter().zip(ql).map(|(a, b)| a * b).sum();
            row[l] += d;
            v.iter_mut().zip(ql).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-9 * (n as f64).sqrt() {
            row[k] = norm;
            v.iter_mut().for_each(|a| *a /= norm);
        } else {
            v.iter_mut().for_each(|a| *a = 0.0);
        }
        q.push(v);
    }
    (q.iter().flat_map(|p| p.iter().map(|&v| v as f32)).collect(), gs)
}

/// Orthonormalised basis over the valid `h x w` corner of a block (edge blocks), shared per process.
#[derive(Debug)]
pub struct EdgeBasis {
    /// Orthonormal planes (`8 * b * b`, zero outside the valid corner).
    pub ortho: Vec<f32>,
    /// `phi_k = sum_l gs[k][l] q_l` on the valid corner.
    pub gs: [[f64; N_PARAMS]; N_PARAMS],
}

impl EdgeBasis {
    /// The basis for block `b` restricted to `h x w`.
    pub fn shared(b: usize, h: usize, w: usize) -> Arc<EdgeBasis> {
        static ALL: Registry<(usize, usize, usize), EdgeBasis> = OnceLock::new();
        let map = ALL.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = match map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard
            .entry((b, h, w))
            .or_insert_with(|| {
                let (ortho, gs) = gram_schmidt(&BasisTable::shared(b), h, w);
                Arc::new(EdgeBasis { ortho, gs })
            })
            .clone()
    }
    /// Orthonormal plane `l`.
    pub fn plane(&self, l: usize, b: usize) -> &[f32] {
        &self.ortho[l * b * b..(l + 1) * b * b]
    }
    /// Coefficients of `sum_k theta_k phi_k` over the orthonormal planes.
    pub fn params(&self, theta: &[f32; N_PARAMS]) -> [f32; N_PARAMS] {
        let mut out = [0f32; N_PARAMS];
        for (l, o) in out.iter_mut().enumerate() {
            *o = theta.iter().enumerate().map(|(k, &t)| f64::from(t) * self.gs[k][l]).sum::<f64>() as f32;
        }
        out
    }
}
