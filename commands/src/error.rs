use monkeyci_domain::{DecodeError, DomainError};
use monkeyci_eventstore::{AppendError, EventStoreError, ReadError};
use thiserror::Error;

/// A command was refused or could not be carried out. Nothing was appended.
#[derive(Debug, Error)]
pub enum CommandError {
    /// A rule of the domain refused it (validation, not found, illegal transition, …).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The idempotency key was already used for a different command or input.
    #[error("idempotency key {key:?} was already used for a different {command} request")]
    IdempotencyKeyReused { key: String, command: String },
    /// The idempotency key is empty or too long.
    #[error("idempotency key must be 1 to 200 characters long")]
    InvalidIdempotencyKey,
    /// Concurrent commands kept changing the same streams; the caller may try again.
    #[error("too many concurrent changes to {stream_id}; try again")]
    Conflict { stream_id: String },
    /// A stored event could not be read back.
    #[error("stored event of {stream_id} is unreadable: {source}")]
    Corrupt {
        stream_id: String,
        #[source]
        source: DecodeError,
    },
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// The event store failed.
    #[error("event store failure")]
    Store(#[source] EventStoreError),
}

impl From<ReadError> for CommandError {
    fn from(error: ReadError) -> Self {
        Self::Store(error.into())
    }
}

impl From<AppendError> for CommandError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::WrongExpectedVersion { stream_id, .. } => Self::Conflict { stream_id },
            AppendError::IdempotencyKeyReused { key, command } => Self::IdempotencyKeyReused { key, command },
            other => Self::Store(other.into()),
        }
    }
}
