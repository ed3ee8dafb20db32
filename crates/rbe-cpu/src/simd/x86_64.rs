//! x86-64 kernels: AVX2 + FMA and AVX-512 (F, BW, optionally VNNI), one body per width `W` and
//! batch chunk `NB` (const generics, so field offsets become immediate shifts). Callers in
//! [`super`] check buffer lengths and the CPU's features before any of these run.

use super::{Isa, PlaneF32, PlaneI16};
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
    prefetch_ahead: usize,
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
            // Only the first batch chunk prefetches: later chunks read the same plane.
            prefetch_ahead: if v0 == 0 { job.prefetch_ahead } else { 0 },
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
    /// Per-stream scales, `segments` apart.
    scales: [*const f32; 4],
    segment_pairs: usize,
    prefetch_ahead: usize,
}

pub(super) fn plane_i16(isa: Isa, job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
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
        // SAFETY: lengths checked by `super::plane_i16`; ISA support checked by the caller.
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
        t0 += np;
    }
}

/// Sign-extension table for 16-bit fields of `W <= 5` bits (see [`sign_lut`]): `vpermw` reads an
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
    // inside the buffers checked by `super::plane_i16`.
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
    let mut acc = acc;
    // SAFETY: register-only instruction, available per the caller's contract.
    unsafe {
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// # Safety
/// AVX2 + FMA must be available; `a` valid.
#[target_feature(enable = "avx2,fma")]
unsafe fn i16_256<const W: u32, const NP: usize>(a: IArgs) {
    let fph = 16 / W as usize;
    // SAFETY (whole body): inside the buffers checked by `super::plane_i16`.
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

/// Raw arguments of the column-major block product.
#[derive(Clone, Copy)]
struct CArgs {
    wt: *const f32,
    /// A block to prefetch line by line while this one is multiplied (null: none).
    next: *const f32,
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
    next: *const f32,
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
            // Only the first batch chunk prefetches: later chunks read the same block.
            next: if v0 == 0 { next } else { std::ptr::null() },
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
