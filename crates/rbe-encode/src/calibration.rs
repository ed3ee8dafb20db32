//! The calibration file: per Linear weight, what its inputs look like on real text, so the encoder
//! can spend bits where the model's output feels them (`rbe calibrate` writes it, `rbe encode
//! --calibration` reads it).
//!
//! It is a plain safetensors file. For a weight named `W` (shape `[out, in]`, `y = W x`):
//!
//! | tensor | dtype, shape | meaning |
//! |---|---|---|
//! | `W.hessian` | F32 `[in, in]` | `H = sum x x^T` over the real (non-padding) tokens seen |
//! | `W.tokens` | I64 `[1]` | how many input vectors were summed into `H` |
//! | `W.sensitivity` | F32 `[1]`, optional | model-output distortion per unit of squared relative output error of this Linear (see below) |
//!
//! **Sensitivity.** Perturbing `W` alone by noise `E` whose relative output error on the
//! calibration inputs is `r = sqrt(tr(E H E^T) / tr(W H W^T))` moves the model's output by a
//! distortion `D` (mean `1 - cos` of the embeddings); the sensitivity is `D / r^2`, so that
//! `sum_t s_t r_t^2` predicts the distortion of encoding every tensor at once.
//!
//! `__metadata__` holds the provenance: `format` = `rbe-calibration`, `version` = `1`, and
//! free-form keys the writer adds (text hash, sample and token counts, architecture, tool version).
//! Readers check every tensor (square, finite, non-negative diagonal, a positive token count) and
//! name the offending one.

use rbe_format::{FormatError, checksum};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// `format` value in `__metadata__`.
pub const CALIBRATION_FORMAT: &str = "rbe-calibration";
/// `version` value in `__metadata__`.
pub const CALIBRATION_VERSION: &str = "1";

/// Suffix of the input second-moment tensor.
const HESSIAN: &str = ".hessian";
/// Suffix of the token count tensor.
const TOKENS: &str = ".tokens";
/// Suffix of the sensitivity tensor.
const SENSITIVITY: &str = ".sensitivity";

/// What the calibration recorded for one Linear weight.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCalibration {
    /// Input dimension `in` of the weight (`H` is `in x in`).
    pub inputs: usize,
    /// `H = sum x x^T`, row-major `in * in`.
    pub hessian: Vec<f32>,
    /// Input vectors summed into `H`.
    pub tokens: u64,
    /// Model-output distortion per unit of squared relative output error, when probed.
    pub sensitivity: Option<f64>,
}

impl TensorCalibration {
    /// The second-moment matrix of one batch of inputs `xs` (`n` rows of `inputs` values each).
    pub fn from_inputs(inputs: usize, xs: &[f32]) -> Self {
        let mut c = TensorCalibration { inputs, hessian: vec![0.0; inputs * inputs], tokens: 0, sensitivity: None };
        c.accumulate(xs);
        c
    }

    /// Adds the rows of `xs` (`inputs` values each) to `H` and the token count.
    pub fn accumulate(&mut self, xs: &[f32]) {
        let n = self.inputs;
        if n == 0 {
            return;
        }
        let rows = xs.len() / n;
        // f64 per output row of H, then rounded once: sums over many tokens stay accurate.
        let mut acc = vec![0f64; n];
        for i in 0..n {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for r in 0..rows {
                let x = &xs[r * n..(r + 1) * n];
                let xi = f64::from(x[i]);
                if xi != 0.0 {
                    for (a, &xj) in acc.iter_mut().zip(x) {
                        *a += xi * f64::from(xj);
                    }
                }
            }
            for (h, a) in self.hessian[i * n..(i + 1) * n].iter_mut().zip(&acc) {
                *h = (f64::from(*h) + a) as f32;
            }
        }
        self.tokens += rows as u64;
    }

    /// `tr(W H W^T)` for a row-major `[rows, inputs]` weight: the output energy on the
    /// calibration inputs.
    pub fn output_energy(&self, weight: &[f32]) -> f64 {
        quadratic_trace(&self.hessian, self.inputs, weight)
    }
}

/// `tr(M H M^T)` for row-major `m` (`rows x n`) and `h` (`n x n`), summed in f64.
pub fn quadratic_trace(h: &[f32], n: usize, m: &[f32]) -> f64 {
    use rayon::prelude::*;
    let per_row: Vec<f64> = m
        .par_chunks(n)
        .map(|row| {
            let mut total = 0f64;
            for (i, &ri) in row.iter().enumerate() {
                if ri != 0.0 {
                    total += f64::from(ri) * crate::kernels::dot_f32(&h[i * n..(i + 1) * n], row);
                }
            }
            total
        })
        .collect();
    per_row.iter().sum()
}

/// A whole calibration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    /// Per weight name (the tensor name in the model, e.g. `encoder.layer.0.attention.self.query.weight`).
    pub tensors: BTreeMap<String, TensorCalibration>,
    /// Provenance (`__metadata__`), `format` and `version` included.
    pub metadata: BTreeMap<String, String>,
    /// Checksum (XXH3-64, hex) of the calibration's content — metadata in key order, then every
    /// tensor in name order — what an `.rbe` records. Not of the file's bytes: safetensors writes
    /// metadata in no fixed order, so equal calibrations may differ byte for byte.
    pub checksum: String,
}

/// A calibration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a safetensors file, or not one `rbe calibrate` wrote.
    #[error("{path}: not an RBE calibration file ({reason}); make one with `rbe calibrate`")]
    NotCalibration {
        /// The file.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// One tensor's record is unusable.
    #[error("calibration of `{tensor}`: {reason}")]
    Tensor {
        /// The weight name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Output(#[from] FormatError),
}

fn bad(tensor: &str, reason: impl Into<String>) -> CalibrationError {
    CalibrationError::Tensor { tensor: tensor.to_owned(), reason: reason.into() }
}

impl Calibration {
    /// Reads and validates the file at `path`.
    pub fn open(path: &Path) -> Result<Self, CalibrationError> {
        let shown = path.display().to_string();
        if path.is_dir() {
            return Err(CalibrationError::NotCalibration { path: shown, reason: "it is a directory".into() });
        }
        let bytes = std::fs::read(path).map_err(|source| CalibrationError::Io { path: shown.clone(), source })?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            CalibrationError::NotCalibration { reason, .. } => CalibrationError::NotCalibration { path: shown, reason },
            other => other,
        })
    }

    /// Parses and validates a calibration file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CalibrationError> {
        let not = |reason: String| CalibrationError::NotCalibration { path: "calibration".into(), reason };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| not(format!("not safetensors: {e}")))?;
        let metadata: BTreeMap<String, String> = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        match metadata.get("format").map(String::as_str) {
            Some(CALIBRATION_FORMAT) => {}
            _ => return Err(not(format!("its metadata has no `format: {CALIBRATION_FORMAT}`"))),
        }
        if metadata.get("version").map(String::as_str) != Some(CALIBRATION_VERSION) {
            return Err(not(format!(
                "version {:?} is not the supported {CALIBRATION_VERSION}",
                metadata.get("version").map(String::as_str).unwrap_or("(none)")
            )));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| not(format!("not safetensors: {e}")))?;
        let mut tensors = BTreeMap::new();
        for name in st.names() {
            let Some(weight) = name.strip_suffix(HESSIAN) else { continue };
            let view = st.tensor(name).map_err(|e| bad(weight, e.to_string()))?;
            let shape = view.shape();
            if view.dtype() != Dtype::F32 || shape.len() != 2 || shape[0] != shape[1] || shape[0] == 0 {
                return Err(bad(
                    weight,
                    format!("`{name}` must be a square F32 matrix, got {:?} {shape:?}", view.dtype()),
                ));
            }
            let n = shape[0];
            let hessian: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if let Some(i) = hessian.iter().position(|v| !v.is_finite()) {
                return Err(bad(weight, format!("H[{}, {}] = {} is not finite", i / n, i % n, hessian[i])));
            }
            if let Some(i) = (0..n).find(|&i| hessian[i * n + i] < 0.0) {
                return Err(bad(weight, format!("H[{i}, {i}] is negative: not a second-moment matrix")));
            }
            let tokens_name = format!("{weight}{TOKENS}");
            let tokens = st
                .tensor(&tokens_name)
                .ok()
                .filter(|t| t.dtype() == Dtype::I64 && t.shape() == [1])
                .map(|t| i64::from_le_bytes(t.data()[..8].try_into().expect("8 bytes")))
                .ok_or_else(|| bad(weight, format!("`{tokens_name}` (I64 [1]) is missing")))?;
            let tokens = u64::try_from(tokens)
                .ok()
                .filter(|&t| t > 0)
                .ok_or_else(|| bad(weight, format!("token count {tokens} is not positive")))?;
            let sens_name = format!("{weight}{SENSITIVITY}");
            let sensitivity = match st.tensor(&sens_name) {
                Err(_) => None,
                Ok(t) if t.dtype() == Dtype::F32 && t.shape() == [1] => {
                    let s = f64::from(f32::from_le_bytes(t.data()[..4].try_into().expect("4 bytes")));
                    if !(s.is_finite() && s >= 0.0) {
                        return Err(bad(weight, format!("sensitivity {s} is not a finite number >= 0")));
                    }
                    Some(s)
                }
                Ok(t) => {
                    return Err(bad(
                        weight,
                        format!("`{sens_name}` must be F32 [1], got {:?} {:?}", t.dtype(), t.shape()),
                    ));
                }
            };
            tensors.insert(weight.to_owned(), TensorCalibration { inputs: n, hessian, tokens, sensitivity });
        }
        if tensors.is_empty() {
            return Err(not("it holds no `*.hessian` tensor".into()));
        }
        let checksum = content_checksum(&tensors, &metadata);
        Ok(Calibration { tensors, metadata, checksum })
    }

    /// The file's bytes (metadata gets `format` and `version`).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CalibrationError> {
        let mut meta: std::collections::HashMap<String, String> =
            self.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        meta.insert("format".into(), CALIBRATION_FORMAT.into());
        meta.insert("version".into(), CALIBRATION_VERSION.into());
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in &self.tensors {
            if t.hessian.len() != t.inputs * t.inputs {
                return Err(bad(name, "hessian length is not inputs^2"));
            }
            owned.push((
                format!("{name}{HESSIAN}"),
                Dtype::F32,
                vec![t.inputs, t.inputs],
                t.hessian.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            owned.push((format!("{name}{TOKENS}"), Dtype::I64, vec![1], (t.tokens as i64).to_le_bytes().to_vec()));
            if let Some(s) = t.sensitivity {
                owned.push((format!("{name}{SENSITIVITY}"), Dtype::F32, vec![1], (s as f32).to_le_bytes().to_vec()));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, d, s, b)| {
                let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).map_err(|e| bad(n, e.to_string()))?;
                Ok((n.clone(), view))
            })
            .collect::<Result<_, CalibrationError>>()?;
        safetensors::tensor::serialize(views, Some(meta)).map_err(|e| bad("(file)", e.to_string()))
    }

    /// Writes the file atomically to `path` (never over an input or a non-regular file) and
    /// records its checksum.
    pub fn write(&mut self, path: &Path, inputs: &[&Path]) -> Result<(), CalibrationError> {
        let bytes = self.to_bytes()?;
        rbe_format::OutputFile::check(path, inputs)?.write_atomic(&bytes)?;
        let mut metadata = self.metadata.clone();
        metadata.insert("format".into(), CALIBRATION_FORMAT.into());
        metadata.insert("version".into(), CALIBRATION_VERSION.into());
        self.checksum = content_checksum(&self.tensors, &metadata);
        Ok(())
    }

    /// The record of weight `name`, if the calibration covers it.
    pub fn get(&self, name: &str) -> Option<&TensorCalibration> {
        self.tensors.get(name)
    }
}

/// The content checksum of [`Calibration::checksum`].
fn content_checksum(tensors: &BTreeMap<String, TensorCalibration>, metadata: &BTreeMap<String, String>) -> String {
    let mut buf = Vec::with_capacity(tensors.values().map(|t| 4 * t.hessian.len() + 64).sum::<usize>() + 1024);
    for (k, v) in metadata {
        buf.extend_from_slice(format!("{}:{k}={}:{v}\n", k.len(), v.len()).as_bytes());
    }
    for (name, t) in tensors {
        // The sensitivity as the file stores it (f32), so a written and a read calibration agree.
        let sensitivity = t.sensitivity.map(|v| (v as f32).to_bits());
        buf.extend_from_slice(format!("{}:{name}|{}|{}|{sensitivity:?}\n", name.len(), t.inputs, t.tokens).as_bytes());
        buf.extend(t.hessian.iter().flat_map(|v| v.to_le_bytes()));
    }
    checksum(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Calibration {
        let mut c = Calibration::default();
        let mut t = TensorCalibration::from_inputs(3, &[1.0, 2.0, 0.0, 0.5, -1.0, 3.0]);
        t.sensitivity = Some(0.25);
        c.tensors.insert("layer.q.weight".into(), t);
        c.tensors.insert("layer.v.weight".into(), TensorCalibration::from_inputs(2, &[1.0, 1.0]));
        c.metadata.insert("text_xxh3".into(), "abc".into());
        c
    }

    #[test]
    fn hessian_is_the_sum_of_outer_products() {
        let t = TensorCalibration::from_inputs(2, &[1.0, 2.0, 3.0, -1.0]);
        assert_eq!(t.hessian, vec![10.0, -1.0, -1.0, 5.0]);
        assert_eq!(t.tokens, 2);
        // tr(W H W^T) for W = [1, 1]: 10 - 1 - 1 + 5.
        assert_eq!(t.output_energy(&[1.0, 1.0]), 13.0);
    }

    #[test]
    fn round_trips_through_bytes() {
        let c = sample();
        let bytes = c.to_bytes().unwrap();
        let back = Calibration::from_bytes(&bytes).unwrap();
        assert_eq!(back.tensors, c.tensors);
        assert_eq!(back.metadata.get("text_xxh3").map(String::as_str), Some("abc"));
        assert_eq!(back.metadata.get("format").map(String::as_str), Some(CALIBRATION_FORMAT));
        // The checksum follows the content, not the metadata order safetensors happened to write.
        assert_eq!(Calibration::from_bytes(&c.to_bytes().unwrap()).unwrap().checksum, back.checksum);
        let mut other = c.clone();
        other.tensors.get_mut("layer.v.weight").unwrap().hessian[0] += 1.0;
        assert_ne!(Calibration::from_bytes(&other.to_bytes().unwrap()).unwrap().checksum, back.checksum);
    }

    #[test]
    fn rejects_what_is_not_a_calibration() {
        let plain = safetensors::tensor::serialize(
            vec![("w", safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &[0, 0, 0, 0]).unwrap())],
            None,
        )
        .unwrap();
        let err = Calibration::from_bytes(&plain).unwrap_err().to_string();
        assert!(err.contains("not an RBE calibration file"), "{err}");
        assert!(Calibration::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn rejects_bad_records_naming_the_tensor() {
        let mut c = sample();
        c.tensors.get_mut("layer.q.weight").unwrap().hessian[4] = f32::NAN;
        let err = Calibration::from_bytes(&c.to_bytes().unwrap()).unwrap_err().to_string();
        assert!(err.contains("layer.q.weight") && err.contains("not finite"), "{err}");
        let mut c = sample();
        c.tensors.get_mut("layer.v.weight").unwrap().hessian[0] = -1.0;
        let err = Calibration::from_bytes(&c.to_bytes().unwrap()).unwrap_err().to_string();
        assert!(err.contains("layer.v.weight") && err.contains("negative"), "{err}");
        let mut c = sample();
        c.tensors.get_mut("layer.v.weight").unwrap().sensitivity = Some(-1.0);
        let err = Calibration::from_bytes(&c.to_bytes().unwrap()).unwrap_err().to_string();
        assert!(err.contains("sensitivity"), "{err}");
    }
}
