//! `rbe analyze IN.safetensors [--json] [--plot rd.svg]`: per compressible tensor (`rbe::compressible`,
//! the rule `rbe encode` applies), the rate-distortion curve
//! of RBE at several relative-error targets against f16 and GGUF-style Q8_0 / Q4_0 (candle's
//! quantiser, through `rbe::candle::ggml_roundtrip`), and a recommendation: the RBE size at Q8_0's
//! and at Q4_0's measured error.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rbe::candle::{GgmlDType, ggml_bits_per_weight, ggml_roundtrip};
use rbe::encode::tensor::matrix_shape;
use rbe::{EncodeSettings, SourceModel, Target, TensorReport, compressible, encode_tensor};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Where the GGUF-style figures come from (printed and in the JSON).
const QUANTISER: &str = "GGUF-style Q8_0 / Q4_0: candle's quantiser (candle_core::quantized::QTensor::quantize), \
                         row-aligned blocks of 32; f16: IEEE half rounding";

/// Arguments of `rbe analyze`.
#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// Input safetensors file or `*.safetensors.index.json` (sharded).
    pub input: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of relative RMSE against bits per weight, one curve per tensor.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// RBE relative-RMSE targets of the curve (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0.005, 0.01, 0.02, 0.05, 0.0735, 0.1])]
    pub targets: Vec<f64>,
    /// RBE block edge: 8, 16, 32 or 64.
    #[arg(long, default_value_t = 64)]
    pub block: usize,
}

/// One point of a curve.
#[derive(Serialize, Clone)]
struct Point {
    method: String,
    /// The RBE target (relative RMSE), if this is an RBE point.
    target: Option<f64>,
    bits_per_weight: f64,
    rel_rmse: f64,
}

/// RBE at a GGUF type's measured error.
#[derive(Serialize)]
struct Match {
    against: String,
    their_bits_per_weight: f64,
    their_rel_rmse: f64,
    rbe_bits_per_weight: f64,
    rbe_rel_rmse: f64,
    /// Relative size saving of RBE (positive: RBE smaller).
    saving: f64,
}

#[derive(Serialize)]
struct TensorAnalysis {
    name: String,
    shape: Vec<usize>,
    weights: usize,
    points: Vec<Point>,
    recommendation: Vec<Match>,
}

#[derive(Serialize)]
struct Analysis {
    input: String,
    quantiser: &'static str,
    tensors: Vec<TensorAnalysis>,
    skipped: Vec<String>,
}

fn rel_rmse(orig: &[f32], approx: &[f32]) -> f64 {
    let n = orig.len() as f64;
    let mean = orig.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = orig.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let mse = orig.iter().zip(approx).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>() / n;
    if var > 0.0 { (mse / var).sqrt() } else { mse.sqrt() }
}

/// RBE at one target: bits per weight as every command counts them (`rbe::report`: stream plus
/// the tensor's header entries) and the relative RMSE the encoder measured on the decode.
fn rbe_point(name: &str, data: &[f32], shape: &[usize], block: usize, target: f64) -> anyhow::Result<Point> {
    let settings = EncodeSettings::builder().target(Target::RelRmse(target)).block(block).build()?;
    let out = encode_tensor(name, data, shape, rbe::format::SourceDtype::F32, &settings)?;
    let report = TensorReport::of_tensor(&out.tensor);
    Ok(Point {
        method: format!("rbe@{target}"),
        target: Some(target),
        bits_per_weight: report.bits_per_weight.unwrap_or(f64::NAN),
        rel_rmse: out.tensor.stats().rel_rmse,
    })
}

fn analyse(name: &str, data: &[f32], shape: &[usize], a: &AnalyzeArgs) -> anyhow::Result<TensorAnalysis> {
    let cols = matrix_shape(shape).map_or(0, |(_, c)| c);
    let mut points = Vec::new();
    let f16: Vec<f32> = data.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    points.push(Point { method: "f16".into(), target: None, bits_per_weight: 16.0, rel_rmse: rel_rmse(data, &f16) });
    let mut ggml = Vec::new();
    for (label, dt) in [("Q8_0", GgmlDType::Q8_0), ("Q4_0", GgmlDType::Q4_0)] {
        // Row-aligned blocks only, as GGUF stores them.
        if cols.is_multiple_of(dt.block_size()) {
            let deq = ggml_roundtrip(data, dt)?;
            let p = Point {
                method: label.into(),
                target: None,
                bits_per_weight: ggml_bits_per_weight(dt),
                rel_rmse: rel_rmse(data, &deq),
            };
            ggml.push(p.clone());
            points.push(p);
        }
    }
    for &t in &a.targets {
        points.push(rbe_point(name, data, shape, a.block, t).with_context(|| format!("`{name}` at rel {t}"))?);
    }
    let mut recommendation = Vec::new();
    for g in ggml {
        let p = rbe_point(name, data, shape, a.block, g.rel_rmse)
            .with_context(|| format!("`{name}` at {}'s error", g.method))?;
        recommendation.push(Match {
            against: g.method.clone(),
            their_bits_per_weight: g.bits_per_weight,
            their_rel_rmse: g.rel_rmse,
            rbe_bits_per_weight: p.bits_per_weight,
            rbe_rel_rmse: p.rel_rmse,
            saving: 1.0 - p.bits_per_weight / g.bits_per_weight,
        });
    }
    Ok(TensorAnalysis { name: name.to_owned(), shape: shape.to_vec(), weights: data.len(), points, recommendation })
}

/// Runs `rbe analyze`.
pub fn run(a: &AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(!a.targets.is_empty(), "--targets needs at least one value");
    if let Some(t) = a.targets.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        anyhow::bail!("--targets: {t} is not a positive relative RMSE");
    }
    let model = SourceModel::open(&a.input)?;
    let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
    for t in model.tensors() {
        if compressible(&t.dtype, &t.shape, a.block) { chosen.push(t) } else { skipped.push(t.name.clone()) }
    }
    let bar = if !a.json && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(chosen.iter().map(|t| t.elements() as u64).sum());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} weights (ETA {eta}) {msg}",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let mut tensors = Vec::with_capacity(chosen.len());
    for t in chosen {
        if let Some(b) = &bar {
            b.set_message(t.name.clone());
        }
        let data = t.to_f32()?;
        t.release_pages();
        tensors.push(analyse(&t.name, &data, &t.shape, a)?);
        if let Some(b) = &bar {
            b.inc(t.elements() as u64);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let analysis = Analysis { input: a.input.display().to_string(), quantiser: QUANTISER, tensors, skipped };
    if let Some(path) = &a.plot {
        plot(&analysis, path).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&analysis)?);
    } else {
        print_tables(&analysis, a);
    }
    Ok(())
}

fn print_tables(r: &Analysis, a: &AnalyzeArgs) {
    println!("{}", r.quantiser);
    println!(
        "RBE: bits/weight = 8 x (stream + its header entries) / weights, as every rbe command counts; relative RMSE measured on the decode"
    );
    for t in &r.tensors {
        let shape: Vec<String> = t.shape.iter().map(ToString::to_string).collect();
        println!("\n{}  [{}]", t.name, shape.join(", "));
        println!("  {:<12} {:>8} {:>10}", "method", "bpw", "rel-rmse");
        for p in &t.points {
            println!("  {:<12} {:>8.3} {:>10.5}", p.method, p.bits_per_weight, p.rel_rmse);
        }
        for m in &t.recommendation {
            println!(
                "  -> at {}'s error ({:.5}): RBE {:.3} bpw vs {:.3} ({:+.1}% size)",
                m.against,
                m.their_rel_rmse,
                m.rbe_bits_per_weight,
                m.their_bits_per_weight,
                -100.0 * m.saving
            );
        }
    }
    // Totals over all analysed tensors, weighted by their weights.
    let total: usize = r.tensors.iter().map(|t| t.weights).sum();
    if total > 0 {
        println!("\nall {} tensors ({} weights), weighted bits/weight:", r.tensors.len(), total);
        let mut methods: Vec<String> = vec!["f16".into(), "Q8_0".into(), "Q4_0".into()];
        methods.extend(a.targets.iter().map(|t| format!("rbe@{t}")));
        for m in methods {
            let (mut bits, mut n, mut rel) = (0.0, 0usize, 0.0f64);
            for t in &r.tensors {
                if let Some(p) = t.points.iter().find(|p| p.method == m) {
                    bits += p.bits_per_weight * t.weights as f64;
                    n += t.weights;
                    rel = rel.max(p.rel_rmse);
                }
            }
            if n > 0 {
                println!("  {:<12} {:>8.3} bpw  worst rel-rmse {:.5}", m, bits / n as f64, rel);
            }
        }
        for g in ["Q8_0", "Q4_0"] {
            let (mut ours, mut theirs) = (0.0, 0.0);
            for t in &r.tensors {
                if let Some(m) = t.recommendation.iter().find(|m| m.against == g) {
                    ours += m.rbe_bits_per_weight * t.weights as f64;
                    theirs += m.their_bits_per_weight * t.weights as f64;
                }
            }
            if theirs > 0.0 {
                println!(
                    "  RBE at {g}'s error, per tensor: {:.3} bpw vs {:.3} ({:+.1}% size)",
                    ours / total as f64,
                    theirs / total as f64,
                    100.0 * (ours / theirs - 1.0)
                );
            }
        }
    }
    if !r.skipped.is_empty() {
        println!(
            "\nnot analysed (not compressible: a float tensor of rank >= 2 with both sides >= {}): {} tensors",
            a.block,
            r.skipped.len()
        );
    }
}

fn plot(r: &Analysis, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let all: Vec<&Point> = r.tensors.iter().flat_map(|t| &t.points).collect();
    let xmax = all.iter().map(|p| p.bits_per_weight).fold(1.0, f64::max) * 1.05;
    let pos: Vec<f64> = all.iter().map(|p| p.rel_rmse).filter(|&v| v > 0.0).collect();
    let lo = pos.iter().copied().fold(f64::INFINITY, f64::min).min(1e-3) / 2.0;
    let hi = pos.iter().copied().fold(0.0, f64::max).max(1e-2) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("RBE rate-distortion per tensor vs f16 / Q8_0 / Q4_0", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, (lo..hi).log_scale())?;
    chart.configure_mesh().x_desc("bits / weight").y_desc("relative RMSE (log)").draw()?;
    for (i, t) in r.tensors.iter().enumerate() {
        let color = Palette99::pick(i);
        let mut curve: Vec<(f64, f64)> =
            t.points.iter().filter(|p| p.target.is_some()).map(|p| (p.bits_per_weight, p.rel_rmse.max(lo))).collect();
        curve.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(LineSeries::new(curve, color.stroke_width(1)))?;
    }
    for (m, color) in [("f16", BLACK), ("Q8_0", RED), ("Q4_0", MAGENTA)] {
        let pts: Vec<(f64, f64)> =
            all.iter().filter(|p| p.method == m).map(|p| (p.bits_per_weight, p.rel_rmse.max(lo))).collect();
        chart
            .draw_series(pts.into_iter().map(|p| TriangleMarker::new(p, 5, color.filled())))?
            .label(m)
            .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, color.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_recommendation_and_chart_on_a_small_matrix() {
        let (rows, cols) = (128, 96);
        let mut rng = rbe_testkit::Rng::new(0x9e37_79b9_7f4a_7c15);
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.centred_f32()).collect();
        let args = AnalyzeArgs { input: PathBuf::new(), json: true, plot: None, targets: vec![0.01, 0.1], block: 32 };
        let t = analyse("w", &data, &[rows, cols], &args).unwrap();
        let methods: Vec<&str> = t.points.iter().map(|p| p.method.as_str()).collect();
        assert_eq!(methods, ["f16", "Q8_0", "Q4_0", "rbe@0.01", "rbe@0.1"]);
        for p in t.points.iter().filter(|p| p.target.is_some()) {
            assert!(p.rel_rmse <= p.target.unwrap() * 1.0001, "{} at {}", p.method, p.rel_rmse);
        }
        assert_eq!(t.recommendation.len(), 2);
        for m in &t.recommendation {
            assert!(m.rbe_rel_rmse <= m.their_rel_rmse * 1.0001);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rd.svg");
        let a = Analysis { input: "x".into(), quantiser: QUANTISER, tensors: vec![t], skipped: vec![] };
        plot(&a, &path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
    }
}
