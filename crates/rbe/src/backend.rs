//! The backends and modes behind [`crate::Layer`]: `Backend::Cpu | Backend::Gpu`, and the [`Mode`]s
//! each offers. A backend whose cargo feature is off still exists and returns
//! [`LayerError::NotCompiled`], so code can name both backends whatever features it was built with.

use std::fmt;

/// Which backend computes a [`crate::Layer`]'s products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `rbe-cpu` (`cpu` feature), DCT-domain products (`DecodeMode::DctDirect`).
    #[default]
    Cpu,
    /// `rbe-gpu` (`gpu` feature) on the process-wide `gpu_context`, `GpuMode::DctDirect`.
    Gpu,
}

impl Backend {
    /// Both backends, CPU first.
    pub const ALL: [Backend; 2] = [Backend::Cpu, Backend::Gpu];

    /// Short name (`cpu`, `gpu`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }

    /// The modes this backend offers, in a fixed order (the conformance suite's).
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Backend::Cpu => &[
                Mode::Decode,
                Mode::DctDirect,
                Mode::DctDirectQ8,
                Mode::SparseMask,
                Mode::ProgressiveCoarse,
                Mode::ProgressiveFull,
            ],
            Backend::Gpu => &[Mode::Decode, Mode::DctDirect],
        }
    }

    /// Whether the backend can run here, and on what: the CPU's instruction set, the GPU adapter's
    /// name; an error when its feature is off or (GPU) no adapter is found.
    pub fn probe(self) -> Result<String, LayerError> {
        match self {
            #[cfg(feature = "cpu")]
            Backend::Cpu => Ok(rbe_cpu::Isa::detected().name().to_owned()),
            #[cfg(feature = "gpu")]
            Backend::Gpu => Ok(gpu_context()?.adapter_name()),
            #[allow(unreachable_patterns)]
            other => Err(LayerError::NotCompiled(other.name())),
        }
    }
}

/// How a [`crate::Layer`] computes `W x`. Every mode but the two lossy ones is exact up to f32
/// rounding; [`Backend::modes`] lists what each backend offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Decode blocks to dense f32 and multiply (CPU: `DecodeMode::Full`, an LRU cache of decoded
    /// blocks; GPU: `GpuMode::Decode`, the whole matrix decoded on the device).
    Decode,
    /// The transform-domain product straight from the coefficients (CPU and GPU).
    #[default]
    DctDirect,
    /// CPU: the transform-domain product with int8 activations (lossy, measured error).
    DctDirectQ8,
    /// CPU: sparse blocks through their coefficient mask.
    SparseMask,
    /// CPU: base plus the largest coefficients only (lossy, error bounded by
    /// `Layer::coarse_error_bound`).
    ProgressiveCoarse,
    /// CPU: progressive order, every coefficient (exact).
    ProgressiveFull,
}

impl Mode {
    /// Whether the mode's error is only f32 rounding.
    pub fn is_exact(self) -> bool {
        !matches!(self, Mode::DctDirectQ8 | Mode::ProgressiveCoarse)
    }

    /// The CPU backend's mode.
    #[cfg(feature = "cpu")]
    pub fn cpu(self) -> rbe_cpu::DecodeMode {
        use rbe_cpu::{DecodeMode, Precision};
        match self {
            Mode::Decode => DecodeMode::Full,
            Mode::DctDirect => DecodeMode::DctDirect,
            Mode::DctDirectQ8 => DecodeMode::DctDirectQ8,
            Mode::SparseMask => DecodeMode::SparseMask,
            Mode::ProgressiveCoarse => DecodeMode::Progressive(Precision::Coarse),
            Mode::ProgressiveFull => DecodeMode::Progressive(Precision::Full),
        }
    }

    /// The GPU backend's mode, if it has this one.
    #[cfg(feature = "gpu")]
    pub fn gpu(self) -> Option<rbe_gpu::GpuMode> {
        match self {
            Mode::Decode => Some(rbe_gpu::GpuMode::Decode),
            Mode::DctDirect => Some(rbe_gpu::GpuMode::DctDirect),
            _ => None,
        }
    }
}

/// Errors of [`crate::Layer`].
#[derive(Debug)]
#[non_exhaustive]
pub enum LayerError {
    /// The backend's cargo feature is not enabled in this build.
    NotCompiled(&'static str),
    /// The backend does not offer this mode (see [`Backend::modes`]).
    Unsupported {
        /// The backend.
        backend: Backend,
        /// The mode asked for.
        mode: Mode,
    },
    /// The output buffer of `forward_batch_into` has the wrong length.
    OutputLength {
        /// `batch * out_features`.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
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
            LayerError::Unsupported { backend, mode } => {
                write!(f, "backend `{}` has no mode {mode:?}", backend.name())
            }
            LayerError::OutputLength { expected, got } => {
                write!(f, "output buffer holds {got} values, the product has {expected}")
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
            LayerError::NotCompiled(_) | LayerError::Unsupported { .. } | LayerError::OutputLength { .. } => None,
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
