//! Static (two-pass) entropy coding for the weight-compression format.
//!
//! The coder is byte-wise rANS with a 32-bit state and 14-bit probabilities:
//!
//! * [`table`] turns symbol histograms into quantised frequency tables
//!   ([`table::FreqTable`]) and (de)serialises them compactly.
//! * [`rans`] holds the encoder ([`rans::RansEncoder`], which buffers operations in
//!   forward order and emits the reversed rANS stream at `finish`) and the
//!   streaming decoder ([`rans::RansDecoder`]), which also carries raw uniform bits.
//! * [`token`] maps large unsigned integers onto a small token alphabet plus
//!   raw bits ([`token::UintTokenizer`], JPEG XL "hybrid uint" style).
//!
//! Everything is deterministic and decoding never panics on corrupt input:
//! decoders report an [`EntropyError`] instead.

pub mod rans;
pub mod table;
pub mod token;

use std::fmt;

/// Errors reported while decoding entropy-coded data or frequency tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntropyError {
    /// The input ended before the decoder had read everything it needed.
    Truncated,
    /// The coded stream is inconsistent (bad state, leftover bytes, invalid token...).
    Corrupt(&'static str),
    /// A serialised frequency table is malformed.
    TableInvalid(&'static str),
}

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntropyError::Truncated => f.write_str("entropy-coded stream is truncated"),
            EntropyError::Corrupt(why) => write!(f, "entropy-coded stream is corrupt: {why}"),
            EntropyError::TableInvalid(why) => write!(f, "invalid frequency table: {why}"),
        }
    }
}

impl std::error::Error for EntropyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        assert_eq!(EntropyError::Truncated.to_string(), "entropy-coded stream is truncated");
        assert_eq!(EntropyError::Corrupt("x").to_string(), "entropy-coded stream is corrupt: x");
        assert_eq!(EntropyError::TableInvalid("y").to_string(), "invalid frequency table: y");
        let boxed: Box<dyn std::error::Error> = Box::new(EntropyError::Truncated);
        assert!(!boxed.to_string().is_empty());
    }
}
