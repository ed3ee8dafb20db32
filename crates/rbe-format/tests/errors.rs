//! Corrupted files give errors that name the tensor, and the block where one is at fault.

mod common;

use common::{Rng, open_and_verify, sparse_block};
use rbe_format::{
    BlockConfig, EncodedTensor, Entropy, Layout, ParamsPrecision, RbeWriter, Transform, ValueCodec, stream_checksum,
};

const NAME: &str = "encoder.layer.3.weight";

fn config() -> BlockConfig {
    common::config(8, Transform::Dct, Layout::P32, ValueCodec::Q16, ParamsPrecision::None)
}

/// A 16x16 tensor of four sparse blocks (K = 2 each).
fn four_block_tensor() -> EncodedTensor {
    let cfg = config();
    let mut rng = Rng::new(5);
    let blocks: Vec<_> = (0..4).map(|_| sparse_block(&mut rng, &cfg, 2)).collect();
    common::tensor(NAME, &[16, 16], &cfg, &blocks)
}

/// Writes a file holding `stream` as `NAME`, with a description that matches the (possibly
/// corrupted) stream, so only the stream's contents can be at fault.
fn file_with_stream(t: &EncodedTensor, stream: &[u8]) -> Vec<u8> {
    let mut desc = t.desc().clone();
    desc.stream_bytes = stream.len() as u64;
    desc.xxh3 = stream_checksum(&desc, stream);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.rbe");
    let mut w = RbeWriter::create(&path).expect("create");
    w.add_compressed(NAME, &desc, t.stats(), stream).expect("add");
    w.add_verbatim("bias", "F32", &[2], &[0, 0, 128, 63, 0, 0, 0, 0]).expect("add");
    w.finish().expect("finish");
    std::fs::read(&path).expect("read")
}

fn error_of(bytes: &[u8]) -> String {
    match open_and_verify(bytes) {
        Ok(_) => panic!("corrupt file accepted"),
        Err(e) => e.to_string(),
    }
}

/// The error of a file whose `entropy`-stored stream `corrupt` damaged (the description kept
/// consistent with the damaged stream).
fn error_of_corrupted(entropy: Entropy, corrupt: impl FnOnce(&EncodedTensor, &mut Vec<u8>)) -> String {
    let mut t = four_block_tensor();
    let mut stream = t.to_stream(entropy).expect("stream");
    corrupt(&t, &mut stream);
    error_of(&file_with_stream(&t, &stream))
}

/// The error of the file of the raw stream after `damage` (which sees the tensor too).
fn error_of_damaged_file(damage: impl FnOnce(&EncodedTensor, &mut Vec<u8>)) -> String {
    let mut t = four_block_tensor();
    let stream = t.to_stream(Entropy::None).expect("stream");
    let mut bytes = file_with_stream(&t, &stream);
    damage(&t, &mut bytes);
    error_of(&bytes)
}

/// Byte offset of block `i` inside a raw stream (prelude length, index, blocks).
fn raw_block_offset(t: &EncodedTensor, i: usize) -> usize {
    let before: usize = (0..i).map(|j| t.block_bytes(j).len()).sum();
    4 + 4 * t.block_count() + before
}

#[test]
fn valid_file_verifies() {
    let mut t = four_block_tensor();
    let stream = t.to_stream(Entropy::None).expect("stream");
    let file = open_and_verify(&file_with_stream(&t, &stream)).expect("valid");
    assert_eq!(file.verify().expect("verify"), 4);
}

#[test]
fn corrupt_raw_block_names_tensor_and_block() {
    let msg = error_of_corrupted(Entropy::None, |t, stream| {
        // Set a reserved bit of block 2's first p32 entry (after its 1-byte head and q16 scale).
        let at = raw_block_offset(t, 2) + 1 + 4;
        stream[at + 2] |= 0x01;
    });
    assert_eq!(msg, format!("tensor `{NAME}`, block 2: reserved bits set in p32 entry"));
}

#[test]
fn unsorted_coefficients_name_the_block() {
    let msg = error_of_corrupted(Entropy::None, |t, stream| {
        // Swap block 3's two entries (after its 1-byte head and q16 scale).
        let at = raw_block_offset(t, 3) + 1 + 4;
        let (a, b) = stream[at..at + 8].split_at_mut(4);
        a.swap_with_slice(b);
    });
    assert_eq!(msg, format!("tensor `{NAME}`, block 3: coefficients not sorted strictly by (row, col) at entry 1"));
}

#[test]
fn corrupt_index_names_the_block() {
    let msg = error_of_corrupted(Entropy::Rans, |_, stream| {
        let prelude = u32::from_le_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
        let index = 4 + prelude;
        // end[1] < end[0]: block 1 would have negative length.
        let end0 = u32::from_le_bytes(stream[index..index + 4].try_into().expect("4 bytes"));
        stream[index + 4..index + 8].copy_from_slice(&(end0 - 1).to_le_bytes());
    });
    assert!(msg.starts_with(&format!("tensor `{NAME}`, block 1: ")), "{msg}");
}

#[test]
fn corrupt_entropy_coded_block_names_the_block() {
    let msg = error_of_corrupted(Entropy::Rans, |_, stream| {
        let prelude = u32::from_le_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
        let index = 4 + prelude;
        let end =
            |i: usize| u32::from_le_bytes(stream[index + 4 * i..index + 4 * i + 4].try_into().expect("4")) as usize;
        let blocks_at = index + 16;
        // Block 2's rANS state (params are `none`, so the body starts the block) below L = 2^23.
        let at = blocks_at + end(1);
        stream[at..at + 4].copy_from_slice(&[0, 0, 0, 0]);
    });
    assert!(msg.starts_with(&format!("tensor `{NAME}`, block 2: entropy-coded block")), "{msg}");
}

#[test]
fn flipped_stream_byte_is_a_checksum_error_naming_the_tensor() {
    let msg = error_of_damaged_file(|t, bytes| {
        let (len, _) = common::header_json(bytes);
        // The compressed tensor's data comes first.
        let at = 8 + len as usize + raw_block_offset(t, 1) + 2;
        bytes[at] ^= 0x40;
    });
    assert!(msg.starts_with(&format!("tensor `{NAME}`: checksum mismatch")), "{msg}");
}

#[test]
fn flipped_verbatim_byte_names_the_verbatim_tensor() {
    let msg = error_of_damaged_file(|_, bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    });
    assert!(msg.starts_with("tensor `bias`: checksum mismatch"), "{msg}");
}

#[test]
fn short_stream_names_the_tensor() {
    let msg = error_of_corrupted(Entropy::None, |_, stream| stream.truncate(10));
    assert!(msg.starts_with(&format!("tensor `{NAME}`: ")), "{msg}");
}
