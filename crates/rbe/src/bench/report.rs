//! The benchmark report `rbe bench` prints (`--json` field names are part of the interface: the
//! acceptance checks read `results[].method`, `cache`, `median_us`, `max_rel_err`).

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
    /// Weight bytes one call reads.
    pub bytes_read: usize,
    /// What the figure means, where it needs saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
    /// Bytes the DCT-direct layer keeps resident.
    pub resident_bytes: usize,
    /// The tensor's recorded relative RMSE.
    pub rel_rmse: f64,
    /// Every timed method.
    pub results: Vec<Row>,
    /// The cache study (CPU runs), possibly empty.
    pub cache_study: Vec<CachePoint>,
}
