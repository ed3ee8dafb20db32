//! Least-squares fit of the 8 RBE parameters. The pseudo-inverse of the basis matrix over a block's
//! valid region is computed once per block extent (QR by modified Gram-Schmidt, rank-revealing), so
//! fitting a block is one 8 x n matrix-vector product, never a per-block solve.

use rbe_format::codec::{BasisTable, N_PARAMS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Pseudo-inverse `(A^T A)^-1 A^T` of the `n x 8` basis matrix over an `h x w` valid region,
/// stored as 8 rows of `n = h * w` values; rows of basis functions that are linearly dependent on
/// the others over that region are zero (their parameter is fixed at 0).
#[derive(Debug)]
pub struct PseudoInverse {
    /// Valid height.
    pub h: usize,
    /// Valid width.
    pub w: usize,
    rows: Vec<f64>,
}

impl PseudoInverse {
    fn new(basis: &BasisTable, h: usize, w: usize) -> Self {
        let b = basis.block();
        let n = h * w;
        // Columns of A (basis functions over the valid region).
        let cols: Vec<Vec<f64>> = (0..N_PARAMS)
            .map(|k| (0..h).flat_map(|r| (0..w).map(move |c| (r, c))).map(|(r, c)| basis.plane(k)[r * b + c]).collect())
            .collect();
        // Modified Gram-Schmidt: A = Q R, skipping columns that are (numerically) dependent.
        let mut q: Vec<Vec<f64>> = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        let mut r = vec![[0.0f64; N_PARAMS]; N_PARAMS];
        for (k, col) in cols.iter().enumerate() {
            let norm0 = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            let mut v = col.clone();
            for (qi, qv) in q.iter().enumerate() {
                let d: f64 = qv.iter().zip(&v).map(|(a, b)| a * b).sum();
                r[qi][k] = d;
                v.iter_mut().zip(qv).for_each(|(x, y)| *x -= d * y);
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm0 == 0.0 || norm < 1e-9 * norm0.max(1.0) {
                continue;
            }
            r[q.len()][k] = norm;
            v.iter_mut().for_each(|x| *x /= norm);
            q.push(v);
            kept.push(k);
        }
        // pinv = R^-1 Q^T restricted to the kept columns: solve R_kk x = Q^T e by back substitution,
        // done for all n right-hand sides at once.
        let m = kept.len();
        let mut rows = vec![0.0; N_PARAMS * n];
        for i in (0..m).rev() {
            let ki = kept[i];
            for p in 0..n {
                let mut s = q[i][p];
                for j in i + 1..m {
                    s -= r[i][kept[j]] * rows[kept[j] * n + p];
                }
                rows[ki * n + p] = s / r[i][ki];
            }
        }
        PseudoInverse { h, w, rows }
    }

    /// Least-squares parameters of the valid-region values `x` (`h * w`, row-major).
    pub fn fit(&self, x: &[f32]) -> [f64; N_PARAMS] {
        let n = self.h * self.w;
        let mut theta = [0.0; N_PARAMS];
        for (k, t) in theta.iter_mut().enumerate() {
            let row = &self.rows[k * n..(k + 1) * n];
            // Four partial sums: faster and still deterministic (fixed order).
            let mut acc = [0.0f64; 4];
            let chunks = row.chunks_exact(4).zip(x.chunks_exact(4));
            for (a, v) in chunks {
                for i in 0..4 {
                    acc[i] += a[i] * f64::from(v[i]);
                }
            }
            let tail = n - n % 4;
            let mut s = acc[0] + acc[1] + acc[2] + acc[3];
            for i in tail..n {
                s += row[i] * f64::from(x[i]);
            }
            *t = s;
        }
        theta
    }
}

/// Shared per-block-size fitting state: the basis table and a cache of pseudo-inverses by extent.
pub struct BaseFitter {
    basis: BasisTable,
    cache: Mutex<HashMap<(usize, usize), Arc<PseudoInverse>>>,
}

impl BaseFitter {
    /// Prepares fitting for blocks of edge `block`.
    pub fn new(block: usize) -> Self {
        BaseFitter { basis: BasisTable::new(block), cache: Mutex::new(HashMap::new()) }
    }
    /// The basis table.
    pub fn basis(&self) -> &BasisTable {
        &self.basis
    }
    /// The pseudo-inverse for an `h x w` valid region (computed once, then shared).
    pub fn pinv(&self, h: usize, w: usize) -> Arc<PseudoInverse> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.entry((h, w)).or_insert_with(|| Arc::new(PseudoInverse::new(&self.basis, h, w))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_parameters_of_a_pure_base() {
        let fitter = BaseFitter::new(16);
        let theta = [0.3, -0.2, 0.1, 0.05, -0.07, 0.02, 0.01, -0.4];
        let mut block = vec![0.0f64; 256];
        fitter.basis().add_base(&theta.map(|t: f64| t as f32), &mut block);
        let x: Vec<f32> = block.iter().map(|&v| v as f32).collect();
        let got = fitter.pinv(16, 16).fit(&x);
        for (g, t) in got.iter().zip(theta) {
            assert!((g - t).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn degenerate_single_row_region_does_not_blow_up() {
        let fitter = BaseFitter::new(8);
        let p = fitter.pinv(1, 8);
        let theta = p.fit(&[1.0; 8]);
        assert!(theta.iter().all(|t| t.is_finite()));
    }
}
