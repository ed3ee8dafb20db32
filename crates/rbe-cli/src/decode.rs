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

/// Runs `rbe decode FILE -o OUT [--dtype f32|f16|bf16]`.
pub fn run(args: &crate::DecodeArgs) -> anyhow::Result<()> {
    let dtype = OutputDtype::parse(&args.dtype)?;
    let input = &args.input;
    let file = open_rbe(input)?;
    let mut out = SafetensorsWriter::create(&args.output).map_err(|e| file_error(&args.output, e))?;
    let mut carried: Vec<(&String, &String)> =
        file.metadata().iter().filter(|(key, _)| !key.starts_with(RBE_METADATA_PREFIX)).collect();
    carried.sort();
    for (key, value) in carried {
        out.metadata(key, value.clone());
    }
    let (mut decoded, mut copied) = (0usize, 0usize);
    for (name, entry) in file.entries() {
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
                out.add(name, dtype.safetensors_name(), &shape, &bytes).map_err(|e| file_error(&args.output, e))?;
                decoded += 1;
            }
            Entry::Verbatim(_) => {
                let v = file.verbatim(name).map_err(|e| file_error(input, e))?;
                out.add(name, &v.dtype, &v.shape, &v.data).map_err(|e| file_error(&args.output, e))?;
                copied += 1;
            }
        }
    }
    out.finish().map_err(|e| file_error(&args.output, e))?;
    println!(
        "wrote {}: {decoded} tensors decoded to {}, {copied} copied verbatim",
        crate::verify::one_line(&args.output.display().to_string()),
        args.dtype
    );
    Ok(())
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
