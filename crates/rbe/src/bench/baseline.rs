//! Baselines the compressed products are timed against: dense f32 (hand-written SIMD GEMV, the
//! `gemm` crate for batches) and candle's quantised `QMatMul` (GGUF Q8_0, Q4_0, Q4_K, ...).

use crate::error::Error;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rbe_cpu::Isa;

/// `y = W x` in dense f32 for `batch` inputs: the row-parallel SIMD GEMV of `rbe-cpu` for one
/// input, the `gemm` crate (on `threads` threads) for more.
pub fn dense_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], batch: usize, y: &mut [f32], threads: usize) {
    if batch == 1 {
        rbe_cpu::dense::gemv(Isa::detected(), w, rows, cols, x, y);
    } else {
        gemm_f32(w, rows, cols, x, batch, y, threads);
    }
}

/// What [`dense_f32`] runs at this batch size.
pub fn dense_f32_note(batch: usize) -> String {
    if batch == 1 { format!("row-parallel {} GEMV", Isa::detected().name()) } else { "gemm crate".to_owned() }
}

/// `y[v] = W x[v]` through the `gemm` crate (`Y = X W^T`).
fn gemm_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], nb: usize, y: &mut [f32], threads: usize) {
    assert!(w.len() >= rows * cols && x.len() >= nb * cols && y.len() >= nb * rows);
    // SAFETY: the strides describe X (nb x cols, row-major), W^T (cols x rows, read from the
    // row-major W) and Y (nb x rows, row-major), all inside the slices checked above.
    unsafe {
        gemm::gemm(
            nb,
            rows,
            cols,
            y.as_mut_ptr(),
            1,
            rows as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            w.as_ptr(),
            cols as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
        );
    }
}

/// A GGUF-quantised copy of a weight matrix, multiplied by candle's `QMatMul`.
pub struct CandleQuantised {
    mm: QMatMul,
    bytes: usize,
}

impl std::fmt::Debug for CandleQuantised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleQuantised").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

fn candle_err(e: candle_core::Error) -> Error {
    Error::Bench(format!("candle: {e}"))
}

impl CandleQuantised {
    /// Quantises the row-major `rows x cols` matrix `w` to `dtype` (`cols` must be a multiple of
    /// the type's block size).
    pub fn new(w: &[f32], rows: usize, cols: usize, dtype: GgmlDType) -> Result<Self, Error> {
        let t = Tensor::from_slice(w, (rows, cols), &Device::Cpu).map_err(candle_err)?;
        let q = QTensor::quantize(&t, dtype).map_err(candle_err)?;
        let bytes = q.storage_size_in_bytes();
        Ok(CandleQuantised { mm: QMatMul::from_qtensor(q).map_err(candle_err)?, bytes })
    }

    /// Stored bytes of the quantised weights.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The input as the tensor [`Self::forward`] takes (`batch x cols`).
    pub fn input(x: &[f32], batch: usize, cols: usize) -> Result<Tensor, Error> {
        Tensor::from_slice(x, (batch, cols), &Device::Cpu).map_err(candle_err)
    }

    /// `Y = X W^T`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        self.mm.forward(x).map_err(candle_err)
    }

    /// [`Self::forward`] flattened to a `Vec`.
    pub fn forward_vec(&self, x: &Tensor) -> Result<Vec<f32>, Error> {
        self.forward(x)?.flatten_all().and_then(|t| t.to_vec1()).map_err(candle_err)
    }
}
