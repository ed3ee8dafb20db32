//! The capture wrapper: any candle Linear (`Module`) wrapped so that each forward adds its
//! inputs' second moments `H = X^T X` (real tokens only) to the recorder's calibration.

use super::bert::Linear;
use crate::encode::calibration::{Calibration, TensorCalibration};
use candle_core::{DType, Module, Tensor};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A forward the capture wrapper cannot record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The input's last dimension is not the Linear's input width.
    #[error("`{name}`: input has {got} features, the Linear takes {inputs}")]
    Width {
        /// The Linear.
        name: String,
        /// Its input width.
        inputs: usize,
        /// The input's last dimension.
        got: usize,
    },
    /// The token mask does not cover the input's rows.
    #[error("`{name}`: the token mask has {mask} entries for {rows} input rows")]
    MaskLength {
        /// The Linear.
        name: String,
        /// Entries in the mask.
        mask: usize,
        /// Rows of the input (every dimension but the last).
        rows: usize,
    },
}

/// Which rows of the coming forwards are real tokens, shared by every [`CaptureLinear`] of one
/// [`Recorder`]. The driver sets it before each forward (row-major over every dimension of the
/// Linear's input but the last, e.g. `[batch, seq]`); with no mask set every row counts.
#[derive(Debug, Clone, Default)]
pub struct TokenMask(Arc<RwLock<Option<Arc<[bool]>>>>);

impl TokenMask {
    /// Marks the real tokens of the coming forwards.
    pub fn set(&self, real: &[bool]) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(real.into());
    }

    /// Marks the real tokens from a 0/1 `attention_mask` tensor (any shape, any dtype).
    pub fn set_from_tensor(&self, mask: &Tensor) -> candle_core::Result<()> {
        let v = mask.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        self.set(&v.iter().map(|&m| m != 0.0).collect::<Vec<_>>());
        Ok(())
    }

    /// Counts every row from now on.
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn get(&self) -> Option<Arc<[bool]>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// `H` summed in f64 across forwards (each forward's `X^T X` is one f32 product).
#[derive(Debug)]
struct Accumulator {
    inputs: usize,
    h: Vec<f64>,
    tokens: u64,
}

/// A Linear whose forward also records its inputs into the [`Recorder`] that wrapped it.
/// Its output is exactly the wrapped Linear's.
pub struct CaptureLinear {
    name: String,
    inner: Linear,
    acc: Arc<Mutex<Accumulator>>,
    mask: TokenMask,
}

impl CaptureLinear {
    fn record(&self, x: &Tensor) -> candle_core::Result<()> {
        let inputs = self.acc.lock().unwrap_or_else(PoisonError::into_inner).inputs;
        let got = x.dims().last().copied().unwrap_or(0);
        if got != inputs {
            return Err(candle_core::Error::wrap(CaptureError::Width { name: self.name.clone(), inputs, got }));
        }
        let rows = x.elem_count() / inputs.max(1);
        let mut xs = x.to_dtype(DType::F32)?.reshape((rows, inputs))?;
        let mut tokens = rows;
        if let Some(mask) = self.mask.get() {
            if mask.len() != rows {
                return Err(candle_core::Error::wrap(CaptureError::MaskLength {
                    name: self.name.clone(),
                    mask: mask.len(),
                    rows,
                }));
            }
            let keep: Vec<u32> = (0..rows as u32).filter(|&r| mask[r as usize]).collect();
            tokens = keep.len();
            if tokens == 0 {
                return Ok(());
            }
            if tokens < rows {
                xs = xs.index_select(&Tensor::new(keep.as_slice(), x.device())?, 0)?;
            }
        }
        let h = xs.t()?.matmul(&xs.contiguous()?)?.flatten_all()?.to_vec1::<f32>()?;
        let mut acc = self.acc.lock().unwrap_or_else(PoisonError::into_inner);
        for (a, &v) in acc.h.iter_mut().zip(&h) {
            *a += f64::from(v);
        }
        acc.tokens += tokens as u64;
        Ok(())
    }
}

impl Module for CaptureLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.record(x)?;
        self.inner.forward(x)
    }
}

/// Hands out [`CaptureLinear`]s that share one [`TokenMask`] and collects what they record into
/// a [`Calibration`].
///
/// ```ignore
/// let mut rec = Recorder::new();
/// let q = rec.wrap("layer.0.q.weight", 384, candle_nn::Linear::new(w, b)); // use `q` in the model
/// rec.mask().set_from_tensor(&attention_mask)?;                            // before each forward
/// let calibration = rec.finish();                                          // H and token counts
/// ```
#[derive(Debug, Default)]
pub struct Recorder {
    mask: TokenMask,
    records: BTreeMap<String, Arc<Mutex<Accumulator>>>,
}

impl Recorder {
    /// A recorder with no Linears and no mask.
    pub fn new() -> Self {
        Self::default()
    }

    /// The mask every wrapper of this recorder reads.
    pub fn mask(&self) -> &TokenMask {
        &self.mask
    }

    /// Wraps `inner`, a Linear with `inputs` input features whose weight is called `weight_name`
    /// in the calibration file (the tensor name in the model, e.g. `encoder.layer.0.attention.self.query.weight`).
    /// Wrapping a second Linear under the same name adds both into one record.
    pub fn wrap(
        &mut self,
        weight_name: &str,
        inputs: usize,
        inner: impl Module + Send + Sync + 'static,
    ) -> CaptureLinear {
        let acc = self
            .records
            .entry(weight_name.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Accumulator { inputs, h: vec![0.0; inputs * inputs], tokens: 0 })))
            .clone();
        CaptureLinear { name: weight_name.to_owned(), inner: Box::new(inner), acc, mask: self.mask.clone() }
    }

    /// What each Linear has recorded so far (those that saw no token are left out).
    pub fn tensors(&self) -> BTreeMap<String, TensorCalibration> {
        self.records
            .iter()
            .filter_map(|(name, acc)| {
                let acc = acc.lock().unwrap_or_else(PoisonError::into_inner);
                (acc.tokens > 0).then(|| {
                    let t = TensorCalibration {
                        inputs: acc.inputs,
                        hessian: acc.h.iter().map(|&v| v as f32).collect(),
                        tokens: acc.tokens,
                        sensitivity: None,
                    };
                    (name.clone(), t)
                })
            })
            .collect()
    }

    /// The calibration recorded (no metadata, no sensitivities yet).
    pub fn finish(self) -> Calibration {
        Calibration { tensors: self.tensors(), ..Calibration::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn linear(out: usize, inputs: usize) -> candle_nn::Linear {
        let w: Vec<f32> = (0..out * inputs).map(|i| (i as f32 * 0.37).sin()).collect();
        candle_nn::Linear::new(Tensor::from_vec(w, (out, inputs), &Device::Cpu).unwrap(), None)
    }

    #[test]
    fn records_the_second_moments_of_real_tokens_only() {
        let mut rec = Recorder::new();
        let inner = linear(3, 2);
        let expected = inner.forward(&Tensor::zeros((2, 3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let cap = rec.wrap("w", 2, inner);
        // Batch of 2 sequences of 3 tokens; the last token of the first and the last two of the
        // second are padding (values that would dominate H if they were counted).
        let x = Tensor::from_vec(
            vec![1f32, 2., 3., -1., 100., 100., 0.5, 4., 100., -100., 100., 100.],
            (2, 3, 2),
            &Device::Cpu,
        )
        .unwrap();
        rec.mask().set(&[true, true, false, true, false, false]);
        let y = cap.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 3, 3]);
        assert_eq!(expected.dims(), y.dims());
        let t = &rec.tensors()["w"];
        assert_eq!(t.tokens, 3);
        // Rows (1, 2), (3, -1), (0.5, 4): H = sum x x^T.
        let want = TensorCalibration::from_inputs(2, &[1., 2., 3., -1., 0.5, 4.]);
        assert_eq!(t.hessian, want.hessian);
        // Without a mask every row counts.
        rec.mask().clear();
        cap.forward(&Tensor::from_vec(vec![1f32, 1.], (1, 2), &Device::Cpu).unwrap()).unwrap();
        let t = &rec.tensors()["w"];
        assert_eq!(t.tokens, 4);
        assert_eq!(
            t.hessian,
            vec![want.hessian[0] + 1.0, want.hessian[1] + 1.0, want.hessian[2] + 1.0, want.hessian[3] + 1.0]
        );
    }

    #[test]
    fn the_output_is_the_wrapped_linear_s() {
        let mut rec = Recorder::new();
        let x = Tensor::from_vec((0..8).map(|i| i as f32 - 3.5).collect::<Vec<_>>(), (2, 4), &Device::Cpu).unwrap();
        let want = linear(5, 4).forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let got = rec.wrap("w", 4, linear(5, 4)).forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn a_mismatched_mask_or_width_is_an_error_naming_the_linear() {
        let mut rec = Recorder::new();
        let cap = rec.wrap("layer.w", 2, linear(3, 2));
        rec.mask().set(&[true]);
        let err = cap.forward(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(err.contains("layer.w") && err.contains("1 entries for 2"), "{err}");
        rec.mask().clear();
        let err = cap.forward(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()).unwrap_err().to_string();
        assert!(err.contains("3 features"), "{err}");
        assert!(rec.tensors().is_empty(), "nothing recorded from failed forwards");
    }
}
