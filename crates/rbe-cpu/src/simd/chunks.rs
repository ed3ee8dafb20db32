//! Arch-independent splitting of a kernel job into the chunks the SIMD kernels are compiled for
//! (batches of 8, 4, 2, 1 inputs; 4, 2, 1 integer streams), with the raw pointer arguments of
//! each chunk. The x86-64 and aarch64 kernels share these loops and differ only in what they run
//! per chunk. Only the first chunk of a job prefetches: later chunks read the same plane or block.

use super::{ColsJob, PlaneF32, PlaneI16};

/// Batch chunk for `rem` inputs left: the largest of 8, 4, 2, 1 that fits.
pub(super) fn batch_chunk(rem: usize) -> usize {
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

/// Raw arguments of a float plane kernel for one batch chunk.
#[derive(Clone, Copy)]
pub(super) struct Args {
    pub words: *const u32,
    pub b: usize,
    pub groups: usize,
    pub xs: *const f32,
    pub xstride: usize,
    pub out: *mut f32,
    pub ostride: usize,
    pub scale: f32,
    pub prefetch_ahead: usize,
}

/// Calls `f(args, nb)` for each batch chunk of `job`, in order.
pub(super) fn plane_f32_chunks(job: &PlaneF32<'_>, out: &mut [f32], ostride: usize, mut f: impl FnMut(Args, usize)) {
    let sh = &job.shape;
    let mut v0 = 0;
    while v0 < job.nb {
        let nb = batch_chunk(job.nb - v0);
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
            prefetch_ahead: if v0 == 0 { job.prefetch_ahead } else { 0 },
        };
        f(a, nb);
        v0 += nb;
    }
}

/// Raw arguments of an int16-pair plane kernel for one chunk of `NP` streams.
#[derive(Clone, Copy)]
pub(super) struct IArgs {
    pub words: *const u32,
    pub b: usize,
    pub groups: usize,
    /// Pair arrays of the chunk's streams, `pstride` apart.
    pub pairs: *const u32,
    pub pstride: usize,
    /// Output of each stream of the chunk (already offset by its index times the stride).
    pub outs: [*mut f32; 4],
    /// Per-stream scales, one per segment.
    pub scales: [*const f32; 4],
    pub segment_pairs: usize,
    pub prefetch_ahead: usize,
}

/// Calls `f(args, np, t0)` for each chunk of `np` streams starting at stream `t0`, in order.
pub(super) fn plane_i16_chunks(
    job: &PlaneI16<'_>,
    out: &mut [f32],
    ostride: usize,
    mut f: impl FnMut(IArgs, usize, usize),
) {
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
            prefetch_ahead: if t0 == 0 { job.prefetch_ahead } else { 0 },
        };
        for k in 0..np {
            // `wrapping_add`: the pointer is only formed here; `super::plane_i16` checked every
            // output index against `out`'s length, so it lies inside `out`.
            a.outs[k] = base.wrapping_add(job.outs[t0 + k] * ostride);
            a.scales[k] = job.scales[(t0 + k) * segs..].as_ptr();
        }
        f(a, np, t0);
        t0 += np;
    }
}

/// Raw arguments of the column-major block product for one batch chunk.
#[derive(Clone, Copy)]
pub(super) struct CArgs {
    pub wt: *const f32,
    /// A block to prefetch while this one is multiplied (null: none).
    pub next: *const f32,
    pub b: usize,
    pub xs: *const f32,
    pub xstride: usize,
    pub out: *mut f32,
    pub ostride: usize,
}

/// Calls `f(args, nb)` for each batch chunk of the column-major product, in order.
pub(super) fn cols_chunks(job: &ColsJob<'_>, out: &mut [f32], ostride: usize, mut f: impl FnMut(CArgs, usize)) {
    let mut v0 = 0;
    while v0 < job.nb {
        let n = batch_chunk(job.nb - v0);
        let a = CArgs {
            wt: job.wt.as_ptr(),
            next: if v0 == 0 && !job.next.is_empty() { job.next.as_ptr() } else { std::ptr::null() },
            b: job.b,
            xs: job.xs[v0 * job.xstride..].as_ptr(),
            xstride: job.xstride,
            out: out[v0 * ostride..].as_mut_ptr(),
            ostride,
        };
        f(a, n);
        v0 += n;
    }
}
