//! Rebuilding a projection online: the new read model is built beside the live one while the
//! server keeps serving and writing, then swapped in with one short transaction.
//!
//! 1. A schema of its own (`rebuild_<name>`) gets empty copies of the projection's tables, with
//!    the same columns, constraints and index names.
//! 2. The whole log is replayed into the copies on a connection whose `search_path` puts that
//!    schema first, so the projection's own SQL, which names its tables without a schema, writes
//!    the copies. The live tables and the live worker are untouched meanwhile.
//! 3. Once the replay has caught up, one transaction locks the live checkpoint (the live worker
//!    waits), applies the events the copies still lack up to it, moves the live tables out of the
//!    way and the copies in, sets the checkpoint to where the copies are, and commits. Queries
//!    see either the old tables or the complete new ones, never a half-built model; they wait
//!    only for that transaction.
//!
//! A rebuild that fails or is interrupted leaves the live model as it was; its schema is dropped
//! by the next attempt. An advisory lock held by the rebuild's connection keeps a second online
//! rebuild of the same projection from starting meanwhile.

use std::time::Instant;

use monkeyci_eventstore::{Cursor, EventStore, RecordedEvent};
use sqlx::{Connection, PgConnection, Row};

use crate::error::ProjectionError;
use crate::runner::Statistics;
use crate::Projection;

/// How far an online rebuild has got, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Events replayed into the new tables so far.
    pub events: u64,
    /// Events in the log when the rebuild started (more may arrive while it runs).
    pub total: u64,
    /// Whether the replay has caught up and the swap is next.
    pub swapping: bool,
}

/// What an online rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildOutcome {
    /// Events replayed into the new tables, including those applied during the swap.
    pub events: u64,
    /// The checkpoint the new tables took over at.
    pub checkpoint: Cursor,
    /// How long the swap transaction held the live checkpoint.
    pub swap_ms: u64,
}

/// Rebuilds `projection` beside its live tables from the whole log and swaps the result in,
/// while servers keep running it live. `conn` is the rebuild's own connection (its
/// `search_path` is changed, so it must not be a pooled one); it is closed at the end.
pub async fn rebuild_online(
    store: &EventStore,
    mut conn: PgConnection,
    projection: &dyn Projection,
    batch_size: u32,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<RebuildOutcome, ProjectionError> {
    let name = projection.name();
    // One online rebuild per projection at a time: a second one would drop the first's copies.
    // The lock lives as long as this connection.
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("monkeyci.rebuild.{name}"))
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Err(ProjectionError::RebuildRunning(name.to_owned()));
    }
    let shadow = format!("rebuild_{name}");
    let live: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut conn)
        .await?;
    prepare_copies(&mut conn, projection, &live, &shadow).await?;
    sqlx::query(&format!("SET search_path = {}, {}", quote(&shadow), quote(&live)))
        .execute(&mut conn)
        .await?;
    let total = store.count_after(Cursor::START).await?;
    let mut cursor = Cursor::START;
    let mut events = 0u64;
    let mut statistics = Statistics::new(batch_size);
    loop {
        let batch = store.read_all(cursor, batch_size).await?;
        let Some(last) = batch.last().map(|e| e.cursor) else {
            break;
        };
        apply(&mut conn, projection, &batch).await?;
        statistics.applied(&mut conn, projection, batch.len()).await;
        events += batch.len() as u64;
        cursor = last;
        progress(RebuildProgress {
            events,
            total,
            swapping: false,
        });
        if batch.len() < batch_size as usize {
            break;
        }
    }
    progress(RebuildProgress {
        events,
        total,
        swapping: true,
    });
    let started = Instant::now();
    let (events, checkpoint) = swap(
        &mut conn,
        store,
        projection,
        (&live, &shadow),
        cursor,
        events,
        batch_size,
    )
    .await?;
    let swap_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote(&format!("{shadow}_old"))
    ))
    .execute(&mut conn)
    .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&shadow)))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(RebuildOutcome {
        events,
        checkpoint,
        swap_ms,
    })
}

/// A fresh schema `shadow` with empty copies of the projection's tables in `live`: same
/// columns, defaults and checks, and the same constraints and indexes under the same names.
async fn prepare_copies(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    live: &str,
    shadow: &str,
) -> Result<(), ProjectionError> {
    let mut tx = conn.begin().await?;
    for schema in [shadow.to_owned(), format!("{shadow}_old")] {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!("CREATE SCHEMA {}", quote(shadow)))
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!(
            "CREATE TABLE {s}.{t} (LIKE {l}.{t} INCLUDING ALL EXCLUDING INDEXES)",
            s = quote(shadow),
            l = quote(live),
            t = quote(table)
        ))
        .execute(&mut *tx)
        .await?;
    }
    // Constraints with an index (primary keys, unique constraints) by their definition; other
    // indexes by theirs, moved to the copy.
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT CASE WHEN c.oid IS NOT NULL \
                  THEN format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', $2, t.relname, c.conname, \
                              pg_get_constraintdef(c.oid)) \
                  ELSE replace(pg_get_indexdef(i.indexrelid), format(' ON %I.%I ', $1, t.relname), \
                               format(' ON %I.%I ', $2, t.relname)) END \
         FROM pg_index i \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = t.oid \
         WHERE n.nspname = $1 AND t.relname = ANY($3) \
         ORDER BY c.oid IS NULL, t.relname, i.indexrelid",
    )
    .bind(live)
    .bind(shadow)
    .bind(projection.tables())
    .fetch_all(&mut *tx)
    .await?;
    for statement in statements {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies a batch to the copies, in a transaction of its own.
async fn apply(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    if !events.iter().any(|e| crate::reads(projection, &e.stream_id)) {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    projection.apply(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}

/// Brings the copies to the live checkpoint (or keeps them ahead of it) and puts them in place
/// of the live tables, in one transaction; the checkpoint and event count they took over at.
async fn swap(
    conn: &mut PgConnection,
    store: &EventStore,
    projection: &dyn Projection,
    (live, shadow): (&str, &str),
    mut cursor: Cursor,
    mut events: u64,
    batch_size: u32,
) -> Result<(u64, Cursor), ProjectionError> {
    let name = projection.name();
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO {}.projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        quote(live)
    ))
    .bind(name)
    .execute(&mut *tx)
    .await?;
    // The live worker's next batch waits for this lock, and any batch in flight finishes first.
    let row = sqlx::query(&format!(
        "SELECT tx, position FROM {}.projection_checkpoints WHERE name = $1 FOR UPDATE",
        quote(live)
    ))
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let live_checkpoint = Cursor {
        tx: row.try_get("tx")?,
        position: row.try_get("position")?,
    };
    // Whatever the live model already shows, the copies must show too.
    while cursor < live_checkpoint {
        let batch: Vec<RecordedEvent> = store
            .read_all(cursor, batch_size)
            .await?
            .into_iter()
            .filter(|e| e.cursor <= live_checkpoint)
            .collect();
        let Some(last) = batch.last().map(|e| e.cursor) else {
            break;
        };
        if batch.iter().any(|e| crate::reads(projection, &e.stream_id)) {
            projection.apply(&mut tx, &batch).await?;
        }
        events += batch.len() as u64;
        cursor = last;
    }
    let old = format!("{shadow}_old");
    sqlx::query(&format!("CREATE SCHEMA {}", quote(&old)))
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        for (from, to) in [(live, old.as_str()), (shadow, live)] {
            sqlx::query(&format!(
                "ALTER TABLE {}.{} SET SCHEMA {}",
                quote(from),
                quote(table),
                quote(to)
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(&format!(
        "UPDATE {}.projection_checkpoints SET tx = $2, position = $3, events_processed = $4, \
         updated_at = now() WHERE name = $1",
        quote(live)
    ))
    .bind(name)
    .bind(cursor.tx)
    .bind(cursor.position)
    .bind(i64::try_from(events).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // The copies now reflect the log up to `cursor`, at or after the live checkpoint. A live
    // worker that was behind finds the checkpoint moved at its next batch and continues from it.
    Ok((events, cursor))
}

/// An SQL identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
