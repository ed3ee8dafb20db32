//! Typed errors: what went wrong, in which tensor and block.

use crate::desc::ShapeError;
use crate::entropy::EntropyError;

/// Why one block could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block ends before a field it declares.
    #[error("truncated block")]
    Truncated,
    /// Bytes remain after the block's last field.
    #[error("{0} trailing bytes after the block")]
    TrailingBytes(usize),
    /// The head varint is neither a sparse K nor the dense tag.
    #[error("unknown residual head {0}")]
    UnknownHead(u64),
    /// A varint is longer than its field allows or not minimally encoded.
    #[error("malformed varint")]
    BadVarint,
    /// A coefficient coordinate lies outside the block.
    #[error("coefficient ({row}, {col}) outside a {block}x{block} block")]
    CoordinateOutOfRange {
        /// Row index as stored.
        row: u32,
        /// Column index as stored.
        col: u32,
        /// Block size.
        block: usize,
    },
    /// Coefficients are not strictly ascending by (row, col).
    #[error("coefficients not sorted strictly by (row, col) at entry {0}")]
    NotSorted(usize),
    /// A parameter, scale, step or value is NaN or infinite.
    #[error("non-finite {0}")]
    NonFinite(&'static str),
    /// Reserved bits are set.
    #[error("reserved bits set in {0}")]
    ReservedBits(&'static str),
    /// Dense width outside 1..=16.
    #[error("dense width {0} outside 1..=16")]
    BadWidth(u8),
    /// Dense step is not positive.
    #[error("dense step must be > 0")]
    BadStep,
    /// Dense outlier list is not canonical.
    #[error("dense outlier list invalid: {0}")]
    BadOutlier(&'static str),
    /// A value does not fit its codec or layout when writing.
    #[error("value does not fit: {0}")]
    ValueRange(&'static str),
    /// The entropy-coded form is corrupt.
    #[error("entropy-coded block: {0}")]
    Entropy(#[from] EntropyError),
}

/// Every error `rbe-format` returns, by cause. Each message is one complete line (the cause's
/// own message included); [`std::error::Error::source`] still hands out the underlying error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a safetensors file (bad header length, JSON or offsets).
    #[error("container: not a valid safetensors file: {source}")]
    Safetensors {
        /// What the safetensors parser found.
        source: safetensors::SafeTensorError,
    },
    /// An output path that must not be written (it is an input, a device, a directory).
    #[error("{path}: {reason}")]
    Output {
        /// The path.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The container (safetensors header, metadata) is invalid.
    #[error("container: {0}")]
    Container(String),
    /// A shard index (`*.rbe.index.json`) is invalid.
    #[error("{0}")]
    Index(String),
    /// A compressed tensor's description is not valid JSON of the stored form (format.md 6).
    #[error("tensor `{tensor}`: bad description: {source}")]
    Description {
        /// Tensor name.
        tensor: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A tensor's shape cannot be compressed or read.
    #[error("tensor `{tensor}`: {source}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// What is wrong with it.
        source: ShapeError,
    },
    /// A size exceeds what the format or this reader allows.
    #[error("tensor `{tensor}`: {what}")]
    Limit {
        /// Tensor name.
        tensor: String,
        /// Which size, and its limit.
        what: String,
    },
    /// A stored checksum does not match the bytes.
    #[error("tensor `{tensor}`: checksum mismatch over {covers} (stored {stored}, computed {computed})")]
    Checksum {
        /// Tensor name.
        tensor: String,
        /// What the checksum covers.
        covers: &'static str,
        /// The checksum in the file.
        stored: String,
        /// The checksum of the bytes read.
        computed: String,
    },
    /// A tensor's stream or description is invalid.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The entropy-coding prelude of a tensor's stream is corrupt.
    #[error("tensor `{tensor}`: entropy prelude: {source}")]
    Prelude {
        /// Tensor name.
        tensor: String,
        /// What the entropy decoder found.
        source: BlockError,
    },
    /// A block of a tensor is corrupt.
    #[error("tensor `{tensor}`, block {block}: {source}")]
    Block {
        /// Tensor name.
        tensor: String,
        /// Block number (row-major).
        block: usize,
        /// What is wrong with it.
        source: BlockError,
    },
    /// Settings that the format does not allow (caller error).
    #[error("invalid settings: {0}")]
    Settings(String),
}

impl FormatError {
    pub(crate) fn tensor(tensor: &str, reason: impl Into<String>) -> Self {
        FormatError::Tensor { tensor: tensor.to_owned(), reason: reason.into() }
    }
    pub(crate) fn block(tensor: &str, block: usize, source: BlockError) -> Self {
        FormatError::Block { tensor: tensor.to_owned(), block, source }
    }
    pub(crate) fn shape(tensor: &str, source: ShapeError) -> Self {
        FormatError::Shape { tensor: tensor.to_owned(), source }
    }
    pub(crate) fn limit(tensor: &str, what: impl Into<String>) -> Self {
        FormatError::Limit { tensor: tensor.to_owned(), what: what.into() }
    }
}
