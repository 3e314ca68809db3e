//! `monkeyci_api_token`: an org token for automation.
//!
//! The token is shown by the API once, when it is made, and only its hash is stored: the state
//! keeps it from then on (an imported token has none). Any change replaces the token; a token
//! revoked or expired outside Terraform counts as gone and is made again.
//!
//! `createApiToken` takes no idempotency key (an idempotent retry would have to show the same
//! secret again, which is not stored), so a create whose answer is lost is not retried: it may
//! leave an unused token behind, never a second one in the state.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{AttributeConstraint, AttributeType, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath, Diagnostics};

use crate::client::{new_idempotency_key, ApiError, Client};
use crate::managed::{attribute, changed, known, mutate, node, schema, secret, string, text, Managed, Parent, Text};

/// The attributes of `monkeyci_api_token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiTokenState {
    pub id: Text,
    pub org_id: Text,
    pub name: Text,
    pub role: Text,
    pub expires_in_days: Value<i64>,
    pub token: Text,
    pub expires_at: Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiToken {
    id: String,
    name: String,
    role: Option<String>,
    expires_at: String,
    revoked: bool,
    org: Option<Parent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    id: String,
    token: String,
    expires_at: String,
}

const ROLES: [&str; 3] = ["owner", "member", "viewer"];

/// Whether an RFC 3339 time is in the past.
fn passed(time: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(time).is_ok_and(|t| t < chrono::Utc::now())
}

/// The resource `monkeyci_api_token`.
#[derive(Debug)]
pub struct ApiTokenResource;

#[async_trait]
impl Managed for ApiTokenResource {
    type State = ApiTokenState;
    const WHAT: &'static str = "API token";

    fn schema() -> Schema {
        schema(
            "An org token for automation: acts in one org with one role. Any change replaces it; destroying it revokes it.",
            map! {
                    "id" => string("The token's global id.", AttributeConstraint::Computed),
                    "org_id" => string("The org it acts in.", AttributeConstraint::Required),
                    "name" => string("What it is for, e.g. \"deploy\".", AttributeConstraint::Required),
                    "role" => string("Its role in the org: owner, member or viewer.", AttributeConstraint::Required),
                    "expires_in_days" => attribute(AttributeType::Number, "Days until it expires, 1 to 3650; 90 when omitted.", AttributeConstraint::OptionalComputed),
                    "token" => secret("The token, for `Authorization: Bearer`. Known only to the Terraform run that made it (and its state).", AttributeConstraint::Computed),
                    "expires_at" => string("When it expires (RFC 3339).", AttributeConstraint::Computed),
                },
        )
    }

    fn id(state: &ApiTokenState) -> &Text {
        &state.id
    }

    fn validate(config: &ApiTokenState, diags: &mut Diagnostics) {
        if let Some(role) = text(&config.role).filter(|r| !ROLES.contains(r)) {
            diags.error(
                "Unknown role",
                format!("{role:?} is not one of {}.", ROLES.join(", ")),
                AttributePath::new("role"),
            );
        }
        if let Some(days) = config
            .expires_in_days
            .as_ref_option()
            .filter(|d| !(1..=3650).contains(*d))
        {
            diags.error(
                "Expiry out of range",
                format!("`expires_in_days` must be between 1 and 3650, not {days}."),
                AttributePath::new("expires_in_days"),
            );
        }
    }

    fn imported(id: String) -> ApiTokenState {
        ApiTokenState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: ApiTokenState) -> ApiTokenState {
        proposed.id = Value::Unknown;
        proposed.token = Value::Unknown;
        proposed.expires_at = Value::Unknown;
        if proposed.expires_in_days.is_null() {
            proposed.expires_in_days = Value::Value(90);
        }
        proposed
    }

    fn replaced_by(prior: &ApiTokenState, proposed: &ApiTokenState) -> Vec<AttributePath> {
        changed(&[
            ("org_id", prior.org_id != proposed.org_id),
            ("name", prior.name != proposed.name),
            ("role", prior.role != proposed.role),
            // Not shown by the API: an imported token has none to compare with.
            (
                "expires_in_days",
                !prior.expires_in_days.is_null() && prior.expires_in_days != proposed.expires_in_days,
            ),
        ])
    }

    async fn read(client: &Client, prior: &ApiTokenState) -> Result<Option<ApiTokenState>, ApiError> {
        let fields = "id name role expiresAt revoked org { id }";
        let found: Option<ApiToken> = node(client, text(&prior.id).unwrap_or_default(), "ApiToken", fields).await?;
        Ok(found
            .filter(|t| !t.revoked && !passed(&t.expires_at))
            .map(|t| ApiTokenState {
                id: known(t.id),
                org_id: t.org.map_or(Value::Null, |o| known(o.id)),
                name: known(t.name),
                role: t.role.map_or(Value::Null, known),
                expires_in_days: prior.expires_in_days,
                token: prior.token.clone(),
                expires_at: known(t.expires_at),
            }))
    }

    async fn create(client: &Client, planned: ApiTokenState, _key: &str) -> Result<ApiTokenState, ApiError> {
        let input = json!({
            "name": text(&planned.name),
            "orgId": text(&planned.org_id),
            "role": text(&planned.role),
            "expiresInDays": planned.expires_in_days.as_ref_option(),
        });
        let query = "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { id token expiresAt } }";
        let mut data: Json = client.request(query, json!({ "input": input })).await?;
        let created: Created = serde_json::from_value(data["createApiToken"].take())
            .map_err(|e| ApiError::Transport(format!("unexpected answer from the API: {e}")))?;
        Ok(ApiTokenState {
            id: known(created.id),
            token: known(created.token),
            expires_at: known(created.expires_at),
            ..planned
        })
    }

    /// Only `expires_in_days` of an imported token changes in place (into the state).
    async fn update(
        _client: &Client,
        _prior: &ApiTokenState,
        planned: ApiTokenState,
    ) -> Result<ApiTokenState, ApiError> {
        Ok(planned)
    }

    async fn delete(client: &Client, state: &ApiTokenState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        mutate(client, "revokeApiToken", "RevokeApiTokenInput", "", input).await?;
        Ok(())
    }
}
