//! `LayerStats`: per-layer counters (cache, unpacking, FLOPs, time split), kept with relaxed
//! atomics so recording costs a few uncontended adds per block row.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one layer. Read them with [`LayerStats::snapshot`].
#[derive(Debug, Default)]
pub struct LayerStats {
    calls: AtomicU64,
    vectors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    blocks_decoded: AtomicU64,
    coefficients_unpacked: AtomicU64,
    decode_flops: AtomicU64,
    multiply_flops: AtomicU64,
    transform_ns: AtomicU64,
    decode_ns: AtomicU64,
    multiply_ns: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Forward/backward calls.
    pub calls: u64,
    /// Input vectors processed (batch rows summed over calls).
    pub vectors: u64,
    /// Decode-cache hits (`Full` mode).
    pub cache_hits: u64,
    /// Decode-cache misses (`Full` mode).
    pub cache_misses: u64,
    /// Blocks decoded to dense f32 (`Full` mode misses).
    pub blocks_decoded: u64,
    /// Coefficients unpacked from the compressed form (all modes).
    pub coefficients_unpacked: u64,
    /// FLOPs spent decoding: block decodes and the input/output transforms.
    pub decode_flops: u64,
    /// FLOPs spent multiplying (2 per multiply-add of a coefficient or weight).
    pub multiply_flops: u64,
    /// Wall time (summed over threads) in input/output transforms and base projections, ns.
    pub transform_ns: u64,
    /// Wall time (summed over threads) decoding blocks to dense, ns.
    pub decode_ns: u64,
    /// Wall time (summed over threads) in the block products (unpack fused in), ns.
    pub multiply_ns: u64,
}

impl StatsSnapshot {
    /// Cache hit rate in [0, 1] (0 when the cache was never asked).
    pub fn hit_rate(&self) -> f64 {
        let n = self.cache_hits + self.cache_misses;
        if n == 0 { 0.0 } else { self.cache_hits as f64 / n as f64 }
    }
}

macro_rules! adders {
    ($($name:ident => $field:ident),* $(,)?) => {
        $(pub(crate) fn $name(&self, n: u64) { self.$field.fetch_add(n, Relaxed); })*
    };
}

impl LayerStats {
    adders!(
        add_calls => calls,
        add_vectors => vectors,
        add_hits => cache_hits,
        add_misses => cache_misses,
        add_decoded => blocks_decoded,
        add_unpacked => coefficients_unpacked,
        add_decode_flops => decode_flops,
        add_multiply_flops => multiply_flops,
        add_transform_ns => transform_ns,
        add_decode_ns => decode_ns,
        add_multiply_ns => multiply_ns,
    );

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Relaxed),
            vectors: self.vectors.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            blocks_decoded: self.blocks_decoded.load(Relaxed),
            coefficients_unpacked: self.coefficients_unpacked.load(Relaxed),
            decode_flops: self.decode_flops.load(Relaxed),
            multiply_flops: self.multiply_flops.load(Relaxed),
            transform_ns: self.transform_ns.load(Relaxed),
            decode_ns: self.decode_ns.load(Relaxed),
            multiply_ns: self.multiply_ns.load(Relaxed),
        }
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for a in [
            &self.calls,
            &self.vectors,
            &self.cache_hits,
            &self.cache_misses,
            &self.blocks_decoded,
            &self.coefficients_unpacked,
            &self.decode_flops,
            &self.multiply_flops,
            &self.transform_ns,
            &self.decode_ns,
            &self.multiply_ns,
        ] {
            a.store(0, Relaxed);
        }
    }
}
