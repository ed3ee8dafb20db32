//! [`Model`]: a compressed model on disk, one `.rbe` file or a sharded set read through its
//! `*.rbe.index.json` ([`rbe_format::ShardIndex`]). Every shard is opened and structurally
//! validated up front; tensors are looked up by name across shards.

use crate::error::Error;
use rbe_format::index::is_index_path;
use rbe_format::{EncodedTensor, Entry, ModelReport, RbeFile, ShardIndex, TensorReport, VerbatimTensor};
use std::path::{Path, PathBuf};

/// One `.rbe` file of a model.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    file: RbeFile,
    bytes: u64,
}

impl Shard {
    /// Opens and validates one `.rbe` file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = RbeFile::open(path).map_err(|e| Error::file(path, e))?;
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        Ok(Shard { path: path.to_owned(), file, bytes })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The opened container.
    pub fn file(&self) -> &RbeFile {
        &self.file
    }

    /// Its size on disk.
    pub fn file_bytes(&self) -> u64 {
        self.bytes
    }
}

/// A compressed model: a single `.rbe` file, or the shards named by a `*.rbe.index.json`.
#[derive(Debug)]
pub struct Model {
    path: PathBuf,
    index: Option<ShardIndex>,
    shards: Vec<Shard>,
}

impl Model {
    /// Opens `path`: a `.json` path is a shard index (its shards sit beside it), anything else one
    /// `.rbe` file. Errors name the file at fault.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if !is_index_path(path) {
            return Ok(Model { path: path.to_owned(), index: None, shards: vec![Shard::open(path)?] });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let index = ShardIndex::from_json(&bytes).map_err(|e| Error::file(path, e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let shards = index.shards().into_iter().map(|s| Shard::open(&dir.join(s))).collect::<Result<_, _>>()?;
        Ok(Model { path: path.to_owned(), index: Some(index), shards })
    }

    /// The path it was opened from (the `.rbe` file or the index).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shard index of a sharded model.
    pub fn index(&self) -> Option<&ShardIndex> {
        self.index.as_ref()
    }

    /// The `.rbe` files, in index order (sorted by file name); one for an unsharded model.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The calibration the model was encoded with (`rbe.calibration`), if any: the calibration
    /// file's checksum, each covered tensor's relative output error, the tensors it did not cover.
    pub fn calibration(&self) -> Option<rbe_format::CalibrationRecord> {
        let mut records =
            self.shards.iter().filter_map(|s| rbe_format::CalibrationRecord::from_metadata(s.file.metadata()));
        let mut all = records.next()?;
        for r in records {
            all.output_rel_rmse.extend(r.output_rel_rmse);
            all.uncovered.extend(r.uncovered);
        }
        Some(all)
    }

    /// Every entry, shard by shard, each in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.shards.iter().flat_map(|s| s.file.entries().iter().map(|(n, e)| (n.as_str(), e)))
    }

    /// The shard holding `name`.
    pub fn shard_of(&self, name: &str) -> Option<&Shard> {
        self.shards.iter().find(|s| s.file.entry(name).is_some())
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.shard_of(name).and_then(|s| s.file.entry(name))
    }

    /// Loads compressed tensor `name` (checksum verified).
    pub fn tensor(&self, name: &str) -> Result<EncodedTensor, Error> {
        let shard = self.shard_of(name).unwrap_or(&self.shards[0]);
        shard.file.tensor(name).map_err(|e| Error::file(&shard.path, e))
    }

    /// Checks verbatim tensor `name`'s checksum and returns it.
    pub fn verbatim(&self, name: &str) -> Result<&VerbatimTensor, Error> {
        let shard = self.shard_of(name).unwrap_or(&self.shards[0]);
        shard.file.verbatim(name).map_err(|e| Error::file(&shard.path, e))
    }

    /// Verifies every checksum and decodes every block of every shard; returns the block count.
    pub fn verify(&self) -> Result<usize, Error> {
        self.shards.iter().map(|s| s.file.verify().map_err(|e| Error::file(&s.path, e))).sum()
    }

    /// Bytes on disk of every shard (the index not included).
    pub fn file_bytes(&self) -> u64 {
        self.shards.iter().map(Shard::file_bytes).sum()
    }

    /// Stored bytes of every tensor (streams and verbatim data): the work of a full decode.
    pub fn stored_bytes(&self) -> u64 {
        self.entries().map(|(_, e)| entry_stored_bytes(e)).sum()
    }

    /// The model's report: bits per weight per tensor (one definition, [`rbe_format::report`]) and
    /// totals counted from the real file sizes. Reads headers only; no block is decoded.
    pub fn report(&self) -> ModelReport {
        let output_errors: std::collections::BTreeMap<String, f64> = self
            .shards
            .iter()
            .filter_map(|s| rbe_format::CalibrationRecord::from_metadata(s.file.metadata()))
            .flat_map(|r| r.output_rel_rmse)
            .collect();
        let tensors = self
            .entries()
            .map(|(n, e)| TensorReport {
                output_rel_rmse: output_errors.get(n).copied(),
                ..TensorReport::of_entry(n, e)
            })
            .collect();
        ModelReport::new(self.path.display().to_string(), self.file_bytes(), tensors)
    }
}

/// Stored bytes of one entry: its stream, or its verbatim data.
pub(crate) fn entry_stored_bytes(e: &Entry) -> u64 {
    match e {
        Entry::Compressed { stream, .. } => stream.len() as u64,
        Entry::Verbatim(v) => v.data.len() as u64,
    }
}
