//! Encoding one tensor: RBE fit, residual transform, a global quantisation step found to meet the
//! error target, the per-block choice of the cheaper residual kind, and the check on the real decode.

use crate::error::EncodeError;
use crate::fit::BaseFitter;
use crate::rate::RateModel;
use crate::settings::{EncodeSettings, ParamsChoice, ResidualChoice, Target};
use rayon::prelude::*;
use rbe_format::basis::N_PARAMS;
use rbe_format::layout::{dense_payload_bytes, fits_width, needed_width};
use rbe_format::values::{decode_value, encode_value, scale_for};
use rbe_format::{
    BlockConfig, BlockDecoder, Coefficient, DenseResidual, EncodedBlock, EncodedTensor, Entropy, ParamsPrecision,
    RbeParams, Residual, SharedBytes, SparseResidual, TensorDesc, TransformPlan, ValueCodec,
};

/// Result of encoding one tensor.
#[derive(Debug)]
pub struct EncodedOutput {
    /// The tensor as loaded back from its stored stream (runtime layout).
    pub tensor: EncodedTensor,
    /// The stored stream bytes (what goes into the file).
    pub stream: SharedBytes,
}

/// Per-block intermediate state: the quantised base and the residual's transform coefficients.
struct Prepared {
    params: [f32; N_PARAMS],
    coefs: Vec<f32>,
}

fn check_finite(name: &str, data: &[f32], cols: usize) -> Result<(), EncodeError> {
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(EncodeError::NonFinite {
            tensor: name.to_owned(),
            index,
            row: index / cols,
            col: index % cols,
            value: data[index],
        });
    }
    Ok(())
}

fn mean_std(data: &[f32]) -> (f64, f64) {
    // Fixed-order chunked sums: deterministic whatever the thread count.
    let n = data.len() as f64;
    let sums: Vec<(f64, f64)> = data
        .par_chunks(1 << 16)
        .map(|c| c.iter().fold((0.0, 0.0), |(s, q), &v| (s + f64::from(v), q + f64::from(v) * f64::from(v))))
        .collect();
    let (s, q) = sums.iter().fold((0.0, 0.0), |(a, b), (s, q)| (a + s, b + q));
    let mean = s / n;
    (mean, (q / n - mean * mean).max(0.0).sqrt())
}

fn quantise_params(theta: &[f64; N_PARAMS], p: ParamsPrecision) -> [f32; N_PARAMS] {
    match p {
        ParamsPrecision::None => [0.0; N_PARAMS],
        ParamsPrecision::F32 => theta.map(|t| t as f32),
        ParamsPrecision::F16 => theta.map(|t| half::f16::from_f64(t).to_f32()),
    }
}

/// The 2-D view of a tensor: `[d0, product of the rest]`.
pub fn matrix_shape(shape: &[usize]) -> Option<(usize, usize)> {
    let (&first, rest) = shape.split_first()?;
    Some((first, rest.iter().product()))
}

/// Encodes one tensor (`data` row-major, finite) with `settings`.
pub fn encode_tensor(
    name: &str,
    data: &[f32],
    shape: &[usize],
    dtype: &str,
    settings: &EncodeSettings,
) -> Result<EncodedOutput, EncodeError> {
    settings.validate()?;
    let (rows, cols) = matrix_shape(shape)
        .filter(|&(r, c)| r > 0 && c > 0)
        .ok_or_else(|| EncodeError::Settings(format!("tensor `{name}`: empty shape {shape:?}")))?;
    if rows * cols != data.len() {
        return Err(EncodeError::Settings(format!(
            "tensor `{name}`: shape {shape:?} does not match {} values",
            data.len()
        )));
    }
    check_finite(name, data, cols)?;
    let b = settings.block;
    let (_, std) = mean_std(data);
    let target_rmse = match settings.target {
        Target::RelRmse(r) => Some(r * std),
        Target::Rmse(x) => Some(x),
        Target::TopK(_) => None,
    };
    if let Some(t) = target_rmse.filter(|t| !(t.is_finite() && *t >= 0.0)) {
        return Err(EncodeError::ImpossibleTarget {
            tensor: name.to_owned(),
            reason: format!("target rmse {t} is not a finite non-negative number"),
        });
    }
    let grid = (rows.div_ceil(b), cols.div_ceil(b));
    let n_blocks = grid.0 * grid.1;
    let fitter = BaseFitter::new(b);
    let extent = |i: usize| -> (usize, usize, usize, usize) {
        let (br, bc) = (i / grid.1, i % grid.1);
        (br * b, bc * b, (rows - br * b).min(b), (cols - bc * b).min(b))
    };
    let gather = |i: usize, out: &mut Vec<f32>| {
        let (r0, c0, h, w) = extent(i);
        out.clear();
        for r in 0..h {
            out.extend_from_slice(&data[(r0 + r) * cols + c0..][..w]);
        }
    };

    // A constant tensor (std 0) under a relative target must be exact: the f32 base does it.
    let exact_constant = std == 0.0 && target_rmse == Some(0.0);
    if target_rmse == Some(0.0) && !exact_constant {
        return Err(EncodeError::ImpossibleTarget {
            tensor: name.to_owned(),
            reason: "an error of exactly 0 needs lossless coding, which RBE's quantised residuals are not".into(),
        });
    }

    // 1. Fit the base everywhere and decide the parameter storage.
    let thetas: Vec<([f64; N_PARAMS], f64, f64)> = (0..n_blocks)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            gather(i, buf);
            let (_, _, h, w) = extent(i);
            let pinv = fitter.pinv(h, w);
            let theta = pinv.fit(buf);
            let mut base = vec![0.0f64; b * b];
            fitter.basis().add_base(&theta.map(|t| t as f32), &mut base);
            let (mut e0, mut e1) = (0.0, 0.0);
            for r in 0..h {
                for c in 0..w {
                    let x = f64::from(buf[r * w + c]);
                    e0 += x * x;
                    e1 += (x - base[r * b + c]).powi(2);
                }
            }
            (theta, e0, e1)
        })
        .collect();
    let params = if exact_constant {
        ParamsPrecision::F32
    } else {
        match settings.params {
            ParamsChoice::Fixed(p) => p,
            ParamsChoice::Auto if matches!(settings.target, Target::TopK(_)) => ParamsPrecision::F32,
            ParamsChoice::Auto => {
                // Bits the base saves: half a bit per coefficient per halving of the energy above
                // the quantisation noise; it costs 16 f16 bytes per block.
                let noise = target_rmse.unwrap_or(0.0).powi(2).max(f64::MIN_POSITIVE);
                let saved: f64 = thetas
                    .iter()
                    .enumerate()
                    .map(|(i, (_, e0, e1))| {
                        let (_, _, h, w) = extent(i);
                        let n = (h * w) as f64;
                        0.5 * n * ((e0 / n).max(noise) / (e1 / n).max(noise)).log2()
                    })
                    .sum();
                if saved > 128.0 * n_blocks as f64 { ParamsPrecision::F16 } else { ParamsPrecision::None }
            }
        }
    };
    let cfg = BlockConfig {
        block: b,
        transform: settings.transform,
        layout: settings.layout,
        values: settings.values,
        params,
    };
    cfg.validate()?;

    // 2. Residual against the *stored* base, padded with zeros, forward-transformed.
    let prepare = || -> Vec<Prepared> {
        (0..n_blocks)
            .into_par_iter()
            .map_init(
                || (Vec::new(), TransformPlan::<f64>::new(b, settings.transform), vec![0.0f64; b * b]),
                |(buf, plan, res), i| {
                    gather(i, buf);
                    let (_, _, h, w) = extent(i);
                    let theta = quantise_params(&thetas[i].0, params);
                    res.fill(0.0);
                    let mut base = vec![0.0f64; b * b];
                    fitter.basis().add_base(&theta, &mut base);
                    for r in 0..h {
                        for c in 0..w {
                            res[r * b + c] = f64::from(buf[r * w + c]) - base[r * b + c];
                        }
                    }
                    plan.forward(res);
                    Prepared { params: theta, coefs: res.iter().map(|&v| v as f32).collect() }
                },
            )
            .collect()
    };
    let prepared = prepare();

    let n_valid = (rows * cols) as f64;
    let mut step_state = None;
    if let (Target::RelRmse(_) | Target::Rmse(_), Some(t), false) = (settings.target, target_rmse, exact_constant) {
        let budget = t * t * n_valid;
        let max_abs = prepared.iter().flat_map(|p| p.coefs.iter()).fold(0f32, |m, &c| m.max(c.abs()));
        let min_step = f64::from(max_abs) / 32767.0;
        let step = find_step(&prepared, budget * 0.999, min_step).ok_or_else(|| {
            let best = quant_error(&prepared, min_step.max(f64::MIN_POSITIVE));
            EncodeError::ImpossibleTarget {
                tensor: name.to_owned(),
                reason: format!(
                    "16-bit residual coefficients reach at best rmse {:.3e} (relative {:.3e}); asked {:.3e}",
                    (best / n_valid).sqrt(),
                    (best / n_valid).sqrt() / std.max(f64::MIN_POSITIVE),
                    t
                ),
            }
        })?;
        step_state = Some((step, min_step));
    }

    // Choose the blocks, store them, load them back and measure the real decode; should float
    // rounding push a tensor over its target, tighten the step and go again.
    // The coefficient-domain search counts padding too, so edge-heavy tensors land below target:
    // then grow the step (bracketed) while the real error allows, keeping the best valid result.
    let has_padding = rows % b != 0 || cols % b != 0;
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut best: Option<EncodedOutput> = None;
    let mut attempt = 0;
    // The coefficients are dropped once the blocks are chosen (they are the biggest buffer of all)
    // and recomputed, deterministically, in the rare case of a second attempt.
    let mut prepared = Some(prepared);
    loop {
        let prepared = prepared.take().unwrap_or_else(prepare);
        let blocks: Vec<EncodedBlock> = match (settings.target, step_state) {
            (Target::TopK(k), _) => prepared.par_iter().map(|p| top_k_block(p, k, &cfg)).collect(),
            (_, Some((step, _))) => choose_blocks(&prepared, step as f32, &cfg, settings.entropy, settings.residual),
            (_, None) => prepared
                .iter()
                .map(|p| EncodedBlock {
                    params: RbeParams(p.params),
                    residual: Residual::Sparse(SparseResidual { scale: 1.0, coefficients: vec![] }),
                })
                .collect(),
        };
        drop(prepared);
        let (sparse, dense) = blocks.iter().fold((0, 0), |(s, d), b| match b.residual {
            Residual::Sparse(_) => (s + 1, d),
            Residual::Dense(_) => (s, d + 1),
        });
        let k_mean = blocks.iter().map(|b| b.coefficient_count()).sum::<usize>() as f64 / n_blocks as f64;
        let desc = TensorDesc {
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype: dtype.to_owned(),
            block: b,
            transform: settings.transform,
            layout: settings.layout,
            values: settings.values,
            params,
            entropy: settings.entropy,
            profile: settings.profile.map(|p| p.name().to_owned()),
            cache_blocks: settings.cache_blocks(),
            rmse: 0.0,
            rel_rmse: 0.0,
            std,
            k_mean,
            sparse,
            dense,
            stream_bytes: 0,
            xxh3: String::new(),
        };
        let (built, stream) = EncodedTensor::encode(name, desc, &blocks, settings.entropy)?;
        let stream = SharedBytes::from(stream);
        drop(blocks);
        // Measure the error on what a reader gets back from the stored bytes.
        let mut loaded = EncodedTensor::from_stream(name, built.desc().clone(), stream.clone(), true)?;
        drop(built);
        let err = decode_error(&|i| loaded.block(i), n_blocks, &cfg, data, rows, cols, grid)?;
        let rmse = (err / n_valid).sqrt();
        let rel = if std > 0.0 { rmse / std } else { 0.0 };
        if exact_constant && err != 0.0 {
            return Err(EncodeError::TargetMissed { tensor: name.to_owned(), achieved: rel, target: 0.0 });
        }
        // The measured error lives in the description (metadata), not in the checksummed stream.
        let desc = loaded.desc_mut();
        desc.rmse = round_sig(rmse);
        desc.rel_rmse = round_sig(rel);
        desc.std = round_sig(desc.std);
        desc.k_mean = round_sig(desc.k_mean);
        let output = EncodedOutput { tensor: loaded, stream };
        let (Some(t), Some((step, min_step))) = (target_rmse, step_state) else { return Ok(output) };
        attempt += 1;
        if rmse <= t {
            lo = step;
            best = Some(output);
            if !has_padding || rmse >= 0.98 * t || attempt >= 8 {
                return Ok(best.expect("just set"));
            }
        } else {
            hi = step;
            if attempt >= 8 || step <= min_step {
                return best.ok_or(EncodeError::TargetMissed {
                    tensor: name.to_owned(),
                    achieved: rel,
                    target: if std > 0.0 { t / std } else { t },
                });
            }
        }
        let guess = step * (0.995 * t / rmse.max(f64::MIN_POSITIVE));
        let next = if guess > lo && guess < hi {
            guess
        } else if hi.is_finite() && lo > 0.0 {
            (lo * hi).sqrt()
        } else {
            guess
        };
        step_state = Some((next.max(min_step), min_step));
        continue;
    }
}

/// `x` rounded to 7 significant digits, so the metadata JSON stays short (up, for errors: a
/// recorded error is never below the measured one).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(6 - x.abs().log10().floor() as i32);
    (x * scale).ceil() / scale
}

/// `round(c * inv)` half away from zero, without a libm call (the default x86-64 target has no
/// SSE4.1 `roundss`); used for every quantisation so error accounting and blocks agree.
#[inline]
fn quantise(c: f32, inv: f32) -> f32 {
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
fn quant_error(prepared: &[Prepared], step: f64) -> f64 {
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
fn find_step(prepared: &[Prepared], budget: f64, min_step: f64) -> Option<f64> {
    let n: usize = prepared.iter().map(|p| p.coefs.len()).sum();
    let min_step = min_step.max(f64::MIN_POSITIVE);
    if quant_error(prepared, min_step) > budget {
        return None;
    }
    // High-rate guess: error per coefficient = step^2 / 12.
    let guess = (12.0 * budget / n as f64).sqrt().max(min_step);
    let (mut lo, mut hi) = (min_step, f64::INFINITY);
    let mut step = guess;
    for _ in 0..40 {
        let e = quant_error(prepared, step);
        if e <= budget {
            lo = step;
            if e >= budget * 0.995 {
                break;
            }
        } else {
            hi = step;
        }
        let next = if hi.is_finite() {
            // Secant-like step in log space, kept inside the bracket.
            // Aim inside the accepted band [0.995, 1] x budget, not at its edge.
            let scaled = step * (0.9975 * budget / e.max(f64::MIN_POSITIVE)).sqrt();
            if scaled > lo && scaled < hi { scaled } else { (lo * hi).sqrt() }
        } else {
            step * (0.9975 * budget / e.max(f64::MIN_POSITIVE)).sqrt().clamp(1.0001, 4.0)
        };
        if hi.is_finite() && hi / lo < 1.0 + 1e-4 {
            break;
        }
        step = next;
    }
    Some(lo)
}

/// Fixed top-K block: the K largest coefficients (ties by position), values through the codec.
fn top_k_block(p: &Prepared, k: usize, cfg: &BlockConfig) -> EncodedBlock {
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

/// Picks, per block, the cheaper of the dense and sparse residual at quantisation `step`.
///
/// Storage cost decides (estimated entropy-coded bits, or exact raw bytes with entropy off), with
/// one guard for the runtime: a sparse block may not take more than 1.5x the dense block's runtime
/// bytes, since loading expands entropy-coded blocks to their fixed-width layout.
fn choose_blocks(
    prepared: &[Prepared],
    step: f32,
    cfg: &BlockConfig,
    entropy: Entropy,
    allowed: ResidualChoice,
) -> Vec<EncodedBlock> {
    let inv = 1.0 / step;
    let quantised: Vec<Vec<i16>> =
        prepared.par_iter().map(|p| p.coefs.iter().map(|&c| quantise(c, inv) as i16).collect()).collect();
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

fn raw_dense_bytes(d: &DenseResidual) -> usize {
    let outliers = d.values.iter().filter(|&&v| !fits_width(i32::from(v), d.width)).count();
    1 + 4 + dense_payload_bytes(d.values.len(), d.width) + 1 + 4 * outliers
}

/// Dense residual with the payload width that minimises the raw bytes (payload + outliers).
fn dense_block(p: &Prepared, q: Vec<i16>, step: f32) -> EncodedBlock {
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
fn sparse_block(p: &Prepared, dense: &EncodedBlock, step: f32, cfg: &BlockConfig) -> EncodedBlock {
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
fn block_error(p: &Prepared, block: &EncodedBlock, cfg: &BlockConfig) -> f64 {
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

/// Squared error of the reference decode of blocks `0..n_blocks` (parsed one at a time by
/// `block`, so they never all sit in memory) against the original data, valid region only.
fn decode_error(
    block: &(dyn Fn(usize) -> Result<EncodedBlock, rbe_format::FormatError> + Sync),
    n_blocks: usize,
    cfg: &BlockConfig,
    data: &[f32],
    rows: usize,
    cols: usize,
    grid: (usize, usize),
) -> Result<f64, EncodeError> {
    let b = cfg.block;
    let per_block: Vec<f64> = (0..n_blocks)
        .into_par_iter()
        .map_init(
            || BlockDecoder::new(*cfg),
            |dec, i| -> Result<f64, EncodeError> {
                let block = block(i)?;
                let (br, bc) = (i / grid.1, i % grid.1);
                let (r0, c0) = (br * b, bc * b);
                let (h, w) = ((rows - r0).min(b), (cols - c0).min(b));
                let vals = dec.decode(&block);
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
