//! `monkeyci_repo`: the resource and the data source.
//!
//! The API has no deletion of repos: destroying one archives it (it keeps its build history and
//! takes no more builds). An archived repo counts as gone, so a repo archived outside Terraform
//! is planned for creation again.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, DataSource, Diagnostics};

use crate::client::{ApiError, Client, SharedClient};
use crate::managed::{
    answered_id, attribute, changed, known, map_from_api, mutate, node, pairs_input, schema, string, string_map, text,
    Managed, Pair, Parent, Text, TextMap,
};

/// The attributes of `monkeyci_repo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoState {
    pub id: Text,
    pub org_id: Text,
    pub name: Text,
    pub git_url: Text,
    pub main_branch: Text,
    pub labels: TextMap,
}

/// A repo as the API shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiRepo {
    id: String,
    name: String,
    git_url: String,
    main_branch: String,
    labels: Vec<Pair>,
    archived: bool,
    org: Option<Parent>,
}

const REPO_FIELDS: &str = "id name gitUrl mainBranch labels { name value } archived org { id }";

impl ApiRepo {
    fn state(self, prior_labels: &TextMap) -> RepoState {
        RepoState {
            id: known(self.id),
            org_id: self.org.map_or(Value::Null, |o| known(o.id)),
            name: known(self.name),
            git_url: known(self.git_url),
            main_branch: known(self.main_branch),
            labels: map_from_api(self.labels, prior_labels),
        }
    }
}

async fn repo_by_id(client: &Client, id: &str) -> Result<Option<ApiRepo>, ApiError> {
    node(client, id, "Repo", REPO_FIELDS).await
}

/// The resource `monkeyci_repo`.
#[derive(Debug)]
pub struct Repo;

#[async_trait]
impl Managed for Repo {
    type State = RepoState;
    const WHAT: &'static str = "repo";

    fn schema() -> Schema {
        schema(
            "A repository MonkeyCI builds. Destroying it archives it: its builds stay, it takes no new ones.",
            map! {
                "id" => string("The repo's global id.", AttributeConstraint::Computed),
                "org_id" => string("The org it belongs to. Changing it replaces the repo.", AttributeConstraint::Required),
                "name" => string("Display name.", AttributeConstraint::Required),
                "git_url" => string("Where the code is cloned from (https://, ssh://, git@host:path or file://).", AttributeConstraint::Required),
                "main_branch" => string("The branch built when a trigger names none; `main` when omitted.", AttributeConstraint::OptionalComputed),
                "labels" => string_map("Labels; parameter sets and ssh keys choose repos by them.", AttributeConstraint::Optional),
            },
        )
    }

    fn id(state: &RepoState) -> &Text {
        &state.id
    }

    fn imported(id: String) -> RepoState {
        RepoState {
            id: known(id),
            ..Default::default()
        }
    }

    fn plan_create(mut proposed: RepoState) -> RepoState {
        proposed.id = Value::Unknown;
        if proposed.main_branch.is_null() {
            proposed.main_branch = known("main");
        }
        proposed
    }

    fn replaced_by(prior: &RepoState, proposed: &RepoState) -> Vec<AttributePath> {
        changed(&[("org_id", prior.org_id != proposed.org_id)])
    }

    async fn read(client: &Client, prior: &RepoState) -> Result<Option<RepoState>, ApiError> {
        let repo = repo_by_id(client, text(&prior.id).unwrap_or_default()).await?;
        Ok(repo.filter(|r| !r.archived).map(|r| r.state(&prior.labels)))
    }

    async fn create(client: &Client, planned: RepoState, key: &str) -> Result<RepoState, ApiError> {
        let input = json!({
            "orgId": text(&planned.org_id),
            "name": text(&planned.name),
            "gitUrl": text(&planned.git_url),
            "mainBranch": text(&planned.main_branch),
            "labels": pairs_input(&planned.labels),
            "idempotencyKey": key,
        });
        let id = answered_id(&mutate(client, "createRepo", "CreateRepoInput", "", input).await?)?;
        Ok(RepoState {
            id: known(id),
            ..planned
        })
    }

    async fn update(client: &Client, prior: &RepoState, planned: RepoState) -> Result<RepoState, ApiError> {
        let input = json!({
            "id": text(&prior.id),
            "name": text(&planned.name),
            "gitUrl": text(&planned.git_url),
            "mainBranch": text(&planned.main_branch),
            "labels": pairs_input(&planned.labels),
            "idempotencyKey": crate::client::new_idempotency_key(),
        });
        mutate(client, "updateRepo", "UpdateRepoInput", "", input).await?;
        Ok(planned)
    }

    async fn delete(client: &Client, state: &RepoState) -> Result<(), ApiError> {
        let input = json!({ "id": text(&state.id), "idempotencyKey": crate::client::new_idempotency_key() });
        mutate(client, "archiveRepo", "ArchiveRepoInput", "", input).await?;
        Ok(())
    }
}

/// The attributes of the data source `monkeyci_repo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RepoDataState {
    pub id: Text,
    pub org_id: Text,
    pub name: Text,
    pub git_url: Text,
    pub main_branch: Text,
    pub labels: TextMap,
    pub archived: Value<bool>,
}

/// The data source `monkeyci_repo`: one repo by `id`, or by `org_id` and `name`.
#[derive(Debug, Clone)]
pub struct RepoDataSource {
    client: SharedClient,
}

impl RepoDataSource {
    pub fn new(client: SharedClient) -> Self {
        Self { client }
    }

    /// The repo the configuration names; an error diagnostic when there is none.
    async fn find(&self, client: &Client, diags: &mut Diagnostics, config: &RepoDataState) -> Option<ApiRepo> {
        let found = match (text(&config.id), text(&config.org_id), text(&config.name)) {
            (Some(id), _, _) => repo_by_id(client, id).await.map(|r| (r, format!("id {id:?}"))),
            (None, Some(org), Some(name)) => repo_in_org(client, org, name)
                .await
                .map(|r| (r, format!("name {name:?} in org {org}"))),
            _ => {
                diags.root_error_short("Give `id`, or `org_id` and `name`");
                return None;
            }
        };
        match found {
            Ok((Some(repo), _)) => Some(repo),
            Ok((None, what)) => {
                diags.root_error("No such repo", format!("There is no repo with {what}."));
                None
            }
            Err(e) => {
                e.report(diags, "Cannot read the repo");
                None
            }
        }
    }
}

/// The repo of org `org` named `name`, preferring one that is not archived.
async fn repo_in_org(client: &Client, org: &str, name: &str) -> Result<Option<ApiRepo>, ApiError> {
    #[derive(Deserialize)]
    struct Page {
        edges: Vec<Edge>,
        #[serde(rename = "pageInfo")]
        page_info: PageInfo,
    }
    #[derive(Deserialize)]
    struct Edge {
        node: ApiRepo,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PageInfo {
        has_next_page: bool,
        end_cursor: Option<String>,
    }
    #[derive(Deserialize)]
    struct OrgRepos {
        repos: Page,
    }
    #[derive(Deserialize)]
    struct Answer {
        org: Option<OrgRepos>,
    }
    let query = format!(
        "query($org: ID!, $after: String) {{ org(id: $org) {{ repos(first: 100, after: $after) {{ edges {{ node {{ {REPO_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"
    );
    let mut after: Option<String> = None;
    let mut archived = None;
    loop {
        let answer: Answer = client.request(&query, json!({ "org": org, "after": after })).await?;
        let Some(OrgRepos { repos }) = answer.org else {
            return Ok(None);
        };
        for edge in repos.edges {
            if edge.node.name == name {
                if !edge.node.archived {
                    return Ok(Some(edge.node));
                }
                archived.get_or_insert(edge.node);
            }
        }
        if !repos.page_info.has_next_page {
            return Ok(archived);
        }
        after = repos.page_info.end_cursor;
    }
}

#[async_trait]
impl DataSource for RepoDataSource {
    type State<'a> = RepoDataState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema(
            "An existing repo, by `id` or by `org_id` and `name` (a repo that is not archived wins).",
            map! {
                "id" => string("The repo's global id.", AttributeConstraint::OptionalComputed),
                "org_id" => string("The org it belongs to.", AttributeConstraint::OptionalComputed),
                "name" => string("Display name.", AttributeConstraint::OptionalComputed),
                "git_url" => string("Where the code is cloned from.", AttributeConstraint::Computed),
                "main_branch" => string("The branch built when a trigger names none.", AttributeConstraint::Computed),
                "labels" => string_map("Labels.", AttributeConstraint::Computed),
                "archived" => attribute(AttributeType::Bool, "Whether it is archived.", AttributeConstraint::Computed),
            },
        ))
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        // Unknown values (from other resources) are checked when they are known, in `read`.
        let by_id = !config.id.is_null();
        let by_name = !config.org_id.is_null() || !config.name.is_null();
        if by_id == by_name || (by_name && (config.org_id.is_null() || config.name.is_null())) {
            diags.root_error_short("Give `id`, or `org_id` and `name`");
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
        let repo = self.find(&client, diags, &config).await?;
        let archived = repo.archived;
        let state = repo.state(&Value::Value(Default::default()));
        Some(RepoDataState {
            id: state.id,
            org_id: state.org_id,
            name: state.name,
            git_url: state.git_url,
            main_branch: state.main_branch,
            labels: state.labels,
            archived: Value::Value(archived),
        })
    }
}
