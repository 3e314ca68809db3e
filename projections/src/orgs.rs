use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use monkeyci_domain::org::{Org, OrgEvent};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;
use crate::Projection;

/// One org as queries see it (table `orgs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRow {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The version of the org's stream this row reflects.
    pub version: i64,
    /// Members by user id, with their role (`owner`, `member`, `viewer`).
    #[serde(default)]
    pub members: BTreeMap<Uuid, String>,
}

/// Projects org events into `orgs`, and users and tokens into `users` and `api_tokens`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrgsProjection;

impl Projection for OrgsProjection {
    fn name(&self) -> &'static str {
        "orgs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["orgs", "users", "api_tokens"]
    }

    fn categories(&self) -> &'static [&'static str] {
        &[
            Org::CATEGORY,
            monkeyci_domain::access::User::CATEGORY,
            monkeyci_domain::access::ApiToken::CATEGORY,
        ]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            crate::access::apply(conn, events).await?;
            let events = rows::decode_category::<OrgEvent>(events, Org::CATEGORY)?;
            let ids = rows::distinct_ids(&events);
            let mut orgs = rows::index(rows::load::<OrgRow>(conn, "orgs", "id", &ids).await?, |r| r.id);
            for (id, recorded, event) in &events {
                let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
                let at = recorded.recorded_at;
                match (orgs.get_mut(id), event) {
                    (Some(row), _) if row.version >= version => {}
                    (None, OrgEvent::OrgCreated { name, slug }) => {
                        orgs.insert(
                            *id,
                            OrgRow {
                                id: *id,
                                name: name.to_string(),
                                slug: slug.to_string(),
                                deleted: false,
                                created_at: at,
                                updated_at: at,
                                version,
                                members: BTreeMap::new(),
                            },
                        );
                    }
                    (Some(row), OrgEvent::OrgRenamed { name }) => {
                        row.name = name.to_string();
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), OrgEvent::OrgDeleted) => {
                        row.deleted = true;
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), OrgEvent::MemberAdded { user_id, role })
                    | (Some(row), OrgEvent::MemberRoleChanged { user_id, role }) => {
                        row.members.insert(user_id.as_uuid(), role.as_str().into());
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), OrgEvent::MemberRemoved { user_id }) => {
                        row.members.remove(&user_id.as_uuid());
                        row.updated_at = at;
                        row.version = version;
                    }
                    (Some(row), OrgEvent::OrgCreated { .. }) => row.version = version,
                    (None, _) => {
                        tracing::warn!(stream = %recorded.stream_id, "org event before OrgCreated; ignored")
                    }
                }
            }
            let changed: Vec<OrgRow> = ids.iter().filter_map(|id| orgs.remove(id)).collect();
            rows::upsert(conn, "orgs", &["id"], &changed).await
        })
    }
}
