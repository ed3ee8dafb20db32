//! Kernels and their run-time dispatch. The CPU's features are detected once
//! (`is_x86_feature_detected!`, `is_aarch64_feature_detected!`) and cached; [`generic`] is the
//! scalar oracle every SIMD path is tested against. Kernels work on one block (or one block's row
//! chunk) and accumulate into caller-owned buffers, so callers fix the summation order
//! (bit-identical across thread counts).

/// `acc = insn(acc, a, b)` for a register-only accumulating instruction (`vpdpwssd`, `sdot`)
/// given as `asm!` text over `{acc}`, `{a}` and `{b}` in register class `reg`: kept as one
/// instruction where LLVM would split or cannot name it. The caller's `# Safety` contract
/// guarantees the instruction is available.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! accumulate_asm {
    ($insn:literal, $reg:ident, $acc:expr, $a:expr, $b:expr) => {{
        let mut acc = $acc;
        // SAFETY: register-only instruction, available per the caller's contract.
        unsafe {
            std::arch::asm!(
                $insn,
                acc = inout($reg) acc,
                a = in($reg) $a,
                b = in($reg) $b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }};
}

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod chunks;
pub mod generic;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use crate::pack::PackShape;
use std::sync::OnceLock;

/// An instruction-set level a kernel can run at.
///
/// The order (`Ord`) ranks levels within one architecture only. The aarch64 levels sit below every
/// x86-64 one, so comparisons such as `isa >= Isa::Avx512` in the x86-64 kernels can never hold
/// for them (and those kernels are only reached with x86-64 levels anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable scalar code (the oracle).
    Scalar,
    /// aarch64 Advanced SIMD (NEON), present on every aarch64 CPU.
    Neon,
    /// NEON with the `dotprod` extension (`sdot`) for the Q8 path.
    NeonDot,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512 F + BW (AVX2 for 8-row blocks).
    Avx512,
    /// AVX-512 with VNNI (`vpdpwssd`) for the Q8 path.
    Avx512Vnni,
}

impl Isa {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neondot",
        }
    }
    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Isa::Avx512.supported() && std::arch::is_x86_feature_detected!("avx512vnni"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => Isa::Neon.supported() && std::arch::is_aarch64_feature_detected!("dotprod"),
            // Another architecture's levels (every target lacks some arms above).
            _ => false,
        }
    }
    /// The best level this CPU supports, detected once per process.
    pub fn detected() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::NeonDot, Isa::Neon]
                .into_iter()
                .find(|i| i.supported())
                .unwrap_or(Isa::Scalar)
        })
    }
    /// Every level this CPU supports, scalar first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Neon, Isa::NeonDot, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni]
            .into_iter()
            .filter(|i| i.supported())
            .collect()
    }
}

/// One dense plane times a batch of transformed inputs:
/// `out[v][i] += scale * sum_j q[i][j] * xs[v][j]` for `v < nb`, `i < b`.
pub struct PlaneF32<'a> {
    /// The packed plane ([`crate::pack`]).
    pub words: &'a [u32],
    /// Its geometry.
    pub shape: PackShape,
    /// `nb` inputs, `xstride` apart, each zero-padded to at least `groups * slots` values.
    pub xs: &'a [f32],
    /// Distance between inputs.
    pub xstride: usize,
    /// Batch size.
    pub nb: usize,
    /// Scale applied to the plane's integer products.
    pub scale: f32,
    /// Bytes ahead of each lane read to prefetch (0: none). The kernels issue one prefetch per
    /// cache line they read, spread through the product, for the plane that many bytes further
    /// on in the layer's resident array (a hint: it never faults, whatever lies there).
    pub prefetch_ahead: usize,
}

/// One dense plane times integer inputs held as int16 pairs ("streams"), each lane decoded once
/// for all streams. The columns fall into segments of `2 * segment_pairs` columns, each with its
/// own scale per stream (finer activation scales for the Q8 mode):
/// `out[outs[t]][i] += sum_g scales[t * segs + g] * sum_(j in segment g) q[i][j] * p_t[j]`, with
/// `segs = `[`PlaneI16::segments`] and `pairs[t][m] = p_t[2m] | p_t[2m+1] << 16`
/// (two's-complement halves). The integer sums are exact while they fit i32, which int8-range
/// streams always do (`|q| <= 2^15`, `|p| <= 127`, at most `2 * b` terms per row).
pub struct PlaneI16<'a> {
    /// The packed plane.
    pub words: &'a [u32],
    /// Its geometry.
    pub shape: PackShape,
    /// One pair array per stream, `pstride` apart, each covering `groups * slots / 2` pairs.
    pub pairs: &'a [u32],
    /// Distance between pair arrays.
    pub pstride: usize,
    /// Pairs per scale segment (>= 1).
    pub segment_pairs: usize,
    /// Per-stream, per-segment scales (`streams * segments()`).
    pub scales: &'a [f32],
    /// Per-stream output index (several streams may add into one output).
    pub outs: &'a [usize],
    /// As [`PlaneF32::prefetch_ahead`].
    pub prefetch_ahead: usize,
}

impl PlaneI16<'_> {
    /// Scale segments per stream: the plane's padded pairs in `segment_pairs` steps.
    pub fn segments(&self) -> usize {
        (self.shape.groups * self.shape.slots / 2).div_ceil(self.segment_pairs.max(1))
    }
}

fn check_plane(words: usize, shape: &PackShape, xs_needed: usize, xs_len: usize, out_needed: usize, out_len: usize) {
    assert!(words >= shape.words(), "plane shorter than its shape");
    assert!(xs_len >= xs_needed, "inputs shorter than the padded width");
    assert!(out_len >= out_needed, "output buffer too short");
}

/// Runs [`PlaneF32`] at `isa` into `out` (`nb` outputs `ostride` apart).
pub fn plane_f32(isa: Isa, job: &PlaneF32<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    let padded = sh.groups * sh.slots;
    if job.nb == 0 {
        return;
    }
    check_plane(
        job.words.len(),
        sh,
        (job.nb - 1) * job.xstride + padded,
        job.xs.len(),
        (job.nb - 1) * ostride + sh.block,
        out.len(),
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => x86_64::plane_f32(isa, job, out, ostride),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::plane_f32(job, out, ostride),
        _ => generic::plane_f32(job, out, ostride),
    }
}

/// Runs [`PlaneI16`] at `isa` into `out` (outputs `ostride` apart).
pub fn plane_i16(isa: Isa, job: &PlaneI16<'_>, out: &mut [f32], ostride: usize) {
    let sh = &job.shape;
    let streams = job.outs.len();
    assert!(job.segment_pairs >= 1, "segments hold at least one pair");
    assert_eq!(job.scales.len(), streams * job.segments(), "one scale per stream and segment");
    if streams == 0 {
        return;
    }
    let last_out = job.outs.iter().copied().max().unwrap_or(0);
    check_plane(
        job.words.len(),
        sh,
        (streams - 1) * job.pstride + sh.groups * sh.slots / 2,
        job.pairs.len(),
        last_out * ostride + sh.block,
        out.len(),
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => x86_64::plane_i16(isa, job, out, ostride),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::plane_i16(isa == Isa::NeonDot, job, out, ostride),
        _ => generic::plane_i16(job, out, ostride),
    }
}

/// The arguments of a column-major block product, checked by [`cols_f32_prefetching`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
struct ColsJob<'a> {
    /// The `b x b` block, column-major.
    wt: &'a [f32],
    /// The block to prefetch meanwhile (empty: none).
    next: &'a [f32],
    /// Block edge.
    b: usize,
    /// `nb` inputs of `b` values, `xstride` apart.
    xs: &'a [f32],
    xstride: usize,
    nb: usize,
}

#[allow(clippy::too_many_arguments)]
/// Column-major dense block times a batch: `out[v][r] += sum_c wt[c * b + r] * xs[v][c]`.
pub fn cols_f32(
    isa: Isa,
    wt: &[f32],
    b: usize,
    xs: &[f32],
    xstride: usize,
    nb: usize,
    out: &mut [f32],
    ostride: usize,
) {
    cols_f32_prefetching(isa, wt, &[], b, xs, xstride, nb, out, ostride)
}

/// [`cols_f32`] that also prefetches `next` (the block the caller multiplies next; empty: none),
/// one line per line it reads, spread through the product (x86-64; elsewhere one [`prefetch`]
/// burst first).
#[allow(clippy::too_many_arguments)]
pub fn cols_f32_prefetching(
    isa: Isa,
    wt: &[f32],
    next: &[f32],
    b: usize,
    xs: &[f32],
    xstride: usize,
    nb: usize,
    out: &mut [f32],
    ostride: usize,
) {
    if nb == 0 {
        return;
    }
    assert!(wt.len() >= b * b && xs.len() >= (nb - 1) * xstride + b && out.len() >= (nb - 1) * ostride + b);
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let job = ColsJob { wt, next, b, xs, xstride, nb };
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => x86_64::cols_f32(isa, &job, out, ostride),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::cols_f32(&job, out, ostride),
        _ => generic::cols_f32(wt, b, xs, xstride, nb, out, ostride),
    }
}

/// Dot product of two equally long slices.
pub fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => x86_64::dot_f32(isa, &a[..n], &b[..n]),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::dot_f32(&a[..n], &b[..n]),
        _ => generic::dot_f32(&a[..n], &b[..n]),
    }
}

/// `y += a * x` in f64 over `min(x.len(), y.len())` values. Element-wise with no fused
/// multiply-add, so every ISA gives the scalar oracle's bits.
pub fn axpy_f64(isa: Isa, a: f64, x: &[f64], y: &mut [f64]) {
    let n = x.len().min(y.len());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni => x86_64::axpy_f64(isa, a, &x[..n], &mut y[..n]),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::axpy_f64(a, &x[..n], &mut y[..n]),
        _ => generic::axpy_f64(a, &x[..n], &mut y[..n]),
    }
}

/// Asks the CPU to bring `data` into its L2 cache ahead of use (one `prefetcht1`, on aarch64 one
/// `prfm pldl2keep`, per 64-byte line); no effect on results. The products issue it for blocks a
/// few places ahead, so weights stream from DRAM while the current block is multiplied (the
/// hardware prefetchers stop at 4 KiB page boundaries). Measured on the 4096x4096 bench (x86-64):
/// L2 (`T1`) beats L1 (`T0`) hints, which occupy the L1 fill buffers the kernel's own loads need,
/// and `NTA` is far slower. The aarch64 hint level follows the x86-64 measurement, unmeasured.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(data);
        let p = data.as_ptr() as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: a prefetch is only a hint and never faults; the address lies inside `data`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.add(off)) };
            off += 64;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let p = data.as_ptr() as *const u8;
        for off in (0..std::mem::size_of_val(data)).step_by(64) {
            aarch64::prefetch_l2(p.wrapping_add(off));
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = data;
}
