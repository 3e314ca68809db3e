//! `monkeyci_org`: the resource and the data source.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, DataSource, Diagnostics};

use crate::client::{new_idempotency_key, ApiError, Client, SharedClient};
use crate::managed::{answered_id, changed, known, mutate, schema, string, text, Managed, Text};

/// The attributes of `monkeyci_org`, resource and data source alike.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrgState {
    pub id: Text,
    pub name: Text,
    pub slug: Text,
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

impl ApiOrg {
    fn state(self) -> OrgState {
        OrgState {
            id: known(self.id),
            name: known(self.name),
            slug: known(self.slug),
        }
    }
}

/// The resource `monkeyci_org`.
#[derive(Debug)]
pub struct Org;

#[async_trait]
impl Managed for Org {
    type State = OrgState;
    const WHAT: &'static str = "org";

    fn schema() -> Schema {
        schema(
            "An organisation: owns repos, parameter sets and SSH keys.",
            map! {
                "id" => string("The org's global id.", AttributeConstraint::Computed),
                "name" => string("Display name; changed in place.", AttributeConstraint::Required),
                "slug" => string(
                    "Unique handle: lower-case letters, digits and '-', 2 to 63 characters. Changing it replaces the org.",
                    AttributeConstraint::Required,
                ),
            },
        )
    }

    fn id(state: &OrgState) -> &Text {
        &state.id
    }

    fn imported(id: String) -> OrgState {
        OrgState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: OrgState) -> OrgState {
        proposed.id = Value::Unknown;
        proposed
    }

    fn replaced_by(prior: &OrgState, proposed: &OrgState) -> Vec<AttributePath> {
        changed(&[("slug", prior.slug != proposed.slug)])
    }

    async fn read(client: &Client, prior: &OrgState) -> Result<Option<OrgState>, ApiError> {
        let query = format!("query($id: ID!) {{ org(id: $id) {{ {ORG_FIELDS} }} }}");
        match client
            .request::<OrgQuery>(&query, json!({ "id": text(&prior.id) }))
            .await
        {
            Ok(data) => Ok(data.org.map(ApiOrg::state)),
            Err(e) if e.is_not_found() || e.is_bad_input() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(client: &Client, planned: OrgState, key: &str) -> Result<OrgState, ApiError> {
        let input = json!({ "name": text(&planned.name), "slug": text(&planned.slug), "idempotencyKey": key });
        let id = answered_id(&mutate(client, "createOrg", "CreateOrgInput", "", input).await?)?;
        Ok(OrgState {
            id: known(id),
            ..planned
        })
    }

    async fn update(client: &Client, prior: &OrgState, planned: OrgState) -> Result<OrgState, ApiError> {
        if planned.name != prior.name {
            let input = json!({
                "id": text(&prior.id),
                "name": text(&planned.name),
                "idempotencyKey": new_idempotency_key(),
            });
            mutate(client, "renameOrg", "RenameOrgInput", "", input).await?;
        }
        Ok(planned)
    }

    async fn delete(client: &Client, state: &OrgState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": new_idempotency_key() });
        mutate(client, "deleteOrg", "DeleteOrgInput", "", input).await?;
        Ok(())
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
    type State<'a> = OrgState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema(
            "An existing org, by `slug` or by `id` (give exactly one).",
            map! {
                "id" => string("The org's global id.", AttributeConstraint::OptionalComputed),
                "slug" => string("The org's unique handle.", AttributeConstraint::OptionalComputed),
                "name" => string("Display name.", AttributeConstraint::Computed),
            },
        ))
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
