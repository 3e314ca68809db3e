use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{AppendError, ReadError};
use crate::model::{
    AppendResult, Cursor, ExpectedVersion, IdempotencyClaim, Metadata, NewEvent, OpenAppender, RecordedEvent,
    StreamAppend,
};
use crate::signal::LogSignal;

/// How often an `ExpectedVersion::Any` append is retried when a concurrent append takes its
/// version first.
const ANY_VERSION_ATTEMPTS: usize = 100;

const UNIQUE_STREAM_VERSION: &str = "events_stream_version_key";
const UNIQUE_IDEMPOTENCY_KEY: &str = "idempotency_keys_pkey";

/// Appends one stream's events only if the stream is at the expected version (`$6`, NULL for
/// any), in one autocommitted statement; the stream's version before the append comes back
/// either way.
///
/// The log's (transaction id, position) order keeps every stream in version order because a
/// transaction reads a stream's version before it writes anything, that is before it gets its
/// id: whoever appended the versions it read had its id (and had committed) before that read,
/// and whoever appends after it must read its versions, after its commit. A version read that
/// is stale by the time of the insert makes the insert fail on the unique (stream, version)
/// key; the caller sees a conflict (or retries, for `ExpectedVersion::Any`). ARCHITECTURE.md,
/// "Reading the log in order", has the whole argument.
///
/// Public so that the benchmark measures the very statement the store runs.
pub const APPEND_SQL: &str = r#"
WITH current AS MATERIALIZED (
    SELECT COALESCE(MAX(stream_version), 0) AS version FROM events WHERE stream_id = $1
), inserted AS (
    INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata)
    SELECT $1, current.version + e.ord, e.event_type, e.schema_version, e.data, e.metadata
    FROM current,
         UNNEST($2::text[], $3::int4[], $4::jsonb[], $5::jsonb[])
             WITH ORDINALITY AS e(event_type, schema_version, data, metadata, ord)
    WHERE $6::bigint IS NULL OR current.version = $6
    RETURNING transaction_id, position
)
SELECT (SELECT version FROM current) AS version,
       (SELECT transaction_id::text::bigint FROM inserted LIMIT 1) AS tx,
       (SELECT MAX(position) FROM inserted) AS position
"#;

/// Appends one stream's events as versions `$6 + 1`, `$6 + 2`, …, with no version lookup: for
/// a new stream (`$6` = 0) and inside a transaction that read the stream's version before its
/// first write. A version somebody else took fails on the unique (stream, version) key.
///
/// Public so that the benchmark measures the very statement the store runs.
pub const APPEND_AT_SQL: &str = r#"
INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT $1, $6::bigint + e.ord, e.event_type, e.schema_version, e.data, e.metadata
FROM UNNEST($2::text[], $3::int4[], $4::jsonb[], $5::jsonb[])
         WITH ORDINALITY AS e(event_type, schema_version, data, metadata, ord)
RETURNING transaction_id::text::bigint AS tx, position
"#;

/// [`APPEND_AT_SQL`] for a single event: its row as plain parameters (`VALUES`), with no arrays
/// to decode and no `UNNEST` to run (BENCHMARKS.md, "tenth").
pub const APPEND_ONE_AT_SQL: &str = r#"
INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata)
VALUES ($1, $6::bigint + 1, $2, $3, $4, $5)
RETURNING transaction_id::text::bigint AS tx, position
"#;

/// The versions of several streams, read before a transaction's first write.
const VERSIONS_SQL: &str = "SELECT stream_id, MAX(stream_version) AS version FROM events \
     WHERE stream_id = ANY($1) GROUP BY stream_id";

/// The columns [`decode_row`] reads, qualified so that they also work in a join with `events`.
pub const EVENT_COLUMNS: &str = "events.position, events.transaction_id::text::bigint AS tx, events.stream_id, \
     events.stream_version, events.event_type, events.schema_version, events.data, events.metadata, \
     events.recorded_at";

/// The event log in PostgreSQL.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
    signal: Arc<LogSignal>,
}

enum Attempt {
    Done(AppendResult),
    /// A concurrent append took the version; worth retrying for `ExpectedVersion::Any` streams.
    Raced(AppendError),
}

impl EventStore {
    /// An event store on `pool`. The database must be migrated ([`crate::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            signal: LogSignal::new(),
        }
    }

    /// Changes after every append made through this store (or a clone of it).
    pub(crate) fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.watch()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends each stream's events atomically: all of them or none.
    ///
    /// Every stream must be at its expected version. With `claim`, the idempotency key is
    /// recorded in the same transaction; if the key was already used with the same fingerprint
    /// nothing is appended and the earlier result id comes back, and with a different fingerprint
    /// the append is refused with [`AppendError::IdempotencyKeyReused`].
    pub async fn append(
        &self,
        writes: &[StreamAppend],
        claim: Option<&IdempotencyClaim>,
    ) -> Result<AppendResult, AppendError> {
        validate(writes)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_append(writes, claim).await? {
                Attempt::Done(result) => {
                    if let AppendResult::Appended { last: Some(_) } = result {
                        self.signal.appended(&self.pool);
                    }
                    return Ok(result);
                }
                // Losing a race for a stream that accepts any version is no conflict: go again.
                Attempt::Raced(AppendError::WrongExpectedVersion {
                    expected: ExpectedVersion::Any,
                    ..
                }) if attempt < ANY_VERSION_ATTEMPTS => tokio::task::yield_now().await,
                Attempt::Raced(error) => return Err(error),
            }
        }
    }

    async fn try_append(
        &self,
        writes: &[StreamAppend],
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Attempt, AppendError> {
        // The common case (one stream, no key) is a single autocommitted statement.
        if let ([write], None) = (writes, claim) {
            let mut conn = self.pool.acquire().await?;
            return Ok(match append_stream(&mut conn, write).await? {
                Ok(last) => Attempt::Done(AppendResult::Appended { last }),
                Err(raced) => Attempt::Raced(raced),
            });
        }
        // Everything is read before the first write, so that the transaction gets its id only
        // after it has read every version it builds on (see APPEND_SQL).
        let mut tx = self.pool.begin().await?;
        // An appender that may idle between its statements marks itself first: it locks the log
        // for writing and gets the append timeouts (migration `appender_check_by_id`).
        sqlx::query("SELECT events_begin_append()").execute(&mut *tx).await?;
        if let Some(claim) = claim {
            if let Some(done) = find_claim(&mut tx, claim).await? {
                return Ok(Attempt::Done(done));
            }
        }
        let ids: Vec<&str> = writes.iter().map(|w| w.stream_id.as_str()).collect();
        let mut versions = std::collections::HashMap::with_capacity(writes.len());
        for row in sqlx::query(VERSIONS_SQL).bind(&ids).fetch_all(&mut *tx).await? {
            let id: String = row.try_get("stream_id")?;
            let version: i64 = row.try_get("version")?;
            versions.insert(id, version);
        }
        for write in writes {
            let actual = versions.get(&write.stream_id).copied().unwrap_or(0);
            if !write.expected.accepts(to_u64(actual)) {
                return Ok(Attempt::Raced(AppendError::WrongExpectedVersion {
                    stream_id: write.stream_id.clone(),
                    expected: write.expected,
                    actual: to_u64(actual),
                }));
            }
        }
        let mut last = None;
        for write in writes {
            let base = versions.get(&write.stream_id).copied().unwrap_or(0);
            match insert_at(&mut tx, write, base).await {
                Ok(cursor) => last = last.max(cursor),
                Err(e) if append_violates(&e, UNIQUE_STREAM_VERSION) => {
                    drop(tx);
                    return Ok(Attempt::Raced(self.raced(write, base).await?));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(claim) = claim {
            match record_claim(&mut tx, claim).await {
                Ok(()) => {}
                // Somebody else used the key meanwhile: go again, and find their claim.
                Err(e) if append_violates(&e, UNIQUE_IDEMPOTENCY_KEY) => {
                    drop(tx);
                    return Box::pin(self.try_append(writes, Some(claim))).await;
                }
                Err(e) => return Err(e),
            }
        }
        match tx.commit().await {
            Ok(()) => Ok(Attempt::Done(AppendResult::Appended { last })),
            Err(e) if violates(&e, UNIQUE_IDEMPOTENCY_KEY) => Box::pin(self.try_append(writes, claim)).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The conflict for a write that lost its versions to a concurrent append, with the
    /// stream's version as it is now.
    async fn raced(&self, write: &StreamAppend, expected: i64) -> Result<AppendError, AppendError> {
        let now = self.stream_version(&write.stream_id).await.map_err(|e| match e {
            ReadError::Database(e) => AppendError::Database(e),
            other => AppendError::Malformed(other.to_string()),
        })?;
        Ok(AppendError::WrongExpectedVersion {
            stream_id: write.stream_id.clone(),
            expected: write.expected,
            actual: now.max(to_u64(expected) + 1),
        })
    }

    /// The command and fingerprint an idempotency key was first used with, and the id it returned.
    pub async fn find_idempotency_key(&self, scope: &str, key: &str) -> Result<Option<IdempotencyClaim>, ReadError> {
        let row =
            sqlx::query("SELECT command, fingerprint, result_id FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(IdempotencyClaim {
                scope: scope.to_owned(),
                key: key.to_owned(),
                command: row.try_get("command")?,
                fingerprint: row.try_get("fingerprint")?,
                result_id: row.try_get("result_id")?,
            })
        })
        .transpose()
    }

    /// Reads a stream's events with versions above `after_version`, in version order.
    ///
    /// A stream that has no events at all is [`ReadError::StreamNotFound`].
    pub async fn read_stream(&self, stream_id: &str, after_version: u64) -> Result<Vec<RecordedEvent>, ReadError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(to_i64(after_version))
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() && self.stream_version(stream_id).await? == 0 {
            return Err(ReadError::StreamNotFound(stream_id.to_owned()));
        }
        rows.iter().map(decode_row).collect()
    }

    /// The version of a stream's last event; 0 if the stream has none.
    pub async fn stream_version(&self, stream_id: &str) -> Result<u64, ReadError> {
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(version))
    }

    /// Reads up to `limit` events of the whole log that follow `after`, in log order.
    ///
    /// Only events of transactions below the log's horizon are returned (`events_after`): older
    /// than every transaction still appending, whatever else runs in the cluster. An event that
    /// commits later therefore always sorts after the last one returned, so following the log
    /// with the returned cursors never skips or repeats an event (ARCHITECTURE.md, "Reading the
    /// log in order").
    pub async fn read_all(&self, after: Cursor, limit: u32) -> Result<Vec<RecordedEvent>, ReadError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events_after($1::text::xid8, $2, $3) AS events");
        let rows = sqlx::query(&sql)
            .bind(after.tx.to_string())
            .bind(after.position)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    /// The cursor of the last committed event, whether or not `read_all` can return it yet.
    ///
    /// Once a reader's cursor reaches it, the reader has seen every event committed before this
    /// call: read-your-writes waits for this.
    pub async fn head(&self) -> Result<Cursor, ReadError> {
        let row = sqlx::query(
            "SELECT transaction_id::text::bigint AS tx, position FROM events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        cursor_of(row)
    }

    /// The cursor of the last event `read_all` can return now: every event up to it is final,
    /// and every event appended later sorts after it.
    pub async fn readable_head(&self) -> Result<Cursor, ReadError> {
        let row = sqlx::query("SELECT transaction_id::text::bigint AS tx, position FROM events_readable_head()")
            .fetch_optional(&self.pool)
            .await?;
        cursor_of(row)
    }

    /// The transactions appending to the log now, oldest first. While one is open, readers
    /// read only up to the events committed before it began; appends end after
    /// `monkeyci.append_timeout` (5 s unless set otherwise) of a statement or of idling.
    pub async fn open_appenders(&self) -> Result<Vec<OpenAppender>, ReadError> {
        let rows = sqlx::query(
            "SELECT pid, application_name, prepared, since, state, \
                    GREATEST(extract(epoch FROM clock_timestamp() - since), 0)::float8 AS seconds \
             FROM events_open_appenders()",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seconds: Option<f64> = row.try_get("seconds")?;
                Ok(OpenAppender {
                    open_for: std::time::Duration::from_secs_f64(seconds.unwrap_or(0.0)),
                    pid: row.try_get("pid")?,
                    application_name: row.try_get("application_name")?,
                    prepared: row.try_get("prepared")?,
                    since: row.try_get("since")?,
                    state: row.try_get("state")?,
                })
            })
            .collect()
    }

    /// The oldest appender open for at least [`crate::HELD_BACK_AFTER`]: who holds the readable
    /// end of the log back, if anyone does.
    pub async fn held_back_by(&self) -> Result<Option<OpenAppender>, ReadError> {
        let oldest = self.open_appenders().await?.into_iter().next();
        Ok(oldest.filter(|a| a.open_for >= crate::HELD_BACK_AFTER))
    }

    /// How many committed events follow `after`.
    pub async fn count_after(&self, after: Cursor) -> Result<u64, ReadError> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)")
                .bind(after.tx.to_string())
                .bind(after.position)
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(count))
    }
}

fn validate(writes: &[StreamAppend]) -> Result<(), AppendError> {
    for (i, write) in writes.iter().enumerate() {
        if write.stream_id.is_empty() {
            return Err(AppendError::Malformed("stream id must not be empty".into()));
        }
        if writes[..i].iter().any(|w| w.stream_id == write.stream_id) {
            return Err(AppendError::Malformed(format!(
                "stream {} appears twice in one append",
                write.stream_id
            )));
        }
        for event in &write.events {
            validate_event(event)?;
        }
    }
    Ok(())
}

fn validate_event(event: &NewEvent) -> Result<(), AppendError> {
    let bad = |reason: String| Err(AppendError::Malformed(reason));
    if event.event_type.is_empty()
        || event.event_type.len() > 200
        || !event
            .event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(&b))
    {
        return bad(format!(
            "event type {:?} must be 1-200 of A-Z a-z 0-9 _ .",
            event.event_type
        ));
    }
    if event.schema_version < 1 {
        return bad(format!("{}: schema version must be at least 1", event.event_type));
    }
    if !event.data.is_object() {
        return bad(format!("{}: data must be a JSON object", event.event_type));
    }
    if event.metadata.actor.is_empty() {
        return bad(format!("{}: metadata must name an actor", event.event_type));
    }
    Ok(())
}

/// The earlier use of an idempotency key: `Some` if it was used for this very command (nothing
/// more to do), an error if it was used for another.
async fn find_claim(conn: &mut PgConnection, claim: &IdempotencyClaim) -> Result<Option<AppendResult>, AppendError> {
    let row = sqlx::query("SELECT command, fingerprint, result_id FROM idempotency_keys WHERE scope = $1 AND key = $2")
        .bind(&claim.scope)
        .bind(&claim.key)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let command: String = row.try_get("command")?;
    let fingerprint: String = row.try_get("fingerprint")?;
    if command != claim.command || fingerprint != claim.fingerprint {
        return Err(AppendError::IdempotencyKeyReused {
            key: claim.key.clone(),
            command: command.clone(),
        });
    }
    Ok(Some(AppendResult::Duplicate {
        result_id: row.try_get("result_id")?,
    }))
}

async fn record_claim(conn: &mut PgConnection, claim: &IdempotencyClaim) -> Result<(), AppendError> {
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, command, fingerprint, result_id) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(&claim.command)
    .bind(&claim.fingerprint)
    .bind(&claim.result_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The statement's array parameters: event types, schema versions, data and metadata.
type EventArrays<'a> = (
    Vec<&'a str>,
    Vec<i32>,
    Vec<&'a serde_json::Value>,
    Vec<serde_json::Value>,
);

fn event_arrays(write: &StreamAppend) -> Result<EventArrays<'_>, AppendError> {
    let mut types = Vec::with_capacity(write.events.len());
    let mut versions = Vec::with_capacity(write.events.len());
    let mut data = Vec::with_capacity(write.events.len());
    let mut metadata = Vec::with_capacity(write.events.len());
    for event in &write.events {
        types.push(event.event_type.as_str());
        versions.push(event.schema_version);
        data.push(&event.data);
        metadata.push(serde_json::to_value(&event.metadata).map_err(|e| AppendError::Malformed(e.to_string()))?);
    }
    Ok((types, versions, data, metadata))
}

/// Inserts one stream's events as versions `base + 1…` ([`APPEND_AT_SQL`], or
/// [`APPEND_ONE_AT_SQL`] for one event) and returns the cursor of the last; the database error
/// comes back as it is, so that the caller can tell a lost race. This is what an append to a
/// new stream runs, in a statement of its own; public so that the benchmark measures it without
/// the store around it.
pub async fn insert_at(
    conn: &mut PgConnection,
    write: &StreamAppend,
    base: i64,
) -> Result<Option<Cursor>, AppendError> {
    let rows = if let [event] = write.events.as_slice() {
        let metadata = serde_json::to_value(&event.metadata).map_err(|e| AppendError::Malformed(e.to_string()))?;
        sqlx::query(APPEND_ONE_AT_SQL)
            .bind(&write.stream_id)
            .bind(event.event_type.as_str())
            .bind(event.schema_version)
            .bind(&event.data)
            .bind(metadata)
            .bind(base)
            .fetch_all(&mut *conn)
            .await?
    } else {
        let (types, versions, data, metadata) = event_arrays(write)?;
        sqlx::query(APPEND_AT_SQL)
            .bind(&write.stream_id)
            .bind(&types)
            .bind(&versions)
            .bind(&data)
            .bind(&metadata)
            .bind(base)
            .fetch_all(&mut *conn)
            .await?
    };
    let mut last = None;
    for row in rows {
        last = last.max(Some(Cursor {
            tx: row.try_get("tx")?,
            position: row.try_get("position")?,
        }));
    }
    Ok(last)
}

/// Appends one stream's events in one autocommitted statement; `Ok(Err(_))` is a lost race or
/// a wrong expected version.
async fn append_stream(
    conn: &mut PgConnection,
    write: &StreamAppend,
) -> Result<Result<Option<Cursor>, AppendError>, AppendError> {
    let conflict = |actual: i64| AppendError::WrongExpectedVersion {
        stream_id: write.stream_id.clone(),
        expected: write.expected,
        actual: to_u64(actual),
    };
    if write.expected == ExpectedVersion::NoStream {
        return match insert_at(conn, write, 0).await {
            Ok(last) => Ok(Ok(last)),
            Err(e) if append_violates(&e, UNIQUE_STREAM_VERSION) => {
                let actual = stream_version_on(conn, &write.stream_id).await?;
                Ok(Err(conflict(actual.max(1))))
            }
            Err(e) => Err(e),
        };
    }
    let expected: Option<i64> = match write.expected {
        ExpectedVersion::Any | ExpectedVersion::NoStream => None,
        ExpectedVersion::Exact(v) => Some(to_i64(v)),
    };
    let (types, versions, data, metadata) = event_arrays(write)?;
    let result = sqlx::query(APPEND_SQL)
        .bind(&write.stream_id)
        .bind(&types)
        .bind(&versions)
        .bind(&data)
        .bind(&metadata)
        .bind(expected)
        .fetch_one(&mut *conn)
        .await;
    let row = match result {
        Ok(row) => row,
        Err(e) if violates(&e, UNIQUE_STREAM_VERSION) => {
            // The winner's version was not visible to the statement; it is now.
            let actual = stream_version_on(conn, &write.stream_id).await?;
            return Ok(Err(conflict(actual.max(expected.unwrap_or(0) + 1))));
        }
        Err(e) => return Err(e.into()),
    };
    let current: i64 = row.try_get("version")?;
    if expected.is_some_and(|expected| current != expected) {
        return Ok(Err(conflict(current)));
    }
    let tx: Option<i64> = row.try_get("tx")?;
    let position: Option<i64> = row.try_get("position")?;
    Ok(Ok(tx.zip(position).map(|(tx, position)| Cursor { tx, position })))
}

async fn stream_version_on(conn: &mut PgConnection, stream_id: &str) -> Result<i64, AppendError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(stream_version) FROM events WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(version.unwrap_or(0))
}

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == constraint)
}

fn append_violates(error: &AppendError, constraint: &str) -> bool {
    matches!(error, AppendError::Database(e) if violates(e, constraint))
}

/// The event in a row selected with [`EVENT_COLUMNS`].
pub fn decode_row(row: &PgRow) -> Result<RecordedEvent, ReadError> {
    let position: i64 = row.try_get("position")?;
    let corrupt = |reason: String| ReadError::Corrupt { position, reason };
    // Parsed straight from the column's JSON text into `Metadata` (no intermediate JSON tree).
    let metadata = match row.try_get::<sqlx::types::Json<Metadata>, _>("metadata") {
        Ok(sqlx::types::Json(metadata)) => metadata,
        Err(sqlx::Error::ColumnDecode { source, .. }) => return Err(corrupt(format!("metadata: {source}"))),
        Err(other) => return Err(other.into()),
    };
    let stream_version: i64 = row.try_get("stream_version")?;
    Ok(RecordedEvent {
        cursor: Cursor {
            tx: row.try_get("tx")?,
            position,
        },
        stream_id: row.try_get("stream_id")?,
        stream_version: to_u64(stream_version),
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data: row.try_get("data")?,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

fn cursor_of(row: Option<PgRow>) -> Result<Cursor, ReadError> {
    Ok(match row {
        Some(row) => Cursor {
            tx: row.try_get("tx")?,
            position: row.try_get("position")?,
        },
        None => Cursor::START,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
