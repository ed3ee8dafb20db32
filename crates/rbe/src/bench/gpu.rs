//! The GPU benchmark (features `bench` + `gpu`): the compressed products of the backend-neutral
//! [`Layer`] on the GPU (`gpu_dct_direct`, `gpu_decode`) against a dense f32 GEMV on the same
//! device (`gpu_dense_f32`), same inputs. Weights stay resident in device memory (`cache` is
//! `hot`); times include the upload of `x` and the read-back of `y` (each call waits for the
//! result); every error is checked against the f64 product of the decoded weights. Each row's GB/s
//! is its `bytes_per_call` over its median; the host DRAM probe does not apply (`dram_read_gbs` and
//! every `dram_fraction` are `None`).

use super::cpu::inputs;
use super::report::{BenchReport, Row};
use super::{gemm_f64, max_rel_err};
use crate::error::Error;
use crate::{Backend, EncodedTensor, Layer, Mode};
use std::time::Instant;

/// Median seconds of `f` over `iters` calls after one warm-up.
fn time(mut f: impl FnMut() -> Result<(), Error>, iters: usize) -> Result<f64, Error> {
    f()?;
    let mut t = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Runs the GPU benchmark at `batch` with `iters` timed calls per method on the process-wide
/// context ([`crate::gpu_context`]).
pub fn run(tensor: &EncodedTensor, batch: usize, iters: usize) -> Result<BenchReport, Error> {
    let ctx = crate::gpu_context()?;
    let (rows, cols, nb) = (tensor.rows(), tensor.cols(), batch.max(1));
    let decoded = tensor.decode()?;
    let x = inputs(nb, cols);
    let y_dec = gemm_f64(&decoded, rows, cols, &x, nb);
    let mut results = Vec::new();
    let mut push = |method: &str, seconds: f64, y: &[f32], bytes: usize| {
        let note = Some(format!("on {}", ctx.adapter_name()));
        results.push(Row::new(method, "hot", seconds * 1e6, max_rel_err(y, &y_dec), bytes, Some(bytes), note));
    };
    let dense = rbe_gpu::GpuDense::new(&ctx, tensor.name(), &decoded, rows, cols).map_err(crate::LayerError::from)?;
    let y = dense.forward_batch(&x, nb).map_err(crate::LayerError::from)?;
    let s = time(|| dense.forward_batch(&x, nb).map(drop).map_err(|e| crate::LayerError::from(e).into()), iters)?;
    push("gpu_dense_f32", s, &y, dense.bytes_per_call());
    drop(dense);
    for (mode, method) in [(Mode::DctDirect, "gpu_dct_direct"), (Mode::Decode, "gpu_decode")] {
        let layer = Layer::with_mode(tensor, None, Backend::Gpu, mode)?;
        let y = layer.forward_batch(&x, nb)?;
        let s = time(|| layer.forward_batch(&x, nb).map(drop).map_err(Error::from), iters)?;
        push(method, s, &y, layer.bytes_per_call());
    }
    let resident = tensor.runtime_bytes();
    let mut report = BenchReport {
        shape: [rows, cols],
        threads: rayon::current_num_threads(),
        batch: nb,
        rbe_isa: "gpu",
        candle_avx2_build: cfg!(target_feature = "avx2"),
        stream_bytes: tensor.runtime_bytes() + 4,
        resident_bytes: resident,
        resident_bits_per_weight: crate::report::bits_per_weight(resident as u64, (rows * cols) as u64),
        file_bits_per_weight: crate::report::TensorReport::of_tensor(tensor).bits_per_weight,
        dram_read_gbs: None,
        dram_probe_bytes: None,
        rel_rmse: tensor.stats().rel_rmse,
        results,
        cache_study: Vec::new(),
    };
    report.fill_rates();
    Ok(report)
}
