//! `rbe-testkit`: what the workspace's tests, benches and fixture generator share, so none of them
//! rolls its own. Unpublished; depend on it as a dev-dependency (`rbe-testkit.workspace = true`).
//!
//! - [`rng`]: [`Rng`], the one seeded PRNG (the stream the committed conformance fixtures are
//!   drawn from);
//! - [`data`]: seeded noise-like and smooth matrices, byte views;
//! - [`metrics`]: relative RMSE, max relative error, cosine similarity, closeness assertions;
//! - [`timing`]: a median timing loop and a one-shot timer;
//! - [`dense`]: f64 reference products `W x` and `W^T g`;
//! - [`gpu`]: GPU-or-skip, honouring `RBE_REQUIRE_GPU=1`;
//! - `blocks` (feature `format`): random valid blocks and tensors, descriptions, the f64 reference
//!   decode;
//! - `gguf` (feature `gguf`): GGUF-style block quantisation through candle, the baseline RBE is
//!   compared with.
//!
//! Architecture invariant: without features it depends on no `rbe-*` crate (plain slices and
//! `Vec`s), so every crate's unit tests can use it without a dependency cycle.
#![deny(missing_docs)]

#[cfg(feature = "format")]
pub mod blocks;
pub mod data;
pub mod dense;
#[cfg(feature = "gguf")]
pub mod gguf;
pub mod gpu;
pub mod metrics;
pub mod rng;
pub mod timing;

pub use rng::Rng;
