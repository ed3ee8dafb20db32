//! One layer API over every backend: `Layer::new(&tensor, bias, Backend::Cpu | Backend::Gpu)`, or
//! [`Layer::with_mode`] for a chosen [`Mode`]. The same calls drive the CPU and the GPU, so tools
//! (`rbe demo`, `rbe bench`, `cargo xtask conformance`) and users test both through one surface.

use crate::EncodedTensor;
use crate::backend::{Backend, LayerError, Mode};

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
    mode: Mode,
}

/// Dispatches `$body` on the inner layer `$l` of every compiled backend.
macro_rules! each {
    ($self:expr, $l:ident => $body:expr) => {
        match &$self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu($l) => $body,
            #[cfg(feature = "gpu")]
            Inner::Gpu($l) => $body,
            Inner::Never(n) => match *n {},
        }
    };
}

impl Layer {
    /// Builds the layer on `backend` in [`Mode::DctDirect`], the exact transform-domain product.
    pub fn new(tensor: &EncodedTensor, bias: Option<Vec<f32>>, backend: Backend) -> Result<Self, LayerError> {
        Self::with_mode(tensor, bias, backend, Mode::DctDirect)
    }

    /// Builds the layer on `backend` in `mode`; [`LayerError::Unsupported`] when the backend does
    /// not offer it. The GPU backend runs on the process-wide context (`rbe::gpu_context`).
    pub fn with_mode(
        tensor: &EncodedTensor,
        bias: Option<Vec<f32>>,
        backend: Backend,
        mode: Mode,
    ) -> Result<Self, LayerError> {
        let _ = (&tensor, &bias);
        if !backend.modes().contains(&mode) {
            return Err(LayerError::Unsupported { backend, mode });
        }
        match backend {
            #[cfg(feature = "cpu")]
            Backend::Cpu => {
                let inner = Inner::Cpu(Box::new(rbe_cpu::RbeLinear::new(tensor, bias, mode.cpu())?));
                Ok(Layer { inner, mode })
            }
            #[cfg(feature = "gpu")]
            Backend::Gpu => {
                let gpu_mode = mode.gpu().ok_or(LayerError::Unsupported { backend, mode })?;
                let linear = rbe_gpu::GpuLinear::new(&crate::gpu_context()?, tensor, bias, gpu_mode)?;
                Ok(Layer { inner: Inner::Gpu(Box::new(linear)), mode })
            }
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

    /// The mode of the product.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The backend's own name of the mode (`full`, `dct_direct`, ... on the CPU; `decode`,
    /// `dct_direct` on the GPU).
    pub fn mode_name(&self) -> &'static str {
        each!(self, l => l.mode().name())
    }

    /// `cols` of the weight matrix.
    pub fn in_features(&self) -> usize {
        each!(self, l => l.in_features())
    }

    /// `rows` of the weight matrix.
    pub fn out_features(&self) -> usize {
        each!(self, l => l.out_features())
    }

    /// Weight bytes one product reads.
    pub fn bytes_per_call(&self) -> usize {
        each!(self, l => l.bytes_per_call())
    }

    /// Bytes the layer keeps resident (compressed weight, descriptors, bias; on the GPU the
    /// uploaded stream).
    pub fn resident_bytes(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) => l.resident_bytes(),
            #[cfg(feature = "gpu")]
            Inner::Gpu(l) => l.stream_bytes(),
            Inner::Never(n) => match *n {},
        }
    }

    /// For [`Mode::ProgressiveCoarse`] on the CPU: `E` with `||y_coarse - y_full||_2 <= E ||x||_2`;
    /// 0 for every exact mode.
    pub fn coarse_error_bound(&self) -> f64 {
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) if self.mode == Mode::ProgressiveCoarse => l.coarse_error_bound(),
            _ => 0.0,
        }
    }

    /// The CPU layer underneath, when this layer runs on the CPU (cache and statistics control).
    #[cfg(feature = "cpu")]
    pub fn as_cpu(&self) -> Option<&rbe_cpu::RbeLinear> {
        match &self.inner {
            Inner::Cpu(l) => Some(l),
            _ => None,
        }
    }

    /// The GPU layer underneath, when this layer runs on the GPU.
    #[cfg(feature = "gpu")]
    pub fn as_gpu(&self) -> Option<&rbe_gpu::GpuLinear> {
        match &self.inner {
            Inner::Gpu(l) => Some(l),
            _ => None,
        }
    }

    /// `y = W x + bias` for one input.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, LayerError> {
        self.forward_batch(x, 1)
    }

    /// Row-major batch: `x` is `batch x in_features`, the result `batch x out_features`.
    pub fn forward_batch(&self, x: &[f32], batch: usize) -> Result<Vec<f32>, LayerError> {
        let _ = (x, batch);
        each!(self, l => Ok(l.forward_batch(x, batch)?))
    }

    /// [`Layer::forward_batch`] into a caller-owned `y` (`batch x out_features`); on the CPU no
    /// allocation happens per call.
    pub fn forward_batch_into(&self, x: &[f32], batch: usize, y: &mut [f32]) -> Result<(), LayerError> {
        let _ = (x, batch, &y);
        match &self.inner {
            #[cfg(feature = "cpu")]
            Inner::Cpu(l) => Ok(l.forward_batch_into(x, batch, y)?),
            #[cfg(feature = "gpu")]
            Inner::Gpu(l) => {
                let out = l.forward_batch(x, batch)?;
                if out.len() != y.len() {
                    return Err(LayerError::OutputLength { expected: out.len(), got: y.len() });
                }
                y.copy_from_slice(&out);
                Ok(())
            }
            Inner::Never(n) => match *n {},
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Layer>();
};
