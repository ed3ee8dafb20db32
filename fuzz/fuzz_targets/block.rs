//! Fuzz target `block`: one runtime block under a configuration picked by the first byte: parse never panics, and what parses round-trips.
//! The logic lives in `crates/rbe-format/tests/fuzz_harness/mod.rs`, shared with the regression test.
#![no_main]

#[path = "../../crates/rbe-format/tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::block(data));
