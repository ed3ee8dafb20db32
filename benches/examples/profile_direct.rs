//! A profiling harness: one `RbeLinear` on a seeded noise-like matrix, called in a loop, so
//! `perf record` sees the product alone. `cargo run --release -p rbe-benches --example
//! profile_direct -- [ROWS COLS CALLS MODE THREADS]` (MODE: direct | q8; defaults 1024 1024 20000
//! direct 1). Prints microseconds per call.

use rbe_cpu::{DecodeMode, RbeLinear};
use rbe_testkit::timing::timed;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (rows, cols, calls) = (arg(0, 1024), arg(1, 1024), arg(2, 20000));
    let mode = match args.get(3).map(String::as_str) {
        Some("q8") => DecodeMode::DctDirectQ8,
        _ => DecodeMode::DctDirect,
    };
    let threads = arg(4, 1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let (tensor, _) = rbe_benches::encoded(rows, cols, 0.0735);
    let layer = RbeLinear::new(&tensor, None, mode).expect("builds");
    let x = rbe_benches::synthetic(1, cols, 3);
    let mut y = vec![0f32; rows];
    let ((), secs) = timed(|| {
        pool.install(|| {
            for _ in 0..calls {
                layer.forward_into(&x, &mut y).expect("runs");
            }
        })
    });
    println!("{:.2} us per call", secs * 1e6 / calls as f64);
}
