//! The `BlobStore` trait every store implements.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::key::{check_segment, BlobKey};
use crate::StorageError;

/// What a store holds under a key after a successful put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: BlobKey,
    /// The object's length in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// A place to keep objects (job logs, artifact and cache archives) by [`BlobKey`].
///
/// Used as `Arc<dyn BlobStore>`. Reads of an object that does not exist return `Ok(None)`; only
/// real failures are errors. Writes are atomic: a reader sees the old object, or the whole new
/// one.
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Uploads the file at `path`, streaming it (a large file is never held in memory).
    fn put_file<'a>(&'a self, key: &'a BlobKey, path: &'a Path) -> BoxFuture<'a, Result<ObjectInfo, StorageError>>;

    /// Stores a small object held in memory, such as a job log.
    fn put_bytes<'a>(&'a self, key: &'a BlobKey, bytes: Vec<u8>) -> BoxFuture<'a, Result<ObjectInfo, StorageError>>;

    /// Downloads the object into `dest` (through a temporary file beside it, renamed when
    /// complete; missing parent directories are created). Returns its size, or `None` (and
    /// leaves `dest` alone) when there is no such object.
    fn get_to_file<'a>(&'a self, key: &'a BlobKey, dest: &'a Path) -> BoxFuture<'a, Result<Option<u64>, StorageError>>;

    /// A handle to read the object from, to stream it to a client; `None` when there is no such
    /// object. Nothing named is left on disk for it however it ends, dropped half way included:
    /// a store that needs a local copy writes it in `scratch` and unlinks it once it is open
    /// (removing it if dropped before), and the handle is then the copy's only name.
    fn open<'a>(
        &'a self,
        key: &'a BlobKey,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Option<tokio::fs::File>, StorageError>>;

    /// Reads a small object into memory; `None` when there is no such object.
    fn get_bytes<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>>;

    /// The object's size, or `None` when there is no such object.
    fn head<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<u64>, StorageError>>;

    /// Whether the object exists.
    fn exists<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move { Ok(self.head(key).await?.is_some()) })
    }

    /// Every object whose key starts with `prefix` (a plain string prefix: `"builds/4"` matches
    /// `builds/42/…`), with its size, sorted by key. The empty prefix lists everything.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<(BlobKey, u64)>, StorageError>>;

    /// Removes the object; removing an object that does not exist succeeds.
    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<(), StorageError>>;

    /// One line saying where objects go, for startup logs (never credentials).
    fn describe(&self) -> String;
}

/// Checks a list prefix: like a key, except that it may be empty, may end with `/`, and its last
/// segment may be any partial name.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    let invalid = |reason: String| StorageError::InvalidKey {
        key: prefix.to_owned(),
        reason,
    };
    if prefix.starts_with('/') {
        return Err(invalid("it starts with '/' (prefixes are relative)".into()));
    }
    let mut segments: Vec<&str> = prefix.split('/').collect();
    let last = segments.pop().unwrap_or_default();
    for segment in segments {
        check_segment(segment).map_err(invalid)?;
    }
    if last.contains('\\') || last.chars().any(char::is_control) {
        return Err(invalid("it contains a backslash or a control character".into()));
    }
    Ok(())
}

/// SHA-256 (lowercase hex) of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads `path` once: its length and SHA-256 digest.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), StorageError> {
    let context = || format!("cannot read {}", path.display());
    let mut file = File::open(path).map_err(|e| StorageError::io(context(), e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(|e| StorageError::io(context(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_may_be_empty_partial_or_end_with_a_slash() {
        for prefix in ["", "builds/", "builds/4", "a/b/c.", "a/..x", "a/.."] {
            assert!(check_prefix(prefix).is_ok(), "{prefix:?} should be accepted");
        }
    }

    #[test]
    fn prefixes_may_not_climb_or_be_absolute() {
        for prefix in ["/etc", "../x", "a/../b", "a//b", "a\\b/", "a/b\\c", "./a"] {
            assert!(
                matches!(check_prefix(prefix), Err(StorageError::InvalidKey { .. })),
                "{prefix:?} should be refused"
            );
        }
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
