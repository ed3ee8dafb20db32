//! `rbe calibrate` on a tiny random BERT written to a temp dir (config, weights, a WordPiece
//! tokenizer built here): the file it writes, and the bad inputs it refuses with one line, exit
//! code 1 and no output file.

use rbe::calibrate::Calibration;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;

const HIDDEN: usize = 16;
const INTER: usize = 32;
const LAYERS: usize = 2;
const MAX_POS: usize = 12;
const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "dog", "sat", "on", "a", "mat", "ran", "to", "park", "sun", "is",
    "warm", "today", "we", "like", "tea", "##s", ".", ",",
];

/// A small deterministic stream of values in [-scale, scale).
fn values(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn bert_config(dir: &Path) {
    let cfg = serde_json::json!({
        "model_type": "bert", "vocab_size": WORDS.len(), "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": 2, "intermediate_size": INTER, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POS, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

/// A model directory: `model.safetensors`, `config.json`, `tokenizer.json`.
fn tiny_bert() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 7u64;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, v: Option<f32>| {
        let n = shape.iter().product();
        let data = match v {
            Some(c) => vec![c; n],
            None => values(&mut seed, n, 0.5),
        };
        tensors.push((name, shape, data));
    };
    add("embeddings.word_embeddings.weight".into(), vec![WORDS.len(), HIDDEN], None);
    add("embeddings.position_embeddings.weight".into(), vec![MAX_POS, HIDDEN], None);
    add("embeddings.token_type_embeddings.weight".into(), vec![2, HIDDEN], None);
    add("embeddings.LayerNorm.weight".into(), vec![HIDDEN], Some(1.0));
    add("embeddings.LayerNorm.bias".into(), vec![HIDDEN], Some(0.0));
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", HIDDEN, HIDDEN),
            ("attention.self.key", HIDDEN, HIDDEN),
            ("attention.self.value", HIDDEN, HIDDEN),
            ("attention.output.dense", HIDDEN, HIDDEN),
            ("intermediate.dense", INTER, HIDDEN),
            ("output.dense", HIDDEN, INTER),
        ] {
            add(format!("{p}.{name}.weight"), vec![out, inp], None);
            add(format!("{p}.{name}.bias"), vec![out], None);
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{norm}.weight"), vec![HIDDEN], Some(1.0));
            add(format!("{p}.{norm}.bias"), vec![HIDDEN], Some(0.0));
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    bert_config(dir.path());

    let vocab_text: String = WORDS.iter().map(|w| format!("{w}\n")).collect();
    let vocab = WordPiece::read_bytes(vocab_text.as_bytes()).unwrap();
    let wordpiece = WordPiece::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
    let mut tok = Tokenizer::new(wordpiece);
    tok.with_normalizer(Some(BertNormalizer::default())).unwrap();
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .unwrap()
        .special_tokens(vec![("[CLS]", 2), ("[SEP]", 3)])
        .build()
        .unwrap();
    tok.with_post_processor(Some(template));
    tok.save(dir.path().join("tokenizer.json"), false).unwrap();
    dir
}

fn calibrate(model_dir: &Path, text: &str, extra: &[&str]) -> (Output, PathBuf) {
    let text_path = model_dir.join("text.txt");
    std::fs::write(&text_path, text).unwrap();
    let out = model_dir.join("calib.safetensors");
    let output = Command::new(env!("CARGO_BIN_EXE_rbe"))
        .arg("calibrate")
        .arg(model_dir.join("model.safetensors"))
        .arg("--text")
        .arg(&text_path)
        .arg("-o")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    (output, out)
}

const TEXT: &str =
    "the cat sat on the mat.\n\nthe dogs ran to the park\nthe sun is warm today\nwe like tea, the cat is warm\n";

#[test]
fn writes_every_linear_with_tokens_and_positive_sensitivities() {
    let dir = tiny_bert();
    let (output, out) = calibrate(dir.path(), TEXT, &["--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let c = Calibration::open(&out).unwrap();
    assert_eq!(c.tensors.len(), 6 * LAYERS, "{:?}", c.tensors.keys());
    // Tokens: [CLS] + words + [SEP] per non-empty line (the `##s` of `dogs` is one more).
    let tokens = [9, 9, 7, 10].iter().sum::<u64>();
    for (name, t) in &c.tensors {
        assert!(name.starts_with("encoder.layer.") && name.ends_with(".weight"), "{name}");
        assert_eq!(t.tokens, tokens, "{name}");
        let width = if name.contains("output.dense") && !name.contains("attention") { INTER } else { HIDDEN };
        assert_eq!(t.inputs, width, "{name}");
        assert!(t.sensitivity.is_some_and(|s| s > 0.0), "{name}: {:?}", t.sensitivity);
    }
    assert_eq!(c.metadata["samples"], "4");
    assert_eq!(c.metadata["tokens"], tokens.to_string());
    assert_eq!(c.metadata["architecture"], "bert");
    assert_eq!(c.metadata["text_xxh3"], rbe::format::checksum(TEXT.as_bytes()));
    assert!(c.metadata["tool"].starts_with("rbe "));
    assert!(c.metadata["sensitivity_definition"].contains("r = 0.05"));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["linears"], 6 * LAYERS);
    assert_eq!(json["checksum"], c.checksum.as_str());

    // Without probing: the same H, no sensitivities.
    let (output, out) = calibrate(dir.path(), TEXT, &["--no-sensitivity"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plain = Calibration::open(&out).unwrap();
    for (name, t) in &plain.tensors {
        assert_eq!(t.sensitivity, None, "{name}");
        assert_eq!(t.hessian, c.tensors[name].hessian, "{name}");
    }
}

/// Runs a failing calibration: exit 1, one line on stderr containing `expect`, no output file.
fn refused(dir: &Path, text: &str, extra: &[&str], expect: &str) {
    let (output, out) = calibrate(dir, text, extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(expect), "{stderr}");
    assert!(!out.exists(), "{stderr}");
}

#[test]
fn empty_text_is_refused() {
    let dir = tiny_bert();
    refused(dir.path(), "\n   \n\n", &[], "no non-empty line");
}

#[test]
fn a_line_over_the_model_s_positions_is_refused_by_number() {
    let dir = tiny_bert();
    let long = "the cat sat on the mat the dog ran to the park today";
    refused(dir.path(), &format!("the cat\n{long}\n"), &[], "line 2 of the text is 15 tokens");
}

#[test]
fn a_model_that_is_not_bert_is_refused() {
    let dir = tiny_bert();
    let gpt = serde_json::json!({ "model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "vocab_size": 24 });
    std::fs::write(dir.path().join("config.json"), gpt.to_string()).unwrap();
    refused(dir.path(), TEXT, &[], "not a BERT-family model (model_type `gpt2`)");
    // A config without model_type that lacks BERT's fields.
    std::fs::write(dir.path().join("config.json"), r#"{"d_model": 16}"#).unwrap();
    refused(dir.path(), TEXT, &[], "not a BERT-family model");
    // A BERT config over weights that are not a BERT's.
    bert_config(dir.path());
    let w = [0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &w).unwrap();
    safetensors::tensor::serialize_to_file(vec![("lm_head.weight", view)], None, &dir.path().join("model.safetensors"))
        .unwrap();
    refused(dir.path(), TEXT, &[], "not a BERT-like model");
}

#[test]
fn a_missing_tokenizer_is_refused() {
    let dir = tiny_bert();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    refused(dir.path(), TEXT, &[], "tokenizer.json: no such file");
    let elsewhere = dir.path().join("nowhere.json");
    refused(dir.path(), TEXT, &["--tokenizer", elsewhere.to_str().unwrap()], "nowhere.json");
}

#[test]
fn the_output_may_not_be_an_input() {
    let dir = tiny_bert();
    let text_path = dir.path().join("text.txt");
    std::fs::write(&text_path, TEXT).unwrap();
    let before = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rbe"))
        .arg("calibrate")
        .arg(dir.path().join("model.safetensors"))
        .arg("--text")
        .arg(&text_path)
        .arg("-o")
        .arg(dir.path().join("model.safetensors"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is the input"));
    assert_eq!(std::fs::read(dir.path().join("model.safetensors")).unwrap(), before);
}

fn rbe(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbe")).args(args).output().unwrap()
}

#[test]
fn a_calibrated_encode_meets_its_targets_and_records_the_calibration() {
    let dir = tiny_bert();
    let (output, calib) = calibrate(dir.path(), TEXT, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let c = Calibration::open(&calib).unwrap();
    let model = dir.path().join("model.safetensors");
    let out = dir.path().join("model.rbe");
    let common = ["--calibration".as_ref(), calib.as_os_str(), "--block".as_ref(), "8".as_ref()];
    // 16x16 weights in 8x8 blocks: header entries, file framing, block index and parameters take
    // ~35 bits
    // per weight.
    let o = rbe(&[
        "encode".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--include".as_ref(),
        "encoder.layer.*.weight".as_ref(),
        "--block".as_ref(),
        "8".as_ref(),
        "--target-bpw".as_ref(),
        "5".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("header entries") && err.contains("ask for more bits"), "{err}");
    assert!(!out.exists());
    for target in [["--target-bpw", "40"], ["--rel-rmse", "0.05"]] {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["encode".as_ref(), model.as_os_str(), "-o".as_ref(), out.as_os_str(), "--include".as_ref()];
        args.push("encoder.layer.*.weight".as_ref());
        args.extend(common);
        args.extend(target.iter().map(std::ffi::OsStr::new));
        let o = rbe(&args);
        assert!(o.status.success(), "{target:?}: {}", String::from_utf8_lossy(&o.stderr));
        let o = rbe(&["inspect".as_ref(), out.as_os_str(), "--json".as_ref()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let compressed: Vec<&serde_json::Value> =
            report["tensors"].as_array().unwrap().iter().filter(|t| t["compressed"] == true).collect();
        assert_eq!(compressed.len(), 6 * LAYERS);
        for t in compressed {
            let out_rel = t["output_rel_rmse"].as_f64().unwrap_or_else(|| panic!("no output error: {t}"));
            if target[0] == "--rel-rmse" {
                assert!(out_rel <= 0.05, "{}: output error {out_rel} over 0.05", t["name"]);
            }
        }
        if target[0] == "--target-bpw" {
            let bpw = report["totals"]["bits_per_weight"].as_f64().unwrap();
            assert!(bpw <= 40.0 && bpw > 36.0, "file at {bpw} bits per weight, asked 40");
        }
        let file = rbe::format::RbeFile::open(&out).unwrap();
        let record = rbe::format::CalibrationRecord::from_metadata(file.metadata()).unwrap();
        assert_eq!(record.xxh3, c.checksum);
        assert!(record.uncovered.is_empty());
        let o = rbe(&["inspect".as_ref(), out.as_os_str()]);
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.lines().next().is_some_and(|h| h.contains("out_rel")), "{table}");
        assert!(table.contains(&format!("calibration {}", c.checksum)), "{table}");
    }
}
