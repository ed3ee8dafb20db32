//! `cargo xtask conformance [--json]`: every backend x mode x fixture of `fixtures/conformance`
//! against the reference outputs; prints a table (or, with `--json`, one JSON document
//! `{"results": [...]}` on stdout) and fails on any failure. Without a GPU adapter the GPU rows are
//! skipped with a note, unless `RBE_REQUIRE_GPU=1`, which makes a missing adapter a failure.
//! Both backends are driven through the backend-neutral `rbe::Layer`, the API users see.

use crate::fixtures_gen::{DIR, TOL_CPU_EXACT, TOL_CPU_Q8, TOL_GPU};
use anyhow::{Context, Result, bail};
use rbe::{Backend, EncodedTensor, Layer, LayerError, Mode};
use serde_json::{Value, json};

/// One checked combination.
struct Row {
    backend: &'static str,
    mode: &'static str,
    fixture: String,
    max_rel_err: f64,
    tolerance: f64,
    note: String,
}

impl Row {
    fn pass(&self) -> bool {
        self.max_rel_err.is_finite() && self.max_rel_err <= self.tolerance
    }
}

/// A fixture's reference data.
struct Reference {
    decode: Vec<f32>,
    /// (batch, x, y_ref)
    products: Vec<(usize, Vec<f32>, Vec<f64>)>,
}

fn read_reference(path: &std::path::Path) -> Result<Reference> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let f32s = |n: &str| -> Result<Vec<f32>> {
        Ok(st.tensor(n)?.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    };
    let f64s = |n: &str| -> Result<Vec<f64>> {
        Ok(st.tensor(n)?.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    };
    let mut products = Vec::new();
    for batch in [1usize, 4] {
        products.push((batch, f32s(&format!("x{batch}"))?, f64s(&format!("y{batch}"))?));
    }
    Ok(Reference { decode: f32s("decode")?, products })
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(0.0, |m, x| m.max(x.abs()))
}

/// `max |got - want| / max |want|`; NaN on a length mismatch.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::NAN;
    }
    let scale = max_abs(want.iter().copied()).max(f64::MIN_POSITIVE);
    let diff = got.iter().zip(want).map(|(g, w)| {
        let d = (f64::from(*g) - w).abs();
        if d.is_nan() { f64::INFINITY } else { d }
    });
    max_abs(diff) / scale
}

/// Every mode of `backend` on fixture `name`: the products at batch 1 and 4 against the f64
/// references (and, for the GPU's `decode`, the decoded matrix against the reference decode).
fn backend_rows(backend: Backend, name: &str, t: &EncodedTensor, r: &Reference, rows: &mut Vec<Row>) {
    let dec64: Vec<f64> = r.decode.iter().map(|&v| f64::from(v)).collect();
    for &mode in backend.modes() {
        let mut row = Row {
            backend: backend.name(),
            mode: "",
            fixture: name.to_owned(),
            max_rel_err: f64::NAN,
            tolerance: if backend == Backend::Gpu { TOL_GPU } else { TOL_CPU_EXACT },
            note: String::new(),
        };
        let mut run = || -> Result<f64, LayerError> {
            let layer = Layer::with_mode(t, None, backend, mode)?;
            row.mode = layer.mode_name();
            let mut err = 0f64;
            for (batch, x, y) in &r.products {
                if mode == Mode::ProgressiveCoarse {
                    // ||y_coarse - y_full||_2 <= E ||x||_2 for every input vector.
                    let cols = t.cols();
                    let xn = x.chunks(cols).map(|v| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt());
                    let bound =
                        layer.coarse_error_bound() * max_abs(xn) / max_abs(y.iter().copied()).max(f64::MIN_POSITIVE);
                    row.tolerance = row.tolerance.max(bound + TOL_CPU_EXACT);
                }
                err = err.max(rel_err(&layer.forward_batch(x, *batch)?, y));
            }
            if let (Backend::Gpu, Some(gpu)) = (backend, layer.as_gpu())
                && mode == Mode::Decode
            {
                err = err.max(rel_err(&gpu.decode()?, &dec64));
            }
            Ok(err)
        };
        let result = run();
        if mode == Mode::DctDirectQ8 {
            row.tolerance = TOL_CPU_Q8;
        }
        match result {
            Ok(e) => row.max_rel_err = e,
            Err(e) => row.note = e.to_string(),
        }
        if row.mode.is_empty() {
            row.mode = mode_name(backend, mode);
        }
        rows.push(row);
    }
}

/// The backend's name of `mode`, for a row whose layer could not be built.
fn mode_name(backend: Backend, mode: Mode) -> &'static str {
    match backend {
        Backend::Cpu => mode.cpu().name(),
        Backend::Gpu => mode.gpu().map_or("?", |m| m.name()),
    }
}

/// `cargo xtask conformance [--json]`.
pub fn run(args: &[String]) -> Result<()> {
    let json_out = args.iter().any(|a| a == "--json");
    let dir = crate::root().join(DIR);
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json"))
            .with_context(|| format!("no fixtures in {} (run `cargo xtask fixtures`)", dir.display()))?,
    )?;
    let fixtures = manifest["fixtures"].as_array().context("manifest without fixtures")?;
    let required = rbe::gpu::gpu_required();
    let (gpu, gpu_note) = match Backend::Gpu.probe() {
        Ok(adapter) => (true, format!("GPU adapter: {adapter}")),
        Err(e) => (false, format!("GPU rows skipped: {e}")),
    };
    eprintln!("{gpu_note}");
    let mut rows = Vec::new();
    for f in fixtures {
        let name = f["name"].as_str().context("fixture without a name")?;
        let rbe = dir.join(f["rbe"].as_str().context("fixture without rbe")?);
        let reference = dir.join(f["reference"].as_str().context("fixture without reference")?);
        for (path, key) in [(&rbe, "rbe_xxh3"), (&reference, "reference_xxh3")] {
            let got =
                rbe::format::checksum(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
            if Some(got.as_str()) != f[key].as_str() {
                bail!("{}: checksum {got} does not match the manifest (run `cargo xtask fixtures`)", path.display());
            }
        }
        let model = rbe::Model::open(&rbe)?;
        let t = model.tensor(f["tensor"].as_str().unwrap_or(crate::fixtures_gen::TENSOR))?;
        let r = read_reference(&reference)?;
        backend_rows(Backend::Cpu, name, &t, &r, &mut rows);
        if gpu {
            backend_rows(Backend::Gpu, name, &t, &r, &mut rows);
        }
    }
    let failed = rows.iter().filter(|r| !r.pass()).count();
    let gpu_missing = !gpu && required;
    if json_out {
        let results: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "backend": r.backend,
                    "mode": r.mode,
                    "fixture": r.fixture,
                    "max_rel_err": if r.max_rel_err.is_finite() { json!(r.max_rel_err) } else { Value::Null },
                    "tolerance": r.tolerance,
                    "pass": r.pass(),
                });
                if !r.note.is_empty() {
                    v["note"] = json!(r.note);
                }
                v
            })
            .collect();
        println!("{}", json!({ "results": results, "gpu": gpu_note }));
    } else {
        println!("{:<8} {:<20} {:<32} {:>12} {:>10}  result", "backend", "mode", "fixture", "max_rel_err", "tolerance");
        for r in &rows {
            println!(
                "{:<8} {:<20} {:<32} {:>12.3e} {:>10.1e}  {}{}",
                r.backend,
                r.mode,
                r.fixture,
                r.max_rel_err,
                r.tolerance,
                if r.pass() { "pass" } else { "FAIL" },
                if r.note.is_empty() { String::new() } else { format!(" ({})", r.note) }
            );
        }
        println!("{} rows, {} failed; {gpu_note}", rows.len(), failed);
    }
    if gpu_missing {
        bail!("RBE_REQUIRE_GPU=1 but no GPU adapter: {gpu_note}");
    }
    if failed > 0 {
        bail!("{failed} of {} conformance rows failed", rows.len());
    }
    Ok(())
}
