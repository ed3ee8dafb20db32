//! `rbe demo`: the main job on the shipped real data, no download. Two all-MiniLM-L6-v2 layer-0
//! matrices (f16, in `fixtures/minilm`, compiled into the binary) are encoded at every profile,
//! multiplied straight from the compressed form (`rbe::Layer` on the CPU backend, DCT-domain
//! product) on a batch of seeded activations, and compared with the dense f32 product: bits per
//! weight (`rbe::report`, as every command counts them), relative RMSE of the weights, relative
//! error of the product, and speed against dense.

use anyhow::Context;
use rbe::bench::baseline::dense_f32;
use rbe::bench::median_reps_us;
use rbe::format::SharedBytes;
use rbe::{Backend, EncodeSettings, Layer, Mode, Profile, SourceTensor, Target, TensorReport, encode_tensor};

/// The shipped fixture (see fixtures/minilm/NOTICE: Apache-2.0).
const WEIGHTS: &[u8] = include_bytes!("../../../fixtures/minilm/weights.safetensors");
/// Tokens per forward: about one sentence.
const BATCH: usize = 16;

/// Arguments of `rbe demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Timed repetitions per product (median reported).
    #[arg(long, default_value_t = 30)]
    pub reps: usize,
}

fn tensors() -> anyhow::Result<Vec<SourceTensor>> {
    let (header_len, meta) =
        safetensors::SafeTensors::read_metadata(WEIGHTS).context("shipped fixture is not valid safetensors")?;
    let bytes = SharedBytes::new(WEIGHTS);
    let mut infos: Vec<_> = meta.tensors().into_iter().collect();
    infos.sort_by_key(|(_, i)| i.data_offsets.0);
    Ok(infos
        .into_iter()
        .map(|(name, info)| {
            let data = bytes
                .slice(8 + header_len + info.data_offsets.0..8 + header_len + info.data_offsets.1)
                .expect("validated by read_metadata");
            SourceTensor::new(name, "F16".into(), info.shape.clone(), data)
        })
        .collect())
}

/// Seeded activations, roughly N(0, 1).
fn activations(n: usize) -> Vec<f32> {
    let mut s = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            let mut acc = 0.0;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            acc * 1.73
        })
        .collect()
}

fn rel_err(y: &[f32], reference: &[f32]) -> f64 {
    let num: f64 = y.iter().zip(reference).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
    let den: f64 = reference.iter().map(|b| f64::from(*b).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Runs the demo.
pub fn run(a: &DemoArgs) -> anyhow::Result<()> {
    println!("RBE demo: all-MiniLM-L6-v2 layer-0 weights shipped in fixtures/minilm (Apache-2.0; f16).");
    println!("Each matrix is encoded at every profile, then y = W x is computed straight from the compressed");
    println!(
        "form (rbe::Layer on the CPU backend, DCT-domain product) for a batch of {BATCH} seeded activations, {} threads.",
        rayon::current_num_threads()
    );
    println!("bpw = bits per weight: 8 x (stream + its header entries) / weights; rel-RMSE = weight error / std;");
    println!(
        "product err = |y - y_dense| / |y_dense| against the original weights; speed = dense f32 time / RBE time.\n"
    );
    println!(
        "{:<44} {:<20} {:>7} {:>9} {:>11} {:>10} {:>10} {:>7}",
        "tensor", "target", "bpw", "rel-RMSE", "product err", "dense us", "rbe us", "speed"
    );
    for t in tensors()? {
        let w = t.to_f32()?;
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let x = activations(BATCH * cols);
        let threads = rayon::current_num_threads();
        let mut y_dense = vec![0f32; BATCH * rows];
        dense_f32(&w, rows, cols, &x, BATCH, &mut y_dense, threads);
        let mut scratch = vec![0f32; BATCH * rows];
        let dense_us = median_reps_us(a.reps, || {
            dense_f32(&w, rows, cols, &x, BATCH, &mut scratch, threads);
            std::hint::black_box(&scratch);
        });
        let mut targets: Vec<(String, EncodeSettings)> = Profile::ALL
            .into_iter()
            .map(|p| {
                (
                    format!("{} (rel {})", p.name(), p.rel_rmse()),
                    EncodeSettings {
                        target: Target::RelRmse(p.rel_rmse()),
                        profile: Some(p),
                        ..EncodeSettings::default()
                    },
                )
            })
            .collect();
        targets.push((
            "--k 200 (notes)".into(),
            EncodeSettings { target: Target::TopK(200), profile: None, ..EncodeSettings::default() },
        ));
        for (label, settings) in targets {
            let out = encode_tensor(&t.name, &w, &t.shape, rbe::format::SourceDtype::F16, &settings)?;
            let bpw = TensorReport::of_tensor(&out.tensor).bits_per_weight.unwrap_or(f64::NAN);
            let layer = Layer::with_mode(&out.tensor, None, Backend::Cpu, Mode::DctDirect)?;
            let y = layer.forward_batch(&x, BATCH)?;
            let rbe_us = median_reps_us(a.reps, || {
                std::hint::black_box(layer.forward_batch(&x, BATCH).expect("shapes checked above"));
            });
            println!(
                "{:<44} {:<20} {:>7.3} {:>9.5} {:>11.5} {:>10.1} {:>10.1} {:>6.2}x",
                t.name,
                label,
                bpw,
                out.tensor.stats().rel_rmse,
                rel_err(&y, &y_dense),
                dense_us,
                rbe_us,
                dense_us / rbe_us
            );
        }
    }
    println!("\nf16 stores 16 bits per weight; GGUF Q8_0 8.5, Q4_K/Q4_0 4.5 (see README for measured comparisons).");
    Ok(())
}
