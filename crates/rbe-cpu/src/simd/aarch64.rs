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

use super::{PlaneF32, PlaneI16};
use std::arch::aarch64::*;

/// Batch chunks the kernels are compiled for.
fn chunk(rem: usize) -> usize {
    if rem >= 8 {
        8
    } else if rem >= 4 {
        4
    } else if rem >= 2 {
        2
    } else {
        1
    }
}

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

/// Dispatch over the field width for the int16-pair kernel: `W` and `max(16 - W, 1)`.
macro_rules! by_width_i16 {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        match $w {
            1 => $f::<1, 15, $($g)*>($($arg),*),
            2 => $f::<2, 14, $($g)*>($($arg),*),
            3 => $f::<3, 13, $($g)*>($($arg),*),
            4 => $f::<4, 12, $($g)*>($($arg),*),
            5 => $f::<5, 11, $($g)*>($($arg),*),
            6 => $f::<6, 10, $($g)*>($($arg),*),
            7 => $f::<7, 9, $($g)*>($($arg),*),
            8 => $f::<8, 8, $($g)*>($($arg),*),
            9 => $f::<9, 7, $($g)*>($($arg),*),
            10 => $f::<10, 6, $($g)*>($($arg),*),
            11 => $f::<11, 5, $($g)*>($($arg),*),
            12 => $f::<12, 4, $($g)*>($($arg),*),
            13 => $f::<13, 3, $($g)*>($($arg),*),
            14 => $f::<14, 2, $($g)*>($($arg),*),
            15 => $f::<15, 1, $($g)*>($($arg),*),
            _ => $f::<16, 1, $($g)*>($($arg),*),
        }
    };
}

/// Dispatch over the widths that fit int8 (`1..=8`; the caller checks `W <= 8`) for the `sdot`
/// kernel: `W` and `max(8 - W, 1)`.
macro_rules! by_width8 {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        match $w {
            1 => $f::<1, 7, $($g)*>($($arg),*),
            2 => $f::<2, 6, $($g)*>($($arg),*),
            3 => $f::<3, 5, $($g)*>($($arg),*),
            4 => $f::<4, 4, $($g)*>($($arg),*),
            5 => $f::<5, 3, $($g)*>($($arg),*),
            6 => $f::<6, 2, $($g)*>($($arg),*),
            7 => $f::<7, 1, $($g)*>($($arg),*),
            _ => $f::<8, 1, $($g)*>($($arg),*),
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

/// Raw arguments of a float plane kernel for one batch chunk.
#[derive(Clone, Copy)]
struct Args {
    words: *const u32,
    b: usize,
    groups: usize,
    xs: *const f32,
    xstride: usize,
    out: *mut f32,
    ostride: usize,
    scale: f32,
    prefetch_ahead: usize,
    /// Fields per 16-bit half, `16 / W`: a run-time value on purpose, so that the compiler does
    /// not unroll the field loop fully (it then hoists every input broadcast of the group and
    /// spills them, for the narrow widths).
    fph: usize,
}

pub(super) fn plane_f32(job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    if !sh.block.is_multiple_of(8) {
        // Not a packing geometry (blocks are multiples of 8); keep the oracle's answer.
        return super::generic::plane_f32(job, out, ostride);
    }
    let nv = sh.block / 4;
    let mut v0 = 0;
    while v0 < job.nb {
        let nb = chunk(job.nb - v0);
        let a = Args {
            words: job.words.as_ptr(),
            b: sh.block,
            groups: sh.groups,
            // v0 * stride stays inside the slices: checked by the caller for all nb inputs.
            xs: job.xs[v0 * job.xstride..].as_ptr(),
            xstride: job.xstride,
            out: out[v0 * ostride..].as_mut_ptr(),
            ostride,
            scale: job.scale,
            fph: sh.slots / 2,
            // Only the first batch chunk prefetches: later chunks read the same plane.
            prefetch_ahead: if v0 == 0 { job.prefetch_ahead } else { 0 },
        };
        // Row vectors per pass: at most 16 accumulators, and room beside them for the broadcast
        // inputs and the lanes being decoded (32 NEON registers; more spill in the inner loop).
        let rc = rows_per_pass(nv, if nb >= 4 { 2 } else { 4 });
        // SAFETY: `super::plane_f32` checked that `words` holds the plane, that every one of the
        // `nb` inputs holds `groups * slots` values and every output `b`; NEON is part of every
        // aarch64 CPU (and `Isa::supported` was checked by the caller); `rc` divides `b / 4`.
        unsafe {
            match (nb, rc) {
                (8, _) => by_width_f32!(sh.width, f32_neon, [8, 2], (a)),
                (4, _) => by_width_f32!(sh.width, f32_neon, [4, 2], (a)),
                (2, 4) => by_width_f32!(sh.width, f32_neon, [2, 4], (a)),
                (2, _) => by_width_f32!(sh.width, f32_neon, [2, 2], (a)),
                (_, 4) => by_width_f32!(sh.width, f32_neon, [1, 4], (a)),
                _ => by_width_f32!(sh.width, f32_neon, [1, 2], (a)),
            }
        }
        v0 += nb;
    }
}

/// # Safety
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
) {
    const { assert!(R == 32 - W && M == 16 % W && M16 == 16 + M) };
    let fph = a.fph;
    debug_assert_eq!(fph, (16 / W) as usize);
    let slots = 2 * fph;
    let chains = if NB * RC >= 8 { 1 } else { 2 };
    for r0 in (0..a.b / 4).step_by(RC) {
        let mut acc = [[[vdupq_n_f32(0.0); 2]; RC]; NB];
        for cg in 0..a.groups {
            let first = cg * a.b + r0 * 4;
            let mut wv = [vdupq_n_s32(0); RC];
            for (r, w) in wv.iter_mut().enumerate() {
                // SAFETY: lanes `first + 4 r .. + 4` lie inside the plane (groups * b words).
                let p = unsafe { a.words.add(first + 4 * r) };
                // SAFETY: as above.
                *w = vreinterpretq_s32_u32(unsafe { vld1q_u32(p) });
                // One hint per 64-byte line: every fourth 16-byte vector.
                if a.prefetch_ahead != 0 && (first + 4 * r).is_multiple_of(16) {
                    prefetch_l2((p as *const u8).wrapping_add(a.prefetch_ahead));
                }
            }
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

/// Raw arguments of an int16-pair plane kernel for one chunk of `NP` streams.
#[derive(Clone, Copy)]
struct IArgs {
    words: *const u32,
    b: usize,
    groups: usize,
    /// Pair arrays of the chunk's streams, `pstride` apart.
    pairs: *const u32,
    pstride: usize,
    /// Output of each stream of the chunk (already offset by its index times the stride).
    outs: [*mut f32; 4],
    /// Per-stream scales, one per segment.
    scales: [*const f32; 4],
    segment_pairs: usize,
    prefetch_ahead: usize,
}

/// Whether both int16 halves of every pair of `streams` streams fit int8.
fn pairs_fit_i8(pairs: &[u32], pstride: usize, streams: usize, per: usize) -> bool {
    let fits = |h: u32| (-128..=127).contains(&(h as u16 as i16));
    (0..streams).all(|t| pairs[t * pstride..t * pstride + per].iter().all(|&p| fits(p) && fits(p >> 16)))
}

pub(super) fn plane_i16(dotprod: bool, job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    if !sh.block.is_multiple_of(8) {
        // Not a packing geometry (blocks are multiples of 8); keep the oracle's answer.
        return super::generic::plane_i16(job, out, ostride);
    }
    let nv = sh.block / 4;
    let per = sh.groups * sh.slots / 2;
    let streams = job.outs.len();
    let segs = job.segments();
    let base = out.as_mut_ptr();
    let mut t0 = 0;
    while t0 < streams {
        let np = if streams - t0 >= 4 {
            4
        } else if streams - t0 >= 2 {
            2
        } else {
            1
        };
        let mut a = IArgs {
            words: job.words.as_ptr(),
            b: sh.block,
            groups: sh.groups,
            pairs: job.pairs[t0 * job.pstride..].as_ptr(),
            pstride: job.pstride,
            outs: [base; 4],
            scales: [job.scales.as_ptr(); 4],
            segment_pairs: job.segment_pairs,
            // Only the first chunk of streams prefetches: later chunks read the same plane.
            prefetch_ahead: if t0 == 0 { job.prefetch_ahead } else { 0 },
        };
        for k in 0..np {
            // SAFETY: `super::plane_i16` checked every output index against `out`'s length.
            a.outs[k] = unsafe { base.add(job.outs[t0 + k] * ostride) };
            a.scales[k] = job.scales[(t0 + k) * segs..].as_ptr();
        }
        // `sdot` multiplies int8 by int8: only exact when the weights (W <= 8) and this chunk's
        // inputs all fit int8.
        let dot = dotprod && sh.width <= 8 && pairs_fit_i8(&job.pairs[t0 * job.pstride..], job.pstride, np, per);
        // Row vectors per pass: the integer accumulators (one or two per row vector and stream),
        // the f32 segment sums, the lanes and the broadcast inputs within 32 registers.
        let rc = rows_per_pass(nv, if np >= 2 && !dot { 2 } else { 8 / np.max(2) });
        // SAFETY: lengths checked by `super::plane_i16` (every stream's `segs` scales included);
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
        t0 += np;
    }
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
    for (r, w) in wv.iter_mut().enumerate() {
        // SAFETY: inside the plane, per the contract.
        let p = unsafe { a.words.add(first + 4 * r) };
        // SAFETY: as above.
        *w = vreinterpretq_s16_u32(unsafe { vld1q_u32(p) });
        if a.prefetch_ahead != 0 && (first + 4 * r).is_multiple_of(16) {
            prefetch_l2((p as *const u8).wrapping_add(a.prefetch_ahead));
        }
    }
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
        // SAFETY: outputs checked by `super::plane_i16`.
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
    let mut acc = acc;
    // SAFETY: register-only instruction, available per the caller's contract.
    unsafe {
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
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
        // SAFETY: outputs checked by `super::plane_i16`.
        unsafe { store_sums::<NP, RC>(&a, r0, &facc) };
    }
}

/// Raw arguments of the column-major block product.
#[derive(Clone, Copy)]
struct CArgs {
    wt: *const f32,
    b: usize,
    xs: *const f32,
    xstride: usize,
    out: *mut f32,
    ostride: usize,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn cols_f32(wt: &[f32], b: usize, xs: &[f32], xstride: usize, nb: usize, out: &mut [f32], ostride: usize) {
    if !b.is_multiple_of(8) {
        // Blocks are multiples of 8; anything else keeps the oracle's answer.
        return super::generic::cols_f32(wt, b, xs, xstride, nb, out, ostride);
    }
    let nv = b / 4;
    let mut v0 = 0;
    while v0 < nb {
        let n = chunk(nb - v0);
        let a = CArgs {
            wt: wt.as_ptr(),
            b,
            xs: xs[v0 * xstride..].as_ptr(),
            xstride,
            out: out[v0 * ostride..].as_mut_ptr(),
            ostride,
        };
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
        v0 += n;
    }
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
