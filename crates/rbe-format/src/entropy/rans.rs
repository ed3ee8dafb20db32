//! Byte-wise rANS coder (32-bit state, [`PROB_BITS`]-bit probabilities).
//!
//! This is the classic `rans_byte` construction: the state `x` lives in
//! `[RANS_L, RANS_L << 8)` with `RANS_L = 1 << 23`, and renormalisation moves
//! whole bytes. rANS is last-in first-out, so [`RansEncoder`] records the
//! operations in forward (natural) order and runs them backwards in
//! [`RansEncoder::finish`]; [`RansDecoder`] then yields them forward.
//!
//! Stream layout produced by `finish`:
//!
//! ```text
//! u32 LE   final encoder state (read first by the decoder)
//! u8[...]  renormalisation bytes, in the order the decoder consumes them
//! ```
//!
//! The encoder starts from state `RANS_L`, so a decoder that consumed the
//! whole stream must end in state `RANS_L`; [`RansDecoder::finish`] checks
//! this, which detects most corruption.
//!
//! Raw bits ([`RansEncoder::put_bits`]) are coded as uniform symbols of at
//! most [`RAW_CHUNK_BITS`] bits each (frequency `1 << (PROB_BITS - n)`), low
//! chunk first, so they cost exactly one bit per bit.

use super::EntropyError;
use super::table::{FreqTable, PROB_BITS, PROB_SCALE};

/// Lower bound of the normalised state interval `[RANS_L, RANS_L << 8)`.
pub const RANS_L: u32 = 1 << 23;

/// Largest chunk of raw bits coded as one uniform symbol.
pub const RAW_CHUNK_BITS: u32 = 12;

const SLOT_MASK: u32 = PROB_SCALE - 1;

/// Marker op for a zero-frequency symbol; [`RansEncoder::finish`] panics on it.
pub(super) const INVALID_OP: u64 = u64::MAX;

/// Packs one encoder operation, a `(start, freq)` pair with its division
/// reciprocal, into a `u64`:
///
/// ```text
/// bits  0..14  start
/// bits 14..28  freq - 1          (freq in 1..=1 << 14)
/// bits 28..32  log              = ceil(log2 freq), 0..=14
/// bits 32..64  rcp              = ceil(2^(17 + 2 log) / freq) < 2^32
/// ```
///
/// `floor(x / freq) == (x * rcp) >> (17 + 2 log)` for every encoder state
/// `x < freq << 17` (which renormalisation guarantees): with
/// `e = rcp * freq - 2^k < freq` and `k = 17 + 2 log`,
/// `x * rcp / 2^k = x / freq + x * e / (freq * 2^k)` and
/// `x * e < 2^17 * freq^2 <= 2^k`, so the error term stays below the
/// `1 / freq` gap to the next integer. `x * rcp < 2^31 * 2^32` fits a `u64`.
#[inline]
pub(super) const fn pack_op(start: u32, freq: u32) -> u64 {
    debug_assert!(freq >= 1 && freq <= PROB_SCALE && start + freq <= PROB_SCALE);
    let log = if freq <= 1 { 0 } else { 32 - (freq - 1).leading_zeros() };
    let shift = 17 + 2 * log;
    let rcp = (1u64 << shift).div_ceil(freq as u64);
    (rcp << 32) | ((log as u64) << 28) | (((freq - 1) as u64) << 14) | start as u64
}

/// Packs a uniform raw-bits chunk `bits < 1 << chunk` (`chunk <= RAW_CHUNK_BITS`):
/// `freq = 1 << (PROB_BITS - chunk)`, `start = bits * freq`; equal to
/// `pack_op(start, freq)` but without a division.
#[inline(always)]
fn pack_raw_op(bits: u32, chunk: u32) -> u64 {
    let log = PROB_BITS - chunk;
    let rcp = 1u64 << (17 + log); // 2^(17 + 2 log) / 2^log
    (rcp << 32) | (u64::from(log) << 28) | (u64::from((1u32 << log) - 1) << 14) | u64::from(bits << log)
}

/// rANS encoder buffering symbols in forward order.
///
/// Push symbols with [`put_symbol`](Self::put_symbol) and raw bits with
/// [`put_bits`](Self::put_bits) in the order the decoder will read them, then
/// call [`finish`](Self::finish). The encoder can be reused after `finish`;
/// its buffer keeps its allocation.
#[derive(Debug, Clone, Default)]
pub struct RansEncoder {
    /// Pending operations, each packed by `pack_op`.
    ops: Vec<u64>,
}

impl RansEncoder {
    /// Creates an empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty encoder with room for `ops` symbols / raw-bit chunks.
    pub fn with_capacity(ops: usize) -> Self {
        Self { ops: Vec::with_capacity(ops) }
    }

    /// Number of pending coding operations (symbols plus raw-bit chunks).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation is pending.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Discards all pending operations (keeps the allocation).
    pub fn clear(&mut self) {
        self.ops.clear();
    }

    /// Queues `symbol` coded with `table`.
    ///
    /// The caller guarantees `table.freq(symbol) > 0` (true for every symbol
    /// whose count was non-zero in `FreqTable::from_counts`). This is only
    /// checked by a `debug_assert`; in release builds a zero-frequency symbol
    /// makes [`finish`](Self::finish) panic.
    #[inline]
    pub fn put_symbol(&mut self, table: &FreqTable, symbol: u8) {
        debug_assert!(table.freq(symbol) > 0, "rANS: symbol {symbol} has zero frequency");
        self.ops.push(table.encoder_op(symbol));
    }

    /// Queues the low `nbits` bits of `value` as raw, uniformly coded bits
    /// (exactly `nbits` bits of output). `nbits` must be `<= 32`
    /// (`debug_assert`; larger values are treated as 32).
    #[inline]
    pub fn put_bits(&mut self, value: u32, nbits: u32) {
        debug_assert!(nbits <= 32, "rANS: put_bits with {nbits} > 32 bits");
        let mut remaining = nbits.min(32);
        let mut value = u64::from(value);
        while remaining > 0 {
            let chunk = remaining.min(RAW_CHUNK_BITS);
            let bits = (value as u32) & ((1 << chunk) - 1);
            self.ops.push(pack_raw_op(bits, chunk));
            value >>= chunk;
            remaining -= chunk;
        }
    }

    /// Encodes all pending operations, appends the stream to `out` and
    /// clears the encoder for reuse. An empty encoder emits 4 bytes.
    ///
    /// # Panics
    ///
    /// Panics if a zero-frequency symbol was queued (a caller bug, see
    /// [`put_symbol`](Self::put_symbol)).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let base = out.len();
        out.reserve(self.ops.len() + 4);
        let mut state = RANS_L;
        for &op in self.ops.iter().rev() {
            assert!(op != INVALID_OP, "rANS: a zero-frequency symbol was encoded");
            let start = (op & 0x3fff) as u32;
            let freq = ((op >> 14) & 0x3fff) as u32 + 1;
            let shift = 17 + 2 * ((op >> 28) & 0xf) as u32;
            let rcp = op >> 32;
            // x_max = ((RANS_L >> PROB_BITS) << 8) * freq = freq << 17 <= 1 << 31.
            let x_max = freq << 17;
            while state >= x_max {
                out.push(state as u8);
                state >>= 8;
            }
            // q = state / freq (exact, see `pack_op`);
            // state' = (q << PROB_BITS) + (state - q * freq) + start.
            let q = ((u64::from(state) * rcp) >> shift) as u32;
            state += start + q * (PROB_SCALE - freq);
        }
        // Bytes were emitted in reverse decoding order; append the state so
        // that after reversing it comes first, little-endian.
        out.extend_from_slice(&state.to_be_bytes());
        out[base..].reverse();
        self.ops.clear();
    }
}

/// Streaming rANS decoder over a byte slice produced by [`RansEncoder::finish`].
///
/// Symbols and raw bits must be requested in the order they were pushed,
/// with the same tables. All methods return errors instead of panicking on
/// corrupt or truncated input.
#[derive(Debug, Clone)]
pub struct RansDecoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    state: u32,
}

impl<'a> RansDecoder<'a> {
    /// Starts decoding `bytes` (the exact stream, see [`finish`](Self::finish)).
    ///
    /// Errors: [`EntropyError::Truncated`] if fewer than 4 bytes,
    /// [`EntropyError::Corrupt`] if the initial state is outside `[RANS_L, RANS_L << 8)`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, EntropyError> {
        let Some((head, _)) = bytes.split_first_chunk::<4>() else {
            return Err(EntropyError::Truncated);
        };
        let state = u32::from_le_bytes(*head);
        if !(RANS_L..RANS_L << 8).contains(&state) {
            return Err(EntropyError::Corrupt("rANS initial state out of range"));
        }
        Ok(Self { bytes, pos: 4, state })
    }

    #[inline(always)]
    fn renormalise(&mut self) -> Result<(), EntropyError> {
        while self.state < RANS_L {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(EntropyError::Truncated);
            };
            self.pos += 1;
            self.state = (self.state << 8) | u32::from(byte);
        }
        Ok(())
    }

    /// Decodes one symbol coded with `table`.
    #[inline]
    pub fn get_symbol(&mut self, table: &FreqTable) -> Result<u8, EntropyError> {
        let x = self.state;
        let slot = x & SLOT_MASK;
        let symbol = table.symbol_at_slot(slot);
        let freq = table.freq(symbol);
        let start = table.start(symbol);
        if freq == 0 || slot < start {
            // Impossible with a valid table; guard anyway.
            return Err(EntropyError::Corrupt("rANS slot maps to a zero-frequency symbol"));
        }
        // freq * (x >> 14) + (slot - start) < freq << 18 <= 1 << 32: no overflow.
        self.state = freq * (x >> PROB_BITS) + (slot - start);
        self.renormalise()?;
        Ok(symbol)
    }

    /// Decodes `nbits` raw bits (`0..=32`) queued by [`RansEncoder::put_bits`].
    ///
    /// Errors: [`EntropyError::Corrupt`] if `nbits > 32`, [`EntropyError::Truncated`]
    /// if the stream ends early.
    #[inline]
    pub fn get_bits(&mut self, nbits: u32) -> Result<u32, EntropyError> {
        if nbits > 32 {
            return Err(EntropyError::Corrupt("raw bit count above 32"));
        }
        let mut value = 0u64;
        let mut shift = 0;
        while shift < nbits {
            let chunk = (nbits - shift).min(RAW_CHUNK_BITS);
            let freq_bits = PROB_BITS - chunk;
            let x = self.state;
            let bits = (x & SLOT_MASK) >> freq_bits;
            // Uniform symbol of freq 1 << freq_bits: x' = freq * (x >> 14) + (x mod freq).
            self.state = ((x >> PROB_BITS) << freq_bits) | (x & ((1 << freq_bits) - 1));
            self.renormalise()?;
            value |= u64::from(bits) << shift;
            shift += chunk;
        }
        Ok(value as u32)
    }

    /// Ends decoding: checks that every byte was consumed and that the state
    /// returned to the encoder's initial state. Returns the number of bytes consumed.
    ///
    /// Errors: [`EntropyError::Corrupt`] otherwise (leftover bytes or wrong final state).
    pub fn finish(self) -> Result<usize, EntropyError> {
        if self.pos != self.bytes.len() {
            return Err(EntropyError::Corrupt("rANS stream has unconsumed bytes"));
        }
        if self.state != RANS_L {
            return Err(EntropyError::Corrupt("rANS final state mismatch"));
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rbe_testkit::Rng;

    /// Skewed (roughly geometric) symbols over `0..alphabet`.
    fn skewed_symbols(rng: &mut Rng, count: usize, alphabet: u32, skew: u32) -> Vec<u8> {
        (0..count)
            .map(|_| {
                let r = rng.next_u64();
                let s = (r.trailing_zeros() / skew.max(1)) + (r >> 60) as u32 % 2;
                s.min(alphabet - 1) as u8
            })
            .collect()
    }

    fn histogram(symbols: &[u8]) -> Vec<u64> {
        let mut counts = vec![0u64; 256];
        for &s in symbols {
            counts[usize::from(s)] += 1;
        }
        counts
    }

    fn entropy_bits(counts: &[u64]) -> f64 {
        let total: f64 = counts.iter().map(|&c| c as f64).sum();
        counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 * (total / c as f64).log2()).sum()
    }

    /// `symbols` coded with `table` into a fresh stream (the encoder left empty).
    fn encoded(table: &FreqTable, symbols: &[u8]) -> Vec<u8> {
        let mut enc = RansEncoder::new();
        for &s in symbols {
            enc.put_symbol(table, s);
        }
        let mut out = Vec::new();
        enc.finish(&mut out);
        assert!(enc.is_empty());
        out
    }

    /// `count` skewed symbols over `0..alphabet` drawn from `rng`, their table and their stream.
    fn skewed_stream(rng: &mut Rng, count: usize, alphabet: u32) -> (Vec<u8>, FreqTable, Vec<u8>) {
        let symbols = skewed_symbols(rng, count, alphabet, 1);
        let table = FreqTable::from_counts(&histogram(&symbols));
        let out = encoded(&table, &symbols);
        (symbols, table, out)
    }

    /// `count` symbols decoded from `bytes` with `table`, then the stream's end checked.
    fn decoded(bytes: &[u8], table: &FreqTable, count: usize) -> Result<Vec<u8>, EntropyError> {
        let mut dec = RansDecoder::new(bytes)?;
        let symbols = (0..count).map(|_| dec.get_symbol(table)).collect::<Result<Vec<u8>, _>>()?;
        dec.finish()?;
        Ok(symbols)
    }

    fn round_trip(symbols: &[u8]) -> usize {
        let table = FreqTable::from_counts(&histogram(symbols));
        let out = encoded(&table, symbols);
        let mut dec = RansDecoder::new(&out).unwrap();
        for &s in symbols {
            assert_eq!(dec.get_symbol(&table).unwrap(), s);
        }
        assert_eq!(dec.finish().unwrap(), out.len());
        out.len()
    }

    #[test]
    fn reciprocal_division_is_exact() {
        let mut rng = Rng::new(10);
        for freq in 1..=PROB_SCALE {
            let op = pack_op(0, freq);
            let rcp = op >> 32;
            let shift = 17 + 2 * ((op >> 28) & 0xf) as u32;
            assert_eq!(((op >> 14) & 0x3fff) as u32 + 1, freq);
            let x_max = u64::from(freq) << 17;
            let check = |x: u64| {
                if x < x_max {
                    assert_eq!((x * rcp) >> shift, x / u64::from(freq), "x {x} freq {freq}");
                }
            };
            for q in [0, 1, 2, (1 << 16) - 1, 1 << 16, (1 << 17) - 2, (1 << 17) - 1] {
                for r in [0, 1, freq / 2, freq.saturating_sub(2), freq - 1] {
                    check(q * u64::from(freq) + u64::from(r.min(freq - 1)));
                }
            }
            for _ in 0..8 {
                check(rng.below(x_max as usize) as u64);
            }
        }
        for chunk in 1..=RAW_CHUNK_BITS {
            for bits in [0, 1, (1 << chunk) - 1] {
                let freq = 1 << (PROB_BITS - chunk);
                assert_eq!(pack_raw_op(bits, chunk), pack_op(bits * freq, freq));
            }
        }
    }

    #[test]
    #[should_panic(expected = "zero-frequency")]
    #[cfg(not(debug_assertions))]
    fn zero_frequency_symbol_panics_at_finish() {
        let table = FreqTable::from_counts(&[1, 0, 1]);
        let mut enc = RansEncoder::new();
        enc.put_symbol(&table, 1);
        enc.finish(&mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "zero frequency")]
    #[cfg(debug_assertions)]
    fn zero_frequency_symbol_panics_in_debug() {
        let table = FreqTable::from_counts(&[1, 0, 1]);
        RansEncoder::new().put_symbol(&table, 1);
    }

    #[test]
    fn empty_stream() {
        let mut enc = RansEncoder::new();
        let mut out = vec![9u8];
        enc.finish(&mut out);
        assert_eq!(out, [9, 0, 0, 0x80, 0]);
        let dec = RansDecoder::new(&out[1..]).unwrap();
        assert_eq!(dec.finish(), Ok(4));
    }

    #[test]
    fn single_symbol_table_costs_nothing() {
        let table = FreqTable::single_symbol();
        let mut enc = RansEncoder::new();
        for _ in 0..10_000 {
            enc.put_symbol(&table, 0);
        }
        let mut out = Vec::new();
        enc.finish(&mut out);
        assert_eq!(out.len(), 4);
        let mut dec = RansDecoder::new(&out).unwrap();
        for _ in 0..10_000 {
            assert_eq!(dec.get_symbol(&table), Ok(0));
        }
        assert_eq!(dec.finish(), Ok(4));
    }

    #[test]
    fn skewed_round_trips_near_entropy() {
        let mut rng = Rng::new(1);
        for (count, alphabet, skew) in
            [(1usize, 4u32, 1u32), (10, 2, 1), (1000, 16, 1), (200_000, 64, 1), (200_000, 256, 3), (100_000, 3, 8)]
        {
            let symbols = skewed_symbols(&mut rng, count, alphabet, skew);
            let bytes = round_trip(&symbols);
            let ideal = entropy_bits(&histogram(&symbols)) / 8.0;
            if count >= 100_000 {
                assert!((bytes as f64) < ideal * 1.002 + 8.0, "{bytes} bytes vs ideal {ideal:.1}");
            }
        }
    }

    #[test]
    fn uniform_full_alphabet_round_trip() {
        let mut rng = Rng::new(2);
        let symbols: Vec<u8> = (0..50_000).map(|_| rng.next_u64() as u8).collect();
        let bytes = round_trip(&symbols);
        assert!(bytes <= 50_000 + 16, "{bytes}");
    }

    #[test]
    fn mixed_symbols_and_raw_bits() {
        let mut rng = Rng::new(3);
        let tables: Vec<FreqTable> = (0..3)
            .map(|k| {
                let counts: Vec<u64> = (0..(10 + 40 * k)).map(|_| 1 + rng.below(1000) as u64).collect();
                FreqTable::from_counts(&counts)
            })
            .collect();
        #[derive(Debug)]
        enum Op {
            Sym(usize, u8),
            Bits(u32, u32),
        }
        let ops: Vec<Op> = (0..100_000)
            .map(|_| {
                if rng.below(3) == 0 {
                    let n = rng.below(33) as u32;
                    let v = rng.next_u64() as u32;
                    Op::Bits(if n == 32 { v } else { v & ((1 << n) - 1) }, n)
                } else {
                    let t = rng.below(3);
                    Op::Sym(t, rng.below(tables[t].len()) as u8)
                }
            })
            .collect();
        let mut enc = RansEncoder::with_capacity(16);
        let mut out = Vec::new();
        // Encode twice with the same encoder to exercise reuse.
        for round in 0..2 {
            out.clear();
            for op in &ops {
                match *op {
                    Op::Sym(t, s) => enc.put_symbol(&tables[t], s),
                    // Garbage above nbits must be ignored.
                    Op::Bits(v, n) => enc.put_bits(v | if n < 32 { u32::MAX << n } else { 0 }, n),
                }
            }
            enc.finish(&mut out);
            let mut dec = RansDecoder::new(&out).unwrap();
            for op in &ops {
                match *op {
                    Op::Sym(t, s) => assert_eq!(dec.get_symbol(&tables[t]), Ok(s)),
                    Op::Bits(v, n) => assert_eq!(dec.get_bits(n), Ok(v), "round {round}"),
                }
            }
            assert_eq!(dec.finish(), Ok(out.len()));
        }
    }

    #[test]
    fn raw_bits_cost_exactly_their_width() {
        let mut rng = Rng::new(4);
        let mut enc = RansEncoder::new();
        let mut total_bits = 0u64;
        for _ in 0..100_000 {
            let n = rng.below(33) as u32;
            enc.put_bits(rng.next_u64() as u32, n);
            total_bits += u64::from(n);
        }
        let mut out = Vec::new();
        enc.finish(&mut out);
        let ideal = total_bits.div_ceil(8) as usize;
        assert!(out.len() <= ideal + 5, "{} vs {ideal}", out.len());
        assert_eq!(RansDecoder::new(&out).unwrap().get_bits(33), Err(EntropyError::Corrupt("raw bit count above 32")));
    }

    #[test]
    fn truncated_streams_are_rejected() {
        let (symbols, table, out) = skewed_stream(&mut Rng::new(5), 5000, 32);
        for cut in 0..out.len() {
            assert!(decoded(&out[..cut], &table, symbols.len()).is_err(), "cut {cut}");
        }
        // Extra trailing bytes are rejected too.
        let mut longer = out.clone();
        longer.push(0);
        let mut dec = RansDecoder::new(&longer).unwrap();
        for _ in &symbols {
            dec.get_symbol(&table).unwrap();
        }
        assert!(matches!(dec.finish(), Err(EntropyError::Corrupt(_))));
    }

    #[test]
    fn corrupted_streams_are_mostly_detected() {
        let mut rng = Rng::new(6);
        let (symbols, table, out) = skewed_stream(&mut rng, 2000, 64);
        let trials = 2000;
        let mut detected = 0;
        for _ in 0..trials {
            let mut bad = out.clone();
            let i = rng.below(bad.len());
            bad[i] ^= 1 + rng.below(255) as u8;
            let result = decoded(&bad, &table, symbols.len()).map(|got| got == symbols);
            // Undetected only counts if the decoded symbols differ.
            if !matches!(result, Ok(true)) {
                detected += 1;
            }
        }
        assert!(detected * 100 >= trials * 99, "detected {detected}/{trials}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(7);
        let tables = [
            FreqTable::from_counts(&[5, 1, 0, 1]),
            FreqTable::from_counts(&(0..256).map(|i| 1 + i).collect::<Vec<u64>>()),
            FreqTable::single_symbol(),
        ];
        for _ in 0..5000 {
            let len = rng.below(64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len >= 4 && rng.below(2) == 0 {
                // Make the state valid so decoding gets further.
                bytes[3] = 0x01 + rng.below(0x7f) as u8;
            }
            let Ok(mut dec) = RansDecoder::new(&bytes) else {
                continue;
            };
            for _ in 0..rng.below(200) {
                let r = match rng.below(4) {
                    0 => dec.get_bits(rng.below(40) as u32).map(|_| ()),
                    k => dec.get_symbol(&tables[k - 1]).map(|_| ()),
                };
                if r.is_err() {
                    break;
                }
            }
            let _ = dec.finish();
        }
    }

    /// Throughput measurement; run with
    /// `cargo test --release -- --ignored --nocapture rans_throughput`.
    #[test]
    #[ignore = "timing only"]
    fn rans_throughput() {
        let mut rng = Rng::new(8);
        let n = 20_000_000;
        let symbols = skewed_symbols(&mut rng, n, 64, 1);
        let counts = histogram(&symbols);
        let table = FreqTable::from_counts(&counts);
        let mut enc = RansEncoder::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        let t0 = std::time::Instant::now();
        for &s in &symbols {
            enc.put_symbol(&table, s);
        }
        enc.finish(&mut out);
        let enc_s = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let mut dec = RansDecoder::new(&out).unwrap();
        let mut check = 0u64;
        for _ in 0..n {
            check += u64::from(dec.get_symbol(&table).unwrap());
        }
        dec.finish().unwrap();
        let dec_s = t1.elapsed().as_secs_f64();
        let ideal = entropy_bits(&counts) / 8.0;
        println!(
            "rANS: encode {:.1} M sym/s, decode {:.1} M sym/s, {} bytes vs ideal {:.0} (+{:.4}%), check {check}",
            n as f64 / enc_s / 1e6,
            n as f64 / dec_s / 1e6,
            out.len(),
            ideal,
            (out.len() as f64 / ideal - 1.0) * 100.0
        );
    }
}
