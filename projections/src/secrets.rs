//! An org's parameter sets and ssh keys (tables `param_sets` and `ssh_keys`): only ciphertext,
//! parameter names, filters and public keys.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use monkeyci_crypto::Sealed;
use monkeyci_domain::secrets::{LabelFilter, ParamSet, ParamSetEvent, SecretScope, SshKey, SshKeyEvent};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;
use crate::Projection;

/// A parameter set; its values sealed, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSetRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub filter: LabelFilter,
    /// Only for builds of protected refs (the repo's main branch, tags).
    pub protected: bool,
    pub params: BTreeMap<String, Sealed>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// An ssh key; its private key sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub description: String,
    pub filter: LabelFilter,
    /// Only for builds of protected refs (the repo's main branch, tags).
    pub protected: bool,
    pub private_key: Sealed,
    pub public_key: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

/// Projects parameter set and ssh key events.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretsProjection;

impl ParamSetRow {
    /// Which builds the set reaches.
    pub fn scope(&self) -> SecretScope {
        SecretScope {
            filter: self.filter.clone(),
            protected: self.protected,
        }
    }
}

impl SshKeyRow {
    /// Which builds the key reaches.
    pub fn scope(&self) -> SecretScope {
        SecretScope {
            filter: self.filter.clone(),
            protected: self.protected,
        }
    }
}

impl Projection for SecretsProjection {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["param_sets", "ssh_keys"]
    }

    fn categories(&self) -> &'static [&'static str] {
        &[ParamSet::CATEGORY, SshKey::CATEGORY]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            apply_param_sets(conn, events).await?;
            apply_ssh_keys(conn, events).await
        })
    }
}

rows::versioned!(ParamSetRow, SshKeyRow);

async fn apply_param_sets(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let create = |id, recorded: &RecordedEvent, event: &ParamSetEvent| match event {
        ParamSetEvent::ParamSetCreated {
            org_id,
            name,
            filter,
            protected,
            values,
        } => Some(ParamSetRow {
            id,
            org_id: org_id.as_uuid(),
            name: name.to_string(),
            filter: filter.clone(),
            protected: *protected,
            params: values.clone(),
            deleted: false,
            created_at: recorded.recorded_at,
            updated_at: recorded.recorded_at,
            version: 0,
        }),
        _ => None,
    };
    let change = |row: &mut ParamSetRow, recorded: &RecordedEvent, event: &ParamSetEvent| {
        match event {
            ParamSetEvent::ParamSetReplaced {
                name,
                filter,
                protected,
                values,
            } => {
                row.name = name.to_string();
                row.filter = filter.clone();
                row.protected = *protected;
                row.params = values.clone();
            }
            ParamSetEvent::ParamSetDeleted => row.deleted = true,
            ParamSetEvent::ParamSetCreated { .. } => return,
        }
        row.updated_at = recorded.recorded_at;
    };
    rows::apply_versioned::<ParamSet, _>(conn, events, "param_sets", create, change).await
}

async fn apply_ssh_keys(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let create = |id, recorded: &RecordedEvent, event: &SshKeyEvent| match event {
        SshKeyEvent::SshKeyAdded {
            org_id,
            description,
            filter,
            protected,
            private_key,
            public_key,
        } => Some(SshKeyRow {
            id,
            org_id: org_id.as_uuid(),
            description: description.to_string(),
            filter: filter.clone(),
            protected: *protected,
            private_key: private_key.clone(),
            public_key: public_key.clone(),
            deleted: false,
            created_at: recorded.recorded_at,
            version: 0,
        }),
        SshKeyEvent::SshKeyDeleted => None,
    };
    let change = |row: &mut SshKeyRow, _: &RecordedEvent, event: &SshKeyEvent| {
        if let SshKeyEvent::SshKeyDeleted = event {
            row.deleted = true;
        }
    };
    rows::apply_versioned::<SshKey, _>(conn, events, "ssh_keys", create, change).await
}
