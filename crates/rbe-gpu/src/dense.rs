//! `GpuDense`: a plain dense f32 matrix on the GPU with the GEMV kernel of gemv.wgsl — the in-run
//! baseline the compressed products are compared against.

use crate::context::GpuContext;
use crate::error::GpuError;
use crate::linear::{Call, GemvCfg, MAX_CALL_BATCH};
use std::sync::Mutex;

#[derive(Debug)]
struct Part {
    rows: usize,
    cfg: wgpu::Buffer,
    w: wgpu::Buffer,
}

#[derive(Debug)]
struct Scratch {
    cap: usize,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    staging: wgpu::Buffer,
    groups: Vec<wgpu::BindGroup>,
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
    call: wgpu::Buffer,
    scratch: Mutex<Option<Scratch>>,
}

impl GpuDense {
    /// Uploads `w` (`rows x cols`, row-major).
    pub fn new(ctx: &GpuContext, name: &str, w: &[f32], rows: usize, cols: usize) -> Result<Self, GpuError> {
        if w.len() != rows * cols {
            return Err(GpuError::Shape {
                tensor: name.to_owned(),
                what: "matrix",
                expected: rows * cols,
                got: w.len(),
            });
        }
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
            let g = GemvCfg { rows: n as u32, cols: cols as u32, row0: row0 as u32, rows_total: rows as u32 };
            parts.push(Part {
                rows: n,
                cfg: ctx.uniform("rbe dense cfg", bytemuck::bytes_of(&g)),
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
            call: ctx.uniform("rbe call", bytemuck::bytes_of(&Call { batch: 1, pad: [0; 3] })),
            scratch: Mutex::new(None),
        })
    }

    /// Bytes of weights a product reads.
    pub fn bytes_per_call(&self) -> usize {
        4 * self.rows * self.cols
    }

    /// `y = W x`, `x` row-major `batch x cols`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, GpuError> {
        if x.len() != batch * self.cols {
            return Err(GpuError::Shape {
                tensor: self.name.clone(),
                what: "input",
                expected: batch * self.cols,
                got: x.len(),
            });
        }
        let ctx = &self.ctx;
        let mut guard = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(batch * self.rows);
        for chunk in x.chunks(MAX_CALL_BATCH * self.cols.max(1)) {
            let n = chunk.len() / self.cols.max(1);
            if guard.as_ref().is_none_or(|s| s.cap < n) {
                let cap = n.next_power_of_two().min(MAX_CALL_BATCH) as u64;
                let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
                let xb = ctx.buffer("rbe x", cap * self.cols as u64 * 4, rw);
                let y = ctx.buffer("rbe y", cap * self.rows as u64 * 4, rw);
                let staging = ctx.buffer(
                    "rbe y staging",
                    cap * self.rows as u64 * 4,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                );
                let groups = self
                    .parts
                    .iter()
                    .map(|p| {
                        ctx.bind(
                            &ctx.pipes().gemv,
                            &[(0, &p.cfg), (1, &self.call), (2, &p.w), (3, &xb), (4, &self.bias), (5, &y)],
                        )
                    })
                    .collect();
                *guard = Some(Scratch { cap: cap as usize, x: xb, y, staging, groups });
            }
            let s = guard.as_ref().expect("just filled");
            ctx.queue().write_buffer(&self.call, 0, bytemuck::bytes_of(&Call { batch: n as u32, pad: [0; 3] }));
            ctx.queue().write_buffer(&s.x, 0, bytemuck::cast_slice(chunk));
            let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&ctx.pipes().gemv);
                for (p, g) in self.parts.iter().zip(&s.groups) {
                    pass.set_bind_group(0, g, &[]);
                    pass.dispatch_workgroups(p.rows as u32, n as u32, 1);
                }
            }
            let bytes = (n * self.rows * 4) as u64;
            enc.copy_buffer_to_buffer(&s.y, 0, &s.staging, 0, bytes);
            ctx.queue().submit([enc.finish()]);
            out.extend(ctx.map_read(&self.name, &s.staging, bytes)?);
        }
        Ok(out)
    }
}
