//! `rbe bench`: times every CPU decode mode of `rbe-cpu` against dense f32 (hand-written SIMD
//! GEMV, or the `gemm` crate for batches) and candle's `QMatMul` (Q8_0, Q4_0, Q4_K), hot (same
//! weights again and again) and cold (cycling through >= 1 GiB of weight copies so every call
//! streams from DRAM). Prints a table, or `--json`, and optionally an SVG chart.
//!
//! Errors: `max_rel_err = max |y - y_ref| / max |y_ref|` against an f64 product. RBE methods and
//! `dense_f32` are compared with the *decoded* weights; candle's quantised methods with the
//! original f32 weights (synthetic runs; for files, the decoded weights stand in for them).

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rbe_cpu::dense::{gemm_f64, max_rel_err};
use rbe_cpu::{DecodeMode, Isa, Precision, RbeLinear};
use rbe_encode::{EncodeSettings, Target, encode_tensor};
use rbe_format::{EncodedTensor, RbeFile};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// `rbe bench FILE --tensor NAME | --synthetic RxC [--rel-rmse X] [options]`
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The .rbe file (omit with --synthetic).
    pub input: Option<PathBuf>,
    /// Tensor to benchmark (with FILE).
    #[arg(long)]
    pub tensor: Option<String>,
    /// Seeded noise-like ROWSxCOLS weights ~ N(0, 0.05), encoded in-process.
    #[arg(long, value_name = "ROWSxCOLS")]
    pub synthetic: Option<String>,
    /// Error target of the synthetic encode.
    #[arg(long, default_value_t = 0.0735)]
    pub rel_rmse: f64,
    /// Which RBE modes to run.
    #[arg(long, default_value = "all", value_parser = ["all", "full", "direct", "sparse-mask", "progressive"])]
    pub mode: String,
    /// Input vectors per call (1 = GEMV).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Target seconds per measured method (more = steadier medians).
    #[arg(long, default_value_t = 0.6)]
    pub seconds: f64,
    /// Skip the 384x384 cache study.
    #[arg(long)]
    pub no_cache_study: bool,
    /// Skip candle's baselines (quicker runs while tuning).
    #[arg(long)]
    pub no_candle: bool,
    /// Backend: `cpu` (every CPU mode against dense and candle) or `gpu` (wgpu: `gpu_dense_f32`,
    /// `gpu_dct_direct`, `gpu_decode` on the chosen adapter; `RBE_WGPU_ADAPTER` picks it by name).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    pub backend: String,
}

#[derive(Serialize, Clone)]
struct Row {
    method: String,
    cache: &'static str,
    median_us: f64,
    max_rel_err: f64,
    bytes_read: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct CachePoint {
    cache_blocks: usize,
    hit_rate: f64,
    median_us: f64,
}

#[derive(Serialize)]
struct Report {
    shape: [usize; 2],
    threads: usize,
    batch: usize,
    rbe_isa: &'static str,
    candle_avx2_build: bool,
    stream_bytes: usize,
    resident_bytes: usize,
    rel_rmse: f64,
    results: Vec<Row>,
    cache_study: Vec<CachePoint>,
}

const COLD_BYTES: usize = 1 << 30;

/// Seeded N(0, 0.05) weights.
fn synthetic(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    rbe_encode::synthetic::noise_matrix(rows, cols, seed, 0.05)
}

fn encode_synthetic(rows: usize, cols: usize, rel: f64) -> Result<(EncodedTensor, Vec<f32>)> {
    let data = synthetic(rows, cols, rbe_encode::synthetic::seed_for(rows, cols));
    let settings = EncodeSettings { target: Target::RelRmse(rel), profile: None, ..EncodeSettings::default() };
    let out = encode_tensor("synthetic", &data, &[rows, cols], "F32", &settings).map_err(|e| anyhow!("{e}"))?;
    Ok((out.tensor, data))
}

/// Median microseconds of `f(i)` over enough runs to fill about `seconds`.
fn time<F: FnMut(usize)>(seconds: f64, mut f: F) -> f64 {
    for i in 0..3 {
        f(i);
    }
    let t = Instant::now();
    f(3);
    let one = t.elapsed().as_secs_f64().max(1e-7);
    let runs = ((seconds / one) as usize).clamp(7, 2000);
    let mut v: Vec<f64> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            f(i + 4);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn copies(bytes: usize) -> usize {
    COLD_BYTES.div_ceil(bytes.max(1)).max(2)
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads.max(1)).build()?;
    pool.install(|| bench(a))
}

fn bench(a: &BenchArgs) -> Result<()> {
    let (tensor, original) = match (&a.synthetic, &a.input) {
        (Some(s), None) => {
            let (r, c) = s.split_once('x').ok_or_else(|| anyhow!("--synthetic wants ROWSxCOLS, got `{s}`"))?;
            let (rows, cols): (usize, usize) = (r.parse()?, c.parse()?);
            if rows == 0 || cols == 0 {
                bail!("--synthetic needs non-zero sizes");
            }
            let (t, d) = encode_synthetic(rows, cols, a.rel_rmse)?;
            (t, Some(d))
        }
        (None, Some(path)) => {
            let name = a.tensor.as_deref().ok_or_else(|| anyhow!("--tensor NAME is required with a file"))?;
            let file = RbeFile::open(path).with_context(|| format!("opening {}", path.display()))?;
            (file.tensor(name)?, None)
        }
        _ => bail!("give either FILE --tensor NAME or --synthetic ROWSxCOLS"),
    };
    let (rows, cols, nb) = (tensor.rows(), tensor.cols(), a.batch.max(1));
    let decoded = tensor.decode()?;
    let reference_w = original.as_deref().unwrap_or(&decoded);
    let x: Vec<f32> = synthetic(nb, cols, 99).iter().map(|v| v * 20.0).collect();
    let y_dec = gemm_f64(&decoded, rows, cols, &x, nb);
    let y_orig = gemm_f64(reference_w, rows, cols, &x, nb);
    let secs = a.seconds;
    if a.backend == "gpu" {
        return bench_gpu(a, &tensor, &x, &y_dec, nb);
    }
    let mut results = Vec::new();

    // dense f32
    {
        let isa = Isa::detected();
        let run_dense = |w: &[f32], y: &mut [f32]| {
            if nb == 1 {
                rbe_cpu::dense::gemv(isa, w, rows, cols, &x, y);
            } else {
                gemm_f32(w, rows, cols, &x, nb, y, rayon::current_num_threads());
            }
        };
        let mut y = vec![0f32; nb * rows];
        run_dense(&decoded, &mut y);
        let err = max_rel_err(&y, &y_dec);
        let bytes = 4 * rows * cols;
        let note = Some(if nb == 1 { format!("row-parallel {} GEMV", isa.name()) } else { "gemm crate".to_owned() });
        let hot = time(secs, |_| run_dense(&decoded, &mut y));
        results.push(Row {
            method: "dense_f32".into(),
            cache: "hot",
            median_us: hot,
            max_rel_err: err,
            bytes_read: bytes,
            note: note.clone(),
        });
        let ws: Vec<Vec<f32>> = (0..copies(bytes)).map(|_| decoded.clone()).collect();
        let cold = time(secs, |i| run_dense(&ws[i % ws.len()], &mut y));
        results.push(Row {
            method: "dense_f32".into(),
            cache: "cold",
            median_us: cold,
            max_rel_err: err,
            bytes_read: bytes,
            note,
        });
    }

    // RBE modes
    let mut modes: Vec<(&str, DecodeMode)> = Vec::new();
    let all = a.mode == "all";
    if all || a.mode == "direct" {
        modes.push(("rbe_dct_direct", DecodeMode::DctDirect));
        modes.push(("rbe_dct_direct_q8", DecodeMode::DctDirectQ8));
    }
    if all || a.mode == "sparse-mask" {
        modes.push(("rbe_sparse_mask", DecodeMode::SparseMask));
    }
    if all || a.mode == "progressive" {
        modes.push(("rbe_progressive_coarse", DecodeMode::Progressive(Precision::Coarse)));
        modes.push(("rbe_progressive_full", DecodeMode::Progressive(Precision::Full)));
    }
    let mut resident = 0;
    for (name, mode) in modes {
        let layer = RbeLinear::new(&tensor, None, mode)?;
        if mode == DecodeMode::DctDirect {
            resident = layer.resident_bytes();
        }
        let mut y = vec![0f32; nb * rows];
        layer.forward_batch_into(&x, nb, &mut y)?;
        let err = max_rel_err(&y, &y_dec);
        let bytes = layer.bytes_per_call();
        let note = (mode == DecodeMode::Progressive(Precision::Coarse))
            .then(|| format!("bound E*|x| = {:.3e}", layer.coarse_error_bound()));
        let hot = time(secs, |_| drop(layer.forward_batch_into(&x, nb, &mut y)));
        results.push(Row {
            method: name.into(),
            cache: "hot",
            median_us: hot,
            max_rel_err: err,
            bytes_read: bytes,
            note: note.clone(),
        });
        let mut layers = vec![layer];
        while layers.len() < copies(layers[0].resident_bytes()) {
            layers.push(RbeLinear::new(&tensor, None, mode)?);
        }
        let cold = time(secs, |i| drop(layers[i % layers.len()].forward_batch_into(&x, nb, &mut y)));
        results.push(Row {
            method: name.into(),
            cache: "cold",
            median_us: cold,
            max_rel_err: err,
            bytes_read: bytes,
            note,
        });
    }
    if all || a.mode == "full" {
        let b = tensor.config().block;
        let n_blocks = tensor.block_count();
        let layer = RbeLinear::new(&tensor, None, DecodeMode::Full)?;
        layer.set_cache_blocks(n_blocks);
        let mut y = vec![0f32; nb * rows];
        layer.forward_batch_into(&x, nb, &mut y)?;
        let err = max_rel_err(&y, &y_dec);
        let hot = time(secs, |_| drop(layer.forward_batch_into(&x, nb, &mut y)));
        results.push(Row {
            method: "rbe_full_warm".into(),
            cache: "hot",
            median_us: hot,
            max_rel_err: err,
            bytes_read: 4 * b * b * n_blocks,
            note: Some("every block cached".into()),
        });
        // Cold: the file's cache size, every call decodes what it needs.
        let cold_layer = RbeLinear::new(&tensor, None, DecodeMode::Full)?;
        let cap = tensor.desc().cache_blocks;
        let cold = time(secs.min(0.3), |_| {
            cold_layer.clear_cache();
            drop(cold_layer.forward_batch_into(&x, nb, &mut y))
        });
        results.push(Row {
            method: "rbe_full_cold".into(),
            cache: "cold",
            median_us: cold,
            max_rel_err: err,
            bytes_read: cold_layer.bytes_per_call(),
            note: Some(format!("cache {cap} blocks, emptied before each call: every block decoded")),
        });
    }

    // candle
    for (name, dt) in
        [("candle_q8_0", GgmlDType::Q8_0), ("candle_q4_0", GgmlDType::Q4_0), ("candle_q4_k", GgmlDType::Q4K)]
    {
        if a.no_candle {
            break;
        }
        if cols % dt.block_size() != 0 {
            results.push(Row {
                method: name.into(),
                cache: "hot",
                median_us: f64::NAN,
                max_rel_err: f64::NAN,
                bytes_read: 0,
                note: Some(format!("skipped: cols not a multiple of {}", dt.block_size())),
            });
            continue;
        }
        let make = || -> Result<(QMatMul, usize)> {
            let w = Tensor::from_slice(reference_w, (rows, cols), &Device::Cpu)?;
            let q = QTensor::quantize(&w, dt)?;
            let bytes = q.storage_size_in_bytes();
            Ok((QMatMul::from_qtensor(q)?, bytes))
        };
        let (mm, bytes) = make()?;
        let xt = Tensor::from_slice(&x, (nb, cols), &Device::Cpu)?;
        let y: Vec<f32> = mm.forward(&xt)?.flatten_all()?.to_vec1()?;
        let err = max_rel_err(&y, &y_orig);
        let note = Some("error vs the original f32 weights".to_owned());
        let hot = time(secs, |_| drop(mm.forward(&xt)));
        results.push(Row {
            method: name.into(),
            cache: "hot",
            median_us: hot,
            max_rel_err: err,
            bytes_read: bytes,
            note: note.clone(),
        });
        let mut mms = vec![mm];
        while mms.len() < copies(bytes) {
            mms.push(make()?.0);
        }
        let cold = time(secs, |i| drop(mms[i % mms.len()].forward(&xt)));
        results.push(Row {
            method: name.into(),
            cache: "cold",
            median_us: cold,
            max_rel_err: err,
            bytes_read: bytes,
            note,
        });
    }

    let cache_study = if a.no_cache_study { Vec::new() } else { cache_study(a.rel_rmse, secs)? };
    let report = Report {
        shape: [rows, cols],
        threads: rayon::current_num_threads(),
        batch: nb,
        rbe_isa: Isa::detected().name(),
        candle_avx2_build: cfg!(target_feature = "avx2"),
        stream_bytes: tensor.runtime_bytes() + 4,
        resident_bytes: resident,
        rel_rmse: tensor.desc().rel_rmse,
        results,
        cache_study,
    };
    if let Some(path) = &a.plot {
        plot(&report, path)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The notes' cache analysis: a 384x384 layer (36 blocks of 64), `Full` mode, cache 8..36 blocks.
fn cache_study(rel: f64, secs: f64) -> Result<Vec<CachePoint>> {
    let (t, _) = encode_synthetic(384, 384, rel)?;
    let x = synthetic(1, 384, 5);
    let mut y = vec![0f32; 384];
    let mut out = Vec::new();
    for cap in [8, 16, 24, 32, 36] {
        let layer = RbeLinear::new(&t, None, DecodeMode::Full)?;
        layer.set_cache_blocks(cap);
        layer.forward_into(&x, &mut y)?;
        layer.reset_stats();
        let us = time(secs.min(0.3), |_| drop(layer.forward_into(&x, &mut y)));
        out.push(CachePoint { cache_blocks: cap, hit_rate: layer.stats().hit_rate(), median_us: us });
    }
    Ok(out)
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

/// `--backend gpu`: the same report, methods prefixed `gpu_`; weights stay resident in device memory
/// (`cache` is `hot`), and every method's error is checked against the f64 product of the decoded
/// weights.
fn bench_gpu(a: &BenchArgs, tensor: &EncodedTensor, x: &[f32], y_dec: &[f64], nb: usize) -> Result<()> {
    let ctx = rbe_gpu::GpuContext::new()?;
    let iters = ((a.seconds * 50.0) as usize).clamp(5, 200);
    let timings = rbe_gpu::bench::run(&ctx, tensor, nb, iters)?;
    let decoded = tensor.decode()?;
    let mut results = Vec::new();
    for t in timings {
        let y = match t.method {
            "gpu_dense_f32" => rbe_gpu::GpuDense::new(&ctx, tensor.name(), &decoded, tensor.rows(), tensor.cols())?
                .forward_batch(x, nb)?,
            "gpu_decode" => {
                rbe_gpu::GpuLinear::new(&ctx, tensor, None, rbe_gpu::GpuMode::Decode)?.forward_batch(x, nb)?
            }
            _ => rbe_gpu::GpuLinear::new(&ctx, tensor, None, rbe_gpu::GpuMode::DctDirect)?.forward_batch(x, nb)?,
        };
        results.push(Row {
            method: t.method.to_owned(),
            cache: "hot",
            median_us: t.seconds * 1e6,
            max_rel_err: max_rel_err(&y, y_dec),
            bytes_read: t.weight_bytes,
            note: Some(format!("{:.1} GB/s effective on {}", t.effective_gbps, ctx.adapter_name())),
        });
    }
    let report = Report {
        shape: [tensor.rows(), tensor.cols()],
        threads: rayon::current_num_threads(),
        batch: nb,
        rbe_isa: "gpu",
        candle_avx2_build: cfg!(target_feature = "avx2"),
        stream_bytes: tensor.runtime_bytes() + 4,
        resident_bytes: tensor.runtime_bytes(),
        rel_rmse: tensor.desc().rel_rmse,
        results,
        cache_study: Vec::new(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "shape {}x{}  batch {}  threads {}  rbe isa {}  candle built with avx2: {}  stream {} B  resident {} B ({:.2}x)  rel_rmse {:.4}",
        r.shape[0],
        r.shape[1],
        r.batch,
        r.threads,
        r.rbe_isa,
        r.candle_avx2_build,
        r.stream_bytes,
        r.resident_bytes,
        r.resident_bytes as f64 / r.stream_bytes.max(1) as f64,
        r.rel_rmse
    );
    println!(
        "{:<24} {:<5} {:>12} {:>10} {:>12} {:>9}",
        "method", "cache", "median_us", "max_err", "bytes_read", "vs dense"
    );
    for row in &r.results {
        let dense = r
            .results
            .iter()
            .find(|d| d.method == "dense_f32" && d.cache == row.cache)
            .map_or(f64::NAN, |d| d.median_us);
        println!(
            "{:<24} {:<5} {:>12.1} {:>10.2e} {:>12} {:>8.2}x  {}",
            row.method,
            row.cache,
            row.median_us,
            row.max_rel_err,
            row.bytes_read,
            dense / row.median_us,
            row.note.as_deref().unwrap_or("")
        );
    }
    if !r.cache_study.is_empty() {
        println!("cache study, 384x384 (36 blocks), Full mode:");
        for c in &r.cache_study {
            println!(
                "  cache {:>2} blocks: hit rate {:>5.1}%  {:>9.1} us/forward",
                c.cache_blocks,
                100.0 * c.hit_rate,
                c.median_us
            );
        }
    }
}

fn plot(r: &Report, path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let rows: Vec<&Row> = r.results.iter().filter(|x| x.median_us.is_finite()).collect();
    let max = rows.iter().map(|x| x.median_us).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}x{} batch {} ({} threads): median us per call", r.shape[0], r.shape[1], r.batch, r.threads),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(200)
        .build_cartesian_2d(0f64..max, 0usize..rows.len())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|i| rows.get(*i).map_or(String::new(), |x| format!("{} ({})", x.method, x.cache)))
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, x)| {
        let color = if x.method.starts_with("rbe") {
            BLUE
        } else if x.method.starts_with("candle") {
            RED
        } else {
            BLACK
        };
        Rectangle::new([(0.0, i), (x.median_us, i + 1)], color.mix(if x.cache == "hot" { 0.4 } else { 0.8 }).filled())
    }))?;
    if !r.cache_study.is_empty() {
        let tmax = r.cache_study.iter().map(|c| c.median_us).fold(1.0, f64::max) * 1.1;
        let mut c2 = ChartBuilder::on(&bottom)
            .caption("cache study 384x384 (36 blocks): us per forward (blue), hit rate x100 (red)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..40, 0f64..tmax.max(100.0))?;
        c2.configure_mesh().x_desc("cache blocks").draw()?;
        c2.draw_series(LineSeries::new(r.cache_study.iter().map(|c| (c.cache_blocks, c.median_us)), &BLUE))?;
        c2.draw_series(LineSeries::new(r.cache_study.iter().map(|c| (c.cache_blocks, 100.0 * c.hit_rate)), &RED))?;
    }
    root.present()?;
    Ok(())
}
