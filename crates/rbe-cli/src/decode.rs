//! `rbe decode`: expand an `.rbe` file to a dense safetensors file. Compressed tensors go through
//! the reference decoder and are stored in the requested dtype under their original shape;
//! verbatim tensors are copied bit-exact after their checksum is checked. One tensor is decoded
//! at a time, and the output appears atomically: on any error nothing is left at the output path.

use crate::verify::{file_error, open_rbe};
use half::{bf16, f16};
use rbe_format::{Entry, SafetensorsWriter};

/// Metadata keys of the `.rbe` container itself; other metadata is carried over to the output.
const RBE_METADATA_PREFIX: &str = "rbe.";

/// The dtype compressed tensors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputDtype {
    F32,
    F16,
    Bf16,
}

impl OutputDtype {
    fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "f32" => Ok(OutputDtype::F32),
            "f16" => Ok(OutputDtype::F16),
            "bf16" => Ok(OutputDtype::Bf16),
            other => anyhow::bail!("unknown dtype `{other}` (expected f32, f16 or bf16)"),
        }
    }

    /// The safetensors name of the dtype.
    fn safetensors_name(self) -> &'static str {
        match self {
            OutputDtype::F32 => "F32",
            OutputDtype::F16 => "F16",
            OutputDtype::Bf16 => "BF16",
        }
    }

    /// `values` as little-endian bytes of this dtype (round to nearest even).
    fn encode(self, values: &[f32]) -> Vec<u8> {
        let width = match self {
            OutputDtype::F32 => 4,
            OutputDtype::F16 | OutputDtype::Bf16 => 2,
        };
        let mut out = Vec::with_capacity(values.len() * width);
        match self {
            OutputDtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            OutputDtype::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            OutputDtype::Bf16 => values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
        out
    }
}

/// Runs `rbe decode FILE -o OUT [--dtype f32|f16|bf16]`; `FILE` may be a sharded `*.rbe.index.json`,
/// then `OUT` is a directory that receives one safetensors shard per `.rbe` shard and an index.
pub fn run(args: &crate::DecodeArgs) -> anyhow::Result<()> {
    let dtype = OutputDtype::parse(&args.dtype)?;
    if args.input.extension().is_some_and(|e| e == "json") {
        return run_sharded(args, dtype);
    }
    let (decoded, copied) = decode_file(&args.input, &args.output, dtype)?;
    println!(
        "wrote {}: {decoded} tensors decoded to {}, {copied} copied verbatim",
        crate::verify::one_line(&args.output.display().to_string()),
        args.dtype
    );
    Ok(())
}

/// Decodes every shard named by an `.rbe` index into `args.output/`, then writes a safetensors index.
fn run_sharded(args: &crate::DecodeArgs, dtype: OutputDtype) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| anyhow::anyhow!(crate::verify::one_line(&format!("{}: {e}", args.input.display()))))?;
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(crate::verify::one_line(&format!("{}: bad index JSON: {e}", args.input.display())))
    })?;
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
        anyhow::anyhow!(crate::verify::one_line(&format!("{}: index has no `weight_map`", args.input.display())))
    })?;
    let mut shards: Vec<&str> = Vec::new();
    for file in map.values() {
        let file = file.as_str().filter(|f| !f.contains('/') && !f.contains('\\') && !f.starts_with('.')).ok_or_else(
            || anyhow::anyhow!(crate::verify::one_line(&format!("{}: bad shard name {file}", args.input.display()))),
        )?;
        if !shards.contains(&file) {
            shards.push(file);
        }
    }
    shards.sort_unstable();
    let dir = args.input.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(&args.output)
        .map_err(|e| anyhow::anyhow!(crate::verify::one_line(&format!("{}: {e}", args.output.display()))))?;
    let mut weight_map = serde_json::Map::new();
    let (mut decoded, mut copied) = (0, 0);
    for shard in shards {
        let out_name = format!("{}.safetensors", shard.strip_suffix(".rbe").unwrap_or(shard));
        let (d, c) = decode_file(&dir.join(shard), &args.output.join(&out_name), dtype)?;
        decoded += d;
        copied += c;
        for (name, file) in map {
            if file.as_str() == Some(shard) {
                weight_map.insert(name.clone(), serde_json::Value::String(out_name.clone()));
            }
        }
    }
    let stem = args.input.file_name().and_then(|n| n.to_str()).unwrap_or("model.rbe.index.json");
    let out_index = stem.replace(".rbe.index.json", ".safetensors.index.json");
    let out_index = if out_index == stem { "model.safetensors.index.json".to_owned() } else { out_index };
    let json = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    let path = args.output.join(out_index);
    rbe_encode::model::write_atomic(&path, serde_json::to_vec_pretty(&json)?.as_slice())?;
    println!("wrote {}: {decoded} tensors decoded, {copied} copied verbatim", path.display());
    Ok(())
}

/// Decodes one `.rbe` file into one safetensors file; returns (decoded, copied) counts.
fn decode_file(
    input: &std::path::Path,
    output: &std::path::Path,
    dtype: OutputDtype,
) -> anyhow::Result<(usize, usize)> {
    let file = open_rbe(input)?;
    let mut out = SafetensorsWriter::create(output).map_err(|e| file_error(output, e))?;
    let mut carried: Vec<(&String, &String)> =
        file.metadata().iter().filter(|(key, _)| !key.starts_with(RBE_METADATA_PREFIX)).collect();
    carried.sort();
    for (key, value) in carried {
        out.metadata(key, value.clone());
    }
    let (mut decoded, mut copied) = (0usize, 0usize);
    // On a terminal: bytes of the stored file processed, with rate and ETA.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let total: u64 = file
            .entries()
            .iter()
            .map(|(_, e)| match e {
                Entry::Compressed { stream, .. } => stream.len() as u64,
                Entry::Verbatim(v) => v.data.len() as u64,
            })
            .sum();
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    for (name, entry) in file.entries() {
        if let Some(b) = &bar {
            b.set_message(name.clone());
            b.inc(match entry {
                Entry::Compressed { stream, .. } => stream.len() as u64,
                Entry::Verbatim(v) => v.data.len() as u64,
            });
        }
        match entry {
            Entry::Compressed { desc, .. } => {
                let shape = desc.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<usize>, _>>().map_err(
                    |_| {
                        anyhow::anyhow!(crate::verify::one_line(&format!(
                            "{}: tensor `{name}`: shape does not fit this machine's address space",
                            input.display()
                        )))
                    },
                )?;
                let bytes = {
                    let tensor = file.tensor(name).map_err(|e| file_error(input, e))?;
                    let values = tensor.decode().map_err(|e| file_error(input, e))?;
                    dtype.encode(&values)
                };
                out.add(name, dtype.safetensors_name(), &shape, &bytes).map_err(|e| file_error(output, e))?;
                decoded += 1;
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(name).map_err(|e| file_error(input, e))?;
                out.add(name, &v.dtype, &v.shape, &v.data).map_err(|e| file_error(output, e))?;
                copied += 1;
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    out.finish().map_err(|e| file_error(output, e))?;
    Ok((decoded, copied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_encode_little_endian() {
        let v = [1.0f32, -0.5];
        assert_eq!(OutputDtype::F32.encode(&v), [0, 0, 0x80, 0x3F, 0, 0, 0, 0xBF]);
        assert_eq!(OutputDtype::F16.encode(&v), [0x00, 0x3C, 0x00, 0xB8]);
        assert_eq!(OutputDtype::Bf16.encode(&v), [0x80, 0x3F, 0x00, 0xBF]);
        assert!(OutputDtype::parse("f64").is_err());
    }
}
