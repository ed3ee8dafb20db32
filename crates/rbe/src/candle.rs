//! candle integration (feature `candle`): [`RbeCandleLinear`], a `candle_nn::Module` whose product
//! is computed straight from the compressed blocks by [`rbe_cpu::RbeLinear`].
//!
//! Drop it in wherever a model takes a `Linear` as `dyn Module`: the input `[.., in_features]`
//! (any float dtype, CPU device) gives `[.., out_features]` in the input's dtype; the product itself
//! runs in f32 on the CPU backend, bias included.
//!
//! Also [`ggml_roundtrip`]: GGUF-style block quantisation (Q8_0, Q4_0, Q4_K, Q6_K, ...) through
//! candle's own quantiser, for comparisons at equal error.

pub use candle_core::quantized::GgmlDType;
use candle_core::quantized::QTensor;
use candle_core::{D, DType, Device, Module, Tensor};
use rbe_cpu::{CpuError, DecodeMode, RbeLinear};
use rbe_format::EncodedTensor;

/// Errors building an [`RbeCandleLinear`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CandleError {
    /// The CPU backend rejected the tensor or the bias.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// A candle operation failed (e.g. converting the bias).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The data does not split into whole quantisation blocks (caller error).
    #[error("{len} values do not split into {dtype:?} blocks of {block}")]
    Blocks {
        /// Number of values given.
        len: usize,
        /// Requested type.
        dtype: GgmlDType,
        /// Its block size.
        block: usize,
    },
}

/// Storage bits per weight of a GGUF block type (block bytes * 8 / block size): Q8_0 8.5,
/// Q4_0 4.5, Q4_K 4.5, Q6_K 6.5625, F16 16.
pub fn ggml_bits_per_weight(dtype: GgmlDType) -> f64 {
    8.0 * dtype.type_size() as f64 / dtype.block_size() as f64
}

/// Quantises `data` (row-major) to `dtype` with candle's quantiser and dequantises it back.
///
/// Blocks run over the flattened data, exactly as `QTensor::quantize` does; for a matrix whose row
/// length is a multiple of the block size this is `QTensor::quantize` of the matrix itself. For
/// other row lengths (e.g. 384-wide rows and the 256-value k-quant super-blocks, which ggml and
/// candle refuse) super-blocks span row boundaries; the bits per weight are unchanged.
pub fn ggml_roundtrip(data: &[f32], dtype: GgmlDType) -> Result<Vec<f32>, CandleError> {
    let block = dtype.block_size();
    if data.is_empty() || !data.len().is_multiple_of(block) {
        return Err(CandleError::Blocks { len: data.len(), dtype, block });
    }
    let t = Tensor::from_slice(data, (data.len() / block, block), &Device::Cpu)?;
    let q = QTensor::quantize(&t, dtype)?;
    Ok(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

/// [`ggml_roundtrip`] with an importance matrix, as llama.cpp's `--imatrix` quantisation does:
/// `importance[c]` weighs the error of column `c` of a row-major matrix with `cols` columns
/// (llama.cpp uses the mean squared activation of input `c` on calibration text).
///
/// Rows are grouped so that a quantiser row spans whole matrix rows and whole blocks
/// (`lcm(cols, block)` values, the importance repeated to match); only the k-quants candle
/// implements imatrix quantisation for (Q2_K .. Q6_K) are accepted.
pub fn ggml_roundtrip_imatrix(
    data: &[f32],
    cols: usize,
    importance: &[f32],
    dtype: GgmlDType,
) -> Result<Vec<f32>, CandleError> {
    let block = dtype.block_size();
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let row = if cols == 0 { 0 } else { cols / gcd(cols, block) * block };
    if row == 0 || importance.len() != cols || data.is_empty() || !data.len().is_multiple_of(row) {
        return Err(CandleError::Blocks { len: data.len(), dtype, block });
    }
    let weights: Vec<f32> = importance.iter().copied().cycle().take(row).collect();
    let t = Tensor::from_slice(data, (data.len() / row, row), &Device::Cpu)?;
    let q = QTensor::quantize_imatrix(&t, &weights, dtype)?;
    Ok(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A linear layer `y = x W^T + b` over a compressed weight matrix, usable as `candle_nn::Module`.
///
/// `Send + Sync`; the weight stays compressed (see [`RbeCandleLinear::resident_bytes`]).
#[derive(Debug)]
pub struct RbeCandleLinear {
    inner: RbeLinear,
}

impl RbeCandleLinear {
    /// Builds the layer from a compressed `[out_features, in_features]` tensor and an optional bias
    /// of `out_features` values (any float dtype; converted to f32).
    pub fn new(tensor: &EncodedTensor, bias: Option<&Tensor>, mode: DecodeMode) -> Result<Self, CandleError> {
        let bias = bias.map(|b| b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()).transpose()?;
        Ok(RbeCandleLinear { inner: RbeLinear::new(tensor, bias, mode)? })
    }

    /// Wraps an existing layer.
    pub fn from_linear(inner: RbeLinear) -> Self {
        RbeCandleLinear { inner }
    }

    /// The CPU layer underneath (statistics, cache size, ISA).
    pub fn linear(&self) -> &RbeLinear {
        &self.inner
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.inner.in_features()
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.inner.out_features()
    }

    /// Bytes the layer keeps resident (compressed weight, descriptors, bias).
    pub fn resident_bytes(&self) -> usize {
        self.inner.resident_bytes()
    }
}

impl Module for RbeCandleLinear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if !matches!(xs.device(), Device::Cpu) {
            candle_core::bail!("RbeCandleLinear `{}`: only CPU tensors are supported", self.inner.name());
        }
        let in_f = self.in_features();
        let last = xs.dim(D::Minus1)?;
        if last != in_f {
            candle_core::bail!("RbeCandleLinear `{}`: input width {last}, expected {in_f}", self.inner.name());
        }
        let mut dims = xs.dims().to_vec();
        let batch = xs.elem_count() / in_f;
        let x = xs.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let y = self.inner.forward_batch(&x, batch).map_err(candle_core::Error::wrap)?;
        *dims.last_mut().expect("input has a last dimension") = self.out_features();
        Tensor::from_vec(y, dims, &Device::Cpu)?.to_dtype(xs.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbe_encode::{EncodeSettings, Target, encode_tensor};

    /// Deterministic uniform values in `[-0.5, 0.5)`, std ~0.3.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rbe_testkit::Rng::new(seed);
        (0..n).map(|_| rng.centred_f32()).collect()
    }

    #[test]
    fn matches_dense_product_of_the_decode() {
        let (rows, cols) = (96, 80);
        let w = noise(rows * cols, 7);
        let settings = EncodeSettings { target: Target::RelRmse(0.01), profile: None, ..Default::default() };
        let enc = encode_tensor("w", &w, &[rows, cols], rbe_format::SourceDtype::F32, &settings).unwrap();
        let dec = enc.tensor.decode().unwrap();
        let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 0.01).collect();
        let bias_t = Tensor::from_vec(bias.clone(), rows, &Device::Cpu).unwrap();
        let layer = RbeCandleLinear::new(&enc.tensor, Some(&bias_t), DecodeMode::DctDirect).unwrap();
        // [2, 3, cols] input: the leading dimensions are kept.
        let x = noise(6 * cols, 11);
        let xs = Tensor::from_vec(x.clone(), (2, 3, cols), &Device::Cpu).unwrap();
        let ys = layer.forward(&xs).unwrap();
        assert_eq!(ys.dims(), &[2, 3, rows]);
        let y = ys.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for v in 0..6 {
            for r in 0..rows {
                let want: f32 = bias[r] + (0..cols).map(|c| dec[r * cols + c] * x[v * cols + c]).sum::<f32>();
                let got = y[v * rows + r];
                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "row {r} vector {v}: {got} vs {want}");
            }
        }
        // f16 in, f16 out; wrong width is an error, not a panic.
        let ys16 = layer.forward(&xs.to_dtype(DType::F16).unwrap()).unwrap();
        assert_eq!(ys16.dtype(), DType::F16);
        assert!(layer.forward(&Tensor::zeros((2, cols + 1), DType::F32, &Device::Cpu).unwrap()).is_err());
    }

    #[test]
    fn ggml_roundtrip_equals_qtensor_on_aligned_rows() {
        let (rows, cols) = (4, 512);
        let w = noise(rows * cols, 3);
        for dt in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let ours = ggml_roundtrip(&w, dt).unwrap();
            let t = Tensor::from_slice(&w, (rows, cols), &Device::Cpu).unwrap();
            let theirs = QTensor::quantize(&t, dt).unwrap().dequantize(&Device::Cpu).unwrap();
            assert_eq!(ours, theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "{dt:?}");
        }
        assert_eq!(ggml_bits_per_weight(GgmlDType::Q8_0), 8.5);
        assert_eq!(ggml_bits_per_weight(GgmlDType::Q4K), 4.5);
        assert_eq!(ggml_bits_per_weight(GgmlDType::Q6K), 6.5625);
        assert!(ggml_roundtrip(&w[..100], GgmlDType::Q4_0).is_err());
    }
}
