//! `rbe`: the facade over the RBE crates. Depend on this crate and pick a backend by feature:
//!
//! - `cpu` (default): [`cpu`] — `RbeLinear`, products straight from the compressed blocks;
//! - `encode`: [`encode`] — the encoder (error-targeted block compression);
//! - `gpu`: placeholder, re-exports nothing yet.
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
