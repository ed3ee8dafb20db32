//! Input models: one safetensors file or a sharded set behind `*.safetensors.index.json`,
//! memory-mapped, validated, with tensors converted to f32 one at a time.

use crate::error::EncodeError;
use rbe_format::SharedBytes;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One tensor of the input, viewing the mapped file.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    /// Name.
    pub name: String,
    /// safetensors dtype name (`F32`, `F16`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian data.
    pub data: SharedBytes,
    /// The mapped file and the data's offset in it, to give the pages back after use.
    mapping: Option<(Arc<memmap2::Mmap>, usize)>,
}

/// Lets a shared map own the bytes of a [`SharedBytes`].
struct MapBytes(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for MapBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SourceTensor {
    /// A tensor over bytes held elsewhere (not a mapped file).
    pub fn new(name: String, dtype: String, shape: Vec<usize>, data: SharedBytes) -> Self {
        SourceTensor { name, dtype, shape, data, mapping: None }
    }

    /// Drops the tensor's pages from this process's memory once it has been read: a mapped model
    /// larger than RAM then streams through in bounded memory (the pages are re-read if touched).
    pub fn release_pages(&self) {
        #[cfg(unix)]
        if let Some((map, offset)) = &self.mapping {
            // SAFETY: the map is private and read-only, so MADV_DONTNEED only discards clean
            // pages that the kernel re-reads from the file on the next access; no data is lost
            // and no reference observes different bytes.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *offset, self.data.len()) };
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the encoder can read it as floats.
    pub fn is_float(&self) -> bool {
        self.source_dtype().is_some()
    }
    /// Its dtype as a compressed tensor records it (`None` unless F32, F16 or BF16).
    pub fn source_dtype(&self) -> Option<rbe_format::SourceDtype> {
        self.dtype.parse().ok()
    }
    /// The values as f32 (F32, F16 and BF16 inputs).
    pub fn to_f32(&self) -> Result<Vec<f32>, EncodeError> {
        let d = &self.data;
        Ok(match self.dtype.as_str() {
            "F32" => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            "F16" => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            "BF16" => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(EncodeError::Dtype { tensor: self.name.clone(), dtype: other.to_owned() }),
        })
    }
}

/// One input file and its tensors in file order.
#[derive(Debug)]
pub struct Shard {
    /// The file.
    pub path: PathBuf,
    /// Its tensors.
    pub tensors: Vec<SourceTensor>,
    /// safetensors metadata of the file (copied to the output).
    pub metadata: BTreeMap<String, String>,
}

/// An opened input model.
#[derive(Debug)]
pub struct SourceModel {
    /// The shard files (one for a single-file model).
    pub shards: Vec<Shard>,
    /// The index file, for a sharded model.
    pub index: Option<PathBuf>,
}

fn input_err(path: &Path, reason: impl Into<String>) -> EncodeError {
    EncodeError::Input { path: path.display().to_string(), reason: reason.into() }
}

fn open_shard(path: &Path) -> Result<Shard, EncodeError> {
    if path.is_dir() {
        return Err(input_err(
            path,
            "is a directory, not a safetensors file (for a sharded model, give its *.safetensors.index.json)",
        ));
    }
    let file = File::open(path).map_err(|e| input_err(path, e.to_string()))?;
    // SAFETY: read-only map; every read is a bounds-checked slice of it.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| input_err(path, e.to_string()))?);
    let bytes = SharedBytes::new(MapBytes(map.clone()));
    let (header_len, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| input_err(path, format!("not a valid safetensors file: {e}")))?;
    let start = 8 + header_len;
    let mut infos: Vec<_> = meta.tensors().into_iter().collect();
    infos.sort_by_key(|(_, i)| i.data_offsets.0);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let (s, e) = info.data_offsets;
        let data = bytes
            .slice(start + s..start + e)
            .ok_or_else(|| input_err(path, format!("tensor `{name}` lies outside the file")))?;
        let dtype = match info.dtype {
            Dtype::F32 => "F32".to_owned(),
            Dtype::F16 => "F16".to_owned(),
            Dtype::BF16 => "BF16".to_owned(),
            other => format!("{other:?}"),
        };
        tensors.push(SourceTensor {
            name,
            dtype,
            shape: info.shape.clone(),
            data,
            mapping: Some((map.clone(), start + s)),
        });
    }
    let metadata: BTreeMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    if metadata.contains_key(rbe_format::FORMAT_KEY) {
        return Err(input_err(
            path,
            "is already an .rbe file (compressed by RBE); to re-encode, decode it first: \
             `rbe decode IN.rbe -o OUT.safetensors`",
        ));
    }
    Ok(Shard { path: path.to_owned(), tensors, metadata })
}

impl SourceModel {
    /// Every file this model is read from (the shards and the index), which no output may be.
    pub fn input_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).chain(self.index.as_deref()).collect()
    }

    /// Opens a `.safetensors` file or a `*.safetensors.index.json` (shards beside it).
    pub fn open(path: &Path) -> Result<Self, EncodeError> {
        let is_index = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".json"));
        if !is_index {
            return Ok(SourceModel { shards: vec![open_shard(path)?], index: None });
        }
        let text = std::fs::read_to_string(path).map_err(|e| input_err(path, e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| input_err(path, format!("bad index JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| input_err(path, "index has no `weight_map` object"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = Vec::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| input_err(path, format!("`{name}` maps to a non-string")))?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(input_err(path, format!("shard name `{file}` must be a plain file name")));
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_owned());
            }
        }
        files.sort();
        let shards = files.iter().map(|f| open_shard(&dir.join(f))).collect::<Result<Vec<_>, _>>()?;
        for (name, file) in map {
            let shard = shards
                .iter()
                .find(|s| s.path.file_name().and_then(|n| n.to_str()) == file.as_str())
                .expect("opened above");
            if !shard.tensors.iter().any(|t| &t.name == name) {
                return Err(input_err(path, format!("tensor `{name}` is not in its shard {}", shard.path.display())));
            }
        }
        Ok(SourceModel { shards, index: Some(path.to_owned()) })
    }

    /// Every tensor, shard by shard.
    pub fn tensors(&self) -> impl Iterator<Item = &SourceTensor> {
        self.shards.iter().flat_map(|s| s.tensors.iter())
    }
}
