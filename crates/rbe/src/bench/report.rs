//! The benchmark report `rbe bench` prints (`--json` field names are part of the interface: the
//! acceptance checks read `results[].method`, `cache`, `median_us`, `max_rel_err`).
//!
//! Streaming figures: each row's `bytes_per_call` is the weight data one call reads (an RBE mode's
//! resident weights and block descriptors, `4 * rows * cols` for dense f32, the GGUF bytes for
//! candle), `gbs = bytes_per_call / median time`, and `dram_fraction = gbs / dram_read_gbs`, the
//! read bandwidth [`super::dram::probe`] measured in the same run with the same threads. A cold
//! row near 1 streams at the memory's limit; a hot row above 1 is served from cache.

use serde::Serialize;

/// One timed method.
#[derive(Debug, Serialize, Clone)]
pub struct Row {
    /// `dense_f32`, `rbe_<mode>`, `candle_<type>`, `gpu_<method>`.
    pub method: String,
    /// `hot` (same weights every call) or `cold` (cycling through >= 1 GiB of copies).
    pub cache: &'static str,
    /// Median microseconds per call.
    pub median_us: f64,
    /// `max |y - y_ref| / max |y_ref|`.
    pub max_rel_err: f64,
    /// Weight bytes one call reads (descriptors not included).
    pub bytes_read: usize,
    /// Bytes one call streams: weights and, for RBE modes, their block descriptors (`None` for a
    /// skipped method).
    pub bytes_per_call: Option<usize>,
    /// `bytes_per_call / median time` in GB/s (1e9 bytes per second); `None` without a time.
    pub gbs: Option<f64>,
    /// `gbs / dram_read_gbs`; `None` without both (GPU rows: the probe measures host memory).
    pub dram_fraction: Option<f64>,
    /// What the figure means, where it needs saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Row {
    /// A row whose `gbs` and `dram_fraction` [`BenchReport::fill_rates`] fills in.
    pub fn new(
        method: &str,
        cache: &'static str,
        median_us: f64,
        max_rel_err: f64,
        bytes_read: usize,
        bytes_per_call: Option<usize>,
        note: Option<String>,
    ) -> Self {
        Row {
            method: method.to_owned(),
            cache,
            median_us,
            max_rel_err,
            bytes_read,
            bytes_per_call,
            gbs: None,
            dram_fraction: None,
            note,
        }
    }
}

/// GB/s of `bytes` in `median_us` microseconds; `None` unless both are positive and finite.
pub fn gbs(bytes: usize, median_us: f64) -> Option<f64> {
    let v = bytes as f64 / median_us / 1e3;
    (bytes > 0 && median_us > 0.0 && v.is_finite()).then_some(v)
}

/// One point of the decode-cache study.
#[derive(Debug, Serialize, Clone)]
pub struct CachePoint {
    /// Cache capacity in blocks.
    pub cache_blocks: usize,
    /// Hit rate over the timed calls.
    pub hit_rate: f64,
    /// Median microseconds per forward.
    pub median_us: f64,
}

/// A whole benchmark run.
#[derive(Debug, Serialize, Clone)]
pub struct BenchReport {
    /// `[rows, cols]`.
    pub shape: [usize; 2],
    /// Worker threads.
    pub threads: usize,
    /// Input vectors per call.
    pub batch: usize,
    /// The CPU kernels' instruction set (`gpu` for a GPU run).
    pub rbe_isa: &'static str,
    /// Whether this build enables AVX2 at compile time (candle's kernels depend on it).
    pub candle_avx2_build: bool,
    /// Runtime stream bytes of the tensor (index included).
    pub stream_bytes: usize,
    /// Bytes the DCT-direct layer keeps resident (weights and descriptors; a GPU run: the
    /// uploaded stream).
    pub resident_bytes: usize,
    /// `8 * resident_bytes / weights`.
    pub resident_bits_per_weight: Option<f64>,
    /// The tensor's bits per weight on disk (stream and header entries, [`crate::report`]).
    pub file_bits_per_weight: Option<f64>,
    /// DRAM read bandwidth measured in this run with the same threads, GB/s (`None` for a GPU
    /// run).
    pub dram_read_gbs: Option<f64>,
    /// Bytes the DRAM probe's buffer holds.
    pub dram_probe_bytes: Option<usize>,
    /// The tensor's recorded relative RMSE.
    pub rel_rmse: f64,
    /// Every timed method.
    pub results: Vec<Row>,
    /// The cache study (CPU runs), possibly empty.
    pub cache_study: Vec<CachePoint>,
}

impl BenchReport {
    /// Fills every row's `gbs` from its `bytes_per_call` and median, and `dram_fraction` (for
    /// rows of a run with a DRAM figure).
    pub fn fill_rates(&mut self) {
        let dram = self.dram_read_gbs.filter(|d| d.is_finite() && *d > 0.0);
        for row in &mut self.results {
            row.gbs = row.bytes_per_call.and_then(|b| gbs(b, row.median_us));
            row.dram_fraction = row.gbs.zip(dram).map(|(g, d)| g / d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_bytes_and_time_and_are_none_without_them() {
        assert_eq!(gbs(2_000_000, 1000.0), Some(2.0));
        assert_eq!(gbs(0, 1000.0), None);
        assert_eq!(gbs(10, 0.0), None);
        assert_eq!(gbs(10, f64::NAN), None);
        let mut r = BenchReport {
            shape: [1, 1],
            threads: 1,
            batch: 1,
            rbe_isa: "scalar",
            candle_avx2_build: false,
            stream_bytes: 1,
            resident_bytes: 1,
            resident_bits_per_weight: Some(8.0),
            file_bits_per_weight: None,
            dram_read_gbs: Some(4.0),
            dram_probe_bytes: Some(1),
            rel_rmse: 0.1,
            results: vec![
                Row::new("a", "cold", 1000.0, 0.0, 1, Some(2_000_000), None),
                Row::new("b", "hot", f64::NAN, f64::NAN, 0, None, None),
            ],
            cache_study: Vec::new(),
        };
        r.fill_rates();
        assert_eq!((r.results[0].gbs, r.results[0].dram_fraction), (Some(2.0), Some(0.5)));
        assert_eq!((r.results[1].gbs, r.results[1].dram_fraction), (None, None));
        r.dram_read_gbs = None;
        r.fill_rates();
        assert_eq!((r.results[0].gbs, r.results[0].dram_fraction), (Some(2.0), None));
    }
}
