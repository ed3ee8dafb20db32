//! The per-tensor settings a block parser needs: block size, transform, layout, codec, params.

use crate::error::FormatError;
use std::fmt;
use std::str::FromStr;

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The normative name used in files and on the command line.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(FormatError::Settings(format!(
                        concat!("unknown ", stringify!($name), " `{}` (expected one of: {})"),
                        s, [$($text),+].join(", ")))),
                }
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.name()) }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum!(
    /// Residual transform (format.md 2.2).
    Transform { /// Orthonormal 2-D DCT-II.
        Dct = "dct", /// Orthonormal full-depth 2-D Haar wavelet.
        Dwt = "dwt" }
);
named_enum!(
    /// Sparse coefficient entry layout (format.md 3.1).
    Layout { /// u16 row, u16 col, f32 value: 8 bytes.
        Wide = "wide", /// u8 row, u8 col, u16 value: 4 bytes (the design notes' reference).
        B4 = "b4", /// One u32 `[row:6][col:6][reserved:4][value:16]`: SIMD-friendly.
        P32 = "p32", /// 24 bits `[row:6][col:6][sign:1][magnitude:9][pad:2]`.
        P24 = "p24" }
);
named_enum!(
    /// How a sparse coefficient's value field is read (format.md 3.1).
    ValueCodec { /// IEEE binary32.
        F32 = "f32", /// IEEE binary16.
        F16 = "f16", /// i16 times a per-block f32 scale.
        Q16 = "q16", /// Sign + 9-bit magnitude times a per-block f16 scale.
        Q9s = "q9s", /// 8-bit mu-law (mu = 255) times a per-block scale.
        MuLaw8 = "mulaw8" }
);
named_enum!(
    /// Storage of the 8 RBE parameters (format.md 2.1).
    ParamsPrecision { /// 8 x f32.
        F32 = "f32", /// 8 x f16.
        F16 = "f16", /// Not stored: all zero.
        None = "none" }
);
named_enum!(
    /// Storage coding of the blocks (format.md 5).
    Entropy { /// Blocks stored in the runtime layout.
        None = "none", /// Blocks rANS-coded; loading restores the runtime layout.
        Rans = "rans" }
);

named_enum!(
    /// The dtype a compressed tensor had before encoding (format.md 6); decoding restores it by
    /// default.
    SourceDtype { /// IEEE binary32.
        F32 = "F32", /// IEEE binary16.
        F16 = "F16", /// bfloat16.
        BF16 = "BF16" }
);

impl SourceDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            SourceDtype::F32 => 4,
            SourceDtype::F16 | SourceDtype::BF16 => 2,
        }
    }
}

impl Layout {
    /// Bytes of one sparse entry.
    pub fn entry_bytes(self) -> usize {
        match self {
            Layout::Wide => 8,
            Layout::B4 | Layout::P32 => 4,
            Layout::P24 => 3,
        }
    }
    /// Whether `codec` may pair with this layout.
    pub fn accepts(self, codec: ValueCodec) -> bool {
        use ValueCodec::*;
        match self {
            Layout::Wide => codec == F32,
            Layout::B4 | Layout::P32 => matches!(codec, F16 | Q16 | MuLaw8),
            Layout::P24 => matches!(codec, Q9s | MuLaw8),
        }
    }
    /// Largest block size whose coordinates this layout can hold.
    pub fn max_block(self) -> usize {
        match self {
            Layout::Wide | Layout::B4 => 64,
            Layout::P32 | Layout::P24 => 64,
        }
    }
}

impl ValueCodec {
    /// Bytes of the per-block scale stored before the entries (0, 2 or 4).
    pub fn scale_bytes(self, layout: Layout) -> usize {
        match self {
            ValueCodec::F32 | ValueCodec::F16 => 0,
            ValueCodec::Q9s => 2,
            ValueCodec::MuLaw8 if layout == Layout::P24 => 2,
            ValueCodec::Q16 | ValueCodec::MuLaw8 => 4,
        }
    }
}

impl ParamsPrecision {
    /// Bytes of the parameters at the head of every block.
    pub fn bytes(self) -> usize {
        match self {
            ParamsPrecision::F32 => 32,
            ParamsPrecision::F16 => 16,
            ParamsPrecision::None => 0,
        }
    }
}

/// Block sizes the format allows.
pub const BLOCK_SIZES: [usize; 4] = [8, 16, 32, 64];

/// Everything needed to read or write one block of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockConfig {
    /// Block edge `b`.
    pub block: usize,
    /// Residual transform.
    pub transform: Transform,
    /// Sparse entry layout.
    pub layout: Layout,
    /// Sparse value codec.
    pub values: ValueCodec,
    /// Parameter storage.
    pub params: ParamsPrecision,
}

impl BlockConfig {
    /// Checks the combination against format.md (block size, layout/codec pair).
    pub fn validate(&self) -> Result<(), FormatError> {
        if !BLOCK_SIZES.contains(&self.block) {
            return Err(FormatError::Settings(format!("block size {} not in {{8, 16, 32, 64}}", self.block)));
        }
        if !self.layout.accepts(self.values) {
            return Err(FormatError::Settings(format!(
                "layout `{}` cannot carry `{}` values (see docs/format.md 3.1)",
                self.layout, self.values
            )));
        }
        Ok(())
    }
    /// Number of coefficients in a block, `b * b`.
    pub fn block_area(&self) -> usize {
        self.block * self.block
    }
    /// The head value that tags a dense residual.
    pub fn dense_head(&self) -> u64 {
        self.block_area() as u64 + 1
    }
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            block: 64,
            transform: Transform::Dct,
            layout: Layout::P32,
            values: ValueCodec::Q16,
            params: ParamsPrecision::F16,
        }
    }
}
