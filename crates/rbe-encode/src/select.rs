//! Which tensors get compressed: one rule ([`compressible`]) for every tool — `rbe encode`, `rbe
//! analyze` and library users — plus the user's include/exclude globs ([`Selection`]).

use crate::error::EncodeError;
use crate::settings::EncodeSettings;
use crate::source::SourceTensor;
use crate::tensor::matrix_shape;
use globset::{Glob, GlobSet, GlobSetBuilder};

/// Whether a tensor can be compressed with blocks of edge `block`: a float dtype (`F32`, `F16`,
/// `BF16`), rank >= 2, and its 2-D view `[d0, product of the rest]` at least one block on each side.
/// Everything else (biases, norms, embeddings' position ids, small matrices) is stored verbatim.
pub fn compressible(dtype: &str, shape: &[usize], block: usize) -> bool {
    matches!(dtype, "F32" | "F16" | "BF16")
        && shape.len() >= 2
        && matrix_shape(shape).is_some_and(|(rows, cols)| rows >= block && cols >= block)
}

/// Why [`compressible`] says no, in words a user can act on (`None` when it says yes).
pub fn verbatim_reason(dtype: &str, shape: &[usize], block: usize) -> Option<String> {
    if !matches!(dtype, "F32" | "F16" | "BF16") {
        return Some(format!("dtype {dtype} (only F32, F16 and BF16 are compressed)"));
    }
    if shape.len() < 2 {
        return Some("fewer than 2 dimensions".to_owned());
    }
    let (rows, cols) = matrix_shape(shape).unwrap_or((0, 0));
    if rows < block || cols < block {
        let hint = [8, 16, 32].into_iter().rev().find(|&b| b < block && rows >= b && cols >= b);
        return Some(match hint {
            Some(b) => format!("{rows}x{cols} is smaller than a {block}x{block} block (try --block {b})"),
            None => format!("{rows}x{cols} is smaller than a {block}x{block} block"),
        });
    }
    None
}

/// The include/exclude globs of a model encode, compiled.
#[derive(Debug, Clone)]
pub struct Selection {
    include: GlobSet,
    exclude: GlobSet,
    has_include: bool,
}

fn globset(patterns: &[String]) -> Result<GlobSet, EncodeError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| EncodeError::Settings(format!("bad glob `{p}`: {e}")))?);
    }
    b.build().map_err(|e| EncodeError::Settings(e.to_string()))
}

impl Selection {
    /// Compiles the globs; when `include` is non-empty only matching tensors are compressed, and
    /// tensors matching `exclude` never are.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, EncodeError> {
        if let Some(p) = include.iter().find(|p| exclude.contains(p)) {
            return Err(EncodeError::Settings(format!(
                "`{p}` is both included and excluded: nothing it matches is compressed"
            )));
        }
        Ok(Selection { include: globset(include)?, exclude: globset(exclude)?, has_include: !include.is_empty() })
    }

    /// Whether `name` passes the globs.
    pub fn matches(&self, name: &str) -> bool {
        (!self.has_include || self.include.is_match(name)) && !self.exclude.is_match(name)
    }

    /// Whether any include glob was given.
    pub fn has_include(&self) -> bool {
        self.has_include
    }

    /// Why `t` is stored verbatim (`None` when it is compressed).
    pub fn reason(&self, t: &SourceTensor, settings: &EncodeSettings) -> Option<String> {
        if self.has_include && !self.include.is_match(&t.name) {
            return Some("not matched by --include".to_owned());
        }
        if self.exclude.is_match(&t.name) {
            return Some("matched by --exclude".to_owned());
        }
        verbatim_reason(&t.dtype, &t.shape, settings.block)
    }

    /// Whether `t` is compressed: [`compressible`] at `settings.block` and passing the globs.
    pub fn compresses(&self, t: &SourceTensor, settings: &EncodeSettings) -> bool {
        compressible(&t.dtype, &t.shape, settings.block) && self.matches(&t.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert!(compressible("F16", &[64, 64], 64));
        assert!(compressible("BF16", &[64, 4, 4, 4], 64));
        assert!(!compressible("F32", &[4096], 64));
        assert!(!compressible("F32", &[63, 4096], 64));
        assert!(!compressible("I64", &[64, 64], 64));
        let s = Selection::new(&["a.*".into()], &["a.b".into()]).unwrap();
        assert!(s.matches("a.c") && !s.matches("a.b") && !s.matches("b"));
        assert!(Selection::new(&["[".into()], &[]).is_err());
    }
}
