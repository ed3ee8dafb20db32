//! RBE encoder: for every block, a least-squares fit of the 8 RBE parameters, the residual's
//! DCT/DWT coefficients, and the cheaper of two residual kinds (sparse top-K or dense fixed-width)
//! at one quantisation step per tensor, found so that the tensor meets its error target on the
//! real decode. Also reads safetensors models (single or sharded) and writes `.rbe` containers.
//!
//! Architecture invariant: the encoder only produces blocks and streams through `rbe-format`'s
//! public model; it never writes bytes the format crate has not validated.
#![deny(missing_docs)]

mod allocate;
mod blocks;
pub mod calibration;
pub mod error;
pub mod fit;
mod gptq;
mod kernels;
pub mod model;
pub mod profile;
pub mod rate;
pub mod select;
pub mod settings;
pub mod source;
pub mod spread;
pub mod tensor;

pub use calibration::{Calibration, CalibrationError, TensorCalibration};
pub use error::EncodeError;
pub use model::{EncodeReport, ModelOptions, encode_model};
pub use profile::Profile;
pub use rbe_format::{ModelReport, TensorReport, Totals};
pub use select::{Selection, compressible, verbatim_reason};
pub use settings::{EncodeSettings, ParamsChoice, ResidualChoice, SettingsBuilder, SettingsError, Target};
pub use source::{SourceModel, SourceTensor};
pub use tensor::{EncodedOutput, TensorOptions, encode_tensor, encode_tensor_with};
