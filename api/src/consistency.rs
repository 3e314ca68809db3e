//! Read-your-writes: queries wait until the projections have applied every event that was
//! committed when the query arrived.
//!
//! Every checkpoint move is announced on `monkeyci_checkpoints` (a trigger on
//! `projection_checkpoints`); this process keeps the latest checkpoint of every projection in a
//! watch channel, whichever server runs the projection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use monkeyci_eventstore::{Cursor, EventStore, ReadError};
use monkeyci_projections::{Announcements, ProjectionError, ReadModels, CHECKPOINT_CHANNEL};
use thiserror::Error;
use tokio::sync::watch;

/// A safety net for missed notifications (e.g. while the listener reconnects).
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The read models did not reach the log head in time.
#[derive(Debug, Error)]
pub enum ConsistencyError {
    #[error("the read models are {0:?} behind the event log; try again")]
    Behind(Duration),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Tracks projection checkpoints.
#[derive(Debug, Clone)]
pub struct Consistency {
    store: EventStore,
    projections: Arc<Vec<&'static str>>,
    checkpoints: watch::Receiver<HashMap<String, Cursor>>,
    timeout: Duration,
}

impl Consistency {
    /// Starts following the checkpoints of `projections`.
    pub async fn start(
        store: EventStore,
        read: ReadModels,
        projections: Vec<&'static str>,
        timeout: Duration,
    ) -> Result<Self, ProjectionError> {
        let listener = read.listen(CHECKPOINT_CHANNEL).await?;
        let (tx, checkpoints) = watch::channel(read.checkpoints().await?);
        tokio::spawn(follow(read, listener, tx));
        Ok(Self {
            store,
            projections: Arc::new(projections),
            checkpoints,
            timeout,
        })
    }

    /// Waits until every projection has applied `cursor`.
    pub async fn wait_for(&self, cursor: Cursor, projections: &[&str]) -> Result<(), ConsistencyError> {
        let mut checkpoints = self.checkpoints.clone();
        let reached = |map: &HashMap<String, Cursor>| {
            projections
                .iter()
                .all(|name| map.get(*name).copied().unwrap_or(Cursor::START) >= cursor)
        };
        let reached = tokio::time::timeout(self.timeout, async { checkpoints.wait_for(reached).await.is_ok() })
            .await
            .unwrap_or(false);
        // A stopped follower (only at process exit) counts as behind.
        if reached {
            Ok(())
        } else {
            Err(ConsistencyError::Behind(self.timeout))
        }
    }

    /// Waits until every projection has applied every event committed before this call.
    pub async fn read_your_writes(&self) -> Result<(), ConsistencyError> {
        let head = self.store.head().await?;
        self.wait_for(head, &self.projections).await
    }
}

fn parse(payload: &str) -> Option<(String, Cursor)> {
    let (name, cursor) = payload.split_once(' ')?;
    Some((name.to_owned(), cursor.parse().ok()?))
}

async fn follow(read: ReadModels, mut listener: Announcements, tx: watch::Sender<HashMap<String, Cursor>>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match tokio::time::timeout(RELOAD_EVERY, listener.recv()).await {
            Ok(Ok(payload)) => {
                if let Some((name, cursor)) = parse(&payload) {
                    tx.send_modify(|map| {
                        // A rebuild moves a checkpoint back; take every announced position.
                        map.insert(name, cursor);
                    });
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "checkpoint listener failed; reloading");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => match read.checkpoints().await {
                Ok(map) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != map;
                        *current = map;
                        changed
                    });
                }
                Err(error) => tracing::warn!(%error, "could not reload projection checkpoints"),
            },
        }
    }
}
