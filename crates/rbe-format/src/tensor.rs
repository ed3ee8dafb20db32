//! `EncodedTensor`: a tensor's description, block grid and runtime block stream (format.md 1, 4),
//! with conversion to and from the stored stream and the reference decode to dense f32.

use crate::block::{BlockDecoder, EncodedBlock};
use crate::coded::EntropyModel;
use crate::desc::{EncodeStats, TensorDesc, stream_checksum};
use crate::entropy::rans::RansEncoder;
use crate::error::{BlockError, FormatError};
use crate::grid::BlockGrid;
use crate::settings::{BlockConfig, Entropy};
use crate::shared::SharedBytes;
use crate::view::BlockView;
use rayon::prelude::*;

/// Blocks per parallel decoding run of an entropy-coded stream.
const DECODE_RUN: usize = 64;

/// A compressed tensor, held in the runtime layout (entropy coding already undone).
#[derive(Debug, Clone)]
pub struct EncodedTensor {
    name: String,
    desc: TensorDesc,
    stats: EncodeStats,
    cfg: BlockConfig,
    grid: BlockGrid,
    /// Runtime block bytes, concatenated.
    blocks: SharedBytes,
    /// End offset of each block in `blocks`.
    ends: Vec<u32>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl EncodedTensor {
    /// Builds a tensor from its blocks (row-major grid order) and description, with empty
    /// statistics. `desc.stream_bytes` and `desc.xxh3` are filled in by [`EncodedTensor::to_stream`].
    pub fn from_blocks(name: &str, desc: TensorDesc, blocks: &[EncodedBlock]) -> Result<Self, FormatError> {
        let cfg = desc.block_config()?;
        let (rows, cols) = desc.matrix_shape().map_err(|e| FormatError::shape(name, e))?;
        let grid = BlockGrid::new(rows, cols, cfg.block);
        if blocks.len() != grid.count() {
            return Err(FormatError::tensor(
                name,
                format!("{} blocks for a {}x{} grid", blocks.len(), grid.block_rows(), grid.block_cols()),
            ));
        }
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            b.write(&cfg, &mut bytes).map_err(|e| FormatError::block(name, i, e))?;
            ends.push(u32::try_from(bytes.len()).map_err(|_| FormatError::limit(name, "stream exceeds 4 GiB"))?);
        }
        let stats = EncodeStats::default();
        Ok(EncodedTensor { name: name.to_owned(), desc, stats, cfg, grid, blocks: bytes.into(), ends })
    }

    /// Reads a stored stream (format.md 4, 5), checking the checksum when `verify_checksum`.
    /// Entropy-coded blocks are decoded to the runtime layout; raw streams stay zero-copy.
    pub fn from_stream(
        name: &str,
        desc: TensorDesc,
        stream: SharedBytes,
        verify_checksum: bool,
    ) -> Result<Self, FormatError> {
        let err = |r: String| FormatError::tensor(name, r);
        let cfg = desc.block_config().map_err(|e| err(e.to_string()))?;
        let (rows, cols) = desc.matrix_shape().map_err(|e| FormatError::shape(name, e))?;
        if stream.len() as u64 != desc.stream_bytes {
            return Err(err(format!("stream holds {} bytes, description says {}", stream.len(), desc.stream_bytes)));
        }
        if verify_checksum {
            let got = stream_checksum(&desc, &stream);
            if got != desc.xxh3 {
                return Err(FormatError::Checksum {
                    tensor: name.to_owned(),
                    covers: "description and stream",
                    stored: desc.xxh3.clone(),
                    computed: got,
                });
            }
        }
        let grid = BlockGrid::new(rows, cols, cfg.block);
        let n_blocks = grid.count();
        let prelude_len =
            read_u32(&stream, 0).ok_or_else(|| err("stream shorter than its prelude length".into()))? as usize;
        let index_at = 4usize
            .checked_add(prelude_len)
            .filter(|&e| e <= stream.len())
            .ok_or_else(|| err("prelude runs past the stream".into()))?;
        // Check the index fits before allocating anything sized by the grid.
        let blocks_at = n_blocks
            .checked_mul(4)
            .and_then(|l| l.checked_add(index_at))
            .filter(|&e| e <= stream.len())
            .ok_or_else(|| err(format!("stream too short for the index of {n_blocks} blocks")))?;
        let area_len = stream.len() - blocks_at;
        let mut ends = Vec::with_capacity(n_blocks);
        let mut prev = 0u32;
        for i in 0..n_blocks {
            let e = read_u32(&stream, index_at + 4 * i).expect("bounds checked above");
            if e < prev || e as usize > area_len {
                return Err(FormatError::block(name, i, BlockError::Truncated));
            }
            ends.push(e);
            prev = e;
        }
        if prev as usize != area_len {
            return Err(err(format!("{} bytes after the last block", area_len - prev as usize)));
        }
        let area = stream.slice(blocks_at..stream.len()).expect("in bounds");
        let (blocks, ends) = match desc.entropy {
            Entropy::None => {
                if prelude_len != 0 {
                    return Err(err("raw stream with a non-empty prelude".into()));
                }
                (area, ends)
            }
            Entropy::Rans => {
                let model = EntropyModel::read(&stream[4..index_at])
                    .map_err(|source| FormatError::Prelude { tensor: name.to_owned(), source })?;
                // Blocks decode independently: runs of them in parallel, each run written once
                // in the runtime layout and the runs joined in order.
                let runs: Vec<(Vec<u8>, Vec<usize>)> = (0..n_blocks.div_ceil(DECODE_RUN))
                    .into_par_iter()
                    .map(|run| {
                        let (first, last) = (run * DECODE_RUN, ((run + 1) * DECODE_RUN).min(n_blocks));
                        let mut bytes = Vec::new();
                        let mut run_ends = Vec::with_capacity(last - first);
                        let mut scratch = Vec::new();
                        for i in first..last {
                            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                            model
                                .decode_block_into(&area[start..ends[i] as usize], &cfg, &mut scratch, &mut bytes)
                                .map_err(|x| FormatError::block(name, i, x))?;
                            run_ends.push(bytes.len());
                        }
                        Ok((bytes, run_ends))
                    })
                    .collect::<Result<_, FormatError>>()?;
                let total: usize = runs.iter().map(|r| r.0.len()).sum();
                let mut runtime = Vec::with_capacity(total);
                let mut runtime_ends = Vec::with_capacity(n_blocks);
                for (bytes, run_ends) in runs {
                    let base = runtime.len();
                    runtime.extend_from_slice(&bytes);
                    for e in run_ends {
                        runtime_ends.push(
                            u32::try_from(base + e)
                                .map_err(|_| FormatError::limit(name, "runtime stream exceeds 4 GiB"))?,
                        );
                    }
                }
                (SharedBytes::from(runtime), runtime_ends)
            }
        };
        let t = EncodedTensor { name: name.to_owned(), desc, stats: EncodeStats::default(), cfg, grid, blocks, ends };
        if t.desc.entropy == Entropy::None {
            // Raw blocks are read in place later: validate them all now so a bad block never
            // surfaces in the middle of a product. (Decoded blocks were validated as decoded.)
            (0..n_blocks).into_par_iter().try_for_each(|i| t.view(i).map(drop))?;
        }
        Ok(t)
    }

    /// Builds a tensor from its blocks and serialises it in one go (no re-parse of the runtime
    /// bytes): returns the tensor (description completed) and its stored stream.
    pub fn encode(
        name: &str,
        desc: TensorDesc,
        blocks: &[EncodedBlock],
        entropy: Entropy,
    ) -> Result<(Self, Vec<u8>), FormatError> {
        let mut t = Self::from_blocks(name, desc, blocks)?;
        let stream = t.stream_of(entropy, Some(blocks))?;
        Ok((t, stream))
    }

    /// Serialises to the stored stream with the given storage coding, and records the stream's
    /// size, checksum and coding in the description.
    pub fn to_stream(&mut self, entropy: Entropy) -> Result<Vec<u8>, FormatError> {
        self.stream_of(entropy, None)
    }

    fn stream_of(&mut self, entropy: Entropy, parsed: Option<&[EncodedBlock]>) -> Result<Vec<u8>, FormatError> {
        let n = self.block_count();
        let mut out = Vec::with_capacity(self.blocks.len() + 4 * n + 64);
        match entropy {
            Entropy::None => {
                out.extend_from_slice(&0u32.to_le_bytes());
                for e in &self.ends {
                    out.extend_from_slice(&e.to_le_bytes());
                }
                out.extend_from_slice(&self.blocks);
            }
            Entropy::Rans => {
                let owned: Vec<EncodedBlock>;
                let blocks = match parsed {
                    Some(b) => b,
                    None => {
                        owned = (0..n).into_par_iter().map(|i| self.block(i)).collect::<Result<_, _>>()?;
                        &owned
                    }
                };
                let model = EntropyModel::build(blocks, &self.cfg);
                let mut prelude = Vec::new();
                model.write(&mut prelude);
                let cfg = self.cfg;
                let pieces: Vec<Vec<u8>> = blocks
                    .par_iter()
                    .map_init(RansEncoder::new, |enc, b| {
                        let mut bytes = Vec::new();
                        model.encode_block(b, &cfg, enc, &mut bytes);
                        bytes
                    })
                    .collect();
                let mut area = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
                let mut ends = Vec::with_capacity(n);
                for p in pieces {
                    area.extend_from_slice(&p);
                    ends.push(
                        u32::try_from(area.len())
                            .map_err(|_| FormatError::limit(&self.name, "stream exceeds 4 GiB"))?,
                    );
                }
                out.extend_from_slice(&(prelude.len() as u32).to_le_bytes());
                out.extend_from_slice(&prelude);
                for e in &ends {
                    out.extend_from_slice(&e.to_le_bytes());
                }
                out.extend_from_slice(&area);
            }
        }
        self.desc.entropy = entropy;
        self.desc.stream_bytes = out.len() as u64;
        self.desc.xxh3 = stream_checksum(&self.desc, &out);
        Ok(out)
    }

    /// Tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its checksummed description.
    pub fn desc(&self) -> &TensorDesc {
        &self.desc
    }
    /// The encoder's statistics stored beside the description (informational).
    pub fn stats(&self) -> &EncodeStats {
        &self.stats
    }
    /// Replaces the statistics (the encoder records what it measured); they are outside the
    /// checksum and change nothing a reader decodes.
    pub fn set_stats(&mut self, stats: EncodeStats) {
        self.stats = stats;
    }
    /// The tensor with `stats` as its statistics.
    pub fn with_stats(mut self, stats: EncodeStats) -> Self {
        self.stats = stats;
        self
    }
    /// Block configuration.
    pub fn config(&self) -> &BlockConfig {
        &self.cfg
    }
    /// Rows of the 2-D matrix.
    pub fn rows(&self) -> usize {
        self.grid.rows()
    }
    /// Columns of the 2-D matrix.
    pub fn cols(&self) -> usize {
        self.grid.cols()
    }
    /// Block grid `(block rows, block columns)`.
    pub fn grid(&self) -> (usize, usize) {
        self.grid.dims()
    }
    /// The block grid: counts, numbering and extents of the blocks.
    pub fn block_grid(&self) -> &BlockGrid {
        &self.grid
    }
    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.ends.len()
    }
    /// Bytes of the runtime block stream (what stays resident).
    pub fn runtime_bytes(&self) -> usize {
        self.blocks.len() + 4 * self.ends.len()
    }
    /// Valid `(height, width)` of block `i`.
    pub fn block_extent(&self, i: usize) -> (usize, usize) {
        self.grid.extent(i)
    }
    /// Runtime bytes of block `i` (section 3 layout), for in-place readers.
    pub fn block_bytes(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.blocks[start..self.ends[i] as usize]
    }
    /// The runtime block stream and the end offset of each block in it (shares the bytes).
    pub fn runtime_stream(&self) -> (&SharedBytes, &[u32]) {
        (&self.blocks, &self.ends)
    }
    /// A borrowed view of block `i`, read in place.
    pub fn view(&self, i: usize) -> Result<BlockView<'_>, FormatError> {
        BlockView::parse(self.block_bytes(i), &self.cfg).map_err(|e| FormatError::block(&self.name, i, e))
    }
    /// Views of every block, in block order (row-major over the grid).
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = Result<BlockView<'_>, FormatError>> + '_ {
        (0..self.block_count()).map(|i| self.view(i))
    }
    /// Parses block `i` into an owned block (prefer [`EncodedTensor::view`] to read it).
    pub fn block(&self, i: usize) -> Result<EncodedBlock, FormatError> {
        self.view(i).map(|v| v.to_block())
    }

    /// Reference decode to the dense row-major `rows x cols` matrix.
    pub fn decode(&self) -> Result<Vec<f32>, FormatError> {
        let cols = self.cols();
        let mut out = vec![0f32; self.rows() * cols];
        let mut dec = BlockDecoder::new(self.cfg);
        let b = self.cfg.block;
        for (i, view) in self.blocks().enumerate() {
            let vals = dec.decode_view(&view?);
            let e = self.grid.block_extent(i);
            for r in 0..e.height {
                let dst = &mut out[(e.row0 + r) * cols + e.col0..][..e.width];
                for (d, s) in dst.iter_mut().zip(&vals[r * b..r * b + e.width]) {
                    *d = *s as f32;
                }
            }
        }
        Ok(out)
    }

    /// Counts of (sparse, dense) blocks and the mean stored coefficients per block.
    pub fn residual_mix(&self) -> Result<(usize, usize, f64), FormatError> {
        let (mut sparse, mut dense, mut k) = (0, 0, 0usize);
        for view in self.blocks() {
            let v = view?;
            k += v.coefficient_count();
            if v.is_dense() {
                dense += 1;
            } else {
                sparse += 1;
            }
        }
        Ok((sparse, dense, k as f64 / self.block_count().max(1) as f64))
    }
}
