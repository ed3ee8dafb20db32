//! `rbe decode`: expand an `.rbe` model to dense safetensors through [`rbe::Model::decode_to`],
//! with a progress bar on a terminal.

use crate::progress::{Progress, Unit};
use crate::verify::{cli_error, one_line, open_model};
use rbe::{DecodeOptions, OutputDtype};

/// Runs `rbe decode FILE -o OUT [--dtype source|f32|f16|bf16]`; `FILE` may be a sharded `*.rbe.index.json`,
/// then `OUT` is a directory that receives one safetensors shard per `.rbe` shard and an index.
pub fn run(args: &crate::DecodeArgs) -> anyhow::Result<()> {
    let dtype: Option<OutputDtype> = match args.dtype.as_str() {
        "source" => None,
        d => Some(d.parse().map_err(|e: String| crate::Usage(e))?),
    };
    let options = DecodeOptions { dtype, saturate_f16: args.saturate_f16 };
    let model = open_model(&args.input)?;
    // On a terminal: bytes of the stored model processed.
    let bar = Progress::new(model.stored_bytes(), Unit::Bytes, false);
    let progress = |name: &str, done: u64, _total: u64| bar.set(name, done);
    let summary = model.decode_to(&args.output, &options, &progress).map_err(cli_error)?;
    bar.finish();
    for w in &summary.warnings {
        eprintln!("warning: {}", one_line(w));
    }
    if model.index().is_some() {
        println!(
            "wrote {}: {} tensors decoded, {} copied verbatim",
            summary.output.display(),
            summary.decoded,
            summary.copied
        );
    } else {
        println!(
            "wrote {}: {} tensors decoded to {}, {} copied verbatim",
            one_line(&args.output.display().to_string()),
            summary.decoded,
            args.dtype,
            summary.copied
        );
    }
    Ok(())
}
