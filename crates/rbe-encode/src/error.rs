//! Encoder errors: bad input weights, impossible targets, and the format/I-O layer below.

use rbe_format::FormatError;

/// Every error `rbe-encode` returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A weight is NaN or infinite.
    #[error("tensor `{tensor}`: non-finite weight {value} at index {index} (row {row}, col {col})")]
    NonFinite {
        /// Tensor name.
        tensor: String,
        /// Flat index of the first bad weight.
        index: usize,
        /// Its row in the 2-D view.
        row: usize,
        /// Its column in the 2-D view.
        col: usize,
        /// The value.
        value: f32,
    },
    /// The error target cannot be met with the chosen settings.
    #[error("tensor `{tensor}`: impossible target: {reason}")]
    ImpossibleTarget {
        /// Tensor name.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// A tensor's calibration record cannot be used with it.
    #[error("tensor `{tensor}`: calibration: {reason}")]
    Calibration {
        /// Tensor name.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// Settings that do not make sense together.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// Settings rejected by [`crate::EncodeSettings::validate`] before any tensor was encoded.
    #[error(transparent)]
    InvalidSettings(#[from] crate::settings::SettingsError),
    /// The input file is not a usable safetensors model.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor has a dtype the encoder cannot read.
    #[error("tensor `{tensor}`: unsupported dtype {dtype} (compressible: F32, F16, BF16)")]
    Dtype {
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// The format layer failed (writing the container, building streams).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The encoder's own decode check found the result over target (a bug, reported, never written).
    #[error("tensor `{tensor}`: decoded relative RMSE {achieved:.6} exceeds the target {target:.6}")]
    TargetMissed {
        /// Tensor name.
        tensor: String,
        /// Achieved relative RMSE.
        achieved: f64,
        /// Target.
        target: f64,
    },
}
