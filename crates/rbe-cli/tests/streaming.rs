//! What the reports say about streaming and resident size: `rbe bench --json`'s DRAM figure and
//! per-row bytes per call, GB/s and DRAM fraction (finite or null, consistent with each other),
//! and `rbe inspect --resident`'s resident bits per weight (8 x the direct-mode layer's resident
//! bytes / weights). No wall-clock time is asserted.
use rbe::{Backend, Layer, Mode, Model};
use rbe_testkit::Rng;
use rbe_testkit::data::f32_bytes;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const RBE: &str = env!("CARGO_BIN_EXE_rbe");

fn rbe(args: &[&str]) -> Output {
    let o = Command::new(RBE).args(args).output().unwrap();
    assert!(o.status.success(), "rbe {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn json(args: &[&str]) -> Value {
    serde_json::from_slice(&rbe(args).stdout).expect("valid JSON")
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn bench_json_reports_bytes_rates_and_the_dram_figure() {
    let v = json(&["bench", "--synthetic", "64x72", "--threads", "1", "--no-cache-study", "--json"]);
    let dram = f64_of(&v, "dram_read_gbs");
    assert!(dram.is_finite() && dram > 0.0, "{v}");
    assert!(v["dram_probe_bytes"].as_u64().is_some_and(|b| b >= 64 << 20), "{v}");
    let weights = 64.0 * 72.0;
    let resident = v["resident_bytes"].as_u64().expect("resident_bytes");
    assert!(resident > 0, "the direct-mode layer's size is always measured: {v}");
    assert!(close(f64_of(&v, "resident_bits_per_weight"), 8.0 * resident as f64 / weights), "{v}");
    let file_bpw = f64_of(&v, "file_bits_per_weight");
    assert!(file_bpw.is_finite() && file_bpw > 0.0, "{v}");

    let rows = v["results"].as_array().expect("results");
    let mut timed = 0;
    for r in rows {
        for key in
            ["method", "cache", "median_us", "max_rel_err", "bytes_read", "bytes_per_call", "gbs", "dram_fraction"]
        {
            assert!(r.get(key).is_some(), "row lacks `{key}`: {r}");
        }
        let method = r["method"].as_str().unwrap();
        match r["bytes_per_call"].as_u64() {
            Some(bytes) => {
                timed += 1;
                let (us, gbs, frac) = (f64_of(r, "median_us"), f64_of(r, "gbs"), f64_of(r, "dram_fraction"));
                assert!(bytes > 0 && gbs.is_finite() && frac.is_finite(), "{r}");
                assert!(close(gbs, bytes as f64 / us / 1e3), "gbs = bytes / median: {r}");
                assert!(close(frac, gbs / dram), "dram_fraction = gbs / dram_read_gbs: {r}");
                let read = r["bytes_read"].as_u64().unwrap();
                if method == "dense_f32" {
                    assert_eq!(bytes, 4 * 64 * 72, "{r}");
                } else if matches!(method, "rbe_dct_direct" | "rbe_dct_direct_q8" | "rbe_sparse_mask") {
                    assert!(bytes > read, "direct modes stream their descriptors too: {r}");
                } else {
                    assert!(bytes >= read, "{r}");
                }
            }
            None => {
                // Only a method that did not run (candle needs cols a multiple of its block).
                assert!(method.starts_with("candle_") && r["median_us"].is_null(), "{r}");
                assert!(r["gbs"].is_null() && r["dram_fraction"].is_null(), "{r}");
            }
        }
    }
    assert!(timed >= 12, "dense, five RBE modes hot and cold, full warm and cold: {timed} rows");
    let direct = rows.iter().find(|r| r["method"] == "rbe_dct_direct").expect("rbe_dct_direct");
    assert_eq!(direct["bytes_per_call"].as_u64(), Some(resident), "the direct layer streams what it keeps");
}

#[test]
fn bench_table_prints_the_dram_figure_and_resident_bpw_once() {
    let o =
        rbe(&["bench", "--synthetic", "64x72", "--threads", "1", "--mode", "full", "--no-candle", "--no-cache-study"]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.matches("DRAM read ").count(), 1, "{out}");
    assert!(out.contains("bits per weight: file ") && out.contains(" resident "), "{out}");
    assert!(out.lines().any(|l| l.contains("GB/s") && l.contains("%DRAM") && l.contains("bytes/call")), "{out}");
}

fn write_model(path: &Path, name: &str) {
    let mut w = rbe::format::SafetensorsWriter::create(path).unwrap();
    let mut rng = Rng::new(31);
    let data: Vec<f32> = (0..128 * 192).map(|_| rng.centred_f32() * 0.05).collect();
    w.add(name, "F32", &[128, 192], &f32_bytes(&data)).unwrap();
    w.add("bias", "F32", &[4], &f32_bytes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    w.finish().unwrap();
}

#[test]
fn inspect_resident_bpw_is_eight_resident_bytes_per_weight() {
    let dir = tempfile::tempdir().unwrap();
    let (input, file) = (dir.path().join("m.safetensors"), dir.path().join("m.rbe"));
    let name = "w";
    write_model(&input, name);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    rbe(&["encode", &s(&input), "-o", &s(&file), "--rel-rmse", "0.0735"]);

    let model = Model::open(&file).unwrap();
    let layer = Layer::with_mode(&model.tensor(name).unwrap(), None, Backend::Cpu, Mode::DctDirect).unwrap();
    let want_bytes = layer.resident_bytes() as u64;

    let v = json(&["inspect", &s(&file), "--json", "--resident"]);
    let tensors = v["tensors"].as_array().unwrap();
    let w = tensors.iter().find(|t| t["name"] == name).unwrap();
    assert_eq!(w["resident_bytes"].as_u64(), Some(want_bytes), "{w}");
    assert!(close(f64_of(w, "resident_bits_per_weight"), 8.0 * want_bytes as f64 / (128.0 * 192.0)), "{w}");
    let bias = tensors.iter().find(|t| t["name"] == "bias").unwrap();
    assert!(bias["resident_bits_per_weight"].is_null() && bias["resident_bytes"].is_null(), "verbatim: {bias}");

    let plain = json(&["inspect", &s(&file), "--json"]);
    for t in plain["tensors"].as_array().unwrap() {
        assert!(t["resident_bits_per_weight"].is_null(), "not built without --resident: {t}");
    }
}

#[test]
fn inspect_resident_column_fits_the_default_table_and_shows_in_wide() {
    let dir = tempfile::tempdir().unwrap();
    let (input, file) = (dir.path().join("m.safetensors"), dir.path().join("m.rbe"));
    let long = format!("model.{}.layers.17.self_attn.q_proj.weight", "very_long_module_name.".repeat(4));
    write_model(&input, &long);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    rbe(&["encode", &s(&input), "-o", &s(&file)]);
    let narrow = String::from_utf8(rbe(&["inspect", &s(&file), "--resident"]).stdout).unwrap();
    for line in narrow.lines().filter(|l| !l.contains(&s(&file))) {
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
    assert!(narrow.lines().next().unwrap().contains("res_bpw"), "{narrow}");
    assert!(narrow.contains("resident: ") && narrow.contains("q_proj.weight"), "{narrow}");
    let without = String::from_utf8(rbe(&["inspect", &s(&file)]).stdout).unwrap();
    assert!(!without.contains("res_bpw"), "{without}");
    let wide = String::from_utf8(rbe(&["inspect", &s(&file), "--wide", "--resident"]).stdout).unwrap();
    assert!(wide.contains(&long) && wide.lines().next().unwrap().contains("res_bpw"), "{wide}");
}
