//! A compressed tensor's description (format.md 6), in two parts: [`TensorDesc`], every field a
//! decoder reads, all covered by the checksum; and [`EncodeStats`], what the encoder measured,
//! stored beside it in the same JSON object but outside the checksum, so no reader may let it
//! size an allocation or steer decoding.

use crate::error::FormatError;
use crate::settings::{BlockConfig, Entropy, Layout, ParamsPrecision, SourceDtype, Transform, ValueCodec};
use serde::{Deserialize, Serialize};

/// Largest element count a tensor may declare (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The checksummed description of a compressed tensor: what a decoder needs, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    /// Original shape (N-D allowed; compressed as `[d0, product of the rest]`).
    pub shape: Vec<u64>,
    /// Source dtype.
    pub dtype: SourceDtype,
    /// Block edge.
    pub block: usize,
    /// Residual transform.
    pub transform: Transform,
    /// Sparse entry layout.
    pub layout: Layout,
    /// Sparse value codec.
    pub values: ValueCodec,
    /// Parameter storage.
    pub params: ParamsPrecision,
    /// Storage coding.
    pub entropy: Entropy,
    /// Bytes of the stored stream.
    pub stream_bytes: u64,
    /// XXH3-64 over these fields and the stream (see [`stream_checksum`]), 16 lowercase hex digits.
    pub xxh3: String,
}

/// What the encoder measured and chose, stored with the description but not checksummed.
/// Informational only: readers report it and never act on it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EncodeStats {
    /// Encoder profile, if one was named.
    pub profile: Option<String>,
    /// Decode-cache size (blocks) the profile suggests; a hint for people, not an allocation size.
    pub cache_blocks: usize,
    /// Achieved RMSE, measured on the decode.
    pub rmse: f64,
    /// Achieved RMSE / std of the original tensor.
    pub rel_rmse: f64,
    /// Standard deviation of the original tensor.
    pub std: f64,
    /// Mean stored coefficients per block.
    pub k_mean: f64,
    /// Blocks with a sparse residual.
    pub sparse: usize,
    /// Blocks with a dense residual.
    pub dense: usize,
}

/// Why a shape cannot be compressed or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// No dimensions at all.
    #[error("empty shape")]
    Empty,
    /// A dimension is zero.
    #[error("zero-sized dimension")]
    ZeroSized,
    /// The element count overflows 64 bits.
    #[error("shape overflows")]
    Overflow,
    /// More elements than [`MAX_ELEMENTS`].
    #[error("{0} elements exceed the limit of 2^40")]
    TooLarge(u64),
}

/// The `[rows, cols]` matrix a shape is compressed as: the first dimension by the product of
/// the rest, within [`MAX_ELEMENTS`].
pub fn matrix_of(shape: &[u64]) -> Result<(usize, usize), ShapeError> {
    let (&first, rest) = shape.split_first().ok_or(ShapeError::Empty)?;
    let cols = rest.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or(ShapeError::Overflow)?;
    let n = first.checked_mul(cols).ok_or(ShapeError::Overflow)?;
    if first == 0 || cols == 0 {
        return Err(ShapeError::ZeroSized);
    }
    if n > MAX_ELEMENTS {
        return Err(ShapeError::TooLarge(n));
    }
    Ok((first as usize, cols as usize))
}

impl TensorDesc {
    /// A description of a `dtype` tensor of `shape` stored under `cfg` and `entropy`, its stream
    /// not yet written (`stream_bytes` 0, no checksum: [`crate::EncodedTensor`] fills both).
    pub fn new(shape: &[u64], dtype: SourceDtype, cfg: &BlockConfig, entropy: Entropy) -> Self {
        TensorDesc {
            shape: shape.to_vec(),
            dtype,
            block: cfg.block,
            transform: cfg.transform,
            layout: cfg.layout,
            values: cfg.values,
            params: cfg.params,
            entropy,
            stream_bytes: 0,
            xxh3: String::new(),
        }
    }

    /// The block configuration of this tensor (validated).
    pub fn block_config(&self) -> Result<BlockConfig, FormatError> {
        let cfg = BlockConfig {
            block: self.block,
            transform: self.transform,
            layout: self.layout,
            values: self.values,
            params: self.params,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The 2-D matrix shape `[rows, cols]` the blocks cover.
    pub fn matrix_shape(&self) -> Result<(usize, usize), ShapeError> {
        matrix_of(&self.shape)
    }

    /// Element count (`None` if the shape overflows).
    pub fn elements(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }
}

/// XXH3-64 of `bytes` as 16 hex digits.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

fn hash_with_prefix(prefix: &str, bytes: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(prefix.as_bytes());
    h.update(bytes);
    format!("{:016x}", h.digest())
}

/// Checksum of a compressed tensor (format.md 6): XXH3-64 over every [`TensorDesc`] field a
/// decoder reads, then the stream, so neither can change unnoticed.
pub fn stream_checksum(desc: &TensorDesc, stream: &[u8]) -> String {
    let shape: Vec<String> = desc.shape.iter().map(u64::to_string).collect();
    let prefix = format!(
        "rbe1|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        shape.join(","),
        desc.dtype,
        desc.block,
        desc.transform,
        desc.layout,
        desc.values,
        desc.params,
        desc.entropy,
        stream.len()
    );
    hash_with_prefix(&prefix, stream)
}

/// Checksum of a verbatim tensor (format.md 6): XXH3-64 over its dtype, shape and data.
pub fn verbatim_checksum(dtype: &str, shape: &[usize], data: &[u8]) -> String {
    let shape: Vec<String> = shape.iter().map(usize::to_string).collect();
    hash_with_prefix(&format!("rbe1|{dtype}|{}|", shape.join(",")), data)
}

/// The stored JSON object: both parts, in the key order of format.md 6 (the bytes on disk).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDesc {
    shape: Vec<u64>,
    dtype: SourceDtype,
    block: usize,
    transform: Transform,
    layout: Layout,
    values: ValueCodec,
    params: ParamsPrecision,
    entropy: Entropy,
    profile: Option<String>,
    cache_blocks: usize,
    rmse: f64,
    rel_rmse: f64,
    std: f64,
    k_mean: f64,
    sparse: usize,
    dense: usize,
    stream_bytes: u64,
    xxh3: String,
}

/// The metadata value of a compressed tensor (format.md 6).
pub fn description_json(desc: &TensorDesc, stats: &EncodeStats) -> String {
    let stored = StoredDesc {
        shape: desc.shape.clone(),
        dtype: desc.dtype,
        block: desc.block,
        transform: desc.transform,
        layout: desc.layout,
        values: desc.values,
        params: desc.params,
        entropy: desc.entropy,
        profile: stats.profile.clone(),
        cache_blocks: stats.cache_blocks,
        rmse: stats.rmse,
        rel_rmse: stats.rel_rmse,
        std: stats.std,
        k_mean: stats.k_mean,
        sparse: stats.sparse,
        dense: stats.dense,
        stream_bytes: desc.stream_bytes,
        xxh3: desc.xxh3.clone(),
    };
    serde_json::to_string(&stored).expect("a description serialises")
}

/// Parses a metadata value written by [`description_json`]; unknown or missing keys are errors.
pub fn parse_description(json: &str) -> Result<(TensorDesc, EncodeStats), serde_json::Error> {
    let s: StoredDesc = serde_json::from_str(json)?;
    let desc = TensorDesc {
        shape: s.shape,
        dtype: s.dtype,
        block: s.block,
        transform: s.transform,
        layout: s.layout,
        values: s.values,
        params: s.params,
        entropy: s.entropy,
        stream_bytes: s.stream_bytes,
        xxh3: s.xxh3,
    };
    let stats = EncodeStats {
        profile: s.profile,
        cache_blocks: s.cache_blocks,
        rmse: s.rmse,
        rel_rmse: s.rel_rmse,
        std: s.std,
        k_mean: s.k_mean,
        sparse: s.sparse,
        dense: s.dense,
    };
    Ok((desc, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = r#"{"shape":[3,5],"dtype":"BF16","block":8,"transform":"dwt","layout":"p24","values":"q9s","params":"f16","entropy":"none","profile":"test","cache_blocks":4,"rmse":0.5,"rel_rmse":0.25,"std":2.0,"k_mean":2.0,"sparse":1,"dense":0,"stream_bytes":33,"xxh3":"8ff0a88bda2ccea3"}"#;

    #[test]
    fn the_stored_json_round_trips_byte_for_byte() {
        let (desc, stats) = parse_description(STORED).unwrap();
        assert_eq!(desc.dtype, SourceDtype::BF16);
        assert_eq!(stats.cache_blocks, 4);
        assert_eq!(description_json(&desc, &stats), STORED);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        assert!(parse_description(&STORED.replace("\"dense\":0,", "\"dense\":0,\"extra\":1,")).is_err());
        assert!(parse_description(&STORED.replace("\"dense\":0,", "")).is_err());
        assert!(parse_description(&STORED.replace("BF16", "F64")).is_err());
    }

    #[test]
    fn shapes_are_bounded() {
        assert_eq!(matrix_of(&[4, 2, 3]), Ok((4, 6)));
        assert_eq!(matrix_of(&[]), Err(ShapeError::Empty));
        assert_eq!(matrix_of(&[4, 0]), Err(ShapeError::ZeroSized));
        assert_eq!(matrix_of(&[u64::MAX, 2]), Err(ShapeError::Overflow));
        assert_eq!(matrix_of(&[1 << 21, 1 << 20]), Err(ShapeError::TooLarge(1 << 41)));
    }
}
