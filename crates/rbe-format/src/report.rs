//! What a tensor costs in an `.rbe` file, and its one-line report: the single definition of
//! **bits per weight** every tool prints (`rbe encode`, `inspect`, `demo`, `analyze`, the xtask
//! reports).
//!
//! A tensor's cost is its stored bytes (the stream of a compressed tensor, the data of a verbatim
//! one) plus the bytes its entry adds to the safetensors header: its tensor entry
//! `"<name>":{"data_offsets":[0,<size>],"dtype":..,"shape":..},` (offsets counted from 0, so the
//! figure does not depend on where in the file the tensor sits) and its `__metadata__` entry
//! (`"rbe.t.<name>":"<description JSON>",` or `"rbe.v.<name>":"<checksum>",`), each with its comma.
//! `bits_per_weight = 8 * (stored bytes + header entry bytes) / elements`.
//!
//! What it leaves out is shared by the whole file: the 8-byte header length, the braces, the
//! `rbe.format` and encoder-settings metadata, the header's padding. The model-level figure
//! ([`ModelReport`]'s totals) counts the real file size instead, so it includes them: every byte of
//! the file(s) except the verbatim tensors' data, over the compressed tensors' weights.

use crate::container::{Entry, TENSOR_KEY, VERBATIM_KEY};
use crate::desc::{EncodeStats, TensorDesc, description_json};
use crate::tensor::EncodedTensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes of `value` as a JSON string literal (quotes and escapes included).
fn json_string_len(value: &str) -> u64 {
    serde_json::to_string(value).map_or(0, |s| s.len() as u64)
}

/// Bytes of `"<name>":{"data_offsets":[0,<bytes>],"dtype":"<dtype>","shape":[..]},`.
fn tensor_entry_len(name: &str, dtype: &str, shape: &[u64], bytes: u64) -> u64 {
    let entry = serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [0, bytes]});
    json_string_len(name) + 1 + serde_json::to_string(&entry).map_or(0, |s| s.len() as u64) + 1
}

/// Header bytes of a compressed tensor's entries (see the module docs).
pub fn compressed_entry_bytes(name: &str, desc: &TensorDesc, stats: &EncodeStats) -> u64 {
    let json = description_json(desc, stats);
    let meta = json_string_len(&format!("{TENSOR_KEY}{name}")) + 1 + json_string_len(&json) + 1;
    meta + tensor_entry_len(name, "U8", &[desc.stream_bytes], desc.stream_bytes)
}

/// Header bytes of a verbatim tensor's entries: tensor entry and its 16-digit checksum.
pub fn verbatim_entry_bytes(name: &str, dtype: &str, shape: &[u64], data_bytes: u64) -> u64 {
    let meta = json_string_len(&format!("{VERBATIM_KEY}{name}")) + 1 + 18 + 1;
    meta + tensor_entry_len(name, dtype, shape, data_bytes)
}

/// `8 * bytes / weights`; `None` for no weights.
pub fn bits_per_weight(bytes: u64, weights: u64) -> Option<f64> {
    (weights > 0).then(|| 8.0 * bytes as f64 / weights as f64)
}

/// Element count of a shape; `None` when it overflows.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// One tensor of an `.rbe` file (or of an encode): cost, bits per weight and, for a compressed
/// tensor, the settings and error its description records (`null` for verbatim tensors).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Original shape.
    pub shape: Vec<u64>,
    /// Compressed (true) or stored verbatim.
    pub compressed: bool,
    /// Source dtype of a compressed tensor, stored dtype of a verbatim one.
    pub dtype: String,
    /// Stored bytes: the stream of a compressed tensor, the data of a verbatim one.
    pub stream_bytes: u64,
    /// Bytes the stream takes with entropy coding off (runtime layout); known at encode time only.
    pub raw_stream_bytes: Option<u64>,
    /// Bytes the tensor's entries add to the container header (see the module docs).
    pub header_bytes: u64,
    /// `8 * (stream_bytes + header_bytes) / elements`; `None` for an empty or overflowing shape.
    pub bits_per_weight: Option<f64>,
    /// Achieved RMSE on the decode.
    pub rmse: Option<f64>,
    /// Achieved RMSE / std.
    pub rel_rmse: Option<f64>,
    /// Calibrated encodes: relative output error on the calibration inputs,
    /// `sqrt(tr(E H E^T) / tr(W H W^T))`, measured on the decode (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_rel_rmse: Option<f64>,
    /// Standard deviation of the original tensor.
    pub std: Option<f64>,
    /// Mean coefficients per block.
    pub k_mean: Option<f64>,
    /// Blocks with a sparse residual.
    pub blocks_sparse: Option<usize>,
    /// Blocks with a dense residual.
    pub blocks_dense: Option<usize>,
    /// Block edge.
    pub block: Option<usize>,
    /// Residual transform.
    pub transform: Option<String>,
    /// Sparse entry layout.
    pub layout: Option<String>,
    /// Sparse value codec.
    pub values: Option<String>,
    /// Parameter storage.
    pub params: Option<String>,
    /// Storage coding.
    pub entropy: Option<String>,
    /// Encoder profile.
    pub profile: Option<String>,
    /// Recommended decode-cache size in blocks.
    pub cache_blocks: Option<usize>,
    /// Stream checksum.
    pub xxh3: Option<String>,
}

impl TensorReport {
    /// The report of compressed tensor `name` described by `desc`.
    pub fn compressed(name: &str, desc: &TensorDesc, stats: &EncodeStats) -> Self {
        let header_bytes = compressed_entry_bytes(name, desc, stats);
        let weights = element_count(&desc.shape).unwrap_or(0);
        TensorReport {
            name: name.to_owned(),
            shape: desc.shape.clone(),
            compressed: true,
            dtype: desc.dtype.to_string(),
            stream_bytes: desc.stream_bytes,
            raw_stream_bytes: None,
            header_bytes,
            bits_per_weight: bits_per_weight(desc.stream_bytes + header_bytes, weights),
            rmse: Some(stats.rmse),
            rel_rmse: Some(stats.rel_rmse),
            output_rel_rmse: None,
            std: Some(stats.std),
            k_mean: Some(stats.k_mean),
            blocks_sparse: Some(stats.sparse),
            blocks_dense: Some(stats.dense),
            block: Some(desc.block),
            transform: Some(desc.transform.to_string()),
            layout: Some(desc.layout.to_string()),
            values: Some(desc.values.to_string()),
            params: Some(desc.params.to_string()),
            entropy: Some(desc.entropy.to_string()),
            profile: stats.profile.clone(),
            cache_blocks: Some(stats.cache_blocks),
            xxh3: Some(desc.xxh3.clone()),
        }
    }

    /// The report of a compressed tensor as it will be stored (its description and statistics).
    pub fn of_tensor(tensor: &EncodedTensor) -> Self {
        TensorReport::compressed(tensor.name(), tensor.desc(), tensor.stats())
    }

    /// The report of a tensor stored verbatim.
    pub fn verbatim(name: &str, dtype: &str, shape: &[usize], data_bytes: u64) -> Self {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let header_bytes = verbatim_entry_bytes(name, dtype, &shape, data_bytes);
        let weights = element_count(&shape).unwrap_or(0);
        TensorReport {
            name: name.to_owned(),
            compressed: false,
            dtype: dtype.to_owned(),
            stream_bytes: data_bytes,
            raw_stream_bytes: Some(data_bytes),
            header_bytes,
            bits_per_weight: bits_per_weight(data_bytes + header_bytes, weights),
            shape,
            rmse: None,
            rel_rmse: None,
            output_rel_rmse: None,
            std: None,
            k_mean: None,
            blocks_sparse: None,
            blocks_dense: None,
            block: None,
            transform: None,
            layout: None,
            values: None,
            params: None,
            entropy: None,
            profile: None,
            cache_blocks: None,
            xxh3: None,
        }
    }

    /// The report of one entry of an opened file.
    pub fn of_entry(name: &str, entry: &Entry) -> Self {
        match entry {
            Entry::Compressed { desc, stats, .. } => TensorReport::compressed(name, desc, stats),
            Entry::Verbatim(v) => TensorReport::verbatim(name, &v.dtype, &v.shape, v.data.len() as u64),
        }
    }

    /// Element count; `None` when the shape overflows.
    pub fn elements(&self) -> Option<u64> {
        element_count(&self.shape)
    }

    /// What the tensor costs in the file: `stream_bytes + header_bytes`.
    pub fn cost_bytes(&self) -> u64 {
        self.stream_bytes + self.header_bytes
    }
}

/// Totals of a model: the compressed tensors' figure counted from the real bytes on disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Weights in compressed tensors.
    pub weights: u64,
    /// Bytes charged to them: every byte of the file(s) except the verbatim tensors' data
    /// (headers, metadata and padding included).
    pub bytes: u64,
    /// `8 * bytes / weights`; `None` without compressed weights.
    pub bits_per_weight: Option<f64>,
    /// Tensors in the model.
    pub tensors: usize,
    /// Compressed tensors.
    pub compressed: usize,
    /// Verbatim tensors.
    pub verbatim: usize,
    /// Data bytes of the verbatim tensors.
    pub verbatim_bytes: u64,
    /// Elements of the verbatim tensors.
    pub verbatim_weights: u64,
}

/// A whole model (one `.rbe` file or every shard of a sharded one): per-tensor reports and the
/// totals from the real file sizes. `rbe encode --json` and `rbe inspect --json` print this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    /// The file reported on (the `.rbe` file, or the shard index).
    pub file: String,
    /// Bytes on disk of the `.rbe` file(s) (for a sharded model: every shard, not the index).
    pub file_bytes: u64,
    /// Per tensor, in file order (shard by shard).
    pub tensors: Vec<TensorReport>,
    /// Totals.
    pub totals: Totals,
}

impl ModelReport {
    /// The report of `tensors` stored in `file_bytes` bytes of `.rbe` file(s).
    pub fn new(file: String, file_bytes: u64, tensors: Vec<TensorReport>) -> Self {
        let sum = |compressed: bool, f: &dyn Fn(&TensorReport) -> u64| -> u64 {
            tensors.iter().filter(|t| t.compressed == compressed).map(f).fold(0u64, u64::saturating_add)
        };
        let weights = sum(true, &|t| t.elements().unwrap_or(0));
        let verbatim_bytes = sum(false, &|t| t.stream_bytes);
        let bytes = file_bytes.saturating_sub(verbatim_bytes);
        let compressed = tensors.iter().filter(|t| t.compressed).count();
        let totals = Totals {
            weights,
            bytes,
            bits_per_weight: bits_per_weight(bytes, weights),
            tensors: tensors.len(),
            compressed,
            verbatim: tensors.len() - compressed,
            verbatim_bytes,
            verbatim_weights: sum(false, &|t| t.elements().unwrap_or(0)),
        };
        ModelReport { file, file_bytes, tensors, totals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{RbeFile, RbeWriter};

    #[test]
    fn entry_bytes_are_the_header_growth() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.rbe"), dir.path().join("b.rbe"));
        RbeWriter::create(&a).unwrap().finish().unwrap();
        let mut w = RbeWriter::create(&b).unwrap();
        let data = [0u8; 24];
        w.add_verbatim("bias \"q\"", "F32", &[6], &data).unwrap();
        w.finish().unwrap();
        let header = |p: &std::path::Path| {
            let bytes = std::fs::read(p).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            String::from_utf8(bytes[8..8 + n].to_vec()).unwrap().trim_end().len() as u64
        };
        let file = RbeFile::open(&b).unwrap();
        let r = TensorReport::of_entry("bias \"q\"", file.entry("bias \"q\"").unwrap());
        assert_eq!(header(&b) - header(&a), r.header_bytes);
        assert_eq!(r.bits_per_weight, Some(8.0 * (24 + r.header_bytes) as f64 / 6.0));
        assert_eq!(bits_per_weight(8, 0), None);
        assert_eq!(element_count(&[u64::MAX, 2]), None);
    }
}

/// Metadata key recording the calibration an encode used (format.md 6): a JSON
/// [`CalibrationRecord`]. Informational, like the statistics: readers never act on it.
pub const CALIBRATION_KEY: &str = "rbe.calibration";

/// What the `rbe.calibration` metadata records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// Checksum (XXH3-64, hex) of the calibration file's bytes.
    pub xxh3: String,
    /// Per covered tensor: relative output error on the calibration inputs,
    /// `sqrt(tr(E H E^T) / tr(W H W^T))`, measured on the decode.
    pub output_rel_rmse: BTreeMap<String, f64>,
    /// Compressed tensors the calibration did not cover (encoded for weight error).
    pub uncovered: Vec<String>,
}

impl CalibrationRecord {
    /// The record in a file's metadata, if there is a well-formed one.
    pub fn from_metadata(metadata: &std::collections::HashMap<String, String>) -> Option<Self> {
        serde_json::from_str(metadata.get(CALIBRATION_KEY)?).ok()
    }
}
