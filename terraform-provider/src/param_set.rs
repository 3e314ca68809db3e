//! `monkeyci_param_set`: an org's parameter set, whose values become environment variables of
//! the jobs of the repos its filter chooses.
//!
//! The API never shows the values, only their names and when the set last changed
//! (`updated_at`). A read keeps the values of the state while `updated_at` is the one Terraform
//! last wrote; after a change outside Terraform it marks every value as unknown to the state
//! (`null`), so the next plan writes the configured values again. Names added or removed outside
//! Terraform show up as such.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Schema};
use tf_provider::value::Value;
use tf_provider::{map, AttributePath};

use crate::client::{new_idempotency_key, ApiError, Client};
use crate::managed::{
    answered_id, changed, filter_attribute, filter_from_api, filter_input, flag_from_api, flag_input, known, mutate,
    node, pairs_input, protected_attribute, schema, string, text, Filter, Flag, Managed, Parent, Rule, Text, TextMap,
};

/// The attributes of `monkeyci_param_set`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ParamSetState {
    pub id: Text,
    pub org_id: Text,
    pub name: Text,
    pub filter: Filter,
    pub protected: Flag,
    pub parameters: TextMap,
    pub updated_at: Text,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiParamSet {
    id: String,
    name: String,
    filter: Vec<Rule>,
    protected: bool,
    parameter_names: Vec<String>,
    updated_at: String,
    org: Option<Parent>,
}

const FIELDS: &str = "id name filter { labels { name value } } protected parameterNames updatedAt org { id }";

async fn param_set(client: &Client, id: &str) -> Result<Option<ApiParamSet>, ApiError> {
    node(client, id, "ParamSet", FIELDS).await
}

/// `updated_at` of the set just written.
async fn updated_at(client: &Client, id: &str) -> Result<Text, ApiError> {
    Ok(param_set(client, id)
        .await?
        .map_or(Value::Null, |p| known(p.updated_at)))
}

/// The resource `monkeyci_param_set`.
#[derive(Debug)]
pub struct ParamSet;

#[async_trait]
impl Managed for ParamSet {
    type State = ParamSetState;
    const WHAT: &'static str = "parameter set";

    fn schema() -> Schema {
        schema(
            "An org's parameter set: its values, stored encrypted, become environment variables of the jobs of the repos its filter chooses, masked as *** in their output.",
            map! {
                    "id" => string("The parameter set's global id.", AttributeConstraint::Computed),
                    "org_id" => string("The org it belongs to. Changing it replaces the set.", AttributeConstraint::Required),
                    "name" => string("Its name. Changed in place.", AttributeConstraint::Required),
                    "filter" => filter_attribute(),
                    "protected" => protected_attribute("get its values"),
                    "parameters" => Attribute {
                        sensitive: true,
                        ..crate::managed::attribute(
                            AttributeType::Map(Box::new(AttributeType::String)),
                            "Name to value. The whole set is written on every change; values cannot be read back.",
                            AttributeConstraint::Required,
                        )
                    },
                    "updated_at" => string("When it last changed (RFC 3339).", AttributeConstraint::Computed),
                },
        )
    }

    fn id(state: &ParamSetState) -> &Text {
        &state.id
    }

    fn imported(id: String) -> ParamSetState {
        ParamSetState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: ParamSetState) -> ParamSetState {
        proposed.id = Value::Unknown;
        proposed.updated_at = Value::Unknown;
        proposed
    }

    fn replaced_by(prior: &ParamSetState, proposed: &ParamSetState) -> Vec<AttributePath> {
        changed(&[("org_id", prior.org_id != proposed.org_id)])
    }

    fn plan_update(prior: &ParamSetState, mut proposed: ParamSetState) -> ParamSetState {
        let content = |s: &ParamSetState| {
            (
                s.name.clone(),
                s.filter.clone(),
                flag_input(&s.protected),
                s.parameters.clone(),
            )
        };
        if content(&proposed) != content(prior) {
            proposed.updated_at = Value::Unknown;
        }
        proposed
    }

    async fn read(client: &Client, prior: &ParamSetState) -> Result<Option<ParamSetState>, ApiError> {
        let Some(set) = param_set(client, text(&prior.id).unwrap_or_default()).await? else {
            return Ok(None);
        };
        let updated_at = known(set.updated_at);
        let unchanged = updated_at == prior.updated_at;
        let prior_values = prior.parameters.as_ref_option();
        let parameters: BTreeMap<String, Text> = set
            .parameter_names
            .into_iter()
            .map(|name| {
                let value = prior_values
                    .and_then(|values| values.get(&name))
                    .filter(|_| unchanged)
                    .cloned()
                    .unwrap_or(Value::Null);
                (name, value)
            })
            .collect();
        Ok(Some(ParamSetState {
            id: known(set.id),
            org_id: set.org.map_or(Value::Null, |o| known(o.id)),
            name: known(set.name),
            filter: filter_from_api(set.filter, &prior.filter),
            protected: flag_from_api(set.protected, &prior.protected),
            parameters: Value::Value(parameters),
            updated_at,
        }))
    }

    async fn create(client: &Client, planned: ParamSetState, key: &str) -> Result<ParamSetState, ApiError> {
        let input = json!({
            "orgId": text(&planned.org_id),
            "name": text(&planned.name),
            "filter": filter_input(&planned.filter),
            "protected": flag_input(&planned.protected),
            "parameters": pairs_input(&planned.parameters),
            "idempotencyKey": key,
        });
        let id = answered_id(&mutate(client, "createParamSet", "CreateParamSetInput", "", input).await?)?;
        Ok(ParamSetState {
            updated_at: updated_at(client, &id).await?,
            id: known(id),
            ..planned
        })
    }

    async fn update(client: &Client, prior: &ParamSetState, planned: ParamSetState) -> Result<ParamSetState, ApiError> {
        let id = text(&prior.id).unwrap_or_default().to_owned();
        let input = json!({
            "id": id,
            "name": text(&planned.name),
            "filter": filter_input(&planned.filter),
            "protected": flag_input(&planned.protected),
            "parameters": pairs_input(&planned.parameters),
            "idempotencyKey": new_idempotency_key(),
        });
        mutate(client, "updateParamSet", "UpdateParamSetInput", "", input).await?;
        Ok(ParamSetState {
            updated_at: updated_at(client, &id).await?,
            ..planned
        })
    }

    async fn delete(client: &Client, state: &ParamSetState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        mutate(client, "deleteParamSet", "DeleteInput", "", input).await?;
        Ok(())
    }
}
