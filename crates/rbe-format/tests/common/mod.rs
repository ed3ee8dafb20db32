//! Shared builders for the integration tests: a deterministic PRNG, random valid blocks for any
//! block configuration, hand-made tensors and a small in-memory `.rbe` file.
#![allow(dead_code)] // Each test crate uses a different subset.

use half::f16;
use rbe_format::{
    BLOCK_SIZES, BlockConfig, Coefficient, DenseResidual, EncodedBlock, EncodedTensor, Entropy, Layout,
    ParamsPrecision, RbeParams, RbeWriter, Residual, SharedBytes, SparseResidual, TensorDesc, Transform, ValueCodec,
};

/// Every legal (layout, codec) pair (format.md 3.1).
pub fn legal_pairs() -> Vec<(Layout, ValueCodec)> {
    let mut pairs = Vec::new();
    for &layout in Layout::ALL {
        for &codec in ValueCodec::ALL {
            if layout.accepts(codec) {
                pairs.push((layout, codec));
            }
        }
    }
    pairs
}

/// Every legal block configuration: block size x transform x legal pair x params precision.
pub fn all_configs() -> Vec<BlockConfig> {
    let mut out = Vec::new();
    for block in BLOCK_SIZES {
        for &transform in Transform::ALL {
            for (layout, values) in legal_pairs() {
                for &params in ParamsPrecision::ALL {
                    out.push(BlockConfig { block, transform, layout, values, params });
                }
            }
        }
    }
    out
}

/// SplitMix64: small, deterministic, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[-a, a)`.
    pub fn symmetric(&mut self, a: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * a
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A value the params precision stores exactly (so write -> parse is the identity).
fn storable_param(rng: &mut Rng, p: ParamsPrecision) -> f32 {
    match p {
        ParamsPrecision::None => 0.0,
        ParamsPrecision::F32 => rng.symmetric(2.0) as f32,
        ParamsPrecision::F16 => f16::from_f64(rng.symmetric(2.0)).to_f32(),
    }
}

/// Random parameters valid for `p`.
pub fn random_params(rng: &mut Rng, p: ParamsPrecision) -> RbeParams {
    let mut theta = [0f32; 8];
    for t in &mut theta {
        *t = storable_param(rng, p);
    }
    RbeParams(theta)
}

/// A random value field valid for `codec` under `layout`; with `outlier`, a large value.
pub fn random_field(rng: &mut Rng, layout: Layout, codec: ValueCodec, outlier: bool) -> u32 {
    let magnitude = if outlier { 1000.0 } else { 0.05 };
    match codec {
        ValueCodec::F32 => (rng.symmetric(magnitude) as f32).to_bits(),
        ValueCodec::F16 => u32::from(f16::from_f64(rng.symmetric(magnitude)).to_bits()),
        ValueCodec::Q16 => rng.below(1 << 16) as u32,
        ValueCodec::Q9s => rng.below(1 << 10) as u32,
        ValueCodec::MuLaw8 => {
            let _ = layout;
            rng.below(1 << 8) as u32
        }
    }
}

/// The per-block scale for `codec`: 1.0 when it stores none, else an exactly storable value.
pub fn random_scale(rng: &mut Rng, cfg: &BlockConfig) -> f32 {
    match cfg.values.scale_bytes(cfg.layout) {
        0 => 1.0,
        2 => f16::from_f64(1e-4 + rng.unit() * 0.01).to_f32(),
        _ => (1e-6 + rng.unit() * 1e-3) as f32,
    }
}

/// A random valid sparse block with `k` coefficients (`k <= b*b`).
pub fn sparse_block(rng: &mut Rng, cfg: &BlockConfig, k: usize) -> EncodedBlock {
    let n = cfg.block_area();
    // Choose k distinct positions: shuffle a prefix.
    let mut positions: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = i + rng.below(n - i);
        positions.swap(i, j);
    }
    let mut chosen: Vec<usize> = positions[..k.min(n)].to_vec();
    chosen.sort_unstable();
    let coefficients = chosen
        .into_iter()
        .map(|p| {
            let outlier = rng.chance(0.05);
            Coefficient {
                row: (p / cfg.block) as u16,
                col: (p % cfg.block) as u16,
                field: random_field(rng, cfg.layout, cfg.values, outlier),
            }
        })
        .collect();
    EncodedBlock {
        params: random_params(rng, cfg.params),
        residual: Residual::Sparse(SparseResidual { scale: random_scale(rng, cfg), coefficients }),
    }
}

/// A random valid dense block of `width` bits, with roughly `outlier_rate` outliers.
pub fn dense_block(rng: &mut Rng, cfg: &BlockConfig, width: u8, outlier_rate: f64) -> EncodedBlock {
    let half = 1i32 << (width - 1);
    let values = (0..cfg.block_area())
        .map(|_| {
            if rng.chance(outlier_rate) {
                (rng.below(1 << 16) as i32 - 32768) as i16
            } else {
                (rng.below(2 * half as usize) as i32 - half) as i16
            }
        })
        .collect();
    EncodedBlock {
        params: random_params(rng, cfg.params),
        residual: Residual::Dense(DenseResidual { width, step: (1e-5 + rng.unit() * 1e-3) as f32, values }),
    }
}

/// A random valid block: sparse (random K, sometimes 0 or b*b) or dense (random width 1..=16).
pub fn random_block(rng: &mut Rng, cfg: &BlockConfig) -> EncodedBlock {
    let n = cfg.block_area();
    match rng.below(8) {
        0 => sparse_block(rng, cfg, 0),
        1 => sparse_block(rng, cfg, n),
        2..=4 => {
            let k = rng.below(n.min(200) + 1);
            sparse_block(rng, cfg, k)
        }
        _ => {
            let width = 1 + rng.below(16) as u8;
            let rate = if rng.chance(0.5) { 0.0 } else { 0.02 };
            dense_block(rng, cfg, width, rate)
        }
    }
}

/// A description of a compressed tensor with neutral statistics (the encoder fills these).
pub fn desc(shape: &[u64], cfg: &BlockConfig) -> TensorDesc {
    TensorDesc {
        shape: shape.to_vec(),
        dtype: "F32".to_owned(),
        block: cfg.block,
        transform: cfg.transform,
        layout: cfg.layout,
        values: cfg.values,
        params: cfg.params,
        entropy: Entropy::None,
        profile: None,
        cache_blocks: 0,
        rmse: 0.0,
        rel_rmse: 0.0,
        std: 1.0,
        k_mean: 0.0,
        sparse: 0,
        dense: 0,
        stream_bytes: 0,
        xxh3: String::new(),
    }
}

/// Number of blocks of a tensor of `shape` (flattened to 2-D) at block size `b`.
pub fn grid_blocks(shape: &[u64], b: usize) -> usize {
    let rows = shape[0] as usize;
    let cols: u64 = shape[1..].iter().product();
    rows.div_ceil(b) * (cols as usize).div_ceil(b)
}

/// A tensor of `shape` built from `blocks`, with its block-count statistics filled in.
pub fn tensor(name: &str, shape: &[u64], cfg: &BlockConfig, blocks: &[EncodedBlock]) -> EncodedTensor {
    let mut d = desc(shape, cfg);
    d.sparse = blocks.iter().filter(|b| matches!(b.residual, Residual::Sparse(_))).count();
    d.dense = blocks.len() - d.sparse;
    d.k_mean = blocks.iter().map(EncodedBlock::coefficient_count).sum::<usize>() as f64 / blocks.len().max(1) as f64;
    EncodedTensor::from_blocks(name, d, blocks).expect("valid hand-made tensor")
}

/// A tensor of `shape` with random valid blocks.
pub fn random_tensor(rng: &mut Rng, name: &str, shape: &[u64], cfg: &BlockConfig) -> EncodedTensor {
    let blocks: Vec<EncodedBlock> = (0..grid_blocks(shape, cfg.block)).map(|_| random_block(rng, cfg)).collect();
    tensor(name, shape, cfg, &blocks)
}

/// One tensor of the sample file, as it must decode.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Decoded weights (as bits, so comparisons are exact) and original shape.
    Compressed { shape: Vec<u64>, bits: Vec<u32> },
    /// dtype, shape and raw data.
    Verbatim { dtype: String, shape: Vec<usize>, data: Vec<u8> },
}

/// A small `.rbe` file in memory and what each tensor must decode to (by name, file order).
pub struct SampleFile {
    pub bytes: Vec<u8>,
    pub expected: Vec<(String, Expected)>,
}

fn weight_bits(t: &EncodedTensor) -> Vec<u32> {
    t.decode().expect("hand-made tensor decodes").iter().map(|v| v.to_bits()).collect()
}

/// Writes an `.rbe` with: a raw compressed tensor (edge shape, sparse + dense blocks), an
/// entropy-coded one, a 1xN edge tensor with a 3-D original shape, and a verbatim bias.
pub fn sample_file(seed: u64) -> SampleFile {
    let mut rng = Rng::new(seed);
    let mut expected = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sample.rbe");
    let mut w = RbeWriter::create(&path).expect("create");

    let specs: [(&str, Vec<u64>, BlockConfig, Entropy); 3] = [
        (
            "layers.0.raw",
            vec![20, 12],
            BlockConfig {
                block: 8,
                transform: Transform::Dct,
                layout: Layout::P32,
                values: ValueCodec::Q16,
                params: ParamsPrecision::F16,
            },
            Entropy::None,
        ),
        (
            "layers.0.coded",
            vec![16, 16],
            BlockConfig {
                block: 8,
                transform: Transform::Dwt,
                layout: Layout::B4,
                values: ValueCodec::MuLaw8,
                params: ParamsPrecision::F32,
            },
            Entropy::Rans,
        ),
        (
            "layers.1.conv",
            vec![1, 3, 3],
            BlockConfig {
                block: 8,
                transform: Transform::Dct,
                layout: Layout::P24,
                values: ValueCodec::Q9s,
                params: ParamsPrecision::None,
            },
            Entropy::Rans,
        ),
    ];
    for (name, shape, cfg, entropy) in specs {
        let n = grid_blocks(&shape, cfg.block);
        let blocks: Vec<EncodedBlock> = (0..n)
            .map(|i| {
                if i % 3 == 2 {
                    dense_block(&mut rng, &cfg, 3, 0.05)
                } else {
                    let k = 1 + rng.below(6);
                    sparse_block(&mut rng, &cfg, k)
                }
            })
            .collect();
        let mut t = tensor(name, &shape, &cfg, &blocks);
        let stream = t.to_stream(entropy).expect("to_stream");
        w.add_compressed(name, t.desc(), &stream).expect("add_compressed");
        expected.push((name.to_owned(), Expected::Compressed { shape, bits: weight_bits(&t) }));
    }
    let bias: Vec<u8> = (0..7).flat_map(|i| (i as f32 * 0.25 - 1.0).to_le_bytes()).collect();
    w.add_verbatim("layers.0.bias", "F32", &[7], &bias).expect("add_verbatim");
    expected
        .push(("layers.0.bias".to_owned(), Expected::Verbatim { dtype: "F32".to_owned(), shape: vec![7], data: bias }));
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read back");
    // The file's entries come back in data order, which is the order they were added.
    SampleFile { bytes, expected }
}

/// What every tensor of an accepted file decodes to, in file order.
pub fn decoded_contents(file: &rbe_format::RbeFile) -> Result<Vec<(String, Expected)>, rbe_format::FormatError> {
    let mut out = Vec::new();
    for (name, entry) in file.entries() {
        match entry {
            rbe_format::Entry::Compressed { desc, .. } => {
                let t = file.tensor(name)?;
                out.push((name.clone(), Expected::Compressed { shape: desc.shape.clone(), bits: weight_bits(&t) }));
            }
            rbe_format::Entry::Verbatim(_) => {
                let v = file.verbatim(name)?;
                out.push((
                    name.clone(),
                    Expected::Verbatim { dtype: v.dtype.clone(), shape: v.shape.clone(), data: v.data.to_vec() },
                ));
            }
        }
    }
    Ok(out)
}

/// Opens `bytes` as an `.rbe` and verifies it.
pub fn open_and_verify(bytes: &[u8]) -> Result<rbe_format::RbeFile, rbe_format::FormatError> {
    let file = rbe_format::RbeFile::from_bytes(SharedBytes::from(bytes.to_vec()))?;
    file.verify()?;
    Ok(file)
}

/// The safetensors header: its declared length and the JSON text.
pub fn header_json(bytes: &[u8]) -> (u64, String) {
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let json = String::from_utf8(bytes[8..8 + len as usize].to_vec()).expect("utf-8 header");
    (len, json)
}

/// A hex dump, 16 bytes a line with offsets (for snapshots).
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02X}")).collect();
        out.push_str(&format!("{:04x}: {}\n", i * 16, hex.join(" ")));
    }
    out
}
