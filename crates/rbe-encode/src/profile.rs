//! Named profiles: an error target plus the decode-cache size the design notes give.

use crate::error::EncodeError;
use std::str::FromStr;

/// A named quality profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Relative RMSE 0.005, cache 32 blocks.
    Ultra,
    /// Relative RMSE 0.02, cache 24 blocks.
    High,
    /// Relative RMSE 0.05, cache 16 blocks.
    Balanced,
    /// Relative RMSE 0.10, cache 8 blocks.
    Fast,
}

impl Profile {
    /// All profiles, best quality first.
    pub const ALL: [Profile; 4] = [Profile::Ultra, Profile::High, Profile::Balanced, Profile::Fast];
    /// Name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Ultra => "ultra",
            Profile::High => "high",
            Profile::Balanced => "balanced",
            Profile::Fast => "fast",
        }
    }
    /// Target relative RMSE (rmse / std of the tensor).
    pub fn rel_rmse(self) -> f64 {
        match self {
            Profile::Ultra => 0.005,
            Profile::High => 0.02,
            Profile::Balanced => 0.05,
            Profile::Fast => 0.10,
        }
    }
    /// Decode-cache size in blocks (design notes, point 4).
    pub fn cache_blocks(self) -> usize {
        match self {
            Profile::Ultra => 32,
            Profile::High => 24,
            Profile::Balanced => 16,
            Profile::Fast => 8,
        }
    }
}

impl FromStr for Profile {
    type Err = EncodeError;
    fn from_str(s: &str) -> Result<Self, EncodeError> {
        Profile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            EncodeError::Settings(format!("unknown profile `{s}` (expected ultra, high, balanced or fast)"))
        })
    }
}
