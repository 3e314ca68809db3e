//! Finding orgs, repos, builds and jobs by the names people type, and listing them page by page.

use base64::Engine;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Api, Failure};

const ORG_FIELDS: &str = "id slug name myRole createdAt";
const REPO_FIELDS: &str = "id name gitUrl mainBranch archived createdAt";
const BUILD_FIELDS: &str = "id status source branch tag commit message queuedAt startedAt finishedAt \
     jobCounts { total succeeded failed running queued blocked skipped canceled }";

/// The object a global id names (`base64url("<Type>:<uuid>")`), if `text` is one of `kind`.
fn global_id_of(text: &str, kind: &str) -> Option<Uuid> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (found, id) = text.split_once(':')?;
    (found == kind).then(|| Uuid::parse_str(id).ok()).flatten()
}

fn global_id(kind: &str, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// A build's global id from a global id or a bare UUID.
pub fn build_id(text: &str) -> Result<String, Failure> {
    let text = text.trim();
    if global_id_of(text, "Build").is_some() {
        return Ok(text.to_owned());
    }
    match Uuid::parse_str(text) {
        Ok(id) => Ok(global_id("Build", id)),
        Err(_) => Err(Failure::usage(format!(
            "{text:?} is not a build id (as `monkeyci builds` and `monkeyci trigger` print them)"
        ))),
    }
}

/// An org by slug or id.
pub async fn org(api: &Api, name: &str) -> Result<Value, Failure> {
    let query = format!("query($id: ID, $slug: String) {{ org(id: $id, slug: $slug) {{ {ORG_FIELDS} }} }}");
    let variables = match global_id_of(name, "Org") {
        Some(_) => json!({ "id": name }),
        None => json!({ "slug": name }),
    };
    let data = api.graphql(&query, variables).await?;
    match &data["org"] {
        Value::Null => Err(Failure::refused(format!("no org {name:?} that this token can read"))),
        org => Ok(org.clone()),
    }
}

/// Every org the token reads, oldest first.
pub async fn all_orgs(api: &Api) -> Result<Vec<Value>, Failure> {
    let query = format!(
        "query($after: String) {{ orgs(first: 100, after: $after) {{ nodes {{ {ORG_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    pages(api, &query, json!({}), &["orgs"]).await
}

/// Every repo of the org with global id `org`.
pub async fn repos_of(api: &Api, org: &str) -> Result<Vec<Value>, Failure> {
    let query = format!(
        "query($org: ID, $after: String) {{ org(id: $org) {{ repos(first: 100, after: $after) {{ nodes {{ {REPO_FIELDS} }} \
         pageInfo {{ hasNextPage endCursor }} }} }} }}"
    );
    pages(api, &query, json!({ "org": org }), &["org", "repos"]).await
}

/// Every repo of every org, each with `path` (`org/repo`).
pub async fn every_repo(api: &Api) -> Result<Vec<Value>, Failure> {
    let mut repos = Vec::new();
    for org in all_orgs(api).await? {
        for mut repo in repos_of(api, org["id"].as_str().unwrap_or_default()).await? {
            repo["path"] = json!(format!(
                "{}/{}",
                org["slug"].as_str().unwrap_or_default(),
                repo["name"].as_str().unwrap_or_default()
            ));
            repos.push(repo);
        }
    }
    Ok(repos)
}

/// A repo by `ORG/REPO` or id, with `path`.
pub async fn repo(api: &Api, name: &str) -> Result<Value, Failure> {
    if global_id_of(name, "Repo").is_some() {
        let query = format!("query($id: ID!) {{ repo(id: $id) {{ {REPO_FIELDS} org {{ slug }} }} }}");
        let data = api.graphql(&query, json!({ "id": name })).await?;
        let mut repo = data["repo"].clone();
        if repo.is_null() {
            return Err(Failure::refused(format!("no repo {name:?} that this token can read")));
        }
        repo["path"] = json!(format!(
            "{}/{}",
            repo["org"]["slug"].as_str().unwrap_or_default(),
            repo["name"].as_str().unwrap_or_default()
        ));
        return Ok(repo);
    }
    let Some((org_name, repo_name)) = name.split_once('/') else {
        return Err(Failure::usage(format!(
            "{name:?}: name a repo as ORG/REPO (org slug, repo name) or by its id"
        )));
    };
    let org = org(api, org_name).await?;
    let repos = repos_of(api, org["id"].as_str().unwrap_or_default()).await?;
    let mut repo = repos
        .into_iter()
        .find(|r| r["name"].as_str() == Some(repo_name))
        .ok_or_else(|| Failure::refused(format!("org {org_name:?} has no repo {repo_name:?}")))?;
    repo["path"] = json!(name);
    Ok(repo)
}

/// The latest `limit` builds of `repo`, each with `repoPath`.
pub async fn builds_of(
    api: &Api,
    repo: &Value,
    limit: u32,
    status: Option<&str>,
    branch: Option<&str>,
) -> Result<Vec<Value>, Failure> {
    let query = format!(
        "query($repo: ID!, $first: Int, $status: BuildStatus, $branch: String) {{ repo(id: $repo) {{ \
         builds(first: $first, status: $status, branch: $branch) {{ nodes {{ {BUILD_FIELDS} }} }} }} }}"
    );
    let data = api
        .graphql(
            &query,
            json!({ "repo": repo["id"], "first": limit, "status": status, "branch": branch }),
        )
        .await?;
    let mut builds = data["repo"]["builds"]["nodes"].as_array().cloned().unwrap_or_default();
    for build in &mut builds {
        build["repoPath"] = repo["path"].clone();
    }
    Ok(builds)
}

/// The global id of the job called `name` in `build`.
pub async fn job(api: &Api, build: &str, name: &str) -> Result<String, Failure> {
    let jobs = jobs(api, build).await?;
    jobs.iter()
        .find(|j| j["jobId"].as_str() == Some(name))
        .and_then(|j| j["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            let names: Vec<&str> = jobs.iter().filter_map(|j| j["jobId"].as_str()).collect();
            Failure::refused(format!(
                "build {build} has no job {name:?}; its jobs: {}",
                names.join(", ")
            ))
        })
}

/// The jobs of `build` (id, jobId, status, logPath), in the build's order.
pub async fn jobs(api: &Api, build: &str) -> Result<Vec<Value>, Failure> {
    let data = api
        .graphql(
            "query($id: ID!) { build(id: $id) { status jobs { id jobId status logPath } } }",
            json!({ "id": build }),
        )
        .await?;
    if data["build"].is_null() {
        return Err(Failure::refused(format!("no build {build} that this token can read")));
    }
    Ok(data["build"]["jobs"].as_array().cloned().unwrap_or_default())
}

/// Every node of a connection at `path` in the answers to `query`, page after page.
async fn pages(api: &Api, query: &str, mut variables: Value, path: &[&str]) -> Result<Vec<Value>, Failure> {
    let mut nodes = Vec::new();
    loop {
        let data = api.graphql(query, variables.clone()).await?;
        let connection = path.iter().fold(&data, |value, field| &value[*field]);
        nodes.extend(connection["nodes"].as_array().cloned().unwrap_or_default());
        match connection["pageInfo"]["endCursor"].as_str() {
            Some(cursor) if connection["pageInfo"]["hasNextPage"] == json!(true) => {
                variables["after"] = json!(cursor);
            }
            _ => return Ok(nodes),
        }
    }
}
