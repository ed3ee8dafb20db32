//! The dense GEMV kernel of gemv.wgsl as both products use it (the dense baseline and decode
//! mode): its per-part uniform, its bind group and its dispatch.

use crate::context::GpuContext;
use bytemuck::{Pod, Zeroable};

/// Mirrors `Gemv` in gemv.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct GemvCfg {
    rows: u32,
    cols: u32,
    row0: u32,
    rows_total: u32,
}

/// The uniform for the `rows` rows from `row0` of a `rows_total x cols` matrix.
pub(crate) fn gemv_cfg(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    row0: usize,
    rows_total: usize,
) -> wgpu::Buffer {
    let g = GemvCfg { rows: rows as u32, cols: cols as u32, row0: row0 as u32, rows_total: rows_total as u32 };
    ctx.uniform(label, bytemuck::bytes_of(&g))
}

/// The bind group of one part's GEMV: `y = w x + bias` for the rows `cfg` names.
pub(crate) fn bind_gemv(
    ctx: &GpuContext,
    cfg: &wgpu::Buffer,
    call: &wgpu::Buffer,
    w: &wgpu::Buffer,
    x: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> wgpu::BindGroup {
    ctx.bind(&ctx.pipes().gemv, &[(0, cfg), (1, call), (2, w), (3, x), (4, bias), (5, y)])
}

/// Records the GEMV of every part: `rows` of each part with its bind group, for `n` vectors.
pub(crate) fn dispatch_gemv<'a>(
    ctx: &GpuContext,
    pass: &mut wgpu::ComputePass<'_>,
    parts: impl Iterator<Item = (usize, &'a wgpu::BindGroup)>,
    n: usize,
) {
    pass.set_pipeline(&ctx.pipes().gemv);
    for (rows, g) in parts {
        pass.set_bind_group(0, g, &[]);
        pass.dispatch_workgroups(rows as u32, n as u32, 1);
    }
}
