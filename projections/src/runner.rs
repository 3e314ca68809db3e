use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use monkeyci_eventstore::{Cursor, EventFeed, EventStore, ReadError, RecordedEvent};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ProjectionError;
use crate::Projection;

/// Tuning of the projection runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events applied per transaction.
    pub batch_size: u32,
    /// How often a standby process tries to take a projection's lease.
    pub lease_retry: Duration,
    /// How long to wait after a failed batch before trying again.
    pub error_backoff: Duration,
    /// How often the log is read when the live feed signals nothing.
    pub idle_poll: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            lease_retry: Duration::from_secs(2),
            error_backoff: Duration::from_secs(1),
            idle_poll: Duration::from_secs(1),
        }
    }
}

/// What this process does for one projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Another process holds the lease; this one waits to take over.
    Standby,
    /// This process holds the lease and applies events.
    Active,
    /// The runner was shut down.
    Stopped,
}

/// Feeds projections from the log, one task per projection.
#[derive(Debug)]
pub struct ProjectionRunner {
    store: EventStore,
    feed: EventFeed,
    projections: Vec<Arc<dyn Projection>>,
    config: RunnerConfig,
}

/// The running projections of this process.
#[derive(Debug)]
pub struct RunnerHandle {
    roles: HashMap<&'static str, watch::Receiver<Role>>,
    checkpoints: HashMap<&'static str, watch::Receiver<Cursor>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProjectionRunner {
    /// A runner for `projections`, woken by `feed`.
    pub fn new(
        store: EventStore,
        feed: EventFeed,
        projections: Vec<Arc<dyn Projection>>,
        config: RunnerConfig,
    ) -> Self {
        Self {
            store,
            feed,
            projections,
            config,
        }
    }

    /// Starts one task per projection, and one that listens for rebuilds.
    pub fn start(self) -> RunnerHandle {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut roles = HashMap::new();
        let mut checkpoints = HashMap::new();
        let mut resets = HashMap::new();
        let mut tasks = Vec::new();
        let mut workers = Vec::new();
        for projection in self.projections {
            let (role_tx, role_rx) = watch::channel(Role::Standby);
            let (checkpoint_tx, checkpoint_rx) = watch::channel(Cursor::START);
            let (reset_tx, reset_rx) = watch::channel(());
            roles.insert(projection.name(), role_rx);
            checkpoints.insert(projection.name(), checkpoint_rx);
            resets.insert(projection.name(), reset_tx);
            workers.push(Worker {
                store: self.store.clone(),
                feed: self.feed.clone(),
                projection,
                config: self.config.clone(),
                role: role_tx,
                checkpoint: checkpoint_tx,
                reset: reset_rx,
                shutdown: shutdown_rx.clone(),
            });
        }
        tasks.push(tokio::spawn(listen_for_resets(
            self.store.pool().clone(),
            resets,
            self.config.error_backoff,
            shutdown_rx,
        )));
        tasks.extend(workers.into_iter().map(|worker| tokio::spawn(worker.run())));
        RunnerHandle {
            roles,
            checkpoints,
            shutdown,
            tasks,
        }
    }
}

impl RunnerHandle {
    /// This process's role for the projection `name`.
    pub fn role(&self, name: &str) -> Option<watch::Receiver<Role>> {
        self.roles.get(name).cloned()
    }

    /// The last checkpoint this process committed for the projection `name`.
    pub fn checkpoint(&self, name: &str) -> Option<watch::Receiver<Cursor>> {
        self.checkpoints.get(name).cloned()
    }

    /// Stops every projection after its current batch and releases the leases.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Worker {
    store: EventStore,
    feed: EventFeed,
    projection: Arc<dyn Projection>,
    config: RunnerConfig,
    role: watch::Sender<Role>,
    checkpoint: watch::Sender<Cursor>,
    /// Changes when a rebuild of this projection commits (see [`rebuild`]).
    reset: watch::Receiver<()>,
    shutdown: watch::Receiver<bool>,
}

/// The channel on which [`rebuild`] announces a projection whose checkpoint it moved back.
const RESET_CHANNEL: &str = "monkeyci_projection_reset";

/// Wakes the worker of every projection that a rebuild reset, in this process or another, so an
/// idle worker starts the replay at once rather than at its next `idle_poll`. Notifications
/// lost while the connection is down are covered by that poll.
async fn listen_for_resets(
    pool: sqlx::PgPool,
    resets: HashMap<&'static str, watch::Sender<()>>,
    backoff: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for projection rebuilds; retrying");
                let _ = tokio::time::timeout(backoff, shutdown.wait_for(|s| *s)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(RESET_CHANNEL).await {
            tracing::warn!(error = %error, "cannot listen for projection rebuilds; retrying");
            let _ = tokio::time::timeout(backoff, shutdown.wait_for(|s| *s)).await;
            continue;
        }
        loop {
            let notification = tokio::select! {
                n = listener.recv() => n,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match notification {
                Ok(notification) => {
                    if let Some(reset) = resets.get(notification.payload()) {
                        reset.send_replace(());
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "lost the rebuild listener; reconnecting");
                    break;
                }
            }
        }
    }
}

enum Stop {
    Shutdown,
    /// The lease connection failed or a batch failed: give up the lease and start over.
    Failed(ProjectionError),
}

impl Worker {
    async fn run(mut self) {
        let name = self.projection.name();
        while !*self.shutdown.borrow() {
            match self.take_lease().await {
                Ok(Some(conn)) => {
                    tracing::info!(projection = name, "took the lease; applying events");
                    self.role.send_replace(Role::Active);
                    let stop = self.apply_while_leased(conn).await;
                    self.role.send_replace(Role::Standby);
                    match stop {
                        Stop::Shutdown => break,
                        Stop::Failed(error) => {
                            tracing::error!(projection = name, error = %error, "projection failed; retrying");
                            self.pause(self.config.error_backoff).await;
                        }
                    }
                }
                Ok(None) => self.pause(self.config.lease_retry).await,
                Err(error) => {
                    tracing::warn!(projection = name, error = %error, "could not try the lease");
                    self.pause(self.config.error_backoff).await;
                }
            }
        }
        self.role.send_replace(Role::Stopped);
    }

    /// Waits for `duration` or until shutdown.
    async fn pause(&mut self, duration: Duration) {
        let _ = tokio::time::timeout(duration, self.shutdown.wait_for(|s| *s)).await;
    }

    /// A connection holding the projection's advisory lock, if no other process holds it.
    async fn take_lease(&self) -> Result<Option<PoolConnection<Postgres>>, ProjectionError> {
        let mut conn = self.store.pool().acquire().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(lease_key(self.projection.name()))
            .fetch_one(&mut *conn)
            .await?;
        if taken {
            // Read-model tables grow from empty during a replay; a generic plan cached while
            // they were small (a sequential scan) would stay in use as they grow.
            sqlx::query("SET plan_cache_mode = force_custom_plan")
                .execute(&mut *conn)
                .await?;
        }
        Ok(taken.then_some(conn))
    }

    async fn apply_while_leased(&mut self, conn: PoolConnection<Postgres>) -> Stop {
        // The lease lives as long as this connection: it is closed rather than returned to the
        // pool, so the lock can never outlive this worker's hold on it.
        let mut conn = conn.detach();
        let stop = self.apply_loop(&mut conn).await;
        let _ = conn.close().await;
        stop
    }

    async fn apply_loop(&mut self, conn: &mut PgConnection) -> Stop {
        let name = self.projection.name();
        let mut cursor = match load_checkpoint(conn, name).await {
            Ok(cursor) => cursor,
            Err(error) => return Stop::Failed(error),
        };
        self.checkpoint.send_replace(cursor);
        let mut statistics = Statistics::new(self.config.batch_size);
        // While catching up, the next batch is read while the current one is applied.
        let mut prefetched: Option<Prefetch> = None;
        loop {
            if *self.shutdown.borrow() {
                return Stop::Shutdown;
            }
            let read = match prefetched.take() {
                Some(prefetch) => prefetch.events().await,
                None => self.store.read_all(cursor, self.config.batch_size).await,
            };
            let events = match read {
                Ok(events) => events,
                Err(error) => return Stop::Failed(error.into()),
            };
            let Some(last) = events.last().map(|e| e.cursor) else {
                let feed = self.feed.clone();
                let idle = tokio::select! {
                    _ = feed.wait_for(Cursor { tx: cursor.tx, position: cursor.position + 1 }) => false,
                    _ = tokio::time::sleep(self.config.idle_poll) => true,
                    _ = self.reset.changed() => true,
                    _ = self.shutdown.wait_for(|s| *s) => return Stop::Shutdown,
                };
                if idle {
                    // Nothing new for a while, or a rebuild said so: a rebuild may have moved
                    // the checkpoint back.
                    match load_checkpoint(conn, name).await {
                        Ok(stored) if stored != cursor => {
                            tracing::info!(projection = name, from = %stored, "checkpoint moved; continuing from it");
                            cursor = stored;
                            statistics = Statistics::new(self.config.batch_size);
                            self.checkpoint.send_replace(cursor);
                        }
                        Ok(_) => {}
                        Err(error) => return Stop::Failed(error),
                    }
                }
                continue;
            };
            let full = events.len() >= self.config.batch_size as usize;
            if full {
                prefetched = Some(Prefetch::start(&self.store, last, self.config.batch_size));
            }
            match apply_batch(conn, self.projection.as_ref(), cursor, last, &events).await {
                Ok(true) => {
                    cursor = last;
                    self.checkpoint.send_replace(cursor);
                    if full {
                        statistics.applied(conn, self.projection.as_ref(), events.len()).await;
                    }
                }
                // Somebody moved the checkpoint (a rebuild): continue from where it is now.
                Ok(false) => {
                    prefetched = None;
                    match load_checkpoint(conn, name).await {
                        Ok(moved) => {
                            tracing::info!(projection = name, from = %moved, "checkpoint moved; continuing from it");
                            cursor = moved;
                            statistics = Statistics::new(self.config.batch_size);
                            self.checkpoint.send_replace(cursor);
                        }
                        Err(error) => return Stop::Failed(error),
                    }
                }
                Err(error) => return Stop::Failed(error),
            }
        }
    }
}

/// The read of the batch that follows `after`, running while the current batch is applied;
/// dropping it cancels the read.
struct Prefetch(JoinHandle<Result<Vec<RecordedEvent>, ReadError>>);

impl Prefetch {
    fn start(store: &EventStore, after: Cursor, limit: u32) -> Self {
        let store = store.clone();
        Self(tokio::spawn(async move { store.read_all(after, limit).await }))
    }

    async fn events(mut self) -> Result<Vec<RecordedEvent>, ReadError> {
        match (&mut self.0).await {
            Ok(read) => read,
            // Only a panic in the read (it is never aborted while awaited here).
            Err(error) => Err(ReadError::Database(sqlx::Error::Protocol(format!(
                "reading the next batch: {error}"
            )))),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps planner statistics of a projection's tables current while it catches up.
///
/// A replay starts from empty tables (after `rebuild()`'s TRUNCATE) that have no statistics, and
/// autovacuum may analyze them late or never; without statistics PostgreSQL estimates, for
/// example, that `jobs.build_id = ANY(…)` matches a large part of the table and reads all of it
/// for every batch. So after full batches (the projection is behind), the tables are analyzed
/// when the events applied since the start or the last rebuild reach one batch, then two, four…
/// (a handful of ANALYZEs for a million events).
pub(crate) struct Statistics {
    applied: u64,
    next: u64,
}

impl Statistics {
    pub(crate) fn new(batch_size: u32) -> Self {
        Self {
            applied: 0,
            next: u64::from(batch_size.max(1)),
        }
    }

    pub(crate) async fn applied(&mut self, conn: &mut PgConnection, projection: &dyn Projection, events: usize) {
        self.applied += events as u64;
        if self.applied < self.next {
            return;
        }
        self.next = self.applied.saturating_mul(2);
        let tables = projection.tables().join(", ");
        if let Err(error) = sqlx::query(&format!("ANALYZE {tables}")).execute(&mut *conn).await {
            tracing::warn!(projection = projection.name(), %error, "could not analyze {tables}");
        }
    }
}

fn lease_key(name: &str) -> String {
    format!("monkeyci.projection.{name}")
}

async fn load_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Cursor, ProjectionError> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query("SELECT tx, position FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Cursor {
        tx: row.try_get("tx")?,
        position: row.try_get("position")?,
    })
}

/// Applies one batch and moves the checkpoint from `from` to `to` in one transaction.
///
/// Returns `false`, changing nothing, if the stored checkpoint is no longer `from`.
///
/// The transaction commits without waiting for its WAL to reach the disk
/// (`synchronous_commit = off` for this transaction only): a read model can always be rebuilt
/// from the log, and the checkpoint commits with the rows, so a crash can only lose both
/// together, and the batch is then applied again. The appends themselves stay synchronous.
async fn apply_batch(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    from: Cursor,
    to: Cursor,
    events: &[monkeyci_eventstore::RecordedEvent],
) -> Result<bool, ProjectionError> {
    if !events.iter().any(|e| crate::reads(projection, &e.stream_id)) {
        return move_checkpoint(conn, projection.name(), from, to, events.len()).await;
    }
    let mut tx = conn.begin().await?;
    // Locking the checkpoint first orders this batch before or after a rebuild, which locks it
    // before it empties the tables.
    let row = sqlx::query(
        "SELECT tx, position, set_config('synchronous_commit', 'off', true) \
         FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(projection.name())
    .fetch_one(&mut *tx)
    .await?;
    let stored = Cursor {
        tx: row.try_get("tx")?,
        position: row.try_get("position")?,
    };
    if stored != from {
        return Ok(false);
    }
    projection.apply(&mut tx, events).await?;
    let moved = move_checkpoint(&mut tx, projection.name(), from, to, events.len()).await?;
    tx.commit().await?;
    Ok(moved)
}

/// Moves the checkpoint of `name` from `from` to `to` over `events` events, in one statement
/// (its own transaction unless `conn` is in one, committed without waiting for the WAL flush);
/// `false` if the stored checkpoint is no longer `from`.
///
/// A batch without any event the projection reads costs just this statement.
async fn move_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    from: Cursor,
    to: Cursor,
    events: usize,
) -> Result<bool, ProjectionError> {
    let moved = sqlx::query(
        "UPDATE projection_checkpoints SET tx = $2, position = $3, \
         events_processed = events_processed + $4, updated_at = now() \
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous \
         WHERE name = $1 AND tx = $5 AND position = $6",
    )
    .bind(name)
    .bind(to.tx)
    .bind(to.position)
    .bind(i64::try_from(events).unwrap_or(i64::MAX))
    .bind(from.tx)
    .bind(from.position)
    .execute(&mut *conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Empties a projection's tables and moves its checkpoint back to the start of the log, in one
/// transaction; the active process notices and replays the whole log into it.
pub async fn rebuild(store: &EventStore, projection: &dyn Projection) -> Result<(), ProjectionError> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    // Waits for a batch in flight, so the truncation cannot interleave with it.
    sqlx::query("SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("TRUNCATE {}", projection.tables().join(", ")))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET tx = 0, position = 0, events_processed = 0, updated_at = now() \
         WHERE name = $1",
    )
    .bind(projection.name())
    .execute(&mut *tx)
    .await?;
    // Delivered at commit: the active worker, in whichever process, starts replaying at once.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RESET_CHANNEL)
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub name: String,
    /// The cursor of the last event applied.
    pub checkpoint: Cursor,
    /// Events applied since the projection was (re)built.
    pub events_processed: i64,
    /// Committed events not yet applied.
    pub lag_events: u64,
    /// When the checkpoint last moved.
    pub updated_at: DateTime<Utc>,
}

/// The checkpoint and lag of every projection that has run.
pub async fn status(store: &EventStore) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT name, tx, position, events_processed, updated_at FROM projection_checkpoints ORDER BY name",
    )
    .fetch_all(store.pool())
    .await?;
    let mut statuses = Vec::with_capacity(rows.len());
    for row in rows {
        let checkpoint = Cursor {
            tx: row.try_get("tx")?,
            position: row.try_get("position")?,
        };
        statuses.push(ProjectionStatus {
            name: row.try_get("name")?,
            checkpoint,
            events_processed: row.try_get("events_processed")?,
            lag_events: store.count_after(checkpoint).await?,
            updated_at: row.try_get("updated_at")?,
        });
    }
    Ok(statuses)
}
