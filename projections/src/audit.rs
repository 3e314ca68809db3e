//! The audit index: the events of each org, in log order (table `audit_entries`).
//!
//! Every event a command appends on behalf of an org carries the org in its metadata; this
//! projection files each such event under its org, so that an org's audit log is one index range
//! in log order, however large the whole log grows.

use futures::future::BoxFuture;
use monkeyci_eventstore::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::Projection;

/// Files every event that names an org under that org.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditProjection;

impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_entries"]
    }

    fn categories(&self) -> &'static [&'static str] {
        crate::EVERY_CATEGORY
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut orgs: Vec<Uuid> = Vec::with_capacity(events.len());
            let mut txs: Vec<i64> = Vec::with_capacity(events.len());
            let mut positions: Vec<i64> = Vec::with_capacity(events.len());
            for event in events {
                if let Some(org) = event.metadata.org_id {
                    orgs.push(org);
                    txs.push(event.cursor.tx);
                    positions.push(event.cursor.position);
                }
            }
            if orgs.is_empty() {
                return Ok(());
            }
            // A batch applied again after a crash finds its entries already there.
            sqlx::query(
                "INSERT INTO audit_entries (org_id, tx, position) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING",
            )
            .bind(&orgs)
            .bind(&txs)
            .bind(&positions)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}
