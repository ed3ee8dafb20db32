//! Stress: one `RbeLinear` in `DecodeMode::Full` with a decode cache far smaller than the layer
//! (4 of 9 blocks), shared by 8 threads each doing many forwards (>= 100 000 in all in release
//! builds, a few hundred in debug). Every result must be bit-identical to the single-thread
//! result, nothing may deadlock, and the LRU must keep working under contention. Throughput for
//! 1, 2 and 8 caller threads is printed (`--nocapture`), never asserted.

use rbe_cpu::{DecodeMode, RbeLinear};
use rbe_encode::{EncodeSettings, Target, encode_tensor};
use rbe_format::Entropy;
use rbe_testkit::Rng;
use std::sync::Arc;
use std::time::Instant;

/// Seeded uniform values in `[-0.5, 0.5)`.
fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut g = Rng::new(seed);
    move || g.centred_f32()
}

const TOTAL: usize = if cfg!(debug_assertions) { 400 } else { 100_000 };

#[test]
fn shared_full_mode_layer_under_contention() {
    // 48 x 40 with 16-blocks: a 3 x 3 grid of 9 blocks, edge blocks on both sides; with 4 cached
    // blocks the cyclic walk misses every time, so every call decodes, inserts and evicts.
    let (rows, cols) = (48, 40);
    let mut r = rng(3);
    let data: Vec<f32> = (0..rows * cols).map(|_| 0.1 * r()).collect();
    let settings = EncodeSettings {
        target: Target::RelRmse(0.05),
        profile: None,
        block: 16,
        entropy: Entropy::None,
        ..EncodeSettings::default()
    };
    let t = encode_tensor("w", &data, &[rows, cols], rbe_format::SourceDtype::F32, &settings).expect("encodes").tensor;
    let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 1e-3).collect();
    let layer = Arc::new(RbeLinear::new(&t, Some(bias), DecodeMode::Full).expect("builds"));
    layer.set_cache_blocks(4);
    let inputs: Vec<Vec<f32>> = (0..4).map(|_| (0..cols).map(|_| r()).collect()).collect();
    // Single-thread references (own pool of one thread), then a cold cache for the stress.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let want: Vec<Vec<f32>> = one.install(|| inputs.iter().map(|x| layer.forward(x).expect("runs")).collect());
    let inputs = Arc::new(inputs);
    let want = Arc::new(want);
    for threads in [1usize, 2, 8] {
        layer.clear_cache();
        layer.reset_stats();
        let per = TOTAL.div_ceil(threads);
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|tid| {
                let (layer, inputs, want) = (layer.clone(), inputs.clone(), want.clone());
                std::thread::spawn(move || {
                    let mut y = vec![0f32; layer.out_features()];
                    for i in 0..per {
                        let k = (tid + i) % inputs.len();
                        layer.forward_into(&inputs[k], &mut y).expect("runs");
                        assert!(y == want[k], "thread {tid} call {i}: result differs from the single-thread one");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no worker panicked");
        }
        let secs = start.elapsed().as_secs_f64();
        let s = layer.stats();
        assert_eq!(s.cache_hits + s.cache_misses, (threads * per * 9) as u64);
        eprintln!(
            "stress: {threads} caller threads, {} forwards in {secs:.2} s = {:.0} forwards/s, hit rate {:.1}%",
            threads * per,
            (threads * per) as f64 / secs,
            100.0 * s.hit_rate()
        );
    }
}
