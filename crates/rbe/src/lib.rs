//! `rbe`: the facade over the RBE crates. Depend on this crate and pick a backend by feature:
//!
//! - `cpu` (default): [`cpu`] — `RbeLinear`, products straight from the compressed blocks;
//! - `encode`: [`encode`] — the encoder (error-targeted block compression);
//! - `candle`: [`candle`] — `RbeCandleLinear`, a `candle_nn::Module` computed from the compressed form;
//! - `gpu`: [`gpu`] — `GpuLinear` on wgpu (any adapter; `RBE_WGPU_ADAPTER` picks one by name).
//!
//! [`backend`] gives one layer API over both: `Layer::new(&tensor, bias, Backend::Cpu | Backend::Gpu)`.
//!
//! The format itself ([`format`]) is always available.
#![deny(missing_docs)]

pub use rbe_format as format;
pub use rbe_format::{EncodedTensor, FormatError, RbeFile, TensorDesc};

#[cfg(feature = "cpu")]
pub use rbe_cpu as cpu;
#[cfg(feature = "cpu")]
pub use rbe_cpu::{CpuError, DecodeMode, LayerStats, Precision, RbeLinear};

#[cfg(feature = "encode")]
pub use rbe_encode as encode;

#[cfg(feature = "candle")]
pub mod candle;

// ---- gpu feature and the backend-neutral layer API (issue 5) ----
pub mod backend;
pub use backend::{Backend, Layer, LayerError};
#[cfg(feature = "gpu")]
pub use rbe_gpu as gpu;
#[cfg(feature = "gpu")]
pub use rbe_gpu::{GpuContext, GpuError, GpuLinear, GpuMode};
