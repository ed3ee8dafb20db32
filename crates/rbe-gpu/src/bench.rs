//! Timing helpers for `rbe bench --backend gpu`: the compressed product (`gpu_dct_direct`,
//! `gpu_decode`) against the dense f32 kernel (`gpu_dense_f32`) on the same device, same inputs.
//! Times include the upload of `x` and the read-back of `y` (each call waits for the result).

use crate::{GpuContext, GpuDense, GpuError, GpuLinear, GpuMode};
use rbe_format::EncodedTensor;
use std::time::Instant;

/// One timed method.
#[derive(Debug, Clone)]
pub struct GpuTiming {
    /// `gpu_dense_f32`, `gpu_dct_direct` or `gpu_decode`.
    pub method: &'static str,
    /// Median seconds per call.
    pub seconds: f64,
    /// Weight bytes one call reads.
    pub weight_bytes: usize,
    /// `weight_bytes / seconds / 1e9`.
    pub effective_gbps: f64,
}

fn time(mut f: impl FnMut() -> Result<(), GpuError>, iters: usize) -> Result<f64, GpuError> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Times the dense baseline (from the reference decode) and both compressed modes at `batch`.
pub fn run(ctx: &GpuContext, tensor: &EncodedTensor, batch: usize, iters: usize) -> Result<Vec<GpuTiming>, GpuError> {
    let (rows, cols) = (tensor.rows(), tensor.cols());
    let x: Vec<f32> = (0..batch * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let w = tensor.decode()?;
    let mut out = Vec::new();
    let dense = GpuDense::new(ctx, tensor.name(), &w, rows, cols)?;
    drop(w);
    let s = time(|| dense.forward_batch(&x, batch).map(drop), iters)?;
    out.push(timing("gpu_dense_f32", s, dense.bytes_per_call()));
    drop(dense);
    for (mode, method) in [(GpuMode::DctDirect, "gpu_dct_direct"), (GpuMode::Decode, "gpu_decode")] {
        let layer = GpuLinear::new(ctx, tensor, None, mode)?;
        let s = time(|| layer.forward_batch(&x, batch).map(drop), iters)?;
        out.push(timing(method, s, layer.bytes_per_call()));
    }
    Ok(out)
}

fn timing(method: &'static str, seconds: f64, weight_bytes: usize) -> GpuTiming {
    GpuTiming { method, seconds, weight_bytes, effective_gbps: weight_bytes as f64 / seconds.max(1e-12) / 1e9 }
}
