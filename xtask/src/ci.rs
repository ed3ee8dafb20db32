//! `cargo xtask ci`: what `.ci/run` runs — formatting, lints, and every test.

use crate::run_cmd;

/// Runs the checks in order, stopping at the first failure.
pub fn run() -> anyhow::Result<()> {
    run_cmd("cargo", &["fmt", "--all", "--check"])?;
    run_cmd("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    run_cmd("cargo", &["test", "--workspace", "--release"])?;
    // Every backend x mode x fixture; RBE_REQUIRE_GPU=1 (set by .ci/run) makes a missing adapter fail.
    run_cmd("cargo", &["xtask", "conformance"])?;
    eprintln!("ci: all checks passed");
    Ok(())
}
