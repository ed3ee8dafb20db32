//! `GpuLinear`: one compressed weight matrix resident on the GPU as its runtime block stream, with
//! two products: `Decode` (decode once into a dense device matrix, then the dense GEMV kernel) and
//! `DctDirect` (products straight from the blocks in the transform domain).

mod products;

use crate::batch::{Calls, MAX_CALL_BATCH};
use crate::context::GpuContext;
use crate::error::GpuError;
use crate::gemv::gemv_cfg;
use bytemuck::{Pod, Zeroable};
use rbe_format::{EncodedTensor, Layout, ParamsPrecision, ValueCodec};

/// How a [`GpuLinear`] computes its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuMode {
    /// Decode every block once into a dense f32 device matrix at construction, then dense GEMV.
    Decode,
    /// Transform-domain product from the block stream: input transform per column block,
    /// coefficient accumulation per frequency row, one inverse transform per output block.
    DctDirect,
}

impl GpuMode {
    /// Short name (`decode`, `dct_direct`).
    pub fn name(self) -> &'static str {
        match self {
            GpuMode::Decode => "decode",
            GpuMode::DctDirect => "dct_direct",
        }
    }
    /// Every mode.
    pub const ALL: [GpuMode; 2] = [GpuMode::Decode, GpuMode::DctDirect];
}

/// Per-part configuration; mirrors `Cfg` in stream.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Cfg {
    b: u32,
    rows: u32,
    cols: u32,
    grid_r: u32,
    grid_c: u32,
    br0: u32,
    nbr: u32,
    entry_layout: u32,
    codec: u32,
    params_bytes: u32,
    scale_bytes: u32,
    entry_bytes: u32,
    segs: u32,
    bc_per_seg: u32,
    tab_basis: u32,
    tab_mulaw: u32,
}
const _: () = assert!(std::mem::size_of::<Cfg>() == 64);

/// On-shader codes; explicit both ways, never `as u32` of a Rust enum.
fn layout_code(l: Layout) -> u32 {
    match l {
        Layout::Wide => 0,
        Layout::B4 => 1,
        Layout::P32 => 2,
        Layout::P24 => 3,
    }
}
fn codec_code(c: ValueCodec) -> u32 {
    match c {
        ValueCodec::F32 => 0,
        ValueCodec::F16 => 1,
        ValueCodec::Q16 => 2,
        ValueCodec::Q9s => 3,
        ValueCodec::MuLaw8 => 4,
    }
}

/// Most blocks in one part (bounds the decode scratch and workgroup counts).
const MAX_PART_BLOCKS: usize = 4096;
/// Workgroups the accumulation aims for (block rows x column segments).
const TARGET_WORKGROUPS: usize = 1024;

/// A range of block rows with its own slice of the stream (tensors over the binding limit are
/// split into several).
#[derive(Debug)]
struct Part {
    nbr: usize,
    blocks: usize,
    rows: usize,
    cfg: wgpu::Buffer,
    gemv: wgpu::Buffer,
    stream: wgpu::Buffer,
    starts: wgpu::Buffer,
    /// Decode mode: the decoded rows of this part.
    dense: Option<wgpu::Buffer>,
}

/// A linear layer `y = W x + bias` over a compressed matrix, on the GPU. `Send + Sync`.
#[derive(Debug)]
pub struct GpuLinear {
    ctx: GpuContext,
    name: String,
    mode: GpuMode,
    rows: usize,
    cols: usize,
    b: usize,
    grid: (usize, usize),
    segs: usize,
    has_params: bool,
    tables: std::sync::Arc<wgpu::Buffer>,
    parts: Vec<Part>,
    bias: wgpu::Buffer,
    stream_bytes: usize,
    calls: Calls,
}

impl GpuLinear {
    /// Uploads `tensor`'s runtime block stream (a u32-padded copy of the section-3 bytes and the
    /// block start offsets, per part) and, in [`GpuMode::Decode`], decodes it once on the GPU.
    pub fn new(
        ctx: &GpuContext,
        tensor: &EncodedTensor,
        bias: Option<Vec<f32>>,
        mode: GpuMode,
    ) -> Result<Self, GpuError> {
        let name = tensor.name().to_owned();
        let cfg = *tensor.config();
        let (rows, cols) = (tensor.rows(), tensor.cols());
        let (gr, gc) = tensor.block_grid().dims();
        let b = cfg.block;
        let limit_err = |reason: String| GpuError::Limits { tensor: name.clone(), reason };
        if let Some(bias) = &bias
            && bias.len() != rows
        {
            return Err(GpuError::Shape { tensor: name, what: "bias", expected: rows, got: bias.len() });
        }
        let max_bind = ctx.max_binding();
        let max_groups = ctx.limits().max_compute_workgroups_per_dimension as usize;
        if rows > u32::MAX as usize / 2 || cols > u32::MAX as usize / 2 {
            return Err(limit_err(format!("{rows}x{cols} exceeds the shaders' 32-bit indexing")));
        }
        // Column-side buffers (one x^ per column block, 8 projections) must fit one binding.
        let per_vec = (gc * b * 9 * 4) as u64;
        if per_vec * MAX_CALL_BATCH as u64 > max_bind || (gc * b * 9).div_ceil(64) > max_groups {
            return Err(limit_err(format!("{cols} columns exceed the adapter's buffer or dispatch limits")));
        }
        let segs_wanted = (TARGET_WORKGROUPS / gr.max(1)).clamp(1, gc);
        let bc_per_seg = gc.div_ceil(segs_wanted);
        let segs = gc.div_ceil(bc_per_seg);
        let tables = ctx.tables(b, cfg.transform);
        let bb = (b * b) as u64;

        // Plan parts: greedy runs of whole block rows within every limit.
        let row_bytes: Vec<usize> =
            (0..gr).map(|br| (br * gc..(br + 1) * gc).map(|i| tensor.block_bytes(i).len()).sum()).collect();
        let mut parts = Vec::new();
        let mut br = 0;
        let mut stream_bytes = 0;
        while br < gr {
            let (br0, mut bytes, mut nbr) = (br, 0usize, 0usize);
            while br < gr {
                let nb = bytes + row_bytes[br];
                let n = nbr + 1;
                let part_rows = (rows.min((br0 + n) * b) - br0 * b) as u64;
                let fits = (nb + 8) as u64 <= max_bind
                    && n * gc <= MAX_PART_BLOCKS.min(max_groups)
                    && (n * gc + 1) as u64 * 4 <= max_bind
                    && part_rows <= max_groups as u64
                    && (mode == GpuMode::DctDirect || part_rows * cols as u64 * 4 <= max_bind)
                    && n as u64 * gc as u64 * bb * 4 <= max_bind;
                if !fits {
                    break;
                }
                bytes = nb;
                nbr = n;
                br += 1;
            }
            if nbr == 0 {
                return Err(limit_err(format!(
                    "block row {br0} does not fit the adapter's limits (max binding {max_bind} bytes, \
                     {max_groups} workgroups per dimension)"
                )));
            }
            let first = br0 * gc;
            let last = (br0 + nbr) * gc;
            let mut data = Vec::with_capacity(bytes + 8);
            let mut starts = Vec::with_capacity(last - first + 1);
            for i in first..last {
                starts.push(data.len() as u32);
                data.extend_from_slice(tensor.block_bytes(i));
            }
            starts.push(data.len() as u32);
            // Two zero words so unaligned 32-bit reads never leave the buffer.
            data.resize(data.len().next_multiple_of(4) + 8, 0);
            stream_bytes += bytes;
            let row0 = br0 * b;
            let prow = rows.min((br0 + nbr) * b) - row0;
            let c = Cfg {
                b: b as u32,
                rows: rows as u32,
                cols: cols as u32,
                grid_r: gr as u32,
                grid_c: gc as u32,
                br0: br0 as u32,
                nbr: nbr as u32,
                entry_layout: layout_code(cfg.layout),
                codec: codec_code(cfg.values),
                params_bytes: cfg.params.bytes() as u32,
                scale_bytes: cfg.values.scale_bytes(cfg.layout) as u32,
                entry_bytes: cfg.layout.entry_bytes() as u32,
                segs: segs as u32,
                bc_per_seg: bc_per_seg as u32,
                tab_basis: bb as u32,
                tab_mulaw: 9 * bb as u32,
            };
            parts.push(Part {
                nbr,
                blocks: last - first,
                rows: prow,
                cfg: ctx.uniform("rbe part cfg", bytemuck::bytes_of(&c)),
                gemv: gemv_cfg(ctx, "rbe part gemv", prow, cols, row0, rows),
                stream: ctx.storage("rbe stream", &data),
                starts: ctx.storage("rbe starts", bytemuck::cast_slice(&starts)),
                dense: None,
            });
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; rows]);
        let mut layer = GpuLinear {
            ctx: ctx.clone(),
            mode,
            rows,
            cols,
            b,
            grid: (gr, gc),
            segs,
            has_params: cfg.params != ParamsPrecision::None,
            tables,
            bias: ctx.storage("rbe bias", bytemuck::cast_slice(&bias)),
            parts,
            stream_bytes,
            calls: Calls::new(ctx),
            name,
        };
        if mode == GpuMode::Decode {
            let dense = layer.decode_parts()?;
            for (p, d) in layer.parts.iter_mut().zip(dense) {
                p.dense = Some(d);
            }
        }
        if let Some(e) = layer.ctx.take_error() {
            return Err(GpuError::Execution { tensor: layer.name, reason: e });
        }
        Ok(layer)
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The product's mode.
    pub fn mode(&self) -> GpuMode {
        self.mode
    }
    /// `cols` of the weight matrix.
    pub fn in_features(&self) -> usize {
        self.cols
    }
    /// `rows` of the weight matrix.
    pub fn out_features(&self) -> usize {
        self.rows
    }
    /// Number of parts the tensor was split into to fit the adapter's limits.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
    /// Bytes of the block stream resident on the device (without padding and index).
    pub fn stream_bytes(&self) -> usize {
        self.stream_bytes
    }
    /// Bytes a product reads from weight memory: the stream (direct) or the dense matrix (decode).
    pub fn bytes_per_call(&self) -> usize {
        match self.mode {
            GpuMode::DctDirect => self.stream_bytes,
            GpuMode::Decode => 4 * self.rows * self.cols,
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GpuLinear>();
    assert_send_sync::<GpuContext>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shader_codes_are_distinct() {
        let l: Vec<u32> = Layout::ALL.iter().map(|&l| layout_code(l)).collect();
        let c: Vec<u32> = ValueCodec::ALL.iter().map(|&c| codec_code(c)).collect();
        assert_eq!(l, [0, 1, 2, 3]);
        assert_eq!(c, [0, 1, 2, 3, 4]);
    }
}
