//! `monkeyci_org`: the resource and the data source.
//!
//! The idempotency key of `createOrg` is generated at plan time and kept in the resource's
//! private state, so every attempt to apply that plan sends the same key: a create whose answer
//! was lost is retried (by [`Client::request_idempotent`]) without creating a second org. A key
//! derived from the configuration would be the same for an org deleted outside Terraform and
//! created again with the same name and slug, and the API would answer that second create with
//! the id of the deleted org instead of creating it.

use std::borrow::Cow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty, ValueString};
use tf_provider::{map, AttributePath, DataSource, Diagnostics, Resource};

use crate::client::{new_idempotency_key, Client, SharedClient};

/// The attributes of `monkeyci_org`, resource and data source alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgState<'a> {
    #[serde(borrow = "'a")]
    pub id: ValueString<'a>,
    #[serde(borrow = "'a")]
    pub name: ValueString<'a>,
    #[serde(borrow = "'a")]
    pub slug: ValueString<'a>,
}

/// What the provider keeps beside the state: the idempotency key of the planned create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrgPrivate {
    pub create_key: Option<String>,
}

/// An org as the API returns it.
#[derive(Debug, Deserialize)]
struct ApiOrg {
    id: String,
    name: String,
    slug: String,
}

#[derive(Debug, Deserialize)]
struct OrgQuery {
    org: Option<ApiOrg>,
}

const ORG_FIELDS: &str = "id name slug";

fn known(value: String) -> ValueString<'static> {
    Value::Value(Cow::Owned(value))
}

impl ApiOrg {
    fn state<'a>(self) -> OrgState<'a> {
        OrgState {
            id: known(self.id),
            name: known(self.name),
            slug: known(self.slug),
        }
    }
}

/// A string attribute.
fn string(description: &str, constraint: AttributeConstraint) -> Attribute {
    Attribute {
        attr_type: AttributeType::String,
        description: Description::plain(description),
        constraint,
        ..Default::default()
    }
}

/// The org with this global id, `None` when there is none.
async fn org_by_id(client: &Client, diags: &mut Diagnostics, id: &str) -> Result<Option<ApiOrg>, ()> {
    let query = format!("query($id: ID!) {{ org(id: $id) {{ {ORG_FIELDS} }} }}");
    match client.request::<OrgQuery>(&query, json!({ "id": id })).await {
        Ok(data) => Ok(data.org),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => {
            e.report(diags, "Cannot read the org");
            Err(())
        }
    }
}

/// The resource `monkeyci_org`.
#[derive(Debug, Clone)]
pub struct OrgResource {
    client: SharedClient,
}

impl OrgResource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Resource for OrgResource {
    type State<'a> = OrgState<'a>;
    type PrivateState<'a> = Option<OrgPrivate>;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain("An organisation: owns repos, parameter sets and SSH keys."),
                attributes: map! {
                    "id" => string("The org's global id.", AttributeConstraint::Computed),
                    "name" => string("Display name; changed in place.", AttributeConstraint::Required),
                    "slug" => string(
                        "Unique handle: lower-case letters, digits and '-', 2 to 63 characters. Changing it replaces the org.",
                        AttributeConstraint::Required,
                    ),
                },
                ..Default::default()
            },
        })
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
        let Some(id) = state.id.as_ref_option().map(|id| id.to_string()) else {
            diags.root_error_short("The org has no id in the state");
            return Some((state, private_state));
        };
        match org_by_id(&client, diags, &id).await {
            // Deleted outside Terraform: gone from the state, planned for creation again.
            Ok(None) => None,
            Ok(Some(org)) => Some((org.state(), private_state)),
            Err(()) => Some((state, private_state)),
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed_state: Self::State<'a>,
        _config_state: Self::State<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut state = proposed_state;
        state.id = Value::Unknown;
        let private = OrgPrivate {
            create_key: Some(new_idempotency_key()),
        };
        Some((state, Some(private)))
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
        let mut replace = Vec::new();
        if proposed_state.slug != prior_state.slug {
            replace.push(AttributePath::new("slug"));
        }
        Some((proposed_state, prior_private_state, replace))
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
        let input = json!({
            "name": planned_state.name.as_ref_option(),
            "slug": planned_state.slug.as_ref_option(),
            "idempotencyKey": key,
        });
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            create_org: String,
        }
        let query = "mutation($input: CreateOrgInput!) { createOrg(input: $input) }";
        match client
            .request_idempotent::<Created>(query, json!({ "input": input }))
            .await
        {
            Ok(created) => {
                let mut state = planned_state;
                state.id = known(created.create_org);
                Some((state, Some(OrgPrivate::default())))
            }
            Err(e) => {
                e.report(diags, "Cannot create the org");
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
        if planned_state.name != prior_state.name {
            let input = json!({
                "id": prior_state.id.as_ref_option(),
                "name": planned_state.name.as_ref_option(),
                "idempotencyKey": new_idempotency_key(),
            });
            let query = "mutation($input: RenameOrgInput!) { renameOrg(input: $input) }";
            if let Err(e) = client
                .request_idempotent::<serde_json::Value>(query, json!({ "input": input }))
                .await
            {
                e.report(diags, "Cannot rename the org");
                return Some((prior_state, planned_private_state));
            }
        }
        Some((planned_state, planned_private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Self::State<'a>,
        _planned_private_state: Self::PrivateState<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.client.get(diags)?;
        let input = json!({
            "id": prior_state.id.as_ref_option(),
            "idempotencyKey": new_idempotency_key(),
        });
        let query = "mutation($input: DeleteOrgInput!) { deleteOrg(input: $input) }";
        match client
            .request_idempotent::<serde_json::Value>(query, json!({ "input": input }))
            .await
        {
            Ok(_) => Some(()),
            // Already gone: what destroy wanted.
            Err(e) if e.is_not_found() => Some(()),
            Err(e) => {
                e.report(diags, "Cannot delete the org");
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
        // there is no org with this id).
        let state = OrgState {
            id: known(id),
            name: Value::Null,
            slug: Value::Null,
        };
        Some((state, None))
    }
}

/// The data source `monkeyci_org`: one org by `slug` or by `id`.
#[derive(Debug, Clone)]
pub struct OrgDataSource {
    client: SharedClient,
}

impl OrgDataSource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl DataSource for OrgDataSource {
    type State<'a> = OrgState<'a>;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain("An existing org, by `slug` or by `id` (give exactly one)."),
                attributes: map! {
                    "id" => string("The org's global id.", AttributeConstraint::OptionalComputed),
                    "slug" => string("The org's unique handle.", AttributeConstraint::OptionalComputed),
                    "name" => string("Display name.", AttributeConstraint::Computed),
                },
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        // Unknown values (from other resources) are checked when they are known, in `read`.
        if matches!(
            (&config.id, &config.slug),
            (Value::Null, Value::Null) | (Value::Value(_), Value::Value(_))
        ) {
            diags.root_error_short("Give exactly one of `id` and `slug`");
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _provider_meta_state: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.client.get(diags)?;
        let (query, variables, what) = match (config.id.as_ref_option(), config.slug.as_ref_option()) {
            (Some(id), None) => (
                format!("query($id: ID!) {{ org(id: $id) {{ {ORG_FIELDS} }} }}"),
                json!({ "id": id }),
                format!("id {id:?}"),
            ),
            (None, Some(slug)) => (
                format!("query($slug: String!) {{ org(slug: $slug) {{ {ORG_FIELDS} }} }}"),
                json!({ "slug": slug }),
                format!("slug {slug:?}"),
            ),
            _ => {
                diags.root_error_short("Give exactly one of `id` and `slug`");
                return None;
            }
        };
        match client.request::<OrgQuery>(&query, variables).await {
            Ok(OrgQuery { org: Some(org) }) => Some(org.state()),
            Ok(OrgQuery { org: None }) => {
                diags.root_error("No such org", format!("There is no org with {what}."));
                None
            }
            Err(e) => {
                e.report(diags, "Cannot read the org");
                None
            }
        }
    }
}
