//! `RbeLinear`: a linear layer `y = W x + bias` whose weight matrix stays compressed.
//!
//! The exact DCT-domain path: every block is `W_blk = B + M^T R M`, so a block row of outputs is
//! `y_br = M^T (sum_bc R_{br,bc} (M x_bc)) + sum_bc B_{br,bc} x_bc`. Each input block is
//! transformed once, dense residuals are multiplied from their packed integers ([`crate::pack`])
//! with SIMD, sparse ones from their coefficient lists, and each output block is inverse-
//! transformed once. The base goes through its separable form ([`crate::base`]): four factor
//! sums and one radial product per column block, shared by every block of that column, then a
//! few scalar terms and one f64 axpy per block. Work is split over block rows with rayon; each block row is summed
//! in one fixed order, so results are bit-identical for any thread count.

use crate::base::{BaseAccumulator, InputProjection, Orientation};
use crate::error::CpuError;
use crate::pack::{PackShape, extract, fits, pack_plane, unpack_plane};
use crate::simd::{self, Isa, PlaneF32, PlaneI16};
use crate::stats::{LayerStats, StatsSnapshot};
use crate::tables::{Tables, axpy};
use half::f16;
use lru::LruCache;
use rayon::prelude::*;
use rbe_format::basis::{BasisTable, N_PARAMS};
use rbe_format::layout::unpack_entry;
use rbe_format::values::decode_value;
use rbe_format::{BlockConfig, EncodedTensor, Layout, ParamsPrecision, Residual, TransformPlan, ValueCodec};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which bits of a progressive layer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// High bit-plane only; the low bits are replaced by their midpoint. Error bound:
    /// [`RbeLinear::coarse_error_bound`].
    Coarse,
    /// High and low planes: exact.
    Full,
}

/// How a layer computes its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeMode {
    /// Decode blocks on demand to dense f32 (LRU cache), dense block products. Exact.
    Full,
    /// DCT-domain product, never materialising a block. Exact.
    DctDirect,
    /// As `DctDirect` with the transformed inputs quantised to int8 per block and integer dot
    /// products (`vpdpwssd` / `pmaddwd`). Small activation-rounding error.
    DctDirectQ8,
    /// As `DctDirect`, sparse blocks through per-row 64-bit masks (`trailing_zeros` loops). Exact.
    SparseMask,
    /// Dense values split into a high plane (4 bits) and a low plane; see [`Precision`].
    Progressive(Precision),
}

impl DecodeMode {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            DecodeMode::Full => "full",
            DecodeMode::DctDirect => "dct_direct",
            DecodeMode::DctDirectQ8 => "dct_direct_q8",
            DecodeMode::SparseMask => "sparse_mask",
            DecodeMode::Progressive(Precision::Coarse) => "progressive_coarse",
            DecodeMode::Progressive(Precision::Full) => "progressive_full",
        }
    }
}

/// One resident block.
#[derive(Debug, Clone)]
enum Blk {
    Dense {
        /// Main plane (progressive: the high plane), its word offset.
        main: (PackShape, u32),
        /// Progressive low plane (`lo_bits > 0`).
        lo: Option<(PackShape, u32)>,
        lo_bits: u8,
        step: f32,
        /// Outliers: range into `outliers`.
        out_start: u32,
        out_len: u32,
    },
    Sparse {
        /// Entry bytes: range into `sparse_bytes`.
        start: u32,
        k: u32,
        scale: f32,
        /// Sparse-mask mode: offset into `masks` (b masks) and `mask_vals` (k values).
        mask: u32,
        vals: u32,
    },
}

/// How many blocks ahead of the one being multiplied the direct modes prefetch (a 5-bit 64x64
/// block is 2.8 KB, so about 22 KB ahead). Dense planes are prefetched by the kernels, one line
/// per line they read, spread through the product; a burst of prefetches per block stalls on the
/// core's fill buffers (measured on the 4096x4096 bench, 2 threads: cold 702 -> 577 us, hot
/// 521 -> 428 us; 4, 8, 16 and 32 blocks ahead within noise of each other).
const PREFETCH_BLOCKS: usize = 8;

/// Transformed inputs per Q8 activation scale: a 64-value block gets four scales, each the
/// max-abs of its 16 values over 127. One scale per block let the largest of 64 values set the
/// rounding step of all of them (1.1 % max-based error on the MiniLM query fixtures).
const Q8_SEGMENT: usize = 16;

/// Quantises one block of transformed inputs for the Q8 kernels: segments of [`Q8_SEGMENT`]
/// values, each rounded to int8 (`|q| <= 127`) with its own max-abs scale. Writes `x.len() / 2`
/// pairs (zero beyond) and one scale per segment of `scales` (segments past `x` get 0; a
/// non-finite input gives its segment a NaN scale, which carries it into the product).
fn quantise_q8(x: &[f32], pairs: &mut [u32], scales: &mut [f32]) {
    pairs.fill(0);
    scales.fill(0.0);
    for (g, (seg, sc)) in x.chunks(Q8_SEGMENT).zip(scales.iter_mut()).enumerate() {
        let m = seg.iter().fold(0f32, |a, &t| a.max(t.abs()));
        if seg.iter().any(|t| !t.is_finite()) {
            *sc = f32::NAN;
            continue;
        }
        if m == 0.0 {
            continue;
        }
        let s = m / 127.0;
        *sc = s;
        for (i, &t) in seg.iter().enumerate() {
            let j = g * Q8_SEGMENT + i;
            let q = (t / s).round().clamp(-127.0, 127.0) as i16;
            pairs[j / 2] |= u32::from(q as u16) << (16 * (j as u32 & 1));
        }
    }
}

/// Sizes used to pad transformed inputs: any packed plane reads at most `b + 32` values.
fn padded(b: usize) -> usize {
    (b + 32).next_multiple_of(16)
}

/// A linear layer over a compressed weight matrix. `Send + Sync`; share it with `Arc`.
pub struct RbeLinear {
    name: String,
    mode: DecodeMode,
    cfg: BlockConfig,
    rows: usize,
    cols: usize,
    grid: (usize, usize),
    isa: Isa,
    tables: Arc<Tables>,
    blocks: Vec<Blk>,
    words: Vec<u32>,
    outliers: Vec<(u16, i16)>,
    sparse_bytes: Vec<u8>,
    masks: Vec<u64>,
    mask_vals: Vec<f32>,
    params: Option<Vec<[f32; N_PARAMS]>>,
    bias: Option<Vec<f32>>,
    mulaw: [f32; 128],
    cache: Mutex<LruCache<usize, Arc<[f32]>>>,
    stats: LayerStats,
    coarse_bound: f64,
}

thread_local! {
    static PLANS: RefCell<HashMap<(usize, rbe_format::Transform), TransformPlan<f64>>> = RefCell::new(HashMap::new());
}

impl std::fmt::Debug for RbeLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbeLinear")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("isa", &self.isa)
            .finish_non_exhaustive()
    }
}

impl RbeLinear {
    /// Builds a layer from a compressed tensor (`out_features = rows`, `in_features = cols`) and
    /// an optional bias of `rows` values. The decode cache (`Full` mode) is sized by the file's
    /// `cache_blocks`; change it with [`RbeLinear::set_cache_blocks`].
    pub fn new(tensor: &EncodedTensor, bias: Option<Vec<f32>>, mode: DecodeMode) -> Result<Self, CpuError> {
        let name = tensor.name().to_owned();
        let cfg = *tensor.config();
        let b = cfg.block;
        let (rows, cols) = (tensor.rows(), tensor.cols());
        if let Some(bv) = &bias
            && bv.len() != rows
        {
            return Err(CpuError::Shape { tensor: name, what: "bias", expected: rows, got: bv.len() });
        }
        let n = tensor.block_count();
        let progressive = matches!(mode, DecodeMode::Progressive(_));
        let mut blocks = Vec::with_capacity(n);
        let mut words = Vec::new();
        let mut outliers = Vec::new();
        let mut sparse_bytes = Vec::new();
        let mut masks = Vec::new();
        let mut mask_vals = Vec::new();
        let mut params = (cfg.params != ParamsPrecision::None).then(|| Vec::with_capacity(n));
        let mut q = vec![0i32; b * b];
        let mut coarse_sq = 0f64;
        let blk_err = |i: usize, reason: String| CpuError::Block { tensor: name.clone(), block: i, reason };
        let offset = |len: usize, i: usize| {
            u32::try_from(len).map_err(|_| blk_err(i, "resident data exceeds 4 G entries".into()))
        };
        let mulaw = mulaw_table();
        for i in 0..n {
            let block = tensor.block(i)?;
            if let Some(p) = params.as_mut() {
                p.push(block.params.0);
            }
            match &block.residual {
                Residual::Dense(d) => {
                    let w = u32::from(d.width);
                    let out_start = offset(outliers.len(), i)?;
                    for (p, (&v, qq)) in d.values.iter().zip(q.iter_mut()).enumerate() {
                        let v = i32::from(v);
                        if fits(v, w) {
                            *qq = v;
                        } else {
                            *qq = 0;
                            outliers.push((p as u16, v as i16));
                        }
                    }
                    let out_len = offset(outliers.len(), i)? - out_start;
                    let lo_bits = if progressive && w > 4 { w - 4 } else { 0 };
                    let (main, lo) = if lo_bits == 0 {
                        let sh = PackShape::new(b, w);
                        let off = offset(words.len(), i)?;
                        pack_plane(&q, &sh, &mut words);
                        ((sh, off), None)
                    } else {
                        let half = 1i32 << (lo_bits - 1);
                        let hi: Vec<i32> = q.iter().map(|&v| v >> lo_bits).collect();
                        let lo: Vec<i32> = q.iter().map(|&v| (v & ((1 << lo_bits) - 1)) - half).collect();
                        let sh_hi = PackShape::new(b, w - lo_bits);
                        let sh_lo = PackShape::new(b, lo_bits);
                        let off_hi = offset(words.len(), i)?;
                        pack_plane(&hi, &sh_hi, &mut words);
                        let off_lo = offset(words.len(), i)?;
                        pack_plane(&lo, &sh_lo, &mut words);
                        let e = f64::from(d.step) * (f64::from((1u32 << lo_bits) - 1) / 2.0);
                        coarse_sq += e * e * (b * b) as f64;
                        ((sh_hi, off_hi), Some((sh_lo, off_lo)))
                    };
                    blocks.push(Blk::Dense { main, lo, lo_bits: lo_bits as u8, step: d.step, out_start, out_len });
                }
                Residual::Sparse(s) => {
                    let start = offset(sparse_bytes.len(), i)?;
                    let raw = tensor.block_bytes(i);
                    let entry = cfg.layout.entry_bytes();
                    let len = s.coefficients.len() * entry;
                    let body = raw
                        .get(raw.len().saturating_sub(len)..)
                        .ok_or_else(|| blk_err(i, "sparse entries outside the block".into()))?;
                    sparse_bytes.extend_from_slice(body);
                    let mut mask = 0;
                    let mut vals = 0;
                    if mode == DecodeMode::SparseMask {
                        mask = offset(masks.len(), i)?;
                        vals = offset(mask_vals.len(), i)?;
                        let base = masks.len();
                        masks.resize(base + b, 0u64);
                        for c in &s.coefficients {
                            masks[base + usize::from(c.row)] |= 1u64 << c.col;
                            mask_vals.push(decode_value(cfg.values, c.field, s.scale) as f32);
                        }
                    }
                    blocks.push(Blk::Sparse { start, k: s.coefficients.len() as u32, scale: s.scale, mask, vals });
                }
            }
        }
        let tables = Tables::shared(b, cfg.transform);
        let cache_blocks = tensor.desc().cache_blocks.max(1);
        let cache = Mutex::new(LruCache::new(NonZeroUsize::new(cache_blocks).unwrap_or(NonZeroUsize::MIN)));
        Ok(RbeLinear {
            name,
            mode,
            cfg,
            rows,
            cols,
            grid: tensor.grid(),
            isa: Isa::detected(),
            tables,
            blocks,
            words,
            outliers,
            sparse_bytes,
            masks,
            mask_vals,
            params,
            bias,
            mulaw,
            cache,
            stats: LayerStats::default(),
            coarse_bound: coarse_sq.sqrt(),
        })
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The decode mode.
    pub fn mode(&self) -> DecodeMode {
        self.mode
    }
    /// `cols` of the weight matrix.
    pub fn in_features(&self) -> usize {
        self.cols
    }
    /// `rows` of the weight matrix.
    pub fn out_features(&self) -> usize {
        self.rows
    }
    /// The instruction set the kernels run at.
    pub fn isa(&self) -> Isa {
        self.isa
    }
    /// Forces an instruction set (tests, benchmarks); fails when this CPU lacks it.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), CpuError> {
        if !isa.supported() {
            return Err(CpuError::IsaUnavailable(isa.name()));
        }
        self.isa = isa;
        Ok(())
    }
    /// Resizes the decode cache (`Full` mode), dropping what no longer fits.
    pub fn set_cache_blocks(&self, blocks: usize) {
        let cap = NonZeroUsize::new(blocks).unwrap_or(NonZeroUsize::MIN);
        self.lock_cache().resize(cap);
    }
    /// Empties the decode cache.
    pub fn clear_cache(&self) {
        self.lock_cache().clear();
    }
    /// The profiler's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
    /// Zeroes the profiler's counters.
    pub fn reset_stats(&self) {
        self.stats.reset();
    }

    /// Bytes this layer keeps resident (packed planes, outliers, sparse entries, masks, parameters,
    /// per-block descriptors, bias). Excludes the decode cache and the per-process shared tables.
    pub fn resident_bytes(&self) -> usize {
        self.weight_bytes(true)
            + self.blocks.len() * std::mem::size_of::<Blk>()
            + self.bias.as_ref().map_or(0, |b| 4 * b.len())
    }

    /// Resident weight bytes one product reads (progressive coarse skips the low planes).
    pub fn bytes_per_call(&self) -> usize {
        self.weight_bytes(self.mode != DecodeMode::Progressive(Precision::Coarse))
    }

    fn weight_bytes(&self, lo: bool) -> usize {
        let mut words = 0;
        for blk in &self.blocks {
            if let Blk::Dense { main, lo: l, .. } = blk {
                words += main.0.words();
                if lo {
                    words += l.map_or(0, |(s, _)| s.words());
                }
            }
        }
        4 * words
            + 4 * self.outliers.len()
            + self.sparse_bytes.len()
            + 8 * self.masks.len()
            + 4 * self.mask_vals.len()
            + self.params.as_ref().map_or(0, |p| 64 * p.len())
    }

    /// Progressive coarse bound `E`: `||y_coarse - y_full||_2 <= E * ||x||_2` for every input
    /// (`E` is the Frobenius norm bound of the dropped low bits: each dense coefficient moves by at
    /// most `step * (2^L - 1) / 2`, the transform is orthonormal). Zero outside progressive mode.
    pub fn coarse_error_bound(&self) -> f64 {
        self.coarse_bound
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<usize, Arc<[f32]>>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// `y = W x + bias` for one input of `in_features` values.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, CpuError> {
        let mut y = vec![0f32; self.rows];
        self.forward_batch_into(x, 1, &mut y)?;
        Ok(y)
    }

    /// [`RbeLinear::forward`] into a caller buffer of `out_features` values.
    pub fn forward_into(&self, x: &[f32], y: &mut [f32]) -> Result<(), CpuError> {
        self.forward_batch_into(x, 1, y)
    }

    /// Row-major batch: `x` is `batch x in_features`, the result `batch x out_features`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, CpuError> {
        let mut y = vec![0f32; batch * self.rows];
        self.forward_batch_into(x, batch, &mut y)?;
        Ok(y)
    }

    fn check(&self, what: &'static str, expected: usize, got: usize) -> Result<(), CpuError> {
        if expected == got { Ok(()) } else { Err(CpuError::Shape { tensor: self.name.clone(), what, expected, got }) }
    }

    /// [`RbeLinear::forward_batch`] into a caller buffer.
    pub fn forward_batch_into(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), CpuError> {
        self.check("input", batch * self.cols, x.len())?;
        self.check("output", batch * self.rows, y.len())?;
        if batch == 0 {
            return Ok(());
        }
        self.stats.add_calls(1);
        self.stats.add_vectors(batch as u64);
        let per_row: Vec<Vec<f32>> =
            if self.mode == DecodeMode::Full { self.forward_full(x, batch)? } else { self.forward_direct(x, batch) };
        let b = self.cfg.block;
        for (br, part) in per_row.iter().enumerate() {
            let h = (self.rows - br * b).min(b);
            for v in 0..batch {
                let dst = &mut y[v * self.rows + br * b..][..h];
                dst.copy_from_slice(&part[v * b..v * b + h]);
                if let Some(bias) = &self.bias {
                    for (d, bb) in dst.iter_mut().zip(&bias[br * b..br * b + h]) {
                        *d += bb;
                    }
                }
            }
        }
        Ok(())
    }

    /// Column block `bc` of input `v`, zero-padded to `b`.
    fn input_block(&self, x: &[f32], v: usize, bc: usize, out: &mut [f32]) {
        let b = self.cfg.block;
        let w = (self.cols - bc * b).min(b);
        out[..b].fill(0.0);
        out[..w].copy_from_slice(&x[v * self.cols + bc * b..][..w]);
    }

    fn forward_direct(&self, x: &[f32], nb: usize) -> Vec<Vec<f32>> {
        let b = self.cfg.block;
        let p = padded(b);
        let (br_n, bc_n) = self.grid;
        let t0 = Instant::now();
        let q8 = self.mode == DecodeMode::DctDirectQ8;
        // Q8 activation scales per transformed input block (covering its padded width).
        let q8_segs = p / Q8_SEGMENT;
        let prog = matches!(self.mode, DecodeMode::Progressive(_));
        let has_params = self.params.is_some();
        // Per column block: transformed inputs (+ sums, quantised pairs, base projections).
        struct Col {
            xh: Vec<f32>,
            sums: Vec<f32>,
            pairs: Vec<u32>,
            qscale: Vec<f32>,
            proj: Vec<InputProjection>,
        }
        let prep = |bc: usize| {
            let mut xbs = vec![0f32; nb * b];
            let mut xh = vec![0f32; nb * p];
            for v in 0..nb {
                self.input_block(x, v, bc, &mut xbs[v * b..(v + 1) * b]);
            }
            self.tables.forward_batch(self.isa, &xbs, b, nb, &mut xh, p);
            let mut sums = vec![0f32; if prog { nb } else { 0 }];
            let mut pairs = vec![0u32; if q8 { nb * p / 2 } else { 0 }];
            let mut qscale = vec![0f32; if q8 { nb * q8_segs } else { 0 }];
            let mut proj = Vec::with_capacity(if has_params { nb } else { 0 });
            for v in 0..nb {
                let xv = &xh[v * p..(v + 1) * p];
                if prog {
                    sums[v] = xv[..b].iter().sum();
                }
                if q8 {
                    quantise_q8(
                        &xv[..b],
                        &mut pairs[v * p / 2..(v + 1) * p / 2],
                        &mut qscale[v * q8_segs..(v + 1) * q8_segs],
                    );
                }
                if has_params {
                    proj.push(self.tables.base.project(self.isa, &xbs[v * b..(v + 1) * b]));
                }
            }
            Col { xh, sums, pairs, qscale, proj }
        };
        // Input preparation is small next to the block products: below about half a million
        // multiply-adds it runs on the calling thread, saving a fork-join (and a wake-up) per call.
        let prep_work = nb * bc_n * b * b * if has_params { 2 } else { 1 };
        let cols: Vec<Col> = if prep_work < (1 << 19) {
            (0..bc_n).map(prep).collect()
        } else {
            (0..bc_n).into_par_iter().map(prep).collect()
        };
        let t_in = t0.elapsed().as_nanos() as u64;
        let q8_outs: Vec<usize> = (0..nb).collect();
        let out: Vec<Vec<f32>> = par_rows(br_n, nb * br_n * bc_n * b * b, |br| {
            let t1 = Instant::now();
            let mut yh = vec![0f32; nb * b];
            let mut scales = vec![0f32; if q8 { nb * q8_segs } else { 0 }];
            let mut unpacked = 0u64;
            for (bc, col) in cols.iter().enumerate() {
                let idx = br * bc_n + bc;
                if let Some(ahead @ Blk::Sparse { .. }) = self.blocks.get(idx + PREFETCH_BLOCKS) {
                    self.prefetch(ahead);
                }
                // Dense planes: the kernels prefetch this far ahead in `words`, line by line.
                let ahead = |sh: &PackShape| PREFETCH_BLOCKS * sh.words() * 4;
                match &self.blocks[idx] {
                    Blk::Dense { main, lo, lo_bits, step, out_start, out_len } => {
                        let lo_scale = (1u32 << lo_bits) as f32;
                        if q8 {
                            let mut job = PlaneI16 {
                                words: &self.words[main.1 as usize..],
                                shape: main.0,
                                pairs: &col.pairs,
                                pstride: p / 2,
                                segment_pairs: Q8_SEGMENT / 2,
                                scales: &[],
                                outs: &q8_outs,
                                prefetch_ahead: ahead(&main.0),
                            };
                            // The plane's segments (its padded width) use the first of the
                            // column's `q8_segs` scales per input.
                            let segs = job.segments();
                            for v in 0..nb {
                                for g in 0..segs {
                                    scales[v * segs + g] = step * col.qscale[v * q8_segs + g];
                                }
                            }
                            job.scales = &scales[..nb * segs];
                            simd::plane_i16(self.isa, &job, &mut yh, b);
                        } else {
                            let job = PlaneF32 {
                                words: &self.words[main.1 as usize..],
                                shape: main.0,
                                xs: &col.xh,
                                xstride: p,
                                nb,
                                scale: step * lo_scale,
                                prefetch_ahead: ahead(&main.0),
                            };
                            simd::plane_f32(self.isa, &job, &mut yh, b);
                        }
                        unpacked += (b * b) as u64;
                        if let Some((sh, off)) = lo {
                            let full = self.mode == DecodeMode::Progressive(Precision::Full);
                            if full {
                                let job = PlaneF32 {
                                    words: &self.words[*off as usize..],
                                    shape: *sh,
                                    xs: &col.xh,
                                    xstride: p,
                                    nb,
                                    scale: *step,
                                    prefetch_ahead: ahead(sh),
                                };
                                simd::plane_f32(self.isa, &job, &mut yh, b);
                                unpacked += (b * b) as u64;
                            }
                            let mid = if full { (lo_scale / 2.0) * step } else { (lo_scale - 1.0) / 2.0 * step };
                            for v in 0..nb {
                                let c = mid * col.sums[v];
                                yh[v * b..(v + 1) * b].iter_mut().for_each(|t| *t += c);
                            }
                        }
                        for &(pos, val) in &self.outliers[*out_start as usize..(*out_start + *out_len) as usize] {
                            let (i, j) = (usize::from(pos) / b, usize::from(pos) % b);
                            let wv = step * f32::from(val);
                            for v in 0..nb {
                                yh[v * b + i] += wv * col.xh[v * p + j];
                            }
                        }
                    }
                    Blk::Sparse { start, k, scale, mask, vals } => {
                        unpacked += u64::from(*k);
                        if self.mode == DecodeMode::SparseMask {
                            let masks = &self.masks[*mask as usize..*mask as usize + b];
                            let values = &self.mask_vals[*vals as usize..(*vals + *k) as usize];
                            for v in 0..nb {
                                let xv = &col.xh[v * p..v * p + b];
                                let mut at = 0;
                                for (i, &m0) in masks.iter().enumerate() {
                                    let mut m = m0;
                                    let mut acc = 0f32;
                                    while m != 0 {
                                        let j = m.trailing_zeros() as usize;
                                        acc += values[at] * xv[j];
                                        at += 1;
                                        m &= m - 1;
                                    }
                                    yh[v * b + i] += acc;
                                }
                            }
                        } else {
                            let eb = self.cfg.layout.entry_bytes();
                            let bytes = &self.sparse_bytes[*start as usize..*start as usize + *k as usize * eb];
                            for e in bytes.chunks_exact(eb) {
                                let (i, j, val) = self.entry(e, *scale);
                                for v in 0..nb {
                                    yh[v * b + i] += val * col.xh[v * p + j];
                                }
                            }
                        }
                    }
                }
            }
            let t2 = Instant::now();
            let mut y = vec![0f32; nb * b];
            self.tables.inverse_batch(self.isa, &yh, b, nb, &mut y, b);
            if let Some(params) = &self.params {
                for (v, yv) in y.chunks_exact_mut(b).enumerate() {
                    let mut acc = self.tables.base.accumulator();
                    for (bc, col) in cols.iter().enumerate() {
                        let theta = &params[br * bc_n + bc];
                        self.tables.base.accumulate(self.isa, Orientation::Forward, theta, &col.proj[v], &mut acc);
                    }
                    self.tables.base.finish(self.isa, &acc, yv);
                }
            }
            self.stats.add_multiply_ns(t2.duration_since(t1).as_nanos() as u64);
            self.stats.add_transform_ns(t2.elapsed().as_nanos() as u64);
            self.stats.add_unpacked(unpacked);
            y
        });
        self.stats.add_transform_ns(t_in);
        let bb = (b * b) as u64;
        let n_blocks = (br_n * bc_n) as u64;
        self.stats.add_multiply_flops(2 * bb * n_blocks * nb as u64);
        let base = if has_params {
            2 * N_PARAMS as u64 * bb * bc_n as u64 + 2 * N_PARAMS as u64 * b as u64 * n_blocks
        } else {
            0
        };
        self.stats.add_decode_flops(nb as u64 * (2 * bb * (br_n + bc_n) as u64 + base));
        out
    }

    /// Prefetches the resident bytes a direct-mode product reads for `blk`.
    #[inline]
    fn prefetch(&self, blk: &Blk) {
        match blk {
            Blk::Dense { main, lo, .. } => {
                let (sh, off) = main;
                simd::prefetch(&self.words[*off as usize..][..sh.words()]);
                if let Some((sh, off)) = lo
                    && self.mode == DecodeMode::Progressive(Precision::Full)
                {
                    simd::prefetch(&self.words[*off as usize..][..sh.words()]);
                }
            }
            Blk::Sparse { start, k, .. } => {
                let eb = self.cfg.layout.entry_bytes();
                simd::prefetch(&self.sparse_bytes[*start as usize..][..*k as usize * eb]);
            }
        }
    }

    /// Reads one sparse entry: `(row, col, value)`. Entries were validated when the tensor loaded.
    #[inline]
    fn entry(&self, e: &[u8], scale: f32) -> (usize, usize, f32) {
        let (r, c, field) = match (self.cfg.layout, e) {
            (Layout::P32, [a, b1, c, d, ..]) => {
                let w = u32::from_le_bytes([*a, *b1, *c, *d]);
                ((w >> 26) as u16, ((w >> 20) & 63) as u16, w & 0xFFFF)
            }
            _ => unpack_entry(self.cfg.layout, e).unwrap_or((0, 0, 0)),
        };
        let v = match self.cfg.values {
            ValueCodec::Q16 => f32::from(field as u16 as i16) * scale,
            ValueCodec::F16 => f16::from_bits(field as u16).to_f32(),
            ValueCodec::F32 => f32::from_bits(field),
            ValueCodec::Q9s => {
                let m = (field & 511) as f32 * scale;
                if field & 512 != 0 { -m } else { m }
            }
            ValueCodec::MuLaw8 => {
                let m = self.mulaw[(field & 127) as usize] * scale;
                if field & 128 != 0 { -m } else { m }
            }
        };
        (usize::from(r), usize::from(c), v)
    }

    /// The residual coefficient matrix `R` of block `idx` (b*b, row-major), exact.
    fn coefficients(&self, idx: usize, out: &mut [f64], q: &mut [i32], lo_q: &mut [i32]) {
        let b = self.cfg.block;
        out.fill(0.0);
        match &self.blocks[idx] {
            Blk::Dense { main, lo, lo_bits, step, out_start, out_len } => {
                unpack_plane(&self.words[main.1 as usize..], &main.0, q);
                if let Some((sh, off)) = lo {
                    unpack_plane(&self.words[*off as usize..], sh, lo_q);
                    let half = 1i32 << (lo_bits - 1);
                    for (qq, l) in q.iter_mut().zip(lo_q.iter()) {
                        *qq = (*qq << lo_bits) + l + half;
                    }
                }
                let step = f64::from(*step);
                for (o, &qq) in out.iter_mut().zip(q.iter()) {
                    *o = f64::from(qq) * step;
                }
                for &(pos, val) in &self.outliers[*out_start as usize..(*out_start + *out_len) as usize] {
                    out[usize::from(pos)] = f64::from(val) * step;
                }
            }
            Blk::Sparse { start, k, scale, .. } => {
                let eb = self.cfg.layout.entry_bytes();
                for e in self.sparse_bytes[*start as usize..*start as usize + *k as usize * eb].chunks_exact(eb) {
                    let (i, j, _) = self.entry(e, *scale);
                    let field = unpack_entry(self.cfg.layout, e).map_or(0, |t| t.2);
                    out[i * b + j] = decode_value(self.cfg.values, field, *scale);
                }
            }
        }
    }

    /// Decodes block `idx` to a dense `b x b` block, column-major (`w[c * b + r]`), computing in
    /// f64 and rounding once, like the reference decoder.
    fn decode_block(&self, idx: usize) -> Arc<[f32]> {
        let b = self.cfg.block;
        let mut r = vec![0f64; b * b];
        let mut q = vec![0i32; b * b];
        let mut lo = vec![0i32; b * b];
        self.coefficients(idx, &mut r, &mut q, &mut lo);
        PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            let plan =
                plans.entry((b, self.cfg.transform)).or_insert_with(|| TransformPlan::new(b, self.cfg.transform));
            plan.inverse(&mut r);
        });
        if let Some(params) = &self.params {
            BasisTable::shared(b).add_base(&params[idx], &mut r);
        }
        let mut wt = vec![0f32; b * b];
        for row in 0..b {
            for c in 0..b {
                wt[c * b + row] = r[row * b + c] as f32;
            }
        }
        wt.into()
    }

    fn forward_full(&self, x: &[f32], nb: usize) -> Result<Vec<Vec<f32>>, CpuError> {
        let b = self.cfg.block;
        let (br_n, bc_n) = self.grid;
        let mut xp = vec![0f32; bc_n * nb * b];
        for bc in 0..bc_n {
            for v in 0..nb {
                self.input_block(x, v, bc, &mut xp[(bc * nb + v) * b..(bc * nb + v + 1) * b]);
            }
        }
        let out = par_rows(br_n, nb * br_n * bc_n * b * b, |br| {
            let blocks = self.row_blocks(br);
            let t = Instant::now();
            let mut y = vec![0f32; nb * b];
            for (bc, blk) in blocks.iter().enumerate() {
                match blocks.get(bc + 1) {
                    Some(next) => {
                        simd::cols_f32_prefetching(self.isa, blk, next, b, &xp[bc * nb * b..], b, nb, &mut y, b)
                    }
                    None => simd::cols_f32(self.isa, blk, b, &xp[bc * nb * b..], b, nb, &mut y, b),
                }
            }
            self.stats.add_multiply_ns(t.elapsed().as_nanos() as u64);
            y
        });
        self.stats.add_multiply_flops(2 * (b * b * br_n * bc_n * nb) as u64);
        Ok(out)
    }

    /// The decoded blocks of block row `br`, through the cache (one lock to look up, one to insert).
    fn row_blocks(&self, br: usize) -> Vec<Arc<[f32]>> {
        let bc_n = self.grid.1;
        let mut got: Vec<Option<Arc<[f32]>>> = {
            let mut cache = self.lock_cache();
            (0..bc_n).map(|bc| cache.get(&(br * bc_n + bc)).cloned()).collect()
        };
        let misses: Vec<usize> = got.iter().enumerate().filter(|(_, g)| g.is_none()).map(|(bc, _)| bc).collect();
        self.stats.add_hits((bc_n - misses.len()) as u64);
        self.stats.add_misses(misses.len() as u64);
        if !misses.is_empty() {
            let t = Instant::now();
            let b = self.cfg.block as u64;
            for &bc in &misses {
                got[bc] = Some(self.decode_block(br * bc_n + bc));
            }
            self.stats.add_decoded(misses.len() as u64);
            self.stats.add_unpacked(misses.len() as u64 * b * b);
            // Two 1-D passes of O(b log b) per row/column, plus the base.
            let per = 4 * b * b * (64 - b.leading_zeros() as u64) + if self.params.is_some() { 16 * b * b } else { 0 };
            self.stats.add_decode_flops(misses.len() as u64 * per);
            self.stats.add_decode_ns(t.elapsed().as_nanos() as u64);
            let mut cache = self.lock_cache();
            for &bc in &misses {
                if let Some(blk) = &got[bc] {
                    cache.put(br * bc_n + bc, blk.clone());
                }
            }
        }
        got.into_iter().flatten().collect()
    }

    /// The transposed product `x_grad = W^T y_grad` for a row-major batch (`batch x out_features`
    /// in, `batch x in_features` out), always at full precision (exact coefficients, whatever the
    /// mode): per column block, `x_bc = M^T (sum_br R^T (M y_br)) + sum_br B^T y_br`.
    pub fn backward_input(&self, y_grad: &[f32], batch: usize) -> Result<Vec<f32>, CpuError> {
        self.check("output gradient", batch * self.rows, y_grad.len())?;
        let b = self.cfg.block;
        let (br_n, bc_n) = self.grid;
        let nb = batch;
        self.stats.add_calls(1);
        // Transformed output-gradient blocks and, with a base, Phi_k^T y_br.
        let mut yh = vec![0f32; br_n * nb * b];
        let mut yb = vec![0f32; br_n * nb * b];
        for br in 0..br_n {
            let h = (self.rows - br * b).min(b);
            for v in 0..nb {
                let dst = &mut yb[(br * nb + v) * b..][..h];
                dst.copy_from_slice(&y_grad[v * self.rows + br * b..][..h]);
                let (src, dsth) = (&yb[(br * nb + v) * b..][..b], &mut yh[(br * nb + v) * b..][..b]);
                self.tables.forward(src, dsth);
            }
        }
        // With a base: each output-gradient block projected onto the base's factors, once.
        let projections: Vec<InputProjection> = if self.params.is_some() {
            (0..br_n * nb).map(|i| self.tables.base.project(self.isa, &yb[i * b..(i + 1) * b])).collect()
        } else {
            Vec::new()
        };
        let parts: Vec<Vec<f32>> = (0..bc_n)
            .into_par_iter()
            .map(|bc| {
                let mut r64 = vec![0f64; b * b];
                let mut r = vec![0f32; b * b];
                let mut q = vec![0i32; b * b];
                let mut lo = vec![0i32; b * b];
                let mut zh = vec![0f32; nb * b];
                let mut base_acc: Vec<BaseAccumulator> = (0..nb).map(|_| self.tables.base.accumulator()).collect();
                for br in 0..br_n {
                    let idx = br * bc_n + bc;
                    self.coefficients(idx, &mut r64, &mut q, &mut lo);
                    for (d, s) in r.iter_mut().zip(&r64) {
                        *d = *s as f32;
                    }
                    for v in 0..nb {
                        let yv = &yh[(br * nb + v) * b..][..b];
                        let z = &mut zh[v * b..(v + 1) * b];
                        for (i, &yi) in yv.iter().enumerate() {
                            if yi != 0.0 {
                                axpy(yi, &r[i * b..(i + 1) * b], z);
                            }
                        }
                    }
                    if let Some(params) = &self.params {
                        for (v, acc) in base_acc.iter_mut().enumerate() {
                            let proj = &projections[br * nb + v];
                            self.tables.base.accumulate(self.isa, Orientation::Transposed, &params[idx], proj, acc);
                        }
                    }
                }
                let mut out = vec![0f32; nb * b];
                for (v, acc) in base_acc.iter().enumerate() {
                    self.tables.inverse(&zh[v * b..(v + 1) * b], &mut out[v * b..(v + 1) * b]);
                    if self.params.is_some() {
                        self.tables.base.finish(self.isa, acc, &mut out[v * b..(v + 1) * b]);
                    }
                }
                out
            })
            .collect();
        let mut x = vec![0f32; nb * self.cols];
        for (bc, part) in parts.iter().enumerate() {
            let w = (self.cols - bc * b).min(b);
            for v in 0..nb {
                x[v * self.cols + bc * b..][..w].copy_from_slice(&part[v * b..v * b + w]);
            }
        }
        Ok(x)
    }
}

/// `f(0..n)` in order, over the current rayon pool unless the product is small (`work`
/// multiply-adds below about a quarter million): then on the calling thread, which saves the
/// fork-join and the wake-ups that dominate small layers. Each item is computed the same way
/// either way, so results do not depend on the choice.
fn par_rows<T: Send>(n: usize, work: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if work < (1 << 18) || rayon::current_num_threads() == 1 {
        (0..n).map(f).collect()
    } else {
        (0..n).into_par_iter().map(f).collect()
    }
}

fn mulaw_table() -> [f32; 128] {
    let mut t = [0f32; 128];
    for (c, v) in t.iter_mut().enumerate() {
        *v = rbe_format::values::mulaw_expand(c as u32) as f32;
    }
    t
}

/// Extracts field `s` of a lane the way the kernels do (exported for tests of the pack layout).
pub fn lane_field(lane: u32, shape: &PackShape, s: usize) -> i32 {
    extract(lane, shape.offset(s), shape.width)
}
