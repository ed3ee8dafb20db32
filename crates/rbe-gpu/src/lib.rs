//! `rbe-gpu`: the RBE GPU backend on wgpu. A [`GpuLinear`] keeps a compressed weight matrix on the
//! device as its runtime block stream (docs/format.md 3-4, uploaded as is: a u32-padded copy of
//! the section-3 bytes plus the block index — no coefficient is expanded on the CPU) and
//! multiplies with WGSL kernels:
//!
//! - `decode.wgsl`: unpack of every layout (`wide`, `b4`, `p32`, `p24`) and value codec, dense
//!   residuals of any width with outliers, the inverse transform `M^T R M` and the RBE base, into a
//!   dense device matrix ([`GpuMode::Decode`]);
//! - `direct.wgsl`: the transform-domain product ([`GpuMode::DctDirect`], DCT and Haar DWT): input
//!   transform per column block, accumulation organised by frequency row (no float atomics), one
//!   inverse transform per output block;
//! - `gemv.wgsl`: a plain dense f32 GEMV, the in-run baseline ([`GpuDense`]).
//!
//! Pipelines are created once per [`GpuContext`]; per-call buffers are reused; tensors beyond the
//! adapter's binding limits are split by block rows. Adapters: any wgpu backend compiled for the
//! platform (Vulkan; Metal on Apple; DX12 on Windows; GL with the `gl` feature), chosen by
//! `RBE_WGPU_ADAPTER` (name substring) or by type.
//!
//! Architecture invariant: reads blocks only through `rbe-format`'s `EncodedTensor` (runtime
//! bytes); knows nothing of encoders or the CPU backend.
#![deny(missing_docs)]

mod batch;
pub mod context;
pub mod dense;
pub mod error;
mod gemv;
pub mod linear;

pub use context::{ADAPTER_ENV, GpuContext};
pub use dense::GpuDense;
pub use error::GpuError;
pub use linear::{GpuLinear, GpuMode};

/// Environment variable: when `1`, a missing adapter is a failure in tests and conformance.
pub const REQUIRE_ENV: &str = "RBE_REQUIRE_GPU";

/// Whether `RBE_REQUIRE_GPU=1` is set.
pub fn gpu_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}
