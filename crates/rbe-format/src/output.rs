//! Where a file may be written, and the temp files that make writing atomic.
//!
//! Every writer of this crate (and the tools above it) goes through [`OutputFile`]: an existing
//! output must be a regular file, because the final rename would replace a device, FIFO or
//! directory entry with a plain file; an output that is one of the inputs (same device and inode,
//! through any link or spelling) is refused before anything is written; an output that is a
//! symbolic link is written through, so the link keeps pointing at the new file.
//!
//! Temp files are named `.<file name>.rbe-tmp.<pid>.<random>` beside the target. The process id
//! lets a later run tell a stale temp file (its writer is gone: killed, power lost) from a live
//! one: [`remove_stale_temps`] deletes the stale ones, and every new output does so in its
//! directory first. Live temp files are listed in a process-wide registry so a signal handler can
//! delete them ([`live_temp_files`]) before the process exits.

use crate::error::FormatError;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The marker between a temp file's target name and its process id.
const TEMP_MARKER: &str = ".rbe-tmp.";

/// Temp files of this process that exist now (created, not yet renamed or removed).
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The temp files this process has open now, for a signal handler to delete before it exits.
pub fn live_temp_files() -> Vec<PathBuf> {
    live().clone()
}

/// Deletes every temp file of this process (what a handler of SIGINT/SIGTERM calls); returns how
/// many it removed.
pub fn remove_live_temps() -> usize {
    let mut files = live();
    let n = files.iter().filter(|p| std::fs::remove_file(p).is_ok()).count();
    files.clear();
    n
}

fn io_err(path: &Path, source: std::io::Error) -> FormatError {
    FormatError::Io { path: path.display().to_string(), source }
}

/// Whether `a` and `b` name the same existing file (same device and inode; any links followed).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => same_inode(&ma, &mb),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// A checked output path: where the bytes will land (links resolved) and its directory.
#[derive(Debug, Clone)]
pub struct OutputFile {
    target: PathBuf,
}

impl OutputFile {
    /// Checks that `path` may be written without harming `inputs`: refuses an existing
    /// non-regular file and any path that is one of `inputs`. Removes stale temp files of killed
    /// runs in the target's directory.
    pub fn check(path: &Path, inputs: &[&Path]) -> Result<Self, FormatError> {
        let refuse = |reason: String| Err(FormatError::Output { path: path.display().to_string(), reason });
        if let Some(input) = inputs.iter().find(|i| same_file(i, path)) {
            return refuse(format!(
                "is the input {}: writing it would destroy the original; choose another output",
                input.display()
            ));
        }
        let target = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => std::fs::canonicalize(path).map_err(|e| io_err(path, e))?,
            Ok(m) if m.is_dir() => return refuse("is a directory".to_owned()),
            Ok(_) => return refuse("exists and is not a regular file (a device, FIFO or socket)".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_owned(),
            Err(e) => return Err(io_err(path, e)),
        };
        let out = OutputFile { target };
        remove_stale_temps(out.dir());
        Ok(out)
    }

    /// Where the file will appear.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// The directory the file and its temp file live in.
    pub fn dir(&self) -> &Path {
        self.target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// A new temp file beside the target, registered until it is persisted or dropped.
    pub fn temp(&self) -> Result<TempFile, FormatError> {
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}{TEMP_MARKER}{}.", std::process::id()))
            .suffix("")
            .tempfile_in(self.dir())
            .map_err(|e| self.temp_error(e))?;
        live().push(file.path().to_owned());
        Ok(TempFile { file: Some(file), target: self.target.clone() })
    }

    /// Why no temp file could be made, said about the output and its directory (the temp file's
    /// random name means nothing to a user).
    fn temp_error(&self, e: std::io::Error) -> FormatError {
        let dir = self.dir().display();
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => format!("directory {dir} does not exist"),
            std::io::ErrorKind::PermissionDenied => format!("cannot create files in {dir}: permission denied"),
            std::io::ErrorKind::StorageFull => format!("no space left in {dir}"),
            _ => return io_err(&self.target, std::io::Error::from(e.kind())),
        };
        FormatError::Output { path: self.target.display().to_string(), reason }
    }

    /// Writes `bytes` atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, bytes: &[u8]) -> Result<(), FormatError> {
        let mut tmp = self.temp()?;
        tmp.file().write_all(bytes).map_err(|e| io_err(&self.target, e))?;
        tmp.persist()
    }
}

/// Writes `bytes` to `path` atomically (see [`OutputFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    OutputFile::check(path, &[])?.write_atomic(bytes)
}

/// A temp file beside its target: removed when dropped unless [`TempFile::persist`]ed.
#[derive(Debug)]
pub struct TempFile {
    file: Option<tempfile::NamedTempFile>,
    target: PathBuf,
}

impl TempFile {
    /// The open file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until persisted").as_file_mut()
    }

    /// Fsyncs the file, makes it an ordinary readable file (0644), renames it onto the target and
    /// fsyncs the directory so the rename is durable.
    pub fn persist(mut self) -> Result<(), FormatError> {
        let file = self.file.take().expect("present until persisted");
        let temp_path = file.path().to_owned();
        let result = (|| {
            #[cfg(unix)]
            {
                // Temp files are created 0600; a finished model is an ordinary readable file.
                use std::os::unix::fs::PermissionsExt;
                file.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| io_err(&self.target, e))?;
            }
            file.as_file().sync_all().map_err(|e| io_err(&self.target, e))?;
            file.persist(&self.target).map_err(|e| io_err(&self.target, e.error))?;
            if let Some(dir) = self.target.parent().filter(|p| !p.as_os_str().is_empty())
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        unregister(&temp_path);
        result
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

fn unregister(path: &Path) {
    live().retain(|p| p != path);
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            unregister(file.path());
            // NamedTempFile removes the file as it drops.
        }
    }
}

/// The process id a temp file name carries, if it is one of ours.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = &name[name.find(TEMP_MARKER)? + TEMP_MARKER.len()..];
    rest.split('.').next()?.parse().ok()
}

/// Whether process `pid` is running (on systems without `/proc`, every process counts as
/// running, so nothing is removed).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Removes temp files in `dir` left by writers that are no longer running; returns their paths.
/// Errors (unreadable directory, a file removed meanwhile) are skipped: this is housekeeping.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') {
            continue;
        }
        if let Some(pid) = temp_owner(name)
            && !process_alive(pid)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_writer() {
        assert_eq!(temp_owner(".model.rbe.rbe-tmp.4242.aBc123"), Some(4242));
        assert_eq!(temp_owner(".model.rbe.aBc123.tmp"), None);
        assert_eq!(temp_owner("model.rbe"), None);
    }

    #[test]
    fn outputs_that_would_harm_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.safetensors");
        std::fs::write(&input, b"x").unwrap();
        let err = OutputFile::check(&input, &[&input]).unwrap_err().to_string();
        assert!(err.contains("is the input"), "{err}");
        let err = OutputFile::check(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        #[cfg(unix)]
        {
            let link = dir.path().join("link.safetensors");
            std::os::unix::fs::symlink(&input, &link).unwrap();
            assert!(OutputFile::check(&link, &[&input]).is_err(), "a link to the input is the input");
            let out = OutputFile::check(&link, &[]).unwrap();
            assert_eq!(out.path(), std::fs::canonicalize(&input).unwrap(), "written through the link");
            if Path::new("/dev/null").exists() {
                let err = OutputFile::check(Path::new("/dev/null"), &[]).unwrap_err().to_string();
                assert!(err.contains("not a regular file"), "{err}");
            }
        }
    }

    #[test]
    fn temp_files_are_registered_until_persisted_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputFile::check(&dir.path().join("a.rbe"), &[]).unwrap();
        let mut t = out.temp().unwrap();
        t.file().write_all(b"abc").unwrap();
        assert!(live_temp_files().iter().any(|p| p.starts_with(dir.path())));
        t.persist().unwrap();
        assert!(!live_temp_files().iter().any(|p| p.starts_with(dir.path())));
        assert_eq!(std::fs::read(dir.path().join("a.rbe")).unwrap(), b"abc");
        // A temp file of a process that cannot exist (pid above any kernel's limit).
        let stale = dir.path().join(".a.rbe.rbe-tmp.4294967295.x1");
        std::fs::write(&stale, b"half").unwrap();
        let mine = dir.path().join(format!(".a.rbe.rbe-tmp.{}.x2", std::process::id()));
        std::fs::write(&mine, b"live").unwrap();
        if Path::new("/proc").is_dir() {
            assert_eq!(remove_stale_temps(dir.path()), vec![stale.clone()]);
            assert!(mine.exists(), "a live writer's temp file stays");
        }
    }
}
