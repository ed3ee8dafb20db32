//! `rbe encode`: compress a safetensors model to an error target.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rbe_encode::{
    EncodeReport, EncodeSettings, ModelOptions, ParamsChoice, Profile, ResidualChoice, SourceModel, Target,
    encode_model,
};
use rbe_format::{Entropy, Layout, ParamsPrecision, Transform, ValueCodec};
use std::io::IsTerminal;
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
    #[arg(long, conflicts_with_all = ["rel_rmse", "rmse", "k"])]
    pub profile: Option<String>,
    /// Target RMSE relative to each tensor's standard deviation.
    #[arg(long, conflicts_with_all = ["rmse", "k"])]
    pub rel_rmse: Option<f64>,
    /// Target absolute RMSE.
    #[arg(long, conflicts_with = "k")]
    pub rmse: Option<f64>,
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

/// Default codec for a layout, and the default layout for a codec.
fn layout_and_values(layout: Option<&str>, values: Option<&str>) -> anyhow::Result<(Layout, ValueCodec)> {
    let layout: Option<Layout> = layout.map(str::parse).transpose()?;
    let values: Option<ValueCodec> = values.map(str::parse).transpose()?;
    Ok(match (layout, values) {
        (Some(l), Some(v)) => (l, v),
        (Some(l), None) => (
            l,
            match l {
                Layout::Wide => ValueCodec::F32,
                Layout::B4 | Layout::P32 => ValueCodec::Q16,
                Layout::P24 => ValueCodec::Q9s,
            },
        ),
        (None, Some(v)) => (
            match v {
                ValueCodec::F32 => Layout::Wide,
                ValueCodec::Q9s => Layout::P24,
                _ => Layout::P32,
            },
            v,
        ),
        (None, None) => (Layout::P32, ValueCodec::Q16),
    })
}

fn settings(a: &EncodeArgs) -> anyhow::Result<EncodeSettings> {
    let (target, profile) = if let Some(p) = &a.profile {
        let p: Profile = p.parse()?;
        (Target::RelRmse(p.rel_rmse()), Some(p))
    } else if let Some(r) = a.rel_rmse {
        (Target::RelRmse(r), None)
    } else if let Some(r) = a.rmse {
        (Target::Rmse(r), None)
    } else if let Some(k) = a.k {
        (Target::TopK(k), None)
    } else {
        (Target::RelRmse(Profile::Balanced.rel_rmse()), Some(Profile::Balanced))
    };
    match target {
        Target::RelRmse(x) | Target::Rmse(x) if !(x.is_finite() && x >= 0.0) => {
            bail!("the error target must be a finite number >= 0, got {x}")
        }
        Target::RelRmse(x) | Target::Rmse(x) if x == 0.0 => {
            bail!("impossible target: an error of 0 needs lossless coding; RBE's residuals are quantised")
        }
        _ => {}
    }
    let (layout, values) = layout_and_values(a.layout.as_deref(), a.values.as_deref())?;
    let params = match a.params.as_str() {
        "auto" => ParamsChoice::Auto,
        p => ParamsChoice::Fixed(p.parse::<ParamsPrecision>()?),
    };
    let s = EncodeSettings {
        target,
        profile,
        block: a.block,
        transform: a.transform.parse::<Transform>()?,
        layout,
        values,
        params,
        entropy: if a.entropy == "on" { Entropy::Rans } else { Entropy::None },
        residual: match a.residual.as_str() {
            "sparse" => ResidualChoice::Sparse,
            "dense" => ResidualChoice::Dense,
            _ => ResidualChoice::Auto,
        },
    };
    rbe_format::BlockConfig {
        block: s.block,
        transform: s.transform,
        layout: s.layout,
        values: s.values,
        params: ParamsPrecision::None,
    }
    .validate()?;
    Ok(s)
}

/// Runs `rbe encode`.
pub fn run(a: &EncodeArgs) -> anyhow::Result<()> {
    let settings = settings(a)?;
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().context("cannot start the thread pool")?;
    }
    let model = SourceModel::open(&a.input)?;
    let options = ModelOptions { include: a.include.clone(), exclude: a.exclude.clone(), resume: a.resume };
    let bar = if !a.json && std::io::stderr().is_terminal() {
        let total: u64 = model.tensors().map(|t| t.elements() as u64).sum();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} weights ({per_sec}, ETA {eta}) {msg}",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let progress = |r: &rbe_encode::TensorReport, done: u64, _total: u64| {
        if let Some(b) = &bar {
            b.set_position(done);
            b.set_message(r.name.clone());
        }
    };
    let report = encode_model(&model, &a.output, &settings, &options, &progress)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &EncodeReport) {
    println!("{:<48} {:>14} {:>7} {:>9} {:>7} {:>13}", "tensor", "shape", "bpw", "rel-rmse", "mean K", "sparse/dense");
    for t in r.tensors.iter().filter(|t| t.compressed) {
        let shape = t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        println!(
            "{:<48} {:>14} {:>7.3} {:>9.5} {:>7.0} {:>6}/{:<6}",
            t.name,
            shape,
            t.bpw,
            t.rel_rmse.unwrap_or(0.0),
            t.k_mean.unwrap_or(0.0),
            t.blocks_sparse.unwrap_or(0),
            t.blocks_dense.unwrap_or(0)
        );
    }
    let verbatim = r.tensors.iter().filter(|t| !t.compressed).count();
    println!(
        "{} tensors compressed ({} weights, {:.3} bits/weight), {} copied verbatim, {:.2} s",
        r.tensors.len() - verbatim,
        r.totals.weights,
        r.totals.bpw,
        verbatim,
        r.seconds
    );
}
