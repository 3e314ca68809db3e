//! The PostgreSQL event log.
//!
//! [`EventStore`] appends events to streams with an expected version, reads one stream, and
//! reads the whole log in order from a [`Cursor`] without ever skipping or repeating an event.
//! [`EventFeed`] turns that into a live, resumable feed for in-process subscribers.

mod error;
mod feed;
mod model;
mod signal;
mod store;

pub use error::{AppendError, EventStoreError, ReadError};
pub use feed::{EventFeed, FeedConfig};
pub use model::{
    AppendResult, Cursor, CursorParseError, ExpectedVersion, IdempotencyClaim, Metadata, NewEvent, OpenAppender,
    RecordedEvent, StreamAppend, HELD_BACK_AFTER,
};
pub use store::{decode_row, EventStore, APPEND_AT_SQL, APPEND_SQL, EVENT_COLUMNS};

/// Runs the embedded database migrations (event log and read models).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}
