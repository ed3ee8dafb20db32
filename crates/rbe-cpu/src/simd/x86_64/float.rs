//! x86-64 float plane kernels (`PlaneF32`): AVX-512 with table permutes for narrow fields, and
//! AVX2 + FMA.

use super::super::PlaneF32;
use super::super::chunks::{Args, plane_f32_chunks};
use super::Isa;
use std::arch::x86_64::*;

pub(in crate::simd) fn plane_f32(isa: Isa, job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    plane_f32_chunks(job, out, ostride, |a, nb| {
        // SAFETY: `simd::plane_f32` checked that `words` holds the plane, that every one of the
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
    });
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
                if a.prefetch_ahead != 0 {
                    let ahead = (base.wrapping_add(16 * r) as *const i8).wrapping_add(a.prefetch_ahead);
                    // A prefetch never faults; the address is only a hint.
                    _mm_prefetch::<_MM_HINT_T1>(ahead);
                }
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
            let lane = unsafe { a.words.add(cg * a.b + rc * 8) };
            // SAFETY: as above.
            let wv = unsafe { _mm256_loadu_si256(lane as *const __m256i) };
            // One prefetch per 64-byte line: every other 32-byte lane group.
            if a.prefetch_ahead != 0 && rc % 2 == 0 {
                _mm_prefetch::<_MM_HINT_T1>((lane as *const i8).wrapping_add(a.prefetch_ahead));
            }
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
            let t = sum_chains_256!(accv, chains);
            // SAFETY: output v holds b values.
            unsafe {
                let o = a.out.add(v * a.ostride + rc * 8);
                _mm256_storeu_ps(o, _mm256_fmadd_ps(t, sc, _mm256_loadu_ps(o)));
            }
        }
    }
}
