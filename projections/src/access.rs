use chrono::{DateTime, Utc};
use monkeyci_domain::access::{ApiToken, TokenEvent, TokenSubject, User, UserEvent};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;

/// A user (table `users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

/// An API token (table `api_tokens`): whom it acts for, and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub hash: String,
    /// `user` or `org`.
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
    /// For org tokens: `owner`, `member` or `viewer`.
    pub role: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

/// Applies user and token events to `users` and `api_tokens` (part of the `orgs` projection,
/// which owns everything about who may do what).
pub(crate) async fn apply(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    {
        {
            let users = rows::decode_category::<UserEvent>(events, User::CATEGORY)?;
            let mut new_users = Vec::new();
            for (id, recorded, event) in &users {
                let UserEvent::UserCreated { name } = event;
                new_users.push(UserRow {
                    id: *id,
                    name: name.to_string(),
                    created_at: recorded.recorded_at,
                    version: i64::try_from(recorded.stream_version).unwrap_or(i64::MAX),
                });
            }
            rows::upsert(conn, "users", &["id"], &new_users).await?;

            let tokens = rows::decode_category::<TokenEvent>(events, ApiToken::CATEGORY)?;
            let ids = rows::distinct_ids(&tokens);
            let mut rows_by_id = rows::index(rows::load::<TokenRow>(conn, "api_tokens", "id", &ids).await?, |r| r.id);
            for (id, recorded, event) in &tokens {
                let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
                match (rows_by_id.get_mut(id), event) {
                    (Some(row), _) if row.version >= version => {}
                    (
                        None,
                        TokenEvent::TokenCreated {
                            subject,
                            name,
                            hash,
                            expires_at,
                        },
                    ) => {
                        let (kind, user_id, org_id, role) = match subject {
                            TokenSubject::User { user_id } => ("user", Some(user_id.as_uuid()), None, None),
                            TokenSubject::Org { org_id, role } => {
                                ("org", None, Some(org_id.as_uuid()), Some(role.as_str().to_owned()))
                            }
                        };
                        rows_by_id.insert(
                            *id,
                            TokenRow {
                                id: *id,
                                name: name.to_string(),
                                hash: hash.clone(),
                                kind: kind.into(),
                                user_id,
                                org_id,
                                role,
                                expires_at: *expires_at,
                                revoked: false,
                                created_at: recorded.recorded_at,
                                version,
                            },
                        );
                    }
                    (Some(row), TokenEvent::TokenRevoked) => {
                        row.revoked = true;
                        row.version = version;
                    }
                    (Some(row), TokenEvent::TokenCreated { .. }) => row.version = version,
                    (None, TokenEvent::TokenRevoked) => {
                        tracing::warn!(stream = %recorded.stream_id, "token revoked before it was created; ignored")
                    }
                }
            }
            let changed: Vec<TokenRow> = ids.iter().filter_map(|id| rows_by_id.remove(id)).collect();
            rows::upsert(conn, "api_tokens", &["id"], &changed).await
        }
    }
}
