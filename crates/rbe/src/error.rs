//! The facade's error: what failed reading or writing a model, naming the file, wrapping the
//! layer below (format, encoder, backends).

use crate::backend::LayerError;
use rbe_format::FormatError;
use std::path::PathBuf;

/// Every error of the facade's own API ([`crate::Model`], decoding, reports, benchmarks).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file is unreadable, not a valid `.rbe` file or shard index, or could not be written.
    /// The message starts with the file name (I/O errors already carry it).
    #[error("{}", file_message(path, source))]
    File {
        /// The file.
        path: PathBuf,
        /// What the format layer found.
        source: FormatError,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor whose shape does not fit this machine's address space.
    #[error("{}: tensor `{tensor}`: shape does not fit this machine's address space", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// Decoding to f16 would turn values beyond its range into infinities.
    #[error(
        "{}: tensor `{tensor}`: {count} values exceed f16's range (±65504); decode to f32 or bf16, or \
         saturate them explicitly (--saturate-f16)",
        path.display()
    )]
    Overflow {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Values out of range.
        count: usize,
    },
    /// A compressed tensor was asked for by a name the model does not hold as compressed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A backend failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The encoder failed.
    #[cfg(feature = "encode")]
    #[error(transparent)]
    Encode(#[from] rbe_encode::EncodeError),
    /// A benchmark baseline failed (caller error or candle).
    #[cfg(feature = "bench")]
    #[error("{0}")]
    Bench(String),
}

/// `path: what is wrong`, said once (output refusals already start with their path).
fn file_message(path: &std::path::Path, e: &FormatError) -> String {
    match e {
        FormatError::Output { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

impl Error {
    /// A format-layer error about `path` (an I/O error becomes [`Error::Io`]: it names its file).
    pub fn file(path: impl Into<PathBuf>, source: FormatError) -> Self {
        match source {
            FormatError::Io { path, source } => Error::Io { path: path.into(), source },
            source => Error::File { path: path.into(), source },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
