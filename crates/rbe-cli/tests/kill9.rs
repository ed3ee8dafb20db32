//! Crash safety: `rbe encode` and `rbe decode` killed with SIGKILL at pseudo-random moments never
//! leave an output that looks complete but is not — the output path holds either nothing or a
//! file that verifies and decodes exactly like a clean run's.

use rbe_testkit::Rng;
use rbe_testkit::data::f32_bytes;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const RBE: &str = env!("CARGO_BIN_EXE_rbe");

fn write_model(path: &Path) {
    let mut w = rbe::format::SafetensorsWriter::create(path).unwrap();
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for t in 0..6 {
        let data: Vec<f32> = (0..384 * 512).map(|_| rng.centred_f32() * 0.1).collect();
        w.add(&format!("layers.{t}.weight"), "F32", &[384, 512], &f32_bytes(&data)).unwrap();
    }
    w.finish().unwrap();
}

fn run(args: &[&str]) -> bool {
    Command::new(RBE).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// Kills `args` after `delay`; returns whether it was still running (i.e. really interrupted).
fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(RBE).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let interrupted = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    interrupted
}

#[test]
fn sigkill_never_leaves_a_file_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    write_model(&dir.path().join("in.safetensors"));
    // Kill delays are drawn within each command's own clean run time, measured here, so the
    // trials land mid-run on fast and slow machines alike.
    let timed = |args: &[&str]| {
        let start = std::time::Instant::now();
        assert!(run(args), "clean run failed: {args:?}");
        start.elapsed()
    };
    let encode_time = timed(&["encode", &d("in.safetensors"), "-o", &d("ref.rbe"), "--profile", "balanced"]);
    let decode_time = timed(&["decode", &d("ref.rbe"), "-o", &d("ref.safetensors")]);
    let reference = std::fs::read(d("ref.safetensors")).unwrap();

    let mut rng = Rng::new(12345);
    let (mut interrupted, mut complete) = (0, 0);
    for trial in 0..40 {
        let span = if trial % 2 == 0 { encode_time } else { decode_time };
        let delay = span.mul_f64(rng.unit() * 0.9);
        let (args, out): (Vec<String>, String) = if trial % 2 == 0 {
            let _ = std::fs::remove_file(d("o.rbe"));
            (
                vec![
                    "encode".into(),
                    d("in.safetensors"),
                    "-o".into(),
                    d("o.rbe"),
                    "--profile".into(),
                    "balanced".into(),
                ],
                d("o.rbe"),
            )
        } else {
            let _ = std::fs::remove_file(d("o.safetensors"));
            (vec!["decode".into(), d("ref.rbe"), "-o".into(), d("o.safetensors")], d("o.safetensors"))
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        interrupted += usize::from(run_and_kill(&args, delay));
        if !Path::new(&out).exists() {
            continue;
        }
        complete += 1;
        if trial % 2 == 0 {
            assert!(run(&["verify", &out]), "trial {trial}: an encode output exists but does not verify");
            assert!(run(&["decode", &out, "-o", &d("check.safetensors")]));
            assert_eq!(
                std::fs::read(d("check.safetensors")).unwrap(),
                reference,
                "trial {trial}: encode output differs"
            );
        } else {
            assert_eq!(std::fs::read(&out).unwrap(), reference, "trial {trial}: decode output differs");
        }
    }
    eprintln!("40 SIGKILL trials: {interrupted} interrupted mid-run, {complete} left a complete output, 0 bad");
    // Not a timing assertion: the delays lie within the measured run times, so a run that never
    // gets interrupted means the test exercises nothing.
    assert!(interrupted > 0, "no trial was interrupted mid-run");
}
