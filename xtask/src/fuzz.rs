//! `cargo xtask fuzz [--seconds N]`: runs every cargo-fuzz target for a bounded time on the nightly
//! toolchain, starting from the checked-in seed corpus (new inputs go to a scratch directory under
//! target/, so the repository stays clean). A crash fails the run and its input is copied into
//! `crates/rbe-format/tests/fuzz_regressions/`, where `cargo test` replays it from then on.

use anyhow::{Context, bail};
use std::process::Command;

const TARGETS: [&str; 3] = ["container", "block", "coded_block"];

/// Runs the fuzzers; prints executions and CPU time per target.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let seconds: u64 = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a whole number")?,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    };
    let root = crate::root();
    let has_fuzz =
        Command::new("cargo").args(["+nightly", "fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_fuzz {
        crate::run_cmd("cargo", &["+nightly", "install", "cargo-fuzz", "--locked"])?;
    }
    let mut summary = Vec::new();
    for target in TARGETS {
        let scratch = root.join("target").join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        let artifacts = root.join("target").join("fuzz-artifacts").join(target);
        std::fs::create_dir_all(&artifacts)?;
        let seeds = root.join("fuzz").join("corpus").join(target);
        let started = std::time::Instant::now();
        let output = Command::new("cargo")
            .current_dir(&root)
            .args(["+nightly", "fuzz", "run", target])
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .output()?;
        let log = String::from_utf8_lossy(&output.stderr);
        let execs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map_or("?".to_owned(), |v| v.trim().to_owned());
        summary.push(format!("{target}: {execs} executions in {:.0} s", started.elapsed().as_secs_f64()));
        if !output.status.success() {
            let regressions = root.join("crates/rbe-format/tests/fuzz_regressions");
            for entry in std::fs::read_dir(&artifacts)? {
                let path = entry?.path();
                let name = format!("{target}-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("crash"));
                std::fs::copy(&path, regressions.join(name))?;
            }
            eprintln!(
                "{}",
                log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            bail!("fuzz target `{target}` failed; its input was added to crates/rbe-format/tests/fuzz_regressions/");
        }
    }
    for line in &summary {
        println!("{line}");
    }
    Ok(())
}
