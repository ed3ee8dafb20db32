//! Shared builders for the integration tests: the testkit's PRNG and random valid blocks for any
//! block configuration (re-exported), and a small in-memory `.rbe` file with what it must decode to.
#![allow(dead_code)] // Each test crate uses a different subset.

use rbe_format::{
    BlockConfig, EncodedBlock, EncodedTensor, Entropy, Layout, ParamsPrecision, RbeWriter, SharedBytes, Transform,
    ValueCodec,
};
#[allow(unused_imports)] // Re-exported for the test crates; each uses a different subset.
pub use rbe_testkit::{
    Rng,
    blocks::{
        all_configs, config, dense_block, desc, grid_blocks, legal_pairs, random_block, random_tensor, sparse_block,
        tensor,
    },
};

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
            config(8, Transform::Dct, Layout::P32, ValueCodec::Q16, ParamsPrecision::F16),
            Entropy::None,
        ),
        (
            "layers.0.coded",
            vec![16, 16],
            config(8, Transform::Dwt, Layout::B4, ValueCodec::MuLaw8, ParamsPrecision::F32),
            Entropy::Rans,
        ),
        (
            "layers.1.conv",
            vec![1, 3, 3],
            config(8, Transform::Dct, Layout::P24, ValueCodec::Q9s, ParamsPrecision::None),
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
        w.add_tensor(&t, &stream).expect("add_compressed");
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
