//! Projections: read models built from the event log, and the runner that keeps them current.
//!
//! A [`Projection`] turns a batch of events into changes to its tables. The [`ProjectionRunner`]
//! feeds each projection from its checkpoint and commits the read-model changes together with the
//! new checkpoint, so every event takes effect exactly once, even across crashes. One process at a
//! time holds a projection's lease (a PostgreSQL advisory lock held by the connection that does
//! the work); when that process dies its connection closes and another process takes over.

mod access;
mod audit;
mod builds;
mod error;
pub mod joblog;
mod online;
mod orgs;
pub mod queries;
mod read;
mod repos;
mod rows;
mod runner;
mod secrets;
mod triggers;

use futures::future::BoxFuture;
use monkeyci_eventstore::RecordedEvent;
use sqlx::PgConnection;
use std::sync::Arc;

pub use access::{TokenRow, UserRow};
pub use audit::AuditProjection;
pub use builds::{fold_build, ArtifactRow, BuildRow, BuildsProjection, JobRow, LogArchiveRow};
pub use error::ProjectionError;
pub use online::{rebuild_online, RebuildOutcome, RebuildProgress};
pub use orgs::{OrgRow, OrgsProjection};
pub use read::{Announcements, ReadModels, CHECKPOINT_CHANNEL, JOB_LOG_CHANNEL};
pub use repos::{RepoRow, ReposProjection};
pub use runner::{rebuild, status, ProjectionRunner, ProjectionStatus, Role, RunnerConfig, RunnerHandle};
pub use secrets::{ParamSetRow, SecretsProjection, SshKeyRow};
pub use triggers::{ScheduleRow, TriggersProjection, WebhookRow};

/// Builds one read model from the events of the log.
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// A stable name: the key of the checkpoint and of the lease.
    fn name(&self) -> &'static str;

    /// The tables this projection owns; a rebuild empties them.
    fn tables(&self) -> &'static [&'static str];

    /// The stream categories (the part of a stream id before the first `-`) whose events
    /// [`Projection::apply`] reads, or [`EVERY_CATEGORY`]. The runner moves the checkpoint over
    /// a batch without any of them without calling `apply`.
    fn categories(&self) -> &'static [&'static str];

    /// Applies a batch of events, in log order, inside the runner's transaction on `conn`.
    ///
    /// Events of streams the projection does not care about must be ignored. An error rolls the
    /// whole batch back; the runner retries it later and never skips it.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// [`Projection::categories`] of a projection that reads events of every stream.
pub const EVERY_CATEGORY: &[&str] = &["*"];

/// Whether `projection` reads events of the stream `stream_id`.
pub(crate) fn reads(projection: &dyn Projection, stream_id: &str) -> bool {
    let categories = projection.categories();
    categories == EVERY_CATEGORY
        || stream_id
            .split_once('-')
            .is_some_and(|(category, _)| categories.contains(&category))
}

/// MonkeyCI's read models.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(OrgsProjection),
        Arc::new(ReposProjection),
        Arc::new(BuildsProjection),
        Arc::new(TriggersProjection),
        Arc::new(SecretsProjection),
        Arc::new(AuditProjection),
    ]
}
