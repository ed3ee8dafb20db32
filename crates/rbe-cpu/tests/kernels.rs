//! Every SIMD kernel against the scalar oracle (`simd::generic`) on random inputs: all field
//! widths, block sizes 8..64, batch sizes 1..9 (every compiled chunk and remainder), packed
//! planes, column-major dense blocks and the 1-D transforms.

use rbe_cpu::Isa;
use rbe_cpu::pack::{PackShape, pack_plane};
use rbe_cpu::simd::{self, PlaneF32, PlaneI16};
use rbe_cpu::tables::Tables;
use rbe_format::Transform;
use rbe_testkit::Rng;
use rbe_testkit::metrics::assert_close as close;

/// Seeded uniform values in `[-0.5, 0.5)`.
fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut g = Rng::new(seed);
    move || g.centred_f32()
}

/// A random `b x b` plane of `w`-bit values drawn from `r`, packed: its shape and words.
fn random_plane(r: &mut impl FnMut() -> f32, b: usize, w: u32) -> (PackShape, Vec<u32>) {
    let sh = PackShape::new(b, w);
    let lim = 1i64 << (w - 1);
    let q: Vec<i32> = (0..b * b).map(|_| (((r() + 0.5) * (2 * lim) as f32) as i64 - lim) as i32).collect();
    let q: Vec<i32> = q.iter().map(|&v| v.clamp(-(lim as i32), lim as i32 - 1)).collect();
    let mut words = Vec::new();
    pack_plane(&q, &sh, &mut words);
    (sh, words)
}

/// Calls `test(r, b, w, shape, words)` with a random plane (drawn from `r`) for every block
/// size in `bs` and, within it, every width in `ws`.
fn every_plane<R: FnMut() -> f32>(
    mut r: R,
    bs: &[usize],
    ws: impl IntoIterator<Item = u32> + Clone,
    mut test: impl FnMut(&mut R, usize, u32, PackShape, &[u32]),
) {
    for &b in bs {
        for w in ws.clone() {
            let (sh, words) = random_plane(&mut r, b, w);
            test(&mut r, b, w, sh, &words);
        }
    }
}

/// Runs `kernel` on copies of `init` (rows of `ostride` values, the first `b` of each written)
/// with the scalar oracle and with every available ISA: each ISA's output within 1e-5 of the
/// oracle's, and the gap after the `b` outputs of every row untouched.
fn against_oracle(
    init: &[f32],
    b: usize,
    ostride: usize,
    kernel: impl Fn(Isa, &mut [f32]),
    what: impl Fn(Isa) -> String,
) {
    let mut want = init.to_vec();
    kernel(Isa::Scalar, &mut want);
    for isa in Isa::available() {
        let mut got = init.to_vec();
        kernel(isa, &mut got);
        for (g, i) in got.chunks(ostride).zip(init.chunks(ostride)) {
            assert_eq!(g[b..], i[b..], "{}: gap overwritten", what(isa));
        }
        close(&got, &want, 1e-5, &what(isa));
    }
}

#[test]
fn packed_planes_match_the_oracle() {
    every_plane(rng(11), &[8, 16, 32, 64], 1..=16u32, |r, b, w, sh, words| {
        let padded = sh.groups * sh.slots;
        for nb in 1..=9usize {
            let xstride = padded + 3;
            let xs: Vec<f32> = (0..nb * xstride)
                .map(|i| {
                    if i % xstride < b {
                        r()
                    } else if i % xstride < padded {
                        0.0
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            let ostride = b + 5;
            let init: Vec<f32> = (0..nb * ostride).map(|_| r()).collect();
            let job = PlaneF32 { words, shape: sh, xs: &xs, xstride, nb, scale: 0.37, prefetch_ahead: 4096 };
            let kernel = |isa, out: &mut [f32]| simd::plane_f32(isa, &job, out, ostride);
            against_oracle(&init, b, ostride, kernel, |isa| format!("plane b={b} w={w} nb={nb} {isa:?}"));
        }
    });
}

/// The integer kernels (Q8 mode) against the scalar oracle: every width (table-permute and shift
/// decodes), 1 to 9 streams (every compiled chunk of 4, 2 and 1), several streams per output.
/// Integer sums are exact, so only the final f32 scaling may differ (FMA against mul + add).
#[test]
fn integer_planes_match_the_oracle() {
    every_plane(rng(13), &[8, 16, 32, 64], 1..=16u32, |r, b, w, sh, words| {
        let pairs_per = sh.groups * sh.slots / 2;
        for streams in 1..=9usize {
            let pstride = pairs_per + 1;
            let qv = |t: f32| ((t * 254.0).round() as i16 as u16) as u32;
            let pairs: Vec<u32> = (0..streams * pstride)
                .map(|i| if i % pstride < b / 2 { qv(r()) | (qv(r()) << 16) } else { 0 })
                .collect();
            let segment_pairs = 1 + streams % 4;
            let segs = pairs_per.div_ceil(segment_pairs);
            let scales: Vec<f32> = (0..streams * segs).map(|_| r()).collect();
            let outs: Vec<usize> = (0..streams).map(|t| t / 2).collect();
            let ostride = b + 3;
            let n_out = streams.div_ceil(2);
            let init: Vec<f32> = (0..n_out * ostride).map(|_| r()).collect();
            let (words, shape, pairs, scales, outs) = (&words, sh, &pairs, &scales, &outs);
            let job = PlaneI16 { words, shape, pairs, pstride, segment_pairs, scales, outs, prefetch_ahead: 4096 };
            let kernel = |isa, out: &mut [f32]| simd::plane_i16(isa, &job, out, ostride);
            against_oracle(&init, b, ostride, kernel, |isa| format!("i16 plane b={b} w={w} streams={streams} {isa:?}"));
        }
    });
}

#[test]
fn dense_blocks_and_transforms_match_the_oracle() {
    let mut r = rng(12);
    for b in [8usize, 16, 32, 64] {
        let wt: Vec<f32> = (0..b * b).map(|_| r()).collect();
        for nb in 1..=9usize {
            let (xstride, ostride) = (b + 2, b + 1);
            let xs: Vec<f32> = (0..nb * xstride).map(|_| r()).collect();
            let init: Vec<f32> = (0..nb * ostride).map(|_| r()).collect();
            let mut want = init.clone();
            simd::cols_f32(Isa::Scalar, &wt, b, &xs, xstride, nb, &mut want, ostride);
            for isa in Isa::available() {
                let mut got = init.clone();
                simd::cols_f32(isa, &wt, b, &xs, xstride, nb, &mut got, ostride);
                close(&got, &want, 1e-5, &format!("cols b={b} nb={nb} {isa:?}"));
                for t in [Transform::Dct, Transform::Dwt] {
                    let tab = Tables::shared(b, t);
                    let (mut f, mut i) = (vec![0f32; nb * ostride], vec![0f32; nb * ostride]);
                    tab.forward_batch(isa, &xs, xstride, nb, &mut f, ostride);
                    tab.inverse_batch(isa, &f, ostride, nb, &mut i, ostride);
                    for v in 0..nb {
                        let mut one = vec![0f32; b];
                        tab.forward(&xs[v * xstride..v * xstride + b], &mut one);
                        close(&f[v * ostride..v * ostride + b], &one, 1e-5, &format!("forward {t:?} b={b} {isa:?}"));
                        // Orthonormal: the inverse gives the input back.
                        close(&i[v * ostride..v * ostride + b], &xs[v * xstride..v * xstride + b], 1e-5, "round trip");
                    }
                }
            }
        }
    }
}

/// The integer kernels with int16 inputs beyond int8 (the contract allows any int16 whose sums fit
/// i32): paths that specialise int8 inputs (aarch64 `sdot`) must fall back, still exact. One
/// stream of a chunk out of int8 range is enough to force the fallback for that chunk.
#[test]
fn integer_planes_with_wide_inputs_match_the_oracle() {
    every_plane(rng(14), &[8, 16, 64], [2u32, 3, 5, 8, 12], |r, b, w, sh, words| {
        let pstride = sh.groups * sh.slots / 2;
        for streams in [1usize, 2, 3, 6] {
            // Stream 0 spans +-300, the others int8; |sum| <= 64 * 2^11 * 300 fits i32.
            let qv = |t: f32, wide: bool| ((t * if wide { 600.0 } else { 254.0 }).round() as i16 as u16) as u32;
            let pairs: Vec<u32> = (0..streams * pstride)
                .map(|i| {
                    let wide = i / pstride == 0;
                    if i % pstride < b / 2 { qv(r(), wide) | (qv(r(), wide) << 16) } else { 0 }
                })
                .collect();
            // Segments of 8 pairs, 3 (boundaries inside a lane) and 1.
            let segment_pairs = [8, 3, 1][streams % 3];
            let segs = pstride.div_ceil(segment_pairs);
            let scales: Vec<f32> = (0..streams * segs).map(|_| r()).collect();
            let outs: Vec<usize> = (0..streams).collect();
            let ostride = b;
            let init: Vec<f32> = (0..streams * ostride).map(|_| r()).collect();
            let (words, shape, pairs, scales, outs) = (&words, sh, &pairs, &scales, &outs);
            let job = PlaneI16 { words, shape, pairs, pstride, segment_pairs, scales, outs, prefetch_ahead: 0 };
            let kernel = |isa, out: &mut [f32]| simd::plane_i16(isa, &job, out, ostride);
            let what = |isa| format!("wide i16 plane b={b} w={w} streams={streams} {isa:?}");
            against_oracle(&init, b, ostride, kernel, what);
        }
    });
}

/// Dot products (any length, tails included) within rounding of the oracle, and `axpy_f64`
/// bit-identical to it (no fused multiply-add on any path).
#[test]
fn dot_and_axpy_match_the_oracle() {
    let mut r = rng(15);
    for n in [0usize, 1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257] {
        let a: Vec<f32> = (0..n).map(|_| r()).collect();
        let b: Vec<f32> = (0..n).map(|_| r()).collect();
        let want = simd::dot_f32(Isa::Scalar, &a, &b);
        let x: Vec<f64> = (0..n).map(|_| f64::from(r()) * 1e3 + f64::from(r())).collect();
        let y0: Vec<f64> = (0..n).map(|_| f64::from(r()) / 3.0).collect();
        let mut y_want = y0.clone();
        simd::axpy_f64(Isa::Scalar, 0.1 + 1e-9, &x, &mut y_want);
        for isa in Isa::available() {
            let got = simd::dot_f32(isa, &a, &b);
            let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            assert!((got - want).abs() <= 1e-5 * mag.max(1e-30), "dot n={n} {isa:?}: {got} vs {want}");
            let mut y = y0.clone();
            simd::axpy_f64(isa, 0.1 + 1e-9, &x, &mut y);
            let same = y.iter().zip(&y_want).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "axpy n={n} {isa:?}");
        }
    }
}
