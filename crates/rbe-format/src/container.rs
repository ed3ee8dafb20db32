//! The `.rbe` container (format.md 6): a safetensors file whose `U8` tensors hold compressed
//! streams, described in `__metadata__`. Reading validates everything before handing out views;
//! writing is atomic (temp file in the target directory, fsync, rename).

use crate::desc::{EncodeStats, TensorDesc, description_json, parse_description, stream_checksum, verbatim_checksum};
use crate::error::FormatError;
use crate::output::{OutputFile, TempFile};
use crate::shared::SharedBytes;
use crate::tensor::EncodedTensor;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Metadata key holding the format version.
pub const FORMAT_KEY: &str = "rbe.format";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: &str = "1";
/// Metadata key prefix of compressed tensor descriptions.
pub const TENSOR_KEY: &str = "rbe.t.";
/// Metadata key prefix of verbatim tensor checksums.
pub const VERBATIM_KEY: &str = "rbe.v.";

/// A tensor stored as is (not compressed).
#[derive(Debug, Clone)]
pub struct VerbatimTensor {
    /// safetensors dtype name (`F32`, `I64`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian data.
    pub data: SharedBytes,
}

/// One entry of an `.rbe` file.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A compressed tensor: description, statistics and stored stream.
    Compressed {
        /// The checksummed description from the metadata.
        desc: TensorDesc,
        /// The encoder's statistics stored beside it (not checksummed, informational).
        stats: EncodeStats,
        /// The stored stream bytes.
        stream: SharedBytes,
    },
    /// A tensor stored verbatim.
    Verbatim(VerbatimTensor),
}

/// An opened `.rbe` file: every tensor's entry, in file order.
#[derive(Debug)]
pub struct RbeFile {
    entries: Vec<(String, Entry)>,
    metadata: HashMap<String, String>,
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

fn io_err(path: &Path, source: std::io::Error) -> FormatError {
    FormatError::Io { path: path.display().to_string(), source }
}

impl RbeFile {
    /// Memory-maps and validates the container structure (not the block contents: see
    /// [`RbeFile::tensor`] and [`RbeFile::verify`]).
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        if path.is_dir() {
            return Err(FormatError::Container(format!(
                "{} is a directory, not an .rbe file (for a sharded model, give its *.rbe.index.json)",
                path.display()
            )));
        }
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        // SAFETY: the map is read-only; a file changed underneath while mapped can give wrong
        // bytes but not memory unsafety in our reads, which are all bounds-checked slices.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
        Self::from_bytes(SharedBytes::new(map))
    }

    /// Validates a container held in memory.
    pub fn from_bytes(bytes: SharedBytes) -> Result<Self, FormatError> {
        let st = SafeTensors::deserialize(&bytes).map_err(|source| FormatError::Safetensors { source })?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|source| FormatError::Safetensors { source })?;
        let data_start = 8 + header_len;
        let metadata = meta.metadata().clone().unwrap_or_default();
        match metadata.get(FORMAT_KEY).map(String::as_str) {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(FormatError::Container(format!(
                    "format version {v} is not supported (this reader knows {FORMAT_VERSION})"
                )));
            }
            None => return Err(FormatError::Container(format!("no `{FORMAT_KEY}` in the metadata: not an .rbe file"))),
        }
        let mut infos: Vec<(String, &safetensors::tensor::TensorInfo)> = meta.tensors().into_iter().collect();
        infos.sort_by_key(|(_, i)| i.data_offsets.0);
        let mut entries = Vec::with_capacity(infos.len());
        for (name, info) in infos {
            let (s, e) = info.data_offsets;
            let data = bytes
                .slice(data_start + s..data_start + e)
                .ok_or_else(|| FormatError::tensor(&name, "data outside the file"))?;
            if let Some(json) = metadata.get(&format!("{TENSOR_KEY}{name}")) {
                let (desc, stats) = parse_description(json)
                    .map_err(|source| FormatError::Description { tensor: name.clone(), source })?;
                if info.dtype != Dtype::U8 || info.shape.len() != 1 {
                    return Err(FormatError::tensor(&name, "a compressed tensor must be a 1-D U8 tensor"));
                }
                entries.push((name, Entry::Compressed { desc, stats, stream: data }));
            } else {
                let want = metadata
                    .get(&format!("{VERBATIM_KEY}{name}"))
                    .ok_or_else(|| FormatError::tensor(&name, "tensor has neither a description nor a checksum"))?;
                if want.len() != 16 {
                    return Err(FormatError::tensor(&name, "malformed checksum"));
                }
                entries.push((
                    name,
                    Entry::Verbatim(VerbatimTensor { dtype: dtype_name(info.dtype), shape: info.shape.clone(), data }),
                ));
            }
        }
        drop(st);
        // Every description and checksum must belong to a tensor of the right kind.
        for key in metadata.keys() {
            let (prefix, name) = if let Some(n) = key.strip_prefix(TENSOR_KEY) {
                (TENSOR_KEY, n)
            } else if let Some(n) = key.strip_prefix(VERBATIM_KEY) {
                (VERBATIM_KEY, n)
            } else {
                continue;
            };
            let ok = entries.iter().any(|(n, e)| {
                n == name
                    && matches!(
                        (prefix, e),
                        (TENSOR_KEY, Entry::Compressed { .. }) | (VERBATIM_KEY, Entry::Verbatim(_))
                    )
            });
            if !ok {
                return Err(FormatError::tensor(name, format!("metadata `{key}` has no matching tensor")));
            }
        }
        Ok(RbeFile { entries, metadata })
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[(String, Entry)] {
        &self.entries
    }

    /// The container's metadata.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// Loads compressed tensor `name` (checksum verified; entropy coding undone).
    pub fn tensor(&self, name: &str) -> Result<EncodedTensor, FormatError> {
        match self.entry(name) {
            Some(Entry::Compressed { desc, stats, stream }) => {
                Ok(EncodedTensor::from_stream(name, desc.clone(), stream.clone(), true)?.with_stats(stats.clone()))
            }
            Some(Entry::Verbatim(_)) => Err(FormatError::tensor(name, "stored verbatim, not compressed")),
            None => Err(FormatError::tensor(name, "no such tensor in the file")),
        }
    }

    /// Checks a verbatim tensor's checksum and returns it.
    pub fn verbatim(&self, name: &str) -> Result<&VerbatimTensor, FormatError> {
        match self.entry(name) {
            Some(Entry::Verbatim(v)) => {
                let want = &self.metadata[&format!("{VERBATIM_KEY}{name}")];
                let got = verbatim_checksum(&v.dtype, &v.shape, &v.data);
                if &got != want {
                    return Err(FormatError::Checksum {
                        tensor: name.to_owned(),
                        covers: "dtype, shape and data",
                        stored: want.clone(),
                        computed: got,
                    });
                }
                Ok(v)
            }
            Some(Entry::Compressed { .. }) => Err(FormatError::tensor(name, "compressed, not verbatim")),
            None => Err(FormatError::tensor(name, "no such tensor in the file")),
        }
    }

    /// Verifies every checksum and fully decodes every block; returns the number of blocks.
    pub fn verify(&self) -> Result<usize, FormatError> {
        let mut blocks = 0;
        for (name, e) in &self.entries {
            match e {
                Entry::Compressed { .. } => {
                    let t = self.tensor(name)?;
                    t.decode()?;
                    blocks += t.block_count();
                }
                Entry::Verbatim(_) => {
                    self.verbatim(name)?;
                }
            }
        }
        Ok(blocks)
    }
}

/// Writes a safetensors file atomically, streaming tensor data to a spill file so memory stays
/// bounded by the largest tensor; `finish` assembles header + data in a temp file and renames it.
/// Both temp files live beside the output ([`OutputFile`]) and vanish on error or drop.
pub struct SafetensorsWriter {
    out: OutputFile,
    path: PathBuf,
    spill: BufWriter<TempFile>,
    header: Vec<(String, String, Vec<usize>, u64, u64)>,
    metadata: BTreeMap<String, String>,
    offset: u64,
}

impl SafetensorsWriter {
    /// Starts a file that will appear at `path` only when [`SafetensorsWriter::finish`] succeeds.
    /// Refuses an existing `path` that is not a regular file ([`OutputFile::check`]).
    pub fn create(path: &Path) -> Result<Self, FormatError> {
        Self::create_at(OutputFile::check(path, &[])?)
    }

    /// Starts a file at an output already checked against its inputs.
    pub fn create_at(out: OutputFile) -> Result<Self, FormatError> {
        let spill = BufWriter::with_capacity(1 << 20, out.temp()?);
        Ok(SafetensorsWriter {
            path: out.path().to_owned(),
            out,
            spill,
            header: Vec::new(),
            metadata: BTreeMap::new(),
            offset: 0,
        })
    }

    /// Adds a metadata entry.
    pub fn metadata(&mut self, key: &str, value: String) {
        self.metadata.insert(key.to_owned(), value);
    }

    /// Appends a tensor.
    pub fn add(&mut self, name: &str, dtype: &str, shape: &[usize], data: &[u8]) -> Result<(), FormatError> {
        if self.header.iter().any(|(n, ..)| n == name) {
            return Err(FormatError::Container(format!("tensor `{name}` written twice")));
        }
        self.spill.write_all(data).map_err(|e| io_err(&self.path, e))?;
        let end = self.offset + data.len() as u64;
        self.header.push((name.to_owned(), dtype.to_owned(), shape.to_vec(), self.offset, end));
        self.offset = end;
        Ok(())
    }

    /// Writes header and data to a temp file beside the target, fsyncs it and renames it into place.
    pub fn finish(self) -> Result<(), FormatError> {
        let path = self.path;
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            header.insert("__metadata__".into(), serde_json::to_value(&self.metadata).expect("string map serialises"));
        }
        for (name, dtype, shape, s, e) in &self.header {
            header.insert(name.clone(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [s, e]}));
        }
        let mut json = serde_json::to_vec(&header).expect("header serialises");
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut spill = self.spill.into_inner().map_err(|e| io_err(&path, e.into_error()))?;
        let mut out = self.out.temp()?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, out.file());
            w.write_all(&(json.len() as u64).to_le_bytes()).map_err(|e| io_err(&path, e))?;
            w.write_all(&json).map_err(|e| io_err(&path, e))?;
            let f = spill.file();
            f.seek(SeekFrom::Start(0)).map_err(|e| io_err(&path, e))?;
            std::io::copy(f, &mut w).map_err(|e| io_err(&path, e))?;
            w.flush().map_err(|e| io_err(&path, e))?;
        }
        drop(spill);
        out.persist()
    }
}

/// Writes an `.rbe` container: compressed streams and verbatim tensors with their checksums.
pub struct RbeWriter {
    inner: SafetensorsWriter,
}

impl RbeWriter {
    /// Starts an `.rbe` file at `path` (appears atomically on [`RbeWriter::finish`]).
    pub fn create(path: &Path) -> Result<Self, FormatError> {
        Self::create_at(OutputFile::check(path, &[])?)
    }

    /// Starts an `.rbe` file at an output already checked against its inputs.
    pub fn create_at(out: OutputFile) -> Result<Self, FormatError> {
        let mut inner = SafetensorsWriter::create_at(out)?;
        inner.metadata(FORMAT_KEY, FORMAT_VERSION.to_owned());
        Ok(RbeWriter { inner })
    }

    /// Adds a compressed tensor's stored stream; `desc` must describe exactly these bytes.
    pub fn add_compressed(
        &mut self,
        name: &str,
        desc: &TensorDesc,
        stats: &EncodeStats,
        stream: &[u8],
    ) -> Result<(), FormatError> {
        if desc.stream_bytes != stream.len() as u64 || desc.xxh3 != stream_checksum(desc, stream) {
            return Err(FormatError::tensor(name, "description does not match the stream"));
        }
        let json = description_json(desc, stats);
        self.inner.metadata(&format!("{TENSOR_KEY}{name}"), json);
        self.inner.add(name, "U8", &[stream.len()], stream)
    }

    /// Adds a compressed tensor: its description, statistics and `stream` (what
    /// [`EncodedTensor::to_stream`] returned for it).
    pub fn add_tensor(&mut self, tensor: &EncodedTensor, stream: &[u8]) -> Result<(), FormatError> {
        self.add_compressed(tensor.name(), tensor.desc(), tensor.stats(), stream)
    }

    /// Adds a tensor stored as is.
    pub fn add_verbatim(&mut self, name: &str, dtype: &str, shape: &[usize], data: &[u8]) -> Result<(), FormatError> {
        self.inner.metadata(&format!("{VERBATIM_KEY}{name}"), verbatim_checksum(dtype, shape, data));
        self.inner.add(name, dtype, shape, data)
    }

    /// Adds a free-form metadata entry (e.g. the encoder's settings).
    pub fn metadata(&mut self, key: &str, value: String) {
        self.inner.metadata(key, value);
    }

    /// Completes the file atomically.
    pub fn finish(self) -> Result<(), FormatError> {
        self.inner.finish()
    }
}
