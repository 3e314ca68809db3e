//! Scenario 1 and 2: appends through the event store against bare INSERTs of the same rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use monkeyci_eventstore::{AppendResult, EventStore, StreamAppend};
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::stats::Samples;
use crate::workload::{self, Generator};

/// What the writers write with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `EventStore::append`, a new stream per command with `ExpectedVersion::NoStream`.
    Store,
    /// One autocommitted multi-row INSERT per command into a plain table with a bigserial key.
    Ceiling,
    /// The ceiling with the event log's statement-level `pg_notify` trigger added: isolates what
    /// NOTIFY costs at commit.
    NotifyCeiling,
    /// The ceiling, then a NOTIFY in a transaction of its own with `synchronous_commit = off`:
    /// one way to wake listeners without holding PostgreSQL's NOTIFY lock across a WAL flush.
    AsyncNotifyCeiling,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Self::Store => "EventStore::append",
            Self::Ceiling => "bare INSERT (ceiling)",
            Self::NotifyCeiling => "bare INSERT + NOTIFY trigger",
            Self::AsyncNotifyCeiling => "bare INSERT, then async NOTIFY",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Store => "events",
            Self::Ceiling | Self::AsyncNotifyCeiling => "ceiling_events",
            Self::NotifyCeiling => "notify_ceiling_events",
        }
    }
}

/// A NOTIFY whose commit does not wait for the WAL flush, sent in one round trip.
const ASYNC_NOTIFY: &str =
    "BEGIN; SET LOCAL synchronous_commit TO off; SELECT pg_notify('monkeyci_bench', ''); COMMIT;";

/// One measured shape.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub target: Target,
    pub writers: usize,
    pub events_per_command: usize,
    pub commands: u64,
    pub seconds: f64,
    pub latency: Samples,
}

impl Measurement {
    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.seconds
    }

    pub fn events_per_s(&self) -> f64 {
        self.commands_per_s() * self.events_per_command as f64
    }
}

/// Creates the ceiling tables: the events table's columns, no constraint but a bigserial key,
/// no trigger (and, for the second, only the NOTIFY trigger of the event log).
pub async fn create_ceiling_tables(pool: &PgPool) -> anyhow::Result<()> {
    for table in [Target::Ceiling.table(), Target::NotifyCeiling.table()] {
        sqlx::query(&format!(
            "CREATE TABLE {table} (
                position bigserial PRIMARY KEY,
                stream_id text,
                stream_version bigint,
                event_type text,
                schema_version integer,
                data jsonb,
                metadata jsonb
            )"
        ))
        .execute(pool)
        .await?;
    }
    sqlx::query(
        "CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_notify('monkeyci_bench', '');
             RETURN NULL;
         END;
         $$",
    )
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "CREATE TRIGGER bench_notify_after_insert AFTER INSERT ON {} \
         FOR EACH STATEMENT EXECUTE FUNCTION bench_notify()",
        Target::NotifyCeiling.table()
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// Runs `writers` closed-loop writers for `warmup + seconds` and measures the last `seconds`.
pub async fn measure(
    pool: &PgPool,
    target: Target,
    writers: usize,
    events_per_command: usize,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<Measurement> {
    let generator = Arc::new(Generator::new()?);
    let store = EventStore::new(pool.clone());
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + seconds;
    let sql = Arc::new(insert_sql(target.table(), events_per_command));
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let generator = generator.clone();
        let store = store.clone();
        let pool = pool.clone();
        let sql = sql.clone();
        tasks.spawn(async move {
            let (org_id, repo_id) = workload::random_owner();
            let mut latency = Samples::with_capacity(4096);
            let mut commands = 0u64;
            let mut seq = (w as u64) << 32;
            while Instant::now() < end {
                seq += 1;
                let script = generator.build(org_id, repo_id, seq)?;
                let write = workload::append_of(&script, 0, events_per_command);
                let began = Instant::now();
                match target {
                    Target::Store => append_once(&store, write).await?,
                    Target::Ceiling | Target::NotifyCeiling => insert_once(&pool, &sql, &write).await?,
                    Target::AsyncNotifyCeiling => {
                        insert_once(&pool, &sql, &write).await?;
                        sqlx::raw_sql(ASYNC_NOTIFY).execute(&pool).await?;
                    }
                }
                let done = Instant::now();
                if done >= measure_from && done <= end {
                    commands += 1;
                    latency.push(done - began);
                }
            }
            anyhow::Ok((commands, latency))
        });
    }
    let mut commands = 0;
    let mut latency = Samples::with_capacity(65536);
    while let Some(joined) = tasks.join_next().await {
        let (c, l) = joined.context("a writer panicked")??;
        commands += c;
        latency.extend(l);
    }
    Ok(Measurement {
        target,
        writers,
        events_per_command,
        commands,
        seconds: seconds.as_secs_f64(),
        latency,
    })
}

async fn append_once(store: &EventStore, write: StreamAppend) -> anyhow::Result<()> {
    match store.append(&[write], None).await? {
        AppendResult::Appended { last: Some(_) } => Ok(()),
        other => anyhow::bail!("unexpected append result {other:?}"),
    }
}

/// `INSERT INTO table (…) VALUES ($1, …, $6), …` for `rows` rows.
fn insert_sql(table: &str, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let b = r * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            )
        })
        .collect();
    format!(
        "INSERT INTO {table} (stream_id, stream_version, event_type, schema_version, data, metadata) VALUES {}",
        values.join(", ")
    )
}

/// The same rows the event store would write, in one autocommitted statement.
async fn insert_once(pool: &PgPool, sql: &str, write: &StreamAppend) -> anyhow::Result<()> {
    // The event store turns each event's metadata into JSON too.
    let metadata: Vec<Value> = write
        .events
        .iter()
        .map(|e| serde_json::to_value(&e.metadata))
        .collect::<Result<_, _>>()?;
    let mut query = sqlx::query(sql);
    for (i, (event, metadata)) in write.events.iter().zip(&metadata).enumerate() {
        query = query
            .bind(&write.stream_id)
            .bind(i as i64 + 1)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.data)
            .bind(metadata);
    }
    query.execute(pool).await?;
    Ok(())
}

/// Every selected target for every shape, the targets of one shape run back to back.
pub async fn run_all(
    pool: &PgPool,
    targets: &[Target],
    writer_counts: &[usize],
    events_per_command: &[usize],
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<Vec<Measurement>> {
    let mut out = Vec::new();
    for &k in events_per_command {
        for &writers in writer_counts {
            for &target in targets {
                let mut m = measure(pool, target, writers, k, warmup, seconds).await?;
                eprintln!(
                    "  {:<30} writers {writers:>3} events/cmd {k:>2}: {:>8.0} cmd/s {:>9.0} ev/s p50 {:>7.2} ms p99 {:>7.2} ms",
                    target.label(),
                    m.commands_per_s(),
                    m.events_per_s(),
                    m.latency.percentile_ms(50.0),
                    m.latency.percentile_ms(99.0),
                );
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// Formats the append table, with each store row's ratio to the ceiling of the same shape.
pub fn table(measurements: &mut [Measurement]) -> String {
    let ceiling: HashMap<(usize, usize), f64> = measurements
        .iter()
        .filter(|m| m.target == Target::Ceiling)
        .map(|m| ((m.writers, m.events_per_command), m.commands_per_s()))
        .collect();
    let mut out = String::from(
        "| target | writers | events/cmd | commands/s | events/s | p50 ms | p99 ms | max ms | of ceiling |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in measurements.iter_mut() {
        let ratio = match (m.target, ceiling.get(&(m.writers, m.events_per_command))) {
            (Target::Ceiling, _) => "100 %".to_owned(),
            (_, Some(c)) if *c > 0.0 => format!("{:.0} %", 100.0 * m.commands_per_s() / c),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.target.label(),
            m.writers,
            m.events_per_command,
            crate::stats::rate(m.commands_per_s()),
            crate::stats::rate(m.events_per_s()),
            crate::stats::ms(m.latency.percentile_ms(50.0)),
            crate::stats::ms(m.latency.percentile_ms(99.0)),
            crate::stats::ms(m.latency.max_ms()),
            ratio,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_has_six_parameters_per_row() {
        assert_eq!(
            insert_sql("t", 2),
            "INSERT INTO t (stream_id, stream_version, event_type, schema_version, data, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)"
        );
    }
}
