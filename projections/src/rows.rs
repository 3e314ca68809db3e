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
pub(crate) async fn load<R: DeserializeOwned>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    ids: &[Uuid],
) -> Result<Vec<R>, ProjectionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT to_jsonb(t) FROM {table} t WHERE {key} = ANY($1)");
    let values: Vec<serde_json::Value> = sqlx::query_scalar(&sql).bind(ids).fetch_all(&mut *conn).await?;
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|source| ProjectionError::Row { table, source }))
        .collect()
}

/// Replaces every row of `table` whose `key` is one of `ids` with `rows`.
pub(crate) async fn replace<R: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    ids: &[Uuid],
    rows: &[R],
) -> Result<(), ProjectionError> {
    if ids.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_value(rows).map_err(|source| ProjectionError::Row { table, source })?;
    sqlx::query(&format!("DELETE FROM {table} WHERE {key} = ANY($1)"))
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)"
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
