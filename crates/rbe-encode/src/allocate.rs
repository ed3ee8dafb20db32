//! Bits-per-weight targets: one quantisation step per tensor, chosen so that the whole selection
//! comes in at or below the asked bits per weight while the predicted model distortion
//! `sum_t w_t r_t^2` is smallest.
//!
//! Each tensor's rate-distortion curve is measured at a ladder of steps (exact stored bytes from
//! the real block choice and entropy coder; the squared relative error the quantiser predicts:
//! output error for a calibrated tensor, weight error otherwise). The allocation is Lagrangian:
//! for a multiplier `lambda` every tensor takes the step minimising `w_t r_t^2 + lambda bits_t`
//! on its (log-log interpolated) curve, and `lambda` is bisected until the bits fit.
//!
//! Weights `w_t`: a calibrated tensor with a measured sensitivity uses it (distortion per unit of
//! `r^2`); every other tensor counts its size, `w_t = n_t * c`, with `c` the median sensitivity per
//! weight of the probed tensors (1 when none was probed), so without calibration every tensor ends
//! at about the same relative error, as a uniform `--rel-rmse` would.

use crate::calibration::TensorCalibration;
use crate::error::EncodeError;
use crate::settings::EncodeSettings;
use crate::tensor::{EncodedOutput, Prepped, RdPoint, TensorOptions};
use rbe_format::{EncodeStats, SourceDtype, TensorDesc, TensorReport};

/// Steps measured per tensor, relative to its standard deviation: `2^k` for `k` within this many
/// octaves of the step a Gaussian tensor would take at the asked rate (+-2 bits); between them
/// the curve is interpolated in log-log (bits and log-error are near linear in log-step there).
const LADDER_HALF_WIDTH: i32 = 2;
/// Candidate steps per tensor between two measured ones when allocating.
const SUBSTEPS: usize = 16;

/// One tensor's curve and its weight in the objective.
#[derive(Debug, Clone)]
pub struct TensorCurve {
    /// Tensor name.
    pub name: String,
    /// Weights in the tensor.
    pub weights: usize,
    /// `w_t`: model distortion per unit of squared relative error (before the size fallback).
    pub sensitivity: Option<f64>,
    /// Bytes the tensor's entries add to the container header (from the report definition).
    pub header_bytes: u64,
    points: Vec<RdPoint>,
}

impl TensorCurve {
    /// Candidate `(step, bits, rel_sq)` on the curve, interpolated in log-log between points.
    fn candidates(&self) -> Vec<(f64, f64, f64)> {
        let bits = |p: &RdPoint| 8.0 * (p.bytes + self.header_bytes) as f64;
        let mut out = Vec::new();
        for w in self.points.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            for k in 0..SUBSTEPS {
                let t = k as f64 / SUBSTEPS as f64;
                let lerp = |x: f64, y: f64| (x.max(1e-300).ln() * (1.0 - t) + y.max(1e-300).ln() * t).exp();
                out.push((lerp(a.step, b.step), lerp(bits(a), bits(b)), lerp(a.rel_sq, b.rel_sq)));
            }
        }
        if let Some(last) = self.points.last() {
            out.push((last.step, bits(last), last.rel_sq));
        }
        out
    }
}

/// Measures the curve of one prepared tensor.
///
/// The ladder is centred on the step at which a Gaussian tensor stores `bpw` bits per weight
/// beside its header entry (entropy-coded uniform quantisation: about `2.05 - log2(step / std)`
/// bits), and extended until it brackets `bpw`.
pub(crate) fn measure_curve(
    prep: &Prepped<'_>,
    name: &str,
    std: f64,
    sensitivity: Option<f64>,
    bpw: f64,
) -> Result<TensorCurve, EncodeError> {
    let scale = if std > 0.0 { std } else { 1.0 };
    let shape = prep.shape_u64();
    let header = header_bytes(name, shape, 0);
    let n = prep.weights().max(1) as f64;
    // The rate left for the blocks once the header entry is paid.
    let net = bpw - 8.0 * header as f64 / n;
    let centre = (2.05 - net).round().clamp(-24.0, 4.0) as i32;
    let bits_per_weight = |p: &RdPoint| 8.0 * (p.bytes + header) as f64 / n;
    let mut points: Vec<RdPoint> = Vec::new();
    let (mut lo, mut hi) = (centre - LADDER_HALF_WIDTH, centre + LADDER_HALF_WIDTH);
    for k in lo..=hi {
        points.push(prep.rd_point(scale * 2f64.powi(k))?);
    }
    // Extend the ladder until it brackets the asked rate (small tensors carry a large header
    // share; unusual ones a different entropy), a few octaves at most.
    // The coarse end goes well below the rate: the allocation may shift bits between tensors, and
    // the file's framing comes out of the same budget.
    while points.last().is_some_and(|p| bits_per_weight(p) > 0.8 * bpw) && hi < centre + 12 {
        hi += 1;
        points.push(prep.rd_point(scale * 2f64.powi(hi))?);
    }
    while points.first().is_some_and(|p| bits_per_weight(p) < bpw) && lo > centre - 12 {
        lo -= 1;
        points.insert(0, prep.rd_point(scale * 2f64.powi(lo))?);
    }
    // Steps below the smallest representable collapse onto it: keep one of each.
    points.dedup_by(|b, a| b.step <= a.step);
    Ok(TensorCurve { name: name.to_owned(), weights: prep.weights(), sensitivity, header_bytes: header, points })
}

/// Header bytes of a compressed entry, as the report counts them (statistics at typical widths).
fn header_bytes(name: &str, shape: Vec<u64>, stream_bytes: u64) -> u64 {
    let desc = TensorDesc {
        shape,
        dtype: SourceDtype::F32,
        block: 64,
        transform: rbe_format::Transform::Dct,
        layout: rbe_format::Layout::P32,
        values: rbe_format::ValueCodec::Q16,
        params: rbe_format::ParamsPrecision::None,
        entropy: rbe_format::Entropy::Rans,
        stream_bytes,
        xxh3: "0123456789abcdef".into(),
    };
    let stats = EncodeStats {
        profile: None,
        cache_blocks: 16,
        rmse: 0.001_234_567,
        rel_rmse: 0.071_234_56,
        std: 0.041_234_56,
        k_mean: 4096.0,
        sparse: 0,
        dense: 1000,
    };
    TensorReport::compressed(name, &desc, &stats).header_bytes
}

/// The fewest bits the curves can store (every tensor at its coarsest step), and how many of them
/// are header entries.
pub fn coarsest_bits(curves: &[TensorCurve]) -> (f64, f64) {
    let total = curves.iter().map(|c| c.candidates().iter().map(|p| p.1).fold(f64::INFINITY, f64::min)).sum();
    let headers = curves.iter().map(|c| 8.0 * c.header_bytes as f64).sum();
    (total, headers)
}

/// The step per tensor (same order as `curves`) that fits `budget_bits` with the least predicted
/// distortion, or `None` when even the coarsest steps do not fit.
pub fn allocate(curves: &[TensorCurve], budget_bits: f64) -> Option<Vec<f64>> {
    let per_weight: Vec<f64> = {
        let mut v: Vec<f64> = curves
            .iter()
            .filter_map(|c| c.sensitivity.map(|s| s / c.weights.max(1) as f64))
            .filter(|s| *s > 0.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let fallback = per_weight.get(per_weight.len() / 2).copied().unwrap_or(1.0);
    let weights: Vec<f64> =
        curves.iter().map(|c| c.sensitivity.filter(|s| *s > 0.0).unwrap_or(fallback * c.weights as f64)).collect();
    let candidates: Vec<Vec<(f64, f64, f64)>> = curves.iter().map(TensorCurve::candidates).collect();
    let pick = |lambda: f64| -> (Vec<usize>, f64) {
        let mut total = 0.0;
        let choice = candidates
            .iter()
            .zip(&weights)
            .map(|(cands, &w)| {
                let (i, c) = cands
                    .iter()
                    .enumerate()
                    .min_by(|(_, a), (_, b)| (w * a.2 + lambda * a.1).total_cmp(&(w * b.2 + lambda * b.1)))
                    .expect("a curve has points");
                total += c.1;
                i
            })
            .collect();
        (choice, total)
    };
    // The coarsest choice must fit at all.
    let coarsest: f64 = candidates.iter().map(|c| c.iter().map(|p| p.1).fold(f64::INFINITY, f64::min)).sum();
    if coarsest > budget_bits {
        return None;
    }
    // Bisect log(lambda): large lambda = few bits.
    let (mut lo, mut hi) = (-80f64, 80f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if pick(mid.exp()).1 <= budget_bits { hi = mid } else { lo = mid }
    }
    let (choice, _) = pick(hi.exp());
    Some(choice.iter().zip(&candidates).map(|(&i, c)| c[i].0).collect())
}

/// `Target::BitsPerWeight` for one tensor alone: the smallest step whose stored bytes (header
/// entries included) fit, then encoded at it; a step that lands over is coarsened until it fits.
pub(crate) fn encode_tensor_to_bpw(
    name: &str,
    data: &[f32],
    shape: &[usize],
    dtype: SourceDtype,
    settings: &EncodeSettings,
    calibration: Option<&TensorCalibration>,
    bpw: f64,
) -> Result<EncodedOutput, EncodeError> {
    let opts = TensorOptions { calibration, step: None };
    let prep = Prepped::new(name, data, shape, dtype, settings, opts, None)?;
    let curve = measure_curve(&prep, name, prep.std(), calibration.and_then(|c| c.sensitivity), bpw)?;
    let budget = bpw * data.len() as f64;
    let (least, headers) = coarsest_bits(std::slice::from_ref(&curve));
    let n = data.len() as f64;
    let too_tight = || EncodeError::ImpossibleTarget {
        tensor: name.to_owned(),
        reason: format!(
            "{bpw} bits per weight is below the {:.3} the coarsest step stores ({:.3} of them the header entry); \
             ask for more bits",
            least / n,
            headers / n
        ),
    };
    let steps = allocate(std::slice::from_ref(&curve), budget).ok_or_else(too_tight)?;
    let mut step = steps[0];
    for _ in 0..12 {
        let out = prep.encode(Some(step))?;
        let report = TensorReport::of_tensor(&out.tensor);
        if report.bits_per_weight.is_some_and(|b| b <= bpw) {
            return Ok(out);
        }
        step *= 1.02;
    }
    Err(too_tight())
}
