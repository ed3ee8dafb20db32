//! Entropy-coded block storage (format.md 5): a semi-static model (tables built from the tensor's
//! own blocks, stored once in the stream's prelude) and the rANS coding of each block.
//!
//! Why semi-static rANS and not an adaptive model: every block must decode alone (random access,
//! parallel loading), so an adaptive model would restart cold at each block and pay its learning
//! cost 36-2862 times per tensor; one table per tensor costs a few hundred bytes once. rANS decodes a
//! symbol with one table lookup and a multiply, and raw bits ride in the same stream.

use crate::block::{
    Coefficient, EncodedBlock, Residual, check_coefficient, check_scale, check_step, write_dense, write_params,
    write_sparse_head,
};
use crate::entropy::rans::{RansDecoder, RansEncoder};
use crate::entropy::table::FreqTable;
use crate::entropy::token::UintTokenizer;
use crate::error::BlockError;
use crate::layout;
use crate::settings::{BlockConfig, ValueCodec};
use crate::varint::{read_varint, write_varint};
use half::f16;

/// Table numbers (format.md 5).
const HEAD: usize = 0;
const GAP: usize = 1;
const DENSE_VALUE: usize = 2;
const WIDTH: usize = 3;
const SPARSE_VALUE: usize = 4;
const N_TABLES: usize = 5;

/// Tokenizer settings per table, chosen by the encoder and stored in the prelude.
const DEFAULT_TOKENIZERS: [(u32, u32); N_TABLES] = [(4, 2), (4, 2), (5, 3), (4, 2), (4, 2)];
/// Largest integer any table codes (zigzag of an i16 is < 65536, head 4097, gaps < 4096).
const MAX_CODED: u32 = u16::MAX as u32;

/// The tensor's entropy model: one frequency table and tokenizer per coded field.
#[derive(Debug, Clone)]
pub struct EntropyModel {
    tables: Vec<FreqTable>,
    tokenizers: Vec<UintTokenizer>,
    /// Bit pattern of the dense step most blocks use.
    default_step: u32,
}

trait Sink {
    fn uint(&mut self, table: usize, v: u32);
    fn bits(&mut self, v: u32, n: u32);
}

struct Counter {
    tokenizers: Vec<UintTokenizer>,
    counts: Vec<Vec<u64>>,
}

impl Sink for Counter {
    fn uint(&mut self, table: usize, v: u32) {
        let (token, _, _) = self.tokenizers[table].token(v);
        let c = &mut self.counts[table];
        if c.len() <= usize::from(token) {
            c.resize(usize::from(token) + 1, 0);
        }
        c[usize::from(token)] += 1;
    }
    fn bits(&mut self, _: u32, _: u32) {}
}

struct Coder<'a> {
    model: &'a EntropyModel,
    enc: &'a mut RansEncoder,
}

impl Sink for Coder<'_> {
    fn uint(&mut self, table: usize, v: u32) {
        let tok = &self.model.tokenizers[table];
        let (token, raw, nbits) = tok.token(v);
        self.enc.put_symbol(&self.model.tables[table], token);
        if nbits > 0 {
            self.enc.put_bits(raw, nbits);
        }
    }
    fn bits(&mut self, v: u32, n: u32) {
        self.enc.put_bits(v, n);
    }
}

/// Zigzag map of a signed integer to an unsigned one: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ...
#[inline]
pub fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

fn magnitude_and_sign(codec: ValueCodec, field: u32) -> (u32, u32) {
    match codec {
        ValueCodec::Q9s => (field & 511, (field >> 9) & 1),
        ValueCodec::MuLaw8 => (field & 127, (field >> 7) & 1),
        _ => unreachable!("only sign-magnitude codecs are split"),
    }
}

fn field_from(codec: ValueCodec, magnitude: u32, sign: u32) -> Result<u32, BlockError> {
    Ok(match codec {
        ValueCodec::Q9s => {
            if magnitude > 511 {
                return Err(BlockError::ValueRange("q9s magnitude"));
            }
            magnitude | (sign << 9)
        }
        ValueCodec::MuLaw8 => {
            if magnitude > 127 {
                return Err(BlockError::ValueRange("mu-law magnitude"));
            }
            magnitude | (sign << 7)
        }
        _ => unreachable!("only sign-magnitude codecs are split"),
    })
}

fn i16_from_zigzag(u: u32) -> Result<i16, BlockError> {
    i16::try_from(unzigzag(u)).map_err(|_| BlockError::ValueRange("value beyond i16"))
}

fn visit(block: &EncodedBlock, cfg: &BlockConfig, default_step: u32, sink: &mut impl Sink) {
    let b = cfg.block as u32;
    match &block.residual {
        Residual::Sparse(s) => {
            sink.uint(HEAD, s.coefficients.len() as u32);
            match cfg.values.scale_bytes(cfg.layout) {
                0 => {}
                2 => sink.bits(u32::from(f16::from_f32(s.scale).to_bits()), 16),
                _ => sink.bits(s.scale.to_bits(), 32),
            }
            let mut next = 0u32;
            for c in &s.coefficients {
                let p = u32::from(c.row) * b + u32::from(c.col);
                sink.uint(GAP, p - next);
                next = p + 1;
                match cfg.values {
                    ValueCodec::F32 => sink.bits(c.field, 32),
                    ValueCodec::F16 => sink.bits(c.field, 16),
                    ValueCodec::Q16 => sink.uint(SPARSE_VALUE, zigzag(i32::from(c.field as u16 as i16))),
                    codec => {
                        let (m, sign) = magnitude_and_sign(codec, c.field);
                        sink.uint(SPARSE_VALUE, m);
                        sink.bits(sign, 1);
                    }
                }
            }
        }
        Residual::Dense(d) => {
            sink.uint(HEAD, cfg.dense_head() as u32);
            sink.uint(WIDTH, u32::from(d.width));
            // Blocks of a tensor usually share one step: one flag bit instead of 32.
            if d.step.to_bits() == default_step {
                sink.bits(1, 1);
            } else {
                sink.bits(0, 1);
                sink.bits(d.step.to_bits(), 32);
            }
            for &q in &d.values {
                sink.uint(DENSE_VALUE, zigzag(i32::from(q)));
            }
        }
    }
}

impl EntropyModel {
    /// Builds the tables from the blocks they will code.
    pub fn build(blocks: &[EncodedBlock], cfg: &BlockConfig) -> Self {
        let tokenizers: Vec<UintTokenizer> =
            DEFAULT_TOKENIZERS.iter().map(|&(d, m)| UintTokenizer::new(d, m)).collect();
        // The most common dense step (ties: the smallest bit pattern), deterministic.
        let mut steps: Vec<u32> = blocks
            .iter()
            .filter_map(|b| match &b.residual {
                Residual::Dense(d) => Some(d.step.to_bits()),
                Residual::Sparse(_) => None,
            })
            .collect();
        steps.sort_unstable();
        let mut default_step = 0;
        let mut best = 0;
        for run in steps.chunk_by(|a, b| a == b) {
            if run.len() > best {
                best = run.len();
                default_step = run[0];
            }
        }
        let mut counter = Counter { tokenizers: tokenizers.clone(), counts: vec![Vec::new(); N_TABLES] };
        for block in blocks {
            visit(block, cfg, default_step, &mut counter);
        }
        let tables = counter.counts.iter().map(|c| FreqTable::from_counts(c)).collect();
        EntropyModel { tables, tokenizers, default_step }
    }

    /// Appends the prelude (format.md 5).
    pub fn write(&self, out: &mut Vec<u8>) {
        write_varint(out, self.tables.len() as u64);
        for (t, &(d, m)) in self.tables.iter().zip(&DEFAULT_TOKENIZERS) {
            out.push(d as u8);
            out.push(m as u8);
            t.write(out);
        }
        out.extend_from_slice(&self.default_step.to_le_bytes());
    }

    /// Reads a prelude written by [`EntropyModel::write`]; it must be consumed exactly.
    pub fn read(bytes: &[u8]) -> Result<Self, BlockError> {
        let mut pos = 0;
        let n = read_varint(bytes, &mut pos, 2)?;
        if n != N_TABLES as u64 {
            return Err(BlockError::Entropy(crate::entropy::EntropyError::TableInvalid("table count")));
        }
        let mut tables = Vec::with_capacity(N_TABLES);
        let mut tokenizers = Vec::with_capacity(N_TABLES);
        for _ in 0..N_TABLES {
            let d = u32::from(*bytes.get(pos).ok_or(BlockError::Truncated)?);
            let m = u32::from(*bytes.get(pos + 1).ok_or(BlockError::Truncated)?);
            pos += 2;
            let tok = UintTokenizer::try_new(d, m)
                .ok_or(BlockError::Entropy(crate::entropy::EntropyError::TableInvalid("tokenizer")))?;
            tokenizers.push(tok);
            tables.push(FreqTable::read(bytes, &mut pos)?);
        }
        let step = bytes.get(pos..pos + 4).ok_or(BlockError::Truncated)?;
        let default_step = u32::from_le_bytes([step[0], step[1], step[2], step[3]]);
        pos += 4;
        if pos != bytes.len() {
            return Err(BlockError::TrailingBytes(bytes.len() - pos));
        }
        Ok(EntropyModel { tables, tokenizers, default_step })
    }

    /// Appends the coded form of `block`: raw parameter bytes, then the rANS body.
    pub fn encode_block(&self, block: &EncodedBlock, cfg: &BlockConfig, enc: &mut RansEncoder, out: &mut Vec<u8>) {
        let mut raw = Vec::with_capacity(32);
        write_params(&block.params, cfg.params, &mut raw);
        out.extend_from_slice(&raw);
        visit(block, cfg, self.default_step, &mut Coder { model: self, enc });
        enc.finish(out);
    }

    fn uint(&self, dec: &mut RansDecoder<'_>, table: usize) -> Result<u32, BlockError> {
        let tok = &self.tokenizers[table];
        let token = dec.get_symbol(&self.tables[table])?;
        let nbits = tok.raw_bits(token);
        if nbits > 24 {
            return Err(BlockError::Entropy(crate::entropy::EntropyError::Corrupt("token too large")));
        }
        let raw = if nbits > 0 { dec.get_bits(nbits)? } else { 0 };
        let v = tok.value(token, raw);
        if v > MAX_CODED {
            return Err(BlockError::Entropy(crate::entropy::EntropyError::Corrupt("integer out of range")));
        }
        Ok(v)
    }

    /// Decodes one coded block (exactly `bytes`) to an owned block.
    pub fn decode_block(&self, bytes: &[u8], cfg: &BlockConfig) -> Result<EncodedBlock, BlockError> {
        let mut runtime = Vec::new();
        self.decode_block_into(bytes, cfg, &mut Vec::new(), &mut runtime)?;
        EncodedBlock::parse(&runtime, cfg)
    }

    /// Decodes one coded block (exactly `bytes`) straight to its runtime bytes (format.md 3.3),
    /// appended to `out`, validating it by the rules of [`EncodedBlock::validate`] on the way.
    /// `scratch` holds a dense block's values between decoding and packing. On error `out` is
    /// left as it was.
    pub fn decode_block_into(
        &self,
        bytes: &[u8],
        cfg: &BlockConfig,
        scratch: &mut Vec<i32>,
        out: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        let start = out.len();
        let r = self.decode_runtime(bytes, cfg, scratch, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn decode_runtime(
        &self,
        bytes: &[u8],
        cfg: &BlockConfig,
        q: &mut Vec<i32>,
        out: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        let mut pos = 0;
        // Parameters are stored raw, exactly as in the runtime layout.
        crate::block::read_params(bytes, &mut pos, cfg.params)?;
        out.extend_from_slice(&bytes[..pos]);
        let mut dec = RansDecoder::new(&bytes[pos..])?;
        let head = self.uint(&mut dec, HEAD)?;
        let n = cfg.block_area();
        // A block that decodes but breaks a block rule reports the first broken rule, after a
        // corrupt stream's own error (the order of decoding everything, then validating).
        let mut invalid: Option<BlockError> = None;
        let mut note = |r: Result<(), BlockError>| {
            if let Err(e) = r {
                invalid.get_or_insert(e);
            }
        };
        if (head as usize) <= n {
            let scale_bytes = cfg.values.scale_bytes(cfg.layout);
            let scale = match scale_bytes {
                0 => 1.0,
                2 => f16::from_bits(dec.get_bits(16)? as u16).to_f32(),
                _ => f32::from_bits(dec.get_bits(32)?),
            };
            note(check_scale(cfg, scale));
            write_sparse_head(head as usize, scale, cfg, out);
            let mut next = 0usize;
            let mut prev = None;
            for i in 0..head as usize {
                let p = next + self.uint(&mut dec, GAP)? as usize;
                if p >= n {
                    return Err(BlockError::CoordinateOutOfRange {
                        row: (p / cfg.block) as u32,
                        col: (p % cfg.block) as u32,
                        block: cfg.block,
                    });
                }
                next = p + 1;
                let field = match cfg.values {
                    ValueCodec::F32 => dec.get_bits(32)?,
                    ValueCodec::F16 => dec.get_bits(16)?,
                    ValueCodec::Q16 => u32::from(i16_from_zigzag(self.uint(&mut dec, SPARSE_VALUE)?)? as u16),
                    codec => {
                        let m = self.uint(&mut dec, SPARSE_VALUE)?;
                        let sign = dec.get_bits(1)?;
                        field_from(codec, m, sign)?
                    }
                };
                let c = Coefficient { row: (p / cfg.block) as u16, col: (p % cfg.block) as u16, field };
                note(check_coefficient(cfg, prev, i, &c));
                prev = Some((c.row, c.col));
                layout::pack_entry(cfg.layout, c.row, c.col, c.field, out);
            }
        } else if u64::from(head) == cfg.dense_head() {
            let width = self.uint(&mut dec, WIDTH)?;
            if !(1..=16).contains(&width) {
                return Err(BlockError::BadWidth(width.min(255) as u8));
            }
            let step = if dec.get_bits(1)? == 1 {
                f32::from_bits(self.default_step)
            } else {
                f32::from_bits(dec.get_bits(32)?)
            };
            note(check_step(step));
            q.clear();
            for _ in 0..n {
                q.push(i32::from(i16_from_zigzag(self.uint(&mut dec, DENSE_VALUE)?)?));
            }
            write_dense(cfg, width as u8, step, q, out);
        } else {
            return Err(BlockError::UnknownHead(u64::from(head)));
        }
        dec.finish()?;
        invalid.map_or(Ok(()), Err)
    }
}
