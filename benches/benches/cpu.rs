//! criterion: every RBE decode mode against dense f32 on 4096x4096 (GEMV) and 1536x384 (batch 16),
//! hot weights. Short by default (`sample_size(10)`, 1 s measurement); `rbe bench` covers cold runs
//! and candle.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{Criterion, criterion_group, criterion_main};
use rbe_cpu::{DecodeMode, Isa, Precision, RbeLinear, dense};
use std::time::Duration;

const MODES: [DecodeMode; 6] = [
    DecodeMode::DctDirect,
    DecodeMode::DctDirectQ8,
    DecodeMode::SparseMask,
    DecodeMode::Progressive(Precision::Coarse),
    DecodeMode::Progressive(Precision::Full),
    DecodeMode::Full,
];

fn shapes(c: &mut Criterion) {
    for (rows, cols, batch) in [(4096usize, 4096usize, 1usize), (1536, 384, 16)] {
        let (t, _) = rbe_benches::encoded(rows, cols, 0.0735);
        let w = t.decode().expect("decodes");
        let x = rbe_benches::synthetic(batch, cols, 3);
        let mut y = vec![0f32; batch * rows];
        let mut g = c.benchmark_group(format!("{rows}x{cols}_b{batch}"));
        g.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300));
        g.bench_function("dense_f32", |b| {
            b.iter(|| {
                for v in 0..batch {
                    dense::gemv(Isa::detected(), &w, rows, cols, &x[v * cols..], &mut y[v * rows..]);
                }
            })
        });
        for mode in MODES {
            let layer = RbeLinear::new(&t, None, mode).expect("builds");
            if mode == DecodeMode::Full {
                layer.set_cache_blocks(t.block_count());
            }
            for isa in [Isa::Scalar, Isa::detected()] {
                if isa == Isa::Scalar && rows * cols > 1 << 20 {
                    continue;
                }
                let mut l = RbeLinear::new(&t, None, mode).expect("builds");
                l.set_isa(isa).expect("supported");
                l.set_cache_blocks(t.block_count());
                g.bench_function(format!("rbe_{}_{}", mode.name(), isa.name()), |b| {
                    b.iter(|| l.forward_batch_into(&x, batch, &mut y).expect("runs"))
                });
            }
            drop(layer);
        }
        g.finish();
    }
}

criterion_group!(benches, shapes);
criterion_main!(benches);
