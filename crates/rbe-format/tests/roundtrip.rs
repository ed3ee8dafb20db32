//! Round trips over every legal block configuration (block size x transform x layout/codec x
//! params): block `write` -> `parse`, tensor `to_stream` (raw and rANS) -> `from_stream`, value
//! codecs within their error bound, and edge-shaped tensors against an f64 evaluation of the
//! formula in docs/format.md.

mod common;

use common::{Rng, all_configs, dense_block, random_block, random_tensor, sparse_block, tensor};
use proptest::prelude::*;
use rbe_format::codec::{basis_at, decode_value, encode_value, error_bound, scale_for, transform_matrix};
use rbe_format::{
    BlockConfig, Coefficient, DenseResidual, EncodedBlock, EncodedTensor, Entropy, Layout, ParamsPrecision, RbeParams,
    Residual, SharedBytes, SparseResidual, Transform, ValueCodec,
};

fn block_round_trip(block: &EncodedBlock, cfg: &BlockConfig) {
    let mut bytes = Vec::new();
    block.write(cfg, &mut bytes).expect("valid block writes");
    assert_eq!(bytes.len(), block.encoded_len(cfg));
    let back = EncodedBlock::parse(&bytes, cfg).expect("written block parses");
    assert_eq!(&back, block, "{cfg:?}");
    // Parsing is canonical: re-writing gives the same bytes.
    let mut again = Vec::new();
    back.write(cfg, &mut again).expect("re-write");
    assert_eq!(again, bytes);
}

fn tensor_round_trip(t: &mut EncodedTensor) {
    let original: Vec<Vec<u8>> = (0..t.block_count()).map(|i| t.block_bytes(i).to_vec()).collect();
    for entropy in [Entropy::None, Entropy::Rans] {
        let stream = t.to_stream(entropy).expect("to_stream");
        assert_eq!(t.desc().stream_bytes, stream.len() as u64);
        let back = EncodedTensor::from_stream(t.name(), t.desc().clone(), SharedBytes::from(stream), true)
            .unwrap_or_else(|e| panic!("{entropy}: {e}"));
        assert_eq!(back.block_count(), original.len());
        for (i, bytes) in original.iter().enumerate() {
            assert_eq!(back.block_bytes(i), &bytes[..], "{entropy} block {i} of {:?}", t.config());
        }
        assert_eq!(back.decode().expect("decode"), t.decode().expect("decode"));
    }
}

/// Every legal configuration, several random blocks each (sparse K = 0, b*b, random; dense of
/// every width with and without outliers).
#[test]
fn every_config_block_round_trips() {
    let configs = all_configs();
    assert_eq!(configs.len(), 4 * 2 * 9 * 3);
    let mut rng = Rng::new(1);
    for cfg in &configs {
        block_round_trip(&sparse_block(&mut rng, cfg, 0), cfg);
        block_round_trip(&sparse_block(&mut rng, cfg, cfg.block_area()), cfg);
        let k = 1 + rng.below(64);
        block_round_trip(&sparse_block(&mut rng, cfg, k), cfg);
        for width in [1u8, 2, 7, 8, 9, 15, 16] {
            block_round_trip(&dense_block(&mut rng, cfg, width, 0.03), cfg);
        }
        let width = 1 + rng.below(16) as u8;
        block_round_trip(&dense_block(&mut rng, cfg, width, 0.0), cfg);
    }
}

/// Every legal configuration as a small edge-shaped tensor, raw and rANS.
#[test]
fn every_config_tensor_round_trips() {
    let mut rng = Rng::new(2);
    for cfg in &all_configs() {
        let b = cfg.block as u64;
        let shape = [b + 1 + rng.below(cfg.block - 1) as u64, 1 + rng.below(2 * cfg.block) as u64];
        let mut t = random_tensor(&mut rng, "t", &shape, cfg);
        tensor_round_trip(&mut t);
    }
}

fn config_strategy() -> impl Strategy<Value = BlockConfig> {
    let pairs = common::legal_pairs();
    (
        prop::sample::select(rbe_format::BLOCK_SIZES.to_vec()),
        prop::sample::select(Transform::ALL.to_vec()),
        prop::sample::select(pairs),
        prop::sample::select(ParamsPrecision::ALL.to_vec()),
    )
        .prop_map(|(block, transform, (layout, values), params)| BlockConfig {
            block,
            transform,
            layout,
            values,
            params,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_blocks_round_trip(cfg in config_strategy(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let block = random_block(&mut rng, &cfg);
        block_round_trip(&block, &cfg);
    }

    #[test]
    fn random_dense_blocks_round_trip(cfg in config_strategy(), width in 1u8..=16, outliers in 0.0f64..0.2, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        block_round_trip(&dense_block(&mut rng, &cfg, width, outliers), &cfg);
    }

    #[test]
    fn random_values_stay_within_the_codec_bound(
        codec in prop::sample::select(ValueCodec::ALL.to_vec()),
        max_abs in 1e-4f64..1e3,
        fraction in -1.0f64..=1.0,
    ) {
        let scale = scale_for(codec, max_abs);
        let value = max_abs * fraction;
        let back = decode_value(codec, encode_value(codec, value, scale), scale);
        let bound = error_bound(codec, max_abs, scale);
        prop_assert!((back - value).abs() <= bound * (1.0 + 1e-9), "{codec}: {value} -> {back}, bound {bound}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_tensors_round_trip(cfg in config_strategy(), rows in 1u64..150, cols in 1u64..150, seed in any::<u64>()) {
        // Keep the grid small for the 64x64 blocks.
        let rows = 1 + rows % (2 * cfg.block as u64);
        let cols = 1 + cols % (3 * cfg.block as u64);
        let mut rng = Rng::new(seed);
        let mut t = random_tensor(&mut rng, "p", &[rows, cols], &cfg);
        tensor_round_trip(&mut t);
    }
}

/// The decoded weight at tensor position `(r, c)`, straight from docs/format.md 2 in f64.
fn formula_weight(blocks: &[EncodedBlock], cfg: &BlockConfig, grid_cols: usize, r: usize, c: usize) -> f64 {
    let b = cfg.block;
    let block = &blocks[(r / b) * grid_cols + c / b];
    let (i, j) = (r % b, c % b);
    let span = (b - 1) as f64;
    let phi = basis_at((2.0 * j as f64 - span) / span, (2.0 * i as f64 - span) / span);
    let mut w: f64 = block.params.0.iter().zip(phi).map(|(t, p)| f64::from(*t) * p).sum();
    let m = transform_matrix(b, cfg.transform);
    // T^-1(R) = M^T R M: W[i][j] += sum_{p,q} R[p][q] M[p][i] M[q][j].
    let mut add = |p: usize, q: usize, v: f64| w += v * m[p * b + i] * m[q * b + j];
    match &block.residual {
        Residual::Sparse(s) => {
            for co in &s.coefficients {
                add(usize::from(co.row), usize::from(co.col), decode_value(cfg.values, co.field, s.scale));
            }
        }
        Residual::Dense(d) => {
            for (n, &q) in d.values.iter().enumerate() {
                add(n / b, n % b, f64::from(q) * f64::from(d.step));
            }
        }
    }
    w
}

fn check_against_formula(shape: &[u64], cfg: &BlockConfig, blocks: &[EncodedBlock]) {
    let t = tensor("edge", shape, cfg, blocks);
    let rows = shape[0] as usize;
    let cols = shape[1..].iter().product::<u64>() as usize;
    let got = t.decode().expect("decode");
    assert_eq!(got.len(), rows * cols, "decoded size of {shape:?}");
    assert_eq!((t.rows(), t.cols()), (rows, cols));
    let grid_cols = cols.div_ceil(cfg.block);
    for r in 0..rows {
        for c in 0..cols {
            let want = formula_weight(blocks, cfg, grid_cols, r, c);
            let g = f64::from(got[r * cols + c]);
            assert!(
                (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{shape:?} {cfg:?}: ({r}, {c}) decoded {g}, formula {want}"
            );
        }
    }
}

/// Hand-built blocks whose padding region holds large values: edge tensors (not multiples of b,
/// 1xN, Nx1, N-D) decode to the right size and every weight is the formula at its own position.
#[test]
fn edge_shapes_match_the_formula_and_padding_never_leaks() {
    let shapes: [(&[u64], usize); 7] =
        [(&[5, 13], 8), (&[1, 20], 8), (&[20, 1], 8), (&[1, 1], 16), (&[17, 33], 16), (&[2, 3, 5], 8), (&[70, 3], 64)];
    for (shape, block) in shapes {
        for transform in [Transform::Dct, Transform::Dwt] {
            for (layout, values, params) in [
                (Layout::Wide, ValueCodec::F32, ParamsPrecision::F32),
                (Layout::P32, ValueCodec::Q16, ParamsPrecision::F16),
                (Layout::P24, ValueCodec::MuLaw8, ParamsPrecision::None),
            ] {
                let cfg = BlockConfig { block, transform, layout, values, params };
                let n = common::grid_blocks(shape, block);
                let blocks: Vec<EncodedBlock> = (0..n)
                    .map(|i| {
                        let theta = match params {
                            ParamsPrecision::None => [0.0; 8],
                            // Values the stored precision holds exactly.
                            _ => [0.5, -0.25, 0.125, 0.3, -0.1, 0.05, 0.02, -0.375]
                                .map(|v| half::f16::from_f32(v * (i + 1) as f32).to_f32()),
                        };
                        let residual = if i % 2 == 1 {
                            // Dense with a big value in the last (padding-heavy) corner.
                            let mut v: Vec<i16> = (0..block * block).map(|k| (k % 7) as i16 - 3).collect();
                            let last = block * block - 1;
                            v[last] = 30_000;
                            Residual::Dense(DenseResidual { width: 3, step: 0.01, values: v })
                        } else {
                            let field = |x: f32| match values {
                                ValueCodec::F32 => x.to_bits(),
                                ValueCodec::Q16 => u32::from((x * 1000.0) as i16 as u16),
                                _ => encode_value(values, f64::from(x), 1.0),
                            };
                            let b = block as u16;
                            Residual::Sparse(SparseResidual {
                                scale: if values == ValueCodec::F32 { 1.0 } else { 1.0 / 1024.0 },
                                coefficients: vec![
                                    Coefficient { row: 0, col: 0, field: field(0.75) },
                                    Coefficient { row: 1, col: 2, field: field(-0.5) },
                                    Coefficient { row: b - 1, col: b - 1, field: field(0.9) },
                                ],
                            })
                        };
                        EncodedBlock { params: RbeParams(theta), residual }
                    })
                    .collect();
                check_against_formula(shape, &cfg, &blocks);
            }
        }
    }
}

/// Random blocks on random edge shapes agree with the f64 formula too.
#[test]
fn random_edge_tensors_match_the_formula() {
    let mut rng = Rng::new(7);
    let configs = all_configs();
    for _ in 0..24 {
        let cfg = configs[rng.below(configs.len())];
        let cfg = BlockConfig { block: [8, 16][rng.below(2)], ..cfg };
        let shape = [1 + rng.below(2 * cfg.block) as u64, 1 + rng.below(2 * cfg.block) as u64];
        let blocks: Vec<EncodedBlock> =
            (0..common::grid_blocks(&shape, cfg.block)).map(|_| random_block(&mut rng, &cfg)).collect();
        check_against_formula(&shape, &cfg, &blocks);
    }
}

/// Stored bytes per coefficient for each layout/codec: raw (runtime layout) and rANS-coded, on
/// sparse b=64 blocks with K = 100 Laplacian-like coefficients and params `none`. Printed with
/// `--nocapture`; the raw figure is checked against the layout's entry size.
#[test]
fn bytes_per_coefficient_per_layout() {
    const K: usize = 100;
    const BLOCKS: usize = 16;
    let mut report = Vec::new();
    for (layout, values) in common::legal_pairs() {
        let cfg = BlockConfig { block: 64, transform: Transform::Dct, layout, values, params: ParamsPrecision::None };
        let mut rng = Rng::new(11);
        let blocks: Vec<EncodedBlock> = (0..BLOCKS)
            .map(|_| {
                // Low frequencies dominate; magnitudes fall off exponentially.
                let mut positions: Vec<usize> = Vec::new();
                while positions.len() < K {
                    let r = ((rng.unit() * rng.unit()) * 64.0) as usize;
                    let c = ((rng.unit() * rng.unit()) * 64.0) as usize;
                    let p = r * 64 + c;
                    if !positions.contains(&p) {
                        positions.push(p);
                    }
                }
                positions.sort_unstable();
                let values_f: Vec<f64> = (0..K)
                    .map(|_| -rng.unit().max(1e-9).ln() * 0.01 * if rng.chance(0.5) { -1.0 } else { 1.0 })
                    .collect();
                let max_abs = values_f.iter().fold(0f64, |a, v| a.max(v.abs()));
                let scale = scale_for(values, max_abs);
                let scale = if values.scale_bytes(layout) == 2 { half::f16::from_f32(scale).to_f32() } else { scale };
                let coefficients = positions
                    .iter()
                    .zip(&values_f)
                    .map(|(&p, &v)| Coefficient {
                        row: (p / 64) as u16,
                        col: (p % 64) as u16,
                        field: encode_value(values, v, scale),
                    })
                    .collect();
                EncodedBlock {
                    params: RbeParams::default(),
                    residual: Residual::Sparse(SparseResidual { scale, coefficients }),
                }
            })
            .collect();
        let mut t = tensor("m", &[256, 256], &cfg, &blocks);
        let raw = t.to_stream(Entropy::None).expect("raw");
        let coded = t.to_stream(Entropy::Rans).expect("rans");
        let coefficients = (K * BLOCKS) as f64;
        // Raw: 4-byte prelude length + 4-byte index entry + head + scale per block on top of entries.
        let overhead = 4 + BLOCKS * (4 + 1 + values.scale_bytes(layout));
        assert_eq!(raw.len(), overhead + K * BLOCKS * layout.entry_bytes(), "{layout}/{values}");
        report.push(format!(
            "{layout:>4}/{values:<6}: raw {:.3} B/coef, rans {:.3} B/coef",
            raw.len() as f64 / coefficients,
            coded.len() as f64 / coefficients
        ));
        assert!(coded.len() < raw.len(), "{layout}/{values}: rANS should beat the raw layout");
    }
    eprintln!("bytes per coefficient (b=64, K=100, 16 blocks, stream incl. index):\n{}", report.join("\n"));
}
