//! The eight RBE basis functions sampled on a `b x b` block grid (format.md 2.1).

use std::f64::consts::PI;
use std::sync::{Arc, OnceLock};

/// Number of RBE parameters.
pub const N_PARAMS: usize = 8;

/// `phi_k(r, c)` for one block size, stored as 8 planes of `b * b` values (row-major).
#[derive(Debug, Clone)]
pub struct BasisTable {
    block: usize,
    planes: Vec<f64>,
}

impl BasisTable {
    /// Samples the basis for block size `block` (>= 2).
    pub fn new(block: usize) -> Self {
        let n = block * block;
        let mut planes = vec![0.0; N_PARAMS * n];
        let span = (block - 1) as f64;
        for r in 0..block {
            for c in 0..block {
                let x = (2.0 * c as f64 - span) / span;
                let y = (2.0 * r as f64 - span) / span;
                let values = basis_at(x, y);
                for (k, v) in values.iter().enumerate() {
                    planes[k * n + r * block + c] = *v;
                }
            }
        }
        BasisTable { block, planes }
    }
    /// The table for `block` (8, 16, 32 or 64), built once per process and shared.
    pub fn shared(block: usize) -> Arc<BasisTable> {
        static TABLES: [OnceLock<Arc<BasisTable>>; 4] = [const { OnceLock::new() }; 4];
        match crate::settings::BLOCK_SIZES.iter().position(|&b| b == block) {
            Some(i) => TABLES[i].get_or_init(|| Arc::new(BasisTable::new(block))).clone(),
            None => Arc::new(BasisTable::new(block)),
        }
    }
    /// Block size.
    pub fn block(&self) -> usize {
        self.block
    }
    /// Plane `k` (0-based): `phi_{k+1}` over the block, row-major.
    pub fn plane(&self, k: usize) -> &[f64] {
        let n = self.block * self.block;
        &self.planes[k * n..(k + 1) * n]
    }
    /// Adds `sum_k theta_k phi_k` to `out` (`b * b`, row-major).
    pub fn add_base(&self, theta: &[f32; N_PARAMS], out: &mut [f64]) {
        for (k, &t) in theta.iter().enumerate() {
            if t == 0.0 {
                continue;
            }
            let t = f64::from(t);
            for (o, p) in out.iter_mut().zip(self.plane(k)) {
                *o += t * p;
            }
        }
    }
}

/// The 8 basis functions at normalised coordinates `(x, y)`.
pub fn basis_at(x: f64, y: f64) -> [f64; N_PARAMS] {
    let d = (x * x + y * y).sqrt();
    let (cx, cy) = ((PI * x).cos(), (PI * y).cos());
    [1.0, d, d * d, cx, cy, (2.0 * PI * x).cos(), (2.0 * PI * y).cos(), cx * cy]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_follow_the_axis_convention() {
        let t = BasisTable::new(8);
        // cos(pi x) at c = 0 (x = -1) is -1; cos(pi y) at r = 0 is -1 too; d at a corner is sqrt 2.
        assert!((t.plane(3)[0] + 1.0).abs() < 1e-12);
        assert!((t.plane(1)[0] - 2f64.sqrt()).abs() < 1e-12);
        // Along the first row only x changes: phi_5 = cos(pi y) is constant there.
        assert!(t.plane(4)[..8].iter().all(|v| (v + 1.0).abs() < 1e-12));
    }
}
