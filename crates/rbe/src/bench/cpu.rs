//! The CPU benchmark: every CPU mode of the backend-neutral [`Layer`] against dense f32 and
//! candle's `QMatMul` (Q8_0, Q4_0, Q4_K), hot (same weights again and again) and cold (cycling
//! through >= 1 GiB of weight copies so every call streams from DRAM), plus the decode-cache study,
//! after a DRAM read-bandwidth probe on the same threads ([`super::dram`]).
//!
//! RBE methods and `dense_f32` are compared with the *decoded* weights; candle's quantised methods
//! with the original f32 weights (synthetic runs; for files, the decoded weights stand in).

use super::baseline::{CandleQuantised, dense_f32, dense_f32_note};
use super::report::{BenchReport, CachePoint, Row};
use super::synthetic::{BENCH_STD, noise_matrix, seed_for};
use super::{cold_copies, gemm_f64, max_rel_err, median_us};
use crate::error::Error;
use crate::{Backend, EncodedTensor, Layer, Mode};
use candle_core::quantized::GgmlDType;
use rbe_cpu::{DecodeMode, Isa};
use rbe_encode::{EncodeSettings, Target, encode_tensor};

/// Which RBE modes a CPU run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeSet {
    /// Every mode.
    #[default]
    All,
    /// `Decode` (`rbe_full_warm`, `rbe_full_cold`).
    Full,
    /// `DctDirect` and `DctDirectQ8`.
    Direct,
    /// `SparseMask`.
    SparseMask,
    /// `ProgressiveCoarse` and `ProgressiveFull`.
    Progressive,
}

/// Options of a CPU run.
#[derive(Debug, Clone)]
pub struct CpuBench {
    /// Input vectors per call.
    pub batch: usize,
    /// Target seconds per measured method.
    pub seconds: f64,
    /// Which RBE modes.
    pub modes: ModeSet,
    /// Time candle's baselines.
    pub candle: bool,
    /// Run the 384x384 cache study at this relative-RMSE target.
    pub cache_study: Option<f64>,
}

/// A seeded synthetic `rows x cols` matrix (N(0, 0.05^2)) encoded at relative RMSE `rel`, with
/// its original weights.
pub fn synthetic_tensor(rows: usize, cols: usize, rel: f64) -> Result<(EncodedTensor, Vec<f32>), Error> {
    if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none_or(|n| n > super::synthetic::MAX_SYNTHETIC_ELEMENTS) {
        return Err(Error::Bench(format!(
            "a synthetic {rows}x{cols} matrix is outside 1..={} weights (1 GiB of f32)",
            super::synthetic::MAX_SYNTHETIC_ELEMENTS
        )));
    }
    let data = noise_matrix(rows, cols, seed_for(rows, cols), BENCH_STD);
    let settings = EncodeSettings { target: Target::RelRmse(rel), profile: None, ..EncodeSettings::default() };
    let out = encode_tensor("synthetic", &data, &[rows, cols], rbe_format::SourceDtype::F32, &settings)?;
    Ok((out.tensor, data))
}

/// The benchmark inputs: `batch x cols` seeded values, scaled to about unit size.
pub fn inputs(batch: usize, cols: usize) -> Vec<f32> {
    noise_matrix(batch, cols, 99, BENCH_STD).iter().map(|v| v * 20.0).collect()
}

/// A row that streams `bytes` (weights) plus `extra` (descriptors) per call.
fn row(
    method: &str,
    cache: &'static str,
    median_us: f64,
    err: f64,
    bytes: usize,
    extra: usize,
    note: Option<String>,
) -> Row {
    Row::new(method, cache, median_us, err, bytes, Some(bytes + extra), note)
}

/// Bytes of `layer`'s per-block descriptors, which every direct-mode call reads besides the
/// weights.
fn descriptor_bytes(layer: &Layer) -> usize {
    layer.as_cpu().map_or(0, rbe_cpu::RbeLinear::descriptor_bytes)
}

/// Runs the CPU benchmark on the current rayon pool. `original`: the weights before encoding,
/// if known (candle's error reference).
pub fn run(tensor: &EncodedTensor, original: Option<&[f32]>, o: &CpuBench) -> Result<BenchReport, Error> {
    let (rows, cols, nb, secs) = (tensor.rows(), tensor.cols(), o.batch.max(1), o.seconds);
    let decoded = tensor.decode()?;
    let reference_w = original.unwrap_or(&decoded);
    let x = inputs(nb, cols);
    let y_dec = gemm_f64(&decoded, rows, cols, &x, nb);
    let threads = rayon::current_num_threads();
    let dram = super::dram::probe();
    let mut results = Vec::new();

    // dense f32
    let mut y = vec![0f32; nb * rows];
    dense_f32(&decoded, rows, cols, &x, nb, &mut y, threads);
    let err = max_rel_err(&y, &y_dec);
    let bytes = 4 * rows * cols;
    let note = Some(dense_f32_note(nb));
    let hot = median_us(secs, |_| dense_f32(&decoded, rows, cols, &x, nb, &mut y, threads));
    results.push(row("dense_f32", "hot", hot, err, bytes, 0, note.clone()));
    let ws: Vec<Vec<f32>> = (0..cold_copies(bytes)).map(|_| decoded.clone()).collect();
    let cold = median_us(secs, |i| dense_f32(&ws[i % ws.len()], rows, cols, &x, nb, &mut y, threads));
    drop(ws);
    results.push(row("dense_f32", "cold", cold, err, bytes, 0, note));

    // RBE modes through the backend-neutral layer
    let all = o.modes == ModeSet::All;
    let mut modes: Vec<(&str, Mode)> = Vec::new();
    if all || o.modes == ModeSet::Direct {
        modes.extend([("rbe_dct_direct", Mode::DctDirect), ("rbe_dct_direct_q8", Mode::DctDirectQ8)]);
    }
    if all || o.modes == ModeSet::SparseMask {
        modes.push(("rbe_sparse_mask", Mode::SparseMask));
    }
    if all || o.modes == ModeSet::Progressive {
        modes.extend([
            ("rbe_progressive_coarse", Mode::ProgressiveCoarse),
            ("rbe_progressive_full", Mode::ProgressiveFull),
        ]);
    }
    let layer = |mode| Layer::with_mode(tensor, None, Backend::Cpu, mode);
    let mut resident = 0;
    for (name, mode) in modes {
        let l = layer(mode)?;
        if mode == Mode::DctDirect {
            resident = l.resident_bytes();
        }
        l.forward_batch_into(&x, nb, &mut y)?;
        let err = max_rel_err(&y, &y_dec);
        let (bytes, desc) = (l.bytes_per_call(), descriptor_bytes(&l));
        let note = (mode == Mode::ProgressiveCoarse).then(|| format!("bound E*|x| = {:.3e}", l.coarse_error_bound()));
        let hot = median_us(secs, |_| drop(l.forward_batch_into(&x, nb, &mut y)));
        results.push(row(name, "hot", hot, err, bytes, desc, note.clone()));
        let mut layers = vec![l];
        while layers.len() < cold_copies(layers[0].resident_bytes()) {
            layers.push(layer(mode)?);
        }
        let cold = median_us(secs, |i| drop(layers[i % layers.len()].forward_batch_into(&x, nb, &mut y)));
        results.push(row(name, "cold", cold, err, bytes, desc, note));
    }
    if resident == 0 {
        resident = layer(Mode::DctDirect)?.resident_bytes();
    }
    if all || o.modes == ModeSet::Full {
        let (b, n_blocks) = (tensor.config().block, tensor.block_count());
        let warm = layer(Mode::Decode)?;
        warm.as_cpu().expect("a CPU layer").set_cache_blocks(n_blocks);
        warm.forward_batch_into(&x, nb, &mut y)?;
        let err = max_rel_err(&y, &y_dec);
        let hot = median_us(secs, |_| drop(warm.forward_batch_into(&x, nb, &mut y)));
        let note = Some("every block cached".to_owned());
        results.push(row("rbe_full_warm", "hot", hot, err, 4 * b * b * n_blocks, 0, note));
        // Cold: the cache emptied before each call, so every call decodes every block it needs.
        let cold_layer = layer(Mode::Decode)?;
        let cpu = cold_layer.as_cpu().expect("a CPU layer");
        let cold = median_us(secs.min(0.3), |_| {
            cpu.clear_cache();
            drop(cold_layer.forward_batch_into(&x, nb, &mut y))
        });
        let note = "cache emptied before each call: every block decoded".to_owned();
        results.push(row("rbe_full_cold", "cold", cold, err, cold_layer.bytes_per_call(), 0, Some(note)));
    }

    if o.candle {
        candle_rows(reference_w, rows, cols, &x, nb, secs, &mut results)?;
    }
    let cache_study = match o.cache_study {
        Some(rel) => cache_study(rel, secs)?,
        None => Vec::new(),
    };
    let mut report = BenchReport {
        shape: [rows, cols],
        threads,
        batch: nb,
        rbe_isa: Isa::detected().name(),
        candle_avx2_build: cfg!(target_feature = "avx2"),
        stream_bytes: tensor.runtime_bytes() + 4,
        resident_bytes: resident,
        resident_bits_per_weight: crate::report::bits_per_weight(resident as u64, (rows * cols) as u64),
        file_bits_per_weight: crate::report::TensorReport::of_tensor(tensor).bits_per_weight,
        dram_read_gbs: Some(dram.gbs),
        dram_probe_bytes: Some(dram.bytes),
        rel_rmse: tensor.stats().rel_rmse,
        results,
        cache_study,
    };
    report.fill_rates();
    Ok(report)
}

/// candle's Q8_0, Q4_0 and Q4_K products of the reference weights, hot and cold.
fn candle_rows(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    nb: usize,
    secs: f64,
    results: &mut Vec<Row>,
) -> Result<(), Error> {
    let y_orig = gemm_f64(w, rows, cols, x, nb);
    for (name, dt) in
        [("candle_q8_0", GgmlDType::Q8_0), ("candle_q4_0", GgmlDType::Q4_0), ("candle_q4_k", GgmlDType::Q4K)]
    {
        if !cols.is_multiple_of(dt.block_size()) {
            let note = Some(format!("skipped: cols not a multiple of {}", dt.block_size()));
            results.push(Row::new(name, "hot", f64::NAN, f64::NAN, 0, None, note));
            continue;
        }
        let mm = CandleQuantised::new(w, rows, cols, dt)?;
        let bytes = mm.bytes();
        let xt = CandleQuantised::input(x, nb, cols)?;
        let err = max_rel_err(&mm.forward_vec(&xt)?, &y_orig);
        let note = Some("error vs the original f32 weights".to_owned());
        let hot = median_us(secs, |_| drop(mm.forward(&xt)));
        results.push(row(name, "hot", hot, err, bytes, 0, note.clone()));
        let mut mms = vec![mm];
        while mms.len() < cold_copies(bytes) {
            mms.push(CandleQuantised::new(w, rows, cols, dt)?);
        }
        let cold = median_us(secs, |i| drop(mms[i % mms.len()].forward(&xt)));
        results.push(row(name, "cold", cold, err, bytes, 0, note));
    }
    Ok(())
}

/// The notes' cache analysis: a 384x384 layer (36 blocks of 64), `Decode` mode, cache 8..36 blocks.
pub fn cache_study(rel: f64, secs: f64) -> Result<Vec<CachePoint>, Error> {
    let (t, _) = synthetic_tensor(384, 384, rel)?;
    let x = noise_matrix(1, 384, 5, BENCH_STD);
    let mut y = vec![0f32; 384];
    let mut out = Vec::new();
    for cap in [8, 16, 24, 32, 36] {
        let layer = Layer::with_mode(&t, None, Backend::Cpu, Mode::Decode)?;
        let cpu = layer.as_cpu().expect("a CPU layer");
        debug_assert_eq!(cpu.mode(), DecodeMode::Full);
        cpu.set_cache_blocks(cap);
        layer.forward_batch_into(&x, 1, &mut y)?;
        cpu.reset_stats();
        let us = median_us(secs.min(0.3), |_| drop(layer.forward_batch_into(&x, 1, &mut y)));
        out.push(CachePoint { cache_blocks: cap, hit_rate: cpu.stats().hit_rate(), median_us: us });
    }
    Ok(out)
}
