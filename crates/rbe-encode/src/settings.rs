//! What the user asks of the encoder: the error target and the format knobs.

use crate::profile::Profile;
use rbe_format::{Entropy, Layout, ParamsPrecision, Transform, ValueCodec};

/// How much error the encoder may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// RMSE relative to the tensor's standard deviation.
    RelRmse(f64),
    /// Absolute RMSE.
    Rmse(f64),
    /// Fixed top-K coefficients per block (the design notes' mode); error is whatever results.
    TopK(usize),
}

/// Parameter storage: fixed, or chosen per tensor by the expected saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsChoice {
    /// Per tensor: `f16` where the base saves more bits than it costs, else `none`
    /// (`f32` in top-K mode, the notes' layout).
    Auto,
    /// Always this precision.
    Fixed(ParamsPrecision),
}

/// Which residual kinds the encoder may use per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResidualChoice {
    /// Per block, whichever meets the target in fewer bytes.
    #[default]
    Auto,
    /// Sparse (top-K) blocks only.
    Sparse,
    /// Dense blocks only.
    Dense,
}

/// Encoder settings for one run.
#[derive(Debug, Clone)]
pub struct EncodeSettings {
    /// Error target.
    pub target: Target,
    /// Profile the target came from, if any (recorded in the file).
    pub profile: Option<Profile>,
    /// Block edge.
    pub block: usize,
    /// Residual transform.
    pub transform: Transform,
    /// Sparse entry layout.
    pub layout: Layout,
    /// Sparse value codec.
    pub values: ValueCodec,
    /// Parameter storage.
    pub params: ParamsChoice,
    /// Storage coding.
    pub entropy: Entropy,
    /// Residual kinds allowed.
    pub residual: ResidualChoice,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            target: Target::RelRmse(Profile::Balanced.rel_rmse()),
            profile: Some(Profile::Balanced),
            block: 64,
            transform: Transform::Dct,
            layout: Layout::P32,
            values: ValueCodec::Q16,
            params: ParamsChoice::Auto,
            entropy: Entropy::Rans,
            residual: ResidualChoice::Auto,
        }
    }
}

impl EncodeSettings {
    /// Decode-cache size recorded in the file: the profile's, or the one whose target is closest.
    pub fn cache_blocks(&self) -> usize {
        if let Some(p) = self.profile {
            return p.cache_blocks();
        }
        match self.target {
            Target::RelRmse(r) => Profile::ALL
                .into_iter()
                .min_by(|a, b| (a.rel_rmse().ln() - r.ln()).abs().total_cmp(&(b.rel_rmse().ln() - r.ln()).abs()))
                .map_or(16, Profile::cache_blocks),
            _ => Profile::Balanced.cache_blocks(),
        }
    }
}
