//! Sensitivity probing: a seeded Gaussian perturbation of one weight scaled to a given relative
//! output error on the calibration inputs, and the embedding distortion it causes.
//!
//! For a Linear with weight `W` and recorded `H`, [`perturbation`] draws `E` (i.i.d. normal, seeded
//! by the weight's name) and scales it so that `r = sqrt(tr(E H E^T) / tr(W H W^T))` is exactly the
//! requested value ([`PROBE_REL_ERROR`] in `rbe calibrate`). Running the model with `W + E` in
//! place of `W` and comparing its sentence embeddings with the unperturbed ones gives the
//! distortion `D` ([`distortion`]: mean over sentences of `1 - cos`); the sensitivity is `D / r^2`.

use crate::encode::calibration::TensorCalibration;
use candle_core::{DType, Tensor};

/// Relative output error of the probe perturbation.
pub const PROBE_REL_ERROR: f64 = 0.05;

/// The sensitivity definition, as recorded in the file's `__metadata__`.
pub const SENSITIVITY_DEFINITION: &str = "D / r^2 with r = 0.05: W alone perturbed by seeded Gaussian noise E \
    scaled to r = sqrt(tr(E H E^T) / tr(W H W^T)) = 0.05; D = mean over the calibration samples of \
    1 - cos(embedding, unperturbed embedding), embeddings mean-pooled over the attention mask and L2-normalised";

/// Why a weight cannot be probed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The weight is not `[out, in]` with `in` the recorded input width.
    #[error("`{name}`: weight shape {shape:?} does not take the {inputs} recorded inputs")]
    Shape {
        /// The weight.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Input width of its record.
        inputs: usize,
    },
    /// `tr(W H W^T)` is zero: no relative error can be defined.
    #[error("`{0}`: the weight gives no output on the calibration inputs (tr(W H W^T) = 0)")]
    NoOutput(String),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// splitmix64: a small, well-mixed, seedable stream.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// `n` standard normal values (Box-Muller), seeded by `name` (FNV-1a): the same weight name
/// always gets the same noise.
pub fn gaussian(name: &str, n: usize) -> Vec<f32> {
    let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u, v) = (rng.unit(), rng.unit());
        let radius = (-2.0 * u.ln()).sqrt();
        let angle = std::f64::consts::TAU * v;
        out.push((radius * angle.cos()) as f32);
        out.push((radius * angle.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// `tr(M H M^T)` for `m` `[rows, n]` and `h` `[n, n]`, through one matrix product.
fn trace(m: &Tensor, h: &Tensor) -> candle_core::Result<f64> {
    let mh = m.matmul(h)?;
    (mh * m)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()
}

/// The perturbation `E` of `weight` (`[out, in]`, called `name`) whose relative output error on
/// the inputs `record` holds is `r`.
pub fn perturbation(name: &str, weight: &Tensor, record: &TensorCalibration, r: f64) -> Result<Tensor, ProbeError> {
    let shape = weight.dims().to_vec();
    if shape.len() != 2 || shape[1] != record.inputs {
        return Err(ProbeError::Shape { name: name.to_owned(), shape, inputs: record.inputs });
    }
    let dev = weight.device();
    let w = weight.to_dtype(DType::F32)?;
    let h = Tensor::from_slice(&record.hessian, (record.inputs, record.inputs), dev)?;
    let e = Tensor::from_vec(gaussian(name, shape[0] * shape[1]), (shape[0], shape[1]), dev)?;
    let (tw, te) = (trace(&w, &h)?, trace(&e, &h)?);
    if !(tw > 0.0 && te > 0.0) {
        return Err(ProbeError::NoOutput(name.to_owned()));
    }
    Ok((e * (r * (tw / te).sqrt()))?)
}

/// Mean over samples of `1 - cos(a_i, b_i)`.
pub fn distortion(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let total: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum();
            let nx = x.iter().map(|&p| f64::from(p).powi(2)).sum::<f64>().sqrt();
            let ny = y.iter().map(|&q| f64::from(q).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (nx * ny).max(1e-300)
        })
        .sum();
    total / n as f64
}

/// Sentence embeddings from hidden states `[batch, seq, hidden]`: mean over the first `lens[i]`
/// positions of row `i` (the attention mask of right-padded input), L2-normalised
/// (sentence-transformers' mean pooling).
pub fn mean_pool(hidden: &Tensor, lens: &[usize]) -> candle_core::Result<Vec<Vec<f32>>> {
    let h = hidden.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    Ok(h.iter()
        .zip(lens)
        .map(|(seq, &len)| {
            let dim = seq.first().map_or(0, Vec::len);
            let mut v = vec![0f64; dim];
            for tok in &seq[..len.min(seq.len())] {
                for (a, &x) in v.iter_mut().zip(tok) {
                    *a += f64::from(x);
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            v.iter().map(|a| (a / norm) as f32).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_noise_is_seeded_by_name_and_standard_normal() {
        let a = gaussian("encoder.layer.0.output.dense.weight", 20001);
        assert_eq!(a, gaussian("encoder.layer.0.output.dense.weight", 20001));
        assert_ne!(a[..8], gaussian("encoder.layer.1.output.dense.weight", 8)[..]);
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn the_perturbation_has_the_requested_relative_output_error() {
        let xs: Vec<f32> = (0..40 * 6).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.3).collect();
        let record = TensorCalibration::from_inputs(6, &xs);
        let w: Vec<f32> = (0..4 * 6).map(|i| (i as f32 * 0.9).cos()).collect();
        let wt = Tensor::from_slice(&w, (4, 6), &Device::Cpu).unwrap();
        let e = perturbation("w", &wt, &record, 0.05).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let r = (record.output_energy(&e) / record.output_energy(&w)).sqrt();
        assert!((r - 0.05).abs() < 1e-5, "r = {r}");
        let bad = Tensor::zeros((4, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(perturbation("w", &bad, &record, 0.05), Err(ProbeError::Shape { .. })));
        let zero = Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(perturbation("w", &zero, &record, 0.05), Err(ProbeError::NoOutput(_))));
    }

    #[test]
    fn pooling_ignores_padding_and_distortion_is_one_minus_cos() {
        let h =
            Tensor::from_vec(vec![3f32, 0., 1., 0., 9., 9., 0., 2., 0., 2., 0., 2.], (2, 3, 2), &Device::Cpu).unwrap();
        let e = mean_pool(&h, &[2, 3]).unwrap();
        assert_eq!(e, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(distortion(&e, &e), 0.0);
        let d = distortion(&e, &[vec![1.0, 0.0], vec![1.0, 0.0]]);
        assert!((d - 0.5).abs() < 1e-12, "{d}");
    }
}
