//! One read of a build's state, shared by every subscriber that needs it.
//!
//! When one build changes, each of its subscribers needs the new state. Without sharing, 10,000
//! subscribers would make 10,000 identical queries; here the first asks and the others wait for
//! its answer. A read made once the builds projection had applied cursor C serves anyone who
//! needs the state as of C or earlier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use monkeyci_eventstore::Cursor;
use monkeyci_projections::{queries, BuildRow, ReadModels};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::consistency::{Consistency, ConsistencyError};

/// Entries older than this are dropped once the table grows large.
const KEEP: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 10_000;

type Read = Arc<OnceCell<Result<Option<BuildRow>, String>>>;

/// Shared reads of build rows.
#[derive(Debug, Default)]
pub struct BuildReads {
    latest: Mutex<HashMap<Uuid, (Cursor, Instant, Read)>>,
}

/// Why a shared read failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildReadError {
    #[error(transparent)]
    Behind(#[from] ConsistencyError),
    #[error("reading the build failed: {0}")]
    Query(String),
}

impl BuildReads {
    /// The build's row once the builds projection has applied `cursor`.
    pub async fn at(
        &self,
        db: &ReadModels,
        consistency: &Consistency,
        id: Uuid,
        cursor: Cursor,
    ) -> Result<Option<BuildRow>, BuildReadError> {
        let (read_at, read) = self.read_for(id, cursor);
        consistency.wait_for(read_at, &["builds"]).await?;
        read.get_or_init(|| async { queries::build(db, id).await.map_err(|e| e.to_string()) })
            .await
            .clone()
            .map_err(BuildReadError::Query)
    }

    /// The shared read that serves `cursor`, starting a new one if the latest is older.
    fn read_for(&self, id: Uuid, cursor: Cursor) -> (Cursor, Read) {
        let mut latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, _, read)) = latest.get(&id) {
            if *at >= cursor {
                return (*at, read.clone());
            }
        }
        if latest.len() > PRUNE_ABOVE {
            latest.retain(|_, (_, made, _)| made.elapsed() < KEEP);
        }
        let read: Read = Arc::new(OnceCell::new());
        latest.insert(id, (cursor, Instant::now(), read.clone()));
        (cursor, read)
    }
}
