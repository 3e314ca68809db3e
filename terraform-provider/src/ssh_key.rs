//! `monkeyci_ssh_key`: an org's ssh key for checking out the code of the repos its filter
//! chooses.
//!
//! The API has no change of an ssh key: any change replaces it. The private key is never shown,
//! so the state keeps the configured one; after an import the state has none, and the
//! configured one is taken as it is (it cannot be compared).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath};

use crate::client::{new_idempotency_key, ApiError, Client};
use crate::managed::{
    answered_id, changed, filter_attribute, filter_from_api, filter_input, flag_from_api, flag_input, known, mutate,
    node, protected_attribute, schema, secret, string, text, Filter, Flag, Managed, Parent, Rule, Text,
};

/// The attributes of `monkeyci_ssh_key`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SshKeyState {
    pub id: Text,
    pub org_id: Text,
    pub description: Text,
    pub filter: Filter,
    pub protected: Flag,
    pub private_key: Text,
    pub public_key: Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSshKey {
    id: String,
    description: String,
    public_key: String,
    filter: Vec<Rule>,
    protected: bool,
    org: Option<Parent>,
}

/// The resource `monkeyci_ssh_key`.
#[derive(Debug)]
pub struct SshKey;

#[async_trait]
impl Managed for SshKey {
    type State = SshKeyState;
    const WHAT: &'static str = "ssh key";

    fn schema() -> Schema {
        schema(
            "An org's ssh key, used to check out the code of the repos its filter chooses. Any change replaces it.",
            map! {
                "id" => string("The ssh key's global id.", AttributeConstraint::Computed),
                "org_id" => string("The org it belongs to.", AttributeConstraint::Required),
                "description" => string("What the key is for.", AttributeConstraint::Required),
                "filter" => filter_attribute(),
                "protected" => protected_attribute("use it"),
                "private_key" => secret("The private key (OpenSSH or PEM, without a passphrase); stored encrypted, never shown.", AttributeConstraint::Required),
                "public_key" => string("The public half, to register at the git host.", AttributeConstraint::Required),
            },
        )
    }

    fn id(state: &SshKeyState) -> &Text {
        &state.id
    }

    fn imported(id: String) -> SshKeyState {
        SshKeyState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: SshKeyState) -> SshKeyState {
        proposed.id = Value::Unknown;
        proposed
    }

    fn replaced_by(prior: &SshKeyState, proposed: &SshKeyState) -> Vec<AttributePath> {
        changed(&[
            ("org_id", prior.org_id != proposed.org_id),
            ("description", prior.description != proposed.description),
            ("filter", prior.filter != proposed.filter),
            (
                "protected",
                flag_input(&prior.protected) != flag_input(&proposed.protected),
            ),
            ("public_key", prior.public_key != proposed.public_key),
            // An imported key has none in the state: nothing to compare with.
            (
                "private_key",
                !prior.private_key.is_null() && prior.private_key != proposed.private_key,
            ),
        ])
    }

    async fn read(client: &Client, prior: &SshKeyState) -> Result<Option<SshKeyState>, ApiError> {
        let fields = "id description publicKey filter { labels { name value } } protected org { id }";
        let found: Option<ApiSshKey> = node(client, text(&prior.id).unwrap_or_default(), "SshKey", fields).await?;
        Ok(found.map(|k| SshKeyState {
            id: known(k.id),
            org_id: k.org.map_or(Value::Null, |o| known(o.id)),
            description: known(k.description),
            filter: filter_from_api(k.filter, &prior.filter),
            protected: flag_from_api(k.protected, &prior.protected),
            private_key: prior.private_key.clone(),
            public_key: known(k.public_key),
        }))
    }

    async fn create(client: &Client, planned: SshKeyState, key: &str) -> Result<SshKeyState, ApiError> {
        let input = json!({
            "orgId": text(&planned.org_id),
            "description": text(&planned.description),
            "filter": filter_input(&planned.filter),
            "protected": flag_input(&planned.protected),
            "privateKey": text(&planned.private_key),
            "publicKey": text(&planned.public_key),
            "idempotencyKey": key,
        });
        let id = answered_id(&mutate(client, "addSshKey", "AddSshKeyInput", "", input).await?)?;
        Ok(SshKeyState {
            id: known(id),
            ..planned
        })
    }

    /// Only the private key of an imported key changes in place (into the state, not the API).
    async fn update(_client: &Client, _prior: &SshKeyState, planned: SshKeyState) -> Result<SshKeyState, ApiError> {
        Ok(planned)
    }

    async fn delete(client: &Client, state: &SshKeyState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        mutate(client, "deleteSshKey", "DeleteInput", "", input).await?;
        Ok(())
    }
}
