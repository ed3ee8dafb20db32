//! Encoding one tensor: RBE fit, residual transform, a global quantisation step found to meet the
//! error target, the per-block choice of the cheaper residual kind, and the check on the real decode.

use crate::blocks::{choose_blocks, decode_error, find_step, quant_error, round_sig, top_k_block};
use crate::error::EncodeError;
use crate::fit::BaseFitter;
use crate::settings::{EncodeSettings, ParamsChoice, Target};
use crate::spread::check_spread;
use rayon::prelude::*;
use rbe_format::codec::N_PARAMS;
use rbe_format::{
    BlockConfig, BlockGrid, EncodeStats, EncodedBlock, EncodedTensor, ParamsPrecision, RbeParams, Residual,
    SharedBytes, SourceDtype, SparseResidual, TensorDesc, TransformPlan,
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
pub(crate) struct Prepared {
    pub(crate) params: [f32; N_PARAMS],
    pub(crate) coefs: Vec<f32>,
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
    dtype: SourceDtype,
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
    if let Target::RelRmse(_) = settings.target {
        check_spread(name, data, cols, std)?;
    }
    if let Target::Rmse(x) = settings.target
        && std > 0.0
        && x >= std
    {
        return Err(EncodeError::ImpossibleTarget {
            tensor: name.to_owned(),
            reason: format!(
                "a target RMSE of {x} is at least the tensor's standard deviation ({std:.3e}): replacing every \
                 weight by the mean meets it; the largest sensible target is below {std:.3e} (or use --rel-rmse)"
            ),
        });
    }
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
    let grid = BlockGrid::new(rows, cols, b);
    let n_blocks = grid.count();
    let fitter = BaseFitter::new(b);
    let extent = |i: usize| -> (usize, usize, usize, usize) {
        let e = grid.block_extent(i);
        (e.row0, e.col0, e.height, e.width)
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
        // Steps are stored and applied in f32: a subnormal step loses its precision (and its
        // reciprocal overflows), so tiny weights get the smallest normal step instead.
        let smallest_step = f64::from(f32::MIN_POSITIVE);
        let min_step = (f64::from(max_abs) / 32767.0).max(smallest_step);
        let step = find_step(&prepared, budget * 0.999, min_step).ok_or_else(|| {
            let best = (quant_error(&prepared, min_step) / n_valid).sqrt();
            let reason = if min_step == smallest_step && matches!(settings.target, Target::Rmse(_)) {
                format!(
                    "an rmse of {t:.3e} is finer than RBE's f32 arithmetic resolves (its finest quantisation \
                     reaches {best:.3e}): ask for at least that"
                )
            } else if min_step == smallest_step {
                format!(
                    "the weights are too small for RBE's f32 arithmetic (standard deviation {std:.3e}: the finest \
                     quantisation in f32 reaches rmse {best:.3e}, asked {t:.3e}): scale the tensor up by a power of \
                     two before encoding, or --exclude it to keep it verbatim"
                )
            } else {
                format!(
                    "the finest quantisation RBE stores reaches rmse {best:.3e} (relative {:.3e}), asked {t:.3e}: \
                     ask for a larger error",
                    best / std.max(f64::MIN_POSITIVE),
                )
            };
            EncodeError::ImpossibleTarget { tensor: name.to_owned(), reason }
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
            dtype,
            block: b,
            transform: settings.transform,
            layout: settings.layout,
            values: settings.values,
            params,
            entropy: settings.entropy,
            stream_bytes: 0,
            xxh3: String::new(),
        };
        let (built, stream) = EncodedTensor::encode(name, desc, &blocks, settings.entropy)?;
        let stream = SharedBytes::from(stream);
        drop(blocks);
        // Measure the error on what a reader gets back from the stored bytes.
        let mut loaded = EncodedTensor::from_stream(name, built.desc().clone(), stream.clone(), true)?;
        drop(built);
        let err = decode_error(&loaded, data)?;
        let rmse = (err / n_valid).sqrt();
        let rel = if std > 0.0 { rmse / std } else { 0.0 };
        if exact_constant && err != 0.0 {
            return Err(EncodeError::TargetMissed { tensor: name.to_owned(), achieved: rel, target: 0.0 });
        }
        // The measured error is a statistic beside the description, outside the checksum.
        loaded.set_stats(EncodeStats {
            profile: settings.profile.map(|p| p.name().to_owned()),
            cache_blocks: settings.cache_blocks(),
            rmse: round_sig(rmse),
            rel_rmse: round_sig(rel),
            std: round_sig(std),
            k_mean: round_sig(k_mean),
            sparse,
            dense,
        });
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
