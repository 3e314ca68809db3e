//! `monkeyci_webhook`: a repo's webhook, with its secret and the URL the git host posts to.
//!
//! The API shows a webhook's secret only when it is made or replaced, so the state keeps it from
//! then on. A new `secret` in the configuration replaces the secret in place (a rotation); when
//! the secret was rotated outside Terraform (seen as a new `rotated_at`) the state no longer
//! knows it, and the next apply rotates it again (to the configured secret, or a new random
//! one) so that it does. An imported webhook's secret is unknown to the state until the
//! configuration sets one.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{new_idempotency_key, ApiError, Client};
use crate::managed::{answered_id, changed, known, mutate, node, schema, secret, string, text, Managed, Parent, Text};

/// The attributes of `monkeyci_webhook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WebhookState {
    pub id: Text,
    pub repo_id: Text,
    pub host: Text,
    pub secret: Text,
    pub path: Text,
    pub url: Text,
    pub rotated_at: Text,
}

/// The git hosts the API knows (its `GitHost` enum, in lower case).
const HOSTS: [&str; 5] = ["github", "gitlab", "bitbucket", "gitea", "forgejo"];

/// The state's secret of a webhook whose secret was replaced outside Terraform.
const STALE: &str = "";

/// The shortest secret the API accepts.
const MIN_SECRET_CHARS: usize = 16;

/// A webhook as the API shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiWebhook {
    id: String,
    host: Option<String>,
    path: String,
    rotated_at: Option<String>,
    repo: Option<Parent>,
}

/// The answer of `createWebhook` and `rotateWebhookSecret`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShownSecret {
    webhook_id: String,
    secret: String,
    path: String,
}

const SHOWN_SECRET: &str = "{ webhookId secret path }";

fn shown(answer: Json) -> Result<ShownSecret, ApiError> {
    serde_json::from_value(answer).map_err(|e| ApiError::Transport(format!("unexpected answer from the API: {e}")))
}

async fn rotated_at(client: &Client, id: &str) -> Result<Text, ApiError> {
    let webhook: Option<ApiWebhook> = node(client, id, "Webhook", "id path rotatedAt").await?;
    Ok(webhook.and_then(|w| w.rotated_at).map_or(Value::Null, known))
}

/// The resource `monkeyci_webhook`.
#[derive(Debug)]
pub struct Webhook;

#[async_trait]
impl Managed for Webhook {
    type State = WebhookState;
    const WHAT: &'static str = "webhook";

    fn schema() -> Schema {
        schema(
            "A repo's webhook: pushes the git host posts to `url`, signed with `secret`, trigger builds.",
            map! {
                "id" => string("The webhook's global id.", AttributeConstraint::Computed),
                "repo_id" => string("The repo it triggers. Changing it replaces the webhook.", AttributeConstraint::Required),
                "host" => string(
                    "The git host that sends the deliveries: github, gitlab, bitbucket, gitea or forgejo. Changing it replaces the webhook.",
                    AttributeConstraint::Required,
                ),
                "secret" => secret(
                    "The secret the host signs deliveries with, at least 16 characters; a random one when omitted. Changing it rotates the secret in place.",
                    AttributeConstraint::OptionalComputed,
                ),
                "path" => string("Where the host posts deliveries, below the server's address.", AttributeConstraint::Computed),
                "url" => string("The payload URL to configure at the host: the provider's endpoint and `path`.", AttributeConstraint::Computed),
                "rotated_at" => string("When the secret was last replaced (RFC 3339), if ever.", AttributeConstraint::Computed),
            },
        )
    }

    fn id(state: &WebhookState) -> &Text {
        &state.id
    }

    fn validate(config: &WebhookState, diags: &mut Diagnostics) {
        if let Some(host) = text(&config.host).filter(|h| !HOSTS.contains(h)) {
            diags.error(
                "Unknown git host",
                format!("{host:?} is not one of {}.", HOSTS.join(", ")),
                AttributePath::new("host"),
            );
        }
        if let Some(secret) = text(&config.secret).filter(|s| s.chars().count() < MIN_SECRET_CHARS) {
            diags.error(
                "Webhook secret too short",
                format!(
                    "A webhook secret needs at least {MIN_SECRET_CHARS} characters; this one has {}.",
                    secret.chars().count()
                ),
                AttributePath::new("secret"),
            );
        }
    }

    fn imported(id: String) -> WebhookState {
        WebhookState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: WebhookState) -> WebhookState {
        proposed.id = Value::Unknown;
        proposed.path = Value::Unknown;
        proposed.url = Value::Unknown;
        proposed.rotated_at = Value::Null;
        if proposed.secret.is_null() {
            proposed.secret = Value::Unknown;
        }
        proposed
    }

    fn replaced_by(prior: &WebhookState, proposed: &WebhookState) -> Vec<AttributePath> {
        changed(&[
            ("repo_id", prior.repo_id != proposed.repo_id),
            ("host", prior.host != proposed.host),
        ])
    }

    fn plan_update(prior: &WebhookState, mut proposed: WebhookState) -> WebhookState {
        // The secret was rotated outside Terraform and none is configured: a new random one,
        // which the state then knows.
        if text(&proposed.secret) == Some(STALE) {
            proposed.secret = Value::Unknown;
        }
        if proposed.secret != prior.secret {
            proposed.rotated_at = Value::Unknown;
        }
        proposed
    }

    async fn read(client: &Client, prior: &WebhookState) -> Result<Option<WebhookState>, ApiError> {
        let fields = "id host path rotatedAt repo { id }";
        let Some(webhook) = node::<ApiWebhook>(client, text(&prior.id).unwrap_or_default(), "Webhook", fields).await?
        else {
            return Ok(None);
        };
        let rotated_at = webhook.rotated_at.map_or(Value::Null, known);
        // A rotation this state did not see: the secret it holds is no longer the webhook's, and
        // "" (shorter than any secret) says so. An imported webhook has no secret to go stale.
        let secret = if prior.secret.is_null() || rotated_at == prior.rotated_at {
            prior.secret.clone()
        } else {
            known(STALE)
        };
        Ok(Some(WebhookState {
            id: known(webhook.id),
            repo_id: webhook.repo.map_or(Value::Null, |r| known(r.id)),
            host: webhook.host.map_or(Value::Null, |h| known(h.to_lowercase())),
            secret,
            url: known(format!("{}{}", client.endpoint(), webhook.path)),
            path: known(webhook.path),
            rotated_at,
        }))
    }

    async fn create(client: &Client, planned: WebhookState, key: &str) -> Result<WebhookState, ApiError> {
        let input = json!({
            "repoId": text(&planned.repo_id),
            "host": text(&planned.host).unwrap_or_default().to_uppercase(),
            "secret": text(&planned.secret),
            "idempotencyKey": key,
        });
        let made = shown(mutate(client, "createWebhook", "CreateWebhookInput", SHOWN_SECRET, input).await?)?;
        Ok(WebhookState {
            id: known(made.webhook_id),
            secret: known(made.secret),
            url: known(format!("{}{}", client.endpoint(), made.path)),
            path: known(made.path),
            rotated_at: Value::Null,
            ..planned
        })
    }

    async fn update(client: &Client, prior: &WebhookState, planned: WebhookState) -> Result<WebhookState, ApiError> {
        if planned.secret == prior.secret {
            return Ok(planned);
        }
        let id = text(&prior.id).unwrap_or_default().to_owned();
        let input = json!({
            "id": id,
            "secret": text(&planned.secret),
            "idempotencyKey": new_idempotency_key(),
        });
        let rotated = shown(
            mutate(
                client,
                "rotateWebhookSecret",
                "RotateWebhookSecretInput",
                SHOWN_SECRET,
                input,
            )
            .await?,
        )?;
        Ok(WebhookState {
            secret: known(rotated.secret),
            rotated_at: rotated_at(client, &id).await?,
            ..planned
        })
    }

    async fn delete(client: &Client, state: &WebhookState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        answered_id(&mutate(client, "deleteWebhook", "DeleteInput", "", input).await?)?;
        Ok(())
    }
}
