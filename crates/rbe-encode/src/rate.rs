//! Bit-cost estimates used to choose each block's residual kind before the real entropy coding:
//! a per-tensor histogram of quantised magnitudes, priced like the coder's tables will price them.

use rbe_format::codec::entropy::UintTokenizer;
use rbe_format::codec::entropy::zigzag;
use rbe_format::{BlockConfig, ValueCodec};

/// The tokenizer the format's coder uses for zigzagged values (keep in step with `rbe_format::codec::entropy`).
const MAGNITUDE: UintTokenizer = UintTokenizer::new(5, 3);

/// Per-token bit costs for dense and sparse magnitudes.
pub struct RateModel {
    dense: Vec<f64>,
    nonzero: Vec<f64>,
}

impl RateModel {
    /// Builds the costs from every block's quantised coefficients.
    pub fn from_blocks(blocks: &[Vec<i16>]) -> Self {
        let mut counts = vec![0u64; 256];
        for q in blocks {
            for &v in q {
                let (t, _, _) = MAGNITUDE.token(zigzag(i32::from(v)));
                counts[usize::from(t)] += 1;
            }
        }
        let total: u64 = counts.iter().sum();
        let nz_total = total - counts[0];
        let cost = |c: u64, t: u64| if c == 0 || t == 0 { 24.0 } else { (t as f64 / c as f64).log2() };
        let dense = (0..256).map(|t| cost(counts[t], total) + f64::from(MAGNITUDE.raw_bits(t as u8))).collect();
        let nonzero = (0..256).map(|t| cost(counts[t], nz_total) + f64::from(MAGNITUDE.raw_bits(t as u8))).collect();
        RateModel { dense, nonzero }
    }

    /// Estimated bits of a dense residual's values.
    pub fn dense_bits(&self, values: &[i16]) -> f64 {
        values.iter().map(|&v| self.dense[usize::from(MAGNITUDE.token(zigzag(i32::from(v))).0)]).sum()
    }

    /// Estimated bits of a sparse residual holding the nonzero entries of `q` (before building it).
    pub fn sparse_bits_estimate(&self, q: &[i16], nonzero: usize, cfg: &BlockConfig) -> f64 {
        let k = nonzero as f64;
        if nonzero == 0 {
            return 0.0;
        }
        let p = (k / cfg.block_area() as f64).min(0.999_999);
        let gap_bits = (-(1.0 - p) * (1.0 - p).log2() - p * p.log2()) / p;
        let value_bits: f64 = match cfg.values {
            ValueCodec::F32 => 32.0 * k,
            ValueCodec::F16 => 16.0 * k,
            ValueCodec::Q16 => q
                .iter()
                .filter(|&&v| v != 0)
                .map(|&v| self.nonzero[usize::from(MAGNITUDE.token(zigzag(i32::from(v))).0)])
                .sum(),
            // Narrow codecs: about their field width.
            ValueCodec::Q9s => 10.0 * k,
            ValueCodec::MuLaw8 => 8.0 * k,
        };
        k * gap_bits + value_bits
    }
}
