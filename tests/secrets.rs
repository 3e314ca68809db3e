//! An org's parameter sets and ssh keys, end to end: created over the API (owners only), stored
//! only as ciphertext, handed to the jobs of the repos their filters choose, masked in job output
//! and destroyed with their data key.

use std::path::Path;
use std::sync::Arc;

use monkeyci_runner::CancellationToken;
use monkeyci_storage::{BlobStore, FsStore};
use monkeyci_tests::{table_rows, TestApp};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::access::{app, code, id, keys, token, ADMIN};
use crate::builds::{repo_with, settings_with, spawn_runner};

const PASSWORD: &str = "s3cr3t-Pa55w0rd-4711";
pub(crate) const PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDUJxbXc6lLbkxLKVmbzN3W3C1CQqQ4T8qZVv1Y2XkOqAAAAJhcF3xTXBd8\n-----END OPENSSH PRIVATE KEY-----\n";
pub(crate) const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINQnFtdzqUtuTEspWZvM3dbcLUJCpDhPyplW/VjZeQ6o ci@acme";

async fn big_pool(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(30)
        .connect_with(options)
        .await
        .expect("pool")
}

/// A GraphQL request with `token`; the body.
async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    crate::access::gql(app, Some(token), query, variables).await.1
}

fn rule(pairs: &[(&str, &str)]) -> Value {
    json!({ "labels": pairs.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect::<Vec<_>>() })
}

/// Everything the database holds about secrets and their use, as text.
async fn database_text(pool: &PgPool) -> String {
    let mut text = String::new();
    for (table, order) in [
        ("events", "position"),
        ("param_sets", "id"),
        ("ssh_keys", "id"),
        ("data_keys", "owner_id"),
        ("idempotency_keys", "key"),
        ("job_log_lines", "seq"),
        ("builds", "id"),
        ("jobs", "job_id"),
    ] {
        let rows = table_rows(pool, table, order).await.expect(table);
        text.push_str(&serde_json::to_string(&rows).expect("json"));
    }
    text
}

/// Creates a parameter set as the admin.
async fn param_set(app: &TestApp, input: Value) {
    id(app, ADMIN, "createParamSet", "CreateParamSetInput", input).await;
}

/// A runner with the test's key store, working in `workspace`; cancel the token to stop it.
async fn start_runner(app: &TestApp, pool: &PgPool, workspace: &Path, blobs: Arc<dyn BlobStore>) -> CancellationToken {
    let mut settings = settings_with(workspace, "r1", blobs);
    settings.keys = Some(keys(pool));
    spawn_runner(app, settings).await
}

/// The org `acme`, made by the admin, with a user who is a member; (org id, the member's token).
async fn acme_with_member(app: &TestApp) -> (String, String) {
    let org = id(
        app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": "Acme", "slug": "acme" }),
    )
    .await;
    let user = id(app, ADMIN, "createUser", "CreateUserInput", json!({ "name": "Mem" })).await;
    id(
        app,
        ADMIN,
        "addMember",
        "MemberInput",
        json!({ "orgId": org, "userId": user, "role": "member" }),
    )
    .await;
    (org, token(app, ADMIN, json!({ "name": "mem", "userId": user })).await)
}

/// Waits for `build` to succeed; the log lines of its first job.
async fn finished_log(app: &TestApp, build: &str) -> Vec<String> {
    let query = "query($id: ID!) { build(id: $id) { status message jobs { id log { text } } } }";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let done = loop {
        let body = gql(app, ADMIN, query, json!({ "id": build })).await;
        let status = body["data"]["build"]["status"].as_str().unwrap_or_default().to_owned();
        if ["SUCCEEDED", "FAILED", "ERRORED", "CANCELED"].contains(&status.as_str()) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the build did not finish: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(done["data"]["build"]["status"], "SUCCEEDED", "{done}");
    done["data"]["build"]["jobs"][0]["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|l| l["text"].as_str().map(str::to_owned))
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn org_parameters_reach_the_jobs_of_chosen_repos_masked_in_their_output(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = big_pool(options).await;
    let app = app(pool.clone()).await;
    let workspace = tempfile::tempdir().expect("workspace");
    let blobs: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&app, &pool, workspace.path(), blobs.clone()).await;

    let git = repo_with(
        "build.yaml",
        r#"
- id: show
  script:
    - echo "password=$DB_PASSWORD"
    - echo "greeting=$GREETING"
    - echo "other=${OTHER:-unset}"
    - echo "reversed=$(echo "$DB_PASSWORD" | rev)"
"#,
    );
    let org = id(
        &app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": "Acme", "slug": "acme" }),
    )
    .await;
    let repo = id(
        &app,
        ADMIN,
        "createRepo",
        "CreateRepoInput",
        json!({ "orgId": org, "name": "web", "gitUrl": format!("file://{}", git.path().display()),
                "labels": [{ "name": "team", "value": "web" }, { "name": "env", "value": "prod" }] }),
    )
    .await;
    // Chosen: team=web AND env=prod. Not chosen: team=ops.
    param_set(&app, json!({ "orgId": org, "name": "web prod", "filter": [rule(&[("team", "web"), ("env", "prod")])],
                "parameters": [{ "name": "DB_PASSWORD", "value": PASSWORD }, { "name": "GREETING", "value": "from the set" }] })).await;
    param_set(
        &app,
        json!({ "orgId": org, "name": "ops", "filter": [rule(&[("team", "ops")])],
                "parameters": [{ "name": "OTHER", "value": "not for web" }] }),
    )
    .await;
    let build = id(
        &app,
        ADMIN,
        "triggerBuild",
        "TriggerBuildInput",
        json!({ "repoId": repo, "params": [{ "name": "GREETING", "value": "from the build" }] }),
    )
    .await;

    let lines = finished_log(&app, &build).await;
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert!(lines.contains(&"password=***"), "{lines:?}");
    assert!(
        lines.contains(&"greeting=from the build"),
        "build parameters win: {lines:?}"
    );
    assert!(
        lines.contains(&"other=unset"),
        "a set for other repos stays away: {lines:?}"
    );
    // Masking catches the value as printed, not every transformation of it.
    let reversed: String = PASSWORD.chars().rev().collect();
    assert!(lines.contains(&format!("reversed={reversed}").as_str()), "{lines:?}");

    // The plaintext is nowhere: not in the log, the read models, the stored output or the
    // archived log in blob storage.
    app.core.caught_up().await.expect("caught up");
    assert!(!database_text(&pool).await.contains(PASSWORD));
    let archived = blobs.list("").await.expect("list");
    assert!(!archived.is_empty());
    for (key, _) in archived {
        let bytes = blobs.get_bytes(&key).await.expect("get").expect("exists");
        assert!(!String::from_utf8_lossy(&bytes).contains(PASSWORD), "{key:?}");
    }
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn only_owners_manage_secrets_values_never_come_back_and_deleting_shreds_them(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (org, token) = acme_with_member(&app).await;
    let other = id(
        &app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": "Other", "slug": "other" }),
    )
    .await;

    let create = "mutation($input: CreateParamSetInput!) { createParamSet(input: $input) }";
    let input = json!({ "input": { "orgId": org, "name": "deploy", "parameters": [{ "name": "DB_PASSWORD", "value": PASSWORD }] } });
    assert_eq!(code(&gql(&app, &token, create, input.clone()).await), Some("FORBIDDEN"));
    let elsewhere = json!({ "input": { "orgId": other, "name": "x", "parameters": [] } });
    assert_eq!(code(&gql(&app, &token, create, elsewhere).await), Some("NOT_FOUND"));
    let bad = json!({ "input": { "orgId": org, "name": "x", "parameters": [{ "name": "NOT-A-NAME", "value": "v" }] } });
    assert_eq!(code(&gql(&app, ADMIN, create, bad).await), Some("BAD_USER_INPUT"));

    let set = gql(&app, ADMIN, create, input).await["data"]["createParamSet"]
        .as_str()
        .expect("set id")
        .to_owned();
    let key = id(
        &app,
        ADMIN,
        "addSshKey",
        "AddSshKeyInput",
        json!({ "orgId": org, "description": "deploy key", "privateKey": PRIVATE_KEY, "publicKey": PUBLIC_KEY }),
    )
    .await;
    let not_a_key = gql(
        &app,
        ADMIN,
        "mutation($input: AddSshKeyInput!) { addSshKey(input: $input) }",
        json!({ "input": { "orgId": org, "description": "x", "privateKey": "hunter2", "publicKey": PUBLIC_KEY } }),
    )
    .await;
    assert_eq!(code(&not_a_key), Some("BAD_USER_INPUT"), "{not_a_key}");

    // A member reads names, filters and public keys; no field carries a value.
    let listed = gql(
        &app,
        &token,
        "query($slug: String!) { org(slug: $slug) { paramSets { name parameterNames filter { labels { name value } } } sshKeys { description publicKey } } }",
        json!({ "slug": "acme" }),
    )
    .await;
    let text = listed.to_string();
    assert_eq!(
        listed["data"]["org"]["paramSets"][0]["parameterNames"],
        json!(["DB_PASSWORD"]),
        "{listed}"
    );
    assert_eq!(listed["data"]["org"]["sshKeys"][0]["publicKey"], PUBLIC_KEY, "{listed}");
    assert!(!text.contains(PASSWORD) && !text.contains("PRIVATE KEY"), "{text}");

    app.core.caught_up().await.expect("caught up");
    let stored = database_text(&pool).await;
    assert!(!stored.contains(PASSWORD), "the password is stored in the clear");
    assert!(!stored.contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"));

    // Deleting destroys the data keys; a member may not delete.
    let delete_set = "mutation($input: DeleteInput!) { deleteParamSet(input: $input) }";
    assert_eq!(
        code(&gql(&app, &token, delete_set, json!({ "input": { "id": set } })).await),
        Some("FORBIDDEN")
    );
    id(&app, ADMIN, "deleteParamSet", "DeleteInput", json!({ "id": set })).await;
    id(&app, ADMIN, "deleteSshKey", "DeleteInput", json!({ "id": key })).await;
    let keys_left: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(keys_left, 0);
    let after = gql(
        &app,
        ADMIN,
        "query($slug: String!) { org(slug: $slug) { paramSets { name } sshKeys { description } } }",
        json!({ "slug": "acme" }),
    )
    .await;
    assert_eq!(
        after["data"]["org"],
        json!({ "paramSets": [], "sshKeys": [] }),
        "{after}"
    );
    assert_eq!(
        code(&gql(&app, ADMIN, delete_set, json!({ "input": { "id": set } })).await),
        Some("NOT_FOUND")
    );
}

/// What a member must not be able to do to reach secrets an owner scoped away from them: label a
/// repo (or point it at other code) so that a set's filter chooses it, or build a branch of
/// theirs with a set meant for the main branch and tags.
#[sqlx::test(migrations = "../migrations")]
async fn a_member_cannot_steer_owner_secrets_to_their_repo_or_branch(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = big_pool(options).await;
    let app = app(pool.clone()).await;
    let workspace = tempfile::tempdir().expect("workspace");
    let blobs: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&app, &pool, workspace.path(), blobs).await;
    let (org, member) = acme_with_member(&app).await;
    let prod = "pr0d-T0ken-only-for-main";
    param_set(
        &app,
        json!({ "orgId": org, "name": "prod", "filter": [rule(&[("env", "prod")])], "protected": true,
                "parameters": [{ "name": "PROD_TOKEN", "value": prod }] }),
    )
    .await;
    param_set(
        &app,
        json!({ "orgId": org, "name": "shared", "filter": [rule(&[("env", "prod")])],
                "parameters": [{ "name": "SHARED", "value": "for-every-branch" }] }),
    )
    .await;
    let git = repo_with(
        "build.yaml",
        "- id: show\n  script:\n    - echo \"prod=$(echo \"${PROD_TOKEN:-unset}\" | rev)\"\n    - echo \"shared=${SHARED:-unset}\"\n",
    );
    let git_url = format!("file://{}", git.path().display());

    // A member adds no repo and labels none: labels, git URL and main branch pick the secrets.
    let labelled = json!({ "orgId": org, "name": "mine", "gitUrl": git_url,
                           "labels": [{ "name": "env", "value": "prod" }] });
    let refused = gql(
        &app,
        &member,
        "mutation($input: CreateRepoInput!) { createRepo(input: $input) }",
        json!({ "input": labelled }),
    )
    .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"), "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("decide which of the org's secrets"), "{message}");
    let plain = id(
        &app,
        ADMIN,
        "createRepo",
        "CreateRepoInput",
        json!({ "orgId": org, "name": "plain", "gitUrl": git_url }),
    )
    .await;
    let update = "mutation($input: UpdateRepoInput!) { updateRepo(input: $input) }";
    for change in [
        json!({ "labels": [{ "name": "env", "value": "prod" }] }),
        json!({ "gitUrl": "file:///somewhere/else" }),
        json!({ "mainBranch": "feature" }),
    ] {
        let mut input = change.clone();
        input["id"] = json!(plain);
        let body = gql(&app, &member, update, json!({ "input": input })).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{change}: {body}");
    }
    let renamed = gql(
        &app,
        &member,
        update,
        json!({ "input": { "id": plain, "name": "renamed" } }),
    )
    .await;
    assert!(renamed["errors"].is_null(), "a member renames: {renamed}");
    let repos = gql(
        &app,
        ADMIN,
        "query($slug: String!) { org(slug: $slug) { repos { edges { node { name gitUrl mainBranch labels { name } } } } } }",
        json!({ "slug": "acme" }),
    )
    .await;
    assert_eq!(
        repos["data"]["org"]["repos"]["edges"],
        json!([{ "node": { "name": "renamed", "gitUrl": git_url, "mainBranch": "main", "labels": [] } }]),
        "nothing a refusal touched changed: {repos}"
    );

    // The owner's labelled repo: a member's branch gets the unprotected set only; the main branch
    // and tags get both.
    let p = git.path();
    monkeyci_tests::git(p, &["tag", "v1.0"]);
    monkeyci_tests::git(p, &["checkout", "--quiet", "-b", "feature/mine"]);
    std::fs::write(p.join("app.txt"), "the member's change\n").expect("change");
    monkeyci_tests::git(p, &["commit", "--quiet", "-am", "mine"]);
    let repo = id(
        &app,
        ADMIN,
        "createRepo",
        "CreateRepoInput",
        json!({ "orgId": org, "name": "web", "gitUrl": git_url, "labels": [{ "name": "env", "value": "prod" }] }),
    )
    .await;
    let reversed: String = prod.chars().rev().collect();
    for (target, gets_prod) in [
        (json!({ "branch": "feature/mine" }), false),
        (json!({}), true),
        (json!({ "tag": "v1.0" }), true),
    ] {
        let mut input = target.clone();
        input["repoId"] = json!(repo);
        let build = id(&app, &member, "triggerBuild", "TriggerBuildInput", input).await;
        let lines = finished_log(&app, &build).await;
        let expected = if gets_prod {
            format!("prod={reversed}")
        } else {
            "prod=tesnu".to_owned()
        };
        assert!(lines.contains(&expected), "{target}: {lines:?}");
        assert!(lines.contains(&"shared=***".to_owned()), "{target}: {lines:?}");
    }
    // The API shows which sets are protected.
    let sets = gql(
        &app,
        &member,
        "query($slug: String!) { org(slug: $slug) { paramSets { name protected } } }",
        json!({ "slug": "acme" }),
    )
    .await;
    assert_eq!(
        sets["data"]["org"]["paramSets"],
        json!([{ "name": "prod", "protected": true }, { "name": "shared", "protected": false }]),
        "{sets}"
    );
    stop.cancel();
}
