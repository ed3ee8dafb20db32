//! aarch64 kernels: Advanced SIMD (NEON, part of every aarch64 CPU) and, for the int16-pair
//! plane product, the `dotprod` extension (`sdot`). Like the x86-64 kernels they are compiled
//! once per field width `W` and batch chunk (const generics), and callers in [`super`] check
//! buffer lengths and the CPU's features before any of these run.
//!
//! What is here:
//! - `plane_f32`: each 128-bit vector holds 4 lanes, i.e. 4 consecutive rows at one column
//!   group. A field is brought to the top of the int32 lane (`shl`) and sign-extended down
//!   (`sshr`), converted (`scvtf`) and multiplied into the row accumulators with `fmla` against
//!   the broadcast input (`ld1r`). `RC` row vectors are walked per pass (the column group's lanes
//!   read in order) for a batch chunk of 8, 4, 2 or 1 inputs. Shift amounts are immediates: the
//!   width dispatch passes the ones derived from `W` as further const parameters.
//! - `plane_i16`: field `k` of both 16-bit halves of 4 lanes is decoded at once on int16
//!   elements (`ushr` to the bottom, `shl` + `sshr` to sign-extend), then multiplied with each stream's broadcast int16 pair by widening
//!   multiply-accumulates into int32 (`smlal`/`smlal2`, the even/odd products kept apart and
//!   added pairwise, like `pmaddwd`): exact, whatever int16 values the streams hold. At the end of
//!   each scale segment the integer sums are folded into f32 accumulators with that segment's
//!   scale (`scvtf` + `fmla`), as the oracle does per segment.
//!   With `dotprod` ([`super::Isa::NeonDot`]), widths `W <= 8` whose streams all fit int8 (the
//!   Q8 path's inputs) interleave the bytes of two decoded fields (`trn1`) so that each lane holds
//!   four int8 weights of one row, and one `sdot` per stream adds four products per row against
//!   the matching int8 inputs: also exact. Other chunks take the `smlal` path.
//! - `cols_f32`: the column-major block product, `fmla` against broadcast inputs.
//! - `dot_f32`: four 4-lane `fmla` chains and a horizontal sum.
//! - `axpy_f64`: `fmul` then `fadd` (never `fmla`), so results are bit-identical to the scalar
//!   oracle.
//! - `prefetch_l2`: `prfm pldl2keep` through inline assembly (the prefetch intrinsic is not
//!   stable); the plane kernels honour `prefetch_ahead` with it, one hint per 64-byte line.
//!
//! Testing: this project's build machines and CI are x86-64 with no aarch64 machine or emulator,
//! so there these kernels are only compile-checked (`cargo xtask ci`, or `cargo xtask
//! check-aarch64`, runs `cargo check` and `cargo clippy -D warnings` for
//! `aarch64-unknown-linux-gnu` when that target's standard library is installed).
//! `crates/rbe-cpu/tests/kernels.rs` compares every [`super::Isa::available`] path against the
//! scalar oracle ([`super::generic`]), so on an aarch64 machine `cargo test -p rbe-cpu` exercises
//! them all. When they were written, `cargo test --release -p rbe-cpu` was also run once under
//! user-mode emulation (qemu-aarch64 7.2 with an aarch64 cross linker, installed by hand, not part
//! of CI; its default CPU has `dotprod`, so `Neon` and `NeonDot` both ran) and passed. Emulation
//! says nothing about speed: these kernels have not been timed on real hardware.

//!
//! Kernel families: float planes and the column-major product, dot and axpy here; the int16-pair
//! planes in [`int16`]. Batch and stream chunking is shared with x86-64 ([`super::chunks`]).

use super::chunks::{Args, CArgs, cols_chunks, plane_f32_chunks};
use super::{ColsJob, PlaneF32};
use std::arch::aarch64::*;

/// Row vectors (of 4 rows) per pass: the largest of 8, 4, 2 that is at most `want` and divides
/// the `nv` row vectors of the block (`nv` is even: blocks are multiples of 8).
fn rows_per_pass(nv: usize, want: usize) -> usize {
    [8, 4].into_iter().find(|&r| r <= want && nv.is_multiple_of(r)).unwrap_or(2)
}

/// Dispatch over the field width for the float plane kernel: `W` and the shift amounts it
/// needs as further constants (stable Rust cannot compute `32 - W` in a const argument), checked
/// against `W` in the kernel: `32 - W`, `16 mod W` and `16 + 16 mod W`.
macro_rules! by_width_f32 {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        match $w {
            1 => $f::<1, 31, 0, 16, $($g)*>($($arg),*),
            2 => $f::<2, 30, 0, 16, $($g)*>($($arg),*),
            3 => $f::<3, 29, 1, 17, $($g)*>($($arg),*),
            4 => $f::<4, 28, 0, 16, $($g)*>($($arg),*),
            5 => $f::<5, 27, 1, 17, $($g)*>($($arg),*),
            6 => $f::<6, 26, 4, 20, $($g)*>($($arg),*),
            7 => $f::<7, 25, 2, 18, $($g)*>($($arg),*),
            8 => $f::<8, 24, 0, 16, $($g)*>($($arg),*),
            9 => $f::<9, 23, 7, 23, $($g)*>($($arg),*),
            10 => $f::<10, 22, 6, 22, $($g)*>($($arg),*),
            11 => $f::<11, 21, 5, 21, $($g)*>($($arg),*),
            12 => $f::<12, 20, 4, 20, $($g)*>($($arg),*),
            13 => $f::<13, 19, 3, 19, $($g)*>($($arg),*),
            14 => $f::<14, 18, 2, 18, $($g)*>($($arg),*),
            15 => $f::<15, 17, 1, 17, $($g)*>($($arg),*),
            _ => $f::<16, 16, 0, 16, $($g)*>($($arg),*),
        }
    };
}

/// Prefetch hint for the line holding `p` into L2 (`prfm pldl2keep`), as `prefetcht1` on x86-64.
/// `core::arch::aarch64::_prefetch` is unstable, hence the inline assembly.
#[inline(always)]
pub(super) fn prefetch_l2(p: *const u8) {
    // SAFETY: `prfm` is only a hint: it never faults, whatever the address, and changes no state
    // the program can observe (no registers, flags or memory).
    unsafe { std::arch::asm!("prfm pldl2keep, [{p}]", p = in(reg) p, options(nostack, preserves_flags, readonly)) };
}

/// Fills `$wv` (`RC` vectors) with the 4-word lanes `$first + 4 r` of plane `$a.words`, each as
/// `$as` of the loaded `u32` vector, with one L2 hint per 64-byte line (every fourth 16-byte
/// vector) when `$a.prefetch_ahead` is set. A macro so the float and int16 kernels keep their
/// own inlined loads. Safety: the lanes lie inside the plane and NEON is enabled.
macro_rules! load_lanes {
    ($a:expr, $first:expr, $wv:ident, $as:ident) => {
        for (r, w) in $wv.iter_mut().enumerate() {
            // SAFETY: lanes `first + 4 r .. + 4` lie inside the plane, per the caller's contract.
            let p = unsafe { $a.words.add($first + 4 * r) };
            // SAFETY: as above.
            *w = $as(unsafe { vld1q_u32(p) });
            if $a.prefetch_ahead != 0 && ($first + 4 * r).is_multiple_of(16) {
                prefetch_l2((p as *const u8).wrapping_add($a.prefetch_ahead));
            }
        }
    };
}

pub(super) mod int16;
pub(super) use int16::plane_i16;

pub(super) fn plane_f32(job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    if !sh.block.is_multiple_of(8) {
        // Not a packing geometry (blocks are multiples of 8); keep the oracle's answer.
        return super::generic::plane_f32(job, out, ostride);
    }
    let nv = sh.block / 4;
    // Fields per 16-bit half, `16 / W`: passed at run time on purpose, so that the compiler does
    // not unroll the field loop fully (it then hoists every input broadcast of the group and
    // spills them, for the narrow widths).
    let fph = sh.slots / 2;
    plane_f32_chunks(job, out, ostride, |a, nb| {
        // Row vectors per pass: at most 16 accumulators, and room beside them for the broadcast
        // inputs and the lanes being decoded (32 NEON registers; more spill in the inner loop).
        let rc = rows_per_pass(nv, if nb >= 4 { 2 } else { 4 });
        // SAFETY: `super::plane_f32` checked that `words` holds the plane, that every one of the
        // `nb` inputs holds `groups * slots` values and every output `b`; NEON is part of every
        // aarch64 CPU (and `Isa::supported` was checked by the caller); `rc` divides `b / 4`.
        unsafe {
            match (nb, rc) {
                (8, _) => by_width_f32!(sh.width, f32_neon, [8, 2], (a, fph)),
                (4, _) => by_width_f32!(sh.width, f32_neon, [4, 2], (a, fph)),
                (2, 4) => by_width_f32!(sh.width, f32_neon, [2, 4], (a, fph)),
                (2, _) => by_width_f32!(sh.width, f32_neon, [2, 2], (a, fph)),
                (_, 4) => by_width_f32!(sh.width, f32_neon, [1, 4], (a, fph)),
                _ => by_width_f32!(sh.width, f32_neon, [1, 2], (a, fph)),
            }
        }
    });
}

/// NEON must be available; `a` must describe valid buffers (see `plane_f32`); `b % 8 == 0` and
/// `RC` divides `b / 4`; `R`, `M`, `M16` as [`by_width_f32!`] passes them.
///
/// Walks each column group's lanes for `RC` row vectors at once (sequential reads). Slot `s` of a
/// lane is its half `s & 1`'s field `s >> 1`. Each half's fields go from the last to the first:
/// the last is brought to the top of the lane (shift left by `16 + M` for the low half, `M` for
/// the high one) and each field is an arithmetic shift right by `32 - W` away from its int32
/// value; a further shift left by `W` brings up the next. All shifts are immediates, so no
/// register holds a shift count. With fewer than 8 accumulators (`NB * RC < 8`) the two halves
/// feed two chains per row vector. The summation order depends on the plane alone, never on
/// threads.
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn f32_neon<const W: i32, const R: i32, const M: i32, const M16: i32, const NB: usize, const RC: usize>(
    a: Args,
    fph: usize,
) {
    const { assert!(R == 32 - W && M == 16 % W && M16 == 16 + M) };
    debug_assert_eq!(fph, (16 / W) as usize);
    let slots = 2 * fph;
    let chains = if NB * RC >= 8 { 1 } else { 2 };
    for r0 in (0..a.b / 4).step_by(RC) {
        let mut acc = [[[vdupq_n_f32(0.0); 2]; RC]; NB];
        for cg in 0..a.groups {
            let first = cg * a.b + r0 * 4;
            let mut wv = [vdupq_n_s32(0); RC];
            // The plane holds groups * b words, so these lanes are inside it.
            load_lanes!(a, first, wv, vreinterpretq_s32_u32);
            for h in 0..2 {
                let c = if chains == 2 { h } else { 0 };
                let mut top = [vdupq_n_s32(0); RC];
                for (t, &w) in top.iter_mut().zip(&wv) {
                    *t = if h == 0 { vshlq_n_s32::<M16>(w) } else { vshlq_n_s32::<M>(w) };
                }
                for k in (0..fph).rev() {
                    let s = 2 * k + h;
                    let mut xb = [vdupq_n_f32(0.0); NB];
                    for (v, x) in xb.iter_mut().enumerate() {
                        // SAFETY: input v holds groups * slots values.
                        *x = unsafe { vld1q_dup_f32(a.xs.add(v * a.xstride + cg * slots + s)) };
                    }
                    for (r, t) in top.iter_mut().enumerate() {
                        let ff = vcvtq_f32_s32(vshrq_n_s32::<R>(*t));
                        if k > 0 {
                            *t = vshlq_n_s32::<W>(*t);
                        }
                        for (accv, x) in acc.iter_mut().zip(&xb) {
                            accv[r][c] = vfmaq_f32(accv[r][c], ff, *x);
                        }
                    }
                }
            }
        }
        let sc = vdupq_n_f32(a.scale);
        for (v, accv) in acc.iter().enumerate() {
            for (r, ar) in accv.iter().enumerate() {
                let t = if chains == 2 { vaddq_f32(ar[0], ar[1]) } else { ar[0] };
                // SAFETY: output v holds b values; rows (r0 + r) * 4 .. + 4 are inside.
                unsafe {
                    let o = a.out.add(v * a.ostride + (r0 + r) * 4);
                    vst1q_f32(o, vfmaq_f32(vld1q_f32(o), t, sc));
                }
            }
        }
    }
}

pub(super) fn cols_f32(job: &ColsJob<'_>, out: &mut [f32], ostride: usize) {
    let b = job.b;
    if !b.is_multiple_of(8) {
        // Blocks are multiples of 8; anything else keeps the oracle's answer.
        super::prefetch(job.next);
        return super::generic::cols_f32(job.wt, b, job.xs, job.xstride, job.nb, out, ostride);
    }
    let nv = b / 4;
    cols_chunks(job, out, ostride, |a, n| {
        if !a.next.is_null() {
            // The next block in one burst of hints before the first chunk (set only for it).
            super::prefetch(job.next);
        }
        let rc = rows_per_pass(nv, 16 / n.min(4) / if n == 8 { 2 } else { 1 });
        // SAFETY: lengths checked by `super::cols_f32`; NEON is part of every aarch64 CPU; `rc`
        // divides `b / 4`.
        unsafe {
            match (n, rc) {
                (8, _) => cols_neon::<8, 2>(a),
                (4, 4) => cols_neon::<4, 4>(a),
                (4, _) => cols_neon::<4, 2>(a),
                (2, 8) => cols_neon::<2, 8>(a),
                (2, 4) => cols_neon::<2, 4>(a),
                (2, _) => cols_neon::<2, 2>(a),
                (_, 8) => cols_neon::<1, 8>(a),
                (_, 4) => cols_neon::<1, 4>(a),
                _ => cols_neon::<1, 2>(a),
            }
        }
    });
}

/// # Safety
/// NEON available; `a` valid; `b % 8 == 0` and `RC` divides `b / 4`.
///
/// Reads `RC` 4-row vectors of each column per pass; with fewer than 8 accumulators the columns
/// alternate between two chains by parity (`b` is even).
#[inline(never)]
#[target_feature(enable = "neon")]
unsafe fn cols_neon<const NB: usize, const RC: usize>(a: CArgs) {
    let chains = if NB * RC >= 8 { 1 } else { 2 };
    for r0 in (0..a.b / 4).step_by(RC) {
        let mut acc = [[[vdupq_n_f32(0.0); 2]; RC]; NB];
        for c2 in 0..a.b / 2 {
            for h in 0..2 {
                let c = 2 * c2 + h;
                let k = if chains == 2 { h } else { 0 };
                let mut xb = [vdupq_n_f32(0.0); NB];
                for (v, x) in xb.iter_mut().enumerate() {
                    // SAFETY: input v holds b values.
                    *x = unsafe { vld1q_dup_f32(a.xs.add(v * a.xstride + c)) };
                }
                for r in 0..RC {
                    // SAFETY: column c, rows (r0 + r) * 4 .. + 4 are inside the b*b block.
                    let w = unsafe { vld1q_f32(a.wt.add(c * a.b + (r0 + r) * 4)) };
                    for (accv, x) in acc.iter_mut().zip(&xb) {
                        accv[r][k] = vfmaq_f32(accv[r][k], w, *x);
                    }
                }
            }
        }
        for (v, accv) in acc.iter().enumerate() {
            for (r, ar) in accv.iter().enumerate() {
                let t = if chains == 2 { vaddq_f32(ar[0], ar[1]) } else { ar[0] };
                // SAFETY: output v holds b values.
                unsafe {
                    let o = a.out.add(v * a.ostride + (r0 + r) * 4);
                    vst1q_f32(o, vaddq_f32(t, vld1q_f32(o)));
                }
            }
        }
    }
}

pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: NEON is part of every aarch64 CPU; the body bounds its reads by both lengths.
    unsafe { dot_neon(a, b) }
}

/// # Safety
/// NEON available.
#[target_feature(enable = "neon")]
unsafe fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 <= n for both slices.
            unsafe { *ak = vfmaq_f32(*ak, vld1q_f32(a.as_ptr().add(i + 4 * k)), vld1q_f32(b.as_ptr().add(i + 4 * k))) };
        }
        i += 16;
    }
    let t = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut s = vaddvq_f32(t);
    for k in i..n {
        s += a[k] * b[k];
    }
    s
}

pub(super) fn axpy_f64(a: f64, x: &[f64], y: &mut [f64]) {
    // SAFETY: NEON is part of every aarch64 CPU; the body bounds its accesses by both lengths.
    unsafe { axpy_neon(a, x, y) }
}

/// # Safety
/// NEON available.
///
/// `y += a * x` as a multiply then an add, each rounded (never `fmla`): the scalar oracle's bits.
#[target_feature(enable = "neon")]
unsafe fn axpy_neon(a: f64, x: &[f64], y: &mut [f64]) {
    let n = x.len().min(y.len());
    let va = vdupq_n_f64(a);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n for both slices.
        unsafe {
            let (xp, yp) = (x.as_ptr().add(i), y.as_mut_ptr().add(i));
            let y0 = vaddq_f64(vld1q_f64(yp), vmulq_f64(va, vld1q_f64(xp)));
            let y1 = vaddq_f64(vld1q_f64(yp.add(2)), vmulq_f64(va, vld1q_f64(xp.add(2))));
            vst1q_f64(yp, y0);
            vst1q_f64(yp.add(2), y1);
        }
        i += 4;
    }
    for k in i..n {
        y[k] += a * x[k];
    }
}
