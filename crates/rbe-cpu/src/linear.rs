//! `RbeLinear`: a linear layer `y = W x + bias` whose weight matrix stays compressed, and the
//! dispatch to its mode. The mode is chosen at construction, which builds only that mode's state
//! (the resident form and tables are planned once per layer):
//!
//! - direct modes (`direct`, with `q8`, `progressive` and
//!   `sparse_mask`) hold the packed resident form (`resident`);
//! - `Full` (`full`) holds the tensor's runtime bytes and an LRU of decoded blocks;
//! - every mode runs the transposed product (`transposed`) from what it holds.

use crate::direct::{self, Exact};
use crate::error::CpuError;
use crate::full::FullState;
use crate::pack::{PackShape, extract};
use crate::progressive::Progressive;
use crate::q8::Q8;
use crate::resident::Resident;
use crate::simd::Isa;
use crate::sparse_mask::SparseMasks;
use crate::stats::{LayerStats, StatsSnapshot};
use crate::tables::Tables;
use crate::transposed;
use rayon::prelude::*;
use rbe_format::{BlockConfig, BlockGrid, EncodedTensor};
use std::sync::Arc;

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
    /// As `DctDirect` with each transformed input block quantised to int8, one scale per 16
    /// values, and integer products for the dense blocks (`vpdpwssd` / `pmaddwd`, `sdot` on
    /// aarch64), folded into f32 per scale segment; sparse blocks and outliers stay f32. Small
    /// activation-rounding error.
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

/// What one mode keeps.
enum ModeState {
    /// `DctDirect`.
    Direct(Resident),
    /// `DctDirectQ8`.
    Q8(Resident),
    /// `SparseMask`: the resident form plus the sparse blocks' masks.
    SparseMask(Resident, SparseMasks),
    /// `Progressive`: the resident form with split planes.
    Progressive(Resident, Precision),
    /// `Full`: runtime bytes and the decode cache.
    Full(FullState),
}

/// The layer's shape and shared tables, lent to the mode code for one call.
pub(crate) struct Env<'a> {
    /// Block configuration.
    pub cfg: &'a BlockConfig,
    /// Block grid.
    pub grid: &'a BlockGrid,
    /// Instruction set the kernels run at.
    pub isa: Isa,
    /// Transform matrices and the separable basis.
    pub tables: &'a Tables,
    /// Profiler counters.
    pub stats: &'a LayerStats,
}

impl Env<'_> {
    /// Column block `bc` of input `v` (inputs `cols` apart), zero-padded to `b`.
    pub fn input_block(&self, x: &[f32], v: usize, bc: usize, out: &mut [f32]) {
        let b = self.cfg.block;
        let w = self.grid.col_width(bc);
        out[..b].fill(0.0);
        out[..w].copy_from_slice(&x[v * self.grid.cols() + bc * b..][..w]);
    }
}

/// A linear layer over a compressed weight matrix. `Send + Sync`; share it with `Arc`.
pub struct RbeLinear {
    name: String,
    cfg: BlockConfig,
    grid: BlockGrid,
    isa: Isa,
    tables: Arc<Tables>,
    bias: Option<Vec<f32>>,
    stats: LayerStats,
    state: ModeState,
}

impl std::fmt::Debug for RbeLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbeLinear")
            .field("name", &self.name)
            .field("mode", &self.mode())
            .field("rows", &self.grid.rows())
            .field("cols", &self.grid.cols())
            .field("isa", &self.isa)
            .finish_non_exhaustive()
    }
}

impl RbeLinear {
    /// Builds a layer from a compressed tensor (`out_features = rows`, `in_features = cols`) and
    /// an optional bias of `rows` values. The decode cache (`Full` mode) holds
    /// [`crate::default_cache_blocks`] blocks; change it with [`RbeLinear::set_cache_blocks`].
    pub fn new(tensor: &EncodedTensor, bias: Option<Vec<f32>>, mode: DecodeMode) -> Result<Self, CpuError> {
        let name = tensor.name().to_owned();
        let cfg = *tensor.config();
        let grid = *tensor.block_grid();
        if let Some(bv) = &bias
            && bv.len() != grid.rows()
        {
            return Err(CpuError::Shape { tensor: name, what: "bias", expected: grid.rows(), got: bv.len() });
        }
        let state = match mode {
            DecodeMode::Full => ModeState::Full(FullState::new(tensor)),
            DecodeMode::DctDirect => ModeState::Direct(Resident::build(tensor, false)?),
            DecodeMode::DctDirectQ8 => ModeState::Q8(Resident::build(tensor, false)?),
            DecodeMode::SparseMask => {
                ModeState::SparseMask(Resident::build(tensor, false)?, SparseMasks::build(tensor)?)
            }
            DecodeMode::Progressive(p) => ModeState::Progressive(Resident::build(tensor, true)?, p),
        };
        Ok(RbeLinear {
            name,
            cfg,
            grid,
            isa: Isa::detected(),
            tables: Tables::shared(cfg.block, cfg.transform),
            bias,
            stats: LayerStats::default(),
            state,
        })
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The decode mode.
    pub fn mode(&self) -> DecodeMode {
        match &self.state {
            ModeState::Direct(_) => DecodeMode::DctDirect,
            ModeState::Q8(_) => DecodeMode::DctDirectQ8,
            ModeState::SparseMask(..) => DecodeMode::SparseMask,
            ModeState::Progressive(_, p) => DecodeMode::Progressive(*p),
            ModeState::Full(_) => DecodeMode::Full,
        }
    }
    /// `cols` of the weight matrix.
    pub fn in_features(&self) -> usize {
        self.grid.cols()
    }
    /// `rows` of the weight matrix.
    pub fn out_features(&self) -> usize {
        self.grid.rows()
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
    /// Resizes the decode cache (`Full` mode; other modes have none) to `blocks`, at least 1
    /// and at most the tensor's block count, dropping what no longer fits.
    pub fn set_cache_blocks(&self, blocks: usize) {
        if let ModeState::Full(f) = &self.state {
            let cap = f.cache_capacity(blocks);
            f.lock_cache().resize(cap);
        }
    }
    /// Empties the decode cache (`Full` mode).
    pub fn clear_cache(&self) {
        if let ModeState::Full(f) = &self.state {
            f.lock_cache().clear();
        }
    }
    /// The profiler's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
    /// Zeroes the profiler's counters.
    pub fn reset_stats(&self) {
        self.stats.reset();
    }

    /// Bytes this layer keeps resident: for the direct modes packed planes, outliers, sparse
    /// entries, masks, parameters and per-block descriptors; for `Full` the runtime block stream.
    /// Plus the bias. Excludes the decode cache and the per-process shared tables.
    pub fn resident_bytes(&self) -> usize {
        let weights = match &self.state {
            ModeState::Direct(r) | ModeState::Q8(r) | ModeState::Progressive(r, _) => {
                r.weight_bytes(true) + r.descriptor_bytes()
            }
            ModeState::SparseMask(r, m) => r.weight_bytes(true) + r.descriptor_bytes() + m.bytes(),
            ModeState::Full(f) => f.resident_bytes(),
        };
        weights + self.bias.as_ref().map_or(0, |b| 4 * b.len())
    }

    /// Resident weight bytes one product reads (progressive coarse skips the low planes).
    pub fn bytes_per_call(&self) -> usize {
        match &self.state {
            ModeState::Direct(r) | ModeState::Q8(r) => r.weight_bytes(true),
            ModeState::Progressive(r, p) => r.weight_bytes(*p == Precision::Full),
            ModeState::SparseMask(r, m) => r.weight_bytes(true) + m.bytes(),
            ModeState::Full(f) => f.resident_bytes(),
        }
    }

    /// Bytes of the per-block descriptors the direct modes read on every product besides
    /// [`Self::bytes_per_call`] (0 for `Full`, which keeps none).
    pub fn descriptor_bytes(&self) -> usize {
        match &self.state {
            ModeState::Direct(r) | ModeState::Q8(r) | ModeState::Progressive(r, _) | ModeState::SparseMask(r, _) => {
                r.descriptor_bytes()
            }
            ModeState::Full(_) => 0,
        }
    }

    /// Progressive coarse bound `E`: `||y_coarse - y_full||_2 <= E * ||x||_2` for every input
    /// (`E` is the Frobenius norm bound of the dropped low bits: each dense coefficient moves by at
    /// most `step * (2^L - 1) / 2`, the transform is orthonormal). Zero outside progressive mode.
    pub fn coarse_error_bound(&self) -> f64 {
        match &self.state {
            ModeState::Progressive(r, _) => r.coarse_bound,
            _ => 0.0,
        }
    }

    /// `y = W x + bias` for one input of `in_features` values.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, CpuError> {
        let mut y = vec![0f32; self.grid.rows()];
        self.forward_batch_into(x, 1, &mut y)?;
        Ok(y)
    }

    /// [`RbeLinear::forward`] into a caller buffer of `out_features` values.
    pub fn forward_into(&self, x: &[f32], y: &mut [f32]) -> Result<(), CpuError> {
        self.forward_batch_into(x, 1, y)
    }

    /// Row-major batch: `x` is `batch x in_features`, the result `batch x out_features`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, CpuError> {
        let mut y = vec![0f32; batch * self.grid.rows()];
        self.forward_batch_into(x, batch, &mut y)?;
        Ok(y)
    }

    fn check(&self, what: &'static str, expected: usize, got: usize) -> Result<(), CpuError> {
        if expected == got { Ok(()) } else { Err(CpuError::Shape { tensor: self.name.clone(), what, expected, got }) }
    }

    fn env(&self) -> Env<'_> {
        Env { cfg: &self.cfg, grid: &self.grid, isa: self.isa, tables: &self.tables, stats: &self.stats }
    }

    /// [`RbeLinear::forward_batch`] into a caller buffer.
    pub fn forward_batch_into(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), CpuError> {
        let rows = self.grid.rows();
        self.check("input", batch * self.grid.cols(), x.len())?;
        self.check("output", batch * rows, y.len())?;
        if batch == 0 {
            return Ok(());
        }
        self.stats.add_calls(1);
        self.stats.add_vectors(batch as u64);
        let env = self.env();
        let per_row: Vec<Vec<f32>> = match &self.state {
            ModeState::Direct(r) => direct::forward(&env, r, &Exact, x, batch),
            ModeState::Q8(r) => direct::forward(&env, r, &Q8::new(batch), x, batch),
            ModeState::SparseMask(r, m) => direct::forward(&env, r, m, x, batch),
            ModeState::Progressive(r, p) => direct::forward(&env, r, &Progressive { precision: *p }, x, batch),
            ModeState::Full(f) => f.forward(&env, x, batch)?,
        };
        let b = self.cfg.block;
        for (br, part) in per_row.iter().enumerate() {
            let h = self.grid.row_height(br);
            for v in 0..batch {
                let dst = &mut y[v * rows + br * b..][..h];
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

    /// The transposed product `x_grad = W^T y_grad` for a row-major batch (`batch x out_features`
    /// in, `batch x in_features` out), always at full precision (exact coefficients, whatever the
    /// mode): per column block, `x_bc = M^T (sum_br R^T (M y_br)) + sum_br B^T y_br`.
    pub fn backward_input(&self, y_grad: &[f32], batch: usize) -> Result<Vec<f32>, CpuError> {
        self.check("output gradient", batch * self.grid.rows(), y_grad.len())?;
        self.stats.add_calls(1);
        let env = self.env();
        match &self.state {
            ModeState::Direct(r) | ModeState::Q8(r) | ModeState::SparseMask(r, _) | ModeState::Progressive(r, _) => {
                transposed::backward(&env, r, y_grad, batch)
            }
            ModeState::Full(f) => transposed::backward(&env, f, y_grad, batch),
        }
    }
}

/// `f(0..n)` in order, over the current rayon pool unless the product is small (`work`
/// multiply-adds below about a quarter million): then on the calling thread, which saves the
/// fork-join and the wake-ups that dominate small layers. Each item is computed the same way
/// either way, so results do not depend on the choice.
pub(crate) fn par_rows<T: Send>(n: usize, work: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if work < (1 << 18) || rayon::current_num_threads() == 1 {
        (0..n).map(f).collect()
    } else {
        (0..n).into_par_iter().map(f).collect()
    }
}

/// Extracts field `s` of a lane the way the kernels do (exported for tests of the pack layout).
pub fn lane_field(lane: u32, shape: &PackShape, s: usize) -> i32 {
    extract(lane, shape.offset(s), shape.width)
}
