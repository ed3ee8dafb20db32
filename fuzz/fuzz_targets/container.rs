//! Fuzz target `container`: arbitrary bytes as an `.rbe` file: `RbeFile::from_bytes` + `verify()` never panic.
//! The logic lives in `crates/rbe-format/tests/fuzz_harness/mod.rs`, shared with the regression test.
#![no_main]

#[path = "../../crates/rbe-format/tests/fuzz_harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::container(data));
