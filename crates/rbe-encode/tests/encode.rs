//! Encoder behaviour on synthetic data: targets met on the real decode, determinism across
//! thread counts, the sparse path winning on smooth blocks, and clear errors on bad input.

use proptest::prelude::*;
use rbe_encode::{EncodeError, EncodeSettings, ParamsChoice, Profile, ResidualChoice, Target, encode_tensor};
use rbe_format::{Entropy, Layout, ParamsPrecision, Transform, ValueCodec};
use rbe_testkit::Rng;
use rbe_testkit::metrics::rel_rmse;

/// Seeded noise, roughly N(0, scale^2) (sum of four uniforms).
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (0..4).map(|_| rng.centred_f32()).sum::<f32>() * scale * 1.7).collect()
}

/// Low-frequency cosines plus a little noise: the kind of matrix the sparse path is for.
fn smooth(rows: usize, cols: usize) -> Vec<f32> {
    let n = noise(rows * cols, 99, 0.002);
    (0..rows * cols)
        .map(|i| {
            let (r, c) = ((i / cols) as f32 / rows as f32, (i % cols) as f32 / cols as f32);
            0.3 * (3.0 * r).cos() + 0.2 * (5.0 * c + 1.0).sin() + 0.1 * (2.0 * r + 7.0 * c).cos() + n[i]
        })
        .collect()
}

fn settings(target: Target) -> EncodeSettings {
    EncodeSettings { target, profile: None, ..EncodeSettings::default() }
}

#[test]
fn every_target_is_met_on_the_decode() {
    let data = noise(200 * 130, 1, 0.05);
    for rel in [0.005, 0.02, 0.05, 0.1, 0.3] {
        for transform in [Transform::Dct, Transform::Dwt] {
            for block in [8, 16, 32, 64] {
                for entropy in [Entropy::Rans, Entropy::None] {
                    let s = EncodeSettings { transform, block, entropy, ..settings(Target::RelRmse(rel)) };
                    let out = encode_tensor("w", &data, &[200, 130], rbe_format::SourceDtype::F32, &s).unwrap();
                    let got = rel_rmse(&data, &out.tensor.decode().unwrap());
                    assert!(got <= rel, "{transform} b={block} {entropy}: {got} > {rel}");
                    assert!(got >= 0.9 * rel, "target wasted: {got} for {rel}");
                    assert!((out.tensor.stats().rel_rmse - got).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn absolute_rmse_target() {
    let data = noise(128 * 128, 2, 0.05);
    let out =
        encode_tensor("w", &data, &[128, 128], rbe_format::SourceDtype::F32, &settings(Target::Rmse(0.001))).unwrap();
    assert!(out.tensor.stats().rmse <= 0.001);
}

#[test]
fn same_bytes_whatever_the_thread_count() {
    let data = noise(300 * 200, 3, 0.05);
    let encode = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            encode_tensor("w", &data, &[300, 200], rbe_format::SourceDtype::F32, &settings(Target::RelRmse(0.05)))
                .unwrap()
                .stream
                .to_vec()
        })
    };
    let one = encode(1);
    assert_eq!(one, encode(2));
    assert_eq!(one, encode(3));
}

#[test]
fn sparse_path_wins_on_smooth_data() {
    let data = smooth(256, 256);
    let bytes = |residual, entropy| {
        let s = EncodeSettings { residual, entropy, ..settings(Target::RelRmse(0.05)) };
        let out = encode_tensor("smooth", &data, &[256, 256], rbe_format::SourceDtype::F32, &s).unwrap();
        assert!(out.tensor.stats().rel_rmse <= 0.05);
        (out.stream.len(), out.tensor.stats().sparse)
    };
    for entropy in [Entropy::None, Entropy::Rans] {
        let (auto, sparse_blocks) = bytes(ResidualChoice::Auto, entropy);
        let (dense_only, _) = bytes(ResidualChoice::Dense, entropy);
        let (sparse_only, _) = bytes(ResidualChoice::Sparse, entropy);
        eprintln!(
            "smooth 256x256 at rel 0.05, entropy {entropy}: auto {auto} B ({sparse_blocks}/16 sparse), sparse only {sparse_only} B, dense only {dense_only} B"
        );
        assert!(sparse_blocks > 0, "no sparse block chosen on smooth data");
        assert!(auto <= dense_only && sparse_only < dense_only, "sparse does not win: {sparse_only} vs {dense_only}");
        if entropy == Entropy::None {
            assert!(auto * 4 < dense_only, "auto {auto} B vs dense-only {dense_only} B");
        }
    }
}

#[test]
fn notes_reference_block_is_433_bytes_of_stream() {
    let data = noise(64 * 64, 4, 0.05);
    let s = EncodeSettings {
        layout: Layout::B4,
        values: ValueCodec::F16,
        entropy: Entropy::None,
        ..settings(Target::TopK(100))
    };
    let out = encode_tensor("w", &data, &[64, 64], rbe_format::SourceDtype::F32, &s).unwrap();
    // 4 (prelude length) + 4 (index) + 433 (block).
    assert_eq!(out.stream.len(), 441);
    assert_eq!(out.tensor.block_bytes(0).len(), 433);
    assert_eq!(out.tensor.desc().params, ParamsPrecision::F32);
}

#[test]
fn nan_is_reported_with_its_position() {
    let mut data = vec![0.01f32; 128 * 128];
    data[70 * 128 + 3] = f32::NAN;
    match encode_tensor(
        "bad.weight",
        &data,
        &[128, 128],
        rbe_format::SourceDtype::F32,
        &settings(Target::RelRmse(0.05)),
    ) {
        Err(e @ EncodeError::NonFinite { index: 8963, row: 70, col: 3, .. }) => {
            assert!(e.to_string().contains("bad.weight"))
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn impossible_targets_are_errors() {
    let data = noise(64 * 64, 5, 0.05);
    let e =
        encode_tensor("w", &data, &[64, 64], rbe_format::SourceDtype::F32, &settings(Target::Rmse(0.0))).unwrap_err();
    assert!(matches!(e, EncodeError::ImpossibleTarget { .. }), "{e}");
    let e = encode_tensor("w", &data, &[64, 64], rbe_format::SourceDtype::F32, &settings(Target::RelRmse(1e-9)))
        .unwrap_err();
    assert!(matches!(e, EncodeError::ImpossibleTarget { .. }), "{e}");
}

#[test]
fn constant_tensor_is_exact() {
    let data = vec![0.125f32; 64 * 96];
    let out =
        encode_tensor("c", &data, &[64, 96], rbe_format::SourceDtype::F32, &settings(Target::RelRmse(0.05))).unwrap();
    assert_eq!(out.tensor.decode().unwrap(), data);
}

#[test]
fn profiles_record_their_cache_size() {
    let data = noise(64 * 64, 6, 0.05);
    for p in Profile::ALL {
        let s = EncodeSettings { target: Target::RelRmse(p.rel_rmse()), profile: Some(p), ..EncodeSettings::default() };
        let out = encode_tensor("w", &data, &[64, 64], rbe_format::SourceDtype::F32, &s).unwrap();
        assert_eq!(out.tensor.stats().cache_blocks, p.cache_blocks());
        assert_eq!(out.tensor.stats().profile.as_deref(), Some(p.name()));
    }
}

#[test]
fn every_layout_and_codec_encodes_to_target() {
    let data = smooth(96, 80);
    for layout in Layout::ALL.iter().copied() {
        for values in ValueCodec::ALL.iter().copied().filter(|v| layout.accepts(*v)) {
            for params in [
                ParamsChoice::Auto,
                ParamsChoice::Fixed(ParamsPrecision::F32),
                ParamsChoice::Fixed(ParamsPrecision::None),
            ] {
                let s = EncodeSettings { layout, values, params, ..settings(Target::RelRmse(0.02)) };
                let out = encode_tensor("w", &data, &[96, 80], rbe_format::SourceDtype::F32, &s).unwrap();
                assert!(rel_rmse(&data, &out.tensor.decode().unwrap()) <= 0.02, "{layout} {values} {params:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_shapes_meet_random_targets(rows in 1usize..90, cols in 1usize..90, rel in 0.01f64..0.5, block_pow in 3u32..7, seed in 0u64..1000) {
        let data = noise(rows * cols, seed, 0.05);
        let s = EncodeSettings { block: 1 << block_pow, ..settings(Target::RelRmse(rel)) };
        let out = encode_tensor("w", &data, &[rows, cols], rbe_format::SourceDtype::F32, &s).unwrap();
        let dec = out.tensor.decode().unwrap();
        prop_assert_eq!(dec.len(), rows * cols);
        prop_assert!(rel_rmse(&data, &dec) <= rel);
    }
}
