//! GPU kernels against the scalar reference decoder (`rbe-format`, f64) on random small tensors
//! covering every layout x codec pair, dense widths 1..16 with outliers, both transforms, every
//! parameter precision and every block size. Skipped with a note when no adapter is present,
//! unless `RBE_REQUIRE_GPU=1`.

use rbe_format::{BlockConfig, EncodedTensor, Layout, ParamsPrecision, Transform, ValueCodec};
use rbe_gpu::{GpuContext, GpuError, GpuLinear, GpuMode};
use rbe_testkit::blocks::{self, fixture_blocks, reference_f64};
use rbe_testkit::dense::gemm;
use rbe_testkit::metrics::max_rel_err;
use rbe_testkit::{Rng, gpu};

fn ctx() -> Option<GpuContext> {
    gpu::or_skip(GpuContext::new(), |e| matches!(e, GpuError::NoAdapter { .. }))
}

/// A `rows x cols` tensor of random valid blocks (the conformance fixtures' recipe).
fn tensor(name: &str, cfg: BlockConfig, rows: usize, cols: usize, seed: u64) -> EncodedTensor {
    let blocks = fixture_blocks(&cfg, rows, cols, seed);
    blocks::tensor(name, &[rows as u64, cols as u64], &cfg, &blocks)
}

fn check(ctx: &GpuContext, t: &EncodedTensor, what: &str) {
    let w = reference_f64(t).unwrap();
    let (rows, cols) = (t.rows(), t.cols());
    let mut rng = Rng::new(7);
    for batch in [1usize, 4, 11] {
        let x: Vec<f32> = (0..batch * cols).map(|_| rng.signed_f32()).collect();
        let y = gemm(&w, rows, cols, &x, batch);
        for mode in GpuMode::ALL {
            let layer = GpuLinear::new(ctx, t, None, mode).unwrap();
            let got = layer.forward_batch(&x, batch).unwrap();
            let e = max_rel_err(&got, &y);
            if std::env::var("RBE_GPU_TEST_VERBOSE").is_ok() {
                eprintln!("{what} {} batch {batch}: {e:e}", mode.name());
            }
            assert!(e <= 1e-4, "{what} {} batch {batch}: max rel err {e:e}", mode.name());
            if batch == 1 {
                let d = layer.decode().unwrap();
                let e = max_rel_err(&d, &w);
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
            let cfg = blocks::config(b, transform, Layout::P32, ValueCodec::Q16, ParamsPrecision::F16);
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
