//! The products of a [`GpuLinear`]: the decode kernels (into dense device rows), the dense GEMV
//! of decode mode and the transform-domain passes of direct mode, recorded per submission.

use super::{GpuLinear, GpuMode};
use crate::error::GpuError;
use crate::gemv::{bind_gemv, dispatch_gemv};

impl GpuLinear {
    /// Decodes every part on the GPU into fresh dense buffers (rows of the part x cols).
    pub(super) fn decode_parts(&self) -> Result<Vec<wgpu::Buffer>, GpuError> {
        let ctx = &self.ctx;
        let p = ctx.pipes();
        let bb = (self.b * self.b) as u64;
        let max_blocks = self.parts.iter().map(|p| p.blocks).max().unwrap_or(1) as u64;
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let coef = ctx.buffer("rbe coef", max_blocks * bb * 4, rw);
        let tmp = ctx.buffer("rbe tmp", max_blocks * bb * 4, rw);
        let params = ctx.buffer("rbe params", max_blocks * 8 * 4, rw);
        let mut out = Vec::with_capacity(self.parts.len());
        let cells = (bb as u32).div_ceil(64);
        for part in &self.parts {
            let dense = ctx.buffer("rbe dense", (part.rows * self.cols * 4) as u64, rw);
            let g1 = ctx.bind(
                &p.unpack,
                &[(0, &part.cfg), (1, &part.stream), (2, &part.starts), (3, &self.tables), (4, &coef), (5, &params)],
            );
            let g2 = ctx.bind(&p.inverse_rows, &[(0, &part.cfg), (3, &self.tables), (4, &coef), (6, &tmp)]);
            let g3 = ctx.bind(&p.finish, &[(0, &part.cfg), (3, &self.tables), (5, &params), (6, &tmp), (7, &dense)]);
            let mut enc = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&p.unpack);
                pass.set_bind_group(0, &g1, &[]);
                pass.dispatch_workgroups(part.blocks as u32, 1, 1);
                pass.set_pipeline(&p.inverse_rows);
                pass.set_bind_group(0, &g2, &[]);
                pass.dispatch_workgroups(cells, part.blocks as u32, 1);
                pass.set_pipeline(&p.finish);
                pass.set_bind_group(0, &g3, &[]);
                pass.dispatch_workgroups(cells, part.blocks as u32, 1);
            }
            ctx.queue().submit([enc.finish()]);
            out.push(dense);
        }
        Ok(out)
    }

    /// Decodes the whole matrix on the GPU and reads it back (row-major `rows x cols`). In decode
    /// mode this reads the resident dense matrix; in direct mode it runs the decode kernels.
    pub fn decode(&self) -> Result<Vec<f32>, GpuError> {
        let fresh;
        let dense: Vec<&wgpu::Buffer> = match self.mode {
            GpuMode::Decode => self.parts.iter().filter_map(|p| p.dense.as_ref()).collect(),
            GpuMode::DctDirect => {
                fresh = self.decode_parts()?;
                fresh.iter().collect()
            }
        };
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (part, buf) in self.parts.iter().zip(dense) {
            out.extend(self.ctx.read_f32(&self.name, buf, 0, (part.rows * self.cols * 4) as u64)?);
        }
        Ok(out)
    }

    /// `y = W x + bias` for one input of `in_features` values.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, GpuError> {
        self.forward_batch(x, 1)
    }

    /// Row-major batch: `x` is `batch x in_features`, the result `batch x out_features`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, GpuError> {
        let bind = |x: &wgpu::Buffer, y: &wgpu::Buffer, cap: u64| self.bind_groups(x, y, cap);
        let record =
            |pass: &mut wgpu::ComputePass<'_>, groups: &[wgpu::BindGroup], n: usize| self.record(pass, groups, n);
        self.calls.forward(&self.ctx, &self.name, (self.rows, self.cols), x, batch, bind, record)
    }

    /// The bind groups of one product over the call buffers `x` and `y` sized for `cap64` vectors.
    fn bind_groups(&self, x: &wgpu::Buffer, y: &wgpu::Buffer, cap64: u64) -> Vec<wgpu::BindGroup> {
        let ctx = &self.ctx;
        let p = ctx.pipes();
        let rw = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let (gr, gc) = self.grid;
        let b = self.b as u64;
        let call = &self.calls.call;
        let mut groups = Vec::new();
        match self.mode {
            GpuMode::Decode => {
                for part in &self.parts {
                    let dense = part.dense.as_ref().expect("decode mode keeps dense parts");
                    groups.push(bind_gemv(ctx, &part.gemv, call, dense, x, &self.bias, y));
                }
            }
            GpuMode::DctDirect => {
                let xh = ctx.buffer("rbe xh", cap64 * gc as u64 * b * 4, rw);
                let proj = ctx.buffer("rbe proj", cap64 * gc as u64 * 8 * b * 4, rw);
                let zsize = self.segs as u64 * cap64 * gr as u64 * b * 4;
                let zpart = ctx.buffer("rbe zpart", zsize, rw);
                let bpart = ctx.buffer("rbe bpart", zsize, rw);
                let first = &self.parts[0];
                groups.push(ctx.bind(
                    &p.input_transform,
                    &[(0, &first.cfg), (3, &self.tables), (4, call), (5, x), (6, &xh), (7, &proj)],
                ));
                for part in &self.parts {
                    let mut e = vec![
                        (0, &part.cfg),
                        (1, &part.stream),
                        (2, &part.starts),
                        (4, call),
                        (6, &xh),
                        (8, &zpart),
                        (9, &bpart),
                    ];
                    e.push((3, &self.tables));
                    e.push((7, &proj));
                    groups.push(ctx.bind(&p.accumulate, &e));
                }
                groups.push(ctx.bind(
                    &p.finalize,
                    &[
                        (0, &first.cfg),
                        (3, &self.tables),
                        (4, call),
                        (8, &zpart),
                        (9, &bpart),
                        (10, &self.bias),
                        (11, y),
                    ],
                ));
            }
        }
        groups
    }

    /// Records one submission of `n` vectors.
    fn record(&self, pass: &mut wgpu::ComputePass<'_>, groups: &[wgpu::BindGroup], n: usize) {
        let ctx = &self.ctx;
        let p = ctx.pipes();
        let (_, gc) = self.grid;
        match self.mode {
            GpuMode::Decode => dispatch_gemv(ctx, pass, self.parts.iter().map(|p| p.rows).zip(groups), n),
            GpuMode::DctDirect => {
                let per = if self.has_params { 9 * self.b } else { self.b };
                pass.set_pipeline(&p.input_transform);
                pass.set_bind_group(0, &groups[0], &[]);
                pass.dispatch_workgroups((gc * per).div_ceil(64) as u32, n as u32, 1);
                pass.set_pipeline(&p.accumulate);
                for (part, g) in self.parts.iter().zip(&groups[1..]) {
                    pass.set_bind_group(0, g, &[]);
                    pass.dispatch_workgroups(part.nbr as u32, self.segs as u32, n.div_ceil(8) as u32);
                }
                pass.set_pipeline(&p.finalize);
                pass.set_bind_group(0, &groups[self.parts.len() + 1], &[]);
                pass.dispatch_workgroups(self.rows.div_ceil(64) as u32, n as u32, 1);
            }
        }
    }
}
