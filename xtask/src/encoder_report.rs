//! `cargo xtask encoder-report`: the encoder's targets on the real all-MiniLM-L6-v2 — bits per
//! weight from the bytes on disk, worst relative RMSE re-measured from the written file, the
//! saving of entropy coding, and encode speed. Writes `target/reports/encoder.md`.

use anyhow::Context;
use rbe::encode::{EncodeSettings, ModelOptions, Profile, SourceModel, Target, encode_model};
use rbe::format::{Entropy, Entry};
use rbe::{Model, TensorReport};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const LINEAR: &str = "encoder.layer.*.weight";

struct Row {
    label: String,
    bpw_on: f64,
    bpw_off: f64,
    worst_rel: f64,
    sparse: usize,
    dense: usize,
}

/// Bits per weight of the compressed tensors from the bytes on disk (`rbe::ModelReport`'s totals,
/// counted like the acceptance check: every byte of the file except verbatim tensor data, over the
/// compressed tensors' weights), the worst recorded relative RMSE, sparse and dense block counts.
fn file_bpw(path: &Path) -> anyhow::Result<(f64, f64, usize, usize)> {
    let report = Model::open(path)?.report();
    let compressed = report.tensors.iter().filter(|t| t.compressed);
    let worst = compressed.clone().filter_map(|t| t.rel_rmse).fold(0.0f64, f64::max);
    let sparse = compressed.clone().filter_map(|t| t.blocks_sparse).sum();
    let dense = compressed.filter_map(|t| t.blocks_dense).sum();
    Ok((report.totals.bits_per_weight.unwrap_or(f64::NAN), worst, sparse, dense))
}

/// Worst relative RMSE of the file's compressed tensors against the source, decoded here.
fn measured_worst(path: &Path, source: &SourceModel) -> anyhow::Result<f64> {
    let file = Model::open(path)?;
    let mut worst = 0.0f64;
    for t in source.tensors() {
        if let Some(Entry::Compressed { .. }) = file.entry(&t.name) {
            let orig = t.to_f32()?;
            let dec = file.tensor(&t.name)?.decode()?;
            let n = orig.len() as f64;
            let mean = orig.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = orig.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let mse = orig.iter().zip(&dec).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>() / n;
            worst = worst.max((mse / var).sqrt());
        }
    }
    Ok(worst)
}

/// Runs the report.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    let dir = crate::minilm::fetch()?;
    let source = SourceModel::open(&dir.join("model.safetensors"))?;
    let out_dir = crate::root().join("target").join("reports");
    std::fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join("encoder-report.rbe");
    let linear = ModelOptions { include: vec![LINEAR.into()], ..ModelOptions::default() };
    let quiet = |_: &TensorReport, _: u64, _: u64| {};
    let mut targets: Vec<(String, Target, Option<Profile>)> = vec![
        ("--rel-rmse 0.09 (goal <= 3.8 bpw; Q4_0 4.5)".into(), Target::RelRmse(0.09), None),
        ("--rel-rmse 0.0735 (Q4_K's error)".into(), Target::RelRmse(0.0735), None),
        ("--rel-rmse 0.0055 (goal <= 7.9 bpw; Q8_0 8.5)".into(), Target::RelRmse(0.0055), None),
    ];
    for p in Profile::ALL {
        targets.push((
            format!("--profile {} (rel {})", p.name(), p.rel_rmse()),
            Target::RelRmse(p.rel_rmse()),
            Some(p),
        ));
    }
    targets.push(("--k 200 (the notes' setting)".into(), Target::TopK(200), None));
    let mut rows = Vec::new();
    for (label, target, profile) in &targets {
        let mut bpw = [0.0; 2];
        let mut worst = 0.0;
        let mut mix = (0, 0);
        for (i, entropy) in [Entropy::Rans, Entropy::None].into_iter().enumerate() {
            let settings = EncodeSettings { target: *target, profile: *profile, entropy, ..EncodeSettings::default() };
            encode_model(&source, &tmp, &settings, &linear, &quiet).with_context(|| label.clone())?;
            let (b, recorded, s, d) = file_bpw(&tmp)?;
            bpw[i] = b;
            if i == 0 {
                let measured = measured_worst(&tmp, &source)?;
                worst = measured.max(recorded);
                mix = (s, d);
            }
        }
        eprintln!("{label}: {:.3} bpw (entropy off {:.3}), worst rel {:.5}", bpw[0], bpw[1], worst);
        rows.push(Row {
            label: label.clone(),
            bpw_on: bpw[0],
            bpw_off: bpw[1],
            worst_rel: worst,
            sparse: mix.0,
            dense: mix.1,
        });
    }
    // Speed: the whole model (every 2-D tensor) at the balanced profile, best of 3.
    let all = ModelOptions::default();
    let weights: u64 = source.tensors().map(|t| t.elements() as u64).sum();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        encode_model(&source, &tmp, &EncodeSettings::default(), &all, &quiet)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&tmp);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut md = String::new();
    writeln!(md, "# Encoder report: all-MiniLM-L6-v2, 36 encoder Linear weights (10.6 M weights)\n")?;
    writeln!(
        md,
        "Bits per weight count every byte of the .rbe file except verbatim tensors; worst relative RMSE is re-measured from the written file.\n"
    )?;
    writeln!(
        md,
        "| target | bpw (entropy on) | bpw (entropy off) | entropy saving | worst rel-RMSE | sparse / dense blocks |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in &rows {
        writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.1} % | {:.5} | {} / {} |",
            r.label,
            r.bpw_on,
            r.bpw_off,
            100.0 * (1.0 - r.bpw_on / r.bpw_off),
            r.worst_rel,
            r.sparse,
            r.dense
        )?;
    }
    writeln!(
        md,
        "\nEncode speed, whole model ({:.1} M weights, --profile balanced, {threads} threads, best of 3): {best:.2} s = {:.1} M weights/s\n",
        weights as f64 / 1e6,
        weights as f64 / 1e6 / best
    )?;
    print!("{md}");
    std::fs::write(out_dir.join("encoder.md"), md)?;
    Ok(())
}
