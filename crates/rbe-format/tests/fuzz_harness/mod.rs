//! The logic of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` include this file by path), kept
//! here so `tests/fuzz_regressions.rs` replays crash inputs through exactly the same code.
//! Each function must not panic on any input; a failed assertion is a finding.
#![allow(dead_code)] // The fuzz targets use one function each.

use rbe_format::codec::entropy::{EntropyModel, RansEncoder};
use rbe_format::{
    BLOCK_SIZES, BlockConfig, BlockDecoder, EncodedBlock, Entry, Layout, ParamsPrecision, RbeFile, SharedBytes,
    Transform, ValueCodec,
};

/// Every legal block configuration, in a fixed order (block, transform, layout, codec, params).
pub fn configs() -> Vec<BlockConfig> {
    let mut out = Vec::new();
    for block in BLOCK_SIZES {
        for &transform in Transform::ALL {
            for &layout in Layout::ALL {
                for &values in ValueCodec::ALL {
                    if !layout.accepts(values) {
                        continue;
                    }
                    for &params in ParamsPrecision::ALL {
                        out.push(BlockConfig { block, transform, layout, values, params });
                    }
                }
            }
        }
    }
    out
}

/// The configuration a fuzz input's first byte selects.
pub fn config_from_byte(byte: u8) -> BlockConfig {
    let all = configs();
    all[usize::from(byte) % all.len()]
}

/// The first byte that selects `cfg` (for building seed inputs).
pub fn byte_for_config(cfg: &BlockConfig) -> u8 {
    let index = configs().iter().position(|c| c == cfg).expect("legal configuration");
    u8::try_from(index).expect("fewer than 256 configurations")
}

/// `container`: arbitrary bytes as an `.rbe` file. Must not panic; a file that verifies decodes
/// every tensor, and a raw stream re-serialises to exactly its stored bytes.
pub fn container(data: &[u8]) {
    let Ok(file) = RbeFile::from_bytes(SharedBytes::from(data.to_vec())) else {
        return;
    };
    if file.verify().is_err() {
        return;
    }
    for (name, entry) in file.entries() {
        if let Entry::Compressed { desc, stream, .. } = entry {
            let mut tensor = file.tensor(name).expect("verified tensor loads");
            tensor.decode().expect("verified tensor decodes");
            if desc.entropy == rbe_format::Entropy::None {
                let again = tensor.to_stream(rbe_format::Entropy::None).expect("re-serialises");
                assert_eq!(&again[..], &stream[..], "raw stream of `{name}` is not canonical");
            }
        }
    }
}

/// `block`: first byte picks the configuration, the rest is one runtime block. A block that
/// parses writes back to exactly the same bytes, parses again to the same block, and decodes.
pub fn block(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let cfg = config_from_byte(selector);
    let Ok(block) = EncodedBlock::parse(bytes, &cfg) else {
        return;
    };
    let mut written = Vec::new();
    block.write(&cfg, &mut written).expect("a parsed block is valid");
    assert_eq!(written, bytes, "parse -> write is not the identity for {cfg:?}");
    assert_eq!(EncodedBlock::parse(&written, &cfg).as_ref(), Ok(&block));
    let mut decoder = BlockDecoder::new(cfg);
    assert_eq!(decoder.decode(&block).len(), cfg.block_area());
}

/// `coded_block`: first byte picks the configuration, the next two (u16 LE) the prelude length;
/// then the prelude (entropy tables) and one entropy-coded block. A block that decodes is valid,
/// survives a runtime-layout round trip and re-encodes with the same model to the same block.
pub fn coded_block(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let cfg = config_from_byte(selector);
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let prelude_len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (prelude, body) = rest.split_at(prelude_len);
    let Ok(model) = EntropyModel::read(prelude) else {
        return;
    };
    let Ok(block) = model.decode_block(body, &cfg) else {
        return;
    };
    block.validate(&cfg).expect("a decoded block is valid");
    let mut runtime = Vec::new();
    block.write(&cfg, &mut runtime).expect("a decoded block writes");
    assert_eq!(EncodedBlock::parse(&runtime, &cfg).as_ref(), Ok(&block));
    let mut coded = Vec::new();
    model.encode_block(&block, &cfg, &mut RansEncoder::new(), &mut coded);
    assert_eq!(model.decode_block(&coded, &cfg).as_ref(), Ok(&block), "re-encoded block differs");
}
