//! Webhooks and schedules: their types on `Repo` and the mutations that manage them.
//!
//! Managing them needs `member` in the repo's org, like changing the repo. A webhook's secret is
//! in the answer of `createWebhook` and `rotateWebhookSecret` and nowhere else in the API.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use monkeyci_commands::{
    ChangeSchedule, CreateSchedule, CreateWebhook, DeleteSchedule, DeleteWebhook, RotateWebhookSecret, SecretText,
};
use monkeyci_domain::access::Role;
use monkeyci_domain::cron::Cron;
use monkeyci_domain::{RepoId, ScheduleId, WebhookId};
use monkeyci_projections::queries::{self, Owned};
use monkeyci_projections::{ScheduleRow, WebhookRow};

use super::mutation::{allow, context, finish, Target};
use super::types::Repo;
use super::{api, projection_error};
use crate::errors::{self, Code};
use crate::ids::{self, Kind};

/// The git hosts that send webhooks.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHost {
    Github,
    Gitlab,
    Bitbucket,
    Gitea,
    Forgejo,
}

impl GitHost {
    fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::Github, Self::Gitlab, Self::Bitbucket, Self::Gitea, Self::Forgejo]
            .into_iter()
            .find(|h| h.as_str() == raw)
    }
}

/// The path a host posts a webhook's deliveries to, below the server's address.
fn delivery_path(host: &str, id: uuid::Uuid) -> String {
    format!("/webhooks/{host}/{id}")
}

/// A repo's webhook (its secret is never shown here).
#[derive(Debug)]
pub struct Webhook(pub WebhookRow);

#[Object]
impl Webhook {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        ids::encode(Kind::Webhook, self.0.id)
    }
    /// The host that sends the deliveries.
    async fn host(&self) -> Option<GitHost> {
        GitHost::parse(&self.0.host)
    }
    /// Where the host posts deliveries, below this server's address (`https://ci.example.com`
    /// + path is the payload URL to configure at the host).
    async fn path(&self) -> String {
        delivery_path(&self.0.host, self.0.id)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the secret was last replaced.
    async fn rotated_at(&self) -> Option<DateTime<Utc>> {
        self.0.rotated_at
    }
    /// The repo whose builds the webhook triggers.
    async fn repo(&self, ctx: &Context<'_>) -> Result<Option<Repo>> {
        repo_row(ctx, self.0.repo_id).await
    }
}

/// A repo's cron schedule.
#[derive(Debug)]
pub struct Schedule(pub ScheduleRow);

#[Object]
impl Schedule {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        ids::encode(Kind::Schedule, self.0.id)
    }
    /// Five fields in UTC (minute hour day-of-month month day-of-week), or a macro like `@daily`.
    async fn cron(&self) -> &str {
        &self.0.cron
    }
    /// When it next triggers a build of the repo's main branch.
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        Cron::parse(&self.0.cron).ok()?.next_after(Utc::now())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The repo whose main branch the schedule builds.
    async fn repo(&self, ctx: &Context<'_>) -> Result<Option<Repo>> {
        repo_row(ctx, self.0.repo_id).await
    }
}

/// The repo of a webhook or schedule (archived or not).
async fn repo_row(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Option<Repo>> {
    let row = queries::repo(&api(ctx).read, id).await.map_err(projection_error)?;
    Ok(row.map(Repo))
}

/// A repo's webhooks and schedules (fields of `Repo`).
pub(crate) async fn webhooks_of(ctx: &Context<'_>, repo: uuid::Uuid) -> Result<Vec<Webhook>> {
    let rows = queries::webhooks_of_repo(&api(ctx).read, repo)
        .await
        .map_err(projection_error)?;
    Ok(rows.into_iter().map(Webhook).collect())
}

pub(crate) async fn schedules_of(ctx: &Context<'_>, repo: uuid::Uuid) -> Result<Vec<Schedule>> {
    let rows = queries::schedules_of_repo(&api(ctx).read, repo)
        .await
        .map_err(projection_error)?;
    Ok(rows.into_iter().map(Schedule).collect())
}

#[derive(InputObject)]
pub struct CreateWebhookInput {
    pub repo_id: ID,
    pub host: GitHost,
    /// The secret the host signs with; without one, a random secret is made. At least 16
    /// characters.
    #[graphql(secret)]
    pub secret: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    pub id: ID,
    /// The new secret; without one, a random secret is made.
    #[graphql(secret)]
    pub secret: Option<String>,
    pub idempotency_key: Option<String>,
}

impl std::fmt::Debug for CreateWebhookInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CreateWebhookInput {{ repo_id: {:?}, host: {:?}, secret: *** }}",
            self.repo_id, self.host
        )
    }
}

impl std::fmt::Debug for RotateWebhookSecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RotateWebhookSecretInput {{ id: {:?}, secret: *** }}", self.id)
    }
}

#[derive(InputObject, Debug)]
pub struct DeleteInput {
    pub id: ID,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct CreateScheduleInput {
    pub repo_id: ID,
    /// Five fields in UTC (minute hour day-of-month month day-of-week), or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`.
    pub cron: String,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct UpdateScheduleInput {
    pub id: ID,
    pub cron: String,
    pub idempotency_key: Option<String>,
}

/// A webhook's secret, shown once: configure it at the host together with the path.
#[derive(SimpleObject, Debug)]
pub struct WebhookSecret {
    pub webhook_id: ID,
    pub secret: String,
    /// Where the host posts deliveries, below this server's address.
    pub path: String,
}

/// The smallest secret accepted from a caller (random ones are 43 characters).
const MIN_SECRET_CHARS: usize = 16;

fn secret_input(secret: Option<String>) -> Result<Option<SecretText>> {
    match secret {
        Some(s) if s.chars().count() < MIN_SECRET_CHARS => Err(errors::bad_input(format!(
            "a webhook secret needs at least {MIN_SECRET_CHARS} characters"
        ))),
        Some(s) => Ok(Some(SecretText::new(s))),
        None => Ok(None),
    }
}

/// Decrypts the stored secret of webhook `id` for the answer (also on an idempotent retry).
async fn shown_secret(ctx: &Context<'_>, id: uuid::Uuid) -> Result<WebhookSecret> {
    let api = api(ctx);
    api.consistency
        .read_your_writes()
        .await
        .map_err(|e| errors::client(Code::Unavailable, e.to_string()))?;
    let row = queries::webhook(&api.read, id)
        .await
        .map_err(projection_error)?
        .filter(|w| !w.deleted)
        .ok_or_else(|| errors::not_found("webhook"))?;
    let keys = api
        .commands
        .keys()
        .ok_or_else(|| errors::internal(&monkeyci_commands::KeyError::NoMasterKey))?;
    let secret = keys
        .open(id, monkeyci_commands::WEBHOOK_SECRET, &row.secret)
        .await
        .map_err(|e| errors::internal(&e))?;
    Ok(WebhookSecret {
        webhook_id: ids::encode(Kind::Webhook, id),
        secret: secret.to_string(),
        path: delivery_path(&row.host, id),
    })
}

/// Mutations of webhooks and schedules.
#[derive(Debug, Default)]
pub struct TriggerMutation;

#[Object]
impl TriggerMutation {
    /// Creates a webhook for a repo; the answer holds its secret (shown only here and on an
    /// idempotent retry) and the path the host posts to. A push to the repo then triggers a build.
    async fn create_webhook(&self, ctx: &Context<'_>, input: CreateWebhookInput) -> Result<WebhookSecret> {
        let repo_id = ids::decode_as(&input.repo_id, Kind::Repo)?;
        allow(ctx, Target::Repo(repo_id), Role::Member).await?;
        let command = CreateWebhook {
            repo_id: RepoId::from_uuid(repo_id),
            host: input.host.as_str().to_owned(),
            secret: secret_input(input.secret)?,
        };
        let result = api(ctx)
            .commands
            .create_webhook(&context(ctx, input.idempotency_key)?, command)
            .await;
        let id = finish(ctx, "createWebhook", result, |id| {
            ids::encode(Kind::Webhook, id.as_uuid())
        })?;
        shown_secret(ctx, ids::decode_as(&id, Kind::Webhook)?).await
    }

    /// Replaces a webhook's secret; deliveries signed with the old one are refused from now on.
    async fn rotate_webhook_secret(&self, ctx: &Context<'_>, input: RotateWebhookSecretInput) -> Result<WebhookSecret> {
        let id = ids::decode_as(&input.id, Kind::Webhook)?;
        let repo = super::owner_of(ctx, Owned::Webhook, id, "webhook").await?;
        allow(ctx, Target::Repo(repo), Role::Member).await?;
        let command = RotateWebhookSecret {
            webhook_id: WebhookId::from_uuid(id),
            secret: secret_input(input.secret)?,
        };
        let result = api(ctx)
            .commands
            .rotate_webhook_secret(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "rotateWebhookSecret", result, |id| {
            ids::encode(Kind::Webhook, id.as_uuid())
        })?;
        shown_secret(ctx, id).await
    }

    /// Deletes a webhook and destroys its secret; its deliveries then get 404.
    async fn delete_webhook(&self, ctx: &Context<'_>, input: DeleteInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::Webhook)?;
        let repo = super::owner_of(ctx, Owned::Webhook, id, "webhook").await?;
        allow(ctx, Target::Repo(repo), Role::Member).await?;
        let command = DeleteWebhook {
            webhook_id: WebhookId::from_uuid(id),
        };
        let result = api(ctx)
            .commands
            .delete_webhook(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "deleteWebhook", result, |id| {
            ids::encode(Kind::Webhook, id.as_uuid())
        })
    }

    /// Creates a cron schedule that triggers builds of the repo's main branch.
    async fn create_schedule(&self, ctx: &Context<'_>, input: CreateScheduleInput) -> Result<ID> {
        let repo_id = ids::decode_as(&input.repo_id, Kind::Repo)?;
        allow(ctx, Target::Repo(repo_id), Role::Member).await?;
        let command = CreateSchedule {
            repo_id: RepoId::from_uuid(repo_id),
            cron: input.cron,
        };
        let result = api(ctx)
            .commands
            .create_schedule(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "createSchedule", result, |id| {
            ids::encode(Kind::Schedule, id.as_uuid())
        })
    }

    /// Changes a schedule's cron expression.
    async fn update_schedule(&self, ctx: &Context<'_>, input: UpdateScheduleInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::Schedule)?;
        let repo = super::owner_of(ctx, Owned::Schedule, id, "schedule").await?;
        allow(ctx, Target::Repo(repo), Role::Member).await?;
        let command = ChangeSchedule {
            schedule_id: ScheduleId::from_uuid(id),
            cron: input.cron,
        };
        let result = api(ctx)
            .commands
            .change_schedule(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "updateSchedule", result, |id| {
            ids::encode(Kind::Schedule, id.as_uuid())
        })
    }

    /// Deletes a schedule.
    async fn delete_schedule(&self, ctx: &Context<'_>, input: DeleteInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::Schedule)?;
        let repo = super::owner_of(ctx, Owned::Schedule, id, "schedule").await?;
        allow(ctx, Target::Repo(repo), Role::Member).await?;
        let command = DeleteSchedule {
            schedule_id: ScheduleId::from_uuid(id),
        };
        let result = api(ctx)
            .commands
            .delete_schedule(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "deleteSchedule", result, |id| {
            ids::encode(Kind::Schedule, id.as_uuid())
        })
    }
}
