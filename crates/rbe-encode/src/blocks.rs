//! Quantising the residuals of one tensor: the global step search that meets the error budget,
//! the per-block choice between a sparse (top-K) and a dense residual, and the error measured on
//! the real decode. Called by `tensor::encode_tensor`.

use crate::error::EncodeError;
use crate::rate::RateModel;
use crate::settings::ResidualChoice;
use crate::tensor::Prepared;
use rayon::prelude::*;
use rbe_format::codec::{decode_value, encode_value, scale_for};
use rbe_format::codec::{dense_payload_bytes, fits_width, needed_width};
use rbe_format::{
    BlockConfig, BlockDecoder, Coefficient, DenseResidual, EncodedBlock, EncodedTensor, Entropy, RbeParams, Residual,
    SparseResidual, ValueCodec,
};

/// `x` rounded to 7 significant digits, so the metadata JSON stays short (up, for errors: a
/// recorded error is never below the measured one).
pub(crate) fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(6 - x.abs().log10().floor() as i32);
    (x * scale).ceil() / scale
}

/// `round(c * inv)` half away from zero, without a libm call (the default x86-64 target has no
/// SSE4.1 `roundss`); used for every quantisation so error accounting and blocks agree.
#[inline]
pub(crate) fn quantise(c: f32, inv: f32) -> f32 {
    let x = c * inv;
    (x + 0.5f32.copysign(x)).trunc_fast()
}

trait TruncFast {
    fn trunc_fast(self) -> f32;
}

impl TruncFast for f32 {
    #[inline]
    fn trunc_fast(self) -> f32 {
        // Integer conversion truncates toward zero; all quantised values fit i32 comfortably
        // (|c / step| <= 32767.5 by construction of the minimum step).
        if self.abs() < 8_388_608.0 { self as i32 as f32 } else { self }
    }
}

/// Sum of squared coefficient-domain errors of uniform quantisation with `step` (the decode error
/// by Parseval). Per-block sums are added in block order: deterministic.
pub(crate) fn quant_error(prepared: &[Prepared], step: f64) -> f64 {
    let inv = 1.0 / step as f32;
    let s = step as f32;
    let per_block: Vec<f64> = prepared
        .par_iter()
        .map(|p| p.coefs.iter().map(|&c| f64::from(c - quantise(c, inv) * s).powi(2)).sum())
        .collect();
    per_block.iter().sum()
}

/// The largest step whose error stays within `budget` (searched on a log scale), or `None` when even
/// the smallest representable step misses it.
pub(crate) fn find_step(prepared: &[Prepared], budget: f64, min_step: f64) -> Option<f64> {
    let n: usize = prepared.iter().map(|p| p.coefs.len()).sum();
    // High-rate guess: error per coefficient = step^2 / 12.
    let guess = (12.0 * budget / n as f64).sqrt();
    search_step(&|step| quant_error(prepared, step), budget, min_step, guess, 0.995)
}

/// The largest step whose `error(step)` stays within `budget`, starting from `guess`; accepted
/// once the error is at least `accept x budget`. `None` when even `min_step` misses the budget.
/// `error` must grow with the step (up to noise).
pub(crate) fn search_step(
    error: &dyn Fn(f64) -> f64,
    budget: f64,
    min_step: f64,
    guess: f64,
    accept: f64,
) -> Option<f64> {
    let min_step = min_step.max(f64::MIN_POSITIVE);
    if error(min_step) > budget {
        return None;
    }
    let aim = (1.0 + accept) / 2.0;
    let (mut lo, mut hi) = (min_step, f64::INFINITY);
    let mut step = guess.max(min_step);
    for _ in 0..40 {
        let e = error(step);
        if e <= budget {
            lo = step;
            if e >= budget * accept {
                break;
            }
        } else {
            hi = step;
        }
        let next = if hi.is_finite() {
            // Secant-like step in log space, kept inside the bracket.
            // Aim inside the accepted band [accept, 1] x budget, not at its edge.
            let scaled = step * (aim * budget / e.max(f64::MIN_POSITIVE)).sqrt();
            if scaled > lo && scaled < hi { scaled } else { (lo * hi).sqrt() }
        } else {
            step * (aim * budget / e.max(f64::MIN_POSITIVE)).sqrt().clamp(1.0001, 4.0)
        };
        if hi.is_finite() && hi / lo < 1.0 + 1e-4 {
            break;
        }
        step = next;
    }
    Some(lo)
}

/// [`quant_error`] of integers already rounded by [`quantise_blocks`] (the same sums, without
/// rounding every coefficient a second time).
pub(crate) fn rounded_error(prepared: &[Prepared], quantised: &[Vec<i16>], step: f32) -> f64 {
    let per_block: Vec<f64> = prepared
        .par_iter()
        .zip(quantised)
        .map(|(p, q)| p.coefs.iter().zip(q).map(|(&c, &v)| f64::from(c - f32::from(v) * step).powi(2)).sum())
        .collect();
    per_block.iter().sum()
}

/// Every block's coefficients rounded to multiples of `step`.
pub(crate) fn quantise_blocks(prepared: &[Prepared], step: f32) -> Vec<Vec<i16>> {
    let inv = 1.0 / step;
    prepared.par_iter().map(|p| p.coefs.iter().map(|&c| quantise(c, inv) as i16).collect()).collect()
}

/// Fixed top-K block: the K largest coefficients (ties by position), values through the codec.
pub(crate) fn top_k_block(p: &Prepared, k: usize, cfg: &BlockConfig) -> EncodedBlock {
    let b = cfg.block;
    let mut order: Vec<usize> = (0..p.coefs.len()).collect();
    let k = k.min(order.len());
    order.sort_by(|&a, &c| p.coefs[c].abs().total_cmp(&p.coefs[a].abs()).then(a.cmp(&c)));
    let mut kept: Vec<usize> = order[..k].to_vec();
    kept.sort_unstable();
    let max_abs = kept.iter().map(|&i| f64::from(p.coefs[i]).abs()).fold(0.0, f64::max);
    let scale = scale_for(cfg.values, max_abs);
    let coefficients = kept
        .iter()
        .map(|&i| Coefficient {
            row: (i / b) as u16,
            col: (i % b) as u16,
            field: encode_value(cfg.values, f64::from(p.coefs[i]), scale),
        })
        .collect();
    EncodedBlock { params: RbeParams(p.params), residual: Residual::Sparse(SparseResidual { scale, coefficients }) }
}

/// Picks, per block, the cheaper of the dense and sparse residual at quantisation `step` for the
/// integers `quantised` (one vector per block, from [`quantise_blocks`] or GPTQ).
///
/// Storage cost decides (estimated entropy-coded bits, or exact raw bytes with entropy off), with
/// one guard for the runtime: a sparse block may not take more than 1.5x the dense block's runtime
/// bytes, since loading expands entropy-coded blocks to their fixed-width layout.
pub(crate) fn choose_blocks(
    prepared: &[Prepared],
    quantised: Vec<Vec<i16>>,
    step: f32,
    cfg: &BlockConfig,
    entropy: Entropy,
    allowed: ResidualChoice,
) -> Vec<EncodedBlock> {
    let rate = RateModel::from_blocks(&quantised);
    let entry = cfg.layout.entry_bytes();
    let scale_bytes = cfg.values.scale_bytes(cfg.layout);
    prepared
        .par_iter()
        .zip(quantised.into_par_iter())
        .map(|(p, q)| {
            let dense = dense_block(p, q, step);
            let Residual::Dense(d) = &dense.residual else { unreachable!("dense_block builds a dense residual") };
            let dense_raw = raw_dense_bytes(d);
            let nonzero = d.values.iter().filter(|&&v| v != 0).count();
            let sparse_raw = scale_bytes + nonzero * entry;
            let (dense_cost, sparse_cost) = match entropy {
                Entropy::Rans => (rate.dense_bits(&d.values), rate.sparse_bits_estimate(&d.values, nonzero, cfg)),
                Entropy::None => (8.0 * dense_raw as f64, 8.0 * sparse_raw as f64),
            };
            let prefer_sparse = match allowed {
                ResidualChoice::Dense => false,
                ResidualChoice::Sparse => true,
                ResidualChoice::Auto => sparse_cost < dense_cost && 2 * sparse_raw <= 3 * dense_raw,
            };
            if !prefer_sparse {
                return dense;
            }
            let sparse = sparse_block(p, &dense, step, cfg);
            if allowed == ResidualChoice::Sparse {
                return sparse;
            }
            // q16 reuses the dense integers: same reconstruction. Other codecs must not add error.
            if cfg.values == ValueCodec::Q16
                || block_error(p, &sparse, cfg) <= block_error(p, &dense, cfg) * (1.0 + 1e-6) + 1e-30
            {
                sparse
            } else {
                dense
            }
        })
        .collect()
}

pub(crate) fn raw_dense_bytes(d: &DenseResidual) -> usize {
    let outliers = d.values.iter().filter(|&&v| !fits_width(i32::from(v), d.width)).count();
    1 + 4 + dense_payload_bytes(d.values.len(), d.width) + 1 + 4 * outliers
}

/// Dense residual with the payload width that minimises the raw bytes (payload + outliers).
pub(crate) fn dense_block(p: &Prepared, q: Vec<i16>, step: f32) -> EncodedBlock {
    // needs[w] = values that need exactly w bits.
    let mut needs = [0usize; 17];
    for &v in &q {
        needs[usize::from(needed_width(i32::from(v)).min(16))] += 1;
    }
    let n = q.len();
    let mut best = (usize::MAX, 16u8);
    for w in 1..=16u8 {
        let outliers: usize = needs[usize::from(w) + 1..].iter().sum();
        let bytes = dense_payload_bytes(n, w) + 4 * outliers;
        if bytes < best.0 {
            best = (bytes, w);
        }
    }
    EncodedBlock {
        params: RbeParams(p.params),
        residual: Residual::Dense(DenseResidual { width: best.1, step, values: q }),
    }
}

/// Sparse residual holding the dense block's nonzero coefficients, values through the codec
/// (`q16` reuses the dense integers with the same step, so both kinds reconstruct identically).
pub(crate) fn sparse_block(p: &Prepared, dense: &EncodedBlock, step: f32, cfg: &BlockConfig) -> EncodedBlock {
    let Residual::Dense(d) = &dense.residual else { unreachable!("called with a dense block") };
    let b = cfg.block;
    let nonzero: Vec<usize> = d.values.iter().enumerate().filter(|(_, v)| **v != 0).map(|(i, _)| i).collect();
    let max_abs = nonzero.iter().map(|&i| f64::from(p.coefs[i]).abs()).fold(0.0, f64::max);
    let scale = if cfg.values == ValueCodec::Q16 { step } else { scale_for(cfg.values, max_abs) };
    let coefficients = nonzero
        .iter()
        .map(|&i| {
            let field = match cfg.values {
                ValueCodec::Q16 => u32::from(d.values[i] as u16),
                codec => encode_value(codec, f64::from(p.coefs[i]), scale),
            };
            Coefficient { row: (i / b) as u16, col: (i % b) as u16, field }
        })
        .collect();
    EncodedBlock { params: RbeParams(p.params), residual: Residual::Sparse(SparseResidual { scale, coefficients }) }
}

/// Coefficient-domain squared error of `block` against the prepared coefficients.
pub(crate) fn block_error(p: &Prepared, block: &EncodedBlock, cfg: &BlockConfig) -> f64 {
    match &block.residual {
        Residual::Dense(d) => p
            .coefs
            .iter()
            .zip(&d.values)
            .map(|(&c, &q)| (f64::from(c) - f64::from(q) * f64::from(d.step)).powi(2))
            .sum(),
        Residual::Sparse(s) => {
            let mut e: f64 = p.coefs.iter().map(|&c| f64::from(c).powi(2)).sum();
            for c in &s.coefficients {
                let i = usize::from(c.row) * cfg.block + usize::from(c.col);
                let x = f64::from(p.coefs[i]);
                e += (x - decode_value(cfg.values, c.field, s.scale)).powi(2) - x * x;
            }
            e.max(0.0)
        }
    }
}

/// Squared error of the reference decode of every block of `tensor` (read in place, one at a
/// time) against the original data, valid region only.
pub(crate) fn decode_error(tensor: &EncodedTensor, data: &[f32]) -> Result<f64, EncodeError> {
    let cfg = tensor.config();
    let grid = tensor.block_grid();
    let b = cfg.block;
    let cols = grid.cols();
    let per_block: Vec<f64> = (0..grid.count())
        .into_par_iter()
        .map_init(
            || BlockDecoder::new(*cfg),
            |dec, i| -> Result<f64, EncodeError> {
                let view = tensor.view(i)?;
                let e = grid.block_extent(i);
                let (r0, c0, h, w) = (e.row0, e.col0, e.height, e.width);
                let vals = dec.decode_view(&view);
                let mut e = 0.0;
                for r in 0..h {
                    for c in 0..w {
                        // The decoder rounds to f32 once: measure exactly what a reader gets.
                        let got = vals[r * b + c] as f32;
                        e += (f64::from(got) - f64::from(data[(r0 + r) * cols + c0 + c])).powi(2);
                    }
                }
                Ok(e)
            },
        )
        .collect::<Result<_, _>>()?;
    Ok(per_block.iter().sum())
}

/// The reference decode of `tensor` as a row-major f32 matrix (what a reader gets back), one
/// block row per task.
pub(crate) fn decoded_matrix(tensor: &EncodedTensor) -> Result<Vec<f32>, EncodeError> {
    let cfg = tensor.config();
    let grid = tensor.block_grid();
    let b = cfg.block;
    let cols = grid.cols();
    let mut out = vec![0f32; grid.rows() * cols];
    out.par_chunks_mut(b * cols).enumerate().try_for_each_init(
        || BlockDecoder::new(*cfg),
        |dec, (br, rows)| -> Result<(), EncodeError> {
            for bc in 0..grid.block_cols() {
                let i = grid.index(br, bc);
                let vals = dec.decode_view(&tensor.view(i)?);
                let e = grid.block_extent(i);
                for r in 0..e.height {
                    for c in 0..e.width {
                        rows[r * cols + e.col0 + c] = vals[r * b + c] as f32;
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}
