//! Every decode mode and every instruction set against "reference decode + dense f64 GEMV", on
//! matrices encoded with `rbe-encode` (edge shapes, all block sizes, both transforms, sparse and
//! dense blocks, params none/f16/f32).

use rbe_cpu::{DecodeMode, Isa, Precision, RbeLinear};
use rbe_encode::{EncodeSettings, ParamsChoice, Target, encode_tensor};
use rbe_format::{EncodedTensor, Entropy, ParamsPrecision, Transform};
use rbe_testkit::Rng;
use rbe_testkit::dense::{gemm, gemm_t};
use rbe_testkit::metrics::max_rel_err;

/// Seeded uniform values in `[-0.5, 0.5)`.
fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut g = Rng::new(seed);
    move || g.centred_f32()
}

/// Noise plus a smooth ramp, so blocks mix sparse and dense residuals.
fn matrix(rows: usize, cols: usize, seed: u64, smooth: bool) -> Vec<f32> {
    let mut r = rng(seed);
    (0..rows * cols)
        .map(|i| {
            let (y, x) = ((i / cols) as f32, (i % cols) as f32);
            if smooth { (0.05 * x).sin() * (0.03 * y).cos() + 0.01 * r() } else { 0.1 * r() }
        })
        .collect()
}

fn encode(
    rows: usize,
    cols: usize,
    block: usize,
    transform: Transform,
    params: ParamsPrecision,
    smooth: bool,
    rel: f64,
) -> EncodedTensor {
    let data = matrix(rows, cols, (rows * 31 + cols) as u64, smooth);
    let settings = EncodeSettings {
        target: Target::RelRmse(rel),
        profile: None,
        block,
        transform,
        params: ParamsChoice::Fixed(params),
        entropy: Entropy::None,
        ..EncodeSettings::default()
    };
    encode_tensor("w", &data, &[rows, cols], rbe_format::SourceDtype::F32, &settings).expect("encodes").tensor
}

const MODES: [DecodeMode; 6] = [
    DecodeMode::Full,
    DecodeMode::DctDirect,
    DecodeMode::DctDirectQ8,
    DecodeMode::SparseMask,
    DecodeMode::Progressive(Precision::Coarse),
    DecodeMode::Progressive(Precision::Full),
];

fn check(t: &EncodedTensor, batch: usize, label: &str) {
    let (rows, cols) = (t.rows(), t.cols());
    let w = t.decode().expect("decodes");
    let mut r = rng(7);
    let x: Vec<f32> = (0..batch * cols).map(|_| r()).collect();
    let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 1e-3).collect();
    let mut y_ref = gemm(&w, rows, cols, &x, batch);
    for v in 0..batch {
        for (o, b) in y_ref[v * rows..(v + 1) * rows].iter_mut().zip(&bias) {
            *o += f64::from(*b);
        }
    }
    // Reference transposed product, f64.
    let g: Vec<f32> = (0..batch * rows).map(|_| r()).collect();
    let xg_ref = gemm_t(&w, rows, cols, &g, batch);
    let x_norm = (0..batch)
        .map(|v| x[v * cols..(v + 1) * cols].iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt())
        .fold(0f64, f64::max);
    for mode in MODES {
        for isa in Isa::available() {
            let mut layer = RbeLinear::new(t, Some(bias.clone()), mode).expect("builds");
            layer.set_isa(isa).expect("supported");
            let y = layer.forward_batch(&x, batch).expect("runs");
            let err = max_rel_err(&y, &y_ref);
            match mode {
                DecodeMode::DctDirectQ8 => assert!(err <= 1e-2, "{label} {mode:?} {isa:?}: {err:e}"),
                DecodeMode::Progressive(Precision::Coarse) => {
                    // ||dy||_2 <= E ||x||_2, checked per vector through the max entry.
                    let bound = layer.coarse_error_bound() * x_norm;
                    let worst = y.iter().zip(&y_ref).fold(0f64, |a, (&g, &r)| a.max((f64::from(g) - r).abs()));
                    assert!(
                        worst <= bound * 1.0001 + 1e-5 * y_ref.iter().fold(0f64, |a, v| a.max(v.abs())),
                        "{label} coarse {isa:?}: {worst} > {bound}"
                    );
                }
                _ => assert!(err <= 1e-5, "{label} {mode:?} {isa:?}: {err:e}"),
            }
            let xg = layer.backward_input(&g, batch).expect("backward");
            let berr = max_rel_err(&xg, &xg_ref);
            assert!(berr <= 1e-5, "{label} backward {mode:?} {isa:?}: {berr:e}");
        }
    }
}

#[test]
fn every_mode_and_isa_matches_the_reference() {
    for &block in &[8usize, 16, 32, 64] {
        for transform in [Transform::Dct, Transform::Dwt] {
            for (params, smooth) in
                [(ParamsPrecision::None, false), (ParamsPrecision::F16, true), (ParamsPrecision::F32, true)]
            {
                let (rows, cols) = (block * 2 + 3, block + 5);
                let t = encode(rows, cols, block, transform, params, smooth, 0.05);
                check(&t, if block == 64 { 3 } else { 9 }, &format!("b={block} {transform} {params} smooth={smooth}"));
            }
        }
    }
}

#[test]
fn wide_widths_and_outliers_are_exact() {
    // A tight target forces wide dense fields (and outliers).
    let t = encode(70, 45, 16, Transform::Dct, ParamsPrecision::None, false, 0.002);
    check(&t, 2, "tight");
}

#[test]
fn results_are_identical_for_any_thread_count() {
    // Large enough (> 0.25 M multiply-adds per call) that the parallel row split really runs.
    let t = encode(600, 530, 32, Transform::Dct, ParamsPrecision::F16, true, 0.05);
    let mut r = rng(3);
    let x: Vec<f32> = (0..2 * 530).map(|_| r()).collect();
    for mode in MODES {
        let layer = RbeLinear::new(&t, None, mode).expect("builds");
        let run = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool")
                .install(|| layer.forward_batch(&x, 2).expect("runs"))
        };
        let one = run(1);
        assert_eq!(one, run(2), "{mode:?}");
        assert_eq!(one, run(3), "{mode:?}");
    }
}

#[test]
fn cache_counts_hits_and_misses() {
    let t = encode(96, 96, 32, Transform::Dct, ParamsPrecision::None, false, 0.05);
    let layer = RbeLinear::new(&t, None, DecodeMode::Full).expect("builds");
    layer.set_cache_blocks(9);
    let x = vec![0.5f32; 96];
    layer.forward(&x).expect("runs");
    layer.forward(&x).expect("runs");
    let s = layer.stats();
    assert_eq!((s.cache_misses, s.cache_hits, s.blocks_decoded), (9, 9, 9));
    assert!((s.hit_rate() - 0.5).abs() < 1e-12);
}

#[test]
fn bad_shapes_are_errors() {
    let t = encode(20, 20, 8, Transform::Dct, ParamsPrecision::None, false, 0.05);
    let layer = RbeLinear::new(&t, None, DecodeMode::DctDirect).expect("builds");
    assert!(layer.forward(&[0.0; 19]).is_err());
    assert!(RbeLinear::new(&t, Some(vec![0.0; 3]), DecodeMode::DctDirect).is_err());
}

#[test]
fn resident_bytes_stay_near_the_stream() {
    let t = encode(256, 256, 64, Transform::Dct, ParamsPrecision::None, false, 0.0735);
    for mode in [DecodeMode::DctDirect, DecodeMode::Progressive(Precision::Full)] {
        let layer = RbeLinear::new(&t, None, mode).expect("builds");
        let ratio = layer.resident_bytes() as f64 / (t.runtime_bytes() + 4) as f64;
        assert!(ratio <= 1.25, "{mode:?}: {ratio}");
    }
}
