//! Seeded test and bench data: noise-like and smooth weight matrices (row-major `Vec<f32>`), the
//! bench shapes' seeds, and little-endian byte views for writing safetensors by hand.

use crate::Rng;

/// `n` seeded weights ~N(0, std^2): the matrices `rbe bench --synthetic` and the criterion benches
/// measure (identical to `rbe_encode::synthetic::noise_matrix` for `n = rows * cols`).
pub fn gaussian(n: usize, seed: u64, std: f64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut one = move || {
        let (u, v) = (rng.unit_open(), rng.unit_open());
        (std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    (0..n).map(|_| one()).collect()
}

/// The seed the benches derive from a shape, so a shape always gets the same matrix.
pub fn bench_seed(rows: usize, cols: usize) -> u64 {
    0x5EED ^ (rows * 131 + cols) as u64
}

/// `n` values, each `scale` times a sum of three uniform `[-1, 1)` draws (bell-shaped): the
/// conformance fixtures' noise-like matrices.
pub fn bell(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| scale * (rng.signed_f32() + rng.signed_f32() + rng.signed_f32())).collect()
}

/// A smooth `rows x cols` matrix (two products of sines and cosines) plus 1 % uniform noise: the
/// conformance fixtures' smooth matrices, where the sparse residual path wins.
pub fn smooth(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let noise: Vec<f32> = (0..rows * cols).map(|_| rng.signed_f32()).collect();
    let at = |i: usize| {
        let (r, c) = ((i / cols) as f32, (i % cols) as f32);
        (0.013 * r).sin() * (0.021 * c).cos() + 0.3 * (0.002 * r * c).sin()
    };
    noise.iter().enumerate().map(|(i, e)| at(i) + 0.01 * e).collect()
}

/// Little-endian bytes of f32 values (a safetensors `F32` payload).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of f64 values (a safetensors `F64` payload).
pub fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_the_asked_spread() {
        let v = gaussian(20_000, bench_seed(64, 64), 0.05);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 2e-3 && (var.sqrt() - 0.05).abs() < 2e-3, "{mean} {var}");
    }

    #[test]
    fn byte_views_are_little_endian() {
        assert_eq!(f32_bytes(&[1.0]), [0, 0, 0x80, 0x3F]);
        assert_eq!(f64_bytes(&[-2.0]), [0, 0, 0, 0, 0, 0, 0, 0xC0]);
        assert_eq!(bell(3, 1, 0.05).len(), 3);
        assert_eq!(smooth(3, 4, 1).len(), 12);
    }
}
