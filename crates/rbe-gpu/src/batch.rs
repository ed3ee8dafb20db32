//! The per-call side every GPU product shares: the `Call` uniform, x/y/staging buffers reused
//! across calls, the loop over submissions of at most [`MAX_CALL_BATCH`] vectors, and the
//! readback of `y`.

use crate::context::GpuContext;
use crate::error::GpuError;
use bytemuck::{Pod, Zeroable};
use std::sync::Mutex;

/// Most vectors in one submission; larger batches run in several.
pub(crate) const MAX_CALL_BATCH: usize = 64;

/// Mirrors `Call` in the shaders.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Call {
    batch: u32,
    pad: [u32; 3],
}

/// Per-call buffers, grown on demand and reused.
#[derive(Debug)]
struct Scratch {
    cap: usize,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    staging: wgpu::Buffer,
    groups: Vec<wgpu::BindGroup>,
}

/// The buffers one product's calls go through. A product holds one; its mutex serialises calls,
/// so concurrent callers never share a half-written `x`.
#[derive(Debug)]
pub(crate) struct Calls {
    /// The `Call` uniform (batch size of the current submission).
    pub call: wgpu::Buffer,
    scratch: Mutex<Option<Scratch>>,
}

impl Calls {
    pub fn new(ctx: &GpuContext) -> Self {
        Calls {
            call: ctx.uniform("rbe call", bytemuck::bytes_of(&Call { batch: 1, pad: [0; 3] })),
            scratch: Mutex::new(None),
        }
    }

    /// `y = W x` for row-major `x` (`batch x cols`) of a `rows x cols` product named `name`.
    /// `bind(x, y, cap)` makes the bind groups over freshly sized `x`/`y` buffers for `cap`
    /// vectors; `record(pass, groups, n)` records one submission of `n` vectors writing `y`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ctx: &GpuContext,
        name: &str,
        (rows, cols): (usize, usize),
        x: &[f32],
        batch: usize,
        bind: impl Fn(&wgpu::Buffer, &wgpu::Buffer, u64) -> Vec<wgpu::BindGroup>,
        record: impl Fn(&mut wgpu::ComputePass<'_>, &[wgpu::BindGroup], usize),
    ) -> Result<Vec<f32>, GpuError> {
        GpuError::check_len(name, "input", batch * cols, x.len())?;
        let mut y = Vec::with_capacity(batch * rows);
        let mut guard = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in x.chunks(MAX_CALL_BATCH * cols.max(1)) {
            let n = chunk.len() / cols.max(1);
            if guard.as_ref().is_none_or(|s| s.cap < n) {
                let cap = n.next_power_of_two().min(MAX_CALL_BATCH);
                *guard = Some(Self::scratch(ctx, (rows, cols), cap, &bind));
            }
            let s = guard.as_ref().expect("just filled");
            y.extend(self.submit(ctx, name, rows, s, chunk, n, &record)?);
        }
        Ok(y)
    }

    fn scratch(
        ctx: &GpuContext,
        (rows, cols): (usize, usize),
        cap: usize,
        bind: &impl Fn(&wgpu::Buffer, &wgpu::Buffer, u64) -> Vec<wgpu::BindGroup>,
    ) -> Scratch {
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let cap64 = cap as u64;
        let x = ctx.buffer("rbe x", cap64 * cols as u64 * 4, rw);
        let y = ctx.buffer("rbe y", cap64 * rows as u64 * 4, rw);
        let staging = ctx.buffer(
            "rbe y staging",
            cap64 * rows as u64 * 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let groups = bind(&x, &y, cap64);
        Scratch { cap, x, y, staging, groups }
    }

    /// One submission: uploads `n` vectors, records the product's passes, reads `n x rows` back.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        ctx: &GpuContext,
        name: &str,
        rows: usize,
        s: &Scratch,
        x: &[f32],
        n: usize,
        record: &impl Fn(&mut wgpu::ComputePass<'_>, &[wgpu::BindGroup], usize),
    ) -> Result<Vec<f32>, GpuError> {
        ctx.queue().write_buffer(&self.call, 0, bytemuck::bytes_of(&Call { batch: n as u32, pad: [0; 3] }));
        if !x.is_empty() {
            ctx.queue().write_buffer(&s.x, 0, bytemuck::cast_slice(x));
        }
        let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            record(&mut pass, &s.groups, n);
        }
        let bytes = (n * rows * 4) as u64;
        if bytes > 0 {
            enc.copy_buffer_to_buffer(&s.y, 0, &s.staging, 0, bytes);
        }
        ctx.queue().submit([enc.finish()]);
        if bytes == 0 {
            return Ok(Vec::new());
        }
        ctx.map_read(name, &s.staging, bytes)
    }
}
