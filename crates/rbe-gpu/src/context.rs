//! `GpuContext`: the adapter, device and queue, the compute pipelines (created once), and the
//! per-block-size constant tables (transform matrix, basis planes, mu-law table) shared by layers.

use crate::error::GpuError;
use rbe_format::Transform;
use rbe_format::codec::{BasisTable, N_PARAMS};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Environment variable: a case-insensitive substring of the adapter name to use.
pub const ADAPTER_ENV: &str = "RBE_WGPU_ADAPTER";

/// The compute pipelines, compiled once per context.
#[derive(Debug)]
pub(crate) struct Pipelines {
    pub unpack: wgpu::ComputePipeline,
    pub inverse_rows: wgpu::ComputePipeline,
    pub finish: wgpu::ComputePipeline,
    pub input_transform: wgpu::ComputePipeline,
    pub accumulate: wgpu::ComputePipeline,
    pub finalize: wgpu::ComputePipeline,
    pub gemv: wgpu::ComputePipeline,
}

const STREAM_WGSL: &str = include_str!("stream.wgsl");
const DECODE_WGSL: &str = include_str!("decode.wgsl");
const DIRECT_WGSL: &str = include_str!("direct.wgsl");
const GEMV_WGSL: &str = include_str!("gemv.wgsl");

#[derive(Debug)]
struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pipes: Pipelines,
    tables: Mutex<HashMap<(usize, Transform), Arc<wgpu::Buffer>>>,
    /// Errors wgpu reports outside an error scope (kept instead of panicking).
    uncaptured: Arc<Mutex<Option<String>>>,
}

/// A GPU device ready to run RBE kernels. Cheap to clone (shared); `Send + Sync`.
#[derive(Debug, Clone)]
pub struct GpuContext {
    inner: Arc<Inner>,
}

/// The full text of a wgpu error (its `Display` is only the kind).
pub(crate) fn error_text(e: &wgpu::Error) -> String {
    match e {
        wgpu::Error::Validation { description, .. } => description.clone(),
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        }
    }
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

impl GpuContext {
    /// Opens the adapter named by `RBE_WGPU_ADAPTER` (substring), or else the best one found
    /// (discrete, integrated, virtual, other, then software).
    pub fn new() -> Result<Self, GpuError> {
        let wanted = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.trim().is_empty());
        Self::with_adapter(wanted.as_deref())
    }

    /// Opens the first adapter whose name contains `name` (case-insensitive), or the best one
    /// when `name` is `None`. Fails with [`GpuError::NoAdapter`] listing every adapter found.
    pub fn with_adapter(name: Option<&str>) -> Result<Self, GpuError> {
        let instance = instance();
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let available: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let pick = match name {
            Some(n) => {
                let n = n.to_lowercase();
                adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&n))
            }
            None => adapters.into_iter().next(),
        };
        let adapter = pick.ok_or_else(|| GpuError::NoAdapter { wanted: name.map(str::to_owned), available })?;
        let info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("rbe-gpu"),
            required_features: wgpu::Features::empty(),
            // Take everything the adapter offers: larger buffers mean fewer tensor parts.
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::Device { adapter: describe(&info), reason: e.to_string() })?;
        Self::build(device, queue, info)
    }

    /// Wraps a device and queue the caller opened (tests, embedding in an application that owns
    /// the device). The device's limits decide how tensors are split.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self, GpuError> {
        let info = device.adapter_info();
        Self::build(device, queue, info)
    }

    /// Every adapter wgpu finds, as `name (backend, type)`.
    pub fn adapters() -> Vec<String> {
        let instance = instance();
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(|a| describe(&a.get_info()))
            .collect()
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Result<Self, GpuError> {
        let uncaptured = Arc::new(Mutex::new(None));
        let slot = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
            g.get_or_insert_with(|| error_text(&e));
        }));
        let limits = device.limits();
        let pipes = Pipelines::new(&device)?;
        Ok(GpuContext {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                pipes,
                tables: Mutex::new(HashMap::new()),
                uncaptured,
            }),
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    /// `name (backend, type)` of the adapter.
    pub fn adapter_name(&self) -> String {
        describe(&self.inner.info)
    }
    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    pub(crate) fn pipes(&self) -> &Pipelines {
        &self.inner.pipes
    }

    /// Largest buffer one binding may see, in bytes.
    pub(crate) fn max_binding(&self) -> u64 {
        self.inner.limits.max_storage_buffer_binding_size.min(self.inner.limits.max_buffer_size)
    }

    /// Takes the first error wgpu reported outside an error scope since the last call.
    pub(crate) fn take_error(&self) -> Option<String> {
        self.inner.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// `[M (b*b)] [phi_1..phi_8 (8*b*b)] [mu-law (128)]` for one block size and transform, uploaded
    /// once per context.
    pub(crate) fn tables(&self, block: usize, kind: Transform) -> Arc<wgpu::Buffer> {
        let mut map = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((block, kind))
            .or_insert_with(|| {
                let mut t: Vec<f32> =
                    rbe_format::codec::transform_matrix(block, kind).iter().map(|&v| v as f32).collect();
                let basis = BasisTable::shared(block);
                for k in 0..N_PARAMS {
                    t.extend(basis.plane(k).iter().map(|&v| v as f32));
                }
                t.extend_from_slice(rbe_format::codec::mulaw_table());
                Arc::new(self.storage("rbe tables", bytemuck::cast_slice(&t)))
            })
            .clone()
    }

    /// A read-only storage buffer holding `data` (at least 16 bytes, zero padded).
    pub(crate) fn storage(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let mut padded;
        let bytes = if data.len() < 16 || !data.len().is_multiple_of(4) {
            padded = data.to_vec();
            padded.resize(data.len().max(16).next_multiple_of(4), 0);
            &padded[..]
        } else {
            data
        };
        self.inner.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A zeroed buffer of `bytes` (at least 16) with the given usages.
    pub(crate) fn buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(4),
            usage,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `data`.
    pub(crate) fn uniform(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        self.inner.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A bind group for group 0 of `pipe` (auto layout) from `(binding, buffer)` pairs.
    pub(crate) fn bind(&self, pipe: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        let layout = pipe.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = entries
            .iter()
            .map(|(binding, buf)| wgpu::BindGroupEntry { binding: *binding, resource: buf.as_entire_binding() })
            .collect();
        self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }

    /// Copies `bytes` of `src` to the host as f32 values, waiting for all queued work.
    pub(crate) fn read_f32(
        &self,
        tensor: &str,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<f32>, GpuError> {
        let staging = self.buffer("rbe staging", bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut enc = self.inner.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
        self.inner.queue.submit([enc.finish()]);
        self.map_read(tensor, &staging, bytes)
    }

    /// Maps `staging` (MAP_READ) after the queued work and returns its first `bytes` as f32.
    pub(crate) fn map_read(&self, tensor: &str, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, GpuError> {
        let fail = |reason: String| GpuError::Execution { tensor: tensor.to_owned(), reason };
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.inner.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| fail(e.to_string()))?;
        rx.recv().map_err(|e| fail(e.to_string()))?.map_err(|e| fail(e.to_string()))?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| fail(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        if let Some(e) = self.take_error() {
            return Err(fail(e));
        }
        Ok(out)
    }
}

fn module(device: &wgpu::Device, label: &'static str, parts: &[&str]) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(Cow::Owned(parts.concat())),
    })
}

fn pipeline(device: &wgpu::Device, module: &wgpu::ShaderModule, entry: &'static str) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Pipelines {
    fn new(device: &wgpu::Device) -> Result<Self, GpuError> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let decode = module(device, "rbe decode", &[STREAM_WGSL, DECODE_WGSL]);
        let direct = module(device, "rbe direct", &[STREAM_WGSL, DIRECT_WGSL]);
        let gemv = module(device, "rbe gemv", &[GEMV_WGSL]);
        let pipes = Pipelines {
            unpack: pipeline(device, &decode, "unpack"),
            inverse_rows: pipeline(device, &decode, "inverse_rows"),
            finish: pipeline(device, &decode, "finish"),
            input_transform: pipeline(device, &direct, "input_transform"),
            accumulate: pipeline(device, &direct, "accumulate"),
            finalize: pipeline(device, &direct, "finalize"),
            gemv: pipeline(device, &gemv, "gemv"),
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline { pipeline: "rbe kernels", reason: error_text(&e) });
        }
        Ok(pipes)
    }
}
