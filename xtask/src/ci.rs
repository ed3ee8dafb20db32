//! `cargo xtask ci`: what `.ci/run` runs — formatting, lints, and every test.

use crate::{root, run_cmd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The aarch64 target whose NEON kernels (`rbe-cpu`'s `simd::aarch64`) CI compile-checks.
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Runs the checks in order, stopping at the first failure.
pub fn run() -> anyhow::Result<()> {
    run_cmd("cargo", &["fmt", "--all", "--check"])?;
    run_cmd("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    crate::tidy::run()?;
    docs()?;
    aarch64_check()?;
    run_cmd("cargo", &["test", "--workspace", "--release"])?;
    // Every backend x mode x fixture; RBE_REQUIRE_GPU=1 (set by .ci/run) makes a missing adapter fail.
    run_cmd("cargo", &["xtask", "conformance"])?;
    eprintln!("ci: all checks passed");
    Ok(())
}

/// The facade's feature sets whose API docs must build without a warning (broken links, missing docs).
const DOC_FEATURE_SETS: &[&str] =
    &["", "cpu", "encode", "gpu", "candle", "bench", "calibrate", "cpu,gpu,encode,candle,bench,calibrate"];

/// `cargo doc` with warnings denied: the whole workspace with default features, then the facade
/// under each feature set on its own (a link that only resolves with another feature on fails here).
pub fn docs() -> anyhow::Result<()> {
    let with_flags = |args: &[&str]| -> anyhow::Result<()> {
        eprintln!("$ RUSTDOCFLAGS=\"-D warnings\" cargo {}", args.join(" "));
        let status =
            Command::new("cargo").args(args).env("RUSTDOCFLAGS", "-D warnings").current_dir(root()).status()?;
        anyhow::ensure!(status.success(), "cargo {} failed ({status})", args.join(" "));
        Ok(())
    };
    with_flags(&["doc", "--workspace", "--no-deps", "--quiet"])?;
    for features in DOC_FEATURE_SETS {
        let mut args = vec!["doc", "-p", "rbe", "--no-deps", "--quiet", "--no-default-features"];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        with_flags(&args)?;
    }
    Ok(())
}

/// Compile-checks (and lints) the aarch64 kernels, which the x86-64 build machines can neither
/// link nor run: fails CI when they do not build; skipped, with one line saying why, when the
/// target's standard library is neither installed nor installable here.
pub fn aarch64_check() -> anyhow::Result<()> {
    match aarch64_target() {
        Ok(()) => {
            run_cmd("cargo", &["check", "-p", "rbe-cpu", "-p", "rbe-format", "--target", AARCH64])?;
            run_cmd("cargo", &["clippy", "-p", "rbe-cpu", "--target", AARCH64, "--", "-D", "warnings"])?;
        }
        Err(why) => eprintln!("ci: aarch64 compile check skipped: {why}"),
    }
    Ok(())
}

/// Whether the pinned toolchain (`rust-toolchain.toml`, picked up in the workspace root) has the
/// aarch64 standard library, trying `rustup target add` (it needs the network) when it has not.
fn aarch64_target() -> Result<(), String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("rustup could not be run ({e})"))?;
    if listed.status.success() && String::from_utf8_lossy(&listed.stdout).lines().any(|l| l.trim() == AARCH64) {
        return Ok(());
    }
    eprintln!("$ rustup target add {AARCH64}");
    let mut add = Command::new("rustup")
        .args(["target", "add", AARCH64])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("rustup could not be run ({e})"))?;
    // Without a network the download may hang rather than fail: give it a bounded time.
    let limit = Duration::from_secs(180);
    let start = Instant::now();
    loop {
        match add.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("{AARCH64} is not installed and `rustup target add` failed ({status})"));
            }
            Ok(None) if start.elapsed() > limit => {
                // Ending our own child only; ignore a race with its exit.
                let _ = add.kill();
                let _ = add.wait();
                return Err(format!("{AARCH64} is not installed and `rustup target add` ran past {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for `rustup target add` failed ({e})")),
        }
    }
}
