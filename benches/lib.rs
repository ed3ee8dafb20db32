//! Shared helpers of the criterion benches: seeded noise-like weights (`rbe-testkit`'s bench
//! matrices) encoded with `rbe-encode`.
#![deny(missing_docs)]

use rbe_encode::{EncodeSettings, Target, encode_tensor};
use rbe_format::EncodedTensor;

/// Seeded N(0, 0.05) weights (the same matrices as `rbe bench --synthetic`).
pub fn synthetic(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    rbe_testkit::data::gaussian(rows * cols, seed, 0.05)
}

/// Encodes `synthetic(rows, cols)` at relative RMSE `rel` with default settings.
pub fn encoded(rows: usize, cols: usize, rel: f64) -> (EncodedTensor, Vec<f32>) {
    let data = synthetic(rows, cols, rbe_testkit::data::bench_seed(rows, cols));
    let settings = EncodeSettings { target: Target::RelRmse(rel), profile: None, ..EncodeSettings::default() };
    match encode_tensor("bench", &data, &[rows, cols], rbe_format::SourceDtype::F32, &settings) {
        Ok(out) => (out.tensor, data),
        Err(e) => panic!("bench matrix failed to encode: {e}"),
    }
}
