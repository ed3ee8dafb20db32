//! x86-64 int16-pair plane kernels (`PlaneI16`, the Q8 path): AVX-512 BW with `vpdpwssd` (VNNI)
//! and `vpmultishiftqb` (VBMI) where the CPU has them, and AVX2 `pmaddwd`.

use super::super::PlaneI16;
use super::super::chunks::{IArgs, plane_i16_chunks};
use super::Isa;
use std::arch::x86_64::*;

pub(in crate::simd) fn plane_i16(isa: Isa, job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    plane_i16_chunks(job, out, ostride, |a, np, _| {
        // SAFETY: lengths checked by `simd::plane_i16`; ISA support checked by the caller.
        unsafe {
            if sh.block >= 16 && isa >= Isa::Avx512 {
                let rc = match (np, sh.block % 64, sh.block % 32) {
                    (4, _, 0) => 2,
                    (4, _, _) => 1,
                    (_, 0, _) => 4,
                    (_, _, 0) => 2,
                    _ => 1,
                };
                // The (streams, row chunks) instances compiled for each AVX-512 kernel.
                macro_rules! by_chunk {
                    ($kernel:ident) => {
                        match (np, rc) {
                            (4, 2) => by_width!(sh.width, $kernel, [4, 2], (a)),
                            (4, _) => by_width!(sh.width, $kernel, [4, 1], (a)),
                            (2, 4) => by_width!(sh.width, $kernel, [2, 4], (a)),
                            (2, 2) => by_width!(sh.width, $kernel, [2, 2], (a)),
                            (2, _) => by_width!(sh.width, $kernel, [2, 1], (a)),
                            (_, 4) => by_width!(sh.width, $kernel, [1, 4], (a)),
                            (_, 2) => by_width!(sh.width, $kernel, [1, 2], (a)),
                            _ => by_width!(sh.width, $kernel, [1, 1], (a)),
                        }
                    };
                }
                if isa == Isa::Avx512Vnni && has_vbmi() {
                    by_chunk!(i16_512vb)
                } else if isa == Isa::Avx512Vnni {
                    by_chunk!(i16_512v)
                } else {
                    by_chunk!(i16_512)
                }
            } else {
                match np {
                    4 => by_width!(sh.width, i16_256, [4], (a)),
                    2 => by_width!(sh.width, i16_256, [2], (a)),
                    _ => by_width!(sh.width, i16_256, [1], (a)),
                }
            }
        }
    });
}

/// Sign-extension table for 16-bit fields of `W <= 5` bits (see the float kernels' `sign_lut`): `vpermw` reads an
/// index's low 5 bits only, so a shift plus one permute turns a field into its int16 value.
fn sign_lut16<const W: u32>() -> [i16; 32] {
    let mut t = [0i16; 32];
    for (i, v) in t.iter_mut().enumerate() {
        let u = (i as u32) & ((1u32 << W) - 1);
        *v = ((u << (32 - W)) as i32 >> (32 - W)) as i16;
    }
    t
}

/// # Safety
/// AVX-512 F+BW must be available; `a` valid; `b % 16 == 0`, and `RC` divides `b / 16`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn i16_512<const W: u32, const NP: usize, const RC: usize>(a: IArgs) {
    // SAFETY: forwarded contract; this function's features cover the body (VNNI is false here).
    unsafe { i16_512_body::<W, NP, RC, false, false>(a) }
}

/// # Safety
/// AVX-512 F+BW+VNNI must be available; `a` valid; `b % 16 == 0`, and `RC` divides `b / 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn i16_512v<const W: u32, const NP: usize, const RC: usize>(a: IArgs) {
    // SAFETY: forwarded contract; this function's features cover the body.
    unsafe { i16_512_body::<W, NP, RC, true, false>(a) }
}

/// # Safety
/// AVX-512 F+BW+VNNI+VBMI must be available; `a` valid; `b % 16 == 0`, and `RC` divides `b / 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi")]
unsafe fn i16_512vb<const W: u32, const NP: usize, const RC: usize>(a: IArgs) {
    // SAFETY: forwarded contract; this function's features cover the body.
    unsafe { i16_512_body::<W, NP, RC, true, true>(a) }
}

/// Whether the CPU has AVX-512 VBMI (`vpmultishiftqb`), detected once.
fn has_vbmi() -> bool {
    static VBMI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VBMI.get_or_init(|| std::arch::is_x86_feature_detected!("avx512vbmi"))
}

/// `vpmultishiftqb` controls that bring bits `16 h + off ..` of each 16-bit half `h` of a qword
/// to the low byte of that half.
fn multishift_control(off: u32) -> i64 {
    (0..4u32).map(|h| i64::from(16 * h + off) << (16 * h)).sum()
}

/// # Safety
/// Only called (inlined) from `i16_512*`, whose features cover what `VNNI` and `VBMI` select.
///
/// Walks each column group's lanes for `RC` 16-row chunks at once (sequential reads); pair `k` of
/// a lane's two 16-bit halves is decoded once (shift + `vpermw` table for `W <= 5`, shift pair
/// otherwise) and multiplied with all `NP` streams (`vpdpwssd`, or `vpmaddwd` + add).
#[inline(always)]
unsafe fn i16_512_body<const W: u32, const NP: usize, const RC: usize, const VNNI: bool, const VBMI: bool>(a: IArgs) {
    let fph = 16 / W as usize;
    let lut = sign_lut16::<W>();
    // SAFETY (whole body): the caller's target features cover every intrinsic used; pointers are
    // inside the buffers checked by `simd::plane_i16`.
    unsafe {
        let table = _mm512_loadu_si512(lut.as_ptr() as *const __m512i);
        for r0 in (0..a.b / 16).step_by(RC) {
            let mut acc = [[_mm512_setzero_si512(); RC]; NP];
            let mut facc = [[_mm512_setzero_ps(); RC]; NP];
            for cg in 0..a.groups {
                let mut wv = [_mm512_setzero_si512(); RC];
                for (r, w) in wv.iter_mut().enumerate() {
                    let lane = a.words.add(cg * a.b + (r0 + r) * 16);
                    *w = _mm512_loadu_si512(lane as *const __m512i);
                    if a.prefetch_ahead != 0 {
                        _mm_prefetch::<_MM_HINT_T1>((lane as *const i8).wrapping_add(a.prefetch_ahead));
                    }
                }
                for k in 0..fph {
                    let mut xb = [_mm512_setzero_si512(); NP];
                    for (t, x) in xb.iter_mut().enumerate() {
                        *x = _mm512_set1_epi32(*a.pairs.add(t * a.pstride + cg * fph + k) as i32);
                    }
                    for (r, &w) in wv.iter().enumerate() {
                        let p = if W <= 5 {
                            // Field k to the low bits of each half: nothing for k = 0, else a shift
                            // (port 0, shared with the multiplies) or, with VBMI, `vpmultishiftqb`
                            // (port 5, with the permute): every k >= 1 when several streams load
                            // port 0 with multiplies, every other k for a single stream.
                            let low = if k == 0 {
                                w
                            } else if VBMI && (NP > 1 || k % 2 == 0) {
                                _mm512_multishift_epi64_epi8(_mm512_set1_epi64(multishift_control(W * k as u32)), w)
                            } else {
                                _mm512_srl_epi16(w, _mm_cvtsi32_si128((W * k as u32) as i32))
                            };
                            _mm512_permutexvar_epi16(low, table)
                        } else {
                            _mm512_sra_epi16(
                                _mm512_sll_epi16(w, _mm_cvtsi32_si128((16 - W * (k as u32 + 1)) as i32)),
                                _mm_cvtsi32_si128((16 - W) as i32),
                            )
                        };
                        for (acct, x) in acc.iter_mut().zip(&xb) {
                            acct[r] = if VNNI {
                                dpwssd(acct[r], p, *x)
                            } else {
                                _mm512_add_epi32(acct[r], _mm512_madd_epi16(p, *x))
                            };
                        }
                    }
                    // End of a scale segment: fold the integer sums into f32 with its scale.
                    let pair = cg * fph + k;
                    if (pair + 1).is_multiple_of(a.segment_pairs) || pair + 1 == a.groups * fph {
                        let g = pair / a.segment_pairs;
                        for ((acct, facct), sc) in acc.iter_mut().zip(facc.iter_mut()).zip(a.scales) {
                            let sc = _mm512_set1_ps(*sc.add(g));
                            for (v, f) in acct.iter_mut().zip(facct.iter_mut()) {
                                *f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*v), sc, *f);
                                *v = _mm512_setzero_si512();
                            }
                        }
                    }
                }
            }
            for (t, facct) in facc.iter().enumerate() {
                for (r, &f) in facct.iter().enumerate() {
                    let o = a.outs[t].add((r0 + r) * 16);
                    _mm512_storeu_ps(o, _mm512_add_ps(f, _mm512_loadu_ps(o)));
                }
            }
        }
    }
}

/// `vpdpwssd acc, a, b` kept as one instruction: LLVM otherwise splits some of these into
/// `vpmaddwd` + `vpaddd` (two uops on the port the kernel is bound by).
///
/// # Safety
/// AVX-512 VNNI must be available.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    accumulate_asm!("vpdpwssd {acc}, {a}, {b}", zmm_reg, acc, a, b)
}

/// # Safety
/// AVX2 + FMA must be available; `a` valid.
#[target_feature(enable = "avx2,fma")]
unsafe fn i16_256<const W: u32, const NP: usize>(a: IArgs) {
    let fph = 16 / W as usize;
    // SAFETY (whole body): inside the buffers checked by `simd::plane_i16`.
    unsafe {
        for rc in 0..a.b / 8 {
            let mut acc = [[_mm256_setzero_si256(); 2]; NP];
            let mut facc = [_mm256_setzero_ps(); NP];
            for cg in 0..a.groups {
                let lane = a.words.add(cg * a.b + rc * 8);
                let wv = _mm256_loadu_si256(lane as *const __m256i);
                // One prefetch per 64-byte line: every other 32-byte lane group.
                if a.prefetch_ahead != 0 && rc % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T1>((lane as *const i8).wrapping_add(a.prefetch_ahead));
                }
                for k in 0..fph {
                    let p = _mm256_sra_epi16(
                        _mm256_sll_epi16(wv, _mm_cvtsi32_si128((16 - W * (k as u32 + 1)) as i32)),
                        _mm_cvtsi32_si128((16 - W) as i32),
                    );
                    for (t, acct) in acc.iter_mut().enumerate() {
                        let xb = _mm256_set1_epi32(*a.pairs.add(t * a.pstride + cg * fph + k) as i32);
                        acct[k & 1] = _mm256_add_epi32(acct[k & 1], _mm256_madd_epi16(p, xb));
                    }
                    let pair = cg * fph + k;
                    if (pair + 1).is_multiple_of(a.segment_pairs) || pair + 1 == a.groups * fph {
                        let g = pair / a.segment_pairs;
                        for ((acct, f), sc) in acc.iter_mut().zip(facc.iter_mut()).zip(a.scales) {
                            let v = _mm256_add_epi32(acct[0], acct[1]);
                            *f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(*sc.add(g)), *f);
                            *acct = [_mm256_setzero_si256(); 2];
                        }
                    }
                }
            }
            for (t, f) in facc.iter().enumerate() {
                let o = a.outs[t].add(rc * 8);
                _mm256_storeu_ps(o, _mm256_add_ps(*f, _mm256_loadu_ps(o)));
            }
        }
    }
}
