//! `rbe verify`: check every checksum and decode every block of an `.rbe` file; also the shared
//! "open an `.rbe` file, report errors on one line" helpers the other read-only commands use.

use anyhow::Context;
use rbe_format::{FormatError, RbeFile};
use std::path::Path;

/// Runs `rbe verify FILE`: prints `ok: N tensors, M blocks, X bytes` when every check passes.
pub fn run(args: &crate::VerifyArgs) -> anyhow::Result<()> {
    let file = open_rbe(&args.input)?;
    let blocks = file.verify().map_err(|e| file_error(&args.input, e))?;
    let bytes = file_len(&args.input)?;
    println!("ok: {} tensors, {blocks} blocks, {bytes} bytes", file.entries().len());
    Ok(())
}

/// Opens and structurally validates an `.rbe` file; errors name the file.
pub(crate) fn open_rbe(path: &Path) -> anyhow::Result<RbeFile> {
    RbeFile::open(path).map_err(|e| file_error(path, e))
}

/// Size of `path` in bytes.
pub(crate) fn file_len(path: &Path) -> anyhow::Result<u64> {
    let meta = std::fs::metadata(path).with_context(|| one_line(&path.display().to_string()))?;
    Ok(meta.len())
}

/// Turns a library error about `path` into a one-line CLI error: prefixed with the file name
/// (I/O errors already carry it) and with control characters (e.g. from a tensor name) escaped.
pub(crate) fn file_error(path: &Path, e: FormatError) -> anyhow::Error {
    let message = match &e {
        FormatError::Io { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    };
    anyhow::anyhow!(one_line(&message))
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
