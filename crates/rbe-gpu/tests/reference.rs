//! GPU kernels against the scalar reference decoder (`rbe-format`, f64) on random small tensors
//! covering every layout x codec pair, dense widths 1..16 with outliers, both transforms, every
//! parameter precision and every block size. Skipped with a note when no adapter is present,
//! unless `RBE_REQUIRE_GPU=1`.

use half::f16;
use rbe_format::{
    BlockConfig, BlockDecoder, Coefficient, DenseResidual, EncodedBlock, EncodedTensor, Entropy, Layout,
    ParamsPrecision, RbeParams, Residual, SparseResidual, TensorDesc, Transform, ValueCodec,
};
use rbe_gpu::{GpuContext, GpuLinear, GpuMode};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f32 {
        (self.next() as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
}

fn ctx() -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(c) => Some(c),
        Err(e @ rbe_gpu::GpuError::NoAdapter { .. }) if !rbe_gpu::gpu_required() => {
            eprintln!("note: GPU tests skipped, no adapter ({e}); set RBE_REQUIRE_GPU=1 to fail instead");
            None
        }
        Err(e) => panic!("cannot open the GPU context: {e}"),
    }
}

fn random_block(cfg: &BlockConfig, rng: &mut Rng, dense: bool) -> EncodedBlock {
    let b = cfg.block;
    let mut theta = [0f32; 8];
    for t in &mut theta {
        *t = match cfg.params {
            ParamsPrecision::None => 0.0,
            ParamsPrecision::F32 => rng.unit(),
            ParamsPrecision::F16 => f16::from_f32(rng.unit()).to_f32(),
        };
    }
    let residual = if dense {
        let width = 1 + rng.below(16) as u8;
        let half = 1i32 << (width - 1);
        let values = (0..b * b)
            .map(|_| {
                if width < 16 && rng.below(20) == 0 {
                    // An outlier: outside the payload width.
                    let v = half + rng.below(3000) as i32;
                    (if rng.below(2) == 0 { v } else { -v - 1 }).clamp(-32768, 32767) as i16
                } else {
                    (rng.below(2 * half as u64) as i32 - half) as i16
                }
            })
            .collect();
        Residual::Dense(DenseResidual { width, step: 0.001 + rng.unit().abs() * 0.01, values })
    } else {
        let k = rng.below((b * b).min(60) as u64 + 1) as usize;
        let mut pos: Vec<usize> = (0..k).map(|_| rng.below((b * b) as u64) as usize).collect();
        pos.sort_unstable();
        pos.dedup();
        let coefficients = pos
            .iter()
            .map(|&p| {
                let field = match cfg.values {
                    ValueCodec::F32 => rng.unit().to_bits(),
                    ValueCodec::F16 => u32::from(f16::from_f32(rng.unit()).to_bits()),
                    ValueCodec::Q16 => rng.below(65536) as u32,
                    ValueCodec::Q9s => rng.below(1024) as u32,
                    ValueCodec::MuLaw8 => rng.below(256) as u32,
                };
                Coefficient { row: (p / b) as u16, col: (p % b) as u16, field }
            })
            .collect();
        let scale = match cfg.values.scale_bytes(cfg.layout) {
            0 => 1.0,
            2 => f16::from_f32(0.001 + rng.unit().abs() * 0.01).to_f32(),
            _ => 1e-4 + rng.unit().abs() * 1e-3,
        };
        Residual::Sparse(SparseResidual { scale, coefficients })
    };
    EncodedBlock { params: RbeParams(theta), residual }
}

fn tensor(name: &str, cfg: BlockConfig, rows: usize, cols: usize, seed: u64) -> EncodedTensor {
    let mut rng = Rng(seed);
    let n = rows.div_ceil(cfg.block) * cols.div_ceil(cfg.block);
    let blocks: Vec<EncodedBlock> = (0..n).map(|i| random_block(&cfg, &mut rng, i % 3 == 1)).collect();
    let desc = TensorDesc {
        shape: vec![rows as u64, cols as u64],
        dtype: "F32".into(),
        block: cfg.block,
        transform: cfg.transform,
        layout: cfg.layout,
        values: cfg.values,
        params: cfg.params,
        entropy: Entropy::None,
        profile: None,
        cache_blocks: 0,
        rmse: 0.0,
        rel_rmse: 0.0,
        std: 0.0,
        k_mean: 0.0,
        sparse: 0,
        dense: 0,
        stream_bytes: 0,
        xxh3: String::new(),
    };
    EncodedTensor::from_blocks(name, desc, &blocks).expect("valid random blocks")
}

/// The reference decode in f64 (not rounded), row-major.
fn reference(t: &EncodedTensor) -> Vec<f64> {
    let (rows, cols, b) = (t.rows(), t.cols(), t.config().block);
    let mut dec = BlockDecoder::new(*t.config());
    let mut out = vec![0.0; rows * cols];
    for i in 0..t.block_count() {
        let vals = dec.decode(&t.block(i).unwrap()).to_vec();
        let (h, w) = t.block_extent(i);
        let (r0, c0) = ((i / t.grid().1) * b, (i % t.grid().1) * b);
        for r in 0..h {
            for c in 0..w {
                out[(r0 + r) * cols + c0 + c] = vals[r * b + c];
            }
        }
    }
    out
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs())) / scale
}

fn check(ctx: &GpuContext, t: &EncodedTensor, what: &str) {
    let w = reference(t);
    let (rows, cols) = (t.rows(), t.cols());
    let mut rng = Rng(7);
    for batch in [1usize, 4, 11] {
        let x: Vec<f32> = (0..batch * cols).map(|_| rng.unit()).collect();
        let mut y = vec![0f64; batch * rows];
        for n in 0..batch {
            for r in 0..rows {
                y[n * rows + r] = (0..cols).map(|c| w[r * cols + c] * f64::from(x[n * cols + c])).sum();
            }
        }
        for mode in GpuMode::ALL {
            let layer = GpuLinear::new(ctx, t, None, mode).unwrap();
            let got = layer.forward_batch(&x, batch).unwrap();
            let e = max_rel(&got, &y);
            if std::env::var("RBE_GPU_TEST_VERBOSE").is_ok() {
                eprintln!("{what} {} batch {batch}: {e:e}", mode.name());
            }
            assert!(e <= 1e-4, "{what} {} batch {batch}: max rel err {e:e}", mode.name());
            if batch == 1 {
                let d = layer.decode().unwrap();
                let e = max_rel(&d, &w);
                assert!(e <= 1e-5, "{what} {} decode: max rel err {e:e}", mode.name());
            }
        }
    }
}

#[test]
fn every_layout_codec_params_and_transform() {
    let Some(ctx) = ctx() else { return };
    let mut seed = 1;
    for layout in Layout::ALL.iter().copied() {
        for values in ValueCodec::ALL.iter().copied().filter(|&v| layout.accepts(v)) {
            for params in ParamsPrecision::ALL.iter().copied() {
                for transform in Transform::ALL.iter().copied() {
                    seed += 1;
                    let b = [8, 16][seed as usize % 2];
                    let cfg = BlockConfig { block: b, transform, layout, values, params };
                    let t = tensor("t", cfg, 2 * b + 3, b + 5, seed);
                    check(&ctx, &t, &format!("{layout}/{values}/{params}/{transform} b={b}"));
                }
            }
        }
    }
}

#[test]
fn every_block_size() {
    let Some(ctx) = ctx() else { return };
    for (i, b) in [8usize, 16, 32, 64].into_iter().enumerate() {
        for transform in Transform::ALL.iter().copied() {
            let cfg = BlockConfig {
                block: b,
                transform,
                layout: Layout::P32,
                values: ValueCodec::Q16,
                params: ParamsPrecision::F16,
            };
            let t = tensor("t", cfg, b + 1 + i, 2 * b - 3, 100 + i as u64);
            check(&ctx, &t, &format!("b={b} {transform}"));
        }
    }
}

#[test]
fn shape_errors_are_typed() {
    let Some(ctx) = ctx() else { return };
    let cfg = BlockConfig::default();
    let t = tensor("named", cfg, 10, 10, 3);
    let layer = GpuLinear::new(&ctx, &t, None, GpuMode::DctDirect).unwrap();
    let e = layer.forward(&[0.0; 3]).unwrap_err();
    assert!(e.to_string().contains("named"), "{e}");
}
