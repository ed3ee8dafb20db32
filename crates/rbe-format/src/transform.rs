//! Orthonormal 2-D residual transforms (format.md 2.2): DCT-II via a reused `rustdct` plan, and the
//! full-depth Haar wavelet. Planned once per block size, applied with caller-owned scratch.

use crate::settings::Transform;
use rustdct::num_traits::Float;
use rustdct::{DctNum, DctPlanner, TransformType2And3};
use std::sync::Arc;

/// A planned 2-D transform of `b x b` blocks in precision `T` (f64 for the reference, f32 for speed).
pub struct TransformPlan<T: DctNum + Float> {
    block: usize,
    kind: Transform,
    dct: Option<Arc<dyn TransformType2And3<T>>>,
    /// `s(k)` of the orthonormal DCT.
    dct_scale: Vec<T>,
    scratch: Vec<T>,
    transposed: Vec<T>,
}

impl<T: DctNum + Float> TransformPlan<T> {
    /// Plans the transform for blocks of edge `block` (a power of two for `dwt`).
    pub fn new(block: usize, kind: Transform) -> Self {
        let (dct, scratch_len) = match kind {
            Transform::Dct => {
                let plan = DctPlanner::new().plan_dct2(block);
                let len = plan.get_scratch_len();
                (Some(plan), len)
            }
            Transform::Dwt => (None, block),
        };
        let b = T::from_usize(block).expect("block size fits a float");
        let dct_scale =
            (0..block).map(|k| if k == 0 { (T::one() / b).sqrt() } else { (T::two() / b).sqrt() }).collect();
        TransformPlan {
            block,
            kind,
            dct,
            dct_scale,
            scratch: vec![T::zero(); scratch_len.max(block)],
            transposed: vec![T::zero(); block * block],
        }
    }

    /// Block edge.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Transform kind.
    pub fn kind(&self) -> Transform {
        self.kind
    }

    /// In-place forward 2-D transform of a row-major `b x b` block.
    pub fn forward(&mut self, data: &mut [T]) {
        self.two_d(data, true);
    }

    /// In-place inverse 2-D transform of a row-major `b x b` coefficient matrix.
    pub fn inverse(&mut self, data: &mut [T]) {
        self.two_d(data, false);
    }

    /// The separable 2-D transform: every row, then (transposed) every column.
    fn two_d(&mut self, data: &mut [T], forward: bool) {
        assert_eq!(data.len(), self.block * self.block, "block buffer must hold b*b values");
        self.rows(data, forward);
        transpose(data, &mut self.transposed, self.block);
        let mut t = std::mem::take(&mut self.transposed);
        self.rows(&mut t, forward);
        transpose(&t, data, self.block);
        self.transposed = t;
    }

    /// Forward or inverse 1-D transform of every row of `data`.
    pub fn rows(&mut self, data: &mut [T], forward: bool) {
        for row in data.chunks_exact_mut(self.block) {
            self.one_d(row, forward);
        }
    }

    /// 1-D orthonormal transform of one vector of length `b`.
    pub fn one_d(&mut self, v: &mut [T], forward: bool) {
        match (&self.dct, forward) {
            (Some(plan), true) => {
                plan.process_dct2_with_scratch(v, &mut self.scratch);
                for (x, s) in v.iter_mut().zip(&self.dct_scale) {
                    *x = *x * *s;
                }
            }
            (Some(plan), false) => {
                for (k, (x, s)) in v.iter_mut().zip(&self.dct_scale).enumerate() {
                    *x = if k == 0 { *x * *s * T::two() } else { *x * *s };
                }
                plan.process_dct3_with_scratch(v, &mut self.scratch);
            }
            (None, true) => haar_forward(v, &mut self.scratch),
            (None, false) => haar_inverse(v, &mut self.scratch),
        }
    }
}

fn transpose<T: Copy>(src: &[T], dst: &mut [T], b: usize) {
    for r in 0..b {
        for c in 0..b {
            dst[c * b + r] = src[r * b + c];
        }
    }
}

fn haar_forward<T: Float>(v: &mut [T], tmp: &mut [T]) {
    let inv_sqrt2 = T::from(std::f64::consts::FRAC_1_SQRT_2).expect("constant fits");
    let mut n = v.len();
    while n > 1 {
        let half = n / 2;
        for i in 0..half {
            tmp[i] = (v[2 * i] + v[2 * i + 1]) * inv_sqrt2;
            tmp[half + i] = (v[2 * i] - v[2 * i + 1]) * inv_sqrt2;
        }
        v[..n].copy_from_slice(&tmp[..n]);
        n = half;
    }
}

fn haar_inverse<T: Float>(v: &mut [T], tmp: &mut [T]) {
    let inv_sqrt2 = T::from(std::f64::consts::FRAC_1_SQRT_2).expect("constant fits");
    let mut n = 2;
    while n <= v.len() {
        let half = n / 2;
        for i in 0..half {
            let (a, d) = (v[i], v[half + i]);
            tmp[2 * i] = (a + d) * inv_sqrt2;
            tmp[2 * i + 1] = (a - d) * inv_sqrt2;
        }
        v[..n].copy_from_slice(&tmp[..n]);
        n *= 2;
    }
}

/// The `b x b` matrix `M` of the 1-D transform (rows = basis vectors), straight from the formula;
/// the test oracle for the planned transforms.
pub fn transform_matrix(block: usize, kind: Transform) -> Vec<f64> {
    let mut m = vec![0.0; block * block];
    for n in 0..block {
        let mut e = vec![0.0; block];
        e[n] = 1.0;
        match kind {
            Transform::Dct => {
                for k in 0..block {
                    let s = if k == 0 { (1.0 / block as f64).sqrt() } else { (2.0 / block as f64).sqrt() };
                    m[k * block + n] =
                        s * (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * block) as f64).cos();
                }
            }
            Transform::Dwt => {
                let mut tmp = vec![0.0; block];
                haar_forward(&mut e, &mut tmp);
                for k in 0..block {
                    m[k * block + n] = e[k];
                }
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rbe_testkit::Rng::new(seed);
        (0..n).map(|_| rng.unit() - 0.5).collect()
    }

    #[test]
    fn planned_transforms_match_the_formula_and_invert() {
        for kind in [Transform::Dct, Transform::Dwt] {
            for b in [8, 16, 32, 64] {
                let x = seeded(b * b, b as u64);
                let m = transform_matrix(b, kind);
                // Formula: C = M X M^T.
                let mut mx = vec![0.0; b * b];
                for i in 0..b {
                    for j in 0..b {
                        mx[i * b + j] = (0..b).map(|n| m[i * b + n] * x[n * b + j]).sum();
                    }
                }
                let mut want = vec![0.0; b * b];
                for i in 0..b {
                    for j in 0..b {
                        want[i * b + j] = (0..b).map(|n| mx[i * b + n] * m[j * b + n]).sum();
                    }
                }
                let mut plan = TransformPlan::<f64>::new(b, kind);
                let mut got = x.clone();
                plan.forward(&mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12, "{kind} b={b}");
                }
                plan.inverse(&mut got);
                for (g, w) in got.iter().zip(&x) {
                    assert!((g - w).abs() < 1e-12, "{kind} b={b} inverse");
                }
            }
        }
    }
}
