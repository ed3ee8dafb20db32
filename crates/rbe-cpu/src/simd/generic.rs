//! Portable scalar kernels: the oracle for every SIMD path, and the fallback on other CPUs.

use super::{PlaneF32, PlaneI16};
use crate::pack::extract;

/// Scalar [`PlaneF32`].
pub fn plane_f32(job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    let b = sh.block;
    let mut acc = vec![0f32; b];
    for v in 0..job.nb {
        acc.fill(0.0);
        let x = &job.xs[v * job.xstride..];
        for cg in 0..sh.groups {
            for (row, a) in acc.iter_mut().enumerate() {
                let lane = job.words[cg * b + row];
                for s in 0..sh.slots {
                    let q = extract(lane, sh.offset(s), sh.width);
                    *a += q as f32 * x[cg * sh.slots + s];
                }
            }
        }
        for (o, a) in out[v * ostride..v * ostride + b].iter_mut().zip(&acc) {
            *o += job.scale * a;
        }
    }
}

/// Scalar [`PlaneI16`] (exact integer sums per segment).
pub fn plane_i16(job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    let b = sh.block;
    let segs = job.segments();
    for (t, &o) in job.outs.iter().enumerate() {
        let p = &job.pairs[t * job.pstride..];
        for row in 0..b {
            let mut acc = vec![0i64; segs];
            for cg in 0..sh.groups {
                let lane = job.words[cg * b + row];
                for s in 0..sh.slots {
                    let j = cg * sh.slots + s;
                    let pair = p[j / 2];
                    let qx = if j.is_multiple_of(2) { pair as u16 as i16 } else { (pair >> 16) as u16 as i16 };
                    acc[j / 2 / job.segment_pairs] += i64::from(extract(lane, sh.offset(s), sh.width)) * i64::from(qx);
                }
            }
            let mut y = 0f32;
            for (g, a) in acc.iter().enumerate() {
                y += job.scales[t * segs + g] * *a as f32;
            }
            out[o * ostride + row] += y;
        }
    }
}

/// Scalar column-major block product.
pub fn cols_f32(wt: &[f32], b: usize, xs: &[f32], xstride: usize, nb: usize, out: &mut [f32], ostride: usize) {
    for v in 0..nb {
        let x = &xs[v * xstride..v * xstride + b];
        let o = &mut out[v * ostride..v * ostride + b];
        for (c, &xc) in x.iter().enumerate() {
            for (oo, w) in o.iter_mut().zip(&wt[c * b..(c + 1) * b]) {
                *oo += w * xc;
            }
        }
    }
}

/// Scalar dot product with 8 partial sums.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = a.len() / 8 * 8;
    for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in a[n8..].iter().zip(&b[n8..]) {
        s += x * y;
    }
    s
}

/// Scalar `y += a * x` (f64, unfused).
#[inline(always)]
pub fn axpy_f64(a: f64, x: &[f64], y: &mut [f64]) {
    for (yy, xx) in y.iter_mut().zip(x) {
        *yy += a * xx;
    }
}
