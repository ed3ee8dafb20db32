//! Seeded noise-like weights, ~N(0, std^2) (Box-Muller over a 64-bit LCG): the matrices
//! `rbe bench --synthetic` and the criterion benches measure, identical on every machine.

/// Largest synthetic matrix (elements): 2^28 weights, 1 GiB of f32, checked before allocating.
pub const MAX_SYNTHETIC_ELEMENTS: usize = 1 << 28;

/// Standard deviation of the synthetic benchmark weights.
pub const BENCH_STD: f64 = 0.05;

/// `rows * cols` seeded Gaussian weights with standard deviation `std`, row-major.
pub fn noise_matrix(rows: usize, cols: usize, seed: u64, std: f64) -> Vec<f32> {
    let mut s = seed;
    let mut uni = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..rows * cols)
        .map(|_| {
            let (u, v) = (uni(), uni());
            (std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

/// The seed the benches derive from a shape, so a shape always gets the same matrix.
pub fn seed_for(rows: usize, cols: usize) -> u64 {
    0x5EED ^ (rows * 131 + cols) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_pinned() {
        // Bit patterns of the first values of the 2x3 bench matrix: the generator must not drift.
        let v = noise_matrix(2, 3, seed_for(2, 3), BENCH_STD);
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, PINNED);
    }

    const PINNED: [u32; 6] = [3183641396, 1034943488, 1019324620, 3174117609, 1023471975, 3176234878];
}
