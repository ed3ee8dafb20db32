//! `rbe-cpu`: CPU inference straight from RBE-compressed weights.
//!
//! [`RbeLinear`] holds one weight matrix in a compressed resident form and multiplies with it in
//! one of several [`DecodeMode`]s: exact DCT-domain products (`DctDirect`, `SparseMask`,
//! `Progressive(Full)`), a decode-and-cache path (`Full`, LRU of dense blocks), and two lossy fast
//! paths (`DctDirectQ8`, `Progressive(Coarse)`) with measured / bounded error. Kernels pick their
//! instruction set at run time ([`simd::Isa::detected`]); the scalar kernels are the oracle.
//!
//! Architecture invariant: this crate reads blocks only through `rbe-format`'s borrowed views
//! ([`rbe_format::BlockView`]) and scalar oracles ([`rbe_format::codec`]), keeps no copy of format
//! code and never writes files; it knows nothing of encoders or GPUs.
#![deny(missing_docs)]

pub mod base;
pub mod dense;
mod direct;
pub mod error;
mod full;
pub mod linear;
pub mod pack;
mod progressive;
mod q8;
mod resident;
pub mod simd;
mod sparse_mask;
pub mod stats;
pub mod tables;
mod transposed;

pub use error::CpuError;
pub use full::{DEFAULT_CACHE_BYTES, default_cache_blocks};
pub use linear::{DecodeMode, Precision, RbeLinear};
pub use simd::Isa;
pub use stats::{LayerStats, StatsSnapshot};

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RbeLinear>();
};
