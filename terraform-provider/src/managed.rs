//! What every `monkeyci_*` resource shares, written once: the plugin protocol's steps
//! (plan, create, read, update, delete, import) around a small [`Managed`] description of how
//! one kind of object is read and written through the API.
//!
//! The idempotency key of a create is generated at plan time and kept in the resource's private
//! state, so every attempt to apply that plan sends the same key: a create whose answer was lost
//! is retried (by [`Client::request_idempotent`]) without creating a second object. A key derived
//! from the configuration would be the same for an object deleted outside Terraform and created
//! again with the same settings, and the API would answer that second create with the id of the
//! deleted object instead of creating it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::client::{new_idempotency_key, ApiError, Client, SharedClient};

/// A string attribute of a state.
pub type Text = Value<String>;
/// A `map(string)` attribute.
pub type TextMap = Value<BTreeMap<String, Text>>;
/// A label filter: a list of rules, each a `map(string)` of labels that must all match.
pub type Filter = Value<Vec<TextMap>>;

/// A known string value.
pub fn known(value: impl Into<String>) -> Text {
    Value::Value(value.into())
}

/// The string, when it is known.
pub fn text(value: &Text) -> Option<&str> {
    value.as_ref_option().map(String::as_str)
}

/// An attribute of the schema.
pub fn attribute(attr_type: AttributeType, description: &str, constraint: AttributeConstraint) -> Attribute {
    Attribute {
        attr_type,
        description: Description::plain(description),
        constraint,
        ..Default::default()
    }
}

/// A resource's or data source's schema: its description and attributes.
pub fn schema(description: &str, attributes: HashMap<String, Attribute>) -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::plain(description),
            attributes,
            ..Default::default()
        },
    }
}

/// A string attribute.
pub fn string(description: &str, constraint: AttributeConstraint) -> Attribute {
    attribute(AttributeType::String, description, constraint)
}

/// A string attribute Terraform keeps out of its output.
pub fn secret(description: &str, constraint: AttributeConstraint) -> Attribute {
    Attribute {
        sensitive: true,
        ..string(description, constraint)
    }
}

/// A `map(string)` attribute.
pub fn string_map(description: &str, constraint: AttributeConstraint) -> Attribute {
    attribute(
        AttributeType::Map(Box::new(AttributeType::String)),
        description,
        constraint,
    )
}

/// A label filter attribute.
pub fn filter_attribute() -> Attribute {
    attribute(
        AttributeType::List(Box::new(AttributeType::Map(Box::new(AttributeType::String)))),
        "The repos it applies to: a list of rules, each a map of labels a repo must all have (e.g. `[{ env = \"prod\" }]`). Omitted or empty: every repo of the org.",
        AttributeConstraint::Optional,
    )
}

/// A flag of a state.
pub type Flag = Value<bool>;

/// The `protected` attribute of parameter sets and ssh keys.
pub fn protected_attribute(what: &str) -> Attribute {
    attribute(
        AttributeType::Bool,
        &format!("Only builds of protected refs (the repo's main branch, tags) {what}. Default false."),
        AttributeConstraint::Optional,
    )
}

/// A flag read from the API; `false` stays unset when the state had it unset (the default).
pub fn flag_from_api(value: bool, prior: &Flag) -> Flag {
    if !value && !matches!(prior, Value::Value(_)) {
        return Value::Null;
    }
    Value::Value(value)
}

/// A flag as API input: unset is false.
pub fn flag_input(flag: &Flag) -> bool {
    flag.as_ref_option().copied().unwrap_or(false)
}

/// A `{ name, value }` pair as the API shows labels.
#[derive(Debug, Deserialize)]
pub struct Pair {
    pub name: String,
    pub value: String,
}

/// A rule of a label filter as the API shows it.
#[derive(Debug, Deserialize)]
pub struct Rule {
    pub labels: Vec<Pair>,
}

/// The id of a parent object (`org { id }`, `repo { id }`).
#[derive(Debug, Deserialize)]
pub struct Parent {
    pub id: String,
}

/// A map read from the API. The API does not tell "no labels" from "empty labels"; an empty
/// one is kept in the form the state had, so neither `labels = {}` nor no `labels` at all shows
/// a change.
pub fn map_from_api(pairs: Vec<Pair>, prior: &TextMap) -> TextMap {
    if pairs.is_empty() && !matches!(prior, Value::Value(_)) {
        return Value::Null;
    }
    Value::Value(pairs.into_iter().map(|p| (p.name, known(p.value))).collect())
}

/// A filter read from the API, kept in the state's form when empty (see [`map_from_api`]).
pub fn filter_from_api(rules: Vec<Rule>, prior: &Filter) -> Filter {
    if rules.is_empty() && !matches!(prior, Value::Value(_)) {
        return Value::Null;
    }
    Value::Value(
        rules
            .into_iter()
            .map(|rule| map_from_api(rule.labels, &Value::Value(BTreeMap::new())))
            .collect(),
    )
}

/// A map as the API's `[{ name, value }]` input.
pub fn pairs_input(map: &TextMap) -> Json {
    let pairs: Vec<Json> = map
        .as_ref_option()
        .into_iter()
        .flatten()
        .map(|(name, value)| json!({ "name": name, "value": text(value).unwrap_or_default() }))
        .collect();
    Json::Array(pairs)
}

/// A filter as the API's `[{ labels: [{ name, value }] }]` input.
pub fn filter_input(filter: &Filter) -> Json {
    let rules: Vec<Json> = filter
        .as_ref_option()
        .into_iter()
        .flatten()
        .map(|rule| json!({ "labels": pairs_input(rule) }))
        .collect();
    Json::Array(rules)
}

/// The attribute path of each named attribute whose value differs between two states.
pub fn changed(pairs: &[(&'static str, bool)]) -> Vec<AttributePath> {
    pairs
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| AttributePath::new(*name))
        .collect()
}

/// Reads one object by its global id with `node(id)`; `fields` are those of `... on Type`.
/// `None` when there is none (or it was deleted).
pub async fn node<T: DeserializeOwned>(
    client: &Client,
    id: &str,
    type_name: &str,
    fields: &str,
) -> Result<Option<T>, ApiError> {
    #[derive(Deserialize)]
    struct Node<T> {
        node: Option<T>,
    }
    let query = format!("query($id: ID!) {{ node(id: $id) {{ ... on {type_name} {{ {fields} }} }} }}");
    match client.request::<Node<Json>>(&query, json!({ "id": id })).await {
        // Another kind of object answers `{}`: not this one.
        Ok(Node {
            node: Some(Json::Object(o)),
        }) if o.is_empty() => Ok(None),
        Ok(Node { node: Some(found) }) => serde_json::from_value(found)
            .map(Some)
            .map_err(|e| ApiError::Transport(format!("unexpected {type_name} from the API: {e}"))),
        Ok(Node { node: None }) => Ok(None),
        Err(e) if e.is_not_found() || e.is_bad_input() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `mutation($input: <input_type>!) { <name>(input: $input) <selection> }`, retried when
/// it got no answer (only for inputs with an idempotency key), and returns what `name` answered.
pub async fn mutate(
    client: &Client,
    name: &str,
    input_type: &str,
    selection: &str,
    input: Json,
) -> Result<Json, ApiError> {
    let query = format!("mutation($input: {input_type}!) {{ {name}(input: $input) {selection} }}");
    let mut data: Json = client.request_idempotent(&query, json!({ "input": input })).await?;
    Ok(data[name].take())
}

/// An id answered by a mutation.
pub fn answered_id(answer: &Json) -> Result<String, ApiError> {
    answer
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Transport(format!("expected an id from the API, got {answer}")))
}

/// How one kind of MonkeyCI object is managed. States are whole attribute sets; their `id` is
/// the object's global id.
#[async_trait]
pub trait Managed: Send + Sync + 'static {
    type State: Serialize + DeserializeOwned + Clone + Send + Sync;

    /// "repo", "webhook", ...: used in error messages.
    const WHAT: &'static str;

    fn schema() -> Schema;

    fn id(state: &Self::State) -> &Text;

    /// Checks a configuration before any plan (values known at this point only).
    fn validate(_config: &Self::State, _diags: &mut Diagnostics) {}

    /// A state holding only `id`, for `terraform import` (the read that follows fills it in).
    fn imported(id: String) -> Self::State;

    /// The planned state of a new object: computed attributes unknown or defaulted.
    fn plan_create(proposed: Self::State) -> Self::State;

    /// The attributes whose change replaces the object rather than changing it in place.
    fn replaced_by(prior: &Self::State, proposed: &Self::State) -> Vec<AttributePath>;

    /// The planned state of an in-place change (computed attributes the change will alter
    /// become unknown). By default, what Terraform proposed.
    fn plan_update(_prior: &Self::State, proposed: Self::State) -> Self::State {
        proposed
    }

    /// The object as it is now, `None` when it is gone. `prior` holds what the API cannot
    /// show (secrets), which the read keeps.
    async fn read(client: &Client, prior: &Self::State) -> Result<Option<Self::State>, ApiError>;

    /// Creates the object with idempotency key `key`; returns the new state.
    async fn create(client: &Client, planned: Self::State, key: &str) -> Result<Self::State, ApiError>;

    /// Changes the object in place; returns the new state.
    async fn update(client: &Client, prior: &Self::State, planned: Self::State) -> Result<Self::State, ApiError>;

    /// Deletes (or archives, or revokes) the object.
    async fn delete(client: &Client, state: &Self::State) -> Result<(), ApiError>;
}

/// What the provider keeps beside the state: the idempotency key of the planned create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Private {
    pub create_key: Option<String>,
}

/// A [`Managed`] kind of object as a Terraform resource.
#[derive(Debug)]
pub struct ManagedResource<M> {
    client: SharedClient,
    kind: std::marker::PhantomData<fn() -> M>,
}

impl<M> ManagedResource<M> {
    pub fn new(client: SharedClient) -> Self {
        Self {
            client,
            kind: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<M: Managed> Resource for ManagedResource<M> {
    type State<'a> = M::State;
    type PrivateState<'a> = Option<Private>;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(M::schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        M::validate(&config, diags);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(client) = self.client.get(diags) else {
            return Some((state, private_state));
        };
        if text(M::id(&state)).is_none() {
            diags.root_error_short(format!("The {} has no id in the state", M::WHAT));
            return Some((state, private_state));
        }
        match M::read(&client, &state).await {
            // Deleted outside Terraform: gone from the state, planned for creation again.
            Ok(None) => None,
            Ok(Some(read)) => Some((read, private_state)),
            Err(e) => {
                e.report(diags, &format!("Cannot read the {}", M::WHAT));
                Some((state, private_state))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let private = Private {
            create_key: Some(new_idempotency_key()),
        };
        Some((M::plan_create(proposed_state), Some(private)))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        proposed_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let replace = M::replaced_by(&prior_state, &proposed_state);
        let planned = if replace.is_empty() {
            M::plan_update(&prior_state, proposed_state)
        } else {
            proposed_state
        };
        Some((planned, prior_private_state, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Self::State<'a>,
        prior_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags)?;
        let key = planned_private_state
            .and_then(|p| p.create_key)
            .unwrap_or_else(new_idempotency_key);
        match M::create(&client, planned_state, &key).await {
            Ok(state) => Some((state, Some(Private::default()))),
            Err(e) => {
                e.report(diags, &format!("Cannot create the {}", M::WHAT));
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        planned_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        planned_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let Some(client) = self.client.get(diags) else {
            return Some((prior_state, planned_private_state));
        };
        match M::update(&client, &prior_state, planned_state).await {
            Ok(state) => Some((state, planned_private_state)),
            Err(e) => {
                e.report(diags, &format!("Cannot change the {}", M::WHAT));
                Some((prior_state, planned_private_state))
            }
        }
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        _planned_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags)?;
        match M::delete(&client, &prior_state).await {
            Ok(()) => Some(()),
            // Already gone: what destroy wanted.
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                e.report(diags, &format!("Cannot delete the {}", M::WHAT));
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        _diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Terraform reads the resource right after, which fills in the rest (or reports that
        // there is no such object).
        Some((M::imported(id), None))
    }
}
