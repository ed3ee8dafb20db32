//! `rbe verify`.

pub fn run(_args: &crate::VerifyArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
