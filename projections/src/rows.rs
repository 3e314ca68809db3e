//! Loading and storing read-model rows as JSON, so a projection can change rows in memory for a
//! whole batch and write each touched row once.

use std::collections::HashMap;
use std::hash::Hash;

use monkeyci_domain::DomainEvent;
use monkeyci_eventstore::RecordedEvent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;

/// Rows of `table` whose `key` column is one of `ids`.
///
/// Rows come as JSON text and are parsed straight into `R` (no intermediate JSON tree).
pub(crate) async fn load<R: DeserializeOwned>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    ids: &[Uuid],
) -> Result<Vec<R>, ProjectionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT to_jsonb(t)::text FROM {table} t WHERE {key} = ANY($1)");
    let values: Vec<String> = sqlx::query_scalar(&sql).bind(ids).fetch_all(&mut *conn).await?;
    values
        .iter()
        .map(|v| serde_json::from_str(v).map_err(|source| ProjectionError::Row { table, source }))
        .collect()
}

/// Inserts `rows` into `table`, replacing the rows with the same primary key (`key`, the
/// columns of the table's primary key), in one statement.
///
/// Every column of the table must be a field of `R`. Read-model rows are never deleted by a
/// projection, so this writes the same rows as deleting the rows of the batch's entities and
/// inserting them again, with one statement instead of two and no dead rows for new entities.
pub(crate) async fn upsert<R: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &[&str],
    rows: &[R],
) -> Result<(), ProjectionError> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let malformed = |source| ProjectionError::Row { table, source };
    let columns = match serde_json::to_value(first).map_err(malformed)? {
        serde_json::Value::Object(fields) => fields.keys().cloned().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(&c.as_str()))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    let json = serde_json::to_string(rows).map_err(malformed)?;
    sqlx::query(&format!(
        "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1::text::jsonb) \
         ON CONFLICT ({}) {on_conflict}",
        key.join(", ")
    ))
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The entity id at the end of a stream id (`build-<uuid>`).
pub(crate) fn entity_id(stream_id: &str) -> Result<Uuid, ProjectionError> {
    stream_id
        .split_once('-')
        .and_then(|(_, id)| Uuid::parse_str(id).ok())
        .ok_or_else(|| ProjectionError::BadStreamId(stream_id.to_owned()))
}

/// The events of `category` in the batch, decoded, with their entity ids.
pub(crate) fn decode_category<'a, E: DomainEvent>(
    events: &'a [RecordedEvent],
    category: &'static str,
) -> Result<Vec<(Uuid, &'a RecordedEvent, E)>, ProjectionError> {
    events
        .iter()
        .filter(|e| e.stream_id.split_once('-').is_some_and(|(c, _)| c == category))
        .map(|recorded| {
            let event = E::decode(&recorded.event_type, recorded.schema_version, &recorded.data).map_err(|source| {
                ProjectionError::Decode {
                    cursor: recorded.cursor.to_string(),
                    stream_id: recorded.stream_id.clone(),
                    source,
                }
            })?;
            Ok((entity_id(&recorded.stream_id)?, recorded, event))
        })
        .collect()
}

/// The distinct ids in the order first seen.
pub(crate) fn distinct_ids<T>(items: &[(Uuid, &RecordedEvent, T)]) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Rows indexed by their key.
pub(crate) fn index<K: Eq + Hash, R>(rows: Vec<R>, key: impl Fn(&R) -> K) -> HashMap<K, R> {
    rows.into_iter().map(|r| (key(&r), r)).collect()
}
