//! `rbe decode`.

pub fn run(_args: &crate::DecodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
