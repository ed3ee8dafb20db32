//! x86-64 kernels: AVX2 + FMA and AVX-512 (F, BW, optionally VNNI), one body per width `W` and
//! batch chunk `NB` (const generics, so field offsets become immediate shifts). Callers in
//! [`super`] check buffer lengths and the CPU's features before any of these run.
//!
//! Kernel families: `float` (`PlaneF32`), `int16` (`PlaneI16`), and here the column-major
//! block product, dot products and the f64 axpy. Batch and stream chunking is shared with the
//! other architectures (`simd::chunks`).

use super::chunks::{CArgs, cols_chunks};
use super::{ColsJob, Isa};
use std::arch::x86_64::*;

macro_rules! by_width {
    ($w:expr, $f:ident, [$($g:tt)*], ($($arg:expr),*)) => {
        match $w {
            1 => $f::<1, $($g)*>($($arg),*),
            2 => $f::<2, $($g)*>($($arg),*),
            3 => $f::<3, $($g)*>($($arg),*),
            4 => $f::<4, $($g)*>($($arg),*),
            5 => $f::<5, $($g)*>($($arg),*),
            6 => $f::<6, $($g)*>($($arg),*),
            7 => $f::<7, $($g)*>($($arg),*),
            8 => $f::<8, $($g)*>($($arg),*),
            9 => $f::<9, $($g)*>($($arg),*),
            10 => $f::<10, $($g)*>($($arg),*),
            11 => $f::<11, $($g)*>($($arg),*),
            12 => $f::<12, $($g)*>($($arg),*),
            13 => $f::<13, $($g)*>($($arg),*),
            14 => $f::<14, $($g)*>($($arg),*),
            15 => $f::<15, $($g)*>($($arg),*),
            _ => $f::<16, $($g)*>($($arg),*),
        }
    };
}

/// The sum of the first `chains` AVX2 accumulators of `accv`, added in chain order (the order
/// every kernel's result depends on). A macro, so each kernel keeps its own inlined sequence.
macro_rules! sum_chains_256 {
    ($accv:expr, $chains:expr) => {{
        let mut t = $accv[0];
        for c in $accv.iter().take($chains).skip(1) {
            t = _mm256_add_ps(t, *c);
        }
        t
    }};
}

/// The body of a dot product over `$lanes`-wide vectors: four independent FMA chains over
/// `4 * $lanes` values a step, their sum reduced to a scalar by `|t| reduce`, then the scalar
/// tail. A macro rather than a generic fn: the intrinsics differ by type, not only by width.
macro_rules! dot_body {
    ($a:ident, $b:ident, $lanes:literal, $zero:ident, $load:ident, $fmadd:ident, $add:ident, |$t:ident| $reduce:expr) => {{
        let n = $a.len();
        let mut acc = [$zero(); 4];
        let mut i = 0;
        while i + 4 * $lanes <= n {
            for (k, ak) in acc.iter_mut().enumerate() {
                // SAFETY: i + 4 * lanes <= n for both slices.
                unsafe {
                    *ak = $fmadd($load($a.as_ptr().add(i + $lanes * k)), $load($b.as_ptr().add(i + $lanes * k)), *ak)
                };
            }
            i += 4 * $lanes;
        }
        let $t = $add($add(acc[0], acc[1]), $add(acc[2], acc[3]));
        let mut s: f32 = $reduce;
        for k in i..n {
            s += $a[k] * $b[k];
        }
        s
    }};
}

pub(super) mod float;
pub(super) mod int16;

pub(super) use float::plane_f32;
pub(super) use int16::plane_i16;

pub(super) fn cols_f32(isa: Isa, job: &ColsJob<'_>, out: &mut [f32], ostride: usize) {
    let b = job.b;
    cols_chunks(job, out, ostride, |a, n| {
        // SAFETY: lengths checked by `super::cols_f32`; ISA support checked by the caller.
        unsafe {
            if b >= 16 && isa >= Isa::Avx512 {
                let rc = (b / 16).min(if n >= 8 { 2 } else { 4 });
                match (n, rc) {
                    (8, 2) => cols_512::<8, 2>(a),
                    (8, _) => cols_512::<8, 1>(a),
                    (4, 4) => cols_512::<4, 4>(a),
                    (4, 2) => cols_512::<4, 2>(a),
                    (4, _) => cols_512::<4, 1>(a),
                    (2, 4) => cols_512::<2, 4>(a),
                    (2, 2) => cols_512::<2, 2>(a),
                    (2, _) => cols_512::<2, 1>(a),
                    (_, 4) => cols_512::<1, 4>(a),
                    (_, 2) => cols_512::<1, 2>(a),
                    _ => cols_512::<1, 1>(a),
                }
            } else {
                match n {
                    8 => cols_256::<8>(a),
                    4 => cols_256::<4>(a),
                    2 => cols_256::<2>(a),
                    _ => cols_256::<1>(a),
                }
            }
        }
    });
}

/// # Safety
/// AVX-512F available; `a` valid; `b % 16 == 0` and `RC` divides `b / 16`.
///
/// Reads `RC` 16-row chunks of each column per pass (a 64-row column's 256 bytes in order);
/// `NB == 1` alternates two chains per chunk by column parity.
#[target_feature(enable = "avx512f")]
unsafe fn cols_512<const NB: usize, const RC: usize>(a: CArgs) {
    let chains = if NB == 1 { 2 } else { 1 };
    for r0 in (0..a.b / 16).step_by(RC) {
        let mut acc = [[[_mm512_setzero_ps(); 2]; RC]; NB];
        for c in 0..a.b {
            let mut xb = [_mm512_setzero_ps(); NB];
            for (v, x) in xb.iter_mut().enumerate() {
                // SAFETY: input v holds b values.
                *x = _mm512_set1_ps(unsafe { *a.xs.add(v * a.xstride + c) });
            }
            let k = if chains == 2 { c & 1 } else { 0 };
            for r in 0..RC {
                // SAFETY: column c, rows (r0 + r) * 16 .. + 16 are inside the b*b block.
                let w = unsafe { _mm512_loadu_ps(a.wt.add(c * a.b + (r0 + r) * 16)) };
                if !a.next.is_null() {
                    // A prefetch never faults; the same line of the next block.
                    _mm_prefetch::<_MM_HINT_T1>(a.next.wrapping_add(c * a.b + (r0 + r) * 16) as *const i8);
                }
                for (accv, x) in acc.iter_mut().zip(&xb) {
                    accv[r][k] = _mm512_fmadd_ps(w, *x, accv[r][k]);
                }
            }
        }
        for (v, accv) in acc.iter().enumerate() {
            for (r, ar) in accv.iter().enumerate() {
                let t = if chains == 2 { _mm512_add_ps(ar[0], ar[1]) } else { ar[0] };
                // SAFETY: output v holds b values.
                unsafe {
                    let o = a.out.add(v * a.ostride + (r0 + r) * 16);
                    _mm512_storeu_ps(o, _mm512_add_ps(t, _mm512_loadu_ps(o)));
                }
            }
        }
    }
}

/// # Safety
/// AVX2 + FMA available; `a` valid.
#[target_feature(enable = "avx2,fma")]
unsafe fn cols_256<const NB: usize>(a: CArgs) {
    let chains = if NB >= 4 { 1 } else { 4 / NB };
    for rc in 0..a.b / 8 {
        let mut acc = [[_mm256_setzero_ps(); 4]; NB];
        for c in 0..a.b {
            // SAFETY: inside the block.
            let w = unsafe { _mm256_loadu_ps(a.wt.add(c * a.b + rc * 8)) };
            if !a.next.is_null() && rc % 2 == 0 {
                // A prefetch never faults; the same line of the next block.
                _mm_prefetch::<_MM_HINT_T1>(a.next.wrapping_add(c * a.b + rc * 8) as *const i8);
            }
            for (v, accv) in acc.iter_mut().enumerate() {
                // SAFETY: input v holds b values.
                let x = unsafe { *a.xs.add(v * a.xstride + c) };
                accv[c % chains] = _mm256_fmadd_ps(w, _mm256_set1_ps(x), accv[c % chains]);
            }
        }
        for (v, accv) in acc.iter().enumerate() {
            let t = sum_chains_256!(accv, chains);
            // SAFETY: output v holds b values.
            unsafe {
                let o = a.out.add(v * a.ostride + rc * 8);
                _mm256_storeu_ps(o, _mm256_add_ps(t, _mm256_loadu_ps(o)));
            }
        }
    }
}

pub(super) fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: equal lengths guaranteed by the caller; ISA support checked by the caller.
    unsafe { if isa >= Isa::Avx512 { dot_512(a, b) } else { dot_256(a, b) } }
}

/// # Safety
/// AVX-512F available; `a.len() == b.len()`.
#[target_feature(enable = "avx512f")]
unsafe fn dot_512(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_add_ps, |t| _mm512_reduce_add_ps(t))
}

/// # Safety
/// AVX2 + FMA available; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_256(a: &[f32], b: &[f32]) -> f32 {
    dot_body!(a, b, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_add_ps, |t| {
        let mut lanes = [0f32; 8];
        // SAFETY: 8 floats written to an 8-float array.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), t) };
        lanes.iter().sum()
    })
}

pub(super) fn axpy_f64(isa: Isa, a: f64, x: &[f64], y: &mut [f64]) {
    // SAFETY: ISA support checked by the caller; the bodies are safe code.
    unsafe { if isa >= Isa::Avx512 { axpy_f64_512(a, x, y) } else { axpy_f64_256(a, x, y) } }
}

/// # Safety
/// AVX-512F available. The scalar body, vectorised by the compiler for 8 lanes.
#[target_feature(enable = "avx512f")]
unsafe fn axpy_f64_512(a: f64, x: &[f64], y: &mut [f64]) {
    super::generic::axpy_f64(a, x, y)
}

/// # Safety
/// AVX2 available. The scalar body, vectorised by the compiler for 4 lanes.
#[target_feature(enable = "avx2")]
unsafe fn axpy_f64_256(a: f64, x: &[f64], y: &mut [f64]) {
    super::generic::axpy_f64(a, x, y)
}
