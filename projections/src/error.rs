use monkeyci_domain::DecodeError;
use monkeyci_eventstore::ReadError;
use thiserror::Error;

/// A projection could not apply a batch; nothing of the batch took effect.
#[derive(Debug, Error)]
pub enum ProjectionError {
    /// A stored event could not be decoded.
    #[error("event at {cursor} of {stream_id} is unreadable: {source}")]
    Decode {
        cursor: String,
        stream_id: String,
        #[source]
        source: DecodeError,
    },
    /// A stored stream id does not name an entity.
    #[error("stream id {0:?} does not end in a uuid")]
    BadStreamId(String),
    /// A read-model row could not be (de)serialised.
    #[error("read-model row of {table} is malformed: {source}")]
    Row {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Another online rebuild of this projection holds its rebuild lock.
    #[error("an online rebuild of {0} is already running")]
    RebuildRunning(String),
    /// No projection has this name.
    #[error("no projection is named {0:?}")]
    UnknownProjection(String),
    /// Reading the log failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
