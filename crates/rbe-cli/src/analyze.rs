//! `rbe analyze IN.safetensors [--json] [--plot rd.svg]`: per compressible tensor (`rbe::compressible`,
//! the rule `rbe encode` applies), the rate-distortion curve
//! of RBE at several relative-error targets against f16 and GGUF-style Q8_0 / Q4_0 (candle's
//! quantiser, through `rbe::candle::ggml_roundtrip`), the RBE size at Q8_0's and at Q4_0's measured
//! error, and a recommendation: per tensor role (query, key, value, attention output, intermediate,
//! output, other), the method with the fewest bits per weight whose worst relative RMSE meets
//! `--target`.

use crate::Usage;
use crate::progress::{Progress, Unit};
use crate::verify::one_line;
use anyhow::Context;
use rbe::candle::{GgmlDType, ggml_bits_per_weight, ggml_roundtrip};
use rbe::encode::tensor::matrix_shape;
use rbe::{EncodeSettings, Profile, SourceModel, Target, TensorReport, compressible, encode_tensor};
use serde::Serialize;
use std::path::{Path, PathBuf};

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
    /// Write an SVG chart of relative RMSE against bits per weight, one curve per tensor, coloured
    /// by the tensor's role.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// RBE relative-RMSE targets of the curve, comma- or space-separated, each in (0, 1).
    #[arg(long, default_value = "0.005,0.01,0.02,0.05,0.0735,0.1", value_parser = parse_targets)]
    pub targets: Targets,
    /// The worst relative RMSE the recommendation must meet (default: the `balanced` profile's).
    #[arg(long, default_value_t = Profile::Balanced.rel_rmse(), value_parser = parse_target)]
    pub target: f64,
    /// RBE block edge: 8, 16, 32 or 64.
    #[arg(long, default_value_t = 64)]
    pub block: usize,
}

/// The relative-RMSE targets of the curve, ascending, without repeats.
#[derive(Clone, Debug)]
pub struct Targets(pub Vec<f64>);

fn parse_target(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(t) if t > 0.0 && t < 1.0 => Ok(t),
        _ => Err(format!("`{text}` is not a relative RMSE between 0 and 1 (e.g. 0.05)")),
    }
}

/// `0.01,0.05`, `0.01 0.05` (one quoted argument) or a mix.
fn parse_targets(text: &str) -> Result<Targets, String> {
    let mut targets =
        text.split([',', ' ']).filter(|t| !t.is_empty()).map(parse_target).collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err("give at least one target, e.g. 0.01,0.05".into());
    }
    targets.sort_by(f64::total_cmp);
    targets.dedup();
    Ok(Targets(targets))
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
    /// What the tensor does in the network, from its name ([`role`]).
    role: &'static str,
    shape: Vec<usize>,
    weights: usize,
    points: Vec<Point>,
    /// RBE at each GGUF-style type's measured error.
    at_gguf_error: Vec<Match>,
}

#[derive(Serialize)]
struct Analysis {
    input: String,
    quantiser: &'static str,
    tensors: Vec<TensorAnalysis>,
    skipped: Vec<String>,
    recommendation: Recommendation,
}

/// A method over every tensor of one role: bits per weight weighted by the tensors' weights, and
/// the worst relative RMSE among them.
#[derive(Serialize, Clone)]
struct Candidate {
    method: String,
    /// The RBE target, for an RBE method.
    target: Option<f64>,
    bits_per_weight: f64,
    worst_rel_rmse: f64,
}

#[derive(Serialize)]
struct RoleChoice {
    role: &'static str,
    tensors: usize,
    weights: usize,
    /// The cheapest method meeting the target, if any does.
    choice: Option<Candidate>,
    /// The cheapest method of the other kind (GGUF-style if RBE was chosen, RBE otherwise) that
    /// meets the target: what the choice is measured against.
    next_best: Option<Candidate>,
}

#[derive(Serialize)]
struct Recommendation {
    /// The worst relative RMSE each method had to meet (`--target`).
    target: f64,
    roles: Vec<RoleChoice>,
    /// The encode to run, when RBE is the choice for every role.
    command: Option<String>,
    /// Bits per weight of the choices over every analysed tensor.
    bits_per_weight: Option<f64>,
}

/// The chart's colour of each role of [`ROLES`].
const ROLE_COLOURS: [plotters::style::RGBColor; 7] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(148, 103, 189),
    plotters::style::RGBColor(23, 190, 207),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(127, 127, 127),
];

/// Roles in the order they are printed and coloured.
const ROLES: [&str; 7] = ["query", "key", "value", "attention-output", "intermediate", "output", "other"];

/// The role of a weight from its name: BERT (`attention.self.query`, `intermediate.dense`,
/// `output.dense`), Llama (`q_proj`, `up_proj`, `down_proj`, ...) and GPT-2 (`c_attn`, `c_fc`,
/// `mlp.c_proj`) spellings; anything else is `other`.
fn role(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| n.contains(k));
    if has(&["attention.output", "o_proj", "out_proj", "attn.c_proj", "self_attn.dense", "attention.wo"]) {
        "attention-output"
    } else if has(&["query", "q_proj", "attention.wq"]) {
        "query"
    } else if has(&["key", "k_proj", "attention.wk"]) {
        "key"
    } else if has(&["value", "v_proj", "attention.wv"]) {
        "value"
    } else if has(&["intermediate", "up_proj", "gate_proj", "c_fc", "fc1", "dense_h_to_4h", "w1", "w3"]) {
        "intermediate"
    } else if has(&["output.dense", "down_proj", "mlp.c_proj", "fc2", "dense_4h_to_h", "w2"]) {
        "output"
    } else {
        "other"
    }
}

/// `method` over `tensors`, if every one of them has it.
fn candidate(tensors: &[&TensorAnalysis], method: &str) -> Option<Candidate> {
    let (mut bits, mut weights, mut worst, mut target) = (0.0, 0usize, 0.0f64, None);
    for t in tensors {
        let p = t.points.iter().find(|p| p.method == method)?;
        bits += p.bits_per_weight * t.weights as f64;
        weights += t.weights;
        worst = worst.max(p.rel_rmse);
        target = p.target;
    }
    let bits_per_weight = bits / weights as f64;
    bits_per_weight.is_finite().then(|| Candidate {
        method: method.to_owned(),
        target,
        bits_per_weight,
        worst_rel_rmse: worst,
    })
}

/// Per role, the method with the fewest bits per weight whose worst relative RMSE is at most
/// `target`, and the best of the other kind to compare it with.
fn recommend(tensors: &[TensorAnalysis], target: f64, input: &Path) -> Recommendation {
    let mut roles = Vec::new();
    for role in ROLES {
        let of_role: Vec<&TensorAnalysis> = tensors.iter().filter(|t| t.role == role).collect();
        if of_role.is_empty() {
            continue;
        }
        let mut methods: Vec<&str> = of_role.iter().flat_map(|t| t.points.iter().map(|p| p.method.as_str())).collect();
        methods.sort_unstable();
        methods.dedup();
        let mut meeting: Vec<Candidate> =
            methods.into_iter().filter_map(|m| candidate(&of_role, m)).filter(|c| c.worst_rel_rmse <= target).collect();
        meeting.sort_by(|a, b| a.bits_per_weight.total_cmp(&b.bits_per_weight));
        let choice = meeting.first().cloned();
        let next_best =
            choice.as_ref().and_then(|c| meeting.iter().find(|m| m.target.is_some() != c.target.is_some()).cloned());
        let weights = of_role.iter().map(|t| t.weights).sum();
        roles.push(RoleChoice { role, tensors: of_role.len(), weights, choice, next_best });
    }
    let total: usize = roles.iter().map(|r| r.weights).sum();
    let bits: Option<f64> = roles.iter().map(|r| r.choice.as_ref().map(|c| c.bits_per_weight * r.weights as f64)).sum();
    let bits_per_weight = bits.filter(|_| total > 0).map(|b| b / total as f64);
    let rbe_targets: Vec<Option<f64>> = roles.iter().map(|r| r.choice.as_ref().and_then(|c| c.target)).collect();
    let command = match rbe_targets.first() {
        Some(&Some(t)) if rbe_targets.iter().all(|&x| x == Some(t)) => Some(format!(
            "rbe encode {} -o {}.rbe --rel-rmse {t}",
            one_line(&input.display().to_string()),
            one_line(&input.with_extension("").display().to_string())
        )),
        _ => None,
    };
    Recommendation { target, roles, command, bits_per_weight }
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
    for t in curve_targets(a) {
        points.push(rbe_point(name, data, shape, a.block, t).with_context(|| format!("`{name}` at rel {t}"))?);
    }
    let mut at_gguf_error = Vec::new();
    for g in ggml {
        let p = rbe_point(name, data, shape, a.block, g.rel_rmse)
            .with_context(|| format!("`{name}` at {}'s error", g.method))?;
        at_gguf_error.push(Match {
            against: g.method.clone(),
            their_bits_per_weight: g.bits_per_weight,
            their_rel_rmse: g.rel_rmse,
            rbe_bits_per_weight: p.bits_per_weight,
            rbe_rel_rmse: p.rel_rmse,
            saving: 1.0 - p.bits_per_weight / g.bits_per_weight,
        });
    }
    Ok(TensorAnalysis {
        name: name.to_owned(),
        role: role(name),
        shape: shape.to_vec(),
        weights: data.len(),
        points,
        at_gguf_error,
    })
}

/// `--targets` and `--target`, ascending: the recommendation's target is always on the curve.
fn curve_targets(a: &AnalyzeArgs) -> Vec<f64> {
    let mut targets = a.targets.0.clone();
    if !targets.contains(&a.target) {
        targets.push(a.target);
        targets.sort_by(f64::total_cmp);
    }
    targets
}

/// Refuses a `--plot` path that cannot be written, before hours of analysis.
fn check_plot_path(path: &Path) -> anyhow::Result<()> {
    let shown = one_line(&path.display().to_string());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.is_dir() {
        anyhow::bail!("--plot {shown}: is a directory; name an .svg file");
    }
    if !dir.is_dir() {
        let dir = one_line(&dir.display().to_string());
        anyhow::bail!("--plot {shown}: the directory {dir} does not exist; create it or choose another path");
    }
    Ok(())
}

/// Runs `rbe analyze`.
pub fn run(a: &AnalyzeArgs) -> anyhow::Result<()> {
    EncodeSettings::builder().block(a.block).build().map_err(|e| Usage(e.to_string()))?;
    if let Some(path) = &a.plot {
        check_plot_path(path)?;
    }
    let model = SourceModel::open(&a.input)?;
    let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
    for t in model.tensors() {
        if compressible(&t.dtype, &t.shape, a.block) { chosen.push(t) } else { skipped.push(t.name.clone()) }
    }
    let bar = Progress::new(chosen.iter().map(|t| t.elements() as u64).sum(), Unit::Weights, a.json);
    let mut tensors = Vec::with_capacity(chosen.len());
    for t in chosen {
        bar.name(&t.name);
        let data = t.to_f32()?;
        t.release_pages();
        tensors.push(analyse(&t.name, &data, &t.shape, a)?);
        bar.inc(t.elements() as u64);
    }
    bar.finish();
    let recommendation = recommend(&tensors, a.target, &a.input);
    let analysis =
        Analysis { input: a.input.display().to_string(), quantiser: QUANTISER, tensors, skipped, recommendation };
    if let Some(path) = &a.plot {
        plot(&analysis, path)
            .with_context(|| format!("cannot write the chart {}", one_line(&path.display().to_string())))?;
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
        println!("\n{}  [{}]  {}", one_line(&t.name), shape.join(", "), t.role);
        println!("  {:<12} {:>8} {:>10}", "method", "bpw", "rel-rmse");
        for p in &t.points {
            println!("  {:<12} {:>8.3} {:>10.5}", p.method, p.bits_per_weight, p.rel_rmse);
        }
        for m in &t.at_gguf_error {
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
        methods.extend(curve_targets(a).iter().map(|t| format!("rbe@{t}")));
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
                if let Some(m) = t.at_gguf_error.iter().find(|m| m.against == g) {
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
        print_recommendation(&r.recommendation);
    } else {
        println!("\nno tensor analysed, so nothing to recommend: see below, or try a smaller --block");
    }
    if !r.skipped.is_empty() {
        println!(
            "\nnot analysed (not compressible: a float tensor of rank >= 2 with both sides >= {}): {} tensors",
            a.block,
            r.skipped.len()
        );
    }
}

/// How a method is asked for.
fn method_text(c: &Candidate) -> String {
    match c.target {
        Some(t) => format!("RBE --rel-rmse {t}"),
        None => c.method.clone(),
    }
}

fn print_recommendation(r: &Recommendation) {
    println!(
        "\nrecommendation: per tensor role, the fewest bits per weight with relative RMSE <= {} (--target):",
        r.target
    );
    for role in &r.roles {
        let Some(c) = &role.choice else {
            println!(
                "  {:<16} {:>3} tensors  nothing analysed meets it; add a smaller --targets value",
                role.role, role.tensors
            );
            continue;
        };
        let why = match &role.next_best {
            Some(n) => format!("next best {} at {:.3} bpw", method_text(n), n.bits_per_weight),
            None if c.target.is_some() => "f16, Q8_0 and Q4_0 miss it".to_owned(),
            None => "RBE misses it".to_owned(),
        };
        println!(
            "  {:<16} {:>3} tensors  {:<22} {:>6.3} bpw (worst {:.5}; {why})",
            role.role,
            role.tensors,
            method_text(c),
            c.bits_per_weight,
            c.worst_rel_rmse
        );
    }
    match (&r.command, r.bits_per_weight) {
        (Some(cmd), Some(bpw)) => println!("  => {cmd}  ({bpw:.3} bits/weight over the analysed tensors)"),
        _ => println!("  => RBE is not the cheapest for every role: --exclude the others' tensors, or raise --target"),
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
        .caption("RBE rate-distortion per tensor, coloured by role, vs f16 / Q8_0 / Q4_0", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, (lo..hi).log_scale())?;
    chart.configure_mesh().x_desc("bits / weight").y_desc("relative RMSE (log)").draw()?;
    // One colour per role, one legend entry per role (on its first curve).
    for (role, color) in ROLES.iter().zip(ROLE_COLOURS) {
        let of_role: Vec<&TensorAnalysis> = r.tensors.iter().filter(|t| t.role == *role).collect();
        for (i, t) in of_role.iter().enumerate() {
            let mut curve: Vec<(f64, f64)> = t
                .points
                .iter()
                .filter(|p| p.target.is_some())
                .map(|p| (p.bits_per_weight, p.rel_rmse.max(lo)))
                .collect();
            curve.sort_by(|a, b| a.0.total_cmp(&b.0));
            let series = chart.draw_series(LineSeries::new(curve, color.stroke_width(1)))?;
            if i == 0 {
                series
                    .label(format!("RBE, {role} ({})", of_role.len()))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            }
        }
    }
    let gguf = chart.draw_series(
        all.iter()
            .filter(|p| p.method == "f16")
            .map(|p| TriangleMarker::new((p.bits_per_weight, p.rel_rmse.max(lo)), 5, BLACK.filled())),
    )?;
    gguf.label("f16").legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, BLACK.filled()));
    let q8 = chart.draw_series(
        all.iter()
            .filter(|p| p.method == "Q8_0")
            .map(|p| Cross::new((p.bits_per_weight, p.rel_rmse.max(lo)), 5, BLACK)),
    )?;
    q8.label("Q8_0").legend(|(x, y)| Cross::new((x + 8, y), 5, BLACK));
    let q4 = chart.draw_series(
        all.iter()
            .filter(|p| p.method == "Q4_0")
            .map(|p| Circle::new((p.bits_per_weight, p.rel_rmse.max(lo)), 4, BLACK)),
    )?;
    q4.label("Q4_0").legend(|(x, y)| Circle::new((x + 8, y), 4, BLACK));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_recommendation_and_chart_on_small_matrices() {
        let (rows, cols) = (128, 96);
        let mut rng = rbe_testkit::Rng::new(0x9e37_79b9_7f4a_7c15);
        let targets = parse_targets("0.01,0.1").unwrap();
        let args =
            AnalyzeArgs { input: "m.safetensors".into(), json: true, plot: None, targets, target: 0.05, block: 32 };
        let mut tensors = Vec::new();
        for name in ["layer.0.attention.self.query.weight", "layer.0.intermediate.dense.weight"] {
            let data: Vec<f32> = (0..rows * cols).map(|_| rng.centred_f32()).collect();
            tensors.push(analyse(name, &data, &[rows, cols], &args).unwrap());
        }
        let t = &tensors[0];
        let methods: Vec<&str> = t.points.iter().map(|p| p.method.as_str()).collect();
        assert_eq!(methods, ["f16", "Q8_0", "Q4_0", "rbe@0.01", "rbe@0.05", "rbe@0.1"], "--target joins the curve");
        for p in t.points.iter().filter(|p| p.target.is_some()) {
            assert!(p.rel_rmse <= p.target.unwrap() * 1.0001, "{} at {}", p.method, p.rel_rmse);
        }
        assert_eq!(t.at_gguf_error.len(), 2);
        for m in &t.at_gguf_error {
            assert!(m.rbe_rel_rmse <= m.their_rel_rmse * 1.0001);
        }

        let rec = recommend(&tensors, 0.05, Path::new("m.safetensors"));
        let roles: Vec<&str> = rec.roles.iter().map(|r| r.role).collect();
        assert_eq!(roles, ["query", "intermediate"]);
        for r in &rec.roles {
            let choice = r.choice.as_ref().unwrap();
            assert_eq!(choice.method, "rbe@0.05", "{}: the loosest RBE target that meets 0.05", r.role);
            assert!(choice.worst_rel_rmse <= 0.05);
            let next = r.next_best.as_ref().unwrap();
            assert_eq!(next.method, "Q8_0", "Q4_0 misses 0.05, Q8_0 meets it with more bits");
            assert!(next.bits_per_weight > choice.bits_per_weight);
        }
        assert_eq!(rec.command.as_deref(), Some("rbe encode m.safetensors -o m.rbe --rel-rmse 0.05"));
        // A target only f16 and Q8_0 meet among the analysed points: a GGUF-style type is chosen.
        let strict = recommend(&tensors, 0.009, Path::new("m.safetensors"));
        assert_eq!(strict.roles[0].choice.as_ref().unwrap().method, "Q8_0");
        assert!(strict.command.is_none());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rd.svg");
        let a = Analysis { input: "x".into(), quantiser: QUANTISER, tensors, skipped: vec![], recommendation: rec };
        plot(&a, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for label in ["RBE, query (1)", "RBE, intermediate (1)", "Q8_0", "Q4_0", "f16"] {
            assert!(svg.contains(label), "the legend names {label}");
        }
    }

    #[test]
    fn targets_take_the_form_help_shows_and_refuse_nonsense() {
        assert_eq!(parse_targets("0.005,0.01,0.02,0.05,0.0735,0.1").unwrap().0.len(), 6);
        assert_eq!(parse_targets("0.1 0.01, 0.01").unwrap().0, [0.01, 0.1]);
        for bad in ["", ",", "0", "1", "1.5", "-0.1", "x", "NaN"] {
            assert!(parse_targets(bad).is_err(), "`{bad}` accepted");
        }
    }

    #[test]
    fn roles_from_bert_llama_and_gpt2_names() {
        for (name, want) in [
            ("encoder.layer.0.attention.self.query.weight", "query"),
            ("encoder.layer.0.attention.self.key.weight", "key"),
            ("encoder.layer.0.attention.self.value.weight", "value"),
            ("encoder.layer.0.attention.output.dense.weight", "attention-output"),
            ("encoder.layer.0.intermediate.dense.weight", "intermediate"),
            ("encoder.layer.0.output.dense.weight", "output"),
            ("model.layers.3.self_attn.q_proj.weight", "query"),
            ("model.layers.3.self_attn.o_proj.weight", "attention-output"),
            ("model.layers.3.mlp.gate_proj.weight", "intermediate"),
            ("model.layers.3.mlp.down_proj.weight", "output"),
            ("h.0.mlp.c_fc.weight", "intermediate"),
            ("h.0.mlp.c_proj.weight", "output"),
            ("embeddings.word_embeddings.weight", "other"),
        ] {
            assert_eq!(role(name), want, "{name}");
        }
    }
}
