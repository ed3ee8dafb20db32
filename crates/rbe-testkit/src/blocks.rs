//! Random valid blocks and tensors for any block configuration, tensor descriptions with neutral
//! statistics, and the f64 reference decode (feature `format`).
//!
//! Two block recipes: the general one ([`sparse_block`], [`dense_block`], [`random_block`]: exact
//! coefficient counts, outliers in any field, every storable value) for format tests, and
//! [`fixture_block`], the recipe the committed conformance fixtures were drawn with, which the
//! GPU tests share.
//!
//! Use from integration tests, benches and xtask: inside `rbe-format`'s own unit tests these
//! types would belong to a second copy of the crate.

use crate::Rng;
use half::f16;
use rbe_format::{
    BLOCK_SIZES, BlockConfig, BlockDecoder, Coefficient, DenseResidual, EncodeStats, EncodedBlock, EncodedTensor,
    Entropy, FormatError, Layout, ParamsPrecision, RbeParams, Residual, SourceDtype, SparseResidual, TensorDesc,
    Transform, ValueCodec,
};

/// A block configuration from its five settings.
pub fn config(
    block: usize,
    transform: Transform,
    layout: Layout,
    values: ValueCodec,
    params: ParamsPrecision,
) -> BlockConfig {
    BlockConfig { block, transform, layout, values, params }
}

/// Every legal (layout, codec) pair (format.md 3.1).
pub fn legal_pairs() -> Vec<(Layout, ValueCodec)> {
    let codecs =
        |layout: Layout| ValueCodec::ALL.iter().filter(move |&&c| layout.accepts(c)).map(move |&c| (layout, c));
    Layout::ALL.iter().flat_map(|&layout| codecs(layout)).collect()
}

/// Every legal block configuration: block size x transform x legal pair x params precision.
pub fn all_configs() -> Vec<BlockConfig> {
    let mut out = Vec::new();
    for block in BLOCK_SIZES {
        for &transform in Transform::ALL {
            for (layout, values) in legal_pairs() {
                out.extend(ParamsPrecision::ALL.iter().map(|&params| config(block, transform, layout, values, params)));
            }
        }
    }
    out
}

/// A value the params precision stores exactly (so write -> parse is the identity).
fn storable_param(rng: &mut Rng, p: ParamsPrecision) -> f32 {
    match p {
        ParamsPrecision::None => 0.0,
        ParamsPrecision::F32 => rng.symmetric(2.0) as f32,
        ParamsPrecision::F16 => f16::from_f64(rng.symmetric(2.0)).to_f32(),
    }
}

/// Random parameters valid for `p`.
pub fn random_params(rng: &mut Rng, p: ParamsPrecision) -> RbeParams {
    RbeParams(std::array::from_fn(|_| storable_param(rng, p)))
}

/// A random value field valid for `codec`; with `outlier`, a large value.
pub fn random_field(rng: &mut Rng, codec: ValueCodec, outlier: bool) -> u32 {
    let magnitude = if outlier { 1000.0 } else { 0.05 };
    match codec {
        ValueCodec::F32 => (rng.symmetric(magnitude) as f32).to_bits(),
        ValueCodec::F16 => u32::from(f16::from_f64(rng.symmetric(magnitude)).to_bits()),
        ValueCodec::Q16 => rng.below(1 << 16) as u32,
        ValueCodec::Q9s => rng.below(1 << 10) as u32,
        ValueCodec::MuLaw8 => rng.below(1 << 8) as u32,
    }
}

/// The per-block scale for `cfg`'s codec: 1.0 when it stores none, else an exactly storable value.
pub fn random_scale(rng: &mut Rng, cfg: &BlockConfig) -> f32 {
    match cfg.values.scale_bytes(cfg.layout) {
        0 => 1.0,
        2 => f16::from_f64(1e-4 + rng.unit() * 0.01).to_f32(),
        _ => (1e-6 + rng.unit() * 1e-3) as f32,
    }
}

/// A random valid sparse block with `k` coefficients at distinct positions (`k <= b*b`).
pub fn sparse_block(rng: &mut Rng, cfg: &BlockConfig, k: usize) -> EncodedBlock {
    let n = cfg.block_area();
    let k = k.min(n);
    // Choose k distinct positions: shuffle a prefix.
    let mut positions: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        positions.swap(i, j);
    }
    let mut chosen = positions[..k].to_vec();
    chosen.sort_unstable();
    let coefficients = chosen
        .into_iter()
        .map(|p| {
            let outlier = rng.chance(0.05);
            let field = random_field(rng, cfg.values, outlier);
            Coefficient { row: (p / cfg.block) as u16, col: (p % cfg.block) as u16, field }
        })
        .collect();
    EncodedBlock {
        params: random_params(rng, cfg.params),
        residual: Residual::Sparse(SparseResidual { scale: random_scale(rng, cfg), coefficients }),
    }
}

/// A random valid dense block of `width` bits, with roughly `outlier_rate` outliers.
pub fn dense_block(rng: &mut Rng, cfg: &BlockConfig, width: u8, outlier_rate: f64) -> EncodedBlock {
    let half = 1i32 << (width - 1);
    let mut value = || {
        if rng.chance(outlier_rate) {
            (rng.below(1 << 16) as i32 - 32768) as i16
        } else {
            (rng.below(2 * half as usize) as i32 - half) as i16
        }
    };
    let values = (0..cfg.block_area()).map(|_| value()).collect();
    EncodedBlock {
        params: random_params(rng, cfg.params),
        residual: Residual::Dense(DenseResidual { width, step: (1e-5 + rng.unit() * 1e-3) as f32, values }),
    }
}

/// A random valid block: sparse (random K, sometimes 0 or b*b) or dense (random width 1..=16).
pub fn random_block(rng: &mut Rng, cfg: &BlockConfig) -> EncodedBlock {
    let n = cfg.block_area();
    match rng.below(8) {
        0 => sparse_block(rng, cfg, 0),
        1 => sparse_block(rng, cfg, n),
        2..=4 => {
            let k = rng.below(n.min(200) + 1);
            sparse_block(rng, cfg, k)
        }
        _ => {
            let width = 1 + rng.below(16) as u8;
            let rate = if rng.chance(0.5) { 0.0 } else { 0.02 };
            dense_block(rng, cfg, width, rate)
        }
    }
}

/// The conformance fixtures' block recipe: uniform parameters in `[-1, 1)`; dense residuals of
/// width 1..16 with about 4 % outliers wherever the width leaves room, steps scaled to the width;
/// sparse residuals of up to 80 coefficients (duplicates dropped) of magnitude up to 0.2.
pub fn fixture_block(cfg: &BlockConfig, rng: &mut Rng, dense: bool) -> EncodedBlock {
    let b = cfg.block;
    let theta = std::array::from_fn(|_| match cfg.params {
        ParamsPrecision::None => 0.0,
        ParamsPrecision::F32 => rng.signed_f32(),
        ParamsPrecision::F16 => f16::from_f32(rng.signed_f32()).to_f32(),
    });
    let residual = if dense {
        let width = 1 + rng.below(16) as u8;
        let half = 1i32 << (width - 1);
        let mut value = || {
            if width < 16 && rng.below(25) == 0 {
                let v = half + rng.below(2000) as i32;
                (if rng.below(2) == 0 { v } else { -v - 1 }).clamp(-32768, 32767) as i16
            } else {
                (rng.below(2 * half as usize) as i32 - half) as i16
            }
        };
        let values = (0..b * b).map(|_| value()).collect();
        let step = (0.002 + rng.signed_f32().abs() * 0.01) / half as f32;
        Residual::Dense(DenseResidual { width, step, values })
    } else {
        let k = rng.below((b * b).min(80) + 1);
        let mut pos: Vec<usize> = (0..k).map(|_| rng.below(b * b)).collect();
        pos.sort_unstable();
        pos.dedup();
        let mut field = || match cfg.values {
            ValueCodec::F32 => (0.2 * rng.signed_f32()).to_bits(),
            ValueCodec::F16 => u32::from(f16::from_f32(0.2 * rng.signed_f32()).to_bits()),
            ValueCodec::Q16 => rng.below(65536) as u32,
            ValueCodec::Q9s => rng.below(1024) as u32,
            ValueCodec::MuLaw8 => rng.below(256) as u32,
        };
        let coefficients =
            pos.iter().map(|&p| Coefficient { row: (p / b) as u16, col: (p % b) as u16, field: field() }).collect();
        let scale = match cfg.values {
            ValueCodec::F32 | ValueCodec::F16 => 1.0,
            ValueCodec::Q16 => 0.2 / 32767.0,
            ValueCodec::Q9s => f16::from_f32(0.2 / 511.0).to_f32(),
            ValueCodec::MuLaw8 => f16::from_f32(0.2).to_f32(),
        };
        Residual::Sparse(SparseResidual { scale, coefficients })
    };
    EncodedBlock { params: RbeParams(theta), residual }
}

/// The blocks of a `rows x cols` fixture tensor drawn from `seed`: every third block (from the
/// second) dense, the rest sparse, by [`fixture_block`].
pub fn fixture_blocks(cfg: &BlockConfig, rows: usize, cols: usize, seed: u64) -> Vec<EncodedBlock> {
    let mut rng = Rng::new(seed);
    let n = rows.div_ceil(cfg.block) * cols.div_ceil(cfg.block);
    (0..n).map(|i| fixture_block(cfg, &mut rng, i % 3 == 1)).collect()
}

/// Number of blocks of a tensor of `shape` (flattened to 2-D) at block size `b`.
pub fn grid_blocks(shape: &[u64], b: usize) -> usize {
    let cols: u64 = shape[1..].iter().product();
    (shape[0] as usize).div_ceil(b) * (cols as usize).div_ceil(b)
}

/// A description of an F32 tensor of `shape` under `cfg`, raw storage (the stream's size and
/// checksum are filled in when the tensor is serialised).
pub fn desc(shape: &[u64], cfg: &BlockConfig) -> TensorDesc {
    TensorDesc::new(shape, SourceDtype::F32, cfg, Entropy::None)
}

/// Neutral statistics with the block counts of `blocks` filled in (sparse and dense counts,
/// `k_mean`; `std` 1, everything else zero or empty).
pub fn stats_for(blocks: &[EncodedBlock]) -> EncodeStats {
    let sparse = blocks.iter().filter(|b| matches!(b.residual, Residual::Sparse(_))).count();
    let k: usize = blocks.iter().map(EncodedBlock::coefficient_count).sum();
    EncodeStats {
        sparse,
        dense: blocks.len() - sparse,
        k_mean: k as f64 / blocks.len().max(1) as f64,
        std: 1.0,
        ..EncodeStats::default()
    }
}

/// A tensor of `shape` built from `blocks`, described by [`desc`] with [`stats_for`] its blocks.
/// Panics on invalid blocks.
pub fn tensor(name: &str, shape: &[u64], cfg: &BlockConfig, blocks: &[EncodedBlock]) -> EncodedTensor {
    EncodedTensor::from_blocks(name, desc(shape, cfg), blocks)
        .expect("valid hand-made tensor")
        .with_stats(stats_for(blocks))
}

/// A tensor of `shape` with [`random_block`]s.
pub fn random_tensor(rng: &mut Rng, name: &str, shape: &[u64], cfg: &BlockConfig) -> EncodedTensor {
    let blocks: Vec<EncodedBlock> = (0..grid_blocks(shape, cfg.block)).map(|_| random_block(rng, cfg)).collect();
    tensor(name, shape, cfg, &blocks)
}

/// The reference decode of `t` in f64, not rounded to f32, row-major `rows x cols`.
pub fn reference_f64(t: &EncodedTensor) -> Result<Vec<f64>, FormatError> {
    let (cols, b, grid_cols) = (t.cols(), t.config().block, t.grid().1);
    let mut dec = BlockDecoder::new(*t.config());
    let mut out = vec![0.0; t.rows() * cols];
    for i in 0..t.block_count() {
        let vals = dec.decode(&t.block(i)?);
        let (h, w) = t.block_extent(i);
        let (r0, c0) = ((i / grid_cols) * b, (i % grid_cols) * b);
        for (r, src) in vals.chunks_exact(b).take(h).enumerate() {
            out[(r0 + r) * cols + c0..][..w].copy_from_slice(&src[..w]);
        }
    }
    Ok(out)
}
