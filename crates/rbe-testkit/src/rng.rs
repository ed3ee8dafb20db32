//! [`Rng`]: the one seeded pseudo-random generator of the workspace's tests, benches and fixture
//! generator — a 64-bit linear congruential generator (Knuth's MMIX constants).
//!
//! Every sample is drawn from the top 53 bits of the state, where a power-of-two LCG is strongest;
//! [`Rng::next_u64`] alone passes the state through the SplitMix64 finaliser so that all 64 bits
//! (low ones included) are usable. The stream is part of the project's byte output: the committed
//! conformance fixtures (`cargo xtask fixtures --check`) and the bench matrices are drawn from it,
//! and the tests below pin it. Never change it.

const MUL: u64 = 6_364_136_223_846_793_005;
const INC: u64 = 1_442_695_040_888_963_407;
/// 2^53 as a float: the scale of [`Rng::bits53`].
const TWO_53: f64 = (1u64 << 53) as f64;

/// A seeded, deterministic, non-cryptographic generator. `Clone` forks the stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose state is `seed` (any value, zero included).
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Advances the state; its top 53 bits.
    pub fn bits53(&mut self) -> u64 {
        self.state = self.state.wrapping_mul(MUL).wrapping_add(INC);
        self.state >> 11
    }

    /// 64 well-mixed bits (the advanced state through the SplitMix64 finaliser).
    pub fn next_u64(&mut self) -> u64 {
        self.bits53();
        let z = (self.state ^ (self.state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits53() % n.max(1) as u64) as usize
    }

    /// Uniform in `[0, 1)`, a multiple of 2^-53.
    pub fn unit(&mut self) -> f64 {
        self.bits53() as f64 / TWO_53
    }

    /// Uniform in `(0, 1)`: safe under `ln`.
    pub fn unit_open(&mut self) -> f64 {
        (self.bits53() as f64 + 0.5) / TWO_53
    }

    /// Uniform in `[-a, a)`.
    pub fn symmetric(&mut self, a: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * a
    }

    /// Uniform in `[-1, 1)`, rounded to f32.
    pub fn signed_f32(&mut self) -> f32 {
        self.symmetric(1.0) as f32
    }

    /// Uniform in `[-0.5, 0.5)` on a 2^-24 grid (exact in f32).
    pub fn centred_f32(&mut self) -> f32 {
        (self.bits53() >> 29) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal sample (Box-Muller over two [`Rng::unit_open`] draws).
    pub fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.unit_open(), self.unit_open());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    /// The stream the committed fixtures were generated from (computed from the original
    /// generators' formulas).
    #[test]
    fn the_stream_is_pinned() {
        let mut r = Rng::new(1);
        assert_eq!(
            [r.bits53(), r.bits53(), r.bits53()],
            [3_811_929_328_484_256, 4_588_334_339_901_763, 5_839_902_250_111_733]
        );
        let mut r = Rng::new(1000);
        assert_eq!(r.signed_f32().to_bits(), 0xBF57_B167);
        assert_eq!(r.centred_f32().to_bits(), 0x3E9E_EA4C);
        assert_eq!(Rng::new(7).next_u64(), 0x8CEB_EF62_D061_4D19);
    }

    #[test]
    fn samples_stay_in_range() {
        let mut r = Rng::new(0);
        for _ in 0..10_000 {
            assert!((0.0..1.0).contains(&r.unit()));
            let u = r.unit_open();
            assert!(u > 0.0 && u < 1.0);
            assert!((-1.0..1.0).contains(&r.signed_f32()));
            assert!((-0.5..0.5).contains(&r.centred_f32()));
            assert!(r.below(7) < 7);
            assert!(r.gaussian().is_finite());
        }
        assert_eq!(r.below(0), 0);
    }
}
