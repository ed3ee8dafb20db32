//! Typed errors of the GPU backend: no adapter, device or shader failures, limits, caller misuse,
//! and corrupt tensors (naming the tensor and, where one is at fault, the block).

use rbe_format::FormatError;

/// Every error `rbe-gpu` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No adapter matched (none at all, or none whose name contains `RBE_WGPU_ADAPTER`).
    #[error("no GPU adapter{}; available adapters: {}", wanted.as_ref().map(|w| format!(" matching `{w}` (RBE_WGPU_ADAPTER)")).unwrap_or_default(), if available.is_empty() { "none".to_owned() } else { available.join("; ") })]
    NoAdapter {
        /// The requested name substring, if any.
        wanted: Option<String>,
        /// Every adapter found, as `name (backend, type)`.
        available: Vec<String>,
    },
    /// The adapter refused to open a device.
    #[error("cannot open a device on `{adapter}`: {reason}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// What wgpu reported.
        reason: String,
    },
    /// A shader or pipeline failed validation (a bug in this crate or an adapter limitation).
    #[error("pipeline `{pipeline}`: {reason}")]
    Pipeline {
        /// Which pipeline.
        pipeline: &'static str,
        /// What wgpu reported.
        reason: String,
    },
    /// A submitted command failed, or reading back a result failed.
    #[error("tensor `{tensor}`: GPU execution failed: {reason}")]
    Execution {
        /// Tensor name.
        tensor: String,
        /// What wgpu reported.
        reason: String,
    },
    /// The tensor cannot be placed within the adapter's limits.
    #[error("tensor `{tensor}`: {reason}")]
    Limits {
        /// Tensor name.
        tensor: String,
        /// Which limit and by how much.
        reason: String,
    },
    /// The compressed tensor could not be read (names the tensor and block).
    #[error(transparent)]
    Format(#[from] FormatError),
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
}

impl GpuError {
    /// `Ok` when a caller's buffer `what` of `tensor` holds `expected` values, else [`GpuError::Shape`].
    pub(crate) fn check_len(tensor: &str, what: &'static str, expected: usize, got: usize) -> Result<(), GpuError> {
        if expected == got { Ok(()) } else { Err(GpuError::Shape { tensor: tensor.to_owned(), what, expected, got }) }
    }
}
