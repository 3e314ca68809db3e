use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use monkeyci_domain::repo::{Repo, RepoEvent, RepoSettings};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;
use crate::Projection;

/// One repo as queries see it (table `repos`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub git_url: String,
    pub main_branch: String,
    pub labels: BTreeMap<String, String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The version of the repo's stream this row reflects.
    pub version: i64,
}

impl RepoRow {
    fn set(&mut self, settings: &RepoSettings) {
        self.name = settings.name.to_string();
        self.git_url = settings.git_url.to_string();
        self.main_branch = settings.main_branch.to_string();
        self.labels = settings.labels.as_map().clone();
    }
}

/// Projects repo events into `repos`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReposProjection;

impl Projection for ReposProjection {
    fn name(&self) -> &'static str {
        "repos"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["repos"]
    }

    fn categories(&self) -> &'static [&'static str] {
        &[Repo::CATEGORY]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let events = rows::decode_category::<RepoEvent>(events, Repo::CATEGORY)?;
            let ids = rows::distinct_ids(&events);
            let mut repos = rows::index(rows::load::<RepoRow>(conn, "repos", "id", &ids).await?, |r| r.id);
            for (id, recorded, event) in &events {
                let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
                let at = recorded.recorded_at;
                match (repos.get_mut(id), event) {
                    (Some(row), _) if row.version >= version => {}
                    (None, RepoEvent::RepoAdded { org_id, settings }) => {
                        let mut row = RepoRow {
                            id: *id,
                            org_id: org_id.as_uuid(),
                            name: String::new(),
                            git_url: String::new(),
                            main_branch: String::new(),
                            labels: BTreeMap::new(),
                            archived: false,
                            created_at: at,
                            updated_at: at,
                            version,
                        };
                        row.set(settings);
                        repos.insert(*id, row);
                    }
                    (Some(row), RepoEvent::RepoUpdated { settings }) => {
                        row.set(settings);
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), RepoEvent::RepoArchived) => {
                        row.archived = true;
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), RepoEvent::RepoAdded { .. }) => row.version = version,
                    (None, _) => {
                        tracing::warn!(stream = %recorded.stream_id, "repo event before RepoAdded; ignored")
                    }
                }
            }
            let changed: Vec<RepoRow> = ids.iter().filter_map(|id| repos.remove(id)).collect();
            rows::upsert(conn, "repos", &["id"], &changed).await
        })
    }
}
