//! One layer API over every backend: `Layer::new(&tensor, bias, Backend::Cpu | Backend::Gpu)`.
//! A backend whose cargo feature is off still exists and returns [`LayerError::NotCompiled`], so
//! code can name both backends whatever features it was built with.

use crate::EncodedTensor;
use std::fmt;

/// Which backend computes a [`Layer`]'s products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `rbe-cpu` (`cpu` feature), DCT-domain products (`DecodeMode::DctDirect`).
    #[default]
    Cpu,
    /// `rbe-gpu` (`gpu` feature) on the process-wide [`gpu_context`], `GpuMode::DctDirect`.
    Gpu,
}

impl Backend {
    /// Short name (`cpu`, `gpu`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
}

/// Errors of [`Layer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LayerError {
    /// The backend's cargo feature is not enabled in this build.
    NotCompiled(&'static str),
    /// From the CPU backend.
    #[cfg(feature = "cpu")]
    Cpu(rbe_cpu::CpuError),
    /// From the GPU backend (includes "no adapter", listing the adapters found).
    #[cfg(feature = "gpu")]
    Gpu(rbe_gpu::GpuError),
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::NotCompiled(b) => {
                write!(f, "backend `{b}` not compiled in (enable the `{b}` feature of `rbe`)")
            }
            #[cfg(feature = "cpu")]
            LayerError::Cpu(e) => e.fmt(f),
            #[cfg(feature = "gpu")]
            LayerError::Gpu(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LayerError::NotCompiled(_) => None,
            #[cfg(feature = "cpu")]
            LayerError::Cpu(e) => Some(e),
            #[cfg(feature = "gpu")]
            LayerError::Gpu(e) => Some(e),
        }
    }
}

#[cfg(feature = "cpu")]
impl From<rbe_cpu::CpuError> for LayerError {
    fn from(e: rbe_cpu::CpuError) -> Self {
        LayerError::Cpu(e)
    }
}

#[cfg(feature = "gpu")]
impl From<rbe_gpu::GpuError> for LayerError {
    fn from(e: rbe_gpu::GpuError) -> Self {
        LayerError::Gpu(e)
    }
}

/// The process-wide GPU context (opened on first use, `RBE_WGPU_ADAPTER` honoured).
#[cfg(feature = "gpu")]
pub fn gpu_context() -> Result<rbe_gpu::GpuContext, LayerError> {
    static CTX: std::sync::OnceLock<rbe_gpu::GpuContext> = std::sync::OnceLock::new();
    if let Some(c) = CTX.get() {
        return Ok(c.clone());
    }
    let c = rbe_gpu::GpuContext::new()?;
    Ok(CTX.get_or_init(|| c).clone())
}

#[derive(Debug)]
enum Inner {
    /// Keeps the enum inhabited-agnostic when no backend feature is on.
    #[allow(dead_code)]
    Never(std::convert::Infallible),
    #[cfg(feature = "cpu")]
    Cpu(Box<rbe_cpu::RbeLinear>),
    #[cfg(feature = "gpu")]
    Gpu(Box<rbe_gpu::GpuLinear>),
}

/// A linear layer `y = W x + bias` over a compressed matrix on the chosen backend. `Send + Sync`.
#[derive(Debug)]
pub struct Layer {
    inner: Inner,
}

impl Layer {
    /// Builds the layer on `backend` (see [`Backend`] for the mode each uses).
    pub fn new(tensor: &EncodedTensor, bias: Option<Vec<f32>>, backend: Backend) -> Result<Self, LayerError> {
        let _ = (&tensor, &bias);
        match backend {
            #[cfg(feature = "cpu")]
            Backend::Cpu => Ok(Layer {
                inner: Inner::Cpu(Box::new(rbe_cpu::RbeLinear::new(tensor, bias, rbe_cpu::DecodeMode::DctDirect)?)),
            }),
            #[cfg(feature = "gpu")]
            Backend::Gpu => Ok(Layer {
                inner: Inner::Gpu(Box::new(rbe_gpu::GpuLinear::new(
                    &gpu_context()?,
                    tensor,
                    bias,
                    rbe_gpu::GpuMode::DctDirect,
                )?)),
            }),
            #[allow(unreachable_patterns)]
            other => Err(LayerError::NotCompiled(other.name())),
        }
    }

    /// The backend computing this layer.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(_) => Backend::Cpu,
            #[cfg(feature = "gpu")]
            Inner::Gpu(_) => Backend::Gpu,
            Inner::Never(n) => match *n {},
        }
    }

    /// `cols` of the weight matrix.
    pub fn in_features(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) => l.in_features(),
            #[cfg(feature = "gpu")]
            Inner::Gpu(l) => l.in_features(),
            Inner::Never(n) => match *n {},
        }
    }

    /// `rows` of the weight matrix.
    pub fn out_features(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) => l.out_features(),
            #[cfg(feature = "gpu")]
            Inner::Gpu(l) => l.out_features(),
            Inner::Never(n) => match *n {},
        }
    }

    /// `y = W x + bias` for one input.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, LayerError> {
        self.forward_batch(x, 1)
    }

    /// Row-major batch: `x` is `batch x in_features`, the result `batch x out_features`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, LayerError> {
        let _ = (x, batch);
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) => Ok(l.forward_batch(x, batch)?),
            #[cfg(feature = "gpu")]
            Inner::Gpu(l) => Ok(l.forward_batch(x, batch)?),
            Inner::Never(n) => match *n {},
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Layer>();
};
