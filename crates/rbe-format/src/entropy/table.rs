//! Quantised symbol frequency tables for the static rANS coder.
//!
//! A [`FreqTable`] assigns each symbol of an alphabet of `1..=256` symbols a
//! frequency; the frequencies sum to exactly [`PROB_SCALE`] (`1 << PROB_BITS`).
//! It also precomputes the cumulative starts and the slot -> symbol lookup
//! table the decoder uses. Tables are built from histograms with
//! [`FreqTable::from_counts`] (cost-optimal quantisation) and stored in the
//! bitstream with [`FreqTable::write`] / [`FreqTable::read`]:
//!
//! ```text
//! varint n            alphabet size, 1..=256 (LEB128)
//! varint freq[0..n]   frequencies (LEB128), summing to 1 << PROB_BITS,
//!                     last one non-zero
//! ```

use std::fmt;

use super::EntropyError;
use super::rans::{INVALID_OP, pack_op};

/// Number of bits of probability precision: frequencies sum to `1 << PROB_BITS`.
pub const PROB_BITS: u32 = 14;

/// Total of all frequencies in a table (`1 << PROB_BITS`).
pub const PROB_SCALE: u32 = 1 << PROB_BITS;

/// Largest supported alphabet (symbols are `u8`).
pub const MAX_ALPHABET: usize = 256;

const SCALE_USIZE: usize = PROB_SCALE as usize;

/// A quantised frequency table over symbols `0..len()`.
///
/// Invariants (guaranteed by every constructor): `1 <= len() <= 256`, the
/// frequencies sum to exactly [`PROB_SCALE`], the last symbol has a non-zero
/// frequency, and symbols `>= len()` have frequency 0.
#[derive(Clone, PartialEq, Eq)]
pub struct FreqTable {
    len: usize,
    freqs: [u32; MAX_ALPHABET],
    starts: [u32; MAX_ALPHABET],
    /// Per-symbol packed encoder operation (start, freq, reciprocal), see `rans::pack_op`.
    encoder_ops: [u64; MAX_ALPHABET],
    slot_to_symbol: Box<[u8; SCALE_USIZE]>,
}

impl fmt::Debug for FreqTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreqTable").field("freqs", &self.freqs()).finish()
    }
}

impl FreqTable {
    /// Builds a table from already quantised frequencies.
    ///
    /// `freqs` must have `1..=256` entries summing to exactly [`PROB_SCALE`],
    /// and its last entry must be non-zero (canonical form, so that
    /// serialisation is unique).
    pub fn from_freqs(freqs: &[u32]) -> Result<FreqTable, EntropyError> {
        if freqs.is_empty() || freqs.len() > MAX_ALPHABET {
            return Err(EntropyError::TableInvalid("alphabet size out of range"));
        }
        let sum: u64 = freqs.iter().map(|&f| u64::from(f)).sum();
        if sum != u64::from(PROB_SCALE) {
            return Err(EntropyError::TableInvalid("frequencies do not sum to 1 << PROB_BITS"));
        }
        if freqs[freqs.len() - 1] == 0 {
            return Err(EntropyError::TableInvalid("trailing zero frequency"));
        }
        Ok(Self::build(freqs))
    }

    /// Builds the lookup structures; `freqs` must already satisfy the invariants.
    fn build(freqs: &[u32]) -> FreqTable {
        debug_assert!(!freqs.is_empty() && freqs.len() <= MAX_ALPHABET);
        let mut table = FreqTable {
            len: freqs.len(),
            freqs: [0; MAX_ALPHABET],
            starts: [0; MAX_ALPHABET],
            encoder_ops: [INVALID_OP; MAX_ALPHABET],
            slot_to_symbol: Box::new([0; SCALE_USIZE]),
        };
        let mut start = 0u32;
        for (symbol, &freq) in freqs.iter().enumerate() {
            table.freqs[symbol] = freq;
            table.starts[symbol] = start;
            if freq > 0 {
                table.encoder_ops[symbol] = pack_op(start, freq);
            }
            let begin = start as usize;
            start += freq;
            // `symbol < 256` because `freqs.len() <= MAX_ALPHABET`.
            table.slot_to_symbol[begin..start as usize].fill(symbol as u8);
        }
        debug_assert_eq!(start, PROB_SCALE);
        table
    }

    /// A table with the single symbol 0 of frequency [`PROB_SCALE`] (costs 0 bits).
    pub fn single_symbol() -> FreqTable {
        Self::build(&[PROB_SCALE])
    }

    /// Quantises a histogram into a table whose frequencies sum to [`PROB_SCALE`].
    ///
    /// Every symbol with a non-zero count gets a frequency of at least 1 and
    /// zero-count symbols get 0; trailing zero-count symbols are trimmed from
    /// the alphabet. The quantisation minimises the coding cost
    /// `sum count * log2(PROB_SCALE / freq)` under those constraints: scale and
    /// round, fix the sum greedily by the cheapest unit changes, then apply
    /// improving unit moves between symbols until none is left (optimal for
    /// this separable convex objective). If all counts are zero the result is
    /// [`FreqTable::single_symbol`]. Deterministic (no hashing, fixed tie
    /// breaking by lowest symbol).
    ///
    /// # Panics
    ///
    /// Panics if a non-zero count appears at an index `>= 256` (symbols are `u8`).
    pub fn from_counts(counts: &[u64]) -> FreqTable {
        let len = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        if len == 0 {
            return Self::single_symbol();
        }
        assert!(len <= MAX_ALPHABET, "FreqTable::from_counts: non-zero count for symbol {} >= 256", len - 1);
        let counts = &counts[..len];
        Self::build(&quantise(counts))
    }

    /// Appends the compact serialisation (varint alphabet size, varint frequencies).
    pub fn write(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len as u32);
        for &freq in self.freqs() {
            write_varint(out, freq);
        }
    }

    /// Reads a table written by [`FreqTable::write`] starting at `*pos`, advancing `*pos`.
    ///
    /// Errors: [`EntropyError::Truncated`] if the bytes end early,
    /// [`EntropyError::TableInvalid`] for an alphabet size outside `1..=256`,
    /// a frequency sum other than [`PROB_SCALE`], a trailing zero frequency
    /// or a malformed varint. On error `*pos` is left unspecified.
    pub fn read(bytes: &[u8], pos: &mut usize) -> Result<FreqTable, EntropyError> {
        let len = read_varint(bytes, pos)? as usize;
        if len == 0 || len > MAX_ALPHABET {
            return Err(EntropyError::TableInvalid("alphabet size out of range"));
        }
        let mut freqs = [0u32; MAX_ALPHABET];
        let mut sum = 0u32;
        for freq in &mut freqs[..len] {
            let value = read_varint(bytes, pos)?;
            if value > PROB_SCALE - sum {
                return Err(EntropyError::TableInvalid("frequencies do not sum to 1 << PROB_BITS"));
            }
            sum += value;
            *freq = value;
        }
        Self::from_freqs(&freqs[..len])
    }

    /// Alphabet size (`1..=256`): symbols are `0..len()`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a valid table has at least one symbol.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frequency of `symbol` (0 for symbols outside the alphabet).
    #[inline]
    pub fn freq(&self, symbol: u8) -> u32 {
        self.freqs[usize::from(symbol)]
    }

    /// Cumulative start of `symbol` (sum of the frequencies of the smaller symbols).
    #[inline]
    pub fn start(&self, symbol: u8) -> u32 {
        self.starts[usize::from(symbol)]
    }

    /// Packed rANS encoder operation for `symbol` (`INVALID_OP` if its frequency is 0).
    #[inline]
    pub(super) fn encoder_op(&self, symbol: u8) -> u64 {
        self.encoder_ops[usize::from(symbol)]
    }

    /// The frequencies of symbols `0..len()`.
    pub fn freqs(&self) -> &[u32] {
        &self.freqs[..self.len]
    }

    /// Symbol owning the probability slot `slot` (only the low [`PROB_BITS`] bits are used).
    #[inline]
    pub fn symbol_at_slot(&self, slot: u32) -> u8 {
        self.slot_to_symbol[(slot & (PROB_SCALE - 1)) as usize]
    }

    /// Cost in bits of coding `symbol` with this table: `log2(PROB_SCALE / freq)`,
    /// `f64::INFINITY` if its frequency is 0.
    pub fn cost_bits(&self, symbol: u8) -> f64 {
        match self.freq(symbol) {
            0 => f64::INFINITY,
            freq => f64::from(PROB_BITS) - f64::from(freq).log2(),
        }
    }

    /// Total cost in bits of coding a histogram (`counts[s]` occurrences of
    /// symbol `s`) with this table; infinite if a counted symbol has frequency 0.
    pub fn cost_of_counts(&self, counts: &[u64]) -> f64 {
        let mut bits = 0.0;
        for (symbol, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let Ok(symbol) = u8::try_from(symbol) else {
                return f64::INFINITY;
            };
            bits += count as f64 * self.cost_bits(symbol);
        }
        bits
    }
}

/// Cost-optimal quantisation of non-empty `counts` (last count non-zero, len <= 256).
fn quantise(counts: &[u64]) -> Vec<u32> {
    let scale_target = i64::from(PROB_SCALE);
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    let scale = f64::from(PROB_SCALE) / total;
    let mut freqs: Vec<u32> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0
            } else {
                // c <= total, so the rounded value is <= PROB_SCALE.
                ((c as f64 * scale).round() as u32).clamp(1, PROB_SCALE)
            }
        })
        .collect();
    let mut sum: i64 = freqs.iter().map(|&f| i64::from(f)).sum();

    // Cost change (in nats, scaled by count) of incrementing / decrementing a frequency.
    let gain_up = |count: u64, freq: u32| count as f64 * (1.0 / f64::from(freq)).ln_1p();
    let loss_down = |count: u64, freq: u32| -(count as f64) * (-1.0 / f64::from(freq)).ln_1p();

    let best_up = |freqs: &[u32]| -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for (i, (&c, &f)) in counts.iter().zip(freqs).enumerate() {
            if c == 0 {
                continue;
            }
            let g = gain_up(c, f);
            if best.is_none_or(|(_, bg)| g > bg) {
                best = Some((i, g));
            }
        }
        best
    };
    let best_down = |freqs: &[u32]| -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for (i, (&c, &f)) in counts.iter().zip(freqs).enumerate() {
            if c == 0 || f <= 1 {
                continue;
            }
            let l = loss_down(c, f);
            if best.is_none_or(|(_, bl)| l < bl) {
                best = Some((i, l));
            }
        }
        best
    };

    // Fix the sum with the cheapest unit changes.
    while sum > scale_target {
        // sum > PROB_SCALE >= 256 non-zero symbols, so some frequency exceeds 1.
        let Some((j, _)) = best_down(&freqs) else {
            break;
        };
        freqs[j] -= 1;
        sum -= 1;
    }
    while sum < scale_target {
        let Some((i, _)) = best_up(&freqs) else { break };
        freqs[i] += 1;
        sum += 1;
    }

    // Improve with unit moves j -> i while they strictly reduce the cost.
    for _ in 0..SCALE_USIZE {
        let (Some((i, gain)), Some((j, loss))) = (best_up(&freqs), best_down(&freqs)) else {
            break;
        };
        if i == j || gain <= loss * (1.0 + 1e-12) {
            break;
        }
        freqs[i] += 1;
        freqs[j] -= 1;
    }
    debug_assert_eq!(freqs.iter().map(|&f| i64::from(f)).sum::<i64>(), scale_target);
    freqs
}

/// Appends `value` as an unsigned LEB128 varint ([`crate::varint`]).
fn write_varint(out: &mut Vec<u8>, value: u32) {
    crate::varint::write_varint(out, u64::from(value));
}

/// Reads a canonical (shortest form) unsigned LEB128 varint of at most 32 bits
/// ([`crate::varint`]), with the table reader's errors.
fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u32, EntropyError> {
    match crate::varint::read_varint(bytes, pos, 5) {
        Ok(v) => u32::try_from(v).map_err(|_| EntropyError::TableInvalid("varint overflows 32 bits")),
        Err(crate::error::BlockError::Truncated) => Err(EntropyError::Truncated),
        Err(_) => Err(EntropyError::TableInvalid("non-canonical or overlong varint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rbe_testkit::Rng;

    fn entropy_bits(counts: &[u64]) -> f64 {
        let total: f64 = counts.iter().map(|&c| c as f64).sum();
        counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 * (total / c as f64).log2()).sum()
    }

    fn check_invariants(table: &FreqTable, counts: &[u64]) {
        assert_eq!(table.freqs().iter().sum::<u32>(), PROB_SCALE);
        for (s, &c) in counts.iter().enumerate().take(table.len()) {
            assert_eq!(c > 0, table.freq(s as u8) > 0, "symbol {s}");
        }
        for slot in 0..PROB_SCALE {
            let s = table.symbol_at_slot(slot);
            assert!(table.start(s) <= slot && slot < table.start(s) + table.freq(s));
        }
    }

    #[test]
    fn all_zero_counts_give_single_symbol() {
        for counts in [&[][..], &[0, 0, 0][..]] {
            let t = FreqTable::from_counts(counts);
            assert_eq!(t.freqs(), &[PROB_SCALE]);
            assert_eq!(t.len(), 1);
            assert!(!t.is_empty());
            assert_eq!(t.cost_bits(0), 0.0);
            assert_eq!(t.cost_bits(1), f64::INFINITY);
        }
    }

    #[test]
    fn trims_trailing_zeros_and_keeps_rare_symbols() {
        let counts = [0, 1_000_000, 0, 1, 3, 0, 0];
        let t = FreqTable::from_counts(&counts);
        assert_eq!(t.len(), 5);
        check_invariants(&t, &counts);
        assert_eq!(t.freq(0), 0);
        assert_eq!(t.freq(2), 0);
        assert_eq!(t.freq(3), 1);
        assert!(t.freq(4) >= 1);
        assert_eq!(t.freq(200), 0);
    }

    #[test]
    fn full_alphabet_of_ones() {
        let counts = vec![1u64; 256];
        let t = FreqTable::from_counts(&counts);
        check_invariants(&t, &counts);
        assert!(t.freqs().iter().all(|&f| f == 64));
        // Huge counts do not overflow.
        let counts = vec![u64::MAX / 300; 256];
        check_invariants(&FreqTable::from_counts(&counts), &counts);
    }

    #[test]
    fn gaussian_histogram_cost_close_to_entropy() {
        let mut rng = Rng::new(7);
        for (samples, sigma) in [(4096usize, 12.0f64), (100_000, 30.0), (20_000, 2.0)] {
            let mut counts = vec![0u64; 256];
            for _ in 0..samples {
                let v = (128.0 + rng.gaussian() * sigma).round().clamp(0.0, 255.0) as usize;
                counts[v] += 1;
            }
            let t = FreqTable::from_counts(&counts);
            check_invariants(&t, &counts);
            let ideal = entropy_bits(&counts);
            let cost = t.cost_of_counts(&counts);
            assert!(cost >= ideal - 1e-6);
            assert!(cost <= ideal * 1.005, "samples {samples} sigma {sigma}: cost {cost} ideal {ideal}");
        }
    }

    #[test]
    fn quantisation_is_locally_optimal() {
        let mut rng = Rng::new(99);
        for _ in 0..50 {
            let n = 1 + (rng.next_u64() % 40) as usize;
            let counts: Vec<u64> =
                (0..n).map(|_| if rng.next_u64().is_multiple_of(4) { 0 } else { rng.next_u64() % 1000 }).collect();
            let t = FreqTable::from_counts(&counts);
            if counts.iter().all(|&c| c == 0) {
                continue;
            }
            check_invariants(&t, &counts);
            let base = t.cost_of_counts(&counts);
            // No single unit move between two coded symbols lowers the cost.
            let freqs = t.freqs().to_vec();
            for i in 0..freqs.len() {
                for j in 0..freqs.len() {
                    if i == j || counts[i] == 0 || freqs[j] <= 1 {
                        continue;
                    }
                    let mut f = freqs.clone();
                    f[i] += 1;
                    f[j] -= 1;
                    let moved = FreqTable::from_freqs(&f).unwrap();
                    assert!(moved.cost_of_counts(&counts) >= base - 1e-6);
                }
            }
        }
    }

    #[test]
    fn from_counts_is_deterministic() {
        let counts: Vec<u64> = (0..200).map(|i| (i * 7919 % 1013) as u64).collect();
        assert_eq!(FreqTable::from_counts(&counts), FreqTable::from_counts(&counts));
    }

    #[test]
    #[should_panic(expected = "256")]
    fn from_counts_rejects_symbols_beyond_u8() {
        let mut counts = vec![0u64; 300];
        counts[299] = 1;
        let _ = FreqTable::from_counts(&counts);
    }

    #[test]
    fn write_read_round_trip() {
        let mut rng = Rng::new(3);
        for n in [1usize, 2, 17, 255, 256] {
            let mut counts: Vec<u64> = (0..n).map(|_| rng.next_u64() % 5000).collect();
            counts[n - 1] += 1;
            let t = FreqTable::from_counts(&counts);
            assert_eq!(t.len(), n);
            let mut bytes = vec![0xAA];
            t.write(&mut bytes);
            bytes.push(0x55);
            let mut pos = 1;
            let back = FreqTable::read(&bytes, &mut pos).unwrap();
            assert_eq!(back, t);
            assert_eq!(pos, bytes.len() - 1);
        }
        let t = FreqTable::single_symbol();
        let mut bytes = Vec::new();
        t.write(&mut bytes);
        assert_eq!(bytes, [1, 0x80, 0x80, 0x01]);
    }

    #[test]
    fn read_rejects_bad_tables() {
        let read = |bytes: &[u8]| FreqTable::read(bytes, &mut 0);
        let enc = |values: &[u32]| {
            let mut out = Vec::new();
            for &v in values {
                write_varint(&mut out, v);
            }
            out
        };
        assert_eq!(read(&[]), Err(EntropyError::Truncated));
        assert!(matches!(read(&enc(&[0])), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&enc(&[257])), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&enc(&[2, 8192, 8191])), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&enc(&[2, 8192, 8193])), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&enc(&[2, 16384, 0])), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&enc(&[2, u32::MAX, 1])), Err(EntropyError::TableInvalid(_))));
        assert_eq!(read(&enc(&[3, 8192, 8192])), Err(EntropyError::Truncated));
        assert_eq!(read(&[2, 0x80]), Err(EntropyError::Truncated));
        // Non-canonical and overlong varints.
        assert!(matches!(read(&[0x81, 0x00]), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&[0xff, 0xff, 0xff, 0xff, 0x7f]), Err(EntropyError::TableInvalid(_))));
        assert!(matches!(read(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), Err(EntropyError::TableInvalid(_))));
        assert!(read(&enc(&[2, 8192, 8192])).is_ok());
        assert!(read(&enc(&[3, 0, 8192, 8192])).is_ok());
    }

    #[test]
    fn varint_round_trip() {
        for v in [0u32, 1, 127, 128, 16383, 16384, 1 << 21, u32::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(11);
        for _ in 0..5000 {
            let len = (rng.next_u64() % 40) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len > 0 && rng.next_u64().is_multiple_of(2) {
                bytes[0] = (rng.next_u64() % 4) as u8;
            }
            let mut pos = 0;
            let _ = FreqTable::read(&bytes, &mut pos);
        }
    }
}
