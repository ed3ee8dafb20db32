//! The RBE base `B = sum_k theta_k phi_k` applied to vectors without forming a plane.
//!
//! Seven of the eight basis functions (format.md 2.1) are products of a function of the output
//! coordinate and one of the input coordinate, and `d^2 = x^2 + y^2` is a sum of two such
//! products; only `d = sqrt(x^2 + y^2)` is not separable. With the four 1-D factors
//! `u = [1, t^2, cos(pi t), cos(2 pi t)]` (`t` the normalised coordinate, the same formula for rows
//! and columns) a block's base times an input block is
//!
//! `B x = sum_(o, i) (sum_k theta_k [k has (o, i)]) (u_i . x) u_o + theta_2 (D x)`,
//!
//! so a column block needs four dot products and one `D x` (shared by every block of the column),
//! a block needs a few scalar multiply-adds and one length-`b` axpy, and a block row finishes with
//! four length-`b` axpys. Everything is summed in f64: the fitted parameters of the nearly
//! collinear `1`, `d`, `d^2` are large and cancel, and f64 keeps that cancellation exact to far
//! below f32 rounding. The transposed product `B^T y` swaps the roles of the factors (`D` is
//! symmetric because rows and columns share one coordinate formula).

use crate::simd::{self, Isa};
use rbe_format::codec::N_PARAMS;
use std::f64::consts::PI;

/// Number of separable 1-D factors.
pub const FACTORS: usize = 4;

/// `(output factor, input factor)` pairs of every basis function in the forward orientation
/// (outputs along rows `y`, inputs along columns `x`); `phi_2 = d` has none.
const TERMS: [&[(usize, usize)]; N_PARAMS] = [
    &[(0, 0)],         // 1
    &[],               // d (radial, not separable)
    &[(0, 1), (1, 0)], // d^2 = x^2 + y^2
    &[(0, 2)],         // cos(pi x)
    &[(2, 0)],         // cos(pi y)
    &[(0, 3)],         // cos(2 pi x)
    &[(3, 0)],         // cos(2 pi y)
    &[(2, 2)],         // cos(pi x) cos(pi y)
];
/// Index of the radial function `d`.
const RADIAL: usize = 1;

/// Which side of the block the input lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// `y = B x`: inputs along columns, outputs along rows.
    Forward,
    /// `x = B^T y`: inputs along rows, outputs along columns.
    Transposed,
}

/// The separable form of the basis for one block size.
#[derive(Debug, Clone)]
pub struct SeparableBasis {
    block: usize,
    /// `u_f(t_n)`, `FACTORS x b`.
    factors: Vec<f64>,
    /// `d(r, c) = sqrt(t_c^2 + t_r^2)`, `b x b`, symmetric.
    radial: Vec<f64>,
}

/// One input block's projections: the four factor sums and `D x`.
#[derive(Debug, Clone)]
pub struct InputProjection {
    /// `u_f . x`.
    pub sums: [f64; FACTORS],
    /// `D x` (length `b`).
    pub radial: Vec<f64>,
}

/// A block row's (or, transposed, a block column's) base output, summed over its blocks.
#[derive(Debug, Clone)]
pub struct BaseAccumulator {
    coef: [f64; FACTORS],
    radial: Vec<f64>,
}

impl SeparableBasis {
    /// The factors for block edge `block` (>= 2), on the coordinates of [`rbe_format::codec::basis_at`].
    pub fn new(block: usize) -> Self {
        let span = (block - 1) as f64;
        let t: Vec<f64> = (0..block).map(|n| (2.0 * n as f64 - span) / span).collect();
        let mut factors = vec![0f64; FACTORS * block];
        for (n, &tn) in t.iter().enumerate() {
            let u = [1.0, tn * tn, (PI * tn).cos(), (2.0 * PI * tn).cos()];
            for (f, uf) in u.iter().enumerate() {
                factors[f * block + n] = *uf;
            }
        }
        let radial = t.iter().flat_map(|&tr| t.iter().map(move |&tc| (tc * tc + tr * tr).sqrt())).collect();
        SeparableBasis { block, factors, radial }
    }

    /// Block edge.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Factor `f` over the block edge.
    pub fn factor(&self, f: usize) -> &[f64] {
        &self.factors[f * self.block..(f + 1) * self.block]
    }

    /// `phi_k(r, c)` rebuilt from the factors (for tests against the reference table).
    pub fn value(&self, k: usize, r: usize, c: usize) -> f64 {
        if k == RADIAL {
            return self.radial[r * self.block + c];
        }
        TERMS[k].iter().map(|&(o, i)| self.factor(o)[r] * self.factor(i)[c]).sum()
    }

    /// Projects one input block (`b` values, zero beyond the valid extent).
    pub fn project(&self, isa: Isa, x: &[f32]) -> InputProjection {
        let b = self.block;
        let mut sums = [0f64; FACTORS];
        for (f, s) in sums.iter_mut().enumerate() {
            *s = self.factor(f).iter().zip(&x[..b]).map(|(u, &xv)| u * f64::from(xv)).sum();
        }
        // D is symmetric: D x = sum_c x_c * (row c of D), a fixed-order axpy chain.
        let mut radial = vec![0f64; b];
        for (c, &xc) in x[..b].iter().enumerate() {
            if xc != 0.0 {
                simd::axpy_f64(isa, f64::from(xc), &self.radial[c * b..(c + 1) * b], &mut radial);
            }
        }
        InputProjection { sums, radial }
    }

    /// An empty accumulator.
    pub fn accumulator(&self) -> BaseAccumulator {
        BaseAccumulator { coef: [0.0; FACTORS], radial: vec![0.0; self.block] }
    }

    /// Adds one block's base (parameters `theta`) times the projected input to `acc`.
    #[inline]
    pub fn accumulate(
        &self,
        isa: Isa,
        orientation: Orientation,
        theta: &[f32; N_PARAMS],
        input: &InputProjection,
        acc: &mut BaseAccumulator,
    ) {
        for (k, &t) in theta.iter().enumerate() {
            if t == 0.0 {
                continue;
            }
            let t = f64::from(t);
            if k == RADIAL {
                simd::axpy_f64(isa, t, &input.radial, &mut acc.radial);
                continue;
            }
            for &(o, i) in TERMS[k] {
                let (out_f, in_f) = match orientation {
                    Orientation::Forward => (o, i),
                    Orientation::Transposed => (i, o),
                };
                acc.coef[out_f] += t * input.sums[in_f];
            }
        }
    }

    /// `out[n] = f32(out[n] + base[n])` for the first `out.len()` positions of the accumulated base.
    pub fn finish(&self, isa: Isa, acc: &BaseAccumulator, out: &mut [f32]) {
        let mut total = acc.radial.clone();
        for (f, &c) in acc.coef.iter().enumerate() {
            if c != 0.0 {
                simd::axpy_f64(isa, c, self.factor(f), &mut total);
            }
        }
        for (o, t) in out.iter_mut().zip(&total) {
            *o = (f64::from(*o) + t) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbe_format::codec::BasisTable;

    #[test]
    fn factors_rebuild_every_reference_plane() {
        for b in [8usize, 16, 32, 64] {
            let sep = SeparableBasis::new(b);
            let table = BasisTable::new(b);
            for k in 0..N_PARAMS {
                for r in 0..b {
                    for c in 0..b {
                        let want = table.plane(k)[r * b + c];
                        let got = sep.value(k, r, c);
                        assert!((want - got).abs() < 1e-12, "b={b} k={k} r={r} c={c}: {want} vs {got}");
                    }
                }
            }
        }
    }

    /// `B x` and `B^T y` through the factors against the dense planes in f64.
    #[test]
    fn products_match_dense_planes_in_both_orientations() {
        let b = 16;
        let sep = SeparableBasis::new(b);
        let table = BasisTable::new(b);
        let theta = [3.5f32, -120.25, 60.0, 0.5, -0.75, 0.125, 2.0, -1.5];
        let x: Vec<f32> = (0..b).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let mut dense = vec![0f64; b * b];
        table.add_base(&theta, &mut dense);
        for orientation in [Orientation::Forward, Orientation::Transposed] {
            for isa in Isa::available() {
                let mut acc = sep.accumulator();
                sep.accumulate(isa, orientation, &theta, &sep.project(isa, &x), &mut acc);
                let mut got = vec![0f32; b];
                sep.finish(isa, &acc, &mut got);
                for (n, g) in got.iter().enumerate() {
                    let want: f64 = (0..b)
                        .map(|m| {
                            let (r, c) = if orientation == Orientation::Forward { (n, m) } else { (m, n) };
                            dense[r * b + c] * f64::from(x[m])
                        })
                        .sum();
                    assert!((f64::from(*g) - want).abs() <= 1e-6 * want.abs().max(1.0), "{orientation:?} {n}");
                }
            }
        }
    }
}
