//! `cargo xtask minilm`: all-MiniLM-L6-v2 sentence embeddings end to end, from the original
//! weights, from RBE-encoded weights (reference decode) and from GGUF-style quantised weights
//! (candle's quantiser), plus one run with every encoder Linear computed from the compressed form
//! (`rbe::candle::RbeCandleLinear`, `DecodeMode::DctDirect`).
//!
//! Only the 36 `encoder.layer.*` Linear weights change; embeddings, LayerNorms and biases stay
//! original. Embeddings are mean-pooled over the attention mask and L2-normalised (as
//! sentence-transformers does) for the 200 test sentences of `fixtures/minilm/eval_sentences.txt`
//! (`fixtures/minilm/sentences.txt` is the calibration set and is not scored). Writes
//! `target/reports/minilm.md` and `target/reports/minilm-rd.svg`.

use anyhow::{Context, anyhow};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rayon::prelude::*;
use rbe::DecodeMode;
use rbe::TensorReport;
use rbe::calibrate::bert;
use rbe::calibrate::{BertFiles, CalibrateOptions, Calibration, calibrate_bert};
use rbe::candle::{RbeCandleLinear, ggml_bits_per_weight, ggml_roundtrip, ggml_roundtrip_imatrix};
use rbe::encode::{EncodeSettings, Profile, Target, encode_tensor};
use rbe::format::EncodedTensor;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;
use tokenizers::{Tokenizer, TruncationParams};

/// Sentences per forward batch (sorted by length, so padding stays small).
const BATCH: usize = 25;
/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
const MAX_TOKENS: usize = 256;

/// One tokenised batch.
struct Batch {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
    /// Token counts per sentence (mask sums) and the sentences' original positions.
    lens: Vec<usize>,
    index: Vec<usize>,
}

/// One line of the table.
struct Row {
    method: String,
    bpw: f64,
    rel_rmse: f64,
    cos_mean: f64,
    cos_min: f64,
    kind: Kind,
    secs: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Reference,
    Rbe,
    /// RBE encoded with the calibration (GPTQ + sensitivity allocation).
    Calibrated,
    Gguf,
    Compressed,
}

fn read_sentences(name: &str) -> anyhow::Result<Vec<String>> {
    let path = crate::root().join("fixtures").join("minilm").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn tokenize(tok: &Tokenizer, sentences: &[String]) -> anyhow::Result<Vec<Batch>> {
    let mut enc = Vec::with_capacity(sentences.len());
    for s in sentences {
        let e = tok.encode(s.as_str(), true).map_err(|e| anyhow!("tokenizing `{s}`: {e}"))?;
        enc.push((e.get_ids().to_vec(), e.get_type_ids().to_vec()));
    }
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| enc[i].0.len());
    let dev = Device::Cpu;
    let mut batches = Vec::new();
    for chunk in order.chunks(BATCH) {
        let width = chunk.iter().map(|&i| enc[i].0.len()).max().unwrap_or(0);
        let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for &i in chunk {
            let (id, ty) = &enc[i];
            let pad = width - id.len();
            ids.extend(id.iter().copied().chain(std::iter::repeat_n(0, pad)));
            types.extend(ty.iter().copied().chain(std::iter::repeat_n(0, pad)));
            mask.extend(std::iter::repeat_n(1u32, id.len()).chain(std::iter::repeat_n(0, pad)));
        }
        let shape = (chunk.len(), width);
        batches.push(Batch {
            ids: Tensor::from_vec(ids, shape, &dev)?,
            types: Tensor::from_vec(types, shape, &dev)?,
            mask: Tensor::from_vec(mask, shape, &dev)?,
            lens: chunk.iter().map(|&i| enc[i].0.len()).collect(),
            index: chunk.to_vec(),
        });
    }
    Ok(batches)
}

/// Mean pooling over the attention mask, then L2 normalisation (sentence-transformers).
fn pool(hidden: &Tensor, batch: &Batch, out: &mut [Vec<f32>]) -> anyhow::Result<()> {
    let h = hidden.to_dtype(DType::F32)?.to_vec3::<f32>()?;
    for ((seq, &len), &i) in h.iter().zip(&batch.lens).zip(&batch.index) {
        let dim = seq[0].len();
        let mut v = vec![0f64; dim];
        for tok in &seq[..len] {
            for (a, &x) in v.iter_mut().zip(tok) {
                *a += f64::from(x);
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        out[i] = v.iter().map(|a| (a / norm) as f32).collect();
    }
    Ok(())
}

/// Embeddings with candle-transformers' BERT over `tensors`.
fn embed_reference(
    tensors: &HashMap<String, Tensor>,
    cfg: &Config,
    batches: &[Batch],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let model = BertModel::load(vb, cfg)?;
    let n = batches.iter().map(|b| b.index.len()).sum();
    let mut out = vec![Vec::new(); n];
    for b in batches {
        pool(&model.forward(&b.ids, &b.types, Some(&b.mask))?, b, &mut out)?;
    }
    Ok(out)
}

/// Embeddings with the compact BERT (`dyn Module` linears).
fn embed_compact(model: &bert::Bert, batches: &[Batch]) -> anyhow::Result<Vec<Vec<f32>>> {
    let n = batches.iter().map(|b| b.index.len()).sum();
    let mut out = vec![Vec::new(); n];
    for b in batches {
        pool(&model.forward(&b.ids, &b.types, &b.mask)?, b, &mut out)?;
    }
    Ok(out)
}

fn cosines(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    let cos: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum();
            let nx: f64 = x.iter().map(|&p| f64::from(p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|&q| f64::from(q).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(1e-300)
        })
        .collect();
    (cos.iter().sum::<f64>() / cos.len() as f64, cos.iter().copied().fold(f64::INFINITY, f64::min))
}

/// rmse(orig - approx) / std(orig).
fn rel_rmse(orig: &[f32], approx: &[f32]) -> f64 {
    let n = orig.len() as f64;
    let mean = orig.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = orig.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let mse = orig.iter().zip(approx).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>() / n;
    (mse / var).sqrt()
}

/// The 36 encoder Linear weights: name, shape, f32 data.
struct Linears {
    items: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Linears {
    fn weights(&self) -> usize {
        self.items.iter().map(|(_, _, d)| d.len()).sum()
    }

    /// The model's tensors with the Linear weights replaced by `new` (same order as `items`).
    fn replaced(&self, base: &HashMap<String, Tensor>, new: &[Vec<f32>]) -> anyhow::Result<HashMap<String, Tensor>> {
        let mut map = base.clone();
        for ((name, shape, _), data) in self.items.iter().zip(new) {
            map.insert(name.clone(), Tensor::from_slice(data, shape.as_slice(), &Device::Cpu)?);
        }
        Ok(map)
    }

    fn mean_rel(&self, new: &[Vec<f32>]) -> f64 {
        self.items.iter().zip(new).map(|((_, _, o), d)| rel_rmse(o, d)).sum::<f64>() / self.items.len() as f64
    }
}

/// RBE-encodes every Linear: decoded weights, the loaded tensors, and bits per weight counted as
/// every `rbe` command counts them (`rbe::report`: stream + the tensor's header entries).
fn encode_all(lin: &Linears, settings: &EncodeSettings) -> anyhow::Result<(Vec<Vec<f32>>, Vec<EncodedTensor>, f64)> {
    let (mut decoded, mut tensors, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    for (name, shape, data) in &lin.items {
        let out = encode_tensor(name, data, shape, rbe::format::SourceDtype::F32, settings)?;
        bytes += TensorReport::of_tensor(&out.tensor).cost_bytes();
        decoded.push(out.tensor.decode()?);
        tensors.push(out.tensor);
    }
    Ok((decoded, tensors, 8.0 * bytes as f64 / lin.weights() as f64))
}

/// Runs the task.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let t_all = Instant::now();
    let dir = crate::minilm::fetch()?;
    let cfg: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?).context("parsing config.json")?;
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| anyhow!("tokenizer.json: {e}"))?;
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
        .map_err(|e| anyhow!("truncation: {e}"))?;
    let base = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)?;
    let mut names: Vec<&String> = base
        .iter()
        .filter(|(n, t)| n.starts_with("encoder.layer.") && n.ends_with(".weight") && t.rank() == 2)
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let lin = Linears {
        items: names
            .iter()
            .map(|&n| {
                let t = &base[n];
                Ok((n.clone(), t.dims().to_vec(), t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    anyhow::ensure!(lin.items.len() == 36, "expected 36 encoder Linear weights, found {}", lin.items.len());
    let sentences = read_sentences("eval_sentences.txt")?;
    let calibration = read_sentences("sentences.txt")?;
    anyhow::ensure!(sentences.iter().all(|s| !calibration.contains(s)), "a test sentence is also a calibration one");
    let batches = tokenize(&tok, &sentences)?;
    eprintln!("{} Linear weights ({} values), {} test sentences", lin.items.len(), lin.weights(), sentences.len());

    let t = Instant::now();
    let orig = embed_reference(&base, &cfg, &batches)?;
    let mut rows = vec![Row {
        method: "f32 (original)".into(),
        bpw: 32.0,
        rel_rmse: 0.0,
        cos_mean: 1.0,
        cos_min: 1.0,
        kind: Kind::Reference,
        secs: t.elapsed().as_secs_f64(),
    }];

    // The compact forward must agree with candle-transformers on the original weights.
    let compact_orig = bert::Bert::new::<anyhow::Error>(&base, &cfg, |p| {
        let w = base[&format!("{p}.weight")].clone();
        let b = base.get(&format!("{p}.bias")).cloned();
        Ok(Box::new(candle_nn::Linear::new(w, b)) as bert::Linear)
    })?;
    let (compact_mean, compact_min) = cosines(&embed_compact(&compact_orig, &batches)?, &orig);
    eprintln!(
        "compact BERT vs candle-transformers, original weights: cosine mean {compact_mean:.8} min {compact_min:.8}"
    );

    let push = |rows: &mut Vec<Row>, method: String, kind: Kind, bpw: f64, decoded: &[Vec<f32>], t: Instant| {
        let emb = embed_reference(&lin.replaced(&base, decoded)?, &cfg, &batches)?;
        let (cos_mean, cos_min) = cosines(&emb, &orig);
        let row = Row {
            method,
            bpw,
            rel_rmse: lin.mean_rel(decoded),
            cos_mean,
            cos_min,
            kind,
            secs: t.elapsed().as_secs_f64(),
        };
        eprintln!(
            "{:<34} {:>7.3} bpw  rel {:.5}  cos mean {:.6} min {:.6}  ({:.1} s)",
            row.method, row.bpw, row.rel_rmse, row.cos_mean, row.cos_min, row.secs
        );
        rows.push(row);
        anyhow::Ok(emb)
    };

    // f16 and the GGUF-style block types (candle's quantiser).
    let t = Instant::now();
    let f16: Vec<Vec<f32>> =
        lin.items.iter().map(|(_, _, d)| d.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()).collect();
    push(&mut rows, "f16".into(), Kind::Reference, 16.0, &f16, t)?;
    for (label, dt) in [
        ("GGUF Q8_0", GgmlDType::Q8_0),
        ("GGUF Q6_K", GgmlDType::Q6K),
        ("GGUF Q4_K", GgmlDType::Q4K),
        ("GGUF Q4_0", GgmlDType::Q4_0),
    ] {
        let t = Instant::now();
        let deq: Vec<Vec<f32>> =
            lin.items.par_iter().map(|(_, _, d)| ggml_roundtrip(d, dt)).collect::<Result<_, _>>()?;
        push(&mut rows, label.into(), Kind::Gguf, ggml_bits_per_weight(dt), &deq, t)?;
    }

    // RBE at each setting (reference decode), keeping the tensors for the compressed runs.
    let mut settings: Vec<(String, EncodeSettings)> = vec![
        (
            "RBE --rel-rmse 0.0735".into(),
            EncodeSettings { target: Target::RelRmse(0.0735), profile: None, ..Default::default() },
        ),
        (
            "RBE --rel-rmse 0.0055".into(),
            EncodeSettings { target: Target::RelRmse(0.0055), profile: None, ..Default::default() },
        ),
    ];
    for p in Profile::ALL {
        settings.push((
            format!("RBE --profile {} ({})", p.name(), p.rel_rmse()),
            EncodeSettings { target: Target::RelRmse(p.rel_rmse()), profile: Some(p), ..Default::default() },
        ));
    }
    settings.push((
        "RBE --k 200".into(),
        EncodeSettings { target: Target::TopK(200), profile: None, ..Default::default() },
    ));
    let mut kept: Vec<(String, Vec<EncodedTensor>, Vec<Vec<f32>>)> = Vec::new();
    for (i, (label, s)) in settings.iter().enumerate() {
        let t = Instant::now();
        let (decoded, tensors, bpw) = encode_all(&lin, s)?;
        let emb = push(&mut rows, label.clone(), Kind::Rbe, bpw, &decoded, t)?;
        if i < 2 {
            kept.push((label.clone(), tensors, emb));
        }
    }

    // Calibrated encoding: the calibration text (disjoint from the evaluation sentences, tested in
    // crates/rbe/tests/calibration_text.rs) through `calibrate_bert`, then the encoder's own
    // model-level path (`encode_model` with `--target-bpw`), bytes on disk as every tool counts them.
    let calib_text = read_sentences("sentences.txt")?.join("\n");
    let files = BertFiles::beside(&dir.join("model.safetensors"));
    let t = Instant::now();
    let (calibration, summary) = calibrate_bert(&files, &calib_text, &CalibrateOptions::default(), &mut |_| {})
        .map_err(|e| anyhow!("calibrating: {e}"))?;
    let calibrate_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "calibration: {} samples, {} tokens, {} Linears in {calibrate_secs:.1} s",
        summary.samples, summary.tokens, summary.linears
    );
    let calibration = std::sync::Arc::new(calibration);
    // GGUF with an importance matrix from the same text: llama.cpp's imatrix is each input's mean
    // squared activation, i.e. diag(H) / tokens.
    for (label, dt) in [("GGUF Q4_K imatrix", GgmlDType::Q4K), ("GGUF Q6_K imatrix", GgmlDType::Q6K)] {
        let t = Instant::now();
        let deq: Vec<Vec<f32>> = lin
            .items
            .par_iter()
            .map(|(name, shape, d)| {
                let c = calibration.get(name).with_context(|| format!("no calibration for `{name}`"))?;
                let n = c.inputs;
                let importance: Vec<f32> =
                    (0..n).map(|i| (f64::from(c.hessian[i * n + i]) / c.tokens as f64) as f32).collect();
                Ok(ggml_roundtrip_imatrix(d, shape[1], &importance, dt)?)
            })
            .collect::<anyhow::Result<_>>()?;
        push(&mut rows, label.into(), Kind::Gguf, ggml_bits_per_weight(dt), &deq, t)?;
    }
    let source = rbe::encode::SourceModel::open(&dir.join("model.safetensors"))?;
    let work = crate::root().join("target").join("reports").join("minilm-work");
    std::fs::create_dir_all(&work)?;
    let mut encode_secs: Vec<(String, f64)> = Vec::new();
    let mut run_bpw = |rows: &mut Vec<Row>, label: String, bpw: f64, cal: Option<std::sync::Arc<Calibration>>| {
        let t = Instant::now();
        let out = work.join("encoded.rbe");
        let options = rbe::encode::ModelOptions {
            include: vec!["encoder.layer.*.weight".into()],
            calibration: cal.clone(),
            ..Default::default()
        };
        let settings = EncodeSettings { target: Target::BitsPerWeight(bpw), profile: None, ..Default::default() };
        let report = rbe::encode::encode_model(&source, &out, &settings, &options, &|_, _, _| {})?;
        encode_secs.push((label.clone(), report.seconds));
        let model = rbe::Model::open(&out)?;
        let decoded: Vec<Vec<f32>> =
            lin.items.iter().map(|(n, ..)| Ok(model.tensor(n)?.decode()?)).collect::<anyhow::Result<_>>()?;
        let file_bpw = report.model.totals.bits_per_weight.unwrap_or(f64::NAN);
        anyhow::ensure!(file_bpw <= bpw, "{label}: the file holds {file_bpw} bits per weight, over {bpw}");
        let tensor_bytes: u64 = report.model.tensors.iter().filter(|t| t.compressed).map(|t| t.cost_bytes()).sum();
        let kind = if cal.is_some() { Kind::Calibrated } else { Kind::Rbe };
        let label = format!("{label} (file {file_bpw:.3})");
        push(rows, label, kind, 8.0 * tensor_bytes as f64 / lin.weights() as f64, &decoded, t)?;
        anyhow::Ok(())
    };
    for bpw in [3.25, 3.5, 4.0, 4.5, 5.0] {
        run_bpw(&mut rows, format!("RBE --target-bpw {bpw}"), bpw, None)?;
        run_bpw(&mut rows, format!("RBE calibrated --target-bpw {bpw}"), bpw, Some(calibration.clone()))?;
    }
    // How much the result leans on the amount of calibration text: the first half only.
    let lines: Vec<&str> = calib_text.lines().collect();
    let half = lines[..lines.len() / 2].join("\n");
    let (half_cal, _) = calibrate_bert(&files, &half, &CalibrateOptions::default(), &mut |_| {})
        .map_err(|e| anyhow!("calibrating on half the text: {e}"))?;
    run_bpw(
        &mut rows,
        format!("RBE calibrated, half the text ({} sentences), --target-bpw 4", lines.len() / 2),
        4.0,
        Some(std::sync::Arc::new(half_cal)),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    let plain_secs = rows.iter().find(|r| r.method == "RBE --rel-rmse 0.0735").map_or(f64::NAN, |r| r.secs);
    let calibrated_notes = calibrated_targets(&rows, calibrate_secs, summary.samples, &encode_secs, plain_secs);

    // Every Linear computed from the compressed form.
    let mut compressed_notes = String::new();
    for (label, tensors, decoded_emb) in &kept {
        let t = Instant::now();
        let by_name: HashMap<&str, &EncodedTensor> = tensors.iter().map(|t| (t.name(), t)).collect();
        let mut resident = 0usize;
        let model = bert::Bert::new::<anyhow::Error>(&base, &cfg, |p| {
            let enc =
                by_name.get(format!("{p}.weight").as_str()).with_context(|| format!("no encoded `{p}.weight`"))?;
            let layer = RbeCandleLinear::new(enc, base.get(&format!("{p}.bias")), DecodeMode::DctDirect)?;
            resident += layer.resident_bytes();
            Ok(Box::new(layer) as bert::Linear)
        })?;
        let emb = embed_compact(&model, &batches)?;
        let secs = t.elapsed().as_secs_f64();
        let (vs_dec_mean, vs_dec_min) = cosines(&emb, decoded_emb);
        let (cos_mean, cos_min) = cosines(&emb, &orig);
        let f32_bytes = 4 * lin.weights() + 4 * lin.items.iter().map(|(_, s, _)| s[0]).sum::<usize>();
        let bpw = rows.iter().find(|r| &r.method == label).map_or(f64::NAN, |r| r.bpw);
        let rel = rows.iter().find(|r| &r.method == label).map_or(f64::NAN, |r| r.rel_rmse);
        let method = format!("{label}, computed compressed");
        eprintln!(
            "{method}: vs decoded-weights run 1 - cosine: mean {:.1e} max {:.1e}; resident {resident} B",
            1.0 - vs_dec_mean,
            1.0 - vs_dec_min
        );
        writeln!(
            compressed_notes,
            "- `{method}` (compact candle BERT, every one of the 36 Linears an `RbeCandleLinear`, `DecodeMode::DctDirect`): \
             cosine to the decoded-weights run mean **{vs_dec_mean:.8}**, min **{vs_dec_min:.8}** (1 - min = {:.1e}; needs >= 0.9999); \
             resident Linear memory (sum of `resident_bytes()`, biases included) **{:.2} MiB** vs f32 {:.2} MiB \
             (**{:.2}x** smaller); {secs:.1} s for {} sentences.",
            1.0 - vs_dec_min,
            resident as f64 / 1048576.0,
            f32_bytes as f64 / 1048576.0,
            f32_bytes as f64 / resident as f64,
            sentences.len()
        )?;
        anyhow::ensure!(
            vs_dec_min >= 0.9999,
            "{method}: cosine {vs_dec_min} to the decoded-weights run is below 0.9999"
        );
        rows.push(Row { method, bpw, rel_rmse: rel, cos_mean, cos_min, kind: Kind::Compressed, secs });
    }

    compressed_notes.push_str(&calibrated_notes);
    let report = render(&rows, &sentences, compact_mean, compact_min, &compressed_notes, t_all.elapsed().as_secs_f64());
    let out_dir = crate::root().join("target").join("reports");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("minilm.md"), &report)?;
    plot(&rows, &out_dir.join("minilm-rd.svg"))?;
    println!("{report}");
    eprintln!("wrote target/reports/minilm.md and target/reports/minilm-rd.svg");
    Ok(())
}

/// The bits per weight at which the calibrated curve reaches `cos` mean cosine (interpolated
/// linearly in bits against log(1 - cos) between measured rows), if it does within them.
fn calibrated_bpw_at(rows: &[Row], cos: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.kind == Kind::Calibrated && !r.method.contains("half"))
        .map(|r| (r.bpw, (1.0 - r.cos_mean).max(1e-12).ln()))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let goal = (1.0 - cos).max(1e-12).ln();
    if pts.first().is_some_and(|p| p.1 <= goal) {
        return pts.first().map(|p| p.0);
    }
    pts.windows(2).find(|w| w[0].1 > goal && w[1].1 <= goal).map(|w| {
        let t = (w[0].1 - goal) / (w[0].1 - w[1].1);
        w[0].0 + t * (w[1].0 - w[0].0)
    })
}

/// The calibrated-encoding targets, measured on this run's rows.
fn calibrated_targets(
    rows: &[Row],
    calibrate_secs: f64,
    samples: usize,
    encode_secs: &[(String, f64)],
    plain_secs: f64,
) -> String {
    let mut s = String::new();
    let find = |m: &str| rows.iter().find(|r| r.method.starts_with(m));
    let ok = |b: bool| if b { "met" } else { "MISSED" };
    let shown = |b: Option<f64>| b.map_or("beyond the measured rows".to_owned(), |v| format!("{v:.2} bpw"));
    let _ =
        writeln!(s, "\nCalibrated encoding (GPTQ in the 64x64 DCT domain + sensitivity allocation, `--target-bpw`):\n");
    let _ = writeln!(
        s,
        "- `rbe calibrate` equivalent (`calibrate_bert`) on {samples} sentences: {calibrate_secs:.1} s (< 30 s: {}).",
        ok(calibrate_secs < 30.0)
    );
    if let Some(r) = find("RBE calibrated --target-bpw 4 ") {
        let _ = writeln!(
            s,
            "- `--target-bpw 4.0` calibrated: {:.3} bpw, mean cosine {:.6} (>= 0.990: {}), min {:.6} (>= 0.95: {}).",
            r.bpw,
            r.cos_mean,
            ok(r.cos_mean >= 0.990),
            r.cos_min,
            ok(r.cos_min >= 0.95)
        );
    }
    for (gguf, goal, what) in
        [("GGUF Q4_K", 3.3, "Q4_K"), ("GGUF Q6_K", 5.0, "Q6_K"), ("GGUF Q4_K imatrix", 3.6, "Q4_K + imatrix")]
    {
        if let Some(g) = rows.iter().find(|r| r.method == gguf) {
            let at = calibrated_bpw_at(rows, g.cos_mean);
            let _ = writeln!(
                s,
                "- {what}'s mean cosine ({:.6} at {:.1} bpw) reached by calibrated RBE at {} (<= {goal}: {}).",
                g.cos_mean,
                g.bpw,
                shown(at),
                ok(at.is_some_and(|b| b <= goal))
            );
        }
    }
    if let (Some(g), Some(r)) =
        (rows.iter().find(|r| r.method == "GGUF Q4_K imatrix"), find("RBE calibrated --target-bpw 4 "))
    {
        let _ = writeln!(
            s,
            "- at 4.0 bpw against Q4_K + imatrix (4.5 bpw): mean cosine {:+.6}, min {:+.6} (beat: {}).",
            r.cos_mean - g.cos_mean,
            r.cos_min - g.cos_min,
            ok(r.cos_mean > g.cos_mean)
        );
    }
    if let (Some(h), Some(f)) = (find("RBE calibrated, half the text"), find("RBE calibrated --target-bpw 4 ")) {
        let _ = writeln!(
            s,
            "- half the calibration text at 4.0 bpw: mean cosine {:.6} (full text {:.6}), min {:.6} (full {:.6}).",
            h.cos_mean, f.cos_mean, h.cos_min, f.cos_min
        );
    }
    let secs_of = |label: &str| encode_secs.iter().find(|(l, _)| l == label).map(|(_, s)| *s);
    if let (Some(cal), Some(plain)) = (secs_of("RBE calibrated --target-bpw 4"), secs_of("RBE --target-bpw 4")) {
        let _ = writeln!(
            s,
            "- encode time (`encode_model`, 36 Linears): calibrated `--target-bpw 4` {cal:.1} s, plain `--target-bpw 4` \
             {plain:.1} s = {:.1}x (<= 3x: {}); the plain `--rel-rmse 0.0735` row took {plain_secs:.1} s with its \
             embedding pass.",
            cal / plain,
            ok(cal <= 3.0 * plain)
        );
    }
    s
}

fn render(rows: &[Row], sentences: &[String], compact_mean: f64, compact_min: f64, notes: &str, secs: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# all-MiniLM-L6-v2 sentence embeddings: RBE against GGUF-style quantisation\n");
    let _ = writeln!(
        s,
        "`cargo xtask minilm`. {} test sentences (`fixtures/minilm/eval_sentences.txt`), mean pooling over \
         the attention mask + L2 norm, candle-transformers' BERT (f32, CPU). Only the 36 `encoder.layer.*` \
         Linear weights (10.6 M values) change; everything else stays original. Cosine is to the original \
         model's embedding of the same sentence. Bits/weight: RBE from the stored bytes (stream + the \
         tensor's header entries, as every `rbe` command counts); GGUF types from their block sizes. \
         Relative RMSE = rmse / std, mean over the 36 matrices.\n",
        sentences.len()
    );
    let _ = writeln!(
        s,
        "GGUF-style rows use candle's quantiser (`candle_core::quantized`, `QTensor::quantize` + dequantise). \
         Its blocks run over the flattened matrix: for the 384x1536 `output.dense` weights this is exactly \
         `QTensor::quantize` of the matrix; for the 384-wide rows of the other 30 weights, the 256-value \
         k-quant super-blocks (Q4_K, Q6_K) span row boundaries (ggml and candle refuse that shape; bits/weight \
         unchanged). Q8_0 and Q4_0 (blocks of 32) are row-aligned everywhere.\n"
    );
    let _ = writeln!(s, "| method | bits/weight | mean rel. RMSE | mean cosine | min cosine | s |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.5} | {:.6} | {:.6} | {:.1} |",
            r.method, r.bpw, r.rel_rmse, r.cos_mean, r.cos_min, r.secs
        );
    }
    let _ = writeln!(s, "\nCompressed inference:\n");
    let _ = writeln!(
        s,
        "- The compact BERT forward (`rbe::calibrate::bert`, `dyn Module` Linears) against \
         candle-transformers' `BertModel` on the original weights: cosine mean {compact_mean:.8}, min {compact_min:.8}."
    );
    s.push_str(notes);
    let find = |m: &str| rows.iter().find(|r| r.method == m);
    let ok = |b: bool| if b { "met" } else { "MISSED" };
    let _ = writeln!(s, "\nTargets (measured here, same sentences for every row):\n");
    if let (Some(r), Some(q4k), Some(q4_0)) = (find("RBE --rel-rmse 0.0735"), find("GGUF Q4_K"), find("GGUF Q4_0")) {
        let _ = writeln!(
            s,
            "- `--rel-rmse 0.0735`: {:.3} bpw (<= 4.1: {}), mean cosine {:.6} (>= 0.9725: {}), min {:.6} (>= 0.870: {}); \
             against Q4_K here ({:.1} bpw, rel {:.4}): mean cosine {:+.6}, min {:+.6}; against Q4_0: mean {:+.6}, min {:+.6}.",
            r.bpw,
            ok(r.bpw <= 4.1),
            r.cos_mean,
            ok(r.cos_mean >= 0.9725),
            r.cos_min,
            ok(r.cos_min >= 0.870),
            q4k.bpw,
            q4k.rel_rmse,
            r.cos_mean - q4k.cos_mean,
            r.cos_min - q4k.cos_min,
            r.cos_mean - q4_0.cos_mean,
            r.cos_min - q4_0.cos_min
        );
    }
    if let (Some(r), Some(q8)) = (find("RBE --rel-rmse 0.0055"), find("GGUF Q8_0")) {
        let _ = writeln!(
            s,
            "- `--rel-rmse 0.0055`: {:.3} bpw (<= 7.9: {}), mean cosine {:.6} (>= 0.99985: {}); against Q8_0 here \
             ({:.1} bpw, rel {:.5}): mean cosine {:+.6}, min {:+.6}.",
            r.bpw,
            ok(r.bpw <= 7.9),
            r.cos_mean,
            ok(r.cos_mean >= 0.99985),
            q8.bpw,
            q8.rel_rmse,
            r.cos_mean - q8.cos_mean,
            r.cos_min - q8.cos_min
        );
    }
    let _ = writeln!(s, "- whole run {secs:.0} s (< 600 s: {}).", ok(secs < 600.0));
    let _ = writeln!(s, "\nChart: `target/reports/minilm-rd.svg`.");
    s
}

fn plot(rows: &[Row], path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let pts: Vec<&Row> = rows.iter().filter(|r| matches!(r.kind, Kind::Rbe | Kind::Gguf | Kind::Calibrated)).collect();
    let xmax = pts.iter().map(|r| r.bpw).fold(0.0, f64::max) * 1.05;
    for (area, title, value) in [
        (&left, "1 - mean cosine to the original (log)", (|r: &Row| (1.0 - r.cos_mean).max(1e-7)) as fn(&Row) -> f64),
        (&right, "mean relative RMSE (log)", |r: &Row| r.rel_rmse.max(1e-5)),
    ] {
        let ys: Vec<f64> = pts.iter().map(|r| value(r)).collect();
        let (lo, hi) =
            (ys.iter().copied().fold(f64::INFINITY, f64::min) / 2.0, ys.iter().copied().fold(0.0, f64::max) * 2.0);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("MiniLM: {title} vs bits/weight"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, (lo..hi).log_scale())?;
        chart.configure_mesh().x_desc("bits / weight").y_desc(title).draw()?;
        let mut rbe: Vec<(f64, f64)> = pts
            .iter()
            .filter(|r| r.kind == Kind::Rbe && !r.method.contains("--k"))
            .map(|r| (r.bpw, value(r)))
            .collect();
        rbe.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(rbe.clone(), BLUE.stroke_width(2)))?
            .label("RBE (error targets)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart.draw_series(rbe.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
        let mut cal: Vec<(f64, f64)> = pts
            .iter()
            .filter(|r| r.kind == Kind::Calibrated && !r.method.contains("half"))
            .map(|r| (r.bpw, value(r)))
            .collect();
        cal.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(cal.clone(), GREEN.stroke_width(2)))?
            .label("RBE calibrated (--target-bpw)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN.stroke_width(2)));
        chart.draw_series(cal.iter().map(|&p| Circle::new(p, 4, GREEN.filled())))?;
        for r in pts.iter().filter(|r| r.kind == Kind::Gguf || r.method.contains("--k")) {
            let color = if r.kind == Kind::Gguf { RED } else { BLUE };
            let p = (r.bpw, value(r));
            chart.draw_series(std::iter::once(TriangleMarker::new(p, 6, color.filled())))?;
            let label = r.method.trim_start_matches("GGUF ").trim_start_matches("RBE ").to_owned();
            chart.draw_series(std::iter::once(Text::new(label, (p.0 + 0.1, p.1), ("sans-serif", 12))))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    }
    root.present()?;
    Ok(())
}
