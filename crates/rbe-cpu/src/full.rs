//! `Full`: decode blocks on demand to dense f32 with the reference decoder
//! ([`rbe_format::BlockDecoder`], computing in f64 and rounding once), keep them in an LRU cache,
//! and multiply dense blocks. Exact: a cached block gives the product of the matrix it decodes to.
//!
//! The layer keeps the tensor's runtime bytes (shared, not copied) and reads blocks in place
//! through [`rbe_format::BlockView`]s; it holds no packed form.

use crate::error::CpuError;
use crate::linear::{Env, par_rows};
use crate::simd;
use crate::transposed::ExactBlocks;
use lru::LruCache;
use rbe_format::codec::N_PARAMS;
use rbe_format::{BlockConfig, BlockDecoder, EncodedTensor, ParamsPrecision};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

thread_local! {
    /// One reference decoder per block configuration and thread (planning one is not cheap).
    static DECODERS: RefCell<HashMap<BlockConfig, BlockDecoder>> = RefCell::new(HashMap::new());
}

/// Decoded bytes the `Full` cache may hold by default, per layer.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// Default `Full` cache size: every block of the tensor when they fit in [`DEFAULT_CACHE_BYTES`]
/// decoded (so a repeated product hits), else as many as fit. Derived from the validated shape
/// only, so no file can make a layer allocate more.
pub fn default_cache_blocks(block_count: usize, block: usize) -> NonZeroUsize {
    let fit = DEFAULT_CACHE_BYTES / (block * block * size_of::<f32>()).max(1);
    NonZeroUsize::new(block_count.min(fit)).unwrap_or(NonZeroUsize::MIN)
}

/// A `Full`-mode layer's state: the runtime blocks and the cache of decoded ones.
pub(crate) struct FullState {
    tensor: EncodedTensor,
    cache: Mutex<LruCache<usize, Arc<[f32]>>>,
}

impl FullState {
    /// Shares `tensor`'s runtime bytes; the cache holds [`default_cache_blocks`] blocks. Nothing
    /// in the file sizes it: the statistics' `cache_blocks` is outside the checksum.
    pub fn new(tensor: &EncodedTensor) -> Self {
        let cap = default_cache_blocks(tensor.block_count(), tensor.config().block);
        FullState { tensor: tensor.clone(), cache: Mutex::new(LruCache::new(cap)) }
    }

    /// The cache capacity for a request of `blocks`: at least 1, at most every block.
    pub fn cache_capacity(&self, blocks: usize) -> NonZeroUsize {
        NonZeroUsize::new(blocks.min(self.tensor.block_count())).unwrap_or(NonZeroUsize::MIN)
    }

    /// Locks the cache (a poisoned lock still holds a consistent cache).
    pub fn lock_cache(&self) -> MutexGuard<'_, LruCache<usize, Arc<[f32]>>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Bytes resident: the runtime block stream and its index.
    pub fn resident_bytes(&self) -> usize {
        self.tensor.runtime_bytes()
    }

    /// Decodes block `idx` to a dense `b x b` block, column-major (`w[c * b + r]`).
    fn decode_block(&self, idx: usize) -> Result<Arc<[f32]>, CpuError> {
        let cfg = *self.tensor.config();
        let b = cfg.block;
        let view = self.tensor.view(idx)?;
        let mut wt = vec![0f32; b * b];
        DECODERS.with(|decoders| {
            let mut decoders = decoders.borrow_mut();
            let dec = decoders.entry(cfg).or_insert_with(|| BlockDecoder::new(cfg));
            let r = dec.decode_view(&view);
            for row in 0..b {
                for c in 0..b {
                    wt[c * b + row] = r[row * b + c] as f32;
                }
            }
        });
        Ok(wt.into())
    }

    /// The decoded blocks of block row `br`, through the cache (one lock to look up, one to insert).
    fn row_blocks(&self, env: &Env<'_>, br: usize) -> Result<Vec<Arc<[f32]>>, CpuError> {
        let bc_n = env.grid.block_cols();
        let mut got: Vec<Option<Arc<[f32]>>> = {
            let mut cache = self.lock_cache();
            (0..bc_n).map(|bc| cache.get(&env.grid.index(br, bc)).cloned()).collect()
        };
        let misses: Vec<usize> = got.iter().enumerate().filter(|(_, g)| g.is_none()).map(|(bc, _)| bc).collect();
        env.stats.add_hits((bc_n - misses.len()) as u64);
        env.stats.add_misses(misses.len() as u64);
        if !misses.is_empty() {
            let t = Instant::now();
            let b = env.cfg.block as u64;
            for &bc in &misses {
                got[bc] = Some(self.decode_block(env.grid.index(br, bc))?);
            }
            env.stats.add_decoded(misses.len() as u64);
            env.stats.add_unpacked(misses.len() as u64 * b * b);
            // Two 1-D passes of O(b log b) per row/column, plus the base.
            let with_base = env.cfg.params != ParamsPrecision::None;
            let per = 4 * b * b * (64 - b.leading_zeros() as u64) + if with_base { 16 * b * b } else { 0 };
            env.stats.add_decode_flops(misses.len() as u64 * per);
            env.stats.add_decode_ns(t.elapsed().as_nanos() as u64);
            let mut cache = self.lock_cache();
            for &bc in &misses {
                if let Some(blk) = &got[bc] {
                    cache.put(env.grid.index(br, bc), blk.clone());
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// `y = W x` (no bias) for `nb` inputs, one `nb x b` buffer per block row.
    pub fn forward(&self, env: &Env<'_>, x: &[f32], nb: usize) -> Result<Vec<Vec<f32>>, CpuError> {
        let b = env.cfg.block;
        let (br_n, bc_n) = env.grid.dims();
        let mut xp = vec![0f32; bc_n * nb * b];
        for bc in 0..bc_n {
            for v in 0..nb {
                env.input_block(x, v, bc, &mut xp[(bc * nb + v) * b..(bc * nb + v + 1) * b]);
            }
        }
        let rows = par_rows(br_n, nb * br_n * bc_n * b * b, |br| -> Result<Vec<f32>, CpuError> {
            let blocks = self.row_blocks(env, br)?;
            let t = Instant::now();
            let mut y = vec![0f32; nb * b];
            for (bc, blk) in blocks.iter().enumerate() {
                let next: &[f32] = blocks.get(bc + 1).map_or(&[], |n| &n[..]);
                simd::cols_f32_prefetching(env.isa, blk, next, b, &xp[bc * nb * b..], b, nb, &mut y, b);
            }
            env.stats.add_multiply_ns(t.elapsed().as_nanos() as u64);
            Ok(y)
        });
        env.stats.add_multiply_flops(2 * (b * b * br_n * bc_n * nb) as u64);
        rows.into_iter().collect()
    }
}

impl ExactBlocks for FullState {
    type Scratch = ();
    fn scratch(&self) {}
    fn has_params(&self) -> bool {
        self.tensor.config().params != ParamsPrecision::None
    }
    fn coefficients(&self, idx: usize, out: &mut [f64], _: &mut ()) -> Result<[f32; N_PARAMS], CpuError> {
        let view = self.tensor.view(idx)?;
        view.residual_coefficients(self.tensor.config().block, out);
        Ok(view.params().0)
    }
}
