//! `rbe inspect`.

pub fn run(_args: &crate::InspectArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
