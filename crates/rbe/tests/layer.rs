//! The backend-neutral `Layer`: every mode of every compiled backend against the dense product of
//! the reference decode; GPU rows skip without an adapter unless `RBE_REQUIRE_GPU=1`.

use rbe::{Backend, Layer, LayerError, Mode};
use rbe_encode::{EncodeSettings, Target, encode_tensor};

/// Deterministic pseudo-random values (xorshift), centred.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn gpu_required() -> bool {
    std::env::var("RBE_REQUIRE_GPU").is_ok_and(|v| v.trim() == "1")
}

fn check_backend(backend: Backend) {
    let (rows, cols, batch) = (96, 80, 3);
    let settings = EncodeSettings::builder().target(Target::RelRmse(0.02)).block(32).build().unwrap();
    let enc =
        encode_tensor("w", &noise(rows * cols, 7), &[rows, cols], rbe::format::SourceDtype::F32, &settings).unwrap();
    let dec = enc.tensor.decode().unwrap();
    let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 0.01).collect();
    let x = noise(batch * cols, 11);
    let want: Vec<f64> = (0..batch)
        .flat_map(|v| {
            let (dec, x, bias) = (&dec, &x, &bias);
            (0..rows).map(move |r| {
                f64::from(bias[r])
                    + (0..cols).map(|c| f64::from(dec[r * cols + c]) * f64::from(x[v * cols + c])).sum::<f64>()
            })
        })
        .collect();
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for &mode in backend.modes() {
        let layer = Layer::with_mode(&enc.tensor, Some(bias.clone()), backend, mode).unwrap();
        assert_eq!((layer.backend(), layer.mode()), (backend, mode));
        assert_eq!((layer.in_features(), layer.out_features()), (cols, rows));
        assert!(layer.bytes_per_call() > 0 && layer.resident_bytes() > 0);
        let y = layer.forward_batch(&x, batch).unwrap();
        let mut y2 = vec![0f32; batch * rows];
        layer.forward_batch_into(&x, batch, &mut y2).unwrap();
        assert_eq!(y, y2, "{mode:?}: forward_batch and forward_batch_into differ");
        let one = layer.forward(&x[..cols]).unwrap();
        let diff = one.iter().zip(&y[..rows]).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(f64::from(diff) <= 1e-5 * scale, "{mode:?}: batch of one differs by {diff}");
        let err = y.iter().zip(&want).fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs())) / scale;
        let tol = match mode {
            Mode::DctDirectQ8 => 2e-2,
            Mode::ProgressiveCoarse => {
                // ||y_coarse - y_full||_2 <= E ||x||_2 for every input vector.
                let xn = x.chunks(cols).map(|v| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt());
                layer.coarse_error_bound() * xn.fold(0f64, f64::max) / scale + 1e-5
            }
            _ if backend == Backend::Gpu => 1e-4,
            _ => 1e-5,
        };
        assert!(err <= tol, "{} {mode:?}: max rel err {err:.3e} > {tol:.1e}", backend.name());
        assert!(layer.forward_batch(&x[1..], batch).is_err(), "a short input is an error, not a panic");
    }
}

#[test]
fn cpu_layer_matches_the_reference_in_every_mode() {
    check_backend(Backend::Cpu);
    let enc =
        encode_tensor("w", &noise(64 * 64, 3), &[64, 64], rbe::format::SourceDtype::F32, &EncodeSettings::default())
            .unwrap();
    assert!(Layer::new(&enc.tensor, None, Backend::Cpu).unwrap().mode() == Mode::DctDirect);
    assert!(Backend::Cpu.probe().is_ok());
}

#[test]
fn gpu_layer_matches_the_reference_or_skips() {
    let enc =
        encode_tensor("w", &noise(64 * 64, 3), &[64, 64], rbe::format::SourceDtype::F32, &EncodeSettings::default())
            .unwrap();
    match Backend::Gpu.probe() {
        Ok(adapter) => {
            eprintln!("GPU adapter: {adapter}");
            check_backend(Backend::Gpu);
            let e = Layer::with_mode(&enc.tensor, None, Backend::Gpu, Mode::SparseMask).unwrap_err();
            assert!(matches!(e, LayerError::Unsupported { .. }), "{e}");
        }
        Err(e) if !gpu_required() => eprintln!("GPU test skipped: {e}"),
        Err(e) => panic!("RBE_REQUIRE_GPU=1 but no GPU backend: {e}"),
    }
}
