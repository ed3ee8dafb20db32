//! Encoding one tensor: RBE fit, residual transform, a global quantisation step found to meet the
//! error target, the per-block choice of the cheaper residual kind, and the check on the real decode.

use crate::blocks::{
    choose_blocks, decode_error, decoded_matrix, find_step, quant_error, quantise_blocks, round_sig, rounded_error,
    search_step, top_k_block,
};
use crate::calibration::{TensorCalibration, quadratic_trace};
use crate::error::EncodeError;
use crate::fit::BaseFitter;
use crate::gptq::{GptqPlan, blocks_of_rows, coefficient_rows};
use crate::settings::{EncodeSettings, ParamsChoice, Target};
use crate::spread::check_spread;
use rayon::prelude::*;
use rbe_format::codec::N_PARAMS;
use rbe_format::{
    BlockConfig, BlockGrid, EncodeStats, EncodedBlock, EncodedTensor, ParamsPrecision, RbeParams, Residual,
    SharedBytes, SourceDtype, SparseResidual, TensorDesc, TransformPlan,
};
use std::sync::Arc;

/// Result of encoding one tensor.
#[derive(Debug)]
pub struct EncodedOutput {
    /// The tensor as loaded back from its stored stream (runtime layout).
    pub tensor: EncodedTensor,
    /// The stored stream bytes (what goes into the file).
    pub stream: SharedBytes,
    /// With calibration: the relative output error `sqrt(tr(E H E^T) / tr(W H W^T))` of the decode
    /// on the calibration inputs.
    pub output_rel_rmse: Option<f64>,
    /// The quantisation step the dense residuals use (`None` for top-K or exact tensors).
    pub step: Option<f64>,
}

/// What a tensor's encode may use beyond the settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct TensorOptions<'a> {
    /// Its calibration record: quantise with GPTQ against `H`, and read a relative target as
    /// relative *output* error on the calibration inputs.
    pub calibration: Option<&'a TensorCalibration>,
    /// A quantisation step chosen beforehand (a model-wide bits-per-weight allocation): no step
    /// search, no target check.
    pub step: Option<f64>,
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

pub(crate) fn mean_std(data: &[f32]) -> (f64, f64) {
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
    encode_tensor_with(name, data, shape, dtype, settings, TensorOptions::default())
}

/// How the dense integers are picked at a given step.
enum Quantiser {
    /// Round every coefficient to the nearest multiple of the step (weight-error optimal).
    Round,
    /// GPTQ against the calibration's `H`, on the tensor's coefficient rows.
    Gptq { plan: Arc<GptqPlan>, rows: Vec<f32> },
}

impl Quantiser {
    /// One integer vector per block, and the error the quantiser predicts (`Round`: weight-domain
    /// squared error; `Gptq`: output error `tr(E H E^T)` with the damped `H`).
    fn run(&self, prepared: &[Prepared], step: f64, grid: &BlockGrid) -> (Vec<Vec<i16>>, f64) {
        match self {
            Quantiser::Round => {
                let q = quantise_blocks(prepared, step as f32);
                let err = rounded_error(prepared, &q, step as f32);
                (q, err)
            }
            Quantiser::Gptq { plan, rows } => {
                let r = plan.quantise(rows, step as f32);
                (blocks_of_rows(&r.q, grid, grid.block()), r.loss)
            }
        }
    }
}

/// A tensor ready to quantise: the base fitted and stored, the residual transformed, the
/// quantiser built, and the targets resolved.
pub(crate) struct Prepped<'a> {
    name: &'a str,
    data: &'a [f32],
    shape: &'a [usize],
    dtype: SourceDtype,
    settings: &'a EncodeSettings,
    calibration: Option<&'a TensorCalibration>,
    cfg: BlockConfig,
    grid: BlockGrid,
    prepared: Vec<Prepared>,
    quantiser: Quantiser,
    residual: crate::settings::ResidualChoice,
    std: f64,
    /// `tr(W H W^T)` when calibrated.
    output_energy: Option<f64>,
    /// The weight-domain RMSE a relative or absolute target asks for.
    target_rmse: Option<f64>,
    /// The relative output error a calibrated relative target asks for.
    output_target: Option<f64>,
    exact_constant: bool,
    min_step: f64,
}

/// One point of a tensor's rate-distortion curve (see [`Prepped::rd_point`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RdPoint {
    /// The quantisation step.
    pub step: f64,
    /// Stored stream bytes at that step (entropy coded, exact).
    pub bytes: u64,
    /// Squared relative error: output error when calibrated, else weight error over the variance.
    pub rel_sq: f64,
}

/// Encodes one tensor with per-tensor [`TensorOptions`] (calibration, a preset step).
pub fn encode_tensor_with(
    name: &str,
    data: &[f32],
    shape: &[usize],
    dtype: SourceDtype,
    settings: &EncodeSettings,
    opts: TensorOptions<'_>,
) -> Result<EncodedOutput, EncodeError> {
    encode_tensor_with_plan(name, data, shape, dtype, settings, opts, None)
}

/// [`encode_tensor_with`], reusing a GPTQ plan built earlier for the same tensor and calibration
/// (a bits-per-weight encode measures every tensor's curve first, then encodes it).
pub(crate) fn encode_tensor_with_plan(
    name: &str,
    data: &[f32],
    shape: &[usize],
    dtype: SourceDtype,
    settings: &EncodeSettings,
    opts: TensorOptions<'_>,
    plan: Option<Arc<GptqPlan>>,
) -> Result<EncodedOutput, EncodeError> {
    if let Target::BitsPerWeight(bpw) = settings.target
        && opts.step.is_none()
    {
        settings.validate()?;
        return crate::allocate::encode_tensor_to_bpw(name, data, shape, dtype, settings, opts.calibration, bpw);
    }
    Prepped::new(name, data, shape, dtype, settings, opts, plan)?.encode(opts.step)
}

impl<'a> Prepped<'a> {
    /// Checks the tensor and its target, fits the base and transforms the residual.
    pub(crate) fn new(
        name: &'a str,
        data: &'a [f32],
        shape: &'a [usize],
        dtype: SourceDtype,
        settings: &'a EncodeSettings,
        opts: TensorOptions<'a>,
        plan: Option<Arc<GptqPlan>>,
    ) -> Result<Self, EncodeError> {
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
        if let Some(step) = opts.step
            && !(step.is_finite() && step > 0.0)
        {
            return Err(EncodeError::Settings(format!("tensor `{name}`: quantisation step {step} is not positive")));
        }
        if opts.calibration.is_some() && matches!(settings.target, Target::Rmse(_) | Target::TopK(_)) {
            return Err(EncodeError::Settings(
                "with a calibration the target is a relative output error (--rel-rmse) or --target-bpw".into(),
            ));
        }
        if let (Target::RelRmse(_), None) = (settings.target, opts.step) {
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
        // The weight-domain RMSE the step aims at: the target itself, or (preset step) a proxy
        // that only steers the parameter-storage choice.
        let target_rmse = match (opts.step, settings.target) {
            (Some(step), _) => Some(step / 12f64.sqrt()),
            (None, Target::RelRmse(r)) => Some(r * std),
            (None, Target::Rmse(x)) => Some(x),
            (None, Target::TopK(_) | Target::BitsPerWeight(_)) => None,
        };
        if let Some(t) = target_rmse.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(EncodeError::ImpossibleTarget {
                tensor: name.to_owned(),
                reason: format!("target rmse {t} is not a finite non-negative number"),
            });
        }
        // A constant tensor (std 0) under a relative target must be exact: the f32 base does it.
        let exact_constant = std == 0.0 && target_rmse == Some(0.0) && opts.step.is_none();
        if target_rmse == Some(0.0) && !exact_constant {
            return Err(EncodeError::ImpossibleTarget {
                tensor: name.to_owned(),
                reason: "an error of exactly 0 needs lossless coding, which RBE's quantised residuals are not".into(),
            });
        }
        let calibration = if exact_constant { None } else { opts.calibration };
        let output_target = match (calibration, settings.target, opts.step) {
            (Some(_), Target::RelRmse(x), None) => Some(x),
            _ => None,
        };
        // tr(W H W^T): the output energy a relative output error is measured against.
        let output_energy = calibration.map(|c| c.output_energy(data));
        if let Some(p) = output_energy
            && !(p.is_finite() && p > 0.0)
        {
            return Err(EncodeError::Calibration {
                tensor: name.to_owned(),
                reason: "the calibration inputs give this Linear no output (tr(W H W^T) = 0)".into(),
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
                    // Bits the base saves: half a bit per coefficient per halving of the energy
                    // above the quantisation noise; it costs 16 f16 bytes per block.
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
        // GPTQ's integers are only kept exactly by dense blocks and q16 sparse entries (the same
        // integers); any other sparse codec would re-round them.
        let residual = if calibration.is_some() && cfg.values != rbe_format::ValueCodec::Q16 {
            crate::settings::ResidualChoice::Dense
        } else {
            settings.residual
        };

        // 2. Residual against the *stored* base, padded with zeros, forward-transformed.
        let prepared: Vec<Prepared> = (0..n_blocks)
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
            .collect();
        let quantiser = match calibration {
            Some(c) => {
                let plan = match plan {
                    Some(p) => p,
                    None => Arc::new(
                        GptqPlan::new(c, &grid, b, settings.transform)
                            .map_err(|reason| EncodeError::Calibration { tensor: name.to_owned(), reason })?,
                    ),
                };
                let coefs: Vec<&[f32]> = prepared.iter().map(|p| p.coefs.as_slice()).collect();
                Quantiser::Gptq { plan, rows: coefficient_rows(&coefs, &grid, b) }
            }
            None => Quantiser::Round,
        };
        let max_abs = prepared.iter().flat_map(|p| p.coefs.iter()).fold(0f32, |m, &c| m.max(c.abs()));
        Ok(Prepped {
            name,
            data,
            shape,
            dtype,
            settings,
            calibration,
            cfg,
            grid,
            prepared,
            quantiser,
            residual,
            std,
            output_energy,
            target_rmse,
            output_target,
            exact_constant,
            // Steps are stored and applied in f32: a subnormal step loses its precision (and its
            // reciprocal overflows), so tiny weights get the smallest normal step instead.
            min_step: (f64::from(max_abs) / 32767.0).max(f64::from(f32::MIN_POSITIVE)),
        })
    }

    fn n_valid(&self) -> f64 {
        (self.grid.rows() * self.grid.cols()) as f64
    }

    /// The squared relative error the quantiser predicts at `step`, and its integers.
    fn predicted(&self, step: f64) -> (Vec<Vec<i16>>, f64) {
        let (q, err) = self.quantiser.run(&self.prepared, step, &self.grid);
        let rel_sq = match self.output_energy {
            Some(energy) => err / energy,
            None => err / (self.n_valid() * (self.std * self.std).max(f64::MIN_POSITIVE)),
        };
        (q, rel_sq)
    }

    /// Stored bytes and predicted squared relative error at `step`: the blocks are chosen and
    /// entropy coded exactly as [`Self::encode`] would, without the decode check.
    pub(crate) fn rd_point(&self, step: f64) -> Result<RdPoint, EncodeError> {
        let step = step.max(self.min_step).max(f64::MIN_POSITIVE);
        let (q, rel_sq) = self.predicted(step);
        let blocks = choose_blocks(&self.prepared, q, step as f32, &self.cfg, self.settings.entropy, self.residual);
        let (_, stream) = EncodedTensor::encode(self.name, self.desc(), &blocks, self.settings.entropy)?;
        Ok(RdPoint { step, bytes: stream.len() as u64, rel_sq })
    }

    /// The GPTQ plan, when calibrated (to reuse for the same tensor).
    pub(crate) fn plan(&self) -> Option<Arc<GptqPlan>> {
        match &self.quantiser {
            Quantiser::Gptq { plan, .. } => Some(plan.clone()),
            Quantiser::Round => None,
        }
    }

    /// The tensor's standard deviation.
    pub(crate) fn std(&self) -> f64 {
        self.std
    }

    /// The tensor's shape as stored.
    pub(crate) fn shape_u64(&self) -> Vec<u64> {
        self.shape.iter().map(|&d| d as u64).collect()
    }

    /// The number of weights.
    pub(crate) fn weights(&self) -> usize {
        self.data.len()
    }

    fn desc(&self) -> TensorDesc {
        TensorDesc {
            shape: self.shape.iter().map(|&d| d as u64).collect(),
            dtype: self.dtype,
            block: self.cfg.block,
            transform: self.settings.transform,
            layout: self.settings.layout,
            values: self.settings.values,
            params: self.cfg.params,
            entropy: self.settings.entropy,
            stream_bytes: 0,
            xxh3: String::new(),
        }
    }

    /// The step the target asks for (searched), or `None` for top-K and exact tensors.
    fn search(&self) -> Result<Option<f64>, EncodeError> {
        let name = self.name;
        let min_step = self.min_step;
        if self.exact_constant {
            return Ok(None);
        }
        if let Some(x) = self.output_target {
            let err = |step: f64| self.predicted(step).1;
            let guess = (12.0 * x * x * self.std * self.std).sqrt().max(min_step);
            // GPTQ runs are the expensive part: a looser acceptance band than rounding's.
            return search_step(&err, x * x * 0.999, min_step, guess, 0.97).map(Some).ok_or_else(|| {
                EncodeError::ImpossibleTarget {
                    tensor: name.to_owned(),
                    reason: format!(
                        "16-bit residual coefficients reach at best relative output error {:.3e}; asked {x:.3e}",
                        err(min_step.max(f64::MIN_POSITIVE)).sqrt()
                    ),
                }
            });
        }
        let (Target::RelRmse(_) | Target::Rmse(_), Some(t)) = (self.settings.target, self.target_rmse) else {
            return Ok(None);
        };
        let n_valid = self.n_valid();
        let budget = t * t * n_valid;
        let std = self.std;
        find_step(&self.prepared, budget * 0.999, min_step).map(Some).ok_or_else(|| {
            let smallest_step = f64::from(f32::MIN_POSITIVE);
            let best = (quant_error(&self.prepared, min_step) / n_valid).sqrt();
            let reason = if min_step == smallest_step && matches!(self.settings.target, Target::Rmse(_)) {
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
        })
    }

    /// Encodes at `preset` (no search, no check), or at the step the target asks for, checked on
    /// the real decode.
    pub(crate) fn encode(&self, preset: Option<f64>) -> Result<EncodedOutput, EncodeError> {
        let name = self.name;
        let (rows, cols) = (self.grid.rows(), self.grid.cols());
        let b = self.cfg.block;
        let n_blocks = self.grid.count();
        let n_valid = self.n_valid();
        let std = self.std;
        let min_step = self.min_step;
        let mut step_state = match preset {
            Some(s) => Some(s.max(min_step)),
            None => self.search()?,
        };
        // Choose the blocks, store them, load them back and measure the real decode; should float
        // rounding push a tensor over its target, tighten the step and go again.
        // The coefficient-domain search counts padding too, so edge-heavy tensors land below
        // target: then grow the step (bracketed) while the real error allows, keeping the best
        // valid result.
        let has_padding = rows % b != 0 || cols % b != 0;
        let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
        let mut best: Option<EncodedOutput> = None;
        let mut attempt = 0;
        loop {
            let blocks: Vec<EncodedBlock> = match (self.settings.target, step_state) {
                (Target::TopK(k), _) => self.prepared.par_iter().map(|p| top_k_block(p, k, &self.cfg)).collect(),
                (_, Some(step)) => {
                    let (quantised, _) = self.quantiser.run(&self.prepared, step, &self.grid);
                    choose_blocks(
                        &self.prepared,
                        quantised,
                        step as f32,
                        &self.cfg,
                        self.settings.entropy,
                        self.residual,
                    )
                }
                (_, None) => self
                    .prepared
                    .iter()
                    .map(|p| EncodedBlock {
                        params: RbeParams(p.params),
                        residual: Residual::Sparse(SparseResidual { scale: 1.0, coefficients: vec![] }),
                    })
                    .collect(),
            };
            let (sparse, dense) = blocks.iter().fold((0, 0), |(s, d), b| match b.residual {
                Residual::Sparse(_) => (s + 1, d),
                Residual::Dense(_) => (s, d + 1),
            });
            let k_mean = blocks.iter().map(|b| b.coefficient_count()).sum::<usize>() as f64 / n_blocks as f64;
            let (built, stream) = EncodedTensor::encode(name, self.desc(), &blocks, self.settings.entropy)?;
            let stream = SharedBytes::from(stream);
            drop(blocks);
            // Measure the error on what a reader gets back from the stored bytes.
            let mut loaded = EncodedTensor::from_stream(name, built.desc().clone(), stream.clone(), true)?;
            drop(built);
            let (err, output_rel) = match (self.calibration, self.output_energy) {
                (Some(c), Some(energy)) => {
                    let mut e = decoded_matrix(&loaded)?;
                    e.iter_mut().zip(self.data).for_each(|(d, &w)| *d = w - *d);
                    let err: f64 = e.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                    (err, Some((quadratic_trace(&c.hessian, cols, &e) / energy).sqrt()))
                }
                _ => (decode_error(&loaded, self.data)?, None),
            };
            let rmse = (err / n_valid).sqrt();
            let rel = if std > 0.0 { rmse / std } else { 0.0 };
            if self.exact_constant && err != 0.0 {
                return Err(EncodeError::TargetMissed { tensor: name.to_owned(), achieved: rel, target: 0.0 });
            }
            // The measured error is a statistic beside the description, outside the checksum.
            loaded.set_stats(EncodeStats {
                profile: self.settings.profile.map(|p| p.name().to_owned()),
                cache_blocks: self.settings.cache_blocks(),
                rmse: round_sig(rmse),
                rel_rmse: round_sig(rel),
                std: round_sig(std),
                k_mean: round_sig(k_mean),
                sparse,
                dense,
            });
            let output =
                EncodedOutput { tensor: loaded, stream, output_rel_rmse: output_rel.map(round_sig), step: step_state };
            let Some(step) = step_state.filter(|_| preset.is_none()) else { return Ok(output) };
            // What is checked against what: the relative output error when calibrated, else the RMSE.
            let (achieved, goal, shown_goal) = match (self.output_target, self.target_rmse) {
                (Some(x), _) => (output_rel.expect("calibrated"), x, x),
                (None, Some(t)) => (rmse, t, if std > 0.0 { t / std } else { t }),
                (None, None) => return Ok(output),
            };
            attempt += 1;
            if achieved <= goal {
                lo = step;
                best = Some(output);
                if !has_padding || self.output_target.is_some() || achieved >= 0.98 * goal || attempt >= 8 {
                    return Ok(best.expect("just set"));
                }
            } else {
                hi = step;
                if attempt >= 8 || step <= min_step {
                    return best.ok_or(EncodeError::TargetMissed {
                        tensor: name.to_owned(),
                        achieved: if self.output_target.is_some() { achieved } else { rel },
                        target: shown_goal,
                    });
                }
            }
            let guess = step * (0.995 * goal / achieved.max(f64::MIN_POSITIVE));
            let next = if guess > lo && guess < hi {
                guess
            } else if hi.is_finite() && lo > 0.0 {
                (lo * hi).sqrt()
            } else {
                guess
            };
            step_state = Some(next.max(min_step));
        }
    }
}
