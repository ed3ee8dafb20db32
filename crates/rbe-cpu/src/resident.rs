//! The packed resident form of a layer's weights for the direct modes, built once from the
//! tensor's [`BlockView`]s: dense residuals as lane-packed planes ([`crate::pack`]) plus their
//! outliers, sparse residuals as their entry bytes copied verbatim, and the parameters.
//!
//! Progressive layers split each dense plane of more than 4 bits into a high plane (4 bits) and a
//! low plane stored as the signed offset from the low bits' midpoint.

use crate::error::CpuError;
use crate::pack::{PackShape, pack_plane, unpack_plane};
use crate::simd;
use rbe_format::codec::N_PARAMS;
use rbe_format::codec::{EntryReader, decode_value};
use rbe_format::{BlockConfig, EncodedTensor, ParamsPrecision, ResidualView};

/// A dense block: its packed plane(s), step and outliers.
#[derive(Debug, Clone)]
pub(crate) struct DenseBlk {
    /// Main plane (progressive: the high plane) and its word offset.
    pub main: (PackShape, u32),
    /// Progressive low plane (`lo_bits > 0`).
    pub lo: Option<(PackShape, u32)>,
    /// Bits in the low plane (0: none).
    pub lo_bits: u8,
    /// Quantisation step.
    pub step: f32,
    /// Outliers: range into [`Resident::outliers`].
    pub out_start: u32,
    /// Number of outliers.
    pub out_len: u32,
}

/// A sparse block: its entries in [`Resident::sparse_bytes`].
#[derive(Debug, Clone)]
pub(crate) struct SparseBlk {
    /// Offset of its entry bytes.
    pub start: u32,
    /// Number of entries `K`.
    pub k: u32,
    /// Scale of quantised codecs.
    pub scale: f32,
}

/// One resident block.
#[derive(Debug, Clone)]
pub(crate) enum Blk {
    /// Dense residual.
    Dense(DenseBlk),
    /// Sparse residual.
    Sparse(SparseBlk),
}

/// The resident weights of a direct-mode layer.
#[derive(Debug)]
pub(crate) struct Resident {
    /// Per block, row-major over the grid.
    pub blocks: Vec<Blk>,
    /// Packed planes.
    pub words: Vec<u32>,
    /// Dense outliers `(position, value)`.
    pub outliers: Vec<(u16, i16)>,
    /// Sparse entry bytes as stored.
    pub sparse_bytes: Vec<u8>,
    /// Parameters per block (absent when the tensor stores none).
    pub params: Option<Vec<[f32; N_PARAMS]>>,
    /// The f32 reader of sparse entries.
    pub entries: EntryReader,
    /// Progressive coarse bound `E` (0 unless the planes were split).
    pub coarse_bound: f64,
    block: usize,
}

impl Resident {
    /// Packs every block of `tensor`; `progressive` splits dense planes into high and low.
    pub fn build(tensor: &EncodedTensor, progressive: bool) -> Result<Self, CpuError> {
        let cfg: BlockConfig = *tensor.config();
        let b = cfg.block;
        let n = tensor.block_count();
        let name = tensor.name();
        let mut r = Resident {
            blocks: Vec::with_capacity(n),
            words: Vec::new(),
            outliers: Vec::new(),
            sparse_bytes: Vec::new(),
            params: (cfg.params != ParamsPrecision::None).then(|| Vec::with_capacity(n)),
            entries: EntryReader::new(cfg.layout, cfg.values),
            coarse_bound: 0.0,
            block: b,
        };
        let mut q = vec![0i32; b * b];
        let mut coarse_sq = 0f64;
        let offset = |len: usize, i: usize| {
            u32::try_from(len).map_err(|_| CpuError::Block {
                tensor: name.to_owned(),
                block: i,
                reason: "resident data exceeds 4 G entries".into(),
            })
        };
        for (i, view) in tensor.blocks().enumerate() {
            let view = view?;
            if let Some(p) = r.params.as_mut() {
                p.push(view.params().0);
            }
            match view.residual() {
                ResidualView::Dense(d) => {
                    let w = u32::from(d.width());
                    let out_start = offset(r.outliers.len(), i)?;
                    d.unpack_payload(&mut q);
                    r.outliers.extend(d.outliers());
                    let out_len = offset(r.outliers.len(), i)? - out_start;
                    let lo_bits = if progressive && w > 4 { w - 4 } else { 0 };
                    let (main, lo) = if lo_bits == 0 {
                        let sh = PackShape::new(b, w);
                        let off = offset(r.words.len(), i)?;
                        pack_plane(&q, &sh, &mut r.words);
                        ((sh, off), None)
                    } else {
                        let half = 1i32 << (lo_bits - 1);
                        let hi: Vec<i32> = q.iter().map(|&v| v >> lo_bits).collect();
                        let lo: Vec<i32> = q.iter().map(|&v| (v & ((1 << lo_bits) - 1)) - half).collect();
                        let sh_hi = PackShape::new(b, w - lo_bits);
                        let sh_lo = PackShape::new(b, lo_bits);
                        let off_hi = offset(r.words.len(), i)?;
                        pack_plane(&hi, &sh_hi, &mut r.words);
                        let off_lo = offset(r.words.len(), i)?;
                        pack_plane(&lo, &sh_lo, &mut r.words);
                        let e = f64::from(d.step()) * (f64::from((1u32 << lo_bits) - 1) / 2.0);
                        coarse_sq += e * e * (b * b) as f64;
                        ((sh_hi, off_hi), Some((sh_lo, off_lo)))
                    };
                    r.blocks.push(Blk::Dense(DenseBlk {
                        main,
                        lo,
                        lo_bits: lo_bits as u8,
                        step: d.step(),
                        out_start,
                        out_len,
                    }));
                }
                ResidualView::Sparse(s) => {
                    let start = offset(r.sparse_bytes.len(), i)?;
                    r.sparse_bytes.extend_from_slice(s.entry_bytes());
                    r.blocks.push(Blk::Sparse(SparseBlk { start, k: s.len() as u32, scale: s.scale() }));
                }
            }
        }
        r.coarse_bound = coarse_sq.sqrt();
        Ok(r)
    }

    /// Block edge.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The packed words of a plane at `off`.
    #[inline]
    pub fn plane(&self, off: u32) -> &[u32] {
        &self.words[off as usize..]
    }

    /// The entry bytes of a sparse block.
    #[inline]
    pub fn entries_of(&self, s: &SparseBlk) -> &[u8] {
        &self.sparse_bytes[s.start as usize..s.start as usize + s.k as usize * self.entries.entry_bytes()]
    }

    /// The outliers of a dense block.
    #[inline]
    pub fn outliers_of(&self, d: &DenseBlk) -> &[(u16, i16)] {
        &self.outliers[d.out_start as usize..(d.out_start + d.out_len) as usize]
    }

    /// Prefetches the entry bytes of a sparse block (dense planes are prefetched by the kernels).
    #[inline]
    pub fn prefetch_sparse(&self, s: &SparseBlk) {
        simd::prefetch(self.entries_of(s));
    }

    /// Weight bytes resident (`lo`: with the progressive low planes).
    pub fn weight_bytes(&self, lo: bool) -> usize {
        let mut words = 0;
        for blk in &self.blocks {
            if let Blk::Dense(d) = blk {
                words += d.main.0.words();
                if lo {
                    words += d.lo.map_or(0, |(s, _)| s.words());
                }
            }
        }
        4 * words + 4 * self.outliers.len() + self.sparse_bytes.len() + self.params.as_ref().map_or(0, |p| 64 * p.len())
    }

    /// Bytes of the per-block descriptors.
    pub fn descriptor_bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Blk>()
    }

    /// The residual coefficient matrix `R` of block `idx` (`b * b`, row-major), exact, with
    /// caller scratch `q`, `lo_q` of `b * b` each.
    pub fn exact_coefficients(&self, idx: usize, out: &mut [f64], q: &mut [i32], lo_q: &mut [i32]) {
        let b = self.block;
        out.fill(0.0);
        match &self.blocks[idx] {
            Blk::Dense(d) => {
                unpack_plane(self.plane(d.main.1), &d.main.0, q);
                if let Some((sh, off)) = d.lo {
                    unpack_plane(self.plane(off), &sh, lo_q);
                    let half = 1i32 << (d.lo_bits - 1);
                    for (qq, l) in q.iter_mut().zip(lo_q.iter()) {
                        *qq = (*qq << d.lo_bits) + l + half;
                    }
                }
                let step = f64::from(d.step);
                for (o, &qq) in out.iter_mut().zip(q.iter()) {
                    *o = f64::from(qq) * step;
                }
                for &(pos, val) in self.outliers_of(d) {
                    out[usize::from(pos)] = f64::from(val) * step;
                }
            }
            Blk::Sparse(s) => {
                let eb = self.entries.entry_bytes();
                let codec = self.entries.codec();
                for e in self.entries_of(s).chunks_exact(eb) {
                    let (i, j, field) = self.entries.coefficient(e);
                    out[usize::from(i) * b + usize::from(j)] = decode_value(codec, field, s.scale);
                }
            }
        }
    }
}
