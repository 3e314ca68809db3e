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
    let sql = format!("SELECT to_json(t)::text FROM {table} t WHERE {key} = ANY($1)");
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
        "INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::json) \
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

/// A read-model row of one entity that records the version of the entity's stream it reflects.
pub(crate) trait Versioned {
    fn id(&self) -> Uuid;
    fn version(&self) -> i64;
    fn set_version(&mut self, version: i64);
}

/// Applies the batch's events of `E`'s aggregate to the rows of `table` (primary key `id`): loads
/// the rows of the entities the batch touches, skips events a row already reflects, lets `create`
/// make a row from an entity's first event and `change` apply any later one, and writes every
/// touched row once. An event of an entity without a row (other than a creating one) is logged
/// and ignored.
pub(crate) async fn apply_versioned<A, R>(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
    table: &'static str,
    create: impl Fn(Uuid, &RecordedEvent, &A::Event) -> Option<R>,
    change: impl Fn(&mut R, &RecordedEvent, &A::Event),
) -> Result<(), ProjectionError>
where
    A: monkeyci_domain::Aggregate,
    R: Versioned + Serialize + DeserializeOwned,
{
    let events = decode_category::<A::Event>(events, A::CATEGORY)?;
    let ids = distinct_ids(&events);
    let mut found = index(load::<R>(conn, table, "id", &ids).await?, Versioned::id);
    for (id, recorded, event) in &events {
        let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
        match found.get_mut(id) {
            Some(row) if row.version() >= version => {}
            Some(row) => {
                change(row, recorded, event);
                row.set_version(version);
            }
            None => match create(*id, recorded, event) {
                Some(mut row) => {
                    row.set_version(version);
                    found.insert(*id, row);
                }
                None => tracing::warn!(stream = %recorded.stream_id, table, "event before the entity's first; ignored"),
            },
        }
    }
    let changed: Vec<R> = ids.iter().filter_map(|id| found.remove(id)).collect();
    upsert(conn, table, &["id"], &changed).await
}

/// Implements [`Versioned`] for a row type with `id: Uuid` and `version: i64` fields.
macro_rules! versioned {
    ($($row:ty),*) => {$(
        impl $crate::rows::Versioned for $row {
            fn id(&self) -> uuid::Uuid {
                self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn set_version(&mut self, version: i64) {
                self.version = version;
            }
        }
    )*};
}
pub(crate) use versioned;
