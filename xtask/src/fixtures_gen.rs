//! `cargo xtask fixtures [--check]`: writes the deterministic conformance fixtures to
//! `fixtures/conformance/` — each an `.rbe` file, a `.ref.safetensors` of reference outputs from the
//! scalar reference decoder in f64, and one `manifest.json` with hashes and tolerances. `--check`
//! regenerates into a scratch directory and fails when the committed files differ.
//!
//! Reference file tensors: `decode` (F32 `[rows, cols]`, the reference decode rounded once to f32),
//! `x1`/`x4` (F32 `[batch, cols]`, seeded inputs), `y1`/`y4` (F64 `[batch, rows]`, `W x` with `W`
//! the unrounded f64 decode).

use anyhow::{Context, Result, bail};
use half::f16;
use rbe::encode::{EncodeSettings, ParamsChoice, ResidualChoice, Target};
use rbe::format::{
    BlockConfig, EncodeStats, EncodedTensor, Entropy, Layout, ParamsPrecision, RbeWriter, SafetensorsWriter,
    TensorDesc, Transform, ValueCodec,
};
use rbe_testkit::blocks::{desc, fixture_blocks, reference_f64, stats_for};
use rbe_testkit::data::{bell, f32_bytes, f64_bytes, smooth};
use rbe_testkit::{Rng, dense};
use std::path::{Path, PathBuf};

/// Directory of the conformance fixtures, relative to the workspace root.
pub const DIR: &str = "fixtures/conformance";
/// Name of the compressed tensor inside every fixture `.rbe`.
pub const TENSOR: &str = "w";

/// Tolerances on `max |y - y_ref| / max |y_ref|`, written to the manifest.
pub const TOL_GPU: f64 = 1e-4;
/// CPU modes that are exact up to f32 rounding.
pub const TOL_CPU_EXACT: f64 = 1e-5;
/// CPU `dct_direct_q8` (int8 activations, one max-abs scale per 16 transformed inputs): the Q8
/// bound. The worst fixture measures about 5e-3 (noise_b32_dwt); with one scale per 64-value
/// block the MiniLM query fixtures reached 1.09e-2.
pub const TOL_CPU_Q8: f64 = 1e-2;

/// How a fixture's tensor is made.
enum Source {
    /// Encoded from synthetic data by the encoder.
    Encoded { data: Vec<f32>, settings: EncodeSettings, kind: &'static str },
    /// Random valid blocks built directly (covers every layout/codec/width the encoder may not pick).
    Blocks { cfg: BlockConfig, entropy: Entropy, seed: u64 },
}

struct Spec {
    name: String,
    rows: usize,
    cols: usize,
    source: Source,
}

fn noise(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    bell(rows * cols, seed, 0.05)
}

fn settings(block: usize, transform: Transform, layout: Layout, values: ValueCodec, target: f64) -> EncodeSettings {
    EncodeSettings {
        target: Target::RelRmse(target),
        profile: None,
        block,
        transform,
        layout,
        values,
        params: ParamsChoice::Auto,
        entropy: Entropy::Rans,
        residual: ResidualChoice::Auto,
    }
}

fn minilm(name: &str) -> Result<(Vec<f32>, usize, usize)> {
    let path = crate::root().join("fixtures/minilm/weights.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let t = st.tensor(name)?;
    let shape = t.shape();
    if t.dtype() != safetensors::Dtype::F16 || shape.len() != 2 {
        bail!("{name}: expected a 2-D F16 tensor");
    }
    let data = t.data().chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
    Ok((data, shape[0], shape[1]))
}

fn specs() -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    // Encoder-made: smooth, noise-like, odd shapes, every block size, both transforms.
    let enc = |name: &str, rows, cols, data, s: EncodeSettings, kind| Spec {
        name: name.into(),
        rows,
        cols,
        source: Source::Encoded { data, settings: s, kind },
    };
    let mut s = settings(64, Transform::Dct, Layout::P32, ValueCodec::Q16, 0.02);
    out.push(enc("smooth_b64_dct", 150, 203, smooth(150, 203, 1), s.clone(), "synthetic smooth"));
    s = settings(32, Transform::Dwt, Layout::P24, ValueCodec::Q9s, 0.3);
    s.entropy = Entropy::None;
    out.push(enc("noise_b32_dwt", 97, 77, noise(97, 77, 2), s, "synthetic noise"));
    s = settings(16, Transform::Dct, Layout::B4, ValueCodec::F16, 0.05);
    s.residual = ResidualChoice::Sparse;
    s.params = ParamsChoice::Fixed(ParamsPrecision::F32);
    out.push(enc("smooth_b16_sparse", 61, 45, smooth(61, 45, 3), s, "synthetic smooth"));
    s = settings(8, Transform::Dwt, Layout::Wide, ValueCodec::F32, 0.1);
    s.residual = ResidualChoice::Dense;
    s.params = ParamsChoice::Fixed(ParamsPrecision::None);
    out.push(enc("noise_b8_dense", 35, 29, noise(35, 29, 4), s, "synthetic noise"));
    // The shipped MiniLM slices at two targets.
    let (q, qr, qc) = minilm("encoder.layer.0.attention.self.query.weight")?;
    for (tag, rel) in [("r30", 0.3), ("r10", 0.1)] {
        let s = settings(64, Transform::Dct, Layout::P32, ValueCodec::Q16, rel);
        out.push(enc(&format!("minilm_query_{tag}"), qr, qc, q.clone(), s, "MiniLM L0 query"));
    }
    // Its first 768 of 1536 rows: real FFN weights, with the reference file under 2 MiB.
    let (f, fr, fc) = minilm("encoder.layer.0.intermediate.dense.weight")?;
    let rows = fr.min(768);
    let s = settings(64, Transform::Dct, Layout::P32, ValueCodec::Q16, 0.2);
    out.push(enc(
        "minilm_intermediate_r20",
        rows,
        fc,
        f[..rows * fc].to_vec(),
        s,
        "MiniLM L0 intermediate, rows 0..768",
    ));
    // Built blocks: every layout x codec pair, rotating block size, transform, params, entropy.
    let mut i = 0usize;
    for layout in Layout::ALL.iter().copied() {
        for values in ValueCodec::ALL.iter().copied().filter(|&v| layout.accepts(v)) {
            let block = [8, 16, 32, 64][i % 4];
            let transform = Transform::ALL[i % 2];
            let params = ParamsPrecision::ALL[i % 3];
            let entropy = Entropy::ALL[(i / 2) % 2];
            let (rows, cols) = (2 * block + 3, block + 5 + i);
            out.push(Spec {
                name: format!("blocks_{layout}_{values}_b{block}"),
                rows,
                cols,
                source: Source::Blocks {
                    cfg: BlockConfig { block, transform, layout, values, params },
                    entropy,
                    seed: 1000 + i as u64,
                },
            });
            i += 1;
        }
    }
    Ok(out)
}

fn built(
    name: &str,
    rows: usize,
    cols: usize,
    cfg: BlockConfig,
    entropy: Entropy,
    seed: u64,
) -> Result<(EncodedTensor, Vec<u8>)> {
    let blocks = fixture_blocks(&cfg, rows, cols, seed);
    let desc = TensorDesc { entropy, ..desc(&[rows as u64, cols as u64], &cfg) };
    let stats = EncodeStats { cache_blocks: 8, std: 0.0, ..stats_for(&blocks) };
    let (tensor, stream) = EncodedTensor::encode(name, desc, &blocks, entropy)?;
    Ok((tensor.with_stats(stats), stream))
}

/// Writes every fixture and the manifest into `dir`; returns the file names written.
pub fn generate(dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for spec in specs()? {
        let (tensor, stream, kind) = match spec.source {
            Source::Encoded { data, settings, kind } => {
                let out = rbe::encode::encode_tensor(
                    TENSOR,
                    &data,
                    &[spec.rows, spec.cols],
                    rbe::format::SourceDtype::F32,
                    &settings,
                )
                .with_context(|| format!("encoding fixture {}", spec.name))?;
                (out.tensor, out.stream.to_vec(), kind)
            }
            Source::Blocks { cfg, entropy, seed } => {
                let (t, s) = built(TENSOR, spec.rows, spec.cols, cfg, entropy, seed)?;
                (t, s, "built blocks")
            }
        };
        let rbe_name = format!("{}.rbe", spec.name);
        let mut w = RbeWriter::create(&dir.join(&rbe_name))?;
        w.add_tensor(&tensor, &stream)?;
        w.finish()?;
        // Reload exactly what a reader sees (entropy coding undone).
        let file = rbe::format::RbeFile::open(&dir.join(&rbe_name))?;
        let t = file.tensor(TENSOR)?;
        let (rows, cols) = (t.rows(), t.cols());
        let w64 = reference_f64(&t)?;
        let decode = t.decode()?;
        let ref_name = format!("{}.ref.safetensors", spec.name);
        let mut st = SafetensorsWriter::create(&dir.join(&ref_name))?;
        st.add("decode", "F32", &[rows, cols], &f32_bytes(&decode))?;
        let mut rng = Rng::new(0x5eed ^ rows as u64 ^ ((cols as u64) << 20));
        for batch in [1usize, 4] {
            let x: Vec<f32> = (0..batch * cols).map(|_| rng.signed_f32()).collect();
            let y = dense::gemm(&w64, rows, cols, &x, batch);
            st.add(&format!("x{batch}"), "F32", &[batch, cols], &f32_bytes(&x))?;
            st.add(&format!("y{batch}"), "F64", &[batch, rows], &f64_bytes(&y))?;
        }
        st.finish()?;
        let d = t.desc();
        let (sparse, dense, k_mean) = t.residual_mix()?;
        entries.push(serde_json::json!({
            "name": spec.name,
            "source": kind,
            "rbe": rbe_name,
            "reference": ref_name,
            "tensor": TENSOR,
            "rows": rows,
            "cols": cols,
            "block": d.block,
            "transform": d.transform.name(),
            "layout": d.layout.name(),
            "values": d.values.name(),
            "params": d.params.name(),
            "entropy": d.entropy.name(),
            "sparse_blocks": sparse,
            "dense_blocks": dense,
            "k_mean": (k_mean * 1000.0).round() / 1000.0,
            "rbe_xxh3": rbe::format::checksum(&std::fs::read(dir.join(&rbe_name))?),
            "reference_xxh3": rbe::format::checksum(&std::fs::read(dir.join(&ref_name))?),
        }));
        files.push(rbe_name);
        files.push(ref_name);
    }
    let manifest = serde_json::json!({
        "generator": "cargo xtask fixtures",
        "error": "max |y - y_ref| / max |y_ref| over the batch-1 and batch-4 products (decode modes: and the decoded matrix)",
        "tolerances": {
            "gpu": TOL_GPU,
            "cpu_exact": TOL_CPU_EXACT,
            "cpu_dct_direct_q8": TOL_CPU_Q8,
            "cpu_progressive_coarse": "RbeLinear::coarse_error_bound() * max ||x||_2 / max |y_ref| + cpu_exact",
        },
        "fixtures": entries,
    });
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    std::fs::write(dir.join("manifest.json"), text)?;
    files.push("manifest.json".into());
    Ok(files)
}

/// Regenerates into a scratch directory and lists the files that differ from `committed`.
pub fn drift(committed: &Path) -> Result<Vec<String>> {
    let scratch = crate::root().join(format!("target/fixtures-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let files = generate(&scratch)?;
    let mut bad = Vec::new();
    for f in &files {
        let fresh = std::fs::read(scratch.join(f))?;
        match std::fs::read(committed.join(f)) {
            Ok(old) if old == fresh => {}
            Ok(_) => bad.push(format!("{f} differs")),
            Err(_) => bad.push(format!("{f} missing")),
        }
    }
    if let Ok(rd) = std::fs::read_dir(committed) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !files.contains(&n) {
                bad.push(format!("{n} is not produced by the generator"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(bad)
}

/// `cargo xtask fixtures [--check] [--out DIR]`.
pub fn run(args: &[String]) -> Result<()> {
    let committed: PathBuf = crate::root().join(DIR);
    if args.iter().any(|a| a == "--check") {
        let bad = drift(&committed)?;
        if !bad.is_empty() {
            bail!("fixtures drifted from the generator (run `cargo xtask fixtures`):\n  {}", bad.join("\n  "));
        }
        eprintln!("fixtures: {} match the generator", committed.display());
        return Ok(());
    }
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--out needs a directory")?),
        None => committed,
    };
    let files = generate(&out)?;
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(out.join(f)).ok()).map(|m| m.len()).sum();
    eprintln!("fixtures: {} files, {} bytes in {}", files.len(), total, out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_fixtures_match_the_generator() {
        let bad = super::drift(&crate::root().join(super::DIR)).unwrap();
        assert!(bad.is_empty(), "fixtures drifted (run `cargo xtask fixtures`):\n{}", bad.join("\n"));
    }
}
