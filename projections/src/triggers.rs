//! Webhooks and schedules (tables `webhooks` and `schedules`): what starts builds by itself.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use monkeyci_crypto::Sealed;
use monkeyci_domain::triggers::{Schedule, ScheduleEvent, Webhook, WebhookEvent};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;
use crate::Projection;

/// A webhook; its secret only as ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub repo_id: Uuid,
    pub host: String,
    pub secret: Sealed,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub repo_id: Uuid,
    pub cron: String,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    /// When the cron expression was last set; earlier ticks are never fired.
    pub since: DateTime<Utc>,
    pub version: i64,
}

/// Projects webhook and schedule events.
#[derive(Debug, Clone, Copy, Default)]
pub struct TriggersProjection;

impl Projection for TriggersProjection {
    fn name(&self) -> &'static str {
        "triggers"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["webhooks", "schedules"]
    }

    fn categories(&self) -> &'static [&'static str] {
        &[Webhook::CATEGORY, Schedule::CATEGORY]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            apply_webhooks(conn, events).await?;
            apply_schedules(conn, events).await
        })
    }
}

rows::versioned!(WebhookRow, ScheduleRow);

async fn apply_webhooks(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let create = |id, recorded: &RecordedEvent, event: &WebhookEvent| match event {
        WebhookEvent::WebhookCreated {
            org_id,
            repo_id,
            host,
            secret,
        } => Some(WebhookRow {
            id,
            org_id: org_id.as_uuid(),
            repo_id: repo_id.as_uuid(),
            host: host.clone(),
            secret: secret.clone(),
            deleted: false,
            created_at: recorded.recorded_at,
            rotated_at: None,
            version: 0,
        }),
        _ => None,
    };
    let change = |row: &mut WebhookRow, recorded: &RecordedEvent, event: &WebhookEvent| match event {
        WebhookEvent::WebhookSecretRotated { secret } => {
            row.secret = secret.clone();
            row.rotated_at = Some(recorded.recorded_at);
        }
        WebhookEvent::WebhookDeleted => row.deleted = true,
        WebhookEvent::WebhookCreated { .. } => {}
    };
    rows::apply_versioned::<Webhook, _>(conn, events, "webhooks", create, change).await
}

async fn apply_schedules(conn: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let create = |id, recorded: &RecordedEvent, event: &ScheduleEvent| match event {
        ScheduleEvent::ScheduleCreated { org_id, repo_id, cron } => Some(ScheduleRow {
            id,
            org_id: org_id.as_uuid(),
            repo_id: repo_id.as_uuid(),
            cron: cron.to_string(),
            deleted: false,
            created_at: recorded.recorded_at,
            since: recorded.recorded_at,
            version: 0,
        }),
        _ => None,
    };
    let change = |row: &mut ScheduleRow, recorded: &RecordedEvent, event: &ScheduleEvent| match event {
        ScheduleEvent::ScheduleChanged { cron } => {
            row.cron = cron.to_string();
            row.since = recorded.recorded_at;
        }
        ScheduleEvent::ScheduleDeleted => row.deleted = true,
        ScheduleEvent::ScheduleCreated { .. } => {}
    };
    rows::apply_versioned::<Schedule, _>(conn, events, "schedules", create, change).await
}
