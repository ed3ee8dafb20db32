//! Encoding a whole model: choose which tensors to compress, encode them one at a time (blocks in
//! parallel), copy the rest verbatim, and write the `.rbe` container(s) atomically; sharded inputs
//! give sharded outputs with their own index.

use crate::allocate::{TensorCurve, allocate, coarsest_bits, measure_curve};
use crate::calibration::Calibration;
use crate::error::EncodeError;
use crate::gptq::GptqPlan;
use crate::select::Selection;
use crate::settings::{EncodeSettings, Target};
use crate::source::{Shard, SourceModel, SourceTensor};
use crate::tensor::{Prepped, TensorOptions, encode_tensor_with_plan};

/// GPTQ plans kept between measuring a bits-per-weight encode's curves and its passes.
const PLAN_CACHE_BYTES: usize = 1 << 30;

/// The plans kept, by tensor name.
type PlanCache = HashMap<String, Arc<GptqPlan>>;
use rbe_format::{
    Entry, ModelReport, OutputFile, RbeFile, RbeWriter, ShardIndex, TensorReport, stream_checksum, write_atomic,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which tensors to compress.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Glob patterns; when non-empty only matching tensors are compressed.
    pub include: Vec<String>,
    /// Glob patterns of tensors never compressed.
    pub exclude: Vec<String>,
    /// Sharded models: keep output shards that are already complete (every tensor present,
    /// every checksum verified, same settings) and encode only the others.
    pub resume: bool,
    /// Calibration: covered tensors are quantised with GPTQ against their inputs' `H`, a relative
    /// target is a relative *output* error, and `--target-bpw` weighs tensors by sensitivity.
    pub calibration: Option<Arc<Calibration>>,
}

pub use rbe_format::{CALIBRATION_KEY, CalibrationRecord};

/// Metadata key recording the settings a file was encoded with (compared by `--resume`).
pub const SETTINGS_KEY: &str = "rbe.encoder";

fn settings_record(settings: &EncodeSettings, options: &ModelOptions) -> String {
    // Debug formatting of plain enums and numbers: stable for a given version of the encoder.
    format!(
        "v{} target={:?} block={} transform={} layout={} values={} params={:?} entropy={} residual={:?} include={:?} exclude={:?}{}",
        env!("CARGO_PKG_VERSION"),
        settings.target,
        settings.block,
        settings.transform,
        settings.layout,
        settings.values,
        settings.params,
        settings.entropy,
        settings.residual,
        options.include,
        options.exclude,
        options.calibration.as_ref().map(|c| format!(" calibration={}", c.checksum)).unwrap_or_default()
    )
}

/// Reports for an output shard that is complete and was written with the same settings, or
/// `None` when it must be (re)encoded. Checksums are verified, never trusted.
fn finished_shard(out_path: &Path, shard: &Shard, record: &str) -> Option<Vec<TensorReport>> {
    let file = RbeFile::open(out_path).ok()?;
    if file.metadata().get(SETTINGS_KEY).map(String::as_str) != Some(record)
        || file.entries().len() != shard.tensors.len()
    {
        return None;
    }
    let mut reports = Vec::new();
    for t in &shard.tensors {
        match file.entry(&t.name)? {
            Entry::Compressed { desc, stats, stream } => {
                if stream_checksum(desc, stream) != desc.xxh3 {
                    return None;
                }
                reports.push(TensorReport::compressed(&t.name, desc, stats));
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(&t.name).ok()?;
                if v.data[..] != t.data[..] {
                    return None;
                }
                reports.push(verbatim_report(t));
            }
        }
    }
    Some(reports)
}

/// The report of a tensor copied verbatim.
fn verbatim_report(t: &SourceTensor) -> TensorReport {
    TensorReport::verbatim(&t.name, &t.dtype, &t.shape, t.data.len() as u64)
}

/// The result of a model encode: the written model's report (bits per weight per tensor and
/// totals from the real file sizes, as `rbe inspect` reports the same files) and the wall time.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    /// Wall time.
    pub seconds: f64,
    /// The written model.
    #[serde(flatten)]
    pub model: ModelReport,
    /// The written `.rbe` file, or the shard index of a sharded model.
    #[serde(skip)]
    pub output: PathBuf,
}

/// Output file for a shard: `-o` itself for a single file, `DIR/<shard stem>.rbe` when sharded.
fn shard_output(shard: &Shard, output: &Path, sharded: bool) -> PathBuf {
    if !sharded {
        return output.to_owned();
    }
    let name = shard.path.file_name().and_then(|n| n.to_str()).unwrap_or("shard.safetensors");
    output.join(format!("{}.rbe", name.strip_suffix(".safetensors").unwrap_or(name)))
}

/// Called after each tensor: `(report, weights done, weights total)`.
pub type Progress<'a> = &'a (dyn Fn(&TensorReport, u64, u64) + Sync);

/// Encodes `model` into `output` (a file, or a directory for a sharded model).
pub fn encode_model(
    model: &SourceModel,
    output: &Path,
    settings: &EncodeSettings,
    options: &ModelOptions,
    progress: Progress<'_>,
) -> Result<EncodeReport, EncodeError> {
    let started = Instant::now();
    settings.validate()?;
    let selection = Selection::new(&options.include, &options.exclude)?;
    let sharded = model.index.is_some();
    if sharded {
        std::fs::create_dir_all(output)
            .map_err(|e| EncodeError::Input { path: output.display().to_string(), reason: e.to_string() })?;
    }
    // Every output is checked before anything is encoded: none may be an input or a non-file.
    let inputs = model.input_paths();
    let index_path = sharded.then(|| output.join(rbe_index_name(model.index.as_deref())));
    let mut outputs = Vec::with_capacity(model.shards.len());
    for shard in &model.shards {
        let path = shard_output(shard, output, sharded);
        OutputFile::check(&path, &inputs)?;
        outputs.push(path);
    }
    if let Some(path) = &index_path {
        OutputFile::check(path, &inputs)?;
    }
    let record = settings_record(settings, options);
    let calibration = options.calibration.as_deref();
    if calibration.is_some() && matches!(settings.target, Target::Rmse(_) | Target::TopK(_)) {
        return Err(EncodeError::Settings(
            "with a calibration the target is a relative output error (--rel-rmse) or --target-bpw".into(),
        ));
    }
    let Target::BitsPerWeight(bpw) = settings.target else {
        let pass = encode_pass(model, output, settings, options, &outputs, &record, None, progress)?;
        return Ok(finish(output, index_path, pass, started));
    };
    // Bits per weight: measure every selected tensor's curve, allocate, encode; should the file
    // land over the target (headers are estimated), take the excess off the budget and go again.
    let selected: Vec<&SourceTensor> = model.tensors().filter(|t| selection.compresses(t, settings)).collect();
    let weights: u64 = selected.iter().map(|t| t.elements() as u64).sum();
    if weights == 0 {
        let pass = encode_pass(model, output, settings, options, &outputs, &record, None, progress)?;
        return Ok(finish(output, index_path, pass, started));
    }
    let target_bits = bpw * weights as f64;
    // File bytes outside the compressed tensors' own entries: the verbatim tensors' header entries,
    // each shard's framing and settings record, and the calibration record.
    let verbatim_headers: u64 =
        model.tensors().filter(|t| !selection.compresses(t, settings)).map(|t| verbatim_report(t).header_bytes).sum();
    let calibration_record: u64 =
        if calibration.is_some() { selected.iter().map(|t| t.name.len() as u64 + 20).sum::<u64>() + 128 } else { 0 };
    let mut overhead_bits =
        8.0 * (verbatim_headers + (256 + record.len() as u64) * model.shards.len() as u64 + calibration_record) as f64;
    // The rate the tensors' own entries may take, which the curves must bracket.
    let tensor_bpw = bpw - overhead_bits / weights as f64;
    let mut plans = HashMap::new();
    let curves = measure_curves(&selected, settings, calibration, tensor_bpw, &mut plans)?;
    let mut last = None;
    for _ in 0..4 {
        let budget = target_bits - overhead_bits;
        let steps = allocate(&curves, budget).ok_or_else(|| {
            let (least, headers) = coarsest_bits(&curves);
            let n = weights as f64;
            EncodeError::ImpossibleTarget {
                tensor: "(all selected)".into(),
                reason: format!(
                    "{bpw} bits per weight is below the {:.3} the coarsest steps store ({:.3} of them header entries \
                     and file framing); ask for more bits",
                    (least + overhead_bits) / n,
                    (headers + overhead_bits) / n
                ),
            }
        })?;
        let steps: HashMap<String, f64> = curves.iter().map(|c| c.name.clone()).zip(steps).collect();
        let pass = encode_pass(model, output, settings, options, &outputs, &record, Some((&steps, &plans)), progress)?;
        let report = finish(output, index_path.clone(), pass, started);
        let achieved = report.model.totals.bits_per_weight.unwrap_or(f64::INFINITY);
        if achieved <= bpw {
            return Ok(report);
        }
        // Over budget: the framing estimate or the curves' interpolation were off. Take the miss
        // and a little more off the budget, so the next pass lands under.
        if std::env::var_os("RBE_DEBUG_ALLOCATION").is_some() {
            eprintln!("allocation: pass landed at {achieved:.5} bits per weight for {bpw}; shrinking the budget");
        }
        overhead_bits += (achieved - bpw) * weights as f64 + (8.0 * 64.0f64).max(0.0005 * target_bits);
        last = Some(achieved);
    }
    Err(EncodeError::ImpossibleTarget {
        tensor: "(all selected)".into(),
        reason: format!("the encode landed at {:.4} bits per weight over the asked {bpw}", last.unwrap_or(f64::NAN)),
    })
}

/// The rate-distortion curve of every tensor the selection compresses, one tensor in memory at a
/// time.
fn measure_curves(
    selected: &[&SourceTensor],
    settings: &EncodeSettings,
    calibration: Option<&Calibration>,
    bpw: f64,
    plans: &mut PlanCache,
) -> Result<Vec<TensorCurve>, EncodeError> {
    let plan_bytes = &mut 0usize;
    let mut curves = Vec::new();
    for &t in selected {
        let data = t.to_f32()?;
        t.release_pages();
        let dtype =
            t.source_dtype().ok_or_else(|| EncodeError::Dtype { tensor: t.name.clone(), dtype: t.dtype.clone() })?;
        let cal = calibration.and_then(|c| c.get(&t.name));
        // A preset step skips the target's own checks; a typical 4-bit step steers the
        // parameter-storage choice as the final encode will.
        let std = crate::tensor::mean_std(&data).1;
        let opts = TensorOptions { calibration: cal, step: Some((0.25 * std).max(f64::MIN_POSITIVE)) };
        let prep = Prepped::new(&t.name, &data, &t.shape, dtype, settings, opts, None)?;
        curves.push(measure_curve(&prep, &t.name, prep.std(), cal.and_then(|c| c.sensitivity), bpw)?);
        // Keep GPTQ plans for the encode passes while they fit a modest budget; past it the
        // passes rebuild them (a model larger than memory stays streamable).
        if let Some(plan) = prep.plan()
            && *plan_bytes + plan.bytes() <= PLAN_CACHE_BYTES
        {
            *plan_bytes += plan.bytes();
            plans.insert(t.name.clone(), plan);
        }
    }
    Ok(curves)
}

/// What one pass over the model wrote.
struct Pass {
    reports: Vec<TensorReport>,
    file_bytes: u64,
}

fn finish(output: &Path, index_path: Option<PathBuf>, pass: Pass, started: Instant) -> EncodeReport {
    let mut written = output.to_owned();
    if let Some(path) = index_path {
        written = path;
    }
    EncodeReport {
        seconds: started.elapsed().as_secs_f64(),
        model: ModelReport::new(written.display().to_string(), pass.file_bytes, pass.reports),
        output: written,
    }
}

/// Encodes every shard (`steps`: a preset quantisation step per compressed tensor) and writes the
/// shard index of a sharded model.
#[allow(clippy::too_many_arguments)]
fn encode_pass(
    model: &SourceModel,
    output: &Path,
    settings: &EncodeSettings,
    options: &ModelOptions,
    outputs: &[PathBuf],
    record: &str,
    steps: Option<(&HashMap<String, f64>, &PlanCache)>,
    progress: Progress<'_>,
) -> Result<Pass, EncodeError> {
    let selection = Selection::new(&options.include, &options.exclude)?;
    let sharded = model.index.is_some();
    let inputs = model.input_paths();
    let calibration = options.calibration.as_deref();
    let total: u64 = model.tensors().map(|t| t.elements() as u64).sum();
    let mut done = 0u64;
    let mut reports = Vec::new();
    let mut weight_map = BTreeMap::new();
    let mut file_bytes = 0u64;
    for (shard, out_path) in model.shards.iter().zip(outputs) {
        let out = OutputFile::check(out_path, &inputs)?;
        let out_name = out_path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let finished = if options.resume && sharded { finished_shard(out_path, shard, record) } else { None };
        if let Some(done_reports) = finished {
            for r in done_reports {
                done += shard_weights(shard, &r.name);
                progress(&r, done, total);
                if let Some(f) = &out_name {
                    weight_map.insert(r.name.clone(), f.clone());
                }
                reports.push(r);
            }
            file_bytes += file_len(out_path)?;
            continue;
        }
        let mut writer = RbeWriter::create_at(out)?;
        writer.metadata(SETTINGS_KEY, record.to_owned());
        for (k, v) in &shard.metadata {
            if !k.starts_with("rbe.") {
                writer.metadata(k, v.clone());
            }
        }
        let mut cal_record = calibration.map(|c| CalibrationRecord { xxh3: c.checksum.clone(), ..Default::default() });
        for t in &shard.tensors {
            let report = if selection.compresses(t, settings) {
                let data = t.to_f32()?;
                t.release_pages();
                let dtype = t
                    .source_dtype()
                    .ok_or_else(|| EncodeError::Dtype { tensor: t.name.clone(), dtype: t.dtype.clone() })?;
                let cal = calibration.and_then(|c| c.get(&t.name));
                let opts = TensorOptions { calibration: cal, step: steps.and_then(|(s, _)| s.get(&t.name).copied()) };
                let plan = steps.and_then(|(_, p)| p.get(&t.name).cloned());
                let out = encode_tensor_with_plan(&t.name, &data, &t.shape, dtype, settings, opts, plan)?;
                drop(data);
                writer.add_tensor(&out.tensor, &out.stream)?;
                if let Some(r) = cal_record.as_mut() {
                    match out.output_rel_rmse {
                        Some(x) => {
                            r.output_rel_rmse.insert(t.name.clone(), x);
                        }
                        None => r.uncovered.push(t.name.clone()),
                    }
                }
                TensorReport {
                    raw_stream_bytes: Some(4 + out.tensor.runtime_bytes() as u64),
                    output_rel_rmse: out.output_rel_rmse,
                    ..TensorReport::of_tensor(&out.tensor)
                }
            } else {
                // Verbatim tensors are copied bit-exact, whatever they hold.
                writer.add_verbatim(&t.name, &t.dtype, &t.shape, &t.data)?;
                t.release_pages();
                verbatim_report(t)
            };
            done += t.elements() as u64;
            progress(&report, done, total);
            if let Some(f) = &out_name {
                weight_map.insert(t.name.clone(), f.clone());
            }
            reports.push(report);
        }
        if let Some(r) = cal_record {
            writer.metadata(CALIBRATION_KEY, serde_json::to_string(&r).expect("a calibration record serialises"));
        }
        writer.finish()?;
        file_bytes += file_len(out_path)?;
    }
    if sharded {
        let index = output.join(rbe_index_name(model.index.as_deref()));
        let total_size: u64 = reports.iter().map(|r| r.stream_bytes).sum();
        write_atomic(&index, &ShardIndex::rbe(weight_map, total_size).to_json())?;
    }
    Ok(Pass { reports, file_bytes })
}

fn file_len(path: &Path) -> Result<u64, EncodeError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| EncodeError::Input { path: path.display().to_string(), reason: e.to_string() })
}

fn shard_weights(shard: &Shard, name: &str) -> u64 {
    shard.tensors.iter().find(|t| t.name == name).map_or(0, |t| t.elements() as u64)
}

/// The shard index's name for a sharded input's index `X.safetensors.index.json`:
/// `X.rbe.index.json`.
fn rbe_index_name(index: Option<&Path>) -> String {
    let name = index.and_then(|i| i.file_name()).and_then(|n| n.to_str()).unwrap_or("model.safetensors.index.json");
    let out_name = name.replace(".safetensors.index.json", ".rbe.index.json");
    if out_name == name { format!("{name}.rbe.json") } else { out_name }
}
