//! The DRAM read-bandwidth probe `rbe bench` measures once per run, so each method's GB/s can be
//! read as a fraction of what this machine's memory delivers to the same number of threads.
//!
//! The probe sums a buffer several times larger than the last-level cache (8x the largest cache
//! `/sys/devices/system/cpu/cpu0/cache/index*/size` names, 64 MiB to 1 GiB; 256 MiB where that is
//! unreadable), split into one contiguous part per worker of the current rayon pool, a few
//! times, and keeps the best pass: GB/s = buffer bytes / seconds / 1e9.

use rayon::prelude::*;
use std::time::Instant;

/// Buffer size when the cache sizes cannot be read.
pub const DEFAULT_PROBE_BYTES: usize = 256 << 20;

/// Timed passes over the buffer (the best is kept).
pub const PROBE_PASSES: usize = 5;

/// Smallest and largest buffer the probe allocates.
const PROBE_RANGE: (usize, usize) = (64 << 20, 1 << 30);

/// How many times larger than the last-level cache the buffer is.
const CACHE_MULTIPLE: usize = 8;

/// The result of [`probe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DramRead {
    /// Best read bandwidth over the passes, GB/s (1e9 bytes per second).
    pub gbs: f64,
    /// Bytes of the buffer each pass reads.
    pub bytes: usize,
    /// Threads that read it.
    pub threads: usize,
}

/// Parses a sysfs cache size (`"32768K"`, `"1M"`, `"512"`) into bytes.
pub fn parse_cache_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// The largest cache of CPU 0 that sysfs names, in bytes (`None` where sysfs has none).
pub fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("size")).ok())
        .filter_map(|s| parse_cache_size(&s))
        .max()
}

/// The probe's buffer size for a last-level cache of `llc` bytes (see the module docs).
pub fn probe_bytes(llc: Option<usize>) -> usize {
    llc.map_or(DEFAULT_PROBE_BYTES, |c| c.saturating_mul(CACHE_MULTIPLE).clamp(PROBE_RANGE.0, PROBE_RANGE.1))
}

/// Sum of `words`, eight independent lanes so the loop vectorises and never waits on one add.
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(w);
        }
    }
    let tail = chunks.remainder().iter().fold(0u64, |s, &w| s.wrapping_add(w));
    acc.iter().fold(tail, |s, &a| s.wrapping_add(a))
}

/// Measures the read bandwidth of `bytes` of memory on the current rayon pool: [`PROBE_PASSES`]
/// timed passes after one warm-up pass (which also faults the pages in), the best kept.
pub fn probe_with(bytes: usize) -> DramRead {
    let threads = rayon::current_num_threads().max(1);
    let n = (bytes / 8).max(8 * threads);
    // Written in parallel, so each worker's part is faulted in near the core that reads it.
    let mut buf = vec![0u64; n];
    let part = n.div_ceil(threads);
    buf.par_chunks_mut(part).enumerate().for_each(|(k, c)| {
        for (i, w) in c.iter_mut().enumerate() {
            *w = (k * part + i) as u64;
        }
    });
    let pass = || -> f64 {
        let t = Instant::now();
        let s: u64 = buf.par_chunks(part).map(sum_words).reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
        t.elapsed().as_secs_f64()
    };
    pass();
    let best = (0..PROBE_PASSES).map(|_| pass()).fold(f64::INFINITY, f64::min);
    DramRead { gbs: (8 * n) as f64 / best.max(1e-9) / 1e9, bytes: 8 * n, threads }
}

/// [`probe_with`] a buffer sized from this machine's last-level cache ([`probe_bytes`]).
pub fn probe() -> DramRead {
    probe_with(probe_bytes(last_level_cache_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("12X"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("99999999999999999999999G"), None);
    }

    #[test]
    fn the_buffer_is_several_caches_within_bounds() {
        assert_eq!(probe_bytes(None), DEFAULT_PROBE_BYTES);
        assert_eq!(probe_bytes(Some(32 << 20)), 256 << 20);
        assert_eq!(probe_bytes(Some(1 << 20)), 64 << 20);
        assert_eq!(probe_bytes(Some(1 << 40)), 1 << 30);
    }

    #[test]
    fn the_sum_covers_every_word() {
        let w: Vec<u64> = (1..=21).collect();
        assert_eq!(sum_words(&w), 231);
        assert_eq!(sum_words(&[]), 0);
    }

    #[test]
    fn a_small_probe_reports_its_buffer_and_a_positive_rate() {
        let r = probe_with(1 << 20);
        assert_eq!(r.bytes, 1 << 20);
        assert!(r.gbs.is_finite() && r.gbs > 0.0, "{r:?}");
    }
}
