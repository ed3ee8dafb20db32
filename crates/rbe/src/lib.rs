//! `rbe`: the library API of RBE. Depend on this crate and pick what you need by feature:
//!
//! - always: [`Model`] (a single or sharded `.rbe` model: open, entries, tensors, shards,
//!   [`Model::decode_to`] dense safetensors, [`Model::report`]), the one bits-per-weight
//!   definition ([`report`]), the [`Layer`] API, and the [`format`](mod@format) itself;
//! - `cpu` (default): the CPU backend of [`Layer`] (module `cpu`: `RbeLinear` and its decode modes);
//! - `gpu`: the GPU backend of [`Layer`] on wgpu (module `gpu`; `RBE_WGPU_ADAPTER` picks an adapter);
//! - `encode`: the encoder (module `encode`): `EncodeSettings` (resolved and validated through
//!   `SettingsBuilder`), `compressible`, `encode_tensor`, `encode_model`;
//! - `candle`: module `candle` — `RbeCandleLinear`, a `candle_nn::Module` computed from the
//!   compressed form, and GGUF round trips for comparisons;
//! - `bench`: module `bench` — timing loop, cold copies, dense and candle baselines, synthetic
//!   matrices, the CPU and GPU benchmark runs of `rbe bench`;
//! - `calibrate`: module `calibrate` — a compact candle BERT, `CaptureLinear` (records what any
//!   candle Linear sees into the calibration file), sensitivity probing, and the whole
//!   `rbe calibrate` run on a BERT-family model.
//!
//! (Items behind a feature are named here without links, so these docs build for every feature
//! set; `cargo xtask doc` checks each one.)
//!
//! [`Layer`] is the one layer API over both backends:
//! `Layer::with_mode(&tensor, bias, Backend::Cpu | Backend::Gpu, Mode::DctDirect)`.
#![deny(missing_docs)]

pub mod backend;
pub mod decode;
pub mod error;
pub mod layer;
pub mod model;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "calibrate")]
pub mod calibrate;
#[cfg(feature = "candle")]
pub mod candle;

pub use backend::{Backend, LayerError, Mode};
pub use decode::{DecodeOptions, DecodeProgress, DecodeSummary, OutputDtype};
pub use error::Error;
pub use layer::Layer;
pub use model::{Model, Shard};

pub use rbe_format as format;
/// Bits per weight, one definition for every tool: [`report::TensorReport`] per tensor,
/// [`report::ModelReport`] per model (totals from the real bytes on disk).
pub use rbe_format::report;
pub use rbe_format::{
    EncodeStats, EncodedTensor, Entropy, Entry, FormatError, Layout, ModelReport, ParamsPrecision, RbeFile, ShardIndex,
    SourceDtype, TensorDesc, TensorReport, Transform, ValueCodec,
};

#[cfg(feature = "cpu")]
pub use rbe_cpu as cpu;
#[cfg(feature = "cpu")]
pub use rbe_cpu::{CpuError, DecodeMode, Isa, LayerStats, Precision, RbeLinear};

#[cfg(feature = "encode")]
pub use rbe_encode as encode;
#[cfg(feature = "encode")]
pub use rbe_encode::{
    Calibration, CalibrationError, EncodeError, EncodeReport, EncodeSettings, ModelOptions, ParamsChoice, Profile,
    ResidualChoice, Selection, SettingsBuilder, SettingsError, SourceModel, SourceTensor, Target, compressible,
    encode_model, encode_tensor, verbatim_reason,
};

#[cfg(feature = "gpu")]
pub use backend::gpu_context;
#[cfg(feature = "gpu")]
pub use rbe_gpu as gpu;
#[cfg(feature = "gpu")]
pub use rbe_gpu::{GpuContext, GpuError, GpuLinear, GpuMode};
