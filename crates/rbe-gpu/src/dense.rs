//! `GpuDense`: a plain dense f32 matrix on the GPU with the GEMV kernel of gemv.wgsl — the in-run
//! baseline the compressed products are compared against.

use crate::batch::Calls;
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::gemv::{bind_gemv, dispatch_gemv, gemv_cfg};

#[derive(Debug)]
struct Part {
    rows: usize,
    cfg: wgpu::Buffer,
    w: wgpu::Buffer,
}

/// A dense row-major f32 matrix resident on the GPU (split by rows to fit the binding limit).
#[derive(Debug)]
pub struct GpuDense {
    ctx: GpuContext,
    name: String,
    rows: usize,
    cols: usize,
    parts: Vec<Part>,
    bias: wgpu::Buffer,
    calls: Calls,
}

impl GpuDense {
    /// Uploads `w` (`rows x cols`, row-major).
    pub fn new(ctx: &GpuContext, name: &str, w: &[f32], rows: usize, cols: usize) -> Result<Self, GpuError> {
        GpuError::check_len(name, "matrix", rows * cols, w.len())?;
        let max_rows = ((ctx.max_binding() / (4 * cols.max(1) as u64)) as usize)
            .min(ctx.limits().max_compute_workgroups_per_dimension as usize);
        if max_rows == 0 {
            return Err(GpuError::Limits {
                tensor: name.to_owned(),
                reason: format!("a row of {cols} f32 exceeds the binding limit"),
            });
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = max_rows.min(rows - row0);
            parts.push(Part {
                rows: n,
                cfg: gemv_cfg(ctx, "rbe dense cfg", n, cols, row0, rows),
                w: ctx.storage("rbe dense w", bytemuck::cast_slice(&w[row0 * cols..(row0 + n) * cols])),
            });
            row0 += n;
        }
        Ok(GpuDense {
            ctx: ctx.clone(),
            name: name.to_owned(),
            rows,
            cols,
            parts,
            bias: ctx.storage("rbe bias", bytemuck::cast_slice(&vec![0f32; rows])),
            calls: Calls::new(ctx),
        })
    }

    /// Bytes of weights a product reads.
    pub fn bytes_per_call(&self) -> usize {
        4 * self.rows * self.cols
    }

    /// `y = W x`, `x` row-major `batch x cols`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, GpuError> {
        let ctx = &self.ctx;
        let bind = |xb: &wgpu::Buffer, y: &wgpu::Buffer, _cap: u64| {
            let call = &self.calls.call;
            self.parts.iter().map(|p| bind_gemv(ctx, &p.cfg, call, &p.w, xb, &self.bias, y)).collect()
        };
        let record = |pass: &mut wgpu::ComputePass<'_>, groups: &[wgpu::BindGroup], n: usize| {
            dispatch_gemv(ctx, pass, self.parts.iter().map(|p| p.rows).zip(groups), n)
        };
        self.calls.forward(ctx, &self.name, (self.rows, self.cols), x, batch, bind, record)
    }
}
