//! `rbe encode`: compress a safetensors model to an error target.

use crate::progress::{Progress, Unit};
use crate::verify::one_line;
use anyhow::Context;
use rbe::{
    Calibration, EncodeReport, EncodeSettings, Entropy, Layout, ModelOptions, ParamsChoice, ParamsPrecision, Profile,
    ResidualChoice, Selection, SourceModel, Target, TensorReport, Transform, ValueCodec, encode_model,
};
use std::path::PathBuf;

/// Arguments of `rbe encode`.
#[derive(clap::Args)]
pub struct EncodeArgs {
    /// Input safetensors file or `*.safetensors.index.json` (sharded).
    pub input: PathBuf,
    /// Output .rbe file (a directory for a sharded input).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Named profile: ultra (rel 0.005), high (0.02), balanced (0.05), fast (0.10).
    #[arg(long, conflicts_with_all = ["rel_rmse", "rmse", "k", "target_bpw"])]
    pub profile: Option<String>,
    /// Target RMSE relative to each tensor's standard deviation (below 1); with --calibration,
    /// each Linear's relative output error on the calibration inputs.
    #[arg(long, conflicts_with_all = ["rmse", "k", "target_bpw"], allow_negative_numbers = true)]
    pub rel_rmse: Option<f64>,
    /// Target absolute RMSE.
    #[arg(long, conflicts_with_all = ["k", "target_bpw", "calibration"], allow_negative_numbers = true)]
    pub rmse: Option<f64>,
    /// Bits per weight for the whole selection (bytes on disk, as `rbe inspect` counts them);
    /// steps are allocated across tensors (by sensitivity with --calibration).
    #[arg(long, conflicts_with = "k", allow_negative_numbers = true)]
    pub target_bpw: Option<f64>,
    /// Calibration file from `rbe calibrate`: GPTQ against each Linear's inputs, output-error
    /// targets, sensitivity-weighted --target-bpw.
    #[arg(long, conflicts_with = "k")]
    pub calibration: Option<PathBuf>,
    /// Keep exactly K coefficients per block (top-K by magnitude, the design notes' mode).
    #[arg(long)]
    pub k: Option<usize>,
    /// Block edge: 8, 16, 32 or 64.
    #[arg(long, default_value_t = 64)]
    pub block: usize,
    /// Residual transform: dct or dwt.
    #[arg(long, default_value = "dct")]
    pub transform: String,
    /// Sparse entry layout: wide, b4, p32 or p24.
    #[arg(long)]
    pub layout: Option<String>,
    /// Sparse value codec: f32, f16, q16, q9s or mulaw8.
    #[arg(long)]
    pub values: Option<String>,
    /// RBE parameter storage: auto, f32, f16 or none.
    #[arg(long, default_value = "auto")]
    pub params: String,
    /// Residual kinds: auto (cheaper per block), sparse (top-K only) or dense (all coefficients).
    #[arg(long, default_value = "auto", value_parser = ["auto", "sparse", "dense"])]
    pub residual: String,
    /// Entropy coding of the stored blocks: on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub entropy: String,
    /// Compress only tensors matching these globs (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Never compress tensors matching these globs (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sharded input: keep output shards that are already complete and verified, encode the rest.
    #[arg(long)]
    pub resume: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The settings asked for; anything unparsable or invalid is a usage error (exit 2).
fn settings(a: &EncodeArgs) -> anyhow::Result<EncodeSettings> {
    let usage = |e: &dyn std::fmt::Display| crate::Usage(e.to_string());
    resolve(a).map_err(|e| usage(&e).into())
}

fn resolve(a: &EncodeArgs) -> anyhow::Result<EncodeSettings> {
    let mut b = EncodeSettings::builder();
    if let Some(p) = &a.profile {
        b = b.profile(p.parse::<Profile>()?);
    } else if let Some(r) = a.rel_rmse {
        b = b.target(Target::RelRmse(r));
    } else if let Some(r) = a.rmse {
        b = b.target(Target::Rmse(r));
    } else if let Some(bpw) = a.target_bpw {
        b = b.target(Target::BitsPerWeight(bpw));
    } else if let Some(k) = a.k {
        b = b.target(Target::TopK(k));
    }
    if let Some(l) = &a.layout {
        b = b.layout(l.parse::<Layout>()?);
    }
    if let Some(v) = &a.values {
        b = b.values(v.parse::<ValueCodec>()?);
    }
    let params = match a.params.as_str() {
        "auto" => ParamsChoice::Auto,
        p => ParamsChoice::Fixed(p.parse::<ParamsPrecision>()?),
    };
    let residual = match a.residual.as_str() {
        "sparse" => ResidualChoice::Sparse,
        "dense" => ResidualChoice::Dense,
        _ => ResidualChoice::Auto,
    };
    Ok(b.block(a.block)
        .transform(a.transform.parse::<Transform>()?)
        .params(params)
        .entropy(if a.entropy == "on" { Entropy::Rans } else { Entropy::None })
        .residual(residual)
        .build()?)
}

/// Runs `rbe encode`.
pub fn run(a: &EncodeArgs) -> anyhow::Result<()> {
    let settings = settings(a)?;
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().context("cannot start the thread pool")?;
    }
    let model = SourceModel::open(&a.input)?;
    let calibration = match &a.calibration {
        Some(path) => Some(std::sync::Arc::new(Calibration::open(path)?)),
        None => None,
    };
    let options = ModelOptions {
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        resume: a.resume,
        calibration: calibration.clone(),
    };
    // Bad or contradictory globs are a usage error, found before any work.
    Selection::new(&options.include, &options.exclude).map_err(|e| crate::Usage(e.to_string()))?;
    let total: u64 = model.tensors().map(|t| t.elements() as u64).sum();
    let bar = Progress::new(total, Unit::Weights, a.json);
    let progress = |r: &TensorReport, done: u64, _total: u64| bar.set(&r.name, done);
    let report = encode_model(&model, &a.output, &settings, &options, &progress)?;
    bar.finish();
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    if report.model.totals.compressed == 0 {
        explain_nothing_compressed(&model, &settings, &options);
    }
    if calibration.is_some() {
        let uncovered: Vec<&str> = report
            .model
            .tensors
            .iter()
            .filter(|t| t.compressed && t.output_rel_rmse.is_none())
            .map(|t| t.name.as_str())
            .collect();
        if let Some(first) = uncovered.first() {
            eprintln!(
                "note: {} compressed tensor(s) are not in the calibration (e.g. {}): quantised for weight error instead",
                uncovered.len(),
                one_line(first)
            );
        }
    }
    Ok(())
}

/// Why no tensor was compressed: each reason once with how many tensors it covers and an example.
fn explain_nothing_compressed(model: &SourceModel, settings: &EncodeSettings, options: &ModelOptions) {
    let Ok(selection) = Selection::new(&options.include, &options.exclude) else { return };
    let mut reasons: Vec<(String, usize, String)> = Vec::new();
    for t in model.tensors() {
        let Some(why) = selection.reason(t, settings) else { continue };
        let key = why.split(" (").next().unwrap_or(&why).to_owned();
        match reasons.iter_mut().find(|(k, ..)| *k == key) {
            Some(r) => r.1 += 1,
            None => reasons.push((key, 1, format!("{}: {why}", one_line(&t.name)))),
        }
    }
    eprintln!("note: no tensor was compressed");
    for (_, n, example) in reasons {
        eprintln!("  {n} tensor(s) like {example}");
    }
}

fn print_table(r: &EncodeReport) {
    let calibrated = r.model.tensors.iter().any(|t| t.output_rel_rmse.is_some());
    let out_head = if calibrated { format!(" {:>8}", "out-rel") } else { String::new() };
    println!(
        "{:<48} {:>14} {:>7} {:>9}{out_head} {:>7} {:>13}",
        "tensor", "shape", "bpw", "rel-rmse", "mean K", "sparse/dense"
    );
    for t in r.model.tensors.iter().filter(|t| t.compressed) {
        let shape = t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let out = match (calibrated, t.output_rel_rmse) {
            (false, _) => String::new(),
            (true, Some(x)) => format!(" {x:>8.5}"),
            (true, None) => format!(" {:>8}", "-"),
        };
        println!(
            "{:<48} {:>14} {:>7.3} {:>9.5}{out} {:>7.0} {:>6}/{:<6}",
            one_line(&t.name),
            shape,
            t.bits_per_weight.unwrap_or(0.0),
            t.rel_rmse.unwrap_or(0.0),
            t.k_mean.unwrap_or(0.0),
            t.blocks_sparse.unwrap_or(0),
            t.blocks_dense.unwrap_or(0)
        );
    }
    let totals = &r.model.totals;
    println!(
        "{} tensors compressed ({} weights, {:.3} bits/weight on disk), {} copied verbatim, {:.2} s",
        totals.compressed,
        totals.weights,
        totals.bits_per_weight.unwrap_or(0.0),
        totals.verbatim,
        r.seconds
    );
}
