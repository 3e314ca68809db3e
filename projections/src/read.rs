//! The one door to the read models.
//!
//! Other crates read MonkeyCI's read models only through a [`ReadModels`] handle: the functions
//! of [`crate::queries`] take one, and it offers the few other reads a server needs (projection
//! checkpoints, a liveness probe, announcements of changes). It runs no writes and hands out no
//! connection, so a crate that holds one and does not depend on `sqlx` (the API) can neither
//! write a read model nor read one in a way this crate does not know of.

use std::collections::HashMap;

use monkeyci_eventstore::{Cursor, EventStore};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};

use crate::error::ProjectionError;

/// The channel on which every checkpoint move is announced, with payload `<projection> <cursor>`
/// (a trigger on `projection_checkpoints`).
pub const CHECKPOINT_CHANNEL: &str = "monkeyci_checkpoints";

/// The channel on which every stored batch of job output is announced, with payload
/// `<build id> <job id>` (a trigger on `job_log_lines`).
pub const JOB_LOG_CHANNEL: &str = "monkeyci_job_logs";

/// A read-only handle on the read models.
#[derive(Debug, Clone)]
pub struct ReadModels {
    pub(crate) pool: PgPool,
}

impl ReadModels {
    /// Reads on `pool`, which must reach a migrated database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Reads on the database of `store`.
    pub fn of(store: &EventStore) -> Self {
        Self::new(store.pool().clone())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), ProjectionError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The checkpoint of every projection that has one: the position up to which it has applied
    /// the log.
    pub async fn checkpoints(&self) -> Result<HashMap<String, Cursor>, ProjectionError> {
        let rows = sqlx::query("SELECT name, tx, position FROM projection_checkpoints")
            .fetch_all(&self.pool)
            .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for row in rows {
            let cursor = Cursor {
                tx: row.try_get("tx")?,
                position: row.try_get("position")?,
            };
            map.insert(row.try_get("name")?, cursor);
        }
        Ok(map)
    }

    /// Starts listening to `channel` ([`CHECKPOINT_CHANNEL`] or [`JOB_LOG_CHANNEL`]) on a
    /// connection of its own, outside the pool: a listener holds its connection for good, and the
    /// pool's connections are for queries.
    pub async fn listen(&self, channel: &'static str) -> Result<Announcements, ProjectionError> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(self.pool.connect_options().as_ref().clone());
        let mut listener = PgListener::connect_with(&own).await?;
        listener.listen(channel).await?;
        Ok(Announcements(listener))
    }
}

/// Announcements on one channel, in the order they were committed.
#[derive(Debug)]
pub struct Announcements(PgListener);

impl Announcements {
    /// The next announcement's payload. After an error the listener reconnects on the next call;
    /// announcements made while it was disconnected are lost, so readers also reload now and then.
    pub async fn recv(&mut self) -> Result<String, ProjectionError> {
        Ok(self.0.recv().await?.payload().to_owned())
    }
}
