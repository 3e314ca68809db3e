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
pub use store::{decode_row, insert_at, EventStore, APPEND_AT_SQL, APPEND_ONE_AT_SQL, APPEND_SQL, EVENT_COLUMNS};

/// Runs the embedded database migrations (event log and read models).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}

/// How a database's schema compares with the migrations this build of MonkeyCI embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every embedded migration is applied, and nothing else.
    Current,
    /// No migration was ever applied (no `_sqlx_migrations` table).
    Unmigrated,
    /// Some embedded migrations are not applied yet; `missing` names the first.
    Behind {
        applied: usize,
        known: usize,
        missing: String,
    },
    /// The database has migrations this build does not know: a newer MonkeyCI migrated it.
    Ahead { unknown: Vec<i64> },
}

/// Compares the database's applied migrations with the embedded ones, changing nothing.
pub async fn schema_state(pool: &sqlx::PgPool) -> Result<SchemaState, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(SchemaState::Unmigrated);
    }
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?;
    let migrator = sqlx::migrate!("../migrations");
    let known: Vec<(i64, String)> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, format!("{}_{}", m.version, m.description)))
        .collect();
    let unknown: Vec<i64> = applied
        .iter()
        .copied()
        .filter(|v| !known.iter().any(|(k, _)| k == v))
        .collect();
    if !unknown.is_empty() {
        return Ok(SchemaState::Ahead { unknown });
    }
    match known.iter().find(|(version, _)| !applied.contains(version)) {
        Some((_, missing)) => Ok(SchemaState::Behind {
            applied: applied.len(),
            known: known.len(),
            missing: missing.clone(),
        }),
        None => Ok(SchemaState::Current),
    }
}
