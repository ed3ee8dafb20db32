//! Dense f32 reference products (the `dense_f32` baseline): a row-parallel GEMV with run-time
//! dispatched SIMD dot products, and a plain f64 GEMV used as the accuracy reference.

use crate::simd::{self, Isa};
use rayon::prelude::*;

/// `y = W x` for a row-major `rows x cols` matrix, rows split over the current rayon pool.
pub fn gemv(isa: Isa, w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert!(w.len() >= rows * cols && x.len() >= cols && y.len() >= rows);
    y[..rows].par_chunks_mut(64).enumerate().for_each(|(ci, chunk)| {
        for (k, out) in chunk.iter_mut().enumerate() {
            let r = ci * 64 + k;
            *out = simd::dot_f32(isa, &w[r * cols..(r + 1) * cols], &x[..cols]);
        }
    });
}

/// `y[v] = W x[v]` in f64 for a row-major batch: the accuracy reference.
pub fn gemm_f64(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize) -> Vec<f64> {
    let mut y = vec![0f64; batch * rows];
    y.par_chunks_mut(rows).enumerate().for_each(|(v, yv)| {
        let xv = &x[v * cols..(v + 1) * cols];
        for (r, o) in yv.iter_mut().enumerate() {
            *o = w[r * cols..(r + 1) * cols].iter().zip(xv).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        }
    });
    y
}

/// `max |y - y_ref| / max |y_ref|`.
pub fn max_rel_err(y: &[f32], y_ref: &[f64]) -> f64 {
    let scale = y_ref.iter().fold(0f64, |a, &v| a.max(v.abs()));
    let err = y.iter().zip(y_ref).fold(0f64, |a, (&g, &r)| a.max((f64::from(g) - r).abs()));
    if scale > 0.0 { err / scale } else { err }
}
