//! `rbe encode`.

/// Arguments of `rbe encode` (filled in by the encoder work).
#[derive(clap::Args)]
pub struct EncodeArgs {
    /// Input safetensors file or `*.safetensors.index.json`.
    pub input: std::path::PathBuf,
}

pub fn run(_args: &EncodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
