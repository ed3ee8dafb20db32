//! The whole calibration of a BERT-family model (what `rbe calibrate` runs): tokenise the text,
//! record every Linear's `H` through [`CaptureLinear`](super::CaptureLinear)s, probe each Linear's
//! sensitivity, and return the [`Calibration`] with its provenance.

use super::bert::{Bert, BertError, Config, Linear};
use super::capture::Recorder;
use super::probe::{PROBE_REL_ERROR, ProbeError, SENSITIVITY_DEFINITION, distortion, mean_pool, perturbation};
use crate::encode::calibration::Calibration;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::Tokenizer;

/// The files of a BERT-family model.
#[derive(Debug, Clone)]
pub struct BertFiles {
    /// The weights (`model.safetensors`).
    pub model: PathBuf,
    /// Its Hugging Face `config.json`.
    pub config: PathBuf,
    /// Its Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
}

impl BertFiles {
    /// `config.json` and `tokenizer.json` in the model's directory.
    pub fn beside(model: &Path) -> Self {
        let dir = model.parent().unwrap_or(Path::new("."));
        BertFiles { model: model.to_owned(), config: dir.join("config.json"), tokenizer: dir.join("tokenizer.json") }
    }
}

/// How to calibrate.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// Probe each Linear's sensitivity (one extra partial forward over the text per Linear).
    pub sensitivity: bool,
    /// Samples per forward (sorted by length, so padding stays small).
    pub batch: usize,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions { sensitivity: true, batch: 32 }
    }
}

/// Where a calibration run is.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The text is tokenised and the model loaded.
    Loaded {
        /// Samples (non-empty lines).
        samples: usize,
        /// Tokens over all samples (special tokens included).
        tokens: usize,
        /// Linears to record.
        linears: usize,
    },
    /// One batch has been through the recording forward.
    Captured {
        /// Batches done.
        done: usize,
        /// All batches.
        total: usize,
    },
    /// One Linear's sensitivity is measured.
    Probed {
        /// Linears done.
        done: usize,
        /// All Linears.
        total: usize,
        /// The weight.
        name: &'a str,
        /// Its sensitivity.
        sensitivity: f64,
    },
}

/// Counts and times of a finished run.
#[derive(Debug, Clone)]
pub struct CalibrateSummary {
    /// Samples (non-empty lines).
    pub samples: usize,
    /// Tokens summed into each `H`.
    pub tokens: usize,
    /// Linears recorded.
    pub linears: usize,
    /// Seconds spent loading, tokenising and recording.
    pub capture_seconds: f64,
    /// Seconds spent probing sensitivities.
    pub probe_seconds: f64,
}

/// Why a calibration run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrateError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The model is not one the compact BERT runs.
    #[error(
        "{path}: not a BERT-family model ({reason}); `rbe calibrate` runs BERT encoders, for other models wrap their Linears in `rbe::calibrate::CaptureLinear`"
    )]
    NotBert {
        /// The model or config file.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// The tokenizer cannot be loaded or fails on a line.
    #[error("{path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The text has no sample.
    #[error("the calibration text has no non-empty line")]
    EmptyText,
    /// A line is longer than the model can take.
    #[error(
        "line {line} of the text is {tokens} tokens, over the model's max_position_embeddings {max}; split or shorten it"
    )]
    TooLong {
        /// 1-based line number in the text.
        line: usize,
        /// Its tokens, special tokens included.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// The tokenizer produced an id the model has no embedding for.
    #[error("line {line}: the tokenizer gives {what} {id}, the model has {limit}: tokenizer and model do not match")]
    Vocabulary {
        /// 1-based line number in the text.
        line: usize,
        /// `token id` or `token type id`.
        what: &'static str,
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        limit: usize,
    },
    /// Building the BERT failed.
    #[error(transparent)]
    Bert(#[from] BertError),
    /// Probing a sensitivity failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// One tokenised sample.
struct Sample {
    ids: Vec<u32>,
    types: Vec<u32>,
}

/// One forward's worth of samples.
struct Batch {
    ids: Tensor,
    types: Tensor,
    mask: Tensor,
    real: Vec<bool>,
    lens: Vec<usize>,
}

/// Reads `config.json` and refuses what the compact BERT cannot run.
pub fn read_config(path: &Path) -> Result<Config, CalibrateError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CalibrateError::Read { path: shown.clone(), source })?;
    let not = |reason: String| CalibrateError::NotBert { path: shown.clone(), reason };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| not(format!("not JSON: {e}")))?;
    match value.get("model_type").and_then(serde_json::Value::as_str) {
        Some("bert") | None => {}
        Some(other) => return Err(not(format!("model_type `{other}`"))),
    }
    let cfg: Config = serde_json::from_value(value).map_err(|e| not(e.to_string()))?;
    if cfg.num_hidden_layers == 0 || cfg.hidden_size == 0 {
        return Err(not("no encoder layers".into()));
    }
    Ok(cfg)
}

fn tokenize(path: &Path, text: &str, cfg: &Config) -> Result<Vec<Sample>, CalibrateError> {
    let shown = path.display().to_string();
    let mut tok = Tokenizer::from_file(path).map_err(|e| CalibrateError::Tokenizer {
        path: shown.clone(),
        reason: if path.exists() { format!("not a tokenizer: {e}") } else { "no such file (give --tokenizer)".into() },
    })?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| CalibrateError::Tokenizer { path: shown.clone(), reason: e.to_string() })?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let enc = tok
            .encode(line, true)
            .map_err(|e| CalibrateError::Tokenizer { path: shown.clone(), reason: format!("line {}: {e}", i + 1) })?;
        let (ids, types) = (enc.get_ids().to_vec(), enc.get_type_ids().to_vec());
        if ids.len() > cfg.max_position_embeddings {
            return Err(CalibrateError::TooLong { line: i + 1, tokens: ids.len(), max: cfg.max_position_embeddings });
        }
        let vocab = |what, ids: &[u32], limit: usize| match ids.iter().find(|&&id| id as usize >= limit) {
            Some(&id) => Err(CalibrateError::Vocabulary { line: i + 1, what, id, limit }),
            None => Ok(()),
        };
        vocab("token id", &ids, cfg.vocab_size)?;
        vocab("token type id", &types, cfg.type_vocab_size)?;
        samples.push(Sample { ids, types });
    }
    if samples.is_empty() {
        return Err(CalibrateError::EmptyText);
    }
    Ok(samples)
}

fn batches(samples: &[Sample], size: usize) -> Result<Vec<Batch>, CalibrateError> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|&i| samples[i].ids.len());
    let dev = Device::Cpu;
    let mut out = Vec::new();
    for chunk in order.chunks(size.max(1)) {
        let width = chunk.iter().map(|&i| samples[i].ids.len()).max().unwrap_or(0);
        let (mut ids, mut types, mut real) = (Vec::new(), Vec::new(), Vec::new());
        for &i in chunk {
            let s = &samples[i];
            let pad = width - s.ids.len();
            ids.extend(s.ids.iter().copied().chain(std::iter::repeat_n(0, pad)));
            types.extend(s.types.iter().copied().chain(std::iter::repeat_n(0, pad)));
            real.extend(std::iter::repeat_n(true, s.ids.len()).chain(std::iter::repeat_n(false, pad)));
        }
        let shape = (chunk.len(), width);
        let mask: Vec<u32> = real.iter().map(|&r| u32::from(r)).collect();
        out.push(Batch {
            ids: Tensor::from_vec(ids, shape, &dev)?,
            types: Tensor::from_vec(types, shape, &dev)?,
            mask: Tensor::from_vec(mask, shape, &dev)?,
            real,
            lens: chunk.iter().map(|&i| samples[i].ids.len()).collect(),
        });
    }
    Ok(out)
}

/// The model's tensors, floating-point ones as f32.
fn load(path: &Path) -> Result<(HashMap<String, Tensor>, String), CalibrateError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CalibrateError::Read { path: shown.clone(), source })?;
    let hash = rbe_format::checksum(&bytes);
    let ts = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| CalibrateError::NotBert {
        path: shown.clone(),
        reason: format!("not a safetensors model: {e}"),
    })?;
    let ts = ts
        .into_iter()
        .map(|(n, t)| {
            let t = if t.dtype().is_float() && t.dtype() != DType::F32 { t.to_dtype(DType::F32)? } else { t };
            Ok((n, t))
        })
        .collect::<Result<_, candle_core::Error>>()?;
    Ok((ts, hash))
}

/// The weight and bias of Linear `name`, the weight `[out, in]`.
fn weight_bias(
    ts: &HashMap<String, Tensor>,
    path: &Path,
    name: &str,
) -> Result<(Tensor, Option<Tensor>), CalibrateError> {
    let wn = format!("{name}.weight");
    let w = ts.get(&wn).ok_or_else(|| BertError::Missing(wn.clone()))?;
    if w.rank() != 2 {
        return Err(CalibrateError::NotBert {
            path: path.display().to_string(),
            reason: format!("`{wn}` has shape {:?}, not [out, in]", w.dims()),
        });
    }
    Ok((w.clone(), ts.get(&format!("{name}.bias")).cloned()))
}

/// Calibrates the BERT-family model in `files` on `text` (one sample per non-empty line; a line
/// over `max_position_embeddings` tokens is an error naming it). Nothing is written: the caller
/// writes the returned [`Calibration`] (`Calibration::write`).
pub fn calibrate_bert(
    files: &BertFiles,
    text: &str,
    options: &CalibrateOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Calibration, CalibrateSummary), CalibrateError> {
    let t0 = Instant::now();
    let cfg = read_config(&files.config)?;
    let samples = tokenize(&files.tokenizer, text, &cfg)?;
    let tokens: usize = samples.iter().map(|s| s.ids.len()).sum();
    let batches = batches(&samples, options.batch)?;
    let (ts, model_hash) = load(&files.model)?;
    let prefix = Bert::detect_prefix(&ts)?;
    let names = Bert::linear_names(&cfg, prefix);
    progress(Progress::Loaded { samples: samples.len(), tokens, linears: names.len() });

    // The recording forward; it also keeps each layer's input and the reference embeddings.
    let mut rec = Recorder::new();
    let model = Bert::new::<CalibrateError>(&ts, &cfg, |name| {
        let (w, b) = weight_bias(&ts, &files.model, name)?;
        let inputs = w.dims()[1];
        Ok(Box::new(rec.wrap(&format!("{name}.weight"), inputs, candle_nn::Linear::new(w, b))) as Linear)
    })?;
    let mut layer_inputs: Vec<Vec<Tensor>> = Vec::with_capacity(batches.len());
    let mut biases = Vec::with_capacity(batches.len());
    let mut reference = Vec::with_capacity(samples.len());
    for (done, b) in batches.iter().enumerate() {
        rec.mask().set(&b.real);
        let bias = model.attention_bias(&b.mask)?;
        let mut x = model.embed(&b.ids, &b.types)?;
        let mut inputs = Vec::with_capacity(model.num_layers());
        for i in 0..model.num_layers() {
            if options.sensitivity {
                inputs.push(x.clone());
            }
            x = model.layer(i, &x, &bias)?;
        }
        reference.extend(mean_pool(&x, &b.lens)?);
        layer_inputs.push(inputs);
        biases.push(bias);
        progress(Progress::Captured { done: done + 1, total: batches.len() });
    }
    drop(model);
    let mut calibration = rec.finish();
    let capture_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    if options.sensitivity {
        let mut probe = Bert::new::<CalibrateError>(&ts, &cfg, |name| {
            let (w, b) = weight_bias(&ts, &files.model, name)?;
            Ok(Box::new(candle_nn::Linear::new(w, b)) as Linear)
        })?;
        let r = PROBE_REL_ERROR;
        for (done, name) in names.iter().enumerate() {
            let wn = format!("{name}.weight");
            let (w, b) = weight_bias(&ts, &files.model, name)?;
            let Some(record) = calibration.tensors.get_mut(&wn) else { continue };
            let e = perturbation(&wn, &w, record, r)?;
            let perturbed: Linear = Box::new(candle_nn::Linear::new((w + e)?, b));
            let (layer, _) = probe.locate(name).ok_or_else(|| BertError::Missing(wn.clone()))?;
            let Ok(original) = probe.replace_linear(name, perturbed) else { unreachable!("located above") };
            let mut got = Vec::with_capacity(samples.len());
            for ((bt, inputs), bias) in batches.iter().zip(&layer_inputs).zip(&biases) {
                let mut x = inputs[layer].clone();
                for i in layer..probe.num_layers() {
                    x = probe.layer(i, &x, bias)?;
                }
                got.extend(mean_pool(&x, &bt.lens)?);
            }
            let _ = probe.replace_linear(name, original);
            let sensitivity = distortion(&got, &reference) / (r * r);
            record.sensitivity = Some(sensitivity);
            progress(Progress::Probed { done: done + 1, total: names.len(), name: &wn, sensitivity });
        }
    }
    let probe_seconds = t1.elapsed().as_secs_f64();

    let m = &mut calibration.metadata;
    m.insert("architecture".into(), "bert".into());
    m.insert("model_xxh3".into(), model_hash);
    m.insert("text_xxh3".into(), rbe_format::checksum(text.as_bytes()));
    m.insert("samples".into(), samples.len().to_string());
    m.insert("tokens".into(), tokens.to_string());
    m.insert("tool".into(), format!("rbe {}", env!("CARGO_PKG_VERSION")));
    m.insert(
        "sensitivity_definition".into(),
        if options.sensitivity { SENSITIVITY_DEFINITION.into() } else { "not probed".into() },
    );
    let summary = CalibrateSummary {
        samples: samples.len(),
        tokens,
        linears: calibration.tensors.len(),
        capture_seconds,
        probe_seconds,
    };
    Ok((calibration, summary))
}
