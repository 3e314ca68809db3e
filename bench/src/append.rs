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
    /// The event store's own append statement for a new stream
    /// (`monkeyci_eventstore::insert_at`: `APPEND_ONE_AT_SQL` for one event, else `APPEND_AT_SQL`)
    /// on the `events` table, without the store around it: no notifier. A diagnostic: the gap
    /// between this and the ceiling is the statement and the table; the gap between this and
    /// `Store` is the rest (the notifier's `pg_notify` transactions, pool and client work).
    StoreSql,
    /// The ceiling's INSERT into the `events` table (its indexes, constraints and defaults)
    /// instead of the plain table: a diagnostic of what the table costs, without the stream lock
    /// and the `UNNEST` of the append statement.
    EventsInsert,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Self::Store => "EventStore::append",
            Self::Ceiling => "bare INSERT (ceiling)",
            Self::StoreSql => "append statement only, no notifier",
            Self::EventsInsert => "bare INSERT into `events`",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Store | Self::StoreSql | Self::EventsInsert => "events",
            Self::Ceiling => "ceiling_events",
        }
    }
}

/// One measured shape.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub target: Target,
    pub writers: usize,
    pub events_per_command: usize,
    pub commands: u64,
    pub seconds: f64,
    pub latency: Samples,
    /// For the event store: notifications on `monkeyci_events` received during the measured
    /// seconds (the event store's notifier sends one `pg_notify` transaction per wake-up).
    pub notifies: Option<u64>,
}

impl Measurement {
    /// Adds another slice of the same target and shape.
    fn absorb(&mut self, other: Measurement) {
        self.commands += other.commands;
        self.seconds += other.seconds;
        self.latency.extend(other.latency);
        self.notifies = match (self.notifies, other.notifies) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.seconds
    }

    pub fn events_per_s(&self) -> f64 {
        self.commands_per_s() * self.events_per_command as f64
    }
}

/// Creates the ceiling table: the events table's columns, no constraint but a bigserial key,
/// no trigger.
pub async fn create_ceiling_tables(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "CREATE TABLE {} (
            position bigserial PRIMARY KEY,
            stream_id text,
            stream_version bigint,
            event_type text,
            schema_version integer,
            data jsonb,
            metadata jsonb
        )",
        Target::Ceiling.table()
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
    let notifies = match target {
        Target::Store => Some(count_notifies(pool, measure_from, end).await?),
        Target::Ceiling | Target::StoreSql | Target::EventsInsert => None,
    };
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
                    Target::Ceiling | Target::EventsInsert => insert_once(&pool, &sql, &write).await?,
                    Target::StoreSql => append_statement(&pool, &write).await?,
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
    let notifies = match notifies {
        Some(counter) => Some(counter.await.context("the notification counter panicked")??),
        None => None,
    };
    Ok(Measurement {
        target,
        writers,
        events_per_command,
        commands,
        seconds: seconds.as_secs_f64(),
        latency,
        notifies,
    })
}

/// Counts the notifications on the event store's channel that arrive between `from` and `end`.
async fn count_notifies(
    pool: &PgPool,
    from: Instant,
    end: Instant,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<u64>>> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("monkeyci_events").await?;
    Ok(tokio::spawn(async move {
        let mut count = 0u64;
        // A notification is delivered a little after it was sent: keep listening briefly.
        let stop = tokio::time::Instant::from_std(end + Duration::from_millis(100));
        while let Ok(received) = tokio::time::timeout_at(stop, listener.recv()).await {
            received?;
            let now = Instant::now();
            if now >= from && now <= end {
                count += 1;
            }
        }
        anyhow::Ok(count)
    }))
}

async fn append_once(store: &EventStore, write: StreamAppend) -> anyhow::Result<()> {
    match store.append(&[write], None).await? {
        AppendResult::Appended { last: Some(_) } => Ok(()),
        other => anyhow::bail!("unexpected append result {other:?}"),
    }
}

/// One new stream's events through the store's own statement for a new stream
/// (`monkeyci_eventstore::insert_at`), on a connection of the pool, without the store around it.
async fn append_statement(pool: &PgPool, write: &StreamAppend) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let last = monkeyci_eventstore::insert_at(&mut conn, write, 0).await?;
    anyhow::ensure!(last.is_some(), "the append statement appended nothing");
    Ok(())
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

/// Every selected target for every shape. With one slice the targets of a shape run back to
/// back, each for `warmup + seconds`; with `slices` > 1 they take turns, each slice
/// `warmup + seconds / slices` (the order reversed every other turn), and each target's
/// slices add up to one measurement: on a machine whose speed drifts from minute to minute, a
/// target and its ceiling then see the same conditions.
pub async fn run_all(
    pool: &PgPool,
    targets: &[Target],
    writer_counts: &[usize],
    events_per_command: &[usize],
    warmup: Duration,
    seconds: Duration,
    slices: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let slices = slices.max(1);
    let slice = seconds / u32::try_from(slices).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for &k in events_per_command {
        for &writers in writer_counts {
            let mut shape: Vec<Option<Measurement>> = vec![None; targets.len()];
            for turn in 0..slices {
                let order: Vec<usize> = if turn % 2 == 0 {
                    (0..targets.len()).collect()
                } else {
                    (0..targets.len()).rev().collect()
                };
                for i in order {
                    let m = measure(pool, targets[i], writers, k, warmup, slice).await?;
                    match &mut shape[i] {
                        Some(sum) => sum.absorb(m),
                        empty => *empty = Some(m),
                    }
                }
            }
            for mut m in shape.into_iter().flatten() {
                eprintln!(
                    "  {:<30} writers {writers:>3} events/cmd {k:>2}: {:>8.0} cmd/s {:>9.0} ev/s p50 {:>7.2} ms p99 {:>7.2} ms",
                    m.target.label(),
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
        "| target | writers | events/cmd | commands/s | events/s | p50 ms | p99 ms | max ms | of ceiling | NOTIFYs per command |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in measurements.iter_mut() {
        let ratio = match (m.target, ceiling.get(&(m.writers, m.events_per_command))) {
            (Target::Ceiling, _) => "100 %".to_owned(),
            (_, Some(c)) if *c > 0.0 => format!("{:.0} %", 100.0 * m.commands_per_s() / c),
            _ => "–".to_owned(),
        };
        let notifies = match m.notifies {
            Some(n) if m.commands > 0 => format!("{:.2}", n as f64 / m.commands as f64),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.target.label(),
            m.writers,
            m.events_per_command,
            crate::stats::rate(m.commands_per_s()),
            crate::stats::rate(m.events_per_s()),
            crate::stats::ms(m.latency.percentile_ms(50.0)),
            crate::stats::ms(m.latency.percentile_ms(99.0)),
            crate::stats::ms(m.latency.max_ms()),
            ratio,
            notifies,
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
