//! What the user asks of the encoder: the error target and the format knobs; [`SettingsBuilder`]
//! fills the defaults a user leaves out (profile `balanced`, the value codec that suits a layout
//! and the reverse) and [`EncodeSettings::validate`] rejects what cannot be encoded, so an invalid
//! combination never reaches the encoder.

use crate::profile::Profile;
use rbe_format::{BlockConfig, Entropy, FormatError, Layout, ParamsPrecision, Transform, ValueCodec};

/// How much error the encoder may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// RMSE relative to the tensor's standard deviation.
    RelRmse(f64),
    /// Absolute RMSE.
    Rmse(f64),
    /// Fixed top-K coefficients per block (the design notes' mode); error is whatever results.
    TopK(usize),
    /// Bits per weight over every compressed tensor, counted from the bytes on disk as
    /// `rbe inspect` counts them; the encoder allocates one quantisation step per tensor (by
    /// measured sensitivity when calibrated, else equal relative error) to come in at or below it.
    BitsPerWeight(f64),
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

/// Settings rejected before any tensor is encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// An RMSE target that is negative, NaN or infinite.
    #[error("the error target must be a finite number >= 0, got {0}")]
    BadTarget(f64),
    /// An RMSE target of exactly 0 asked for through the builder (lossless is out of reach).
    #[error("impossible target: an error of 0 needs lossless coding; RBE's residuals are quantised")]
    ZeroTarget,
    /// A relative target so loose that replacing every weight by the tensor's mean meets it.
    #[error(
        "a relative RMSE of {0} would let the encoder replace every weight by its tensor's mean \
         (that error is 1.0); choose a target below 1 (the profiles use 0.005 to 0.10)"
    )]
    TargetZeroes(f64),
    /// A bits-per-weight target that is not a number in `(0, 32]`.
    #[error("--target-bpw {0} is not a number of bits per weight in (0, 64]")]
    BadBitsPerWeight(f64),
    /// Top-K with more coefficients than a block holds, or none.
    #[error("--k {k} is outside 1..={max}: a {block}x{block} block holds {max} coefficients")]
    BadK {
        /// Coefficients asked for.
        k: usize,
        /// The block edge.
        block: usize,
        /// Coefficients a block holds.
        max: usize,
    },
    /// A block size, or a layout and value codec, that the format does not allow.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// The value codec used with `layout` when none is asked for.
pub fn default_values(layout: Layout) -> ValueCodec {
    match layout {
        Layout::Wide => ValueCodec::F32,
        Layout::B4 | Layout::P32 => ValueCodec::Q16,
        Layout::P24 => ValueCodec::Q9s,
    }
}

/// The layout used with `values` when none is asked for.
pub fn default_layout(values: ValueCodec) -> Layout {
    match values {
        ValueCodec::F32 => Layout::Wide,
        ValueCodec::Q9s => Layout::P24,
        _ => Layout::P32,
    }
}

impl EncodeSettings {
    /// A builder starting from nothing chosen (every default applies).
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Rejects settings that cannot be encoded: a non-finite or negative RMSE target, a block size
    /// outside {8, 16, 32, 64}, a layout that cannot carry the value codec. (A target of exactly 0
    /// is decided per tensor: only a constant tensor meets it.)
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Target::RelRmse(x) | Target::Rmse(x) = self.target
            && !(x.is_finite() && x >= 0.0)
        {
            return Err(SettingsError::BadTarget(x));
        }
        if let Target::RelRmse(x) = self.target
            && x >= 1.0
        {
            return Err(SettingsError::TargetZeroes(x));
        }
        if let Target::BitsPerWeight(b) = self.target
            && !(b.is_finite() && b > 0.0 && b <= 64.0)
        {
            return Err(SettingsError::BadBitsPerWeight(b));
        }
        if let Target::TopK(k) = self.target
            && (k == 0 || k > self.block * self.block)
        {
            return Err(SettingsError::BadK { k, block: self.block, max: self.block * self.block });
        }
        BlockConfig {
            block: self.block,
            transform: self.transform,
            layout: self.layout,
            values: self.values,
            params: ParamsPrecision::None,
        }
        .validate()?;
        Ok(())
    }
}

/// Resolves what a user asked for into validated [`EncodeSettings`]: unset knobs take their
/// defaults (profile `balanced`; block 64, DCT, `auto` parameters and residuals, rANS; layout
/// `p32` with `q16` values, or the partner of whichever of the two is given).
#[derive(Debug, Clone, Default)]
pub struct SettingsBuilder {
    target: Option<Target>,
    profile: Option<Profile>,
    block: Option<usize>,
    transform: Option<Transform>,
    layout: Option<Layout>,
    values: Option<ValueCodec>,
    params: Option<ParamsChoice>,
    entropy: Option<Entropy>,
    residual: Option<ResidualChoice>,
}

/// One builder setter per knob: `knob(value)` sets `Some(value)`, leaving the others alone.
macro_rules! setters {
    ($($(#[$doc:meta])* $knob:ident: $ty:ty,)*) => {
        $(
            $(#[$doc])*
            pub fn $knob(mut self, $knob: $ty) -> Self {
                self.$knob = Some($knob);
                self
            }
        )*
    };
}

impl SettingsBuilder {
    /// A named profile: its target, recorded in the file (replaces an earlier [`Self::target`]).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = Some(profile);
        self.target = None;
        self
    }
    /// An explicit error target, no profile (replaces an earlier [`Self::profile`]).
    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self.profile = None;
        self
    }
    setters! {
        /// Block edge (8, 16, 32 or 64).
        block: usize,
        /// Residual transform.
        transform: Transform,
        /// Sparse entry layout.
        layout: Layout,
        /// Sparse value codec.
        values: ValueCodec,
        /// Parameter storage.
        params: ParamsChoice,
        /// Storage coding.
        entropy: Entropy,
        /// Residual kinds allowed.
        residual: ResidualChoice,
    }

    /// The resolved settings, validated ([`EncodeSettings::validate`]); an RMSE target of 0 is
    /// rejected here too ([`SettingsError::ZeroTarget`]).
    pub fn build(self) -> Result<EncodeSettings, SettingsError> {
        let d = EncodeSettings::default();
        let (target, profile) = match (self.target, self.profile) {
            (Some(t), _) => (t, None),
            (None, p) => {
                let p = p.unwrap_or(Profile::Balanced);
                (Target::RelRmse(p.rel_rmse()), Some(p))
            }
        };
        let (layout, values) = match (self.layout, self.values) {
            (Some(l), Some(v)) => (l, v),
            (Some(l), None) => (l, default_values(l)),
            (None, Some(v)) => (default_layout(v), v),
            (None, None) => (d.layout, d.values),
        };
        let settings = EncodeSettings {
            target,
            profile,
            block: self.block.unwrap_or(d.block),
            transform: self.transform.unwrap_or(d.transform),
            layout,
            values,
            params: self.params.unwrap_or(d.params),
            entropy: self.entropy.unwrap_or(d.entropy),
            residual: self.residual.unwrap_or(d.residual),
        };
        settings.validate()?;
        if let Target::RelRmse(x) | Target::Rmse(x) = target
            && x == 0.0
        {
            return Err(SettingsError::ZeroTarget);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_fills_defaults_and_partners() {
        let s = EncodeSettings::builder().build().unwrap();
        assert_eq!(
            (s.target, s.profile, s.layout, s.values),
            (Target::RelRmse(0.05), Some(Profile::Balanced), Layout::P32, ValueCodec::Q16)
        );
        let s = EncodeSettings::builder().layout(Layout::P24).build().unwrap();
        assert_eq!(s.values, ValueCodec::Q9s);
        let s = EncodeSettings::builder().values(ValueCodec::F32).build().unwrap();
        assert_eq!(s.layout, Layout::Wide);
        let s = EncodeSettings::builder().profile(Profile::Fast).target(Target::TopK(100)).build().unwrap();
        assert_eq!((s.target, s.profile), (Target::TopK(100), None));
    }

    #[test]
    fn invalid_combinations_are_rejected() {
        let b = EncodeSettings::builder;
        assert!(matches!(b().block(12).build(), Err(SettingsError::Format(_))));
        assert!(matches!(b().layout(Layout::P24).values(ValueCodec::F32).build(), Err(SettingsError::Format(_))));
        assert!(matches!(b().target(Target::RelRmse(f64::NAN)).build(), Err(SettingsError::BadTarget(_))));
        assert!(matches!(b().target(Target::Rmse(-1.0)).build(), Err(SettingsError::BadTarget(_))));
        assert!(matches!(b().target(Target::Rmse(0.0)).build(), Err(SettingsError::ZeroTarget)));
        let manual = EncodeSettings { block: 7, ..EncodeSettings::default() };
        assert!(manual.validate().is_err());
    }
}
