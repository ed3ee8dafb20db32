//! The shard index of a sharded model (format.md 6): `<name>.rbe.index.json`, the same shape as
//! safetensors' `*.safetensors.index.json` — a `metadata` object and a `weight_map` from tensor
//! name to shard file name. Written by the encoder, read by `rbe::Model`; parsing validates the
//! shard names (plain file names in the index's directory).

use crate::error::FormatError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `metadata.format` of an `.rbe` shard index.
pub const INDEX_FORMAT: &str = "rbe";
/// File-name suffix of an `.rbe` shard index.
pub const RBE_INDEX_SUFFIX: &str = ".rbe.index.json";
/// File-name suffix of a safetensors shard index.
pub const SAFETENSORS_INDEX_SUFFIX: &str = ".safetensors.index.json";

/// A shard index: free-form metadata and the tensor -> shard file map (sorted by tensor name, so
/// the JSON is deterministic).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// Free-form metadata; an `.rbe` index records `format: "rbe"` and `total_size` (bytes of the
    /// stored tensor data over every shard).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Tensor name -> shard file name (relative to the index's directory).
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    /// An `.rbe` index over `weight_map` whose tensors store `total_size` bytes of data.
    pub fn rbe(weight_map: BTreeMap<String, String>, total_size: u64) -> Self {
        let metadata = BTreeMap::from([
            ("format".to_owned(), serde_json::Value::from(INDEX_FORMAT)),
            ("total_size".to_owned(), serde_json::Value::from(total_size)),
        ]);
        ShardIndex { metadata, weight_map }
    }

    /// Parses and validates an index: valid JSON with a `weight_map` of plain shard file names
    /// (no path separator, not starting with `.`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Index(format!("bad index JSON: {e}")))?;
        let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(FormatError::Index("index has no `weight_map`".to_owned()));
        };
        let mut weight_map = BTreeMap::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .filter(|f| is_plain_file_name(f))
                .ok_or_else(|| FormatError::Index(format!("bad shard name {file}")))?;
            weight_map.insert(name.clone(), file.to_owned());
        }
        let metadata = match value.get("metadata") {
            Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => BTreeMap::new(),
        };
        Ok(ShardIndex { metadata, weight_map })
    }

    /// The index as pretty-printed JSON (the bytes the encoder writes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an index serialises")
    }

    /// Every shard file name, sorted, each once.
    pub fn shards(&self) -> Vec<&str> {
        let mut shards: Vec<&str> = self.weight_map.values().map(String::as_str).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// The tensors stored in `shard`, sorted by name.
    pub fn tensors_in<'a>(&'a self, shard: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.weight_map.iter().filter(move |(_, f)| f.as_str() == shard).map(|(n, _)| n.as_str())
    }
}

/// Whether `name` is a plain file name: no path separator and not hidden (`.`-prefixed).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\\') && !name.starts_with('.')
}

/// Whether a path names a shard index (`*.index.json` or any `.json`).
pub fn is_index_path(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbe_index_bytes_match_the_encoders_json() {
        let map = BTreeMap::from([("b".to_owned(), "s2.rbe".to_owned()), ("a".to_owned(), "s1.rbe".to_owned())]);
        let index = ShardIndex::rbe(map.clone(), 42);
        let want = serde_json::json!({"metadata": {"total_size": 42u64, "format": "rbe"}, "weight_map": map});
        assert_eq!(index.to_json(), serde_json::to_vec_pretty(&want).unwrap());
        assert_eq!(ShardIndex::from_json(&index.to_json()).unwrap(), index);
        assert_eq!(index.shards(), ["s1.rbe", "s2.rbe"]);
        assert_eq!(index.tensors_in("s2.rbe").collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn bad_indexes_are_rejected() {
        assert!(ShardIndex::from_json(b"{").unwrap_err().to_string().contains("bad index JSON"));
        assert!(ShardIndex::from_json(b"{}").unwrap_err().to_string().contains("no `weight_map`"));
        for bad in [r#""../x.rbe""#, r#""a/b.rbe""#, r#"".hidden""#, "3"] {
            let json = format!(r#"{{"weight_map": {{"t": {bad}}}}}"#);
            assert!(ShardIndex::from_json(json.as_bytes()).unwrap_err().to_string().contains("bad shard name"));
        }
    }
}
