//! `cargo xtask synth-model --gib N`: a deterministic sharded synthetic f16 model (noise-like
//! weights, std 0.02, 4096 x 16384 tensors, 8 per shard) to measure encoding at scale.

use anyhow::{Context, bail};
use rbe::format::SafetensorsWriter;

const ROWS: usize = 4096;
const COLS: usize = 16384;
const PER_SHARD: usize = 8;

/// A small, fast, seeded Gaussian source (xorshift64* + Box-Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn pair(&mut self) -> (f64, f64) {
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        (r * t.cos(), r * t.sin())
    }
}

/// Writes the model; prints the index path.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let gib: usize = match args {
        [flag, n] if flag == "--gib" => n.parse().context("--gib takes a whole number")?,
        _ => bail!("usage: cargo xtask synth-model --gib N"),
    };
    let tensor_bytes = ROWS * COLS * 2;
    let tensors = (gib << 30).div_ceil(tensor_bytes).max(1);
    let shards = tensors.div_ceil(PER_SHARD);
    let dir = crate::root().join("target").join(format!("synth-{gib}"));
    std::fs::create_dir_all(&dir)?;
    let mut noise = Noise(0x9E3779B97F4A7C15);
    let mut weight_map = serde_json::Map::new();
    let mut index = 0;
    for s in 0..shards {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", s + 1);
        let mut w = SafetensorsWriter::create(&dir.join(&name))?;
        for _ in 0..PER_SHARD.min(tensors - index) {
            let tensor = format!("layers.{index}.mlp.weight");
            let mut data = Vec::with_capacity(tensor_bytes);
            for _ in 0..ROWS * COLS / 2 {
                let (a, b) = noise.pair();
                data.extend_from_slice(&half::f16::from_f64(a * 0.02).to_le_bytes());
                data.extend_from_slice(&half::f16::from_f64(b * 0.02).to_le_bytes());
            }
            w.add(&tensor, "F16", &[ROWS, COLS], &data)?;
            weight_map.insert(tensor, serde_json::Value::String(name.clone()));
            index += 1;
        }
        w.finish()?;
        eprintln!("wrote {name}");
    }
    let json = serde_json::json!({"metadata": {"total_size": tensors * tensor_bytes}, "weight_map": weight_map});
    let path = dir.join("model.safetensors.index.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
    println!("{}", path.display());
    Ok(())
}
