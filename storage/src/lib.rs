//! Blob storage for MonkeyCI: job logs, artifacts and caches.
//!
//! Everything is kept by [`BlobKey`], a validated relative `/`-separated name (no `..`, no
//! empty or `.` segments, no backslash or control characters, at most 1024 bytes), so a key is
//! always a safe path below a store's root or prefix. Stores implement [`BlobStore`], used as
//! `Arc<dyn BlobStore>`:
//!
//! - [`FsStore`] (`fs.rs`, the default): the object `a/b` is the file `root/a/b`.
//! - [`S3Store`] (`s3.rs`): the object `a/b` is `prefix + "a/b"` in one bucket of S3 or an
//!   S3-compatible server (MinIO, …), through aws-sdk-s3.
//!
//! Both write atomically (a temporary file renamed into place, or a single `PutObject`), stream
//! files instead of loading them, return the size and SHA-256 of what they stored
//! ([`ObjectInfo`]), and answer `Ok(None)` rather than an error for an object that does not
//! exist.
//!
//! [`archive`] turns a job's files into one tar.gz (to store as an artifact or cache) and back,
//! refusing any path or entry that would reach outside the workspace or the destination.
//!
//! With the feature `test-server`, [`testing::S3TestServer`] is a real S3-compatible server
//! (s3s-fs, SigV4 checked) that tests start in-process.
//!
//! Layout: `key.rs` ([`BlobKey`]), `store.rs` (the trait, [`ObjectInfo`]), `fs.rs`, `s3.rs`,
//! `archive.rs`, `error.rs`, `temp.rs` (temporary files renamed into place), `testing.rs`.

pub mod archive;
mod error;
mod fs;
mod key;
mod s3;
mod store;
mod temp;
#[cfg(feature = "test-server")]
pub mod testing;

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod store_tests;

pub use archive::{ArchiveError, PackSummary, UnpackSummary};
pub use error::StorageError;
pub use fs::FsStore;
pub use key::{BlobKey, MAX_KEY_LEN};
pub use s3::{S3Config, S3Store};
pub use store::{BlobStore, ObjectInfo};
