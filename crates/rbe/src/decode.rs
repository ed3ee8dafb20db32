//! Decoding a [`Model`] back to dense safetensors: compressed tensors through the reference
//! decoder, stored under their original shape in the chosen [`OutputDtype`]; verbatim tensors
//! copied bit-exact after their checksum is checked; non-`rbe.` metadata carried over. One tensor
//! is decoded at a time and every output file appears atomically: on an error nothing is left at
//! its path. A sharded model decodes to a directory of shards plus a `*.safetensors.index.json`.

use crate::error::Error;
use crate::model::{Model, Shard, entry_stored_bytes};
use half::{bf16, f16};
use rbe_format::index::{RBE_INDEX_SUFFIX, SAFETENSORS_INDEX_SUFFIX};
use rbe_format::{Entry, OutputFile, SafetensorsWriter, ShardIndex};
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

/// What a decode wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeSummary {
    /// The safetensors file written, or the index of a sharded output.
    pub output: PathBuf,
    /// Compressed tensors decoded.
    pub decoded: usize,
    /// Verbatim tensors copied.
    pub copied: usize,
}

/// Called before each tensor: `(tensor name, stored bytes done including this tensor, total)`.
pub type DecodeProgress<'a> = &'a dyn Fn(&str, u64, u64);

impl Model {
    /// Decodes the model to `output`: a safetensors file for a single `.rbe`, a directory
    /// (created) for a sharded model, receiving `<shard stem>.safetensors` per shard and
    /// `<name>.safetensors.index.json`.
    pub fn decode_to(
        &self,
        output: &Path,
        dtype: OutputDtype,
        progress: DecodeProgress<'_>,
    ) -> Result<DecodeSummary, Error> {
        let total = self.stored_bytes();
        let mut done = 0u64;
        // No output may be one of the files read; all are checked before anything is written.
        let inputs: Vec<&Path> = std::iter::once(self.path()).chain(self.shards().iter().map(Shard::path)).collect();
        let check = |path: &Path| OutputFile::check(path, &inputs).map_err(|e| Error::file(path, e));
        let Some(index) = self.index() else {
            let out = check(output)?;
            let (decoded, copied) = decode_shard(&self.shards()[0], out, dtype, &mut done, total, progress)?;
            return Ok(DecodeSummary { output: output.to_owned(), decoded, copied });
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
        let (mut decoded, mut copied) = (0, 0);
        for (((shard, name), out_name), out) in self.shards().iter().zip(index.shards()).zip(&names).zip(outs) {
            let (d, c) = decode_shard(shard, out, dtype, &mut done, total, progress)?;
            decoded += d;
            copied += c;
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
        Ok(DecodeSummary { output: index_path, decoded, copied })
    }
}

/// Decodes one shard into one safetensors file; returns (decoded, copied) counts.
fn decode_shard(
    shard: &Shard,
    out: OutputFile,
    dtype: OutputDtype,
    done: &mut u64,
    total: u64,
    progress: DecodeProgress<'_>,
) -> Result<(usize, usize), Error> {
    let (input, file) = (shard.path(), shard.file());
    let output = &out.path().to_owned();
    let mut out = SafetensorsWriter::create_at(out).map_err(|e| Error::file(output, e))?;
    let mut carried: Vec<(&String, &String)> =
        file.metadata().iter().filter(|(key, _)| !key.starts_with(RBE_METADATA_PREFIX)).collect();
    carried.sort();
    for (key, value) in carried {
        out.metadata(key, value.clone());
    }
    let (mut decoded, mut copied) = (0usize, 0usize);
    for (name, entry) in file.entries() {
        *done += entry_stored_bytes(entry);
        progress(name, *done, total);
        match entry {
            Entry::Compressed { desc, .. } => {
                let shape = desc
                    .shape
                    .iter()
                    .map(|&d| usize::try_from(d))
                    .collect::<Result<Vec<usize>, _>>()
                    .map_err(|_| Error::Shape { path: input.to_owned(), tensor: name.clone() })?;
                let bytes = {
                    let tensor = file.tensor(name).map_err(|e| Error::file(input, e))?;
                    let values = tensor.decode().map_err(|e| Error::file(input, e))?;
                    dtype.encode(&values)
                };
                out.add(name, dtype.safetensors_name(), &shape, &bytes).map_err(|e| Error::file(output, e))?;
                decoded += 1;
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(name).map_err(|e| Error::file(input, e))?;
                out.add(name, &v.dtype, &v.shape, &v.data).map_err(|e| Error::file(output, e))?;
                copied += 1;
            }
        }
    }
    out.finish().map_err(|e| Error::file(output, e))?;
    Ok((decoded, copied))
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
