//! `monkeyci_schedule`: a cron schedule that builds a repo's main branch.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath};

use crate::client::{new_idempotency_key, ApiError, Client};
use crate::managed::{answered_id, changed, known, mutate, node, schema, string, text, Managed, Parent, Text};

/// The attributes of `monkeyci_schedule`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleState {
    pub id: Text,
    pub repo_id: Text,
    pub cron: Text,
}

#[derive(Debug, Deserialize)]
struct ApiSchedule {
    id: String,
    cron: String,
    repo: Option<Parent>,
}

/// The resource `monkeyci_schedule`.
#[derive(Debug)]
pub struct Schedule;

#[async_trait]
impl Managed for Schedule {
    type State = ScheduleState;
    const WHAT: &'static str = "schedule";

    fn schema() -> Schema {
        schema(
            "A cron schedule that triggers builds of a repo's main branch.",
            map! {
                "id" => string("The schedule's global id.", AttributeConstraint::Computed),
                "repo_id" => string("The repo it builds. Changing it replaces the schedule.", AttributeConstraint::Required),
                "cron" => string(
                    "Five fields in UTC (minute hour day-of-month month day-of-week), or @hourly, @daily, @weekly, @monthly, @yearly. Changed in place.",
                    AttributeConstraint::Required,
                ),
            },
        )
    }

    fn id(state: &ScheduleState) -> &Text {
        &state.id
    }

    fn imported(id: String) -> ScheduleState {
        ScheduleState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: ScheduleState) -> ScheduleState {
        proposed.id = Value::Unknown;
        proposed
    }

    fn replaced_by(prior: &ScheduleState, proposed: &ScheduleState) -> Vec<AttributePath> {
        changed(&[("repo_id", prior.repo_id != proposed.repo_id)])
    }

    async fn read(client: &Client, prior: &ScheduleState) -> Result<Option<ScheduleState>, ApiError> {
        let found: Option<ApiSchedule> = node(
            client,
            text(&prior.id).unwrap_or_default(),
            "Schedule",
            "id cron repo { id }",
        )
        .await?;
        Ok(found.map(|s| ScheduleState {
            id: known(s.id),
            repo_id: s.repo.map_or(Value::Null, |r| known(r.id)),
            cron: known(s.cron),
        }))
    }

    async fn create(client: &Client, planned: ScheduleState, key: &str) -> Result<ScheduleState, ApiError> {
        let input = json!({ "repoId": text(&planned.repo_id), "cron": text(&planned.cron), "idempotencyKey": key });
        let id = answered_id(&mutate(client, "createSchedule", "CreateScheduleInput", "", input).await?)?;
        Ok(ScheduleState {
            id: known(id),
            ..planned
        })
    }

    async fn update(client: &Client, prior: &ScheduleState, planned: ScheduleState) -> Result<ScheduleState, ApiError> {
        let input =
            json!({ "id": text(&prior.id), "cron": text(&planned.cron), "idempotencyKey": new_idempotency_key() });
        mutate(client, "updateSchedule", "UpdateScheduleInput", "", input).await?;
        Ok(planned)
    }

    async fn delete(client: &Client, state: &ScheduleState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        mutate(client, "deleteSchedule", "DeleteInput", "", input).await?;
        Ok(())
    }
}
