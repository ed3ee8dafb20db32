//! Sharded models: output sharded like the input with its own index, and `resume` keeps verified
//! finished shards and re-encodes broken ones into byte-identical output.

use rbe_encode::{EncodeSettings, ModelOptions, SourceModel, encode_model};
use rbe_format::{RbeFile, SafetensorsWriter};
use rbe_testkit::Rng;
use rbe_testkit::data::f32_bytes;
use std::path::Path;

/// `n` seeded uniform values in `[-0.05, 0.05)`, as F32 bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    f32_bytes(&(0..n).map(|_| rng.centred_f32() * 0.1).collect::<Vec<f32>>())
}

fn write_model(dir: &Path) -> std::path::PathBuf {
    let mut map = serde_json::Map::new();
    for shard in 0..2 {
        let name = format!("model-{:05}-of-00002.safetensors", shard + 1);
        let mut w = SafetensorsWriter::create(&dir.join(&name)).unwrap();
        for t in 0..2 {
            let tensor = format!("layers.{}.weight", shard * 2 + t);
            w.add(&tensor, "F32", &[96, 130], &noise(96 * 130, (shard * 2 + t + 1) as u64)).unwrap();
            map.insert(tensor, serde_json::Value::String(name.clone()));
        }
        let bias = format!("layers.{shard}.bias");
        w.add(&bias, "F32", &[4], &noise(4, 9)).unwrap();
        map.insert(bias, serde_json::Value::String(name.clone()));
        w.finish().unwrap();
    }
    let index = dir.join("model.safetensors.index.json");
    std::fs::write(&index, serde_json::to_vec(&serde_json::json!({"metadata": {}, "weight_map": map})).unwrap())
        .unwrap();
    index
}

#[test]
fn sharded_in_sharded_out_and_resume_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let index = write_model(dir.path());
    let model = SourceModel::open(&index).unwrap();
    let settings = EncodeSettings::default();
    let quiet = |_: &rbe_encode::TensorReport, _: u64, _: u64| {};
    let clean = dir.path().join("clean");
    encode_model(&model, &clean, &settings, &ModelOptions::default(), &quiet).unwrap();
    let out_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(clean.join("model.rbe.index.json")).unwrap()).unwrap();
    assert_eq!(out_index["weight_map"]["layers.3.weight"], "model-00002-of-00002.rbe");
    for shard in ["model-00001-of-00002.rbe", "model-00002-of-00002.rbe"] {
        assert_eq!(RbeFile::open(&clean.join(shard)).unwrap().verify().unwrap(), 2 * 6);
    }

    // An interrupted run: the first shard finished, the second is a damaged leftover.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    std::fs::copy(clean.join("model-00001-of-00002.rbe"), resumed.join("model-00001-of-00002.rbe")).unwrap();
    let mut partial = std::fs::read(clean.join("model-00002-of-00002.rbe")).unwrap();
    partial.truncate(partial.len() / 2);
    std::fs::write(resumed.join("model-00002-of-00002.rbe"), partial).unwrap();
    let first_before = std::fs::metadata(resumed.join("model-00001-of-00002.rbe")).unwrap().modified().unwrap();
    let options = ModelOptions { resume: true, ..ModelOptions::default() };
    encode_model(&model, &resumed, &settings, &options, &quiet).unwrap();
    for name in ["model-00001-of-00002.rbe", "model-00002-of-00002.rbe", "model.rbe.index.json"] {
        assert_eq!(std::fs::read(clean.join(name)).unwrap(), std::fs::read(resumed.join(name)).unwrap(), "{name}");
    }
    let first_after = std::fs::metadata(resumed.join("model-00001-of-00002.rbe")).unwrap().modified().unwrap();
    assert_eq!(first_before, first_after, "a verified finished shard was rewritten");

    // A flipped byte in a "finished" shard is caught by its checksum and the shard is redone.
    let mut bytes = std::fs::read(resumed.join("model-00001-of-00002.rbe")).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(resumed.join("model-00001-of-00002.rbe"), bytes).unwrap();
    encode_model(&model, &resumed, &settings, &options, &quiet).unwrap();
    assert_eq!(
        std::fs::read(clean.join("model-00001-of-00002.rbe")).unwrap(),
        std::fs::read(resumed.join("model-00001-of-00002.rbe")).unwrap()
    );
}
