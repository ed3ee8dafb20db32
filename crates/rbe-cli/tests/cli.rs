//! End-to-end tests of `rbe inspect`, `rbe verify` and `rbe decode` on hand-made `.rbe` files
//! (built with `rbe-format`, since these tests must not depend on the encoder), including
//! truncated and bit-flipped copies: exit code 1, a one-line error, no panic, no output left.

use half::{bf16, f16};
use rbe::format::{
    BlockConfig, Coefficient, DenseResidual, EncodeStats, EncodedBlock, EncodedTensor, Entropy, Layout,
    ParamsPrecision, RbeParams, RbeWriter, Residual, SourceDtype, SparseResidual, TensorDesc, Transform, ValueCodec,
};
use rbe_testkit::blocks::{self, config, stats_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A compressed tensor of the test file and the weights it must decode to.
struct Compressed {
    name: &'static str,
    shape: Vec<u64>,
    weights: Vec<f32>,
    stream_bytes: u64,
}

struct TestFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
    compressed: Vec<Compressed>,
    /// The verbatim tensor: name, dtype, shape, data.
    verbatim: (&'static str, &'static str, Vec<usize>, Vec<u8>),
}

/// The description an encoder would have written: a BF16 source.
fn desc(shape: &[u64], cfg: &BlockConfig) -> TensorDesc {
    TensorDesc { dtype: SourceDtype::BF16, ..blocks::desc(shape, cfg) }
}

/// The statistics an encoder would have written (`balanced` profile, its errors).
fn stats(blocks: &[EncodedBlock]) -> EncodeStats {
    EncodeStats {
        profile: Some("balanced".to_owned()),
        cache_blocks: 64,
        rmse: 1.5e-4,
        rel_rmse: 0.0125,
        std: 0.012,
        ..stats_for(blocks)
    }
}

/// Deterministic blocks: sparse blocks with a few coefficients, every third block dense.
fn blocks_for(cfg: &BlockConfig, count: usize) -> Vec<EncodedBlock> {
    (0..count)
        .map(|i| {
            let theta = match cfg.params {
                ParamsPrecision::None => [0.0; 8],
                _ => [0.25, -0.125, 0.0625, 0.5, -0.25, 0.125, 0.0, 0.375].map(|v| v * (1 + i % 4) as f32),
            };
            let residual = if i % 3 == 2 {
                let values = (0..cfg.block_area()).map(|k| ((k * 7 + i) % 9) as i16 - 4).collect();
                Residual::Dense(DenseResidual { width: 4, step: 0.005, values })
            } else {
                let coefficients = (0..5u16)
                    .map(|k| Coefficient {
                        row: k,
                        col: (k * 3 + i as u16) % cfg.block as u16,
                        field: 100 + u32::from(k) * 37,
                    })
                    .collect::<Vec<_>>();
                let mut coefficients = coefficients;
                coefficients.sort_by_key(|c| (c.row, c.col));
                Residual::Sparse(SparseResidual { scale: 0.001, coefficients })
            };
            EncodedBlock { params: RbeParams(theta), residual }
        })
        .collect()
}

fn build_test_file() -> TestFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.rbe");
    let mut writer = RbeWriter::create(&path).expect("create");
    let specs: [(&'static str, Vec<u64>, BlockConfig, Entropy); 2] = [
        (
            "model.layers.0.mlp.weight",
            vec![20, 12],
            config(8, Transform::Dct, Layout::P32, ValueCodec::Q16, ParamsPrecision::F16),
            Entropy::None,
        ),
        (
            "model.conv.weight",
            vec![4, 2, 3, 3],
            config(8, Transform::Dwt, Layout::B4, ValueCodec::Q16, ParamsPrecision::F32),
            Entropy::Rans,
        ),
    ];
    let mut compressed = Vec::new();
    for (name, shape, cfg, entropy) in specs {
        let rows = shape[0] as usize;
        let cols: usize = shape[1..].iter().product::<u64>() as usize;
        let blocks = blocks_for(&cfg, rows.div_ceil(cfg.block) * cols.div_ceil(cfg.block));
        let mut t =
            EncodedTensor::from_blocks(name, desc(&shape, &cfg), &blocks).expect("tensor").with_stats(stats(&blocks));
        let stream = t.to_stream(entropy).expect("stream");
        writer.add_tensor(&t, &stream).expect("add");
        compressed.push(Compressed {
            name,
            shape,
            weights: t.decode().expect("decode"),
            stream_bytes: stream.len() as u64,
        });
    }
    let bias: Vec<u8> = (0..6).flat_map(|i| (i as f32 - 2.5).to_le_bytes()).collect();
    writer.add_verbatim("model.layers.0.mlp.bias", "F32", &[6], &bias).expect("add");
    writer.finish().expect("finish");
    TestFile { _dir: dir, path, compressed, verbatim: ("model.layers.0.mlp.bias", "F32", vec![6], bias) }
}

fn rbe(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbe")).args(args).output().expect("run rbe")
}

fn rbe_str(args: &[&str], file: &Path) -> Output {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    all.insert(1, file.as_os_str());
    rbe(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run: exit code 1, exactly one line on stderr starting with `error: `, no panic.
fn assert_clean_failure(o: &Output, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert_eq!(err.trim_end_matches('\n').lines().count(), 1, "{what}: multi-line error: {err}");
}

#[test]
fn inspect_prints_a_table() {
    let f = build_test_file();
    let o = rbe_str(&["inspect"], &f.path);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for c in &f.compressed {
        assert!(out.contains(c.name), "{out}");
    }
    assert!(out.contains("model.layers.0.mlp.bias"), "{out}");
    assert!(out.contains("verbatim F32"), "{out}");
    assert!(out.contains("4x2x3x3"), "{out}");
    assert!(out.contains("bits per weight"), "{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "default table wider than 100 columns: {line}");
    }
    assert!(!out.contains("balanced"), "settings only with --wide: {out}");
    let wide = stdout(&rbe_str(&["inspect", "--wide"], &f.path));
    assert!(wide.contains("balanced") && wide.contains("sparse/dense"), "{wide}");
}

#[test]
fn inspect_json_has_every_field() {
    let f = build_test_file();
    let o = rbe_str(&["inspect"], &f.path);
    assert!(o.status.success());
    let o = rbe_str(&["inspect", "--json"], &f.path);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.trim_end().lines().count(), 1, "one JSON object on one line");
    let v: Value = serde_json::from_str(&out).expect("valid JSON");
    let file_bytes = std::fs::metadata(&f.path).expect("metadata").len();
    assert_eq!(v["file_bytes"], file_bytes);
    assert!(v["file"].as_str().expect("file").ends_with("model.rbe"));
    let tensors = v["tensors"].as_array().expect("tensors");
    assert_eq!(tensors.len(), 3);
    // What only a compressed tensor has (null for verbatim ones).
    let compressed_keys = [
        "rmse",
        "rel_rmse",
        "k_mean",
        "blocks_sparse",
        "blocks_dense",
        "block",
        "transform",
        "layout",
        "values",
        "params",
        "entropy",
        "profile",
    ];
    let keys = ["name", "shape", "compressed", "stream_bytes", "header_bytes", "bits_per_weight"]
        .into_iter()
        .chain(compressed_keys);
    for t in tensors {
        for k in keys.clone() {
            assert!(t.get(k).is_some(), "tensor lacks `{k}`: {t}");
        }
    }
    let mut weights = 0u64;
    for c in &f.compressed {
        let t = tensors.iter().find(|t| t["name"] == c.name).expect("listed");
        let elements: u64 = c.shape.iter().product();
        weights += elements;
        assert_eq!(t["compressed"], true);
        assert_eq!(t["shape"], serde_json::json!(c.shape));
        assert_eq!(t["stream_bytes"], c.stream_bytes);
        // One definition of bits per weight: the stream plus the tensor's header entries.
        let header = t["header_bytes"].as_u64().expect("header_bytes");
        assert!(header > 0 && header < 1024, "{header}");
        let bpw = t["bits_per_weight"].as_f64().expect("bits_per_weight");
        assert!((bpw - (c.stream_bytes + header) as f64 * 8.0 / elements as f64).abs() < 1e-9);
        assert_eq!(t["block"], 8);
        assert_eq!(t["profile"], "balanced");
        assert_eq!(t["rmse"], 1.5e-4);
        assert_eq!(t["rel_rmse"], 0.0125);
        assert!(t["k_mean"].as_f64().expect("k_mean") > 0.0);
        assert!(t["blocks_dense"].as_u64().expect("dense") > 0);
    }
    let conv = tensors.iter().find(|t| t["name"] == "model.conv.weight").expect("conv");
    assert_eq!(conv["entropy"], "rans");
    assert_eq!(conv["transform"], "dwt");
    assert_eq!(conv["layout"], "b4");
    assert_eq!(conv["values"], "q16");
    assert_eq!(conv["params"], "f32");
    let bias = tensors.iter().find(|t| t["name"] == f.verbatim.0).expect("bias");
    assert_eq!(bias["compressed"], false);
    for k in compressed_keys {
        assert!(bias[k].is_null(), "verbatim `{k}` must be null");
    }
    assert_eq!(bias["stream_bytes"], f.verbatim.3.len());
    let totals = &v["totals"];
    assert_eq!(totals["weights"], weights);
    let bytes = file_bytes - f.verbatim.3.len() as u64;
    assert_eq!(totals["bytes"], bytes);
    let bpw = totals["bits_per_weight"].as_f64().expect("bits_per_weight");
    assert!((bpw - bytes as f64 * 8.0 / weights as f64).abs() < 1e-9);
    // Every tensor's share together stays within the file: the rest is the file's own header.
    let charged: u64 =
        tensors.iter().map(|t| t["stream_bytes"].as_u64().unwrap() + t["header_bytes"].as_u64().unwrap()).sum();
    assert!(charged <= file_bytes && file_bytes - charged < 128, "{charged} of {file_bytes}");
}

#[test]
fn verify_reports_counts() {
    let f = build_test_file();
    let o = rbe_str(&["verify"], &f.path);
    assert!(o.status.success(), "{}", stderr(&o));
    let size = std::fs::metadata(&f.path).expect("metadata").len();
    // 20x12 at b=8: 3x2 blocks; 4x18 at b=8: 1x3 blocks.
    assert_eq!(stdout(&o).trim(), format!("ok: 3 tensors, 9 blocks, {size} bytes"));
}

fn decode_to(f: &TestFile, dtype: &str) -> (tempfile::TempDir, Vec<u8>) {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = out_dir.path().join("dense.safetensors");
    let o = rbe(&[
        "decode".as_ref(),
        f.path.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--dtype".as_ref(),
        dtype.as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).expect("output written");
    (out_dir, bytes)
}

#[test]
fn decode_matches_the_reference_decoder_in_every_dtype() {
    let f = build_test_file();
    for dtype in ["f32", "f16", "bf16"] {
        let (_dir, bytes) = decode_to(&f, dtype);
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        assert_eq!(st.len(), 3);
        for c in &f.compressed {
            let view = st.tensor(c.name).expect("tensor present");
            let shape: Vec<usize> = c.shape.iter().map(|&d| d as usize).collect();
            assert_eq!(view.shape(), &shape[..], "{dtype}: original shape restored");
            let want: Vec<u8> = match dtype {
                "f32" => c.weights.iter().flat_map(|v| v.to_le_bytes()).collect(),
                "f16" => c.weights.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                _ => c.weights.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
            };
            let want_dtype = match dtype {
                "f32" => safetensors::Dtype::F32,
                "f16" => safetensors::Dtype::F16,
                _ => safetensors::Dtype::BF16,
            };
            assert_eq!(view.dtype(), want_dtype);
            assert_eq!(view.data(), &want[..], "{dtype}: {}", c.name);
        }
        let (name, _, shape, data) = &f.verbatim;
        let view = st.tensor(name).expect("verbatim present");
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "verbatim keeps its dtype");
        assert_eq!(view.shape(), &shape[..]);
        assert_eq!(view.data(), &data[..]);
    }
}

/// Runs verify, inspect and decode on `bytes`; returns (verify, inspect, decode) outputs and
/// checks the decode output directory holds nothing unless decode succeeded.
fn run_all_on(bytes: &[u8], what: &str) -> [Output; 3] {
    let in_dir = tempfile::tempdir().expect("temp dir");
    let input = in_dir.path().join("bad.rbe");
    std::fs::write(&input, bytes).expect("write");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = out_dir.path().join("out.safetensors");
    let verify = rbe_str(&["verify"], &input);
    let inspect = rbe_str(&["inspect", "--json"], &input);
    let decode = rbe(&["decode".as_ref(), input.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).expect("read dir").collect();
    if decode.status.success() {
        assert_eq!(left.len(), 1, "{what}: decode wrote more than its output");
    } else {
        assert!(left.is_empty(), "{what}: failed decode left {left:?}");
    }
    for (o, cmd) in [(&verify, "verify"), (&inspect, "inspect"), (&decode, "decode")] {
        if !o.status.success() {
            assert_clean_failure(o, &format!("{cmd} on {what}"));
        }
    }
    [verify, inspect, decode]
}

#[test]
fn truncated_files_fail_cleanly() {
    let f = build_test_file();
    let bytes = std::fs::read(&f.path).expect("read");
    for len in [0, 4, 8, 9, 100, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
        let what = format!("truncated to {len} bytes");
        let [verify, inspect, decode] = run_all_on(&bytes[..len], &what);
        assert_clean_failure(&verify, &what);
        assert_clean_failure(&inspect, &what);
        assert_clean_failure(&decode, &what);
    }
}

#[test]
fn bit_flipped_data_fails_cleanly_and_names_the_tensor() {
    let f = build_test_file();
    let bytes = std::fs::read(&f.path).expect("read");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let data_start = 8 + header_len;
    let data_len = bytes.len() - data_start;
    // Flips inside tensor data: every one must be caught by a checksum.
    for k in 0..6 {
        let pos = data_start + k * data_len / 6 + 3;
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        let what = format!("bit flip at data byte {pos}");
        let [verify, _inspect, decode] = run_all_on(&bad, &what);
        assert_clean_failure(&verify, &what);
        assert_clean_failure(&decode, &what);
        assert!(stderr(&verify).contains("tensor `model."), "{what}: {}", stderr(&verify));
    }
    // Flips anywhere (header included): never a panic or a multi-line error.
    for k in 0..12 {
        let pos = k * bytes.len() / 12 + 1;
        let mut bad = bytes.clone();
        bad[pos] ^= 0x01 << (k % 8);
        run_all_on(&bad, &format!("bit flip at byte {pos}"));
    }
}

#[test]
fn missing_input_and_unwritable_output_fail_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.rbe");
    assert_clean_failure(&rbe_str(&["verify"], &missing), "verify missing");
    assert_clean_failure(&rbe_str(&["inspect"], &missing), "inspect missing");
    let f = build_test_file();
    let out = dir.path().join("no/such/dir/out.safetensors");
    let o = rbe(&["decode".as_ref(), f.path.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert_clean_failure(&o, "decode to a missing directory");
}

#[test]
fn a_tensor_name_with_a_newline_keeps_errors_on_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.rbe");
    let mut w = RbeWriter::create(&path).expect("create");
    w.add_verbatim("odd\nname", "F32", &[1], &[0, 0, 128, 63]).expect("add");
    w.finish().expect("finish");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let [verify, inspect, _] = run_all_on(&bytes, "newline in a name");
    assert_clean_failure(&verify, "verify");
    assert!(stderr(&verify).contains("odd\\nname"), "{}", stderr(&verify));
    assert!(inspect.status.success());
}
