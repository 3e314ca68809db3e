//! Temporary files written beside their destination and renamed into place, so that readers see
//! either the old content or the whole new content, never a half-written file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::key::TEMP_SUFFIX;

/// A temporary path in a destination's directory. Removed on drop unless committed.
#[derive(Debug)]
pub(crate) struct PendingFile {
    path: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// A fresh temporary path in the directory that holds `dest`.
    pub(crate) fn beside(dest: &Path) -> PendingFile {
        PendingFile::in_dir(parent_dir(dest))
    }

    /// A fresh temporary path in `dir`.
    pub(crate) fn in_dir(dir: &Path) -> PendingFile {
        let name = format!(".{}{TEMP_SUFFIX}", uuid::Uuid::new_v4().simple());
        PendingFile {
            path: dir.join(name),
            committed: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the temporary file; fails if something already has its name.
    pub(crate) fn create(&self) -> io::Result<fs::File> {
        fs::OpenOptions::new().write(true).create_new(true).open(&self.path)
    }

    /// Renames the temporary file (or link) to `dest`, replacing whatever `dest` names (a
    /// symlink at `dest` is replaced, never followed).
    pub(crate) fn commit(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            // It may never have been created.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The directory that holds `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Whether an IO error means "there is nothing there": the path, or one of its parents, is
/// missing (a file standing where a parent directory would be counts as missing too).
pub(crate) fn is_absent(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Runs blocking filesystem work off the async workers. A panic in `work` is resumed here.
pub(crate) async fn blocking<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(io::Error::other(format!("background task did not finish: {error}"))),
    }
}
