//! `monkeyci events export` and `monkeyci events import`: the event log (and the wrapped data keys
//! of secret-holding aggregates) as NDJSON, for backups, moves to another server and replays.
//!
//! Export reads the log in pages in log order and writes each event as one flat JSON object per
//! line; import reads such lines and appends them to an empty database in one transaction, with
//! multi-row `INSERT … SELECT FROM UNNEST(…)` statements. Both report progress on stderr only.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use monkeyci_eventstore::{Cursor, EventStore, Metadata};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Progress goes to stderr after every this many events (and at the end).
const PROGRESS_EVERY: u64 = 100_000;

/// The long help of `monkeyci events`.
pub(crate) const EVENTS_ABOUT: &str = "\
Exports the event log as NDJSON, or imports such an export into an empty database: for backups, \
for moving MonkeyCI to another database or server, and for replaying a history elsewhere.

  monkeyci events export [--org ID] [--after CURSOR] > events.ndjson
  monkeyci --database-url postgres://…/new events import < events.ndjson

The format is one JSON object per line (UTF-8, each line ending in \\n). First the events, in log \
order (the order in which every reader of the log sees them: by appending transaction, then \
position), one per line, with every stored field:

  {\"stream_id\":\"build-…\",\"stream_version\":3,\"type\":\"JobStarted\",\"schema_version\":1,
   \"data\":{…},\"metadata\":{\"actor\":\"user:…\",\"correlation_id\":\"…\",\"command_id\":\"…\",…},
   \"recorded_at\":\"2026-11-23T10:15:02.123456Z\",\"cursor\":\"1234.567\"}

data and metadata are the stored JSON as it is (metadata: actor, correlation_id, causation_id, \
command_id, idempotency_key, org_id); recorded_at is RFC 3339 in UTC with microseconds (what \
PostgreSQL keeps); cursor is the event's place in the source log (<transaction>.<position>), for \
information and for --after.

After the events come the data keys of secret-holding aggregates (webhooks, parameter sets, ssh \
keys), one per line:

  {\"data_key\":{\"owner_id\":\"…\",\"master_key_id\":\"…\",\"wrapped\":{…},\"created_at\":\"…\"}}

They are wrapped by the server's master key: useless without it, and needed with it, since the \
log holds secrets only sealed with these keys. A server that imports them needs the same master \
key (MONKEYCI_MASTER_KEY or <data dir>/master.key) to open the secrets.

Not in the export: read models (rebuilt from the log), projection checkpoints, idempotency keys, \
build leases, job output lines still only in the database, and blobs (artifacts, caches, archived \
logs: copy the blob storage separately).

Progress (events so far and events per second) goes to stderr every 100,000 events and at the \
end; stdout of export carries nothing but the NDJSON.";

const EXPORT_ABOUT: &str = "\
Writes the event log to stdout as NDJSON (see `monkeyci events --help` for the format): every \
event committed when the export starts, in log order, then the data keys. The export reads the \
log in pages with bounded memory; it is a consistent prefix of the log even while a server goes \
on appending. Transactions still writing anywhere in the PostgreSQL cluster when it starts are \
waited for (events become readable in log order only once they end).

--org keeps only the events whose metadata names that org (and the data keys of the aggregates \
among those events' streams); events without an org (users, API tokens of users) are left out. \
--after CURSOR keeps only the events after a cursor (as printed by the API, by an earlier export's \
last line or its summary on stderr), with the data keys of their streams. A filtered export \
imports only if every stream in it is complete from version 1: an --after export usually is not, \
since it continues streams of the earlier one.

The summary on stderr ends with the cursor the export went up to: `--after` that cursor exports \
what was appended since.";

const IMPORT_ABOUT: &str = "\
Reads NDJSON as written by `monkeyci events export` from stdin (see `monkeyci events --help` for \
the format) and appends the events to the database in the same order, with their stream ids, \
stream versions, types, schema versions, data, metadata and recorded_at exactly as they are in \
the file; the data keys are restored too. Positions and transaction ids are new: the events get \
this database's next positions and the importing transaction's id, so the `cursor` fields of the \
file (and cursors clients kept) do not apply to the new database.

The database must be empty and migrated: create it with `monkeyci migrate` (this command, like \
every command but `server`, `runner` and `migrate`, creates no database), import, then start the \
server, whose projections build every read model from the imported \
log. A database that holds events, a projection checkpoint past the start or read-model rows is \
refused, since its read models could miss or double the imported history. A server already \
running on the empty database is woken when the import commits.

Everything happens in ONE transaction: a malformed line (the error names the line and what is \
wrong), a stream whose versions do not run 1, 2, 3… in file order, a data key that exists \
already, or any other failure aborts the import and writes nothing. While the import runs, \
readers of event logs in the same PostgreSQL cluster wait for it to end (see ARCHITECTURE.md, \
\"Reading the log in order\"), so import while no server uses the cluster, or accept the pause.

The file is read as it arrives, in batches (--batch-size events per INSERT); memory grows with \
the number of streams (one entry each, to check their versions), not with the number of events. \
Progress (events so far and events per second) goes to stderr every 100,000 events and at the \
end.";

/// `monkeyci events …`.
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Writes the event log, then the wrapped data keys, to stdout as NDJSON.
    #[command(long_about = EXPORT_ABOUT)]
    Export(ExportArgs),
    /// Appends an NDJSON export from stdin to an empty database, in one transaction.
    #[command(long_about = IMPORT_ABOUT)]
    Import(ImportArgs),
}

/// Settings of `monkeyci events export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Only events of this org: its uuid, or its id as the API shows it.
    #[arg(long, value_parser = parse_org)]
    org: Option<Uuid>,

    /// Only events after this cursor (`<transaction>.<position>`, as the API prints cursors).
    #[arg(long)]
    after: Option<Cursor>,

    /// Events read from the database per query.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    page_size: u32,
}

/// Settings of `monkeyci events import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// Events inserted per statement.
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
}

/// Runs `monkeyci events …` on the (migrated) database behind `pool`.
pub(crate) async fn run(pool: &PgPool, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Export(args) => export(pool, &args).await,
        EventsCommand::Import(args) => import(pool, &args).await,
    }
}

/// An org's uuid, or the API's global id of an org (`base64url("Org:<uuid>")`).
fn parse_org(text: &str) -> Result<Uuid, String> {
    use base64::Engine;
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(id);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|decoded| decoded.strip_prefix("Org:").and_then(|id| Uuid::parse_str(id).ok()))
        .ok_or_else(|| format!("{text:?} is neither an org's uuid nor an org id of the API"))
}

/// Prints progress to stderr every [`PROGRESS_EVERY`] events.
#[derive(Debug)]
struct Progress {
    verb: &'static str,
    started: Instant,
    events: u64,
    next_report: u64,
}

impl Progress {
    fn new(verb: &'static str) -> Self {
        Self {
            verb,
            started: Instant::now(),
            events: 0,
            next_report: PROGRESS_EVERY,
        }
    }

    fn add(&mut self, events: u64) {
        self.events += events;
        if self.events >= self.next_report {
            eprintln!("{} {} events ({})", self.verb, self.events, self.rate());
            self.next_report = (self.events / PROGRESS_EVERY + 1) * PROGRESS_EVERY;
        }
    }

    fn rate(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let per_second = if seconds > 0.0 {
            self.events as f64 / seconds
        } else {
            0.0
        };
        format!("{per_second:.0} events/s")
    }

    fn elapsed(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

/// One event as stored; `data` and `metadata` are PostgreSQL's text of the stored JSON.
#[derive(Debug, sqlx::FromRow)]
struct StoredEvent {
    tx: i64,
    position: i64,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i32,
    data: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

/// One row of `data_keys`; `wrapped` is the text of the stored JSON.
#[derive(Debug, sqlx::FromRow)]
struct StoredKey {
    owner_id: Uuid,
    master_key_id: String,
    wrapped: String,
    created_at: DateTime<Utc>,
}

/// The columns of an exported event: the stored JSON as PostgreSQL's text of it.
const EXPORT_COLUMNS: &str = "transaction_id::text::bigint AS tx, position, stream_id, stream_version, \
     event_type, schema_version, data::text AS data, metadata::text AS metadata, recorded_at";

/// A range of the log. Its end was readable before the export read any of it (see
/// `wait_until_readable`): every event up to it is final, so the range needs no horizon.
const EXPORT_RANGE: &str = "(transaction_id, position) > ($1::text::xid8, $2) \
     AND (transaction_id, position) <= ($3::text::xid8, $4)";

/// The next page of events in a range, in log order.
fn export_sql() -> String {
    format!("SELECT {EXPORT_COLUMNS} FROM events WHERE {EXPORT_RANGE} ORDER BY transaction_id, position LIMIT $5")
}

/// Where the next `$5` events of a range end: the window one page of an org's export scans.
fn window_end_sql() -> String {
    format!(
        "SELECT transaction_id::text::bigint AS tx, position FROM events WHERE {EXPORT_RANGE} \
         ORDER BY transaction_id, position OFFSET $5 - 1 LIMIT 1"
    )
}

/// The events of org `$6` in a window of at most `$5` events. The window is read in log order
/// (index order) whatever the filter: planned with the filter, PostgreSQL can expect few
/// matching rows and sort the whole table instead.
fn export_org_sql() -> String {
    format!(
        "SELECT {EXPORT_COLUMNS} \
         FROM (SELECT * FROM events WHERE {EXPORT_RANGE} ORDER BY transaction_id, position LIMIT $5) events \
         WHERE metadata->>'org_id' = $6 ORDER BY transaction_id, position"
    )
}

/// The events that follow `cursor`, up to `end`, in one page, and where the next page starts
/// (`None` once `end` is reached).
async fn next_page(
    pool: &PgPool,
    cursor: Cursor,
    end: Cursor,
    page_size: u32,
    org: Option<&str>,
) -> anyhow::Result<(Vec<StoredEvent>, Option<Cursor>)> {
    let Some(org) = org else {
        let rows: Vec<StoredEvent> = sqlx::query_as(&export_sql())
            .bind(cursor.tx.to_string())
            .bind(cursor.position)
            .bind(end.tx.to_string())
            .bind(end.position)
            .bind(i64::from(page_size))
            .fetch_all(pool)
            .await?;
        let next = match rows.last() {
            Some(last) if rows.len() == page_size as usize => Some(Cursor {
                tx: last.tx,
                position: last.position,
            }),
            _ => None,
        };
        return Ok((rows, next));
    };
    let window_end: Option<(i64, i64)> = sqlx::query_as(&window_end_sql())
        .bind(cursor.tx.to_string())
        .bind(cursor.position)
        .bind(end.tx.to_string())
        .bind(end.position)
        .bind(i64::from(page_size))
        .fetch_optional(pool)
        .await?;
    let (to, next) = match window_end.map(|(tx, position)| Cursor { tx, position }) {
        Some(to) if to < end => (to, Some(to)),
        _ => (end, None),
    };
    let rows = sqlx::query_as(&export_org_sql())
        .bind(cursor.tx.to_string())
        .bind(cursor.position)
        .bind(to.tx.to_string())
        .bind(to.position)
        .bind(i64::from(page_size))
        .bind(org)
        .fetch_all(pool)
        .await?;
    Ok((rows, next))
}

async fn export(pool: &PgPool, args: &ExportArgs) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone());
    let end = store.head().await.context("reading the log head")?;
    wait_until_readable(&store, end).await?;
    let after = args.after.unwrap_or(Cursor::START);
    let org = args.org.map(|o| o.to_string());
    let mut progress = Progress::new("exported");

    // Pages are read while the previous one is written; two in flight at most.
    let (pages, mut received) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<StoredEvent>>>(2);
    let reader = {
        let (pool, page_size) = (pool.clone(), args.page_size);
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                let page = next_page(&pool, cursor, end, page_size, org.as_deref())
                    .await
                    .context("reading events");
                let next = match &page {
                    Ok((_, next)) => *next,
                    Err(_) => None,
                };
                if pages.send(page.map(|(rows, _)| rows)).await.is_err() {
                    return;
                }
                match next {
                    Some(next) => cursor = next,
                    None => return,
                }
            }
        })
    };

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    // With a filter, only the data keys of the exported streams' aggregates go along.
    let filtered = args.org.is_some() || args.after.is_some();
    let mut owners = HashSet::new();
    let mut line = Vec::with_capacity(4096);
    while let Some(page) = received.recv().await {
        let page = page?;
        for event in &page {
            line.clear();
            write_event(&mut line, event)?;
            out.write_all(&line).context("writing to stdout")?;
            if filtered {
                if let Some(owner) = stream_uuid(&event.stream_id) {
                    owners.insert(owner);
                }
            }
        }
        progress.add(page.len() as u64);
    }
    reader.await.context("the export's reader task failed")?;

    let keys = if filtered {
        let mut owners: Vec<Uuid> = owners.into_iter().collect();
        owners.sort_unstable();
        export_keys_of(pool, &owners, &mut out).await?
    } else {
        export_all_keys(pool, &mut out).await?
    };
    out.flush().context("writing to stdout")?;
    eprintln!(
        "exported {} events and {keys} data keys in {} ({}); the log up to cursor {end} \
         (`--after {end}` exports what follows)",
        progress.events,
        progress.elapsed(),
        progress.rate()
    );
    Ok(())
}

/// Waits until every event up to `end` can be read: until the transactions that were still
/// appending to the log below `end`'s transaction have ended.
async fn wait_until_readable(store: &EventStore, end: Cursor) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut told = false;
    while store.readable_head().await.context("reading the log head")? < end {
        if !told && started.elapsed() > Duration::from_secs(2) {
            let who = match store.held_back_by().await {
                Ok(Some(appender)) => format!(
                    " ({}, open for {:.1} s)",
                    appender.describe(),
                    appender.open_for.as_secs_f64()
                ),
                _ => String::new(),
            };
            eprintln!(
                "waiting for transactions still appending to the event log{who}: it is read in \
                 order only up to the oldest of them"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The uuid in a stream id `<category>-<uuid>`, if it has one: the id of the aggregate, which
/// is also the owner id of its data key.
fn stream_uuid(stream_id: &str) -> Option<Uuid> {
    stream_id.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok())
}

/// Appends one event line (with its `\n`) to `line`. The stored JSON is PostgreSQL's text of it,
/// which never spans lines.
fn write_event(line: &mut Vec<u8>, e: &StoredEvent) -> anyhow::Result<()> {
    line.extend_from_slice(b"{\"stream_id\":");
    serde_json::to_writer(&mut *line, &e.stream_id)?;
    write!(line, ",\"stream_version\":{},\"type\":", e.stream_version)?;
    serde_json::to_writer(&mut *line, &e.event_type)?;
    write!(line, ",\"schema_version\":{},\"data\":", e.schema_version)?;
    line.extend_from_slice(e.data.as_bytes());
    line.extend_from_slice(b",\"metadata\":");
    line.extend_from_slice(e.metadata.as_bytes());
    writeln!(
        line,
        ",\"recorded_at\":\"{}\",\"cursor\":\"{}.{}\"}}",
        rfc3339(e.recorded_at),
        e.tx,
        e.position
    )?;
    Ok(())
}

fn write_key(out: &mut impl Write, key: &StoredKey) -> anyhow::Result<()> {
    out.write_all(b"{\"data_key\":{\"owner_id\":\"")?;
    write!(out, "{}\",\"master_key_id\":", key.owner_id)?;
    serde_json::to_writer(&mut *out, &key.master_key_id)?;
    out.write_all(b",\"wrapped\":")?;
    out.write_all(key.wrapped.as_bytes())?;
    writeln!(out, ",\"created_at\":\"{}\"}}}}", rfc3339(key.created_at))?;
    Ok(())
}

/// RFC 3339 in UTC with microseconds, PostgreSQL's precision.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

const KEY_COLUMNS: &str = "owner_id, master_key_id, wrapped::text AS wrapped, created_at";

/// Writes every data key, in owner order; returns how many.
async fn export_all_keys(pool: &PgPool, out: &mut impl Write) -> anyhow::Result<u64> {
    let mut after = Uuid::nil();
    let mut written = 0;
    loop {
        let keys: Vec<StoredKey> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE owner_id > $1 ORDER BY owner_id LIMIT 5000"
        ))
        .bind(after)
        .fetch_all(pool)
        .await
        .context("reading data keys")?;
        let Some(last) = keys.last() else { return Ok(written) };
        after = last.owner_id;
        for key in &keys {
            write_key(out, key).context("writing to stdout")?;
        }
        written += keys.len() as u64;
    }
}

/// Writes the data keys of `owners` that exist, in owner order; returns how many.
async fn export_keys_of(pool: &PgPool, owners: &[Uuid], out: &mut impl Write) -> anyhow::Result<u64> {
    let mut written = 0;
    for chunk in owners.chunks(5000) {
        let keys: Vec<StoredKey> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE owner_id = ANY($1) ORDER BY owner_id"
        ))
        .bind(chunk)
        .fetch_all(pool)
        .await
        .context("reading data keys")?;
        for key in &keys {
            write_key(out, key).context("writing to stdout")?;
        }
        written += keys.len() as u64;
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

/// One line of an export, either an event or a data key. Every field is optional here so that a
/// missing one is reported by name with the line's number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    stream_id: Option<String>,
    stream_version: Option<i64>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    schema_version: Option<i32>,
    data: Option<Box<RawValue>>,
    metadata: Option<Box<RawValue>>,
    recorded_at: Option<String>,
    cursor: Option<String>,
    data_key: Option<KeyLine>,
}

/// The `data_key` object of a key line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    owner_id: Uuid,
    master_key_id: String,
    wrapped: Box<RawValue>,
    created_at: String,
}

/// Events to insert with one statement, as column arrays; `data` and `metadata` are JSON text.
#[derive(Debug, Default)]
struct EventBatch {
    stream_ids: Vec<String>,
    versions: Vec<i64>,
    types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl EventBatch {
    fn len(&self) -> usize {
        self.stream_ids.len()
    }
}

/// Data keys to insert with one statement.
#[derive(Debug, Default)]
struct KeyBatch {
    owners: Vec<Uuid>,
    master_key_ids: Vec<String>,
    wrapped: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
}

#[derive(Debug)]
enum Batch {
    Events(EventBatch),
    Keys(KeyBatch),
}

/// Inserts a batch in file order; `position` and `transaction_id` take their defaults.
const IMPORT_EVENTS_SQL: &str = "\
INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at) \
SELECT e.stream_id, e.stream_version, e.event_type, e.schema_version, e.data::jsonb, e.metadata::jsonb, \
       e.recorded_at \
FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::timestamptz[]) \
         WITH ORDINALITY AS e(stream_id, stream_version, event_type, schema_version, data, metadata, \
                              recorded_at, ord) \
ORDER BY e.ord";

const IMPORT_KEYS_SQL: &str = "\
INSERT INTO data_keys (owner_id, master_key_id, wrapped, created_at) \
SELECT k.owner_id, k.master_key_id, k.wrapped::jsonb, k.created_at \
FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS k(owner_id, master_key_id, wrapped, created_at)";

async fn import(pool: &PgPool, args: &ImportArgs) -> anyhow::Result<()> {
    let mut progress = Progress::new("imported");
    let mut tx = pool.begin().await.context("starting the import's transaction")?;
    // Appends wait until the import has committed or rolled back; readers do not. The import
    // may take long, so it runs without the appenders' timeout.
    sqlx::query("SET LOCAL monkeyci.append_timeout = '0'")
        .execute(&mut *tx)
        .await
        .context("setting the import's timeout")?;
    sqlx::query("SELECT events_begin_append(true)")
        .execute(&mut *tx)
        .await
        .context("locking the event log")?;
    refuse_unless_empty(&mut tx).await?;

    // Lines are read and checked on a thread of their own while the previous batch is inserted.
    let (batches, mut received) = tokio::sync::mpsc::channel::<anyhow::Result<Batch>>(2);
    let batch_size = args.batch_size as usize;
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
        if let Err(error) = read_batches(input, batch_size, &batches) {
            // Fails only if the importer has stopped already.
            let _ = batches.blocking_send(Err(error));
        }
    });

    let mut keys = 0u64;
    while let Some(batch) = received.recv().await {
        match batch? {
            Batch::Events(events) => {
                insert_events(&mut tx, &events).await?;
                progress.add(events.len() as u64);
            }
            Batch::Keys(batch) => {
                insert_keys(&mut tx, &batch).await?;
                keys += batch.owners.len() as u64;
            }
        }
    }
    tx.commit().await.context("committing the import")?;
    // Wake the projections of servers running on this database (they also poll).
    sqlx::query("SELECT pg_notify('monkeyci_events', '')")
        .execute(pool)
        .await
        .context("notifying running servers")?;
    eprintln!(
        "imported {} events and {keys} data keys in {} ({}), in one transaction; the projections \
         of `monkeyci server` build the read models from them",
        progress.events,
        progress.elapsed(),
        progress.rate()
    );
    Ok(())
}

/// Refuses a database that holds events, or read models or checkpoints that an imported log
/// would not match.
///
/// Imported events get the importing transaction's id, above every checkpoint this cluster has
/// written, so a projection that had passed the old head would still see them; but it would fold
/// them into read models built from other events, and a database restored from another cluster
/// can hold checkpoints above this cluster's transaction ids, which would make its projections
/// pass over the imported events for good. Only an empty database is safe.
async fn refuse_unless_empty(conn: &mut PgConnection) -> anyhow::Result<()> {
    let last: Option<String> = sqlx::query_scalar(
        "SELECT transaction_id::text || '.' || position FROM events \
         ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .context("checking that the database is empty")?;
    if let Some(last) = last {
        bail!(
            "refusing to import: this database already holds events (the last at cursor {last}); \
             import only into an empty database (make a new one with `monkeyci --database-url … \
             migrate`), then start the server"
        );
    }
    let moved: Option<String> = sqlx::query_scalar(
        "SELECT name || ' at ' || tx || '.' || position FROM projection_checkpoints \
         WHERE tx <> 0 OR position <> 0 ORDER BY name LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .context("checking the projection checkpoints")?;
    if let Some(moved) = moved {
        bail!(
            "refusing to import: the log is empty but projection {moved} is past its start, so \
             it would not replay the imported events; import into a new database"
        );
    }
    for projection in monkeyci_projections::all() {
        for table in projection.tables() {
            let has_rows: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))
                .fetch_one(&mut *conn)
                .await
                .with_context(|| format!("checking that read model {table} is empty"))?;
            if has_rows {
                bail!(
                    "refusing to import: the log is empty but read model {table} has rows; import \
                     into a new database"
                );
            }
        }
    }
    Ok(())
}

async fn insert_events(conn: &mut PgConnection, batch: &EventBatch) -> anyhow::Result<()> {
    sqlx::query(IMPORT_EVENTS_SQL)
        .bind(&batch.stream_ids)
        .bind(&batch.versions)
        .bind(&batch.types)
        .bind(&batch.schema_versions)
        .bind(&batch.data)
        .bind(&batch.metadata)
        .bind(&batch.recorded_at)
        .execute(&mut *conn)
        .await
        .context("inserting events")?;
    Ok(())
}

async fn insert_keys(conn: &mut PgConnection, batch: &KeyBatch) -> anyhow::Result<()> {
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT owner_id FROM data_keys WHERE owner_id = ANY($1) ORDER BY owner_id LIMIT 1")
            .bind(&batch.owners)
            .fetch_optional(&mut *conn)
            .await
            .context("checking data keys")?;
    if let Some(owner) = existing {
        bail!("the database already has a data key for {owner}; nothing was imported");
    }
    sqlx::query(IMPORT_KEYS_SQL)
        .bind(&batch.owners)
        .bind(&batch.master_key_ids)
        .bind(&batch.wrapped)
        .bind(&batch.created_at)
        .execute(&mut *conn)
        .await
        .context("inserting data keys")?;
    Ok(())
}

/// Reads every line of `input`, checks it, and sends the events and keys in batches of
/// `batch_size`, events in file order. Stops quietly if the receiver is gone.
fn read_batches(
    mut input: impl BufRead,
    batch_size: usize,
    batches: &tokio::sync::mpsc::Sender<anyhow::Result<Batch>>,
) -> anyhow::Result<()> {
    // The version each stream is at, to check that versions run 1, 2, 3… in file order.
    let mut streams: HashMap<String, i64> = HashMap::new();
    let mut key_owners: HashSet<Uuid> = HashSet::new();
    let mut events = EventBatch::default();
    let mut keys = KeyBatch::default();
    let mut buf = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading stdin after line {number}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        let at = |reason: String| anyhow::anyhow!("line {number}: {reason}");
        let text = std::str::from_utf8(&buf).map_err(|e| at(format!("not UTF-8 ({e})")))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| at(json_error(&e)))?;
        if let Some(key) = line.data_key {
            if line.stream_id.is_some() || line.data.is_some() || line.metadata.is_some() {
                return Err(at("a data_key line has nothing but data_key".into()));
            }
            if !key.wrapped.get().starts_with('{') {
                return Err(at("data_key.wrapped must be a JSON object".into()));
            }
            if !key_owners.insert(key.owner_id) {
                return Err(at(format!("a second data key for {}", key.owner_id)));
            }
            keys.owners.push(key.owner_id);
            keys.master_key_ids.push(key.master_key_id);
            keys.wrapped.push(String::from(Box::<str>::from(key.wrapped)));
            keys.created_at
                .push(parse_time(&key.created_at).map_err(|e| at(format!("data_key.created_at: {e}")))?);
            if keys.owners.len() >= batch_size
                && batches
                    .blocking_send(Ok(Batch::Keys(std::mem::take(&mut keys))))
                    .is_err()
            {
                return Ok(());
            }
            continue;
        }
        let event = check_event(line, &mut streams).map_err(at)?;
        events.stream_ids.push(event.stream_id);
        events.versions.push(event.stream_version);
        events.types.push(event.event_type);
        events.schema_versions.push(event.schema_version);
        events.data.push(event.data);
        events.metadata.push(event.metadata);
        events.recorded_at.push(event.recorded_at);
        if events.len() >= batch_size
            && batches
                .blocking_send(Ok(Batch::Events(std::mem::take(&mut events))))
                .is_err()
        {
            return Ok(());
        }
    }
    if !events.stream_ids.is_empty() && batches.blocking_send(Ok(Batch::Events(events))).is_err() {
        return Ok(());
    }
    if !keys.owners.is_empty() {
        let _ = batches.blocking_send(Ok(Batch::Keys(keys)));
    }
    Ok(())
}

/// A checked event line.
#[derive(Debug)]
struct CheckedEvent {
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i32,
    data: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

/// Checks an event line as the event store checks an append, and that it continues its stream.
fn check_event(line: Line, streams: &mut HashMap<String, i64>) -> Result<CheckedEvent, String> {
    let missing = |field: &str| {
        format!("missing field `{field}` (an event needs stream_id, stream_version, type, schema_version, data, metadata and recorded_at)")
    };
    let stream_id = line.stream_id.ok_or_else(|| missing("stream_id"))?;
    let stream_version = line.stream_version.ok_or_else(|| missing("stream_version"))?;
    let event_type = line.event_type.ok_or_else(|| missing("type"))?;
    let schema_version = line.schema_version.ok_or_else(|| missing("schema_version"))?;
    let data = line.data.ok_or_else(|| missing("data"))?;
    let metadata = line.metadata.ok_or_else(|| missing("metadata"))?;
    let recorded_at = line.recorded_at.ok_or_else(|| missing("recorded_at"))?;
    if let Some(cursor) = &line.cursor {
        cursor.parse::<Cursor>().map_err(|e| format!("cursor: {e}"))?;
    }
    if stream_id.is_empty() {
        return Err("stream_id must not be empty".into());
    }
    if event_type.is_empty()
        || event_type.len() > 200
        || !event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(&b))
    {
        return Err(format!("type {event_type:?} must be 1-200 of A-Z a-z 0-9 _ ."));
    }
    if schema_version < 1 {
        return Err(format!("schema_version {schema_version} must be at least 1"));
    }
    if !data.get().starts_with('{') {
        return Err("data must be a JSON object".into());
    }
    if !metadata.get().starts_with('{') {
        return Err("metadata must be a JSON object".into());
    }
    let parsed: Metadata = serde_json::from_str(metadata.get()).map_err(|e| format!("metadata: {}", json_error(&e)))?;
    if parsed.actor.is_empty() {
        return Err("metadata must name an actor".into());
    }
    let recorded_at = parse_time(&recorded_at).map_err(|e| format!("recorded_at: {e}"))?;
    let stored = streams.get(&stream_id).copied().unwrap_or(0);
    if stream_version != stored + 1 {
        return Err(if stored == 0 {
            format!(
                "stream {stream_id} starts with version {stream_version}; a stream's first event must have \
                 version 1 (a filtered export continues streams it does not hold and cannot be imported \
                 on its own)"
            )
        } else {
            format!(
                "stream {stream_id}: version {stream_version} does not follow version {stored} (versions \
                 must run 1, 2, 3… in file order)"
            )
        });
    }
    match streams.get_mut(&stream_id) {
        Some(version) => *version = stream_version,
        None => {
            streams.insert(stream_id.clone(), stream_version);
        }
    }
    Ok(CheckedEvent {
        stream_id,
        stream_version,
        event_type,
        schema_version,
        data: String::from(Box::<str>::from(data)),
        metadata: String::from(Box::<str>::from(metadata)),
        recorded_at,
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

/// serde_json's message with the column, without its "at line 1" (the JSON of one line).
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    format!("{message} (column {})", error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_uuids_or_the_apis_global_ids() {
        use base64::Engine;
        let id = Uuid::now_v7();
        let global = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Org:{id}"));
        let repo = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Repo:{id}"));
        assert_eq!(parse_org(&id.to_string()), Ok(id));
        assert_eq!(parse_org(&global), Ok(id));
        assert!(parse_org(&repo).is_err());
        assert!(parse_org("acme").is_err());
    }

    #[test]
    fn stream_uuids_are_the_part_after_the_category() {
        let id = Uuid::now_v7();
        assert_eq!(stream_uuid(&format!("webhook-{id}")), Some(id));
        assert_eq!(stream_uuid("slug-acme"), None);
    }
}
