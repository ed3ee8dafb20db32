//! GPU-or-skip: tests that need an adapter skip with a note when there is none, unless
//! `RBE_REQUIRE_GPU=1` (set by `.ci/run`) makes a missing adapter a failure. Backend-neutral:
//! the caller opens its context and says which error means "no adapter".

use std::fmt::Display;

/// The variable that makes a missing adapter a failure (`rbe_gpu::REQUIRE_ENV`).
pub const REQUIRE_ENV: &str = "RBE_REQUIRE_GPU";

/// Whether `RBE_REQUIRE_GPU=1` is set.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The opened context, or `None` (with a note on stderr) when `opened` failed because no adapter
/// exists (`no_adapter`) and none is required. Panics on any other error, or when one is required.
#[track_caller]
pub fn or_skip<T, E: Display>(opened: Result<T, E>, no_adapter: impl FnOnce(&E) -> bool) -> Option<T> {
    match opened {
        Ok(ctx) => Some(ctx),
        Err(e) if no_adapter(&e) && !required() => {
            eprintln!("note: GPU test skipped, no adapter ({e}); set {REQUIRE_ENV}=1 to fail instead");
            None
        }
        Err(e) => panic!("cannot open the GPU context: {e}"),
    }
}
