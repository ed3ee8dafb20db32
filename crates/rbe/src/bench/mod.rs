//! Benchmark support (feature `bench`): the timing loop (median of enough runs to fill a time
//! budget), cold copies (enough weight copies that every call streams from DRAM), the dense f32
//! and candle GGUF baselines, the seeded synthetic matrices, and the full CPU / GPU benchmark runs
//! `rbe bench` prints ([`cpu::run`]; `gpu::run` with the `gpu` feature), with the bytes each
//! method streams per call, its GB/s and the fraction of a DRAM read bandwidth measured in the same
//! run ([`dram`]).
//!
//! Errors are `max_rel_err = max |y - y_ref| / max |y_ref|` against an f64 product.

pub mod baseline;
pub mod cpu;
pub mod dram;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod report;
pub mod synthetic;

pub use rbe_cpu::dense::{gemm_f64, max_rel_err};
pub use report::{BenchReport, CachePoint, Row};
use std::time::Instant;

/// Bytes of weight copies a cold measurement cycles through: more than any last-level cache.
pub const COLD_BYTES: usize = 1 << 30;

/// Most calls [`median_us`] makes (warm-up included): more copies than this are never touched.
pub const MAX_CALLS: usize = 2004;

/// How many copies of `bytes` of weights fill [`COLD_BYTES`] (at least 2, at most one per call
/// [`median_us`] can make, so a tiny matrix does not build millions of copies).
pub fn cold_copies(bytes: usize) -> usize {
    COLD_BYTES.div_ceil(bytes.max(1)).clamp(2, MAX_CALLS)
}

/// Median microseconds of `f(i)` over enough runs to fill about `seconds` (7 to 2000 runs, after
/// 3 warm-up calls); `i` counts the calls, so `f` can cycle through cold copies.
pub fn median_us<F: FnMut(usize)>(seconds: f64, mut f: F) -> f64 {
    for i in 0..3 {
        f(i);
    }
    let t = Instant::now();
    f(3);
    let one = t.elapsed().as_secs_f64().max(1e-7);
    let runs = ((seconds / one) as usize).clamp(7, 2000);
    let mut v: Vec<f64> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            f(i + 4);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median microseconds of `f` over `reps` runs after one warm-up call.
pub fn median_reps_us(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Seconds per measured method for a product over `elements` weights x batch: 0.6 s from 2^18
/// elements up, proportionally less below (at least 0.03 s), since a small product's median settles
/// in far fewer calls and a 7x13 matrix should not take a minute.
pub fn default_seconds(elements: usize) -> f64 {
    0.6 * (elements as f64 / f64::from(1u32 << 18)).clamp(0.05, 1.0)
}
