//! Tells live readers that the log has grown.
//!
//! Readers in this process are woken at once through a watch channel. Readers in other processes
//! get a `NOTIFY monkeyci_events` sent by one task per process after the append has committed,
//! on its own connection with `synchronous_commit = off`: appends that happen while one NOTIFY is
//! in flight are announced together by the next, so appenders never wait for it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{watch, Notify};

/// The channel both the notifier and [`crate::EventFeed`] use.
pub(crate) const CHANNEL: &str = "monkeyci_events";

#[derive(Debug)]
pub(crate) struct LogSignal {
    /// Counts appends made through this process; readers watch it.
    local: watch::Sender<u64>,
    /// Wakes the notifier task.
    pending: Arc<Notify>,
    notifier: OnceLock<()>,
}

impl LogSignal {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            local: watch::channel(0).0,
            pending: Arc::new(Notify::new()),
            notifier: OnceLock::new(),
        })
    }

    /// Announces that events were committed.
    pub(crate) fn appended(&self, pool: &PgPool) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        self.notifier.get_or_init(|| {
            tokio::spawn(notify_other_processes(self.pending.clone(), pool.clone()));
        });
        self.pending.notify_one();
    }

    /// A receiver that changes after every append made through this process.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }
}

async fn notify_other_processes(pending: Arc<Notify>, pool: PgPool) {
    let mut conn: Option<PgConnection> = None;
    loop {
        // `notify_one` stores a permit, so an append during the NOTIFY below is not lost.
        pending.notified().await;
        if conn.is_none() {
            conn = connect(&pool).await;
        }
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *c)
            .await
        {
            tracing::warn!(%error, "could not notify other processes of new events; reconnecting");
            conn = None;
        }
    }
}

async fn connect(pool: &PgPool) -> Option<PgConnection> {
    let options = pool.connect_options();
    match PgConnection::connect_with(&options).await {
        Ok(mut conn) => {
            // Losing a notification in a crash is harmless: readers also poll.
            match sqlx::query("SET synchronous_commit = off").execute(&mut conn).await {
                Ok(_) => Some(conn),
                Err(_) => None,
            }
        }
        Err(error) => {
            tracing::warn!(%error, "could not connect to notify other processes of new events");
            None
        }
    }
}
