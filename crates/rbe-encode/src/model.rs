//! Encoding a whole model: choose which tensors to compress, encode them one at a time (blocks in
//! parallel), copy the rest verbatim, and write the `.rbe` container(s) atomically; sharded inputs
//! give sharded outputs with their own index.

use crate::error::EncodeError;
use crate::select::Selection;
use crate::settings::EncodeSettings;
use crate::source::{Shard, SourceModel, SourceTensor};
use crate::tensor::encode_tensor;
use rbe_format::{
    Entry, ModelReport, OutputFile, RbeFile, RbeWriter, ShardIndex, TensorReport, stream_checksum, write_atomic,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which tensors to compress.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Glob patterns; when non-empty only matching tensors are compressed.
    pub include: Vec<String>,
    /// Glob patterns of tensors never compressed.
    pub exclude: Vec<String>,
    /// Sharded models: keep output shards that are already complete (every tensor present,
    /// every checksum verified, same settings) and encode only the others.
    pub resume: bool,
}

/// Metadata key recording the settings a file was encoded with (compared by `--resume`).
pub const SETTINGS_KEY: &str = "rbe.encoder";

fn settings_record(settings: &EncodeSettings, options: &ModelOptions) -> String {
    // Debug formatting of plain enums and numbers: stable for a given version of the encoder.
    format!(
        "v{} target={:?} block={} transform={} layout={} values={} params={:?} entropy={} residual={:?} include={:?} exclude={:?}",
        env!("CARGO_PKG_VERSION"),
        settings.target,
        settings.block,
        settings.transform,
        settings.layout,
        settings.values,
        settings.params,
        settings.entropy,
        settings.residual,
        options.include,
        options.exclude
    )
}

/// Reports for an output shard that is complete and was written with the same settings, or
/// `None` when it must be (re)encoded. Checksums are verified, never trusted.
fn finished_shard(out_path: &Path, shard: &Shard, record: &str) -> Option<Vec<TensorReport>> {
    let file = RbeFile::open(out_path).ok()?;
    if file.metadata().get(SETTINGS_KEY).map(String::as_str) != Some(record)
        || file.entries().len() != shard.tensors.len()
    {
        return None;
    }
    let mut reports = Vec::new();
    for t in &shard.tensors {
        match file.entry(&t.name)? {
            Entry::Compressed { desc, stats, stream } => {
                if stream_checksum(desc, stream) != desc.xxh3 {
                    return None;
                }
                reports.push(TensorReport::compressed(&t.name, desc, stats));
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(&t.name).ok()?;
                if v.data[..] != t.data[..] {
                    return None;
                }
                reports.push(verbatim_report(t));
            }
        }
    }
    Some(reports)
}

/// The report of a tensor copied verbatim.
fn verbatim_report(t: &SourceTensor) -> TensorReport {
    TensorReport::verbatim(&t.name, &t.dtype, &t.shape, t.data.len() as u64)
}

/// The result of a model encode: the written model's report (bits per weight per tensor and
/// totals from the real file sizes, as `rbe inspect` reports the same files) and the wall time.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    /// Wall time.
    pub seconds: f64,
    /// The written model.
    #[serde(flatten)]
    pub model: ModelReport,
    /// The written `.rbe` file, or the shard index of a sharded model.
    #[serde(skip)]
    pub output: PathBuf,
}

/// Output file for a shard: `-o` itself for a single file, `DIR/<shard stem>.rbe` when sharded.
fn shard_output(shard: &Shard, output: &Path, sharded: bool) -> PathBuf {
    if !sharded {
        return output.to_owned();
    }
    let name = shard.path.file_name().and_then(|n| n.to_str()).unwrap_or("shard.safetensors");
    output.join(format!("{}.rbe", name.strip_suffix(".safetensors").unwrap_or(name)))
}

/// Called after each tensor: `(report, weights done, weights total)`.
pub type Progress<'a> = &'a (dyn Fn(&TensorReport, u64, u64) + Sync);

/// Encodes `model` into `output` (a file, or a directory for a sharded model).
pub fn encode_model(
    model: &SourceModel,
    output: &Path,
    settings: &EncodeSettings,
    options: &ModelOptions,
    progress: Progress<'_>,
) -> Result<EncodeReport, EncodeError> {
    let started = Instant::now();
    settings.validate()?;
    let selection = Selection::new(&options.include, &options.exclude)?;
    let sharded = model.index.is_some();
    if sharded {
        std::fs::create_dir_all(output)
            .map_err(|e| EncodeError::Input { path: output.display().to_string(), reason: e.to_string() })?;
    }
    // Every output is checked before anything is encoded: none may be an input or a non-file.
    let inputs = model.input_paths();
    let index_path = sharded.then(|| output.join(rbe_index_name(model.index.as_deref())));
    let mut outputs = Vec::with_capacity(model.shards.len());
    for shard in &model.shards {
        outputs.push(OutputFile::check(&shard_output(shard, output, sharded), &inputs)?);
    }
    if let Some(path) = &index_path {
        OutputFile::check(path, &inputs)?;
    }
    let total: u64 = model.tensors().map(|t| t.elements() as u64).sum();
    let mut done = 0u64;
    let mut reports = Vec::new();
    let mut weight_map = BTreeMap::new();
    let mut file_bytes = 0u64;
    let record = settings_record(settings, options);
    for (shard, out) in model.shards.iter().zip(outputs) {
        let out_path = out.path().to_owned();
        let out_name = out_path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let finished = if options.resume && sharded { finished_shard(&out_path, shard, &record) } else { None };
        if let Some(done_reports) = finished {
            for r in done_reports {
                done += shard_weights(shard, &r.name);
                progress(&r, done, total);
                if let Some(f) = &out_name {
                    weight_map.insert(r.name.clone(), f.clone());
                }
                reports.push(r);
            }
            file_bytes += file_len(&out_path)?;
            continue;
        }
        let mut writer = RbeWriter::create_at(out)?;
        writer.metadata(SETTINGS_KEY, record.clone());
        for (k, v) in &shard.metadata {
            if !k.starts_with("rbe.") {
                writer.metadata(k, v.clone());
            }
        }
        for t in &shard.tensors {
            let report = if selection.compresses(t, settings) {
                let data = t.to_f32()?;
                t.release_pages();
                let dtype = t
                    .source_dtype()
                    .ok_or_else(|| EncodeError::Dtype { tensor: t.name.clone(), dtype: t.dtype.clone() })?;
                let out = encode_tensor(&t.name, &data, &t.shape, dtype, settings)?;
                drop(data);
                writer.add_tensor(&out.tensor, &out.stream)?;
                TensorReport {
                    raw_stream_bytes: Some(4 + out.tensor.runtime_bytes() as u64),
                    ..TensorReport::of_tensor(&out.tensor)
                }
            } else {
                // Verbatim tensors are copied bit-exact, whatever they hold.
                writer.add_verbatim(&t.name, &t.dtype, &t.shape, &t.data)?;
                t.release_pages();
                verbatim_report(t)
            };
            done += t.elements() as u64;
            progress(&report, done, total);
            if let Some(f) = &out_name {
                weight_map.insert(t.name.clone(), f.clone());
            }
            reports.push(report);
        }
        writer.finish()?;
        file_bytes += file_len(&out_path)?;
    }
    let mut written = output.to_owned();
    if let Some(path) = index_path {
        let total_size: u64 = reports.iter().map(|r| r.stream_bytes).sum();
        written = path;
        write_atomic(&written, &ShardIndex::rbe(weight_map, total_size).to_json())?;
    }
    Ok(EncodeReport {
        seconds: started.elapsed().as_secs_f64(),
        model: ModelReport::new(written.display().to_string(), file_bytes, reports),
        output: written,
    })
}

fn file_len(path: &Path) -> Result<u64, EncodeError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| EncodeError::Input { path: path.display().to_string(), reason: e.to_string() })
}

fn shard_weights(shard: &Shard, name: &str) -> u64 {
    shard.tensors.iter().find(|t| t.name == name).map_or(0, |t| t.elements() as u64)
}

/// The shard index's name for a sharded input's index `X.safetensors.index.json`:
/// `X.rbe.index.json`.
fn rbe_index_name(index: Option<&Path>) -> String {
    let name = index.and_then(|i| i.file_name()).and_then(|n| n.to_str()).unwrap_or("model.safetensors.index.json");
    let out_name = name.replace(".safetensors.index.json", ".rbe.index.json");
    if out_name == name { format!("{name}.rbe.json") } else { out_name }
}
