//! aarch64 int16-pair plane kernels (`PlaneI16`, the Q8 path): widening multiply-accumulates
//! (`smlal`/`smlal2`) for any int16 streams, and `sdot` under `dotprod` when the weights and the
//! chunk's streams fit int8. See the parent module for how they work.

use super::super::PlaneI16;
use super::super::chunks::{IArgs, plane_i16_chunks};
use super::{prefetch_l2, rows_per_pass};
use std::arch::aarch64::*;

/// Dispatch over the field width `W` to `$f::<W, R, ...>`, with `R` (a shift that const generics
/// cannot compute from `W`) looked up in the `W => R` table; the last row takes every other width.
macro_rules! by_width_table {
    ($w:expr, $f:ident, $g:tt, $args:tt, [$($n:literal => $r:literal),*], $last:literal => $lr:literal) => {
        match $w {
            $($n => by_width_table!(@call $f, $n, $r, $g, $args),)*
            _ => by_width_table!(@call $f, $last, $lr, $g, $args),
        }
    };
    (@call $f:ident, $n:literal, $r:literal, [$($g:tt)*], ($($arg:expr),*)) => {
        $f::<$n, $r, $($g)*>($($arg),*)
    };
}

/// Dispatch over the field width for the int16-pair kernel: `W` and `max(16 - W, 1)`.
macro_rules! by_width_i16 {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        by_width_table!($w, $f, [$($g)*], ($($arg),*), [
            1 => 15, 2 => 14, 3 => 13, 4 => 12, 5 => 11, 6 => 10, 7 => 9, 8 => 8,
            9 => 7, 10 => 6, 11 => 5, 12 => 4, 13 => 3, 14 => 2, 15 => 1
        ], 16 => 1)
    };
}

/// Dispatch over the widths that fit int8 (`1..=8`; the caller checks `W <= 8`) for the `sdot`
/// kernel: `W` and `max(8 - W, 1)`.
macro_rules! by_width8 {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        by_width_table!($w, $f, [$($g)*], ($($arg),*), [1 => 7, 2 => 6, 3 => 5, 4 => 4, 5 => 3, 6 => 2, 7 => 1], 8 => 1)
    };
}

/// Whether both int16 halves of every pair of `streams` streams fit int8.
fn pairs_fit_i8(pairs: &[u32], pstride: usize, streams: usize, per: usize) -> bool {
    let fits = |h: u32| (-128..=127).contains(&(h as u16 as i16));
    (0..streams).all(|t| pairs[t * pstride..t * pstride + per].iter().all(|&p| fits(p) && fits(p >> 16)))
}

pub(in crate::simd) fn plane_i16(dotprod: bool, job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    if !sh.block.is_multiple_of(8) {
        // Not a packing geometry (blocks are multiples of 8); keep the oracle's answer.
        return super::super::generic::plane_i16(job, out, ostride);
    }
    let nv = sh.block / 4;
    let per = sh.groups * sh.slots / 2;
    plane_i16_chunks(job, out, ostride, |a, np, t0| {
        // `sdot` multiplies int8 by int8: only exact when the weights (W <= 8) and this chunk's
        // inputs all fit int8.
        let dot = dotprod && sh.width <= 8 && pairs_fit_i8(&job.pairs[t0 * job.pstride..], job.pstride, np, per);
        // Row vectors per pass: the integer accumulators (one or two per row vector and stream),
        // the f32 segment sums, the lanes and the broadcast inputs within 32 registers.
        let rc = rows_per_pass(nv, if np >= 2 && !dot { 2 } else { 8 / np.max(2) });
        // SAFETY: lengths checked by `simd::plane_i16` (every stream's `segs` scales included);
        // NEON is part of every aarch64 CPU, and `dotprod` is only true for `Isa::NeonDot`, whose
        // support the caller checked; `rc` divides `b / 4`; `dot` implies `W <= 8` and int8 inputs.
        unsafe {
            if dot {
                match (np, rc) {
                    (4, _) => by_width8!(sh.width, i16_dot, [4, 2], (a)),
                    (2, 4) => by_width8!(sh.width, i16_dot, [2, 4], (a)),
                    (2, _) => by_width8!(sh.width, i16_dot, [2, 2], (a)),
                    (_, 4) => by_width8!(sh.width, i16_dot, [1, 4], (a)),
                    _ => by_width8!(sh.width, i16_dot, [1, 2], (a)),
                }
            } else {
                match (np, rc) {
                    (4, _) => by_width_i16!(sh.width, i16_neon, [4, 2], (a)),
                    (2, _) => by_width_i16!(sh.width, i16_neon, [2, 2], (a)),
                    (_, 4) => by_width_i16!(sh.width, i16_neon, [1, 4], (a)),
                    _ => by_width_i16!(sh.width, i16_neon, [1, 2], (a)),
                }
            }
        }
    });
}

/// Loads `RC` row vectors of column group `cg` as int16 elements (element `2i` is row `i`'s low
/// half, `2i + 1` its high half), prefetching one line in four when asked.
///
/// # Safety
/// NEON must be available; the lanes `cg * b + r0 * 4 .. + 4 RC` lie inside the plane.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_rows<const RC: usize>(a: &IArgs, cg: usize, r0: usize) -> [int16x8_t; RC] {
    let first = cg * a.b + r0 * 4;
    let mut wv = [vdupq_n_s16(0); RC];
    // Inside the plane, per the contract.
    load_lanes!(a, first, wv, vreinterpretq_s16_u32);
    wv
}

/// The low field of every int16 element, sign-extended: shift left then arithmetic shift right
/// by `R16 = 16 - W` (nothing to do for `W = 16`, where `R16` is a placeholder 1).
#[inline]
#[target_feature(enable = "neon")]
fn sext16<const W: i32, const R16: i32>(t: int16x8_t) -> int16x8_t {
    if W == 16 { t } else { vshrq_n_s16::<R16>(vshlq_n_s16::<R16>(t)) }
}

/// Every int16 element shifted right by `W`, logically: the next field to the bottom.
#[inline]
#[target_feature(enable = "neon")]
fn next16<const W: i32>(t: int16x8_t) -> int16x8_t {
    vreinterpretq_s16_u16(vshrq_n_u16::<W>(vreinterpretq_u16_s16(t)))
}

/// Ends scale segment `g`: `facc[t][r] += scale[t][g] * sums[t][r]` (sums converted to f32).
///
/// # Safety
/// NEON must be available; every stream of the chunk has a scale for segment `g`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn fold<const NP: usize, const RC: usize>(
    a: &IArgs,
    g: usize,
    sums: &[[int32x4_t; RC]; NP],
    facc: &mut [[float32x4_t; RC]; NP],
) {
    for ((st, ft), sc) in sums.iter().zip(facc.iter_mut()).zip(a.scales) {
        // SAFETY: per the contract, stream t's scales cover segment g.
        let sc = unsafe { vld1q_dup_f32(sc.add(g)) };
        for (s, f) in st.iter().zip(ft.iter_mut()) {
            *f = vfmaq_f32(*f, vcvtq_f32_s32(*s), sc);
        }
    }
}

/// Adds the f32 segment sums into the chunk's outputs for rows `(r0 + r) * 4 .. + 4`.
///
/// # Safety
/// NEON must be available; every output of the chunk holds `b` values.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn store_sums<const NP: usize, const RC: usize>(a: &IArgs, r0: usize, facc: &[[float32x4_t; RC]; NP]) {
    for (ft, o) in facc.iter().zip(a.outs) {
        for (r, &f) in ft.iter().enumerate() {
            // SAFETY: output t holds b values; rows (r0 + r) * 4 .. + 4 are inside. Streams that
            // share an output are added one after the other.
            unsafe {
                let o = o.add((r0 + r) * 4);
                vst1q_f32(o, vaddq_f32(f, vld1q_f32(o)));
            }
        }
    }
}

/// # Safety
/// NEON must be available; `a` valid (scales included); `b % 8 == 0`, and `RC` divides `b / 4`;
/// `R16` as [`by_width_i16!`] passes it.
///
/// Field `k` of a lane's two halves (columns `2m`, `2m + 1` of pair `m`) is decoded once per row
/// vector (the fields shifted down by `W` per step, the bottom one sign-extended by a shift
/// pair; immediates only) and multiplied with all `NP` streams: `smlal` on the low 4 int16
/// elements (rows 0, 1) and `smlal2` on the high 4 (rows 2, 3) against the broadcast pair
/// `[p_2m, p_2m+1]`, the two products of a row kept in neighbouring int32 elements until `addp`
/// sums them at the end of a scale segment, which folds them into f32 with its scale. The
/// integer arithmetic wraps modulo 2^32, so each segment's sum is exact whenever it fits i32.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn i16_neon<const W: i32, const R16: i32, const NP: usize, const RC: usize>(a: IArgs) {
    const { assert!(R16 == if W == 16 { 1 } else { 16 - W }) };
    let fph = (16 / W) as usize;
    let total = a.groups * fph;
    for r0 in (0..a.b / 4).step_by(RC) {
        let mut acc = [[[vdupq_n_s32(0); 2]; RC]; NP];
        let mut facc = [[vdupq_n_f32(0.0); RC]; NP];
        // Pairs left in the current scale segment, and its index.
        let (mut left, mut g) = (a.segment_pairs, 0);
        for cg in 0..a.groups {
            // SAFETY: lanes `cg * b + r0 * 4 .. + 4 RC` lie inside the plane (groups * b words).
            let mut cur = unsafe { load_rows::<RC>(&a, cg, r0) };
            for k in 0..fph {
                let mut xb = [vdupq_n_s16(0); NP];
                for (t, x) in xb.iter_mut().enumerate() {
                    // SAFETY: stream t's pair array holds groups * fph pairs.
                    *x = vreinterpretq_s16_u32(unsafe { vld1q_dup_u32(a.pairs.add(t * a.pstride + cg * fph + k)) });
                }
                for (r, t) in cur.iter_mut().enumerate() {
                    let p = sext16::<W, R16>(*t);
                    if k + 1 < fph {
                        *t = next16::<W>(*t);
                    }
                    for (acct, x) in acc.iter_mut().zip(&xb) {
                        acct[r][0] = vmlal_s16(acct[r][0], vget_low_s16(p), vget_low_s16(*x));
                        acct[r][1] = vmlal_high_s16(acct[r][1], p, *x);
                    }
                }
                left -= 1;
                if left == 0 || cg * fph + k + 1 == total {
                    let mut sums = [[vdupq_n_s32(0); RC]; NP];
                    for (st, acct) in sums.iter_mut().zip(acc.iter_mut()) {
                        for (s, ar) in st.iter_mut().zip(acct.iter_mut()) {
                            // [r0e + r0o, r1e + r1o, r2e + r2o, r3e + r3o]
                            *s = vpaddq_s32(ar[0], ar[1]);
                            *ar = [vdupq_n_s32(0); 2];
                        }
                    }
                    // SAFETY: segment g < segments(); every stream has its scales.
                    unsafe { fold::<NP, RC>(&a, g, &sums, &mut facc) };
                    (left, g) = (a.segment_pairs, g + 1);
                }
            }
        }
        // SAFETY: outputs checked by `simd::plane_i16`.
        unsafe { store_sums::<NP, RC>(&a, r0, &facc) };
    }
}

/// `sdot acc.4s, a.16b, b.16b`: each int32 element of `acc` plus the four int8 products of its
/// bytes. Inline assembly because the dot-product intrinsics are not stable.
///
/// # Safety
/// The `dotprod` extension must be available.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    accumulate_asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", vreg, acc, a, b)
}

/// # Safety
/// NEON and `dotprod` must be available; `a` valid (scales included); `b % 8 == 0`, `RC` divides
/// `b / 4`, `W <= 8`, every pair of the chunk's streams holds two int8-range values, and `R8` is
/// as [`by_width8!`] passes it.
///
/// Fields `k` and `k + 1` of 4 lanes, shifted to the bottom of each int16 half, have their low
/// bytes interleaved (`trn1`) and sign-extended from `W` bits (a shift pair on bytes): lane `i`
/// then holds row `i`'s weights for slots `[2k, 2k + 2, 2k + 1, 2k + 3]`. Each stream's pairs
/// `k`, `k + 1` are packed into the same order of int8 inputs, broadcast, and one `sdot` adds the
/// four products per row. A step takes field `k` alone (a zero field beside it) when `k` is the
/// lane's last field or ends a scale segment. Exact: every product and partial sum is an integer
/// the i32 accumulators hold.
#[inline(never)]
#[target_feature(enable = "neon,dotprod")]
unsafe fn i16_dot<const W: i32, const R8: i32, const NP: usize, const RC: usize>(a: IArgs) {
    const { assert!(W <= 8 && R8 == if W == 8 { 1 } else { 8 - W }) };
    let fph = (16 / W) as usize;
    let total = a.groups * fph;
    let low = |p: u32| p & 0xff;
    for r0 in (0..a.b / 4).step_by(RC) {
        let mut acc = [[vdupq_n_s32(0); RC]; NP];
        let mut facc = [[vdupq_n_f32(0.0); RC]; NP];
        // Pairs left in the current scale segment, and its index.
        let (mut left, mut g) = (a.segment_pairs, 0);
        for cg in 0..a.groups {
            // SAFETY: lanes `cg * b + r0 * 4 .. + 4 RC` lie inside the plane (groups * b words).
            let mut cur = unsafe { load_rows::<RC>(&a, cg, r0) };
            let mut k = 0;
            while k < fph {
                let two = k + 1 < fph && left >= 2;
                let mut xb = [vdupq_n_s8(0); NP];
                for (t, x) in xb.iter_mut().enumerate() {
                    let at = t * a.pstride + cg * fph + k;
                    // SAFETY: stream t's pair array holds groups * fph pairs; `k + 1` is read only
                    // when it is a field of this group.
                    let (p0, p1) = unsafe { (*a.pairs.add(at), if two { *a.pairs.add(at + 1) } else { 0 }) };
                    let quad = low(p0) | low(p1) << 8 | low(p0 >> 16) << 16 | low(p1 >> 16) << 24;
                    *x = vreinterpretq_s8_u32(vdupq_n_u32(quad));
                }
                for (r, t) in cur.iter_mut().enumerate() {
                    // Fields k and k + 1 at the bottom of each int16 element, higher ones above.
                    let f0 = *t;
                    let after = next16::<W>(f0);
                    let f1 = if two { after } else { vdupq_n_s16(0) };
                    *t = if two { next16::<W>(after) } else { after };
                    let raw = vtrn1q_s8(vreinterpretq_s8_s16(f0), vreinterpretq_s8_s16(f1));
                    // Each byte's low W bits sign-extended (the bits above belong to other fields).
                    let bytes = if W == 8 { raw } else { vshrq_n_s8::<R8>(vshlq_n_s8::<R8>(raw)) };
                    for (acct, x) in acc.iter_mut().zip(&xb) {
                        // SAFETY: `dotprod` is available per this function's contract.
                        acct[r] = unsafe { sdot(acct[r], bytes, *x) };
                    }
                }
                let step = if two { 2 } else { 1 };
                k += step;
                left -= step;
                if left == 0 || cg * fph + k == total {
                    // SAFETY: segment g < segments(); every stream has its scales.
                    unsafe { fold::<NP, RC>(&a, g, &acc, &mut facc) };
                    acc = [[vdupq_n_s32(0); RC]; NP];
                    (left, g) = (a.segment_pairs, g + 1);
                }
            }
        }
        // SAFETY: outputs checked by `simd::plane_i16`.
        unsafe { store_sums::<NP, RC>(&a, r0, &facc) };
    }
}
