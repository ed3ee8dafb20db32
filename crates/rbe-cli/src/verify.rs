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

/// Whether `c` could move the cursor, recolour the terminal or reorder the text around it:
/// control characters (ANSI escapes start with one) and the Unicode bidirectional controls.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control or bidi character escaped, so a message or a name from a file never
/// spans several lines, moves the terminal's cursor or reverses what follows it.
pub(crate) fn one_line(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    text.chars().map(|c| if is_unsafe(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// `text` cut to `width` characters, an ellipsis in place of its middle: a tensor name keeps the
/// start (which layer) and more of the end (which weight).
pub(crate) fn shorten(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    let Some(keep) = width.checked_sub(1) else { return String::new() };
    let head = keep / 3;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(n - (keep - head)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(one_line("plain `name`"), "plain `name`");
        assert_eq!(one_line("a\nb\tc\u{1b}[2J"), "a\\nb\\tc\\u{1b}[2J");
        assert_eq!(one_line("w\u{202E}thgiew"), "w\\u{202e}thgiew", "a bidi override is shown, not obeyed");
    }

    #[test]
    fn long_names_lose_their_middle_to_an_ellipsis() {
        let name = "encoder.layer.11.attention.output.dense.weight";
        assert_eq!(shorten(name, 100), name);
        let short = shorten(name, 30);
        assert_eq!(short.chars().count(), 30);
        assert_eq!(short, "encoder.l….output.dense.weight");
        assert_eq!(shorten(name, 1), "…");
        assert_eq!(shorten(name, 0), "");
    }
}
