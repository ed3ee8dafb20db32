//! aarch64: NEON kernels are not written yet; every call takes the [`super::generic`] path.
//! (`cargo check --target aarch64-unknown-linux-gnu` could not be run in the build environment:
//! the target's standard library is not installed offline.)
