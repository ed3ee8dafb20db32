//! Fuzz target `coded_block`: an entropy prelude + one rANS-coded block: `EntropyModel::read` and `decode_block` never panic, and what decodes round-trips.
//! The logic lives in `crates/rbe-format/tests/fuzz_harness/mod.rs`, shared with the regression test.
#![no_main]

#[path = "../../crates/rbe-format/tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::coded_block(data));
