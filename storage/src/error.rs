//! The errors of blob storage.

use crate::archive::ArchiveError;

/// Why a storage operation failed. A missing object is not an error: the operations that read
/// return `Ok(None)` for it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A key (or list prefix) that is not a safe relative path.
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// A store that cannot be set up as configured.
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),
    /// A local file or directory operation failed. `context` says which and on what path.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The S3 service refused the request or could not be reached. `message` holds the service's
    /// error code and message (never credentials).
    #[error("S3 {operation} of {key:?} failed: {message}")]
    S3 {
        operation: &'static str,
        key: String,
        message: String,
    },
    /// Packing or unpacking an archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}
