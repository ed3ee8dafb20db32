//! One bits-per-weight definition: `rbe encode --json`, `rbe inspect --json`, `rbe analyze --json`
//! and `rbe demo` report the same figure per tensor, under one field name (`bits_per_weight`), for
//! the shipped MiniLM slices; and the model totals of encode and inspect agree with the file size.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/minilm/weights.safetensors")
}

fn rbe(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_rbe")).args(args).output().expect("run rbe");
    assert!(o.status.success(), "rbe {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 output")
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&rbe(args)).expect("one JSON document")
}

/// `name -> bits_per_weight` of the compressed tensors of an encode or inspect report.
fn per_tensor(report: &Value) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = report["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .filter(|t| t["compressed"] == true)
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["bits_per_weight"].as_f64().expect("bits_per_weight")))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn every_command_reports_the_same_bits_per_weight() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture();
    let src = src.to_str().unwrap();
    let out = dir.path().join("m.rbe");
    let out = out.to_str().unwrap();

    // encode and inspect of the same file: identical per tensor and in the totals.
    let enc = json(&["encode", src, "-o", out, "--rel-rmse", "0.05", "--json"]);
    let ins = json(&["inspect", out, "--json"]);
    let tensors = per_tensor(&enc);
    assert_eq!(tensors.len(), 2);
    assert_eq!(tensors, per_tensor(&ins));
    assert_eq!(enc["totals"], ins["totals"]);
    let file_bytes = std::fs::metadata(out).unwrap().len();
    assert_eq!(enc["file_bytes"], file_bytes);
    let weights = enc["totals"]["weights"].as_u64().unwrap();
    assert_eq!(weights, 384 * 384 + 1536 * 384);
    let total = enc["totals"]["bits_per_weight"].as_f64().unwrap();
    assert!((total - 8.0 * file_bytes as f64 / weights as f64).abs() < 1e-12, "no verbatim tensors here");

    // analyze at the same target: the same encode, so the same figure.
    let an = json(&["analyze", src, "--json", "--targets", "0.05"]);
    for (name, bpw) in &tensors {
        let t = an["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name.as_str()).expect("analysed");
        let p = t["points"].as_array().unwrap().iter().find(|p| p["method"] == "rbe@0.05").expect("rbe point");
        assert_eq!(p["bits_per_weight"].as_f64(), Some(*bpw), "{name}");
    }

    // demo encodes at every profile: its `balanced` row matches `encode --profile balanced`.
    let out_b = dir.path().join("b.rbe");
    let enc_b = json(&["encode", src, "-o", out_b.to_str().unwrap(), "--profile", "balanced", "--json"]);
    let demo = rbe(&["demo", "--reps", "1"]);
    for (name, bpw) in per_tensor(&enc_b) {
        let line = demo
            .lines()
            .find(|l| l.starts_with(&name) && l.contains("balanced"))
            .unwrap_or_else(|| panic!("no demo row for {name} at balanced:\n{demo}"));
        let shown: f64 = line.split_whitespace().nth(4).and_then(|v| v.parse().ok()).expect("bpw column");
        assert!((shown - bpw).abs() <= 0.0005 + 1e-9, "{name}: demo {shown}, encode {bpw}");
    }
}
