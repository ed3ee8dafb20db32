//! `cargo xtask tidy`: source rules no compiler checks — every Rust module opens with a `//!` line
//! saying its job, and no source comment or doc cites a tracker issue (they go stale; say why instead).

use crate::root;
use std::path::{Path, PathBuf};

/// The folders whose Rust sources the rules cover.
const SOURCE_DIRS: &[&str] = &["crates", "xtask", "benches", "fuzz"];

/// One broken rule, with where.
#[derive(Debug, PartialEq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

/// Checks every tracked source file; fails with the list of violations.
pub fn run() -> anyhow::Result<()> {
    let root = root();
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        collect_rs(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut bad = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        let rel = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        bad.extend(check_source(&rel, &text));
    }
    if bad.is_empty() {
        eprintln!("tidy: {} source files follow the rules", files.len());
        return Ok(());
    }
    for v in &bad {
        eprintln!("{}:{}: {}", v.file, v.line, v.what);
    }
    anyhow::bail!("tidy: {} violation(s) in {} files", bad.len(), files.len())
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Build outputs and fuzzer state are not sources.
        if path.is_dir() {
            if !matches!(name, "target" | "corpus" | "artifacts" | "coverage") {
                collect_rs(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The rules for one file's text.
pub fn check_source(file: &str, text: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
    match first {
        Some((_, l)) if l.trim_start().starts_with("//!") || l.trim_start().starts_with("#![doc") => {}
        Some((i, _)) => out.push(Violation {
            file: file.to_owned(),
            line: i + 1,
            what: "module does not open with a `//!` line saying its job".into(),
        }),
        None => out.push(Violation { file: file.to_owned(), line: 1, what: "empty source file".into() }),
    }
    for (i, line) in text.lines().enumerate() {
        if let Some(comment) = comment_text(line)
            && cites_issue(comment)
        {
            out.push(Violation {
                file: file.to_owned(),
                line: i + 1,
                what: "comment cites a tracker issue; say why instead".into(),
            });
        }
    }
    out
}

/// The comment part of a line (`//`, `///`, `//!`), if any; string literals are not comments.
fn comment_text(line: &str) -> Option<&str> {
    let mut in_str = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && bytes[i + 1] == b'/' => return Some(&line[i + 2..]),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The word `issue` or `issues` followed by a number, with or without a `#`.
fn cites_issue(comment: &str) -> bool {
    let lower = comment.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| c.is_whitespace() || c == '(' || c == ')').collect();
    words.windows(2).any(|w| {
        let word = w[0].trim_end_matches(|c: char| !c.is_ascii_alphabetic() && c != '\'');
        let number = w[1].trim_start_matches('#').trim_end_matches(|c: char| !c.is_ascii_digit());
        matches!(word, "issue" | "issues" | "issue's")
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_without_a_doc_line_is_reported() {
        let v = check_source("a.rs", "\nuse std::fs;\n");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].line, 2);
        assert!(check_source("b.rs", "//! Does b.\nfn f() {}\n").is_empty());
        assert!(check_source("c.rs", "#![doc = include_str!(\"x.md\")]\n").is_empty());
    }

    #[test]
    fn issue_citations_in_comments_are_reported_but_not_in_strings() {
        let v = check_source("a.rs", "//! A.\n// see issue 4 for why\n/// Issue #12's rule\nfn f() {}\n");
        assert_eq!(v.iter().map(|v| v.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(check_source("b.rs", "//! B.\nlet s = \"// issue 5\";\n").is_empty());
        assert!(check_source("c.rs", "//! C.\n// this issue is about 4 things\n").is_empty());
    }
}
