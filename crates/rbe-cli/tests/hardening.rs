//! Hostile-user regressions, one test per class of harm: outputs that would destroy an input or
//! replace a device, re-encoding an `.rbe`, targets that would zero a tensor or that one extreme
//! weight would make meaningless, weights too small for f32, sizes from the command line, broken
//! pipes, signals (no temp file survives SIGINT/SIGTERM; a SIGKILLed run's leftovers go with the
//! next run), an input cut while it is read, concurrent writers, a bogus shard index entry, and
//! the reports (`analyze`, `inspect`, `bench`) saying something sensible in the space they have.
#![cfg(unix)]

use rbe_testkit::Rng;
use rbe_testkit::data::f32_bytes;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RBE: &str = env!("CARGO_BIN_EXE_rbe");

fn rbe(args: &[&str]) -> Output {
    Command::new(RBE).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status `code`, one line on stderr containing `needle`, no panic.
fn expect(o: &Output, code: i32, needle: &str, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{what}: exit status, stderr: {err}");
    assert!(err.contains(needle), "{what}: stderr lacks `{needle}`: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{what}: a panic reached the user: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line expected: {err}");
}

/// A safetensors model of `tensors` 384x512 F32 weights ~ N(0, 0.05^2)-ish.
fn write_model(path: &Path, tensors: usize) {
    let mut w = rbe::format::SafetensorsWriter::create(path).unwrap();
    let mut rng = Rng::new(0x5EED);
    for t in 0..tensors {
        let data: Vec<f32> = (0..384 * 512).map(|_| rng.centred_f32() * 0.1).collect();
        w.add(&format!("layers.{t}.weight"), "F32", &[384, 512], &f32_bytes(&data)).unwrap();
    }
    w.finish().unwrap();
}

/// A temp dir holding `m.safetensors` ([`write_model`] with `tensors`) and, when `encode`, its
/// `m.rbe` (default settings); returns the dir and both paths.
fn model_dir(tensors: usize, encode: bool) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    write_model(&input, tensors);
    let rbe_file = dir.path().join("m.rbe");
    if encode {
        assert!(rbe(&["encode", s(&input), "-o", s(&rbe_file)]).status.success());
    }
    (dir, input, rbe_file)
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".rbe-tmp.") || n.ends_with(".tmp"))
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn outputs_that_would_destroy_an_input_or_a_device_are_refused() {
    let (dir, input, _) = model_dir(1, false);
    let original = std::fs::read(&input).unwrap();
    expect(&rbe(&["encode", s(&input), "-o", s(&input)]), 1, "is the input", "encode X -o X");
    let link = dir.path().join("link.rbe");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    expect(&rbe(&["encode", s(&input), "-o", s(&link)]), 1, "is the input", "encode X -o link-to-X");
    assert_eq!(std::fs::read(&input).unwrap(), original, "the input is untouched");

    let rbe_file = dir.path().join("m.rbe");
    assert!(rbe(&["encode", s(&input), "-o", s(&rbe_file)]).status.success());
    let encoded = std::fs::read(&rbe_file).unwrap();
    expect(&rbe(&["decode", s(&rbe_file), "-o", s(&rbe_file)]), 1, "is the input", "decode Y -o Y");
    assert_eq!(std::fs::read(&rbe_file).unwrap(), encoded);

    expect(&rbe(&["encode", s(&input), "-o", s(dir.path())]), 1, "is a directory", "encode -o DIR");
    if Path::new("/dev/null").exists() {
        expect(&rbe(&["encode", s(&input), "-o", "/dev/null"]), 1, "not a regular file", "encode -o /dev/null");
        expect(&rbe(&["decode", s(&rbe_file), "-o", "/dev/null"]), 1, "not a regular file", "decode -o /dev/null");
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null is still a device");
    }
    assert!(temp_files(dir.path()).is_empty(), "refusals leave nothing behind");
}

#[test]
fn re_encoding_an_rbe_file_is_refused_with_the_way_out() {
    let (dir, _input, rbe_file) = model_dir(1, true);
    let again = dir.path().join("again.rbe");
    expect(&rbe(&["encode", s(&rbe_file), "-o", s(&again)]), 1, "rbe decode", "encode of an .rbe");
    assert!(!again.exists());
}

#[test]
fn impossible_sizes_and_targets_are_usage_errors_or_named_refusals() {
    let (dir, input, _) = model_dir(1, false);
    let out = dir.path().join("o.rbe");
    let enc = |extra: &[&str]| {
        let mut args = vec!["encode", s(&input), "-o", s(&out)];
        args.extend_from_slice(extra);
        rbe(&args)
    };
    expect(&enc(&["--rel-rmse", "1.5"]), 2, "below 1", "--rel-rmse 1.5");
    expect(&enc(&["--rel-rmse", "-0.1"]), 2, ">= 0", "--rel-rmse -0.1");
    expect(&enc(&["--k", "5000"]), 2, "outside 1..=4096", "--k 5000");
    expect(&enc(&["--block", "7"]), 2, "block size 7", "--block 7");
    expect(&enc(&["--rmse", "100"]), 1, "largest sensible target", "--rmse 100");
    assert!(!out.exists(), "no output for a refused target");
    expect(&rbe(&["bench", "--synthetic", "1000000x1000000"]), 2, "2^28", "bench --synthetic huge");
    expect(&rbe(&["bench", "--synthetic", "64x64", "--batch", "0"]), 2, "--batch", "bench --batch 0");
}

#[test]
fn one_extreme_weight_cannot_pass_as_a_met_relative_target() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    let mut rng = Rng::new(7);
    let mut data: Vec<f32> = (0..64 * 64).map(|_| rng.centred_f32() * 0.1).collect();
    data[5 * 64 + 7] = 1e30;
    let mut w = rbe::format::SafetensorsWriter::create(&input).unwrap();
    w.add("w", "F32", &[64, 64], &f32_bytes(&data)).unwrap();
    w.finish().unwrap();
    let out = dir.path().join("o.rbe");
    expect(&rbe(&["encode", s(&input), "-o", s(&out), "--rel-rmse", "0.05"]), 1, "weight [5, 7] = 1e30", "outlier");
    assert!(!out.exists());
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let (_dir, _input, rbe_file) = model_dir(12, true);
    for args in [vec!["inspect", s(&rbe_file)], vec!["inspect", s(&rbe_file), "--json"]] {
        let mut child = Command::new(RBE).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away before the first line
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.status.success() || o.status.signal() == Some(libc::SIGPIPE), "{args:?}: {:?} {err}", o.status);
    }
}

/// Sends `signal` to `args` after `delay`; returns the status and whether it was still running.
fn run_and_signal(args: &[&str], delay: Duration, signal: i32) -> (std::process::ExitStatus, bool) {
    let mut child = Command::new(RBE).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    (child.wait().unwrap(), running)
}

#[test]
fn signals_leave_no_temp_file_and_a_killed_runs_leftovers_go_with_the_next_run() {
    let (dir, input, _) = model_dir(8, false);
    let out = dir.path().join("o.rbe");
    let args = ["encode", s(&input), "-o", s(&out), "--threads", "1"];
    let start = Instant::now();
    assert!(rbe(&args).status.success());
    let clean = start.elapsed();
    std::fs::remove_file(&out).unwrap();
    let mut rng = Rng::new(99);
    let mut interrupted = 0;
    for trial in 0..12 {
        let (signal, code) = if trial % 2 == 0 { (libc::SIGINT, 130) } else { (libc::SIGTERM, 143) };
        // Past start-up (signal handlers installed), before the end of a clean run.
        let delay = clean.mul_f64(0.2 + 0.7 * rng.unit());
        let (status, running) = run_and_signal(&args, delay, signal);
        if running {
            // A signal that lands as the run finishes can lose the race to `main`'s return: then
            // the run completed, and its output must be whole.
            if status.code() == Some(0) {
                assert!(rbe(&["verify", s(&out)]).status.success(), "trial {trial}: exit 0 without a valid output");
            } else {
                interrupted += 1;
                assert_eq!(status.code(), Some(code), "trial {trial}: exit status after signal {signal}");
            }
        }
        assert!(temp_files(dir.path()).is_empty(), "trial {trial}: temp files left: {:?}", temp_files(dir.path()));
        let _ = std::fs::remove_file(&out);
    }
    assert!(interrupted > 0, "no trial was interrupted mid-run");

    // SIGKILL cannot be caught: the temp file stays until the next run into the directory.
    let mut left = false;
    for _ in 0..6 {
        let (_, running) = run_and_signal(&args, clean.mul_f64(0.5), libc::SIGKILL);
        left |= running && !temp_files(dir.path()).is_empty();
        let _ = std::fs::remove_file(&out);
        if left {
            break;
        }
    }
    let stale = dir.path().join(".o.rbe.rbe-tmp.4294967295.abc123");
    std::fs::write(&stale, b"left by a killed run").unwrap();
    let other = dir.path().join("other.rbe");
    assert!(rbe(&["encode", s(&input), "-o", s(&other)]).status.success());
    assert!(temp_files(dir.path()).is_empty(), "the next run removes stale temp files: {:?}", temp_files(dir.path()));
}

#[test]
fn decode_restores_the_source_dtype_and_says_when_a_narrower_one_costs_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let small: Vec<f32> = (0..128 * 128).map(|_| rng.centred_f32() * 0.1).collect();
    let large: Vec<f32> = small.iter().map(|v| v * 2e6).collect();
    let input = dir.path().join("m.safetensors");
    let mut w = rbe::format::SafetensorsWriter::create(&input).unwrap();
    let f16_bytes: Vec<u8> = small.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    w.add("half", "F16", &[128, 128], &f16_bytes).unwrap();
    w.add("wide", "F32", &[128, 128], &f32_bytes(&large)).unwrap();
    w.finish().unwrap();
    let rbe_file = dir.path().join("m.rbe");
    assert!(rbe(&["encode", s(&input), "-o", s(&rbe_file), "--rel-rmse", "0.002"]).status.success());

    let out = dir.path().join("d.safetensors");
    let o = rbe(&["decode", s(&rbe_file), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("half").unwrap().dtype(), safetensors::Dtype::F16, "default: the source dtype");
    assert_eq!(st.tensor("wide").unwrap().dtype(), safetensors::Dtype::F32);
    std::fs::remove_file(&out).unwrap();

    expect(&rbe(&["decode", s(&rbe_file), "-o", s(&out), "--dtype", "f16"]), 1, "exceed f16's range", "f16 overflow");
    assert!(!out.exists());
    let o = rbe(&["decode", s(&rbe_file), "-o", s(&out), "--dtype", "f16", "--saturate-f16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&out).unwrap();

    let o = rbe(&["decode", s(&rbe_file), "-o", s(&out), "--dtype", "bf16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("warning: tensor `wide`: rounding to bf16 raises its relative RMSE"), "{err}");
}

#[test]
fn an_encode_that_compresses_nothing_says_why() {
    let (dir, input, _) = model_dir(1, false);
    let out = dir.path().join("o.rbe");
    let o = rbe(&["encode", s(&input), "-o", s(&out), "--include", "nothing.*"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not matched by --include"), "{}", stderr(&o));
    let small = dir.path().join("small.safetensors");
    let mut w = rbe::format::SafetensorsWriter::create(&small).unwrap();
    w.add("tiny", "F32", &[20, 24], &f32_bytes(&vec![0.5; 20 * 24])).unwrap();
    w.finish().unwrap();
    let o = rbe(&["encode", s(&small), "-o", s(&out)]);
    assert!(stderr(&o).contains("try --block 16"), "{}", stderr(&o));
    expect(&rbe(&["encode", s(&input), "-o", s(&out), "--include", "a.*", "--exclude", "a.*"]), 2, "both", "globs");
}

#[test]
fn a_directory_as_input_is_called_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.rbe");
    expect(&rbe(&["encode", s(dir.path()), "-o", s(&out)]), 1, "is a directory", "encode DIR");
    expect(&rbe(&["inspect", s(dir.path())]), 1, "is a directory", "inspect DIR");
}

#[test]
fn an_output_in_a_missing_directory_is_named_once_without_temp_names() {
    let (dir, input, _) = model_dir(1, false);
    let out = dir.path().join("missing").join("o.rbe");
    let o = rbe(&["encode", s(&input), "-o", s(&out)]);
    expect(&o, 1, "does not exist", "missing output directory");
    assert!(!stderr(&o).contains("rbe-tmp"), "no temp file name: {}", stderr(&o));
}

/// A one-tensor F32 safetensors file.
fn write_tensor(path: &Path, name: &str, shape: &[usize], data: &[f32]) {
    let mut w = rbe::format::SafetensorsWriter::create(path).unwrap();
    w.add(name, "F32", shape, &f32_bytes(data)).unwrap();
    w.finish().unwrap();
}

#[test]
fn tiny_weights_encode_or_say_they_are_too_small_never_inf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.rbe");
    let mut rng = Rng::new(11);
    let noise: Vec<f32> = (0..128 * 128).map(|_| rng.centred_f32()).collect();
    // Normal but tiny (down to 1e-36): encoded to the target like any other tensor.
    for scale in [1e-30f32, 1e-36] {
        let input = dir.path().join("tiny.safetensors");
        write_tensor(&input, "w", &[128, 128], &noise.iter().map(|v| v * scale).collect::<Vec<_>>());
        let o = rbe(&["encode", s(&input), "-o", s(&out), "--rel-rmse", "0.05", "--json"]);
        assert!(o.status.success(), "scale {scale}: {}", stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let rel = report["tensors"][0]["rel_rmse"].as_f64().unwrap();
        assert!(rel <= 0.05, "scale {scale}: relative RMSE {rel}");
        std::fs::remove_file(&out).unwrap();
    }
    // Subnormal weights: f32 steps cannot resolve them; the message says so and what to do.
    let input = dir.path().join("subnormal.safetensors");
    write_tensor(&input, "w", &[128, 128], &noise.iter().map(|v| v * 1e-39).collect::<Vec<_>>());
    for (target, needle) in [(["--rel-rmse", "0.05"], "--exclude"), (["--rmse", "1e-41"], "ask for at least")] {
        let o = rbe(&["encode", s(&input), "-o", s(&out), target[0], target[1]]);
        expect(&o, 1, if target[0] == "--rmse" { "finer than" } else { "too small" }, "subnormal weights");
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
        assert!(!stderr(&o).contains("inf"), "an rmse of inf: {}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn bench_tables_and_json_never_show_nan_or_inf() {
    // 72 columns: candle's 32-wide quantised types are skipped, so their rows have no time.
    let o = rbe(&["bench", "--synthetic", "64x72", "--no-cache-study"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.contains("candle_q8_0"), "{table}");
    for bad in ["NaN", "inf"] {
        assert!(!table.contains(bad), "`{bad}` in the table:\n{table}");
    }
    let o = rbe(&["bench", "--synthetic", "64x72", "--no-cache-study", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let skipped = json["results"].as_array().unwrap().iter().find(|r| r["method"] == "candle_q8_0").unwrap();
    assert!(skipped["median_us"].is_null(), "{skipped}");
    // The GPU run's dense baseline is `gpu_dense_f32`; where an adapter exists its ratios are real.
    let o = rbe(&["bench", "--synthetic", "64x64", "--backend", "gpu"]);
    if o.status.success() {
        let table = String::from_utf8(o.stdout).unwrap();
        assert!(!table.contains("NaN") && !table.contains("inf"), "{table}");
        let dct = table.lines().find(|l| l.starts_with("gpu_dct_direct")).unwrap();
        assert!(dct.contains('x'), "a ratio against gpu_dense_f32: {dct}");
    } else {
        expect(&o, 1, "", "bench --backend gpu without an adapter");
    }
}

#[test]
fn inspect_fits_100_columns_unless_wide() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    let long = format!("model.{}.layers.17.self_attn.q_proj.weight", "very_long_module_name.".repeat(4));
    let mut rng = Rng::new(5);
    let data: Vec<f32> = (0..64 * 64).map(|_| rng.centred_f32()).collect();
    write_tensor(&input, &long, &[64, 64], &data);
    let file = dir.path().join("m.rbe");
    assert!(rbe(&["encode", s(&input), "-o", s(&file)]).status.success());
    let narrow = String::from_utf8(rbe(&["inspect", s(&file)]).stdout).unwrap();
    for line in narrow.lines().filter(|l| !l.contains(s(&file))) {
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
    assert!(narrow.contains("model.very_long") && narrow.contains("…") && narrow.contains("q_proj.weight"), "{narrow}");
    let wide = String::from_utf8(rbe(&["inspect", s(&file), "--wide"]).stdout).unwrap();
    assert!(wide.contains(&long) && wide.contains("balanced") && wide.contains("sparse/dense"), "{wide}");
}

/// A model of two layers' worth of BERT-named 128x128 weights.
fn write_bert_like(path: &Path) {
    let mut w = rbe::format::SafetensorsWriter::create(path).unwrap();
    let mut rng = Rng::new(21);
    for layer in 0..2 {
        for part in ["attention.self.query", "attention.self.value", "intermediate.dense", "output.dense"] {
            let data: Vec<f32> = (0..128 * 128).map(|_| rng.centred_f32() * 0.05).collect();
            w.add(&format!("encoder.layer.{layer}.{part}.weight"), "F32", &[128, 128], &f32_bytes(&data)).unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn analyze_recommends_takes_its_own_help_and_labels_its_chart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    write_bert_like(&input);

    // The form `--help` shows as the default is accepted as given.
    let help = String::from_utf8(rbe(&["analyze", "--help"]).stdout).unwrap();
    let shown = help.split("--targets").nth(1).and_then(|t| t.split("[default: ").nth(1)).unwrap();
    let shown = shown.split(']').next().unwrap();
    let plot = dir.path().join("rd.svg");
    let o = rbe(&["analyze", s(&input), "--targets", shown, "--plot", s(&plot)]);
    assert!(o.status.success(), "--targets {shown}: {}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let rec: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("recommendation")).collect();
    assert!(rec.iter().any(|l| l.contains("query") && l.contains("RBE --rel-rmse 0.05")), "{text}");
    assert!(rec.iter().any(|l| l.contains("=> rbe encode") && l.contains("--rel-rmse 0.05")), "{text}");

    // The chart: one colour and one legend entry per role, not one per tensor.
    let svg = std::fs::read_to_string(&plot).unwrap();
    for role in ["query (2)", "value (2)", "intermediate (2)", "output (2)"] {
        assert!(svg.contains(&format!("RBE, {role}")), "legend lacks {role}");
    }

    let o = rbe(&["analyze", s(&input), "--json", "--targets", "0.02 0.1", "--target", "0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let roles = json["recommendation"]["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 4, "{roles:?}");
    for r in roles {
        assert_eq!(r["choice"]["method"], "rbe@0.1", "{r}");
        assert!(r["choice"]["worst_rel_rmse"].as_f64().unwrap() <= 0.1);
    }

    // clap's own usage error: exit 2, the reason, and its pointer to --help.
    let o = rbe(&["analyze", s(&input), "--targets", "1.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("`1.5` is not a relative RMSE between 0 and 1"), "{}", stderr(&o));
    expect(&rbe(&["analyze", s(&input), "--block", "7"]), 2, "block size 7", "analyze --block 7");
}

#[test]
fn analyze_refuses_an_unwritable_chart_before_the_analysis() {
    let dir = tempfile::tempdir().unwrap();
    // The analysis itself would fail (a NaN weight): the chart's path must be refused first.
    let input = dir.path().join("nan.safetensors");
    let mut data = vec![0.01f32; 128 * 128];
    data[3] = f32::NAN;
    write_tensor(&input, "w", &[128, 128], &data);
    let o = rbe(&["analyze", s(&input), "--plot", s(&dir.path().join("missing").join("x.svg"))]);
    expect(&o, 1, "does not exist", "--plot in a missing directory");
    assert!(stderr(&o).contains("--plot"), "{}", stderr(&o));
    expect(&rbe(&["analyze", s(&input), "--plot", s(dir.path())]), 1, "is a directory", "--plot DIR");
}

#[test]
fn concurrent_encodes_to_one_path_leave_one_whole_result() {
    let (dir, input, _) = model_dir(4, false);
    // Each setting alone; outputs are deterministic, so a whole result equals one of these.
    let alone = |profile: &str| {
        let path = dir.path().join(format!("{profile}.rbe"));
        assert!(rbe(&["encode", s(&input), "-o", s(&path), "--profile", profile]).status.success());
        std::fs::read(&path).unwrap()
    };
    let (fast, high) = (alone("fast"), alone("high"));
    assert_ne!(fast, high);
    let out = dir.path().join("o.rbe");
    for round in 0..4 {
        let children: Vec<_> = ["fast", "high"]
            .iter()
            .map(|p| {
                Command::new(RBE)
                    .args(["encode", s(&input), "-o", s(&out), "--profile", p])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        let got = std::fs::read(&out).unwrap();
        assert!(got == fast || got == high, "round {round}: the output is neither whole result");
        assert!(temp_files(dir.path()).is_empty(), "round {round}: {:?}", temp_files(dir.path()));
        let verify = rbe(&["verify", s(&out)]);
        assert!(verify.status.success(), "{}", stderr(&verify));
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn a_sharded_decode_maps_only_tensors_each_shard_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(8);
    let mut map = serde_json::Map::new();
    for (shard, names) in
        [("m-00001-of-00002.safetensors", ["a.weight"]), ("m-00002-of-00002.safetensors", ["b.weight"])]
    {
        let data: Vec<f32> = (0..64 * 64).map(|_| rng.centred_f32()).collect();
        write_tensor(&dir.path().join(shard), names[0], &[64, 64], &data);
        map.insert(names[0].to_owned(), shard.into());
    }
    let index = dir.path().join("m.safetensors.index.json");
    std::fs::write(&index, serde_json::json!({ "metadata": {}, "weight_map": map }).to_string()).unwrap();
    let encoded = dir.path().join("enc");
    let o = rbe(&["encode", s(&index), "-o", s(&encoded)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rbe_index = std::fs::read_dir(&encoded)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_str().unwrap().ends_with(".index.json"))
        .unwrap();
    // A bogus entry: a tensor that no shard holds, mapped to the first shard.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&rbe_index).unwrap()).unwrap();
    let first = json["weight_map"]["a.weight"].clone();
    json["weight_map"]["ghost.weight"] = first;
    std::fs::write(&rbe_index, json.to_string()).unwrap();

    let decoded = dir.path().join("dec");
    let o = rbe(&["decode", s(&rbe_index), "-o", s(&decoded)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out_index = std::fs::read_dir(&decoded)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_str().unwrap().ends_with(".index.json"))
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_index).unwrap()).unwrap();
    let map = out["weight_map"].as_object().unwrap();
    assert!(!map.contains_key("ghost.weight"), "the bogus entry reached the output index: {out}");
    assert_eq!(map.len(), 2, "{out}");
    for (name, shard) in map {
        let bytes = std::fs::read(decoded.join(shard.as_str().unwrap())).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(st.tensor(name).is_ok(), "{name} is mapped to {shard}, which does not hold it");
    }
}

/// The process's memory maps name `path`.
#[cfg(target_os = "linux")]
fn maps_file(pid: u32, path: &Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(s(path)))
}

#[cfg(target_os = "linux")]
#[test]
fn an_input_truncated_while_it_is_read_is_one_line_and_exit_1() {
    // Big enough that one thread is still encoding when the file is cut (48 tensors, 38 MB).
    let (dir, input, _) = model_dir(48, false);
    let input = input.canonicalize().unwrap();
    let out = dir.path().join("o.rbe");
    let mut child = Command::new(RBE)
        .args(["encode", s(&input), "-o", s(&out), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    while !maps_file(pid, &input) {
        assert!(child.try_wait().unwrap().is_none(), "encode ended before mapping its input");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Stopped while the file is cut to its header, so no tensor it reads next is still there.
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let bytes = std::fs::read(&input).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap());
    std::fs::OpenOptions::new().write(true).open(&input).unwrap().set_len(header).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let o = child.wait_with_output().unwrap();
    expect(&o, 1, "changed size while it was being read", "input truncated while mapped");
    assert!(!out.exists(), "no output from a cut input");
}
