//! `rbe calibrate`: run a BERT-family model on calibration text and write, per Linear weight, its
//! input second moments `H`, token count and sensitivity (`rbe::calibrate`).

use crate::verify::one_line;
use rbe::calibrate::{BertFiles, CalibrateOptions, Calibration, Progress, calibrate_bert};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `rbe calibrate MODEL.safetensors --text FILE -o CALIB.safetensors [--no-sensitivity] [--json]`
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The model's weights (safetensors), with `config.json` beside it (BERT family).
    pub model: PathBuf,
    /// Calibration text: one sample per non-empty line; a line over the model's
    /// max_position_embeddings tokens is an error.
    #[arg(long)]
    pub text: PathBuf,
    /// Output calibration file (safetensors, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The tokenizer (default: `tokenizer.json` beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The model's config (default: `config.json` beside the model).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Record `H` and token counts only; skip the per-Linear sensitivity probes.
    #[arg(long)]
    pub no_sensitivity: bool,
    /// Print one JSON object (per tensor: tokens, sensitivity) instead of the summary line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `rbe calibrate`.
pub fn run(a: &CalibrateArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut files = BertFiles::beside(&a.model);
    if let Some(p) = &a.tokenizer {
        files.tokenizer = p.clone();
    }
    if let Some(p) = &a.config {
        files.config = p.clone();
    }
    let inputs: Vec<&Path> = vec![&a.model, &a.text, &files.tokenizer, &files.config];
    // Refuse a bad output before the work, not after it.
    rbe::format::OutputFile::check(&a.output, &inputs).map_err(|e| anyhow::anyhow!(one_line(&e.to_string())))?;
    let text = std::fs::read(&a.text).map_err(|e| anyhow::anyhow!("{}: {e}", a.text.display()))?;
    let text = String::from_utf8(text).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", a.text.display()))?;
    let options = CalibrateOptions { sensitivity: !a.no_sensitivity, ..CalibrateOptions::default() };
    let mut progress = |p: Progress<'_>| match p {
        Progress::Loaded { samples, tokens, linears } => {
            eprintln!("{samples} samples, {tokens} tokens; recording {linears} Linears");
        }
        Progress::Captured { done, total } if done == total => eprintln!("recorded H over {total} batches"),
        Progress::Probed { done, total, name, sensitivity } => {
            eprintln!("[{done:>3}/{total}] sensitivity {sensitivity:>10.4}  {}", one_line(name));
        }
        _ => {}
    };
    let (mut calibration, summary) = calibrate_bert(&files, &text, &options, &mut progress)
        .map_err(|e| anyhow::anyhow!(one_line(&e.to_string())))?;
    calibration.write(&a.output, &inputs).map_err(|e| anyhow::anyhow!(one_line(&e.to_string())))?;
    let secs = t.elapsed().as_secs_f64();
    if a.json {
        let tensors: serde_json::Map<String, serde_json::Value> = calibration
            .tensors
            .iter()
            .map(|(name, t)| {
                let v = serde_json::json!({ "inputs": t.inputs, "tokens": t.tokens, "sensitivity": t.sensitivity });
                (name.clone(), v)
            })
            .collect();
        let out = serde_json::json!({
            "output": a.output.display().to_string(),
            "checksum": calibration.checksum,
            "samples": summary.samples,
            "tokens": summary.tokens,
            "linears": summary.linears,
            "capture_seconds": summary.capture_seconds,
            "probe_seconds": summary.probe_seconds,
            "seconds": secs,
            "metadata": calibration.metadata,
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let sens = match spread(&calibration) {
            Some(Spread { min: (lo_n, lo), median, max: (hi_n, hi) }) => format!(
                "; sensitivity min {lo:.4} ({}), median {median:.4}, max {hi:.4} ({})",
                one_line(lo_n),
                one_line(hi_n)
            ),
            None => String::new(),
        };
        eprintln!(
            "wrote {}: {} Linears, {} samples, {} tokens{sens}; {secs:.1} s (record {:.1} s, probe {:.1} s)",
            a.output.display(),
            summary.linears,
            summary.samples,
            summary.tokens,
            summary.capture_seconds,
            summary.probe_seconds
        );
    }
    Ok(())
}

/// The least and most sensitive tensors and the median sensitivity.
struct Spread<'a> {
    min: (&'a str, f64),
    median: f64,
    max: (&'a str, f64),
}

/// The spread of the probed sensitivities (none when nothing was probed).
fn spread(c: &Calibration) -> Option<Spread<'_>> {
    let mut s: Vec<(&str, f64)> =
        c.tensors.iter().filter_map(|(n, t)| t.sensitivity.map(|v| (n.as_str(), v))).collect();
    s.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = s.len() / 2;
    let median = if s.len() % 2 == 1 { s[m].1 } else { (s.get(m.wrapping_sub(1))?.1 + s[m].1) / 2.0 };
    Some(Spread { min: *s.first()?, median, max: *s.last()? })
}
