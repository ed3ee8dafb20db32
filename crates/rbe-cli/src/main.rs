//! `rbe`: compress weight matrices to an error target and work with the compressed files.
//!
//! Exit codes: 0 success, 1 bad input (unreadable, corrupt or invalid file, impossible target),
//! 2 usage error (clap).

mod analyze;
mod bench;
mod calibrate;
mod decode;
mod demo;
mod encode;
mod inspect;
mod progress;
mod signals;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "rbe", version, about = "RBE: block-wise compression of neural-network weights to an error target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress a safetensors model (single file or sharded index) to an .rbe container.
    Encode(encode::EncodeArgs),
    /// The main job on the shipped real data: encode MiniLM slices at every profile and multiply from them.
    Demo(demo::DemoArgs),
    /// Expand an .rbe file back to a dense safetensors file.
    Decode(DecodeArgs),
    /// List the tensors of an .rbe file: shapes, bytes, bits per weight, settings, recorded error.
    Inspect(InspectArgs),
    /// Check every checksum and decode every block of an .rbe file.
    Verify(VerifyArgs),
    /// Per tensor: RBE's rate-distortion curve against f16, Q8_0 and Q4_0, with a recommendation.
    Analyze(analyze::AnalyzeArgs),
    /// Benchmark the CPU decode modes against dense f32 and candle's quantised matmuls.
    Bench(bench::BenchArgs),
    /// Run a BERT-family model on calibration text: per Linear weight, H = X^T X, tokens, sensitivity.
    Calibrate(calibrate::CalibrateArgs),
}

/// `rbe decode FILE -o OUT.safetensors [--dtype source|f32|f16|bf16]`
#[derive(clap::Args)]
pub struct DecodeArgs {
    /// The .rbe file.
    pub input: PathBuf,
    /// Output safetensors file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Dtype of the decoded compressed tensors: `source` restores each tensor's original dtype
    /// as recorded in the file (verbatim tensors always keep theirs).
    #[arg(long, default_value = "source", value_parser = ["source", "f32", "f16", "bf16"])]
    pub dtype: String,
    /// With `--dtype f16`: write values beyond f16's range as ±65504 instead of failing.
    #[arg(long)]
    pub saturate_f16: bool,
}

/// `rbe inspect FILE [--json] [--wide]`
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The .rbe file.
    pub input: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Every field (settings, cache, rmse, mean K, block kinds); the default table fits 100 columns.
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
    /// Also build each compressed tensor's direct-mode layer and print its resident bits per
    /// weight (`res_bpw`; `resident_bits_per_weight` in --json): reads every block, about as long
    /// as `rbe verify`.
    #[arg(long)]
    pub resident: bool,
}

/// `rbe verify FILE`
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The .rbe file.
    pub input: PathBuf,
}

fn main() -> ExitCode {
    signals::install();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Encode(a) => encode::run(a),
        Command::Decode(a) => decode::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::Calibrate(a) => calibrate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Names from files reach messages: escaped, so an error stays one inert line.
            eprintln!("error: {}", verify::one_line(&error_line(&e)));
            // Wrong arguments exit 2, like clap's own usage errors; bad input or a failed run, 1.
            let usage = e.downcast_ref::<Usage>().is_some() || e.downcast_ref::<rbe::SettingsError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// A command line that asks for something impossible (exit status 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The error and its causes on one line, each said once: library errors already include their
/// cause's message, so a cause whose text the line already holds is skipped.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn causes_already_in_the_message_are_said_once() {
        let io = std::io::Error::other("disk on fire");
        let inner = anyhow::Error::new(io).context("x.rbe: disk on fire");
        assert_eq!(error_line(&inner.context("encoding")), "encoding: x.rbe: disk on fire");
        let plain = anyhow::anyhow!("no such tensor").context("inspect");
        assert_eq!(error_line(&plain), "inspect: no such tensor");
    }
}
