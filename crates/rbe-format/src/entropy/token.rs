//! Hybrid-uint tokenisation of unsigned integers (JPEG XL `HybridUintConfig` style).
//!
//! Large integer alphabets are split into a small entropy-coded token
//! (`u8`) plus raw bits. With `direct = 1 << direct_log2` and `msb_bits`
//! mantissa bits kept in the token:
//!
//! * `v < direct`: token `v`, no raw bits;
//! * otherwise, with `n = floor(log2 v)` (`n >= direct_log2`):
//!   `token = direct + ((n - direct_log2) << msb_bits) + ((v >> (n - msb_bits)) & (2^msb_bits - 1))`,
//!   and the low `n - msb_bits` bits of `v` are sent raw.
//!
//! Every `u32` value is representable; configurations whose largest token
//! (for `u32::MAX`) would exceed 255 are rejected by [`UintTokenizer::new`].

#[cfg(test)]
use super::{
    EntropyError,
    rans::{RansDecoder, RansEncoder},
    table::FreqTable,
};

/// Splits `u32` values into a `u8` token plus raw bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UintTokenizer {
    /// Values below `direct` (a power of two) are their own token.
    direct: u32,
    /// `log2(direct)`.
    direct_log2: u32,
    /// Mantissa bits (after the leading one) kept in the token.
    msb_bits: u32,
}

impl UintTokenizer {
    /// Creates a tokenizer where values `< 1 << direct_log2` are tokens
    /// themselves and larger values keep `msb_bits` mantissa bits in the token.
    ///
    /// # Panics
    ///
    /// Panics (at compile time in const contexts) unless `msb_bits <= direct_log2 <= 8`
    /// and the largest token, `max_token()`, fits in a `u8`.
    /// Use [`UintTokenizer::try_new`] for a non-panicking check.
    pub const fn new(direct_log2: u32, msb_bits: u32) -> Self {
        match Self::try_new(direct_log2, msb_bits) {
            Some(tokenizer) => tokenizer,
            None => panic!("UintTokenizer: invalid (direct_log2, msb_bits) configuration"),
        }
    }

    /// Like [`UintTokenizer::new`] but returns `None` for an invalid configuration.
    pub const fn try_new(direct_log2: u32, msb_bits: u32) -> Option<Self> {
        if direct_log2 > 8 || msb_bits > direct_log2 {
            return None;
        }
        let direct = 1u32 << direct_log2;
        // Token of u32::MAX: n = 31, all mantissa bits set.
        let max_token = direct + ((32 - direct_log2) << msb_bits) - 1;
        if max_token > u8::MAX as u32 {
            return None;
        }
        Some(Self { direct, direct_log2, msb_bits })
    }

    /// Values below this bound (a power of two) are coded as their own token.
    pub const fn direct(&self) -> u32 {
        self.direct
    }

    /// Mantissa bits kept in the token after the leading one.
    pub const fn msb_bits(&self) -> u32 {
        self.msb_bits
    }

    /// Largest token produced (the token of `u32::MAX`); the alphabet size is
    /// `max_token() + 1`.
    pub const fn max_token(&self) -> u8 {
        (self.direct + ((32 - self.direct_log2) << self.msb_bits) - 1) as u8
    }

    /// Splits `v` into `(token, raw_value, raw_bits)`; `raw_value < 1 << raw_bits`.
    #[inline]
    pub fn token(&self, v: u32) -> (u8, u32, u32) {
        if v < self.direct {
            return (v as u8, 0, 0);
        }
        let n = 31 - v.leading_zeros(); // >= direct_log2 >= msb_bits
        let raw_bits = n - self.msb_bits;
        let mantissa = (v >> raw_bits) & ((1 << self.msb_bits) - 1);
        let token = self.direct + ((n - self.direct_log2) << self.msb_bits) + mantissa;
        // raw_bits <= 31, so the shift is in range.
        let raw = v & ((1u32 << raw_bits) - 1);
        (token as u8, raw, raw_bits)
    }

    /// Number of raw bits following `token` (0 for tokens above [`max_token`](Self::max_token)).
    #[inline]
    pub fn raw_bits(&self, token: u8) -> u32 {
        let token = u32::from(token);
        if token < self.direct || token > u32::from(self.max_token()) {
            return 0;
        }
        self.direct_log2 + ((token - self.direct) >> self.msb_bits) - self.msb_bits
    }

    /// Rebuilds the value from `token` and its raw bits (extra high bits of
    /// `raw` are ignored). A token above [`max_token`](Self::max_token) is
    /// invalid and yields `u32::MAX`; use [`try_value`](Self::try_value) to detect it.
    #[inline]
    pub fn value(&self, token: u8, raw: u32) -> u32 {
        self.try_value(token, raw).unwrap_or(u32::MAX)
    }

    /// Like [`value`](Self::value) but returns `None` if `token > max_token()`.
    #[inline]
    pub fn try_value(&self, token: u8, raw: u32) -> Option<u32> {
        let token = u32::from(token);
        if token < self.direct {
            return Some(token);
        }
        if token > u32::from(self.max_token()) {
            return None;
        }
        let offset = token - self.direct;
        let n = self.direct_log2 + (offset >> self.msb_bits); // <= 31
        let raw_bits = n - self.msb_bits;
        let mantissa = offset & ((1 << self.msb_bits) - 1);
        let high = ((1u32 << self.msb_bits) | mantissa) << raw_bits;
        Some(high | (raw & ((1u32 << raw_bits) - 1)))
    }
}

/// Encodes `v` as its token (coded with `table`) followed by its raw bits.
///
/// The caller guarantees the token has a non-zero frequency in `table`
/// (see [`RansEncoder::put_symbol`]).
#[cfg(test)]
pub fn encode_uint(enc: &mut RansEncoder, table: &FreqTable, tokenizer: &UintTokenizer, v: u32) {
    let (token, raw, raw_bits) = tokenizer.token(v);
    enc.put_symbol(table, token);
    enc.put_bits(raw, raw_bits);
}

/// Decodes a value written by [`encode_uint`] with the same table and tokenizer.
///
/// Errors: [`EntropyError::Corrupt`] for a token above `tokenizer.max_token()`,
/// plus any decoder error.
#[cfg(test)]
pub fn decode_uint(
    dec: &mut RansDecoder<'_>,
    table: &FreqTable,
    tokenizer: &UintTokenizer,
) -> Result<u32, EntropyError> {
    let token = dec.get_symbol(table)?;
    if token > tokenizer.max_token() {
        return Err(EntropyError::Corrupt("hybrid-uint token out of range"));
    }
    let raw = dec.get_bits(tokenizer.raw_bits(token))?;
    tokenizer.try_value(token, raw).ok_or(EntropyError::Corrupt("hybrid-uint token out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use rbe_testkit::Rng;

    const CONFIGS: [(u32, u32); 7] = [(4, 2), (0, 0), (4, 0), (3, 1), (5, 3), (6, 1), (7, 2)];

    #[test]
    fn spec_example() {
        let t = UintTokenizer::new(4, 2);
        for v in 0..16 {
            assert_eq!(t.token(v), (v as u8, 0, 0));
        }
        // 16 = 0b10000: n = 4, mantissa 00.
        assert_eq!(t.token(16), (16, 0, 2));
        // 0b11011: n = 4, mantissa 10, raw 11.
        assert_eq!(t.token(0b11011), (16 + 2, 0b11, 2));
        // 100 = 0b1100100: n = 6, mantissa 10, raw 0100.
        assert_eq!(t.token(100), (16 + 2 * 4 + 2, 0b0100, 4));
        assert_eq!(t.max_token(), 127);
        assert_eq!(t.token(u32::MAX).0, 127);
    }

    #[test]
    fn token_value_inverse() {
        let mut rng = Rng::new(1);
        for (d, m) in CONFIGS {
            let t = UintTokenizer::new(d, m);
            let direct = 1u32 << d;
            let mut values = vec![0, 1, direct - 1, direct, direct + 1, 1 << 20, (1 << 24) - 1, u32::MAX, u32::MAX - 1];
            values.extend((0..32).flat_map(|b| [1u32 << b, (1u32 << b).wrapping_sub(1)]));
            values.extend((0..20_000).map(|_| (rng.next_u64() as u32) >> (rng.next_u64() % 32)));
            let mut prev_token = 0u8;
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for &v in &sorted {
                let (token, raw, raw_bits) = t.token(v);
                assert!(token <= t.max_token(), "({d},{m}) v {v}");
                assert!(token >= prev_token, "tokens are monotone in v");
                prev_token = token;
                assert_eq!(t.raw_bits(token), raw_bits);
                assert!(raw_bits == 32 || raw < (1u64 << raw_bits) as u32 || raw_bits == 0 && raw == 0);
                assert_eq!(t.value(token, raw), v, "({d},{m}) v {v}");
                assert_eq!(t.try_value(token, raw), Some(v));
            }
            assert_eq!(t.token(u32::MAX).0, t.max_token());
            assert_eq!(t.try_value(t.max_token() + 1, 0), None);
            assert_eq!(t.value(t.max_token() + 1, 0), u32::MAX);
            assert_eq!(t.raw_bits(t.max_token() + 1), 0);
        }
    }

    #[test]
    fn invalid_configs() {
        assert!(UintTokenizer::try_new(9, 0).is_none());
        assert!(UintTokenizer::try_new(2, 3).is_none());
        assert!(UintTokenizer::try_new(6, 3).is_none()); // 64 + 26 * 8 - 1 > 255
        assert!(UintTokenizer::try_new(8, 0).is_none()); // 256 + 24 - 1 > 255
        assert!(UintTokenizer::try_new(7, 0).is_some()); // 128 + 25 - 1 = 152
    }

    #[test]
    #[should_panic(expected = "invalid")]
    fn new_panics_on_invalid_config() {
        let _ = UintTokenizer::new(2, 3);
    }

    #[test]
    fn uint_round_trip_through_rans() {
        let mut rng = Rng::new(2);
        let tok = UintTokenizer::new(4, 2);
        let values: Vec<u32> = (0..50_000)
            .map(|i| match i % 5 {
                0 => rng.next_u64() as u32,
                _ => (rng.next_u64() as u32) >> (20 + rng.next_u64() % 12),
            })
            .chain([0, 15, 16, 1 << 20, u32::MAX])
            .collect();
        let mut counts = vec![0u64; usize::from(tok.max_token()) + 1];
        for &v in &values {
            counts[usize::from(tok.token(v).0)] += 1;
        }
        let table = FreqTable::from_counts(&counts);
        let mut enc = RansEncoder::new();
        for &v in &values {
            encode_uint(&mut enc, &table, &tok, v);
        }
        let mut out = Vec::new();
        enc.finish(&mut out);
        let mut dec = RansDecoder::new(&out).unwrap();
        for &v in &values {
            assert_eq!(decode_uint(&mut dec, &table, &tok), Ok(v));
        }
        assert_eq!(dec.finish(), Ok(out.len()));
    }

    #[test]
    fn decode_uint_rejects_out_of_range_token() {
        let tok = UintTokenizer::new(0, 0); // max token 32
        let mut counts = vec![0u64; 64];
        counts[40] = 1;
        counts[0] = 1;
        let table = FreqTable::from_counts(&counts);
        let mut enc = RansEncoder::new();
        enc.put_symbol(&table, 40);
        let mut out = Vec::new();
        enc.finish(&mut out);
        let mut dec = RansDecoder::new(&out).unwrap();
        assert!(matches!(decode_uint(&mut dec, &table, &tok), Err(EntropyError::Corrupt(_))));
    }
}
