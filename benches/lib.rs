//! Shared helpers of the criterion benches: seeded noise-like weights encoded with `rbe-encode`.
#![deny(missing_docs)]

use rbe_encode::{EncodeSettings, Target, encode_tensor};
use rbe_format::EncodedTensor;

/// Seeded N(0, 0.05) weights.
pub fn synthetic(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uni = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..rows * cols)
        .map(|_| {
            let (u, v) = (uni(), uni());
            (0.05 * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

/// Encodes `synthetic(rows, cols)` at relative RMSE `rel` with default settings.
pub fn encoded(rows: usize, cols: usize, rel: f64) -> (EncodedTensor, Vec<f32>) {
    let data = synthetic(rows, cols, 0x5EED ^ (rows * 131 + cols) as u64);
    let settings = EncodeSettings { target: Target::RelRmse(rel), profile: None, ..EncodeSettings::default() };
    match encode_tensor("bench", &data, &[rows, cols], "F32", &settings) {
        Ok(out) => (out.tensor, data),
        Err(e) => panic!("bench matrix failed to encode: {e}"),
    }
}
