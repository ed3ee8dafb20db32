//! Encoding a whole model: choose which tensors to compress, encode them one at a time (blocks in
//! parallel), copy the rest verbatim, and write the `.rbe` container(s) atomically; sharded inputs
//! give sharded outputs with their own index.

use crate::error::EncodeError;
use crate::settings::EncodeSettings;
use crate::source::{Shard, SourceModel, SourceTensor};
use crate::tensor::{encode_tensor, matrix_shape};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rbe_format::container::TENSOR_KEY;
use rbe_format::{Entry, RbeFile, RbeWriter, stream_checksum};
use serde::Serialize;
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
            Entry::Compressed { desc, stream } => {
                if stream_checksum(desc, stream) != desc.xxh3 {
                    return None;
                }
                let n = t.elements() as u64;
                let meta =
                    (TENSOR_KEY.len() + t.name.len() + serde_json::to_string(desc).map(|s| s.len()).unwrap_or(0) + 8)
                        as u64;
                reports.push(TensorReport {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    compressed: true,
                    stream_bytes: stream.len() as u64,
                    raw_stream_bytes: 0,
                    bpw: 8.0 * (stream.len() as u64 + meta) as f64 / n as f64,
                    rmse: Some(desc.rmse),
                    rel_rmse: Some(desc.rel_rmse),
                    k_mean: Some(desc.k_mean),
                    blocks_sparse: Some(desc.sparse),
                    blocks_dense: Some(desc.dense),
                    file: out_path.to_owned(),
                });
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(&t.name).ok()?;
                if v.data[..] != t.data[..] {
                    return None;
                }
                reports.push(TensorReport::verbatim(t, out_path));
            }
        }
    }
    Some(reports)
}

/// What happened to one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Name.
    pub name: String,
    /// Original shape.
    pub shape: Vec<usize>,
    /// Compressed (true) or copied verbatim.
    pub compressed: bool,
    /// Bytes of the stored stream (data bytes for verbatim tensors).
    pub stream_bytes: u64,
    /// Bytes the stream would take with entropy coding off (runtime layout).
    pub raw_stream_bytes: u64,
    /// Bits per weight: stream, index and the tensor's metadata entry.
    pub bpw: f64,
    /// Achieved RMSE on the decode.
    pub rmse: Option<f64>,
    /// Achieved RMSE / std.
    pub rel_rmse: Option<f64>,
    /// Mean coefficients per block.
    pub k_mean: Option<f64>,
    /// Blocks with a sparse residual.
    pub blocks_sparse: Option<usize>,
    /// Blocks with a dense residual.
    pub blocks_dense: Option<usize>,
    /// Output file holding it.
    #[serde(skip)]
    pub file: PathBuf,
}

impl TensorReport {
    /// The report of a tensor copied verbatim into `file`.
    fn verbatim(t: &SourceTensor, file: &Path) -> Self {
        let bytes = t.data.len() as u64;
        TensorReport {
            name: t.name.clone(),
            shape: t.shape.clone(),
            compressed: false,
            stream_bytes: bytes,
            raw_stream_bytes: bytes,
            bpw: 8.0 * bytes as f64 / t.elements().max(1) as f64,
            rmse: None,
            rel_rmse: None,
            k_mean: None,
            blocks_sparse: None,
            blocks_dense: None,
            file: file.to_owned(),
        }
    }
}

/// Totals over the compressed tensors.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Weights in compressed tensors.
    pub weights: u64,
    /// Bytes charged to them: their streams and metadata entries.
    pub bytes: u64,
    /// `8 * bytes / weights`.
    pub bpw: f64,
}

/// The result of a model encode.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    /// Wall time.
    pub seconds: f64,
    /// Per tensor, in input order.
    pub tensors: Vec<TensorReport>,
    /// Totals.
    pub totals: Totals,
}

fn globset(patterns: &[String]) -> Result<GlobSet, EncodeError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| EncodeError::Settings(format!("bad glob `{p}`: {e}")))?);
    }
    b.build().map_err(|e| EncodeError::Settings(e.to_string()))
}

/// Whether `t` is compressed under `settings` and the include/exclude sets.
fn should_compress(
    t: &SourceTensor,
    settings: &EncodeSettings,
    include: &GlobSet,
    exclude: &GlobSet,
    has_include: bool,
) -> bool {
    if !t.is_float() || t.shape.len() < 2 {
        return false;
    }
    let Some((rows, cols)) = matrix_shape(&t.shape) else { return false };
    if rows < settings.block || cols < settings.block {
        return false;
    }
    (!has_include || include.is_match(&t.name)) && !exclude.is_match(&t.name)
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
    let include = globset(&options.include)?;
    let exclude = globset(&options.exclude)?;
    let has_include = !options.include.is_empty();
    let sharded = model.index.is_some();
    if sharded {
        std::fs::create_dir_all(output)
            .map_err(|e| EncodeError::Input { path: output.display().to_string(), reason: e.to_string() })?;
    }
    let total: u64 = model.tensors().map(|t| t.elements() as u64).sum();
    let mut done = 0u64;
    let mut reports = Vec::new();
    let mut weight_map = serde_json::Map::new();
    let (mut charged, mut weights) = (0u64, 0u64);
    let record = settings_record(settings, options);
    for shard in &model.shards {
        let out_path = shard_output(shard, output, sharded);
        let finished = if options.resume && sharded { finished_shard(&out_path, shard, &record) } else { None };
        if let Some(done_reports) = finished {
            for r in done_reports {
                if r.compressed {
                    charged += (r.bpw * shard_weights(shard, &r.name) as f64 / 8.0).round() as u64;
                    weights += shard_weights(shard, &r.name);
                }
                done += shard_weights(shard, &r.name);
                progress(&r, done, total);
                if let Some(f) = out_path.file_name().and_then(|n| n.to_str()) {
                    weight_map.insert(r.name.clone(), serde_json::Value::String(f.to_owned()));
                }
                reports.push(r);
            }
            continue;
        }
        let mut writer = RbeWriter::create(&out_path)?;
        writer.metadata(SETTINGS_KEY, record.clone());
        for (k, v) in &shard.metadata {
            if !k.starts_with("rbe.") {
                writer.metadata(k, v.clone());
            }
        }
        for t in &shard.tensors {
            let report = if should_compress(t, settings, &include, &exclude, has_include) {
                let data = t.to_f32()?;
                t.release_pages();
                let out = encode_tensor(&t.name, &data, &t.shape, &t.dtype, settings)?;
                drop(data);
                let desc = out.tensor.desc();
                let meta_bytes =
                    (TENSOR_KEY.len() + t.name.len() + serde_json::to_string(desc).map(|s| s.len()).unwrap_or(0) + 8)
                        as u64;
                writer.add_compressed(&t.name, desc, &out.stream)?;
                let n = t.elements() as u64;
                charged += out.stream.len() as u64 + meta_bytes;
                weights += n;
                TensorReport {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    compressed: true,
                    stream_bytes: out.stream.len() as u64,
                    raw_stream_bytes: 4 + out.tensor.runtime_bytes() as u64,
                    bpw: 8.0 * (out.stream.len() as u64 + meta_bytes) as f64 / n as f64,
                    rmse: Some(desc.rmse),
                    rel_rmse: Some(desc.rel_rmse),
                    k_mean: Some(desc.k_mean),
                    blocks_sparse: Some(desc.sparse),
                    blocks_dense: Some(desc.dense),
                    file: out_path.clone(),
                }
            } else {
                // Verbatim tensors are copied bit-exact, whatever they hold.
                writer.add_verbatim(&t.name, &t.dtype, &t.shape, &t.data)?;
                t.release_pages();
                TensorReport::verbatim(t, &out_path)
            };
            done += t.elements() as u64;
            progress(&report, done, total);
            if let Some(f) = out_path.file_name().and_then(|n| n.to_str()) {
                weight_map.insert(t.name.clone(), serde_json::Value::String(f.to_owned()));
            }
            reports.push(report);
        }
        writer.finish()?;
    }
    if let (true, Some(index)) = (sharded, &model.index) {
        let name = index.file_name().and_then(|n| n.to_str()).unwrap_or("model.safetensors.index.json");
        let out_name = name.replace(".safetensors.index.json", ".rbe.index.json");
        let out_name = if out_name == name { format!("{name}.rbe.json") } else { out_name };
        let total_size: u64 = reports.iter().map(|r| r.stream_bytes).sum();
        let json =
            serde_json::json!({"metadata": {"total_size": total_size, "format": "rbe"}, "weight_map": weight_map});
        write_atomic(&output.join(out_name), serde_json::to_vec_pretty(&json).expect("index serialises").as_slice())?;
    }
    Ok(EncodeReport {
        seconds: started.elapsed().as_secs_f64(),
        tensors: reports,
        totals: Totals {
            weights,
            bytes: charged,
            bpw: if weights > 0 { 8.0 * charged as f64 / weights as f64 } else { 0.0 },
        },
    })
}

fn shard_weights(shard: &Shard, name: &str) -> u64 {
    shard.tensors.iter().find(|t| t.name == name).map_or(0, |t| t.elements() as u64)
}

/// Writes a small file atomically (temp file beside it, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EncodeError> {
    use std::io::Write;
    let err = |e: std::io::Error| EncodeError::Input { path: path.display().to_string(), reason: e.to_string() };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
