//! Typed errors of the CPU backend: bad shapes from the caller, corrupt blocks from the file.

use rbe_format::FormatError;

/// Every error `rbe-cpu` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpuError {
    /// The compressed tensor could not be read (names the tensor and block).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A block holds something this backend cannot multiply.
    #[error("tensor `{tensor}`, block {block}: {reason}")]
    Block {
        /// Tensor name.
        tensor: String,
        /// Block number (row-major).
        block: usize,
        /// What is wrong.
        reason: String,
    },
    /// Caller passed buffers of the wrong size (caller error).
    #[error("tensor `{tensor}`: {what}: expected {expected} values, got {got}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// Which buffer.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// An instruction set was requested that this CPU or build lacks (caller error).
    #[error("instruction set {0} is not available on this CPU")]
    IsaUnavailable(&'static str),
    /// An invalid option (caller error).
    #[error("invalid option: {0}")]
    Option(String),
}
