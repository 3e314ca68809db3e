use thiserror::Error;

use crate::model::ExpectedVersion;

/// An append was refused or failed. Nothing was written.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The stream is not at the expected version: somebody else appended first.
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    WrongExpectedVersion {
        stream_id: String,
        expected: ExpectedVersion,
        /// The stream's version when the conflict was seen (0: no such stream).
        actual: u64,
    },
    /// The idempotency key was used before for a different command or input.
    #[error("idempotency key {key:?} was already used for a different {command} request")]
    IdempotencyKeyReused { key: String, command: String },
    /// The events themselves are malformed.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Reading from the log failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// No event was ever appended to the stream.
    #[error("stream {0} not found")]
    StreamNotFound(String),
    /// A stored row could not be decoded.
    #[error("event at position {position} is unreadable: {reason}")]
    Corrupt { position: i64, reason: String },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Any error of the event store.
#[derive(Debug, Error)]
pub enum EventStoreError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
}
