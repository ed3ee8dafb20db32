//! `rbe verify`: check every checksum and decode every block of an `.rbe` model; also the shared
//! "open a model, report errors on one line" helpers the other read-only commands use.

use rbe::Model;
use std::path::Path;

/// Runs `rbe verify FILE`: prints `ok: N tensors, M blocks, X bytes` when every check passes.
pub fn run(args: &crate::VerifyArgs) -> anyhow::Result<()> {
    let model = open_model(&args.input)?;
    let blocks = model.verify().map_err(cli_error)?;
    println!("ok: {} tensors, {blocks} blocks, {} bytes", model.entries().count(), model.file_bytes());
    Ok(())
}

/// Opens and structurally validates an `.rbe` file or shard index; errors name the file.
pub(crate) fn open_model(path: &Path) -> anyhow::Result<Model> {
    Model::open(path).map_err(cli_error)
}

/// Turns a library error into a one-line CLI error (control characters, e.g. from a tensor name,
/// escaped); the library's messages already start with the file at fault.
pub(crate) fn cli_error(e: rbe::Error) -> anyhow::Error {
    anyhow::anyhow!(one_line(&e.to_string()))
}

/// `text` with every control character escaped, so a message or a name from a file never spans
/// several lines or moves the terminal's cursor.
pub(crate) fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(one_line("plain `name`"), "plain `name`");
        assert_eq!(one_line("a\nb\tc\u{1b}[2J"), "a\\nb\\tc\\u{1b}[2J");
    }
}
