//! x86-64 kernels: AVX2 + FMA and AVX-512 (F, BW, optionally VNNI), one body per width `W` and
//! batch chunk `NB` (const generics, so field offsets become immediate shifts). Callers in
//! [`super`] check buffer lengths and the CPU's features before any of these run.

use super::{Isa, PlaneF32, PlaneQ8};
use std::arch::x86_64::*;

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
}

pub(super) fn plane_f32(isa: Isa, job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
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
        };
        // SAFETY: `super::plane_f32` checked that `words` holds the plane, that every one of the
        // `nb` inputs holds `groups * slots` values and every output `b`; the ISA was checked
        // supported by the caller (`Isa::supported`) before it was chosen.
        unsafe {
            if sh.block >= 16 && isa >= Isa::Avx512 {
                // Row chunks of 16 handled per pass: all of a 64-row block (so each column group's
                // 256 bytes are read once, in order), two for batch chunks of 8 (register budget).
                let rc = (sh.block / 16).min(if nb >= 8 { 2 } else { 4 });
                match (nb, rc) {
                    (8, 2) => by_width!(sh.width, f32_512, [8, 2], (a)),
                    (8, _) => by_width!(sh.width, f32_512, [8, 1], (a)),
                    (4, 4) => by_width!(sh.width, f32_512, [4, 4], (a)),
                    (4, 2) => by_width!(sh.width, f32_512, [4, 2], (a)),
                    (4, _) => by_width!(sh.width, f32_512, [4, 1], (a)),
                    (2, 4) => by_width!(sh.width, f32_512, [2, 4], (a)),
                    (2, 2) => by_width!(sh.width, f32_512, [2, 2], (a)),
                    (2, _) => by_width!(sh.width, f32_512, [2, 1], (a)),
                    (_, 4) => by_width!(sh.width, f32_512, [1, 4], (a)),
                    (_, 2) => by_width!(sh.width, f32_512, [1, 2], (a)),
                    _ => by_width!(sh.width, f32_512, [1, 1], (a)),
                }
            } else {
                match nb {
                    8 => by_width!(sh.width, f32_256, [8], (a)),
                    4 => by_width!(sh.width, f32_256, [4], (a)),
                    2 => by_width!(sh.width, f32_256, [2], (a)),
                    _ => by_width!(sh.width, f32_256, [1], (a)),
                }
            }
        }
        v0 += nb;
    }
}

/// Sign-extension table for fields of `W <= 5` bits: entry `i` is the `W`-bit two's-complement
/// value of `i mod 2^W`, so a permute that reads only an index's low 4 (`vpermps`) or 5
/// (`vpermt2ps`) bits turns a field straight into its f32 value, whatever bits lie above it.
fn sign_lut<const W: u32>() -> [f32; 32] {
    let mut t = [0f32; 32];
    for (i, v) in t.iter_mut().enumerate() {
        let u = (i as u32) & ((1u32 << W) - 1);
        *v = ((u << (32 - W)) as i32 >> (32 - W)) as f32;
    }
    t
}

/// # Safety
/// AVX-512F must be available; `a` must describe valid buffers (see `plane_f32`); `b % 16 == 0`
/// and `RC` divides `b / 16`.
///
/// Walks each column group's lanes for `RC` row chunks at once (sequential reads), fields of up
/// to 5 bits through a table permute (shift + `vpermps`/`vpermt2ps`), wider ones through
/// shift-left / arithmetic shift-right / convert. Accumulation: `NB == 1` alternates two chains
/// per row chunk by slot parity; the order depends on the plane alone, never on threads.
#[target_feature(enable = "avx512f")]
unsafe fn f32_512<const W: u32, const NB: usize, const RC: usize>(a: Args) {
    let slots = 2 * (16 / W as usize);
    let lut = sign_lut::<W>();
    // SAFETY: `lut` holds 32 floats.
    let (t0, t1) = unsafe { (_mm512_loadu_ps(lut.as_ptr()), _mm512_loadu_ps(lut.as_ptr().add(16))) };
    let chains = if NB == 1 { 2 } else { 1 };
    for r0 in (0..a.b / 16).step_by(RC) {
        let mut acc = [[[_mm512_setzero_ps(); 2]; RC]; NB];
        for cg in 0..a.groups {
            // SAFETY: lanes `cg * b + r0 * 16 .. + RC * 16` lie inside the plane (groups * b words).
            let base = unsafe { a.words.add(cg * a.b + r0 * 16) };
            let mut wv = [_mm512_setzero_si512(); RC];
            for (r, w) in wv.iter_mut().enumerate() {
                // SAFETY: see `base`.
                *w = unsafe { _mm512_loadu_si512(base.add(16 * r) as *const __m512i) };
            }
            for s in 0..slots {
                let off = 16 * (s as u32 & 1) + W * (s as u32 >> 1);
                let mut xb = [_mm512_setzero_ps(); NB];
                for (v, x) in xb.iter_mut().enumerate() {
                    // SAFETY: input v holds groups * slots values.
                    *x = _mm512_set1_ps(unsafe { *a.xs.add(v * a.xstride + cg * slots + s) });
                }
                let c = if chains == 2 { s & 1 } else { 0 };
                for (r, &w) in wv.iter().enumerate() {
                    let ff = if W <= 4 {
                        _mm512_permutexvar_ps(_mm512_srl_epi32(w, _mm_cvtsi32_si128(off as i32)), t0)
                    } else if W == 5 {
                        _mm512_permutex2var_ps(t0, _mm512_srl_epi32(w, _mm_cvtsi32_si128(off as i32)), t1)
                    } else {
                        _mm512_cvtepi32_ps(_mm512_sra_epi32(
                            _mm512_sll_epi32(w, _mm_cvtsi32_si128((32 - off - W) as i32)),
                            _mm_cvtsi32_si128((32 - W) as i32),
                        ))
                    };
                    for (accv, x) in acc.iter_mut().zip(&xb) {
                        accv[r][c] = _mm512_fmadd_ps(ff, *x, accv[r][c]);
                    }
                }
            }
        }
        let sc = _mm512_set1_ps(a.scale);
        for (v, accv) in acc.iter().enumerate() {
            for (r, ar) in accv.iter().enumerate() {
                let t = if chains == 2 { _mm512_add_ps(ar[0], ar[1]) } else { ar[0] };
                // SAFETY: output v holds b values; rows (r0 + r) * 16 .. + 16 are inside.
                unsafe {
                    let o = a.out.add(v * a.ostride + (r0 + r) * 16);
                    _mm512_storeu_ps(o, _mm512_fmadd_ps(t, sc, _mm512_loadu_ps(o)));
                }
            }
        }
    }
}

/// # Safety
/// AVX2 and FMA must be available; `a` must describe valid buffers (see `plane_f32`).
#[target_feature(enable = "avx2,fma")]
unsafe fn f32_256<const W: u32, const NB: usize>(a: Args) {
    let slots = 2 * (16 / W as usize);
    let chains = if NB >= 4 { 1 } else { 4 / NB };
    for rc in 0..a.b / 8 {
        let mut acc = [[_mm256_setzero_ps(); 4]; NB];
        for cg in 0..a.groups {
            // SAFETY: lane `cg * b + rc * 8 .. + 8` lies inside the plane.
            let wv = unsafe { _mm256_loadu_si256(a.words.add(cg * a.b + rc * 8) as *const __m256i) };
            for s in 0..slots {
                let off = 16 * (s as u32 & 1) + W * (s as u32 >> 1);
                let f = _mm256_sra_epi32(
                    _mm256_sll_epi32(wv, _mm_cvtsi32_si128((32 - off - W) as i32)),
                    _mm_cvtsi32_si128((32 - W) as i32),
                );
                let ff = _mm256_cvtepi32_ps(f);
                for (v, accv) in acc.iter_mut().enumerate() {
                    // SAFETY: input v holds groups * slots values.
                    let x = unsafe { *a.xs.add(v * a.xstride + cg * slots + s) };
                    let c = s % chains;
                    accv[c] = _mm256_fmadd_ps(ff, _mm256_set1_ps(x), accv[c]);
                }
            }
        }
        let sc = _mm256_set1_ps(a.scale);
        for (v, accv) in acc.iter().enumerate() {
            let mut t = accv[0];
            for c in accv.iter().take(chains).skip(1) {
                t = _mm256_add_ps(t, *c);
            }
            // SAFETY: output v holds b values.
            unsafe {
                let o = a.out.add(v * a.ostride + rc * 8);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(t, sc, _mm256_loadu_ps(o)));
            }
        }
    }
}

/// Raw arguments of a Q8 plane kernel for one input.
#[derive(Clone, Copy)]
struct QArgs {
    words: *const u32,
    b: usize,
    groups: usize,
    pairs: *const u32,
    out: *mut f32,
    scale: f32,
}

pub(super) fn plane_q8(isa: Isa, job: &PlaneQ8<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    for (v, &scale) in job.scales.iter().enumerate() {
        let a = QArgs {
            words: job.words.as_ptr(),
            b: sh.block,
            groups: sh.groups,
            pairs: job.pairs[v * job.pstride..].as_ptr(),
            out: out[v * ostride..].as_mut_ptr(),
            scale,
        };
        // SAFETY: lengths checked by `super::plane_q8`; ISA support checked by the caller.
        unsafe {
            if sh.block >= 16 && isa == Isa::Avx512Vnni {
                by_width!(sh.width, q8_512v, [true], (a))
            } else if sh.block >= 16 && isa == Isa::Avx512 {
                by_width!(sh.width, q8_512, [false], (a))
            } else {
                by_width!(sh.width, q8_256, [], (a))
            }
        }
    }
}

/// # Safety
/// AVX-512 F+BW must be available; `a` valid; `b % 16 == 0`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn q8_512<const W: u32, const VNNI: bool>(a: QArgs) {
    // SAFETY: forwarded contract; this function's features cover the body (VNNI is false here).
    unsafe { q8_512_body::<W, false>(a) }
}

/// # Safety
/// AVX-512 F+BW+VNNI must be available; `a` valid; `b % 16 == 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q8_512v<const W: u32, const VNNI: bool>(a: QArgs) {
    // SAFETY: forwarded contract; this function's features cover the body.
    unsafe { q8_512_body::<W, true>(a) }
}

/// # Safety
/// Only called (inlined) from `q8_512` / `q8_512v`, whose features cover what `VNNI` selects.
#[inline(always)]
unsafe fn q8_512_body<const W: u32, const VNNI: bool>(a: QArgs) {
    let fph = 16 / W as usize;
    // SAFETY (whole body): the caller's target features cover every intrinsic used; pointers are
    // inside the buffers checked by `super::plane_q8`.
    unsafe {
        for rc in 0..a.b / 16 {
            let mut acc = [_mm512_setzero_si512(); 4];
            for cg in 0..a.groups {
                let wv = _mm512_loadu_si512(a.words.add(cg * a.b + rc * 16) as *const __m512i);
                for k in 0..fph {
                    let p = _mm512_sra_epi16(
                        _mm512_sll_epi16(wv, _mm_cvtsi32_si128((16 - W * (k as u32 + 1)) as i32)),
                        _mm_cvtsi32_si128((16 - W) as i32),
                    );
                    let xb = _mm512_set1_epi32(*a.pairs.add(cg * fph + k) as i32);
                    acc[k % 4] = if VNNI {
                        _mm512_dpwssd_epi32(acc[k % 4], p, xb)
                    } else {
                        _mm512_add_epi32(acc[k % 4], _mm512_madd_epi16(p, xb))
                    };
                }
            }
            let t = _mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3]));
            let o = a.out.add(rc * 16);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(a.scale), _mm512_loadu_ps(o)));
        }
    }
}

/// # Safety
/// AVX2 + FMA must be available; `a` valid.
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_256<const W: u32>(a: QArgs) {
    let fph = 16 / W as usize;
    for rc in 0..a.b / 8 {
        let mut acc = [_mm256_setzero_si256(); 4];
        for cg in 0..a.groups {
            // SAFETY: inside the plane.
            let wv = unsafe { _mm256_loadu_si256(a.words.add(cg * a.b + rc * 8) as *const __m256i) };
            for k in 0..fph {
                let p = _mm256_sra_epi16(
                    _mm256_sll_epi16(wv, _mm_cvtsi32_si128((16 - W * (k as u32 + 1)) as i32)),
                    _mm_cvtsi32_si128((16 - W) as i32),
                );
                // SAFETY: groups * fph pairs are present.
                let xb = _mm256_set1_epi32(unsafe { *a.pairs.add(cg * fph + k) } as i32);
                acc[k % 4] = _mm256_add_epi32(acc[k % 4], _mm256_madd_epi16(p, xb));
            }
        }
        let t = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
        // SAFETY: output holds b values.
        unsafe {
            let o = a.out.add(rc * 8);
            _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(a.scale), _mm256_loadu_ps(o)));
        }
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
pub(super) fn cols_f32(
    isa: Isa,
    wt: &[f32],
    b: usize,
    xs: &[f32],
    xstride: usize,
    nb: usize,
    out: &mut [f32],
    ostride: usize,
) {
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
        v0 += n;
    }
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
            for (v, accv) in acc.iter_mut().enumerate() {
                // SAFETY: input v holds b values.
                let x = unsafe { *a.xs.add(v * a.xstride + c) };
                accv[c % chains] = _mm256_fmadd_ps(w, _mm256_set1_ps(x), accv[c % chains]);
            }
        }
        for (v, accv) in acc.iter().enumerate() {
            let mut t = accv[0];
            for c in accv.iter().take(chains).skip(1) {
                t = _mm256_add_ps(t, *c);
            }
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
    let n = a.len();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            // SAFETY: i + 64 <= n for both slices.
            unsafe {
                *ak = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i + 16 * k)),
                    _mm512_loadu_ps(b.as_ptr().add(i + 16 * k)),
                    *ak,
                )
            };
        }
        i += 64;
    }
    let t = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut s = _mm512_reduce_add_ps(t);
    for k in i..n {
        s += a[k] * b[k];
    }
    s
}

/// # Safety
/// AVX2 + FMA available; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_256(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, ak) in acc.iter_mut().enumerate() {
            // SAFETY: i + 32 <= n for both slices.
            unsafe {
                *ak = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8 * k)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8 * k)),
                    *ak,
                )
            };
        }
        i += 32;
    }
    let t = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: 8 floats written to an 8-float array.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), t) };
    let mut s: f32 = lanes.iter().sum();
    for k in i..n {
        s += a[k] * b[k];
    }
    s
}
