//! `FsStore`: objects as files below a root directory (the default store).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::key::TEMP_SUFFIX;
use crate::store::{check_prefix, sha256_hex};
use crate::temp::{blocking, is_absent, parent_dir, PendingFile};
use crate::{BlobKey, BlobStore, ObjectInfo, StorageError};

/// Keeps the object `a/b/c` in the file `root/a/b/c`.
///
/// Writes go to a temporary file in the object's directory (named `.<uuid>.monkeyci-tmp`, which no
/// key can end with, and which `list` skips), are synced, and are renamed into place. Missing
/// directories are created; directories left empty by `delete` stay. Being files, `a` and `a/b`
/// cannot both be objects (the same holds for S3-compatible servers that store files, such as
/// s3s-fs).
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store below `root`. Nothing is touched until the first write, which creates `root` if
    /// it is missing.
    pub fn new(root: PathBuf) -> FsStore {
        FsStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

impl BlobStore for FsStore {
    fn put_file<'a>(&'a self, key: &'a BlobKey, path: &'a Path) -> BoxFuture<'a, Result<ObjectInfo, StorageError>> {
        let target = self.path_of(key);
        let source = path.to_path_buf();
        let key = key.clone();
        Box::pin(async move {
            let work = move || {
                let context = || format!("cannot read {}", source.display());
                let mut input = File::open(&source).map_err(|e| StorageError::io(context(), e))?;
                let meta = input.metadata().map_err(|e| StorageError::io(context(), e))?;
                if !meta.is_file() {
                    let not_a_file = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
                    return Err(StorageError::io(context(), not_a_file));
                }
                let (size, digest) = write_atomically(&target, |out| copy_hashing(&mut input, out))?;
                Ok(ObjectInfo {
                    key,
                    size,
                    sha256: hex::encode(digest),
                })
            };
            blocking(work)
                .await
                .map_err(|e| StorageError::io("storage task failed", e))?
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a BlobKey, bytes: Vec<u8>) -> BoxFuture<'a, Result<ObjectInfo, StorageError>> {
        let target = self.path_of(key);
        let key = key.clone();
        Box::pin(async move {
            let work = move || {
                write_atomically(&target, |out| out.write_all(&bytes))?;
                Ok(ObjectInfo {
                    key,
                    size: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                })
            };
            blocking(work)
                .await
                .map_err(|e| StorageError::io("storage task failed", e))?
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a BlobKey, dest: &'a Path) -> BoxFuture<'a, Result<Option<u64>, StorageError>> {
        let source = self.path_of(key);
        let dest = dest.to_path_buf();
        Box::pin(async move {
            let work = move || {
                let Some(mut input) = open_object(&source)? else {
                    return Ok(None);
                };
                let size = write_atomically(&dest, |out| io::copy(&mut input, out))?;
                Ok(Some(size))
            };
            blocking(work)
                .await
                .map_err(|e| StorageError::io("storage task failed", e))?
        })
    }

    /// The object's own file: objects are replaced by renaming, never rewritten in place, so an
    /// open handle keeps reading the object as it was.
    fn open<'a>(
        &'a self,
        key: &'a BlobKey,
        _scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Option<tokio::fs::File>, StorageError>> {
        let source = self.path_of(key);
        Box::pin(async move {
            let file = blocking(move || open_object(&source))
                .await
                .map_err(|e| StorageError::io("storage task failed", e))??;
            Ok(file.map(tokio::fs::File::from_std))
        })
    }

    fn get_bytes<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        let source = self.path_of(key);
        Box::pin(async move {
            let work = move || {
                let Some(mut input) = open_object(&source)? else {
                    return Ok(None);
                };
                let mut bytes = Vec::new();
                input
                    .read_to_end(&mut bytes)
                    .map_err(|e| StorageError::io(format!("cannot read {}", source.display()), e))?;
                Ok(Some(bytes))
            };
            blocking(work)
                .await
                .map_err(|e| StorageError::io("storage task failed", e))?
        })
    }

    fn head<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<u64>, StorageError>> {
        let path = self.path_of(key);
        Box::pin(async move {
            match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                Ok(_) => Ok(None),
                Err(e) if is_absent(&e) => Ok(None),
                Err(e) => Err(StorageError::io(format!("cannot stat {}", path.display()), e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<(BlobKey, u64)>, StorageError>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        Box::pin(async move {
            check_prefix(&prefix)?;
            blocking(move || list_below(&root, &prefix))
                .await
                .map_err(|e| StorageError::io("storage task failed", e))?
        })
    }

    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = self.path_of(key);
        Box::pin(async move {
            let context = || format!("cannot delete {}", path.display());
            match tokio::fs::symlink_metadata(&path).await {
                // A directory is not an object: nothing to delete.
                Ok(meta) if meta.is_dir() => return Ok(()),
                Ok(_) => {}
                Err(e) if is_absent(&e) => return Ok(()),
                Err(e) => return Err(StorageError::io(context(), e)),
            }
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if is_absent(&e) => Ok(()),
                Err(e) => Err(StorageError::io(context(), e)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }
}

/// Opens the object file at `path`; `None` when it does not exist (or is a directory).
fn open_object(path: &Path) -> Result<Option<File>, StorageError> {
    let context = || format!("cannot read {}", path.display());
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(StorageError::io(context(), e)),
    };
    let meta = file.metadata().map_err(|e| StorageError::io(context(), e))?;
    Ok(meta.is_file().then_some(file))
}

/// Writes `dest` through a temporary file beside it: creates the directory, lets `fill` write,
/// syncs, renames. On any failure the temporary file is removed and `dest` is untouched.
fn write_atomically<T>(dest: &Path, fill: impl FnOnce(&mut File) -> io::Result<T>) -> Result<T, StorageError> {
    let dir = parent_dir(dest);
    fs::create_dir_all(dir).map_err(|e| StorageError::io(format!("cannot create directory {}", dir.display()), e))?;
    let pending = PendingFile::beside(dest);
    let context = || format!("cannot write {}", dest.display());
    let mut file = pending.create().map_err(|e| StorageError::io(context(), e))?;
    let value = fill(&mut file).map_err(|e| StorageError::io(context(), e))?;
    file.sync_all().map_err(|e| StorageError::io(context(), e))?;
    drop(file);
    pending.commit(dest).map_err(|e| StorageError::io(context(), e))?;
    Ok(value)
}

/// Copies `input` to `out` in one pass, hashing as it goes: (length, SHA-256).
fn copy_hashing(input: &mut impl Read, out: &mut impl Write) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

/// Walks the directory that the prefix names (up to its last `/`) and returns the objects whose
/// keys start with `prefix`, sorted. Symlinks, temporary files and names that are not valid keys
/// are skipped.
fn list_below(root: &Path, prefix: &str) -> Result<Vec<(BlobKey, u64)>, StorageError> {
    let start = match prefix.rfind('/') {
        Some(slash) => &prefix[..slash],
        None => "",
    };
    let mut found = Vec::new();
    let mut pending_dirs = vec![start.to_owned()];
    while let Some(dir_key) = pending_dirs.pop() {
        let dir = if dir_key.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir_key)
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(StorageError::io(format!("cannot list {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(format!("cannot list {}", dir.display()), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let key = if dir_key.is_empty() {
                name.clone()
            } else {
                format!("{dir_key}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|e| StorageError::io(format!("cannot stat {}", entry.path().display()), e))?;
            if file_type.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    pending_dirs.push(key);
                }
            } else if file_type.is_file() && key.starts_with(prefix) && !name.ends_with(TEMP_SUFFIX) {
                let size = match entry.metadata() {
                    Ok(meta) => meta.len(),
                    // Deleted while we looked.
                    Err(e) if is_absent(&e) => continue,
                    Err(e) => return Err(StorageError::io(format!("cannot stat {}", entry.path().display()), e)),
                };
                match BlobKey::new(key) {
                    Ok(key) => found.push((key, size)),
                    Err(error) => tracing::warn!(%error, "skipping a file that is not a valid blob key"),
                }
            }
        }
    }
    found.sort();
    Ok(found)
}
