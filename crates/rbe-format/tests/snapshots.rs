//! Byte snapshots of the worked examples in docs/format.md (insta): the 433-byte b4/f16 block,
//! the b=8 p32 two-coefficient block, dense block headers and a tiny container's header JSON.
//! A change to any of these bytes is a format change.

mod common;

use common::{header_json, hex_dump};
use half::f16;
use rbe_format::{
    BlockConfig, Coefficient, DenseResidual, EncodedBlock, Entropy, Layout, ParamsPrecision, RbeParams, RbeWriter,
    Residual, SparseResidual, Transform, ValueCodec,
};

fn write(block: &EncodedBlock, cfg: &BlockConfig) -> Vec<u8> {
    let mut out = Vec::new();
    block.write(cfg, &mut out).expect("valid block");
    assert_eq!(&EncodedBlock::parse(&out, cfg).expect("parses"), block);
    out
}

/// The design notes' reference block (format.md 3.1): b = 64, K = 100, b4 + f16, params f32.
fn reference_block() -> (EncodedBlock, BlockConfig) {
    let cfg = common::config(64, Transform::Dct, Layout::B4, ValueCodec::F16, ParamsPrecision::F32);
    // Deterministic pattern: the first 100 positions of a 10x10 low-frequency corner,
    // values 0.01 * i with alternating sign.
    let coefficients = (0..100u16)
        .map(|i| {
            let v = 0.01 * f32::from(i) * if i % 2 == 0 { 1.0 } else { -1.0 };
            Coefficient { row: i / 10, col: i % 10, field: u32::from(f16::from_f32(v).to_bits()) }
        })
        .collect();
    let block = EncodedBlock {
        params: RbeParams([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.5]),
        residual: Residual::Sparse(SparseResidual { scale: 1.0, coefficients }),
    };
    (block, cfg)
}

#[test]
fn reference_block_433_bytes() {
    let (block, cfg) = reference_block();
    let bytes = write(&block, &cfg);
    assert_eq!(bytes.len(), 433);
    insta::assert_snapshot!("reference_block_b4_f16_params_f32", hex_dump(&bytes));
}

#[test]
fn reference_block_sizes_in_other_layouts() {
    let (block, _) = reference_block();
    let Residual::Sparse(s) = &block.residual else { unreachable!() };
    let with = |layout, values, field: fn(u32) -> u32, scale| {
        let cfg = BlockConfig { block: 64, transform: Transform::Dct, layout, values, params: ParamsPrecision::F32 };
        let coefficients = s.coefficients.iter().map(|c| Coefficient { field: field(c.field), ..*c }).collect();
        let b =
            EncodedBlock { params: block.params, residual: Residual::Sparse(SparseResidual { scale, coefficients }) };
        write(&b, &cfg).len()
    };
    // p24 + q9s: 32 + 1 + 2 + 3 * 100.
    assert_eq!(with(Layout::P24, ValueCodec::Q9s, |f| f & 1023, 0.5), 335);
    // wide + f32: 32 + 1 + 8 * 100.
    assert_eq!(with(Layout::Wide, ValueCodec::F32, |f| f16::from_bits(f as u16).to_f32().to_bits(), 1.0), 833);
}

#[test]
fn p32_two_coefficient_example() {
    let cfg = common::config(8, Transform::Dct, Layout::P32, ValueCodec::F16, ParamsPrecision::None);
    let block = EncodedBlock {
        params: RbeParams::default(),
        residual: Residual::Sparse(SparseResidual {
            scale: 1.0,
            coefficients: vec![
                Coefficient { row: 0, col: 0, field: u32::from(f16::from_f32(1.0).to_bits()) },
                Coefficient { row: 2, col: 5, field: u32::from(f16::from_f32(-0.5).to_bits()) },
            ],
        }),
    };
    let bytes = write(&block, &cfg);
    assert_eq!(bytes, [0x02, 0x00, 0x3C, 0x00, 0x00, 0x00, 0xB8, 0x50, 0x08]);
    insta::assert_snapshot!("p32_two_coefficients_b8", hex_dump(&bytes));
}

#[test]
fn dense_block_headers() {
    // format.md 3.2 example: b = 64, w = 4, no outliers, params none: 2056 bytes.
    let cfg64 = common::config(64, Transform::Dct, Layout::P32, ValueCodec::Q16, ParamsPrecision::None);
    let values: Vec<i16> = (0..4096).map(|i| (i % 16) as i16 - 8).collect();
    let block = EncodedBlock {
        params: RbeParams::default(),
        residual: Residual::Dense(DenseResidual { width: 4, step: 0.25, values }),
    };
    let bytes = write(&block, &cfg64);
    assert_eq!(bytes.len(), 2056);
    assert_eq!(&bytes[..2], &[0x81, 0x20], "head V = 4097");
    let summary = format!(
        "len {}\nhead+width+step:\n{}payload[..16]:\n{}n_outliers: {:02X}\n",
        bytes.len(),
        hex_dump(&bytes[..7]),
        hex_dump(&bytes[7..23]),
        bytes[bytes.len() - 1]
    );
    insta::assert_snapshot!("dense_b64_w4_header", summary);

    // A whole small dense block: b = 8, w = 3, params f16, two outliers.
    let cfg8 = BlockConfig { block: 8, params: ParamsPrecision::F16, ..cfg64 };
    let mut values: Vec<i16> = (0..64).map(|i| (i % 8) as i16 - 4).collect();
    values[5] = 100;
    values[63] = -300;
    let block = EncodedBlock {
        params: RbeParams([1.0, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 2.0]),
        residual: Residual::Dense(DenseResidual { width: 3, step: 0.125, values }),
    };
    let bytes = write(&block, &cfg8);
    // params 16 + head 1 (V = 65) + width 1 + step 4 + payload 24 + n_outliers 1 + 2 * 4.
    assert_eq!(bytes.len(), 16 + 1 + 1 + 4 + 24 + 1 + 8);
    insta::assert_snapshot!("dense_b8_w3_two_outliers", hex_dump(&bytes));
}

#[test]
fn tiny_container_header() {
    let cfg = common::config(8, Transform::Dwt, Layout::P24, ValueCodec::Q9s, ParamsPrecision::F16);
    let block = EncodedBlock {
        params: RbeParams([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.25]),
        residual: Residual::Sparse(SparseResidual {
            scale: 0.0625,
            coefficients: vec![
                Coefficient { row: 0, col: 1, field: 7 },
                Coefficient { row: 3, col: 2, field: 512 | 3 },
            ],
        }),
    };
    let mut t = common::tensor("w", &[3, 5], &cfg, &[block]);
    let stats = rbe_format::EncodeStats { profile: Some("test".to_owned()), ..t.stats().clone() };
    t.set_stats(stats);
    let stream = t.to_stream(Entropy::None).expect("stream");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.rbe");
    let mut w = RbeWriter::create(&path).expect("create");
    w.add_tensor(&t, &stream).expect("add");
    w.add_verbatim("b", "F16", &[2], &[0x00, 0x3C, 0x00, 0xC0]).expect("add");
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    let (len, json) = header_json(&bytes);
    assert_eq!(len % 8, 0, "header padded to 8 bytes");
    assert_eq!(bytes.len() as u64, 8 + len + stream.len() as u64 + 4);
    insta::assert_snapshot!("tiny_container_header_json", format!("header_len {len}\n{}\n", json.trim_end()));
    insta::assert_snapshot!("tiny_container_stream", hex_dump(&stream));
}
