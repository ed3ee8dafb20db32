//! Replays every input under `tests/fuzz_regressions/` through the fuzz target it is named after
//! (`container-*`, `block-*`, `coded_block-*`): drop a crash input there to keep it fixed.
//! Also holds the (ignored) generator of the fuzz seed corpus under `fuzz/corpus/`.

mod common;
mod fuzz_harness;

use common::{Rng, dense_block, sparse_block};
use rbe_format::codec::entropy::{EntropyModel, RansEncoder};
use rbe_format::{BlockConfig, EncodedBlock, Layout, ParamsPrecision, Transform, ValueCodec};
use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The harness function of a fuzz target, by name.
fn target(name: &str) -> Option<fn(&[u8])> {
    match name {
        "container" => Some(fuzz_harness::container),
        "block" => Some(fuzz_harness::block),
        "coded_block" => Some(fuzz_harness::coded_block),
        _ => None,
    }
}

#[test]
fn fuzz_regressions_replay() {
    let dir = manifest_dir().join("tests/fuzz_regressions");
    let mut replayed = 0;
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("regression dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if file_name.starts_with('.') || file_name.ends_with(".md") {
            continue;
        }
        let target_name = file_name.split('-').next().unwrap_or_default();
        let run = target(target_name)
            .unwrap_or_else(|| panic!("{file_name}: name must start with container-, block- or coded_block-"));
        let data = std::fs::read(&path).expect("read input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz regression {file_name} fails");
        }
        replayed += 1;
    }
    eprintln!("{replayed} fuzz regression inputs replayed");
}

/// The seed corpus's inputs pass their targets (valid inputs are the interesting paths).
#[test]
fn seed_inputs_pass_the_harness() {
    for (target_name, inputs) in seed_inputs() {
        let run = target(target_name).expect("known target");
        for (_, data) in inputs {
            run(&data);
        }
    }
}

/// The checked-in seed corpus is still valid under the current format (regenerate it with
/// `generate_fuzz_seed_corpus` when this fails): every container verifies, every block parses
/// and every coded block decodes, so the fuzzers start from deep paths.
#[test]
fn checked_in_seed_corpus_is_valid() {
    let root = manifest_dir().join("../../fuzz/corpus");
    let mut checked = 0;
    for target_name in ["container", "block", "coded_block"] {
        for entry in std::fs::read_dir(root.join(target_name)).expect("corpus dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !name.starts_with("seed-") {
                continue;
            }
            let data = std::fs::read(&path).expect("read seed");
            let valid = match target_name {
                "container" => common::open_and_verify(&data).is_ok(),
                "block" => EncodedBlock::parse(&data[1..], &fuzz_harness::config_from_byte(data[0])).is_ok(),
                _ => {
                    let cfg = fuzz_harness::config_from_byte(data[0]);
                    let len = usize::from(u16::from_le_bytes([data[1], data[2]]));
                    EntropyModel::read(&data[3..3 + len]).is_ok_and(|m| m.decode_block(&data[3 + len..], &cfg).is_ok())
                }
            };
            assert!(
                valid,
                "{target_name}/{name} is stale: run `cargo test -p rbe-format --test fuzz_regressions -- --ignored`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "seed corpus missing ({checked} inputs)");
}

fn seed_configs() -> [BlockConfig; 4] {
    let c = common::config;
    [
        c(8, Transform::Dct, Layout::P32, ValueCodec::Q16, ParamsPrecision::F16),
        c(8, Transform::Dwt, Layout::Wide, ValueCodec::F32, ParamsPrecision::F32),
        c(16, Transform::Dct, Layout::P24, ValueCodec::Q9s, ParamsPrecision::None),
        c(8, Transform::Dct, Layout::B4, ValueCodec::MuLaw8, ParamsPrecision::None),
    ]
}

/// One seed input: file name (without the `seed-` prefix) and bytes.
type SeedInput = (String, Vec<u8>);

/// Small valid inputs per fuzz target: (target, inputs).
fn seed_inputs() -> Vec<(&'static str, Vec<SeedInput>)> {
    let mut rng = Rng::new(99);
    let mut containers = vec![("sample".to_owned(), common::sample_file(42).bytes)];
    containers.push(("sample2".to_owned(), common::sample_file(7).bytes));
    let mut blocks = Vec::new();
    let mut coded = Vec::new();
    for (i, cfg) in seed_configs().iter().enumerate() {
        let selector = fuzz_harness::byte_for_config(cfg);
        let sample: Vec<EncodedBlock> =
            vec![sparse_block(&mut rng, cfg, 0), sparse_block(&mut rng, cfg, 5), dense_block(&mut rng, cfg, 3, 0.05)];
        for (j, b) in sample.iter().enumerate() {
            let mut bytes = vec![selector];
            b.write(cfg, &mut bytes).expect("valid");
            blocks.push((format!("cfg{i}-{j}"), bytes));
        }
        let model = EntropyModel::build(&sample, cfg);
        let mut prelude = Vec::new();
        model.write(&mut prelude);
        for (j, b) in sample.iter().enumerate() {
            let mut bytes = vec![selector];
            bytes.extend_from_slice(&u16::try_from(prelude.len()).expect("small prelude").to_le_bytes());
            bytes.extend_from_slice(&prelude);
            model.encode_block(b, cfg, &mut RansEncoder::new(), &mut bytes);
            coded.push((format!("cfg{i}-{j}"), bytes));
        }
        // A whole small container per configuration as well.
        let mut t = common::random_tensor(&mut rng, "w", &[cfg.block as u64 + 3, 5], cfg);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.rbe");
        let mut w = rbe_format::RbeWriter::create(&path).expect("create");
        let entropy = if i % 2 == 0 { rbe_format::Entropy::Rans } else { rbe_format::Entropy::None };
        let stream = t.to_stream(entropy).expect("stream");
        w.add_tensor(&t, &stream).expect("add");
        w.finish().expect("finish");
        containers.push((format!("cfg{i}"), std::fs::read(&path).expect("read")));
    }
    vec![("container", containers), ("block", blocks), ("coded_block", coded)]
}

fn write_corpus(root: &Path) {
    for (target_name, inputs) in seed_inputs() {
        let dir = root.join(target_name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, data) in inputs {
            assert!(data.len() < 64 * 1024, "{target_name}/{name} too large for the seed corpus");
            std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
        }
    }
}

/// Regenerates `fuzz/corpus/<target>/seed-*` (run with `--ignored` after a format change).
#[test]
#[ignore = "writes the fuzz seed corpus into the source tree"]
fn generate_fuzz_seed_corpus() {
    write_corpus(&manifest_dir().join("../../fuzz/corpus"));
}
