//! `rbe bench`: parses the arguments, runs `rbe::bench::cpu::run` (every CPU mode of `rbe::Layer`
//! against dense f32 and candle's `QMatMul`, hot and cold) or `rbe::bench::gpu::run`, and prints a
//! table, or `--json`, and optionally an SVG chart. What is measured and how is documented in
//! `rbe::bench`.

use crate::Usage;
use crate::verify::cli_error;
use anyhow::Result;
use rbe::bench::cpu::{self, CpuBench, ModeSet};
use rbe::bench::synthetic::MAX_SYNTHETIC_ELEMENTS;
use rbe::bench::{BenchReport as Report, Row};
use rbe::{EncodedTensor, Model};
use std::path::PathBuf;

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
    /// Target seconds per measured method (more = steadier medians); default 0.6, less for
    /// small matrices, whose medians settle sooner.
    #[arg(long)]
    pub seconds: Option<f64>,
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

/// Runs `rbe bench` on a pool of `--threads` workers.
pub fn run(a: &BenchArgs) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads.max(1)).build()?;
    pool.install(|| bench(a))
}

/// The time budget per method: `--seconds`, or [`rbe::bench::default_seconds`] for this matrix.
fn seconds(a: &BenchArgs, tensor: &EncodedTensor) -> f64 {
    a.seconds.unwrap_or_else(|| rbe::bench::default_seconds(tensor.rows() * tensor.cols() * a.batch.max(1)))
}

fn bench(a: &BenchArgs) -> Result<()> {
    if a.batch == 0 {
        return Err(Usage("--batch must be at least 1".into()).into());
    }
    let (tensor, original) = match (&a.synthetic, &a.input) {
        (Some(s), None) => {
            let usage = || Usage(format!("--synthetic wants ROWSxCOLS with sizes from 1 to 2^28 weights, got `{s}`"));
            let (r, c) = s.split_once('x').ok_or_else(usage)?;
            let (rows, cols): (usize, usize) = (r.parse().map_err(|_| usage())?, c.parse().map_err(|_| usage())?);
            if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none_or(|n| n > MAX_SYNTHETIC_ELEMENTS) {
                return Err(usage().into());
            }
            let (t, d) = cpu::synthetic_tensor(rows, cols, a.rel_rmse).map_err(cli_error)?;
            (t, Some(d))
        }
        (None, Some(path)) => {
            let name =
                a.tensor.as_deref().ok_or_else(|| Usage("name the tensor to benchmark: FILE --tensor NAME".into()))?;
            let model = Model::open(path).map_err(cli_error)?;
            (model.tensor(name).map_err(cli_error)?, None)
        }
        _ => {
            return Err(
                Usage("give either FILE --tensor NAME or --synthetic ROWSxCOLS, not both or neither".into()).into()
            );
        }
    };
    let report = if a.backend == "gpu" {
        gpu_report(a, &tensor)?
    } else {
        let modes = match a.mode.as_str() {
            "full" => ModeSet::Full,
            "direct" => ModeSet::Direct,
            "sparse-mask" => ModeSet::SparseMask,
            "progressive" => ModeSet::Progressive,
            _ => ModeSet::All,
        };
        let options = CpuBench {
            batch: a.batch.max(1),
            seconds: seconds(a, &tensor),
            modes,
            candle: !a.no_candle,
            cache_study: (!a.no_cache_study).then_some(a.rel_rmse),
        };
        let report = cpu::run(&tensor, original.as_deref(), &options).map_err(cli_error)?;
        if let Some(path) = &a.plot {
            plot(&report, path)?;
        }
        report
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// `--backend gpu`: the same report, methods prefixed `gpu_` (see `rbe::bench::gpu`).
fn gpu_report(a: &BenchArgs, tensor: &EncodedTensor) -> Result<Report> {
    let iters = ((seconds(a, tensor) * 50.0) as usize).clamp(5, 200);
    rbe::bench::gpu::run(tensor, a.batch.max(1), iters).map_err(cli_error)
}

fn print_table(r: &Report) {
    print!("{}", table(r));
}

/// The human-readable report: the run's settings, the resident size beside the file's, the DRAM
/// read bandwidth, then one line per method.
fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let bpw = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.3}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
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
    let _ = writeln!(
        out,
        "bits per weight: file {}  resident {} ({})",
        bpw(r.file_bits_per_weight),
        bpw(r.resident_bits_per_weight),
        if r.rbe_isa == "gpu" { "the uploaded stream" } else { "the dct-direct layer: weights + descriptors" }
    );
    match (r.dram_read_gbs, r.dram_probe_bytes) {
        (Some(g), Some(b)) => {
            let _ = writeln!(
                out,
                "DRAM read {g:.1} GB/s ({} threads, best of {} passes over {} MiB); %DRAM = GB/s / that",
                r.threads,
                rbe::bench::dram::PROBE_PASSES,
                b >> 20
            );
        }
        _ => out.push_str("DRAM read: not measured (GPU rows stream device memory)\n"),
    }
    let _ = writeln!(
        out,
        "{:<24} {:<5} {:>12} {:>10} {:>12} {:>8} {:>6} {:>9}",
        "method", "cache", "median_us", "max_err", "bytes/call", "GB/s", "%DRAM", "vs dense"
    );
    for row in &r.results {
        let line = format!(
            "{:<24} {:<5} {:>12} {:>10} {:>12} {:>8} {:>6} {:>9}  {}",
            row.method,
            row.cache,
            finite(row.median_us).map_or_else(dash, |v| format!("{v:.1}")),
            finite(row.max_rel_err).map_or_else(dash, |v| format!("{v:.2e}")),
            row.bytes_per_call.map_or_else(dash, |v| v.to_string()),
            row.gbs.and_then(finite).map_or_else(dash, |v| format!("{v:.1}")),
            row.dram_fraction.and_then(finite).map_or_else(dash, |v| format!("{:.0}%", 100.0 * v)),
            vs_dense(r, row).map_or_else(dash, |v| format!("{v:.2}x")),
            row.note.as_deref().unwrap_or("")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !r.cache_study.is_empty() {
        out.push_str("cache study, 384x384 (36 blocks), Full mode:\n");
        for c in &r.cache_study {
            let _ = writeln!(
                out,
                "  cache {:>2} blocks: hit rate {:>5.1}%  {:>9.1} us/forward",
                c.cache_blocks,
                100.0 * c.hit_rate,
                c.median_us
            );
        }
    }
    out
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn dash() -> String {
    "-".to_owned()
}

/// How many times faster than the dense f32 baseline of the same backend and cache state
/// (`dense_f32` on the CPU, `gpu_dense_f32` on the GPU) a row is; `None` when either time is
/// missing or zero (a skipped method, or a clock too coarse for the call).
fn vs_dense(r: &Report, row: &Row) -> Option<f64> {
    let dense = r.results.iter().find(|d| d.method.ends_with("dense_f32") && d.cache == row.cache)?;
    let ratio = dense.median_us / row.median_us;
    (dense.median_us > 0.0 && row.median_us > 0.0).then_some(ratio).and_then(finite)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, median_us: f64) -> Row {
        Row::new(method, "hot", median_us, 0.0, 1000, Some(1000), None)
    }

    fn report(results: Vec<Row>) -> Report {
        Report {
            shape: [64, 64],
            threads: 1,
            batch: 1,
            rbe_isa: "gpu",
            candle_avx2_build: false,
            stream_bytes: 1,
            resident_bytes: 1,
            resident_bits_per_weight: None,
            file_bits_per_weight: None,
            dram_read_gbs: None,
            dram_probe_bytes: None,
            rel_rmse: 0.05,
            results,
            cache_study: Vec::new(),
        }
    }

    #[test]
    fn ratios_against_the_backends_own_dense_baseline_or_none() {
        let gpu = report(vec![row("gpu_dense_f32", 40.0), row("gpu_dct_direct", 20.0), row("gpu_decode", 0.0)]);
        assert_eq!(vs_dense(&gpu, &gpu.results[1]), Some(2.0), "gpu_dense_f32 is the GPU's baseline");
        assert_eq!(vs_dense(&gpu, &gpu.results[2]), None, "a zero time has no ratio");
        let cpu = report(vec![row("dense_f32", 10.0), row("candle_q8_0", f64::NAN)]);
        assert_eq!(vs_dense(&cpu, &cpu.results[1]), None, "a skipped method has no ratio");
        let no_dense = report(vec![row("rbe_dct_direct", 10.0)]);
        assert_eq!(vs_dense(&no_dense, &no_dense.results[0]), None);
    }

    #[test]
    fn the_table_prints_the_dram_figure_once_and_dashes_what_is_missing() {
        let mut r = report(vec![
            Row::new("rbe_dct_direct", "cold", 100.0, 0.0, 900_000, Some(1_000_000), None),
            Row::new("candle_q4_k", "hot", f64::NAN, f64::NAN, 0, None, Some("skipped".into())),
        ]);
        r.rbe_isa = "avx2";
        r.dram_read_gbs = Some(20.0);
        r.dram_probe_bytes = Some(256 << 20);
        r.file_bits_per_weight = Some(4.05);
        r.resident_bits_per_weight = Some(5.7);
        r.fill_rates();
        let t = table(&r);
        assert_eq!(t.matches("DRAM read").count(), 1, "{t}");
        assert!(t.contains("DRAM read 20.0 GB/s (1 threads, best of 5 passes over 256 MiB)"), "{t}");
        assert!(t.contains("bits per weight: file 4.050  resident 5.700"), "{t}");
        let direct: Vec<&str> =
            t.lines().find(|l| l.starts_with("rbe_dct_direct")).unwrap().split_whitespace().collect();
        assert_eq!(direct[4..7], ["1000000", "10.0", "50%"], "{t}");
        let skipped: Vec<&str> = t.lines().find(|l| l.starts_with("candle_q4_k")).unwrap().split_whitespace().collect();
        assert_eq!(skipped[2..8], ["-", "-", "-", "-", "-", "-"], "{t}");
        r.dram_read_gbs = None;
        r.rbe_isa = "gpu";
        assert!(table(&r).contains("DRAM read: not measured"));
    }
}
