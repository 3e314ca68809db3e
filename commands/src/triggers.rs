//! Commands on webhooks and schedules.

use monkeyci_crypto::Token;
use monkeyci_domain::cron::Cron;
use monkeyci_domain::triggers::{Schedule, Webhook};
use monkeyci_domain::{RepoId, ScheduleId, WebhookId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::CommandContext;
use crate::error::CommandError;
use crate::handler::{parse, CommandHandler, Decision};
use crate::keys::{KeyError, KeyStore};

/// The field name a webhook's secret is sealed under.
pub const WEBHOOK_SECRET: &str = "secret";

/// A secret given in a command. It is left out of the command's fingerprint (so an idempotent
/// retry with a fresh random secret is still the same command) and never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretText(monkeyci_crypto::Zeroizing<String>);

impl SecretText {
    pub fn new(text: String) -> Self {
        Self(monkeyci_crypto::Zeroizing::new(text))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Creates a webhook for a repo; without a secret a random one is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWebhook {
    pub repo_id: RepoId,
    /// `github`, `gitlab`, `bitbucket`, `gitea` or `forgejo`.
    pub host: String,
    #[serde(skip)]
    pub secret: Option<SecretText>,
}

/// Replaces a webhook's secret; without one a random one is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateWebhookSecret {
    pub webhook_id: WebhookId,
    #[serde(skip)]
    pub secret: Option<SecretText>,
}

/// Deletes a webhook and destroys its data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteWebhook {
    pub webhook_id: WebhookId,
}

/// Creates a cron schedule for a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSchedule {
    pub repo_id: RepoId,
    pub cron: String,
}

/// Changes a schedule's cron expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSchedule {
    pub schedule_id: ScheduleId,
    pub cron: String,
}

/// Deletes a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSchedule {
    pub schedule_id: ScheduleId,
}

/// The given secret, or a new random one (256 bits, base64url).
fn secret_or_random(secret: Option<&SecretText>) -> Result<SecretText, CommandError> {
    match secret {
        Some(secret) => Ok(secret.clone()),
        None => {
            let (token, _) = Token::generate("whsec_").map_err(|e| CommandError::Keys(e.into()))?;
            Ok(SecretText::new(token.expose().to_owned()))
        }
    }
}

impl CommandHandler {
    pub(crate) fn key_store(&self) -> Result<&KeyStore, CommandError> {
        self.keys().ok_or(CommandError::Keys(KeyError::NoMasterKey))
    }

    /// Creates a webhook; its secret is sealed with a data key of its own.
    pub async fn create_webhook(&self, ctx: &CommandContext, input: CreateWebhook) -> Result<WebhookId, CommandError> {
        let keys = self.key_store()?;
        let id = WebhookId::from_uuid(Uuid::now_v7());
        let secret = secret_or_random(input.secret.as_ref())?;
        let (repo_id, host, secret) = (input.repo_id, input.host.trim().to_ascii_lowercase(), &secret);
        let host = &host;
        let created = self
            .execute(ctx, "createWebhook", &input, move || {
                Box::pin(async move {
                    let (repo, org) = self.load_repo_and_org(repo_id).await?;
                    let webhook = self.load::<Webhook>(id).await?;
                    let key = keys.get_or_create(id.as_uuid()).await?;
                    let sealed = KeyStore::seal(&key, id.as_uuid(), WEBHOOK_SECRET, secret.expose())?;
                    let events = webhook
                        .state
                        .create(id, (repo_id, &repo.state), &org.state, host, sealed)?;
                    Ok(Decision::new(id, repo.state.org_id).with(&webhook, events))
                })
            })
            .await;
        crate::secrets::forget_key_if_refused(keys, id.as_uuid(), created).await
    }

    /// Replaces a webhook's secret.
    pub async fn rotate_webhook_secret(
        &self,
        ctx: &CommandContext,
        input: RotateWebhookSecret,
    ) -> Result<WebhookId, CommandError> {
        let keys = self.key_store()?;
        let id = input.webhook_id;
        let secret = secret_or_random(input.secret.as_ref())?;
        let secret = &secret;
        self.execute(ctx, "rotateWebhookSecret", &input, move || {
            Box::pin(async move {
                let webhook = self.load::<Webhook>(id).await?;
                let (org_id, _) = webhook.state.existing(id)?;
                let key = keys.get(id.as_uuid()).await?;
                let sealed = KeyStore::seal(&key, id.as_uuid(), WEBHOOK_SECRET, secret.expose())?;
                let events = webhook.state.rotate_secret(id, sealed)?;
                Ok(Decision::new(id, Some(org_id)).with(&webhook, events))
            })
        })
        .await
    }

    /// Deletes a webhook, then destroys its data key: the secret is unreadable everywhere.
    pub async fn delete_webhook(&self, ctx: &CommandContext, input: DeleteWebhook) -> Result<WebhookId, CommandError> {
        let id = input.webhook_id;
        let deleted = self
            .execute(ctx, "deleteWebhook", &input, move || {
                Box::pin(async move {
                    let webhook = self.load::<Webhook>(id).await?;
                    let (org_id, _) = webhook.state.existing(id)?;
                    let events = webhook.state.delete(id)?;
                    Ok(Decision::new(id, Some(org_id)).with(&webhook, events))
                })
            })
            .await?;
        if let Some(keys) = self.keys() {
            keys.destroy(id.as_uuid()).await?;
        }
        Ok(deleted)
    }

    /// Creates a cron schedule.
    pub async fn create_schedule(
        &self,
        ctx: &CommandContext,
        input: CreateSchedule,
    ) -> Result<ScheduleId, CommandError> {
        let cron = &parse(Cron::parse(&input.cron))?;
        let id = ScheduleId::from_uuid(Uuid::now_v7());
        let repo_id = input.repo_id;
        self.execute(ctx, "createSchedule", &input, move || {
            Box::pin(async move {
                let (repo, org) = self.load_repo_and_org(repo_id).await?;
                let schedule = self.load::<Schedule>(id).await?;
                let events = schedule
                    .state
                    .create(id, (repo_id, &repo.state), &org.state, cron.clone())?;
                Ok(Decision::new(id, repo.state.org_id).with(&schedule, events))
            })
        })
        .await
    }

    /// Changes a schedule's cron expression.
    pub async fn change_schedule(
        &self,
        ctx: &CommandContext,
        input: ChangeSchedule,
    ) -> Result<ScheduleId, CommandError> {
        let cron = &parse(Cron::parse(&input.cron))?;
        let id = input.schedule_id;
        self.execute(ctx, "changeSchedule", &input, move || {
            Box::pin(async move {
                let schedule = self.load::<Schedule>(id).await?;
                let (org_id, _) = schedule.state.existing(id)?;
                let events = schedule.state.change(id, cron.clone())?;
                Ok(Decision::new(id, Some(org_id)).with(&schedule, events))
            })
        })
        .await
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(
        &self,
        ctx: &CommandContext,
        input: DeleteSchedule,
    ) -> Result<ScheduleId, CommandError> {
        let id = input.schedule_id;
        self.execute(ctx, "deleteSchedule", &input, move || {
            Box::pin(async move {
                let schedule = self.load::<Schedule>(id).await?;
                let (org_id, _) = schedule.state.existing(id)?;
                let events = schedule.state.delete(id)?;
                Ok(Decision::new(id, Some(org_id)).with(&schedule, events))
            })
        })
        .await
    }
}
