//! Decoding a [`Model`] back to dense safetensors: compressed tensors through the reference
//! decoder, stored under their original shape in the chosen [`OutputDtype`]; verbatim tensors
//! copied bit-exact after their checksum is checked; non-`rbe.` metadata carried over. One tensor
//! is decoded at a time and every output file appears atomically: on an error nothing is left at
//! its path. A sharded model decodes to a directory of shards plus a `*.safetensors.index.json`.

use crate::error::Error;
use crate::model::{Model, Shard, entry_stored_bytes};
use half::{bf16, f16};
use rbe_format::index::{RBE_INDEX_SUFFIX, SAFETENSORS_INDEX_SUFFIX};
use rbe_format::{Entry, OutputFile, SafetensorsWriter, ShardIndex, SourceDtype};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata keys of the `.rbe` container itself; other metadata is carried over to the output.
const RBE_METADATA_PREFIX: &str = "rbe.";

/// The dtype compressed tensors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputDtype {
    /// IEEE single precision.
    #[default]
    F32,
    /// IEEE half precision (round to nearest even).
    F16,
    /// bfloat16 (round to nearest even).
    Bf16,
}

impl std::str::FromStr for OutputDtype {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "f32" => Ok(OutputDtype::F32),
            "f16" => Ok(OutputDtype::F16),
            "bf16" => Ok(OutputDtype::Bf16),
            other => Err(format!("unknown dtype `{other}` (expected f32, f16 or bf16)")),
        }
    }
}

impl OutputDtype {
    /// The lower-case name (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            OutputDtype::F32 => "f32",
            OutputDtype::F16 => "f16",
            OutputDtype::Bf16 => "bf16",
        }
    }

    /// The safetensors name of the dtype.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            OutputDtype::F32 => "F32",
            OutputDtype::F16 => "F16",
            OutputDtype::Bf16 => "BF16",
        }
    }

    /// `values` rounded to this dtype and back (round to nearest even).
    pub fn round(self, values: &[f32]) -> Vec<f32> {
        match self {
            OutputDtype::F32 => values.to_vec(),
            OutputDtype::F16 => values.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            OutputDtype::Bf16 => values.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        }
    }

    /// `values` as little-endian bytes of this dtype (round to nearest even).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        let width = match self {
            OutputDtype::F32 => 4,
            OutputDtype::F16 | OutputDtype::Bf16 => 2,
        };
        let mut out = Vec::with_capacity(values.len() * width);
        match self {
            OutputDtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            OutputDtype::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            OutputDtype::Bf16 => values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
        out
    }
}

impl From<SourceDtype> for OutputDtype {
    fn from(d: SourceDtype) -> Self {
        match d {
            SourceDtype::F32 => OutputDtype::F32,
            SourceDtype::F16 => OutputDtype::F16,
            SourceDtype::BF16 => OutputDtype::Bf16,
        }
    }
}

/// How a model is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Dtype of every decoded tensor; `None` (the default) restores each tensor's source dtype,
    /// as recorded in the file.
    pub dtype: Option<OutputDtype>,
    /// Write values beyond f16's range as ±65504 instead of failing (f16 output only).
    pub saturate_f16: bool,
}

/// What a decode wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeSummary {
    /// The safetensors file written, or the index of a sharded output.
    pub output: PathBuf,
    /// Compressed tensors decoded.
    pub decoded: usize,
    /// Verbatim tensors copied.
    pub copied: usize,
    /// Tensors whose output dtype adds measurable error to what the encode achieved: the figure
    /// per tensor, for the caller to show.
    pub warnings: Vec<String>,
}

/// What one shard's decode wrote.
#[derive(Default)]
struct ShardSummary {
    decoded: usize,
    copied: usize,
    warnings: Vec<String>,
}

/// Largest finite f16.
const F16_MAX: f32 = 65504.0;

/// Relative RMSE the rounding to `dtype` adds, estimated against the original: the encode's
/// achieved figure combined (in quadrature) with the rounding error over the tensor's std.
fn with_rounding(values: &[f32], bytes_rounded: &[f32], achieved: f64, std: f64) -> f64 {
    if std <= 0.0 || values.is_empty() {
        return achieved;
    }
    let se: f64 = values.iter().zip(bytes_rounded).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
    let rounding = (se / values.len() as f64).sqrt() / std;
    (achieved * achieved + rounding * rounding).sqrt()
}

/// Called before each tensor: `(tensor name, stored bytes done including this tensor, total)`.
pub type DecodeProgress<'a> = &'a dyn Fn(&str, u64, u64);

impl Model {
    /// Decodes the model to `output`: a safetensors file for a single `.rbe`, a directory
    /// (created) for a sharded model, receiving `<shard stem>.safetensors` per shard and
    /// `<name>.safetensors.index.json`.
    ///
    /// Each compressed tensor is written in `options.dtype`, or its source dtype by default. An
    /// f16 output where a value exceeds f16's range is an error naming the tensor (unless
    /// `options.saturate_f16`); a dtype narrower than the source that raises the tensor's error
    /// over what the encode achieved by more than 5 % is reported in [`DecodeSummary::warnings`].
    pub fn decode_to(
        &self,
        output: &Path,
        options: &DecodeOptions,
        progress: DecodeProgress<'_>,
    ) -> Result<DecodeSummary, Error> {
        let total = self.stored_bytes();
        let mut done = 0u64;
        // No output may be one of the files read; all are checked before anything is written.
        let inputs: Vec<&Path> = std::iter::once(self.path()).chain(self.shards().iter().map(Shard::path)).collect();
        let check = |path: &Path| OutputFile::check(path, &inputs).map_err(|e| Error::file(path, e));
        let Some(index) = self.index() else {
            let out = check(output)?;
            let r = decode_shard(&self.shards()[0], out, options, &mut done, total, progress)?;
            return Ok(DecodeSummary {
                output: output.to_owned(),
                decoded: r.decoded,
                copied: r.copied,
                warnings: r.warnings,
            });
        };
        if std::fs::metadata(output).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::file(
                output,
                rbe_format::FormatError::Output {
                    path: output.display().to_string(),
                    reason: "is not a directory (a sharded model decodes to a directory)".into(),
                },
            ));
        }
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
        let names: Vec<String> = index
            .shards()
            .iter()
            .map(|name| format!("{}.safetensors", name.strip_suffix(".rbe").unwrap_or(name)))
            .collect();
        let outs = names.iter().map(|n| check(&output.join(n))).collect::<Result<Vec<_>, _>>()?;
        let index_path = output.join(safetensors_index_name(self.path()));
        check(&index_path)?;
        let mut weight_map = BTreeMap::new();
        let (mut decoded, mut copied, mut warnings) = (0, 0, Vec::new());
        for (((shard, name), out_name), out) in self.shards().iter().zip(index.shards()).zip(&names).zip(outs) {
            let r = decode_shard(shard, out, options, &mut done, total, progress)?;
            decoded += r.decoded;
            copied += r.copied;
            warnings.extend(r.warnings);
            // Only tensors the shard really holds (an index entry naming the wrong shard is not
            // carried into the output).
            for tensor in index.tensors_in(name) {
                if shard.file().entry(tensor).is_some() {
                    weight_map.insert(tensor.to_owned(), out_name.clone());
                }
            }
        }
        let json = ShardIndex { metadata: BTreeMap::new(), weight_map }.to_json();
        rbe_format::write_atomic(&index_path, &json).map_err(|e| Error::file(&index_path, e))?;
        Ok(DecodeSummary { output: index_path, decoded, copied, warnings })
    }
}

/// Decodes one shard into one safetensors file.
fn decode_shard(
    shard: &Shard,
    out: OutputFile,
    options: &DecodeOptions,
    done: &mut u64,
    total: u64,
    progress: DecodeProgress<'_>,
) -> Result<ShardSummary, Error> {
    let (input, file) = (shard.path(), shard.file());
    let output = &out.path().to_owned();
    let mut out = SafetensorsWriter::create_at(out).map_err(|e| Error::file(output, e))?;
    let mut carried: Vec<(&String, &String)> =
        file.metadata().iter().filter(|(key, _)| !key.starts_with(RBE_METADATA_PREFIX)).collect();
    carried.sort();
    for (key, value) in carried {
        out.metadata(key, value.clone());
    }
    let mut summary = ShardSummary::default();
    for (name, entry) in file.entries() {
        *done += entry_stored_bytes(entry);
        progress(name, *done, total);
        match entry {
            Entry::Compressed { desc, stats, .. } => {
                let shape = desc
                    .shape
                    .iter()
                    .map(|&d| usize::try_from(d))
                    .collect::<Result<Vec<usize>, _>>()
                    .map_err(|_| Error::Shape { path: input.to_owned(), tensor: name.clone() })?;
                let dtype = options.dtype.unwrap_or_else(|| desc.dtype.into());
                let bytes = {
                    let tensor = file.tensor(name).map_err(|e| Error::file(input, e))?;
                    let mut values = tensor.decode().map_err(|e| Error::file(input, e))?;
                    if dtype == OutputDtype::F16 {
                        let over = values.iter().filter(|v| v.abs() > F16_MAX).count();
                        if over > 0 && !options.saturate_f16 {
                            return Err(Error::Overflow { path: input.to_owned(), tensor: name.clone(), count: over });
                        }
                        values.iter_mut().for_each(|v| *v = v.clamp(-F16_MAX, F16_MAX));
                    }
                    let narrower = OutputDtype::from(desc.dtype) != dtype && dtype != OutputDtype::F32;
                    if narrower {
                        let rounded = dtype.round(&values);
                        let est = with_rounding(&values, &rounded, stats.rel_rmse, stats.std);
                        if est > stats.rel_rmse * 1.05 {
                            summary.warnings.push(format!(
                                "tensor `{name}`: rounding to {} raises its relative RMSE from {:.5} (the encode) to \
                                 about {est:.5}; decode to f32 or its source dtype ({}) to keep it",
                                dtype.name(),
                                stats.rel_rmse,
                                desc.dtype
                            ));
                        }
                    }
                    dtype.encode(&values)
                };
                out.add(name, dtype.safetensors_name(), &shape, &bytes).map_err(|e| Error::file(output, e))?;
                summary.decoded += 1;
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(name).map_err(|e| Error::file(input, e))?;
                out.add(name, &v.dtype, &v.shape, &v.data).map_err(|e| Error::file(output, e))?;
                summary.copied += 1;
            }
        }
    }
    out.finish().map_err(|e| Error::file(output, e))?;
    Ok(summary)
}

/// The dense index's name for an `.rbe` index `X.rbe.index.json`: `X.safetensors.index.json`.
fn safetensors_index_name(rbe_index: &Path) -> String {
    let stem = rbe_index.file_name().and_then(|n| n.to_str()).unwrap_or("model.rbe.index.json");
    let out_index = stem.replace(RBE_INDEX_SUFFIX, SAFETENSORS_INDEX_SUFFIX);
    if out_index == stem { format!("model{SAFETENSORS_INDEX_SUFFIX}") } else { out_index }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_encode_little_endian() {
        let v = [1.0f32, -0.5];
        assert_eq!(OutputDtype::F32.encode(&v), [0, 0, 0x80, 0x3F, 0, 0, 0, 0xBF]);
        assert_eq!(OutputDtype::F16.encode(&v), [0x00, 0x3C, 0x00, 0xB8]);
        assert_eq!(OutputDtype::Bf16.encode(&v), [0x80, 0x3F, 0x00, 0xBF]);
        assert!("f64".parse::<OutputDtype>().is_err());
    }
}
