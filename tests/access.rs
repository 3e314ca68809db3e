//! Tokens and roles over real HTTP and WebSocket: every request is authenticated, every query,
//! mutation and subscription authorised for its org; other orgs stay invisible.

use monkeyci_api::AuthConfig;
use monkeyci_crypto::TokenHash;
use monkeyci_tests::{table_rows, TestApp, WsEvent};
use serde_json::{json, Value};
use sqlx::PgPool;

pub(crate) const ADMIN: &str = "the-admin-token-of-this-test";

/// Data keys in `pool`, under a fixed master key.
pub(crate) fn keys(pool: &PgPool) -> monkeyci_commands::KeyStore {
    let master = monkeyci_crypto::MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
    monkeyci_commands::KeyStore::new(
        pool.clone(),
        monkeyci_crypto::MasterKeys::new(master, []).expect("keyring"),
    )
}

/// The app with authentication required and a master key for secrets.
pub(crate) async fn app(pool: PgPool) -> TestApp {
    let keys = keys(&pool);
    TestApp::spawn_with(pool, |c| {
        c.keys = Some(keys);
        c.auth = AuthConfig::Required {
            admin: Some(TokenHash::of(ADMIN)),
        }
    })
    .await
    .expect("app")
}

/// Sends a GraphQL request with `token` (if any) and returns the HTTP status and the body.
pub(crate) async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// A mutation that returns an id; panics with the response otherwise.
pub(crate) async fn id(app: &TestApp, token: &str, field: &str, input_type: &str, input: Value) -> String {
    let query = format!("mutation($input: {input_type}!) {{ {field}(input: $input) }}");
    let (_, body) = gql(app, Some(token), &query, json!({ "input": input })).await;
    body["data"][field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {body}"))
        .to_owned()
}

pub(crate) fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Issues an API token and returns it.
pub(crate) async fn token(app: &TestApp, as_token: &str, input: Value) -> String {
    let (_, body) = gql(
        app,
        Some(as_token),
        "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { id token expiresAt } }",
        json!({ "input": input }),
    )
    .await;
    body["data"]["createApiToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("createApiToken: {body}"))
        .to_owned()
}

/// An org made by the admin; its global id.
pub(crate) async fn admin_org(app: &TestApp, name: &str, slug: &str) -> String {
    id(
        app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": name, "slug": slug }),
    )
    .await
}

/// A repo of `org` made with `as_token`; its global id.
pub(crate) async fn repo_in(app: &TestApp, as_token: &str, org: &str, name: &str) -> String {
    id(
        app,
        as_token,
        "createRepo",
        "CreateRepoInput",
        json!({ "orgId": org, "name": name, "gitUrl": format!("https://git.example/{name}.git") }),
    )
    .await
}

/// Two orgs made by the admin, A and B, and two users of A: Ada, its owner, and Vic, a viewer,
/// each with a user token.
pub(crate) struct TwoOrgs {
    pub ada_token: String,
    pub vic_token: String,
    pub org_a: String,
    pub org_b: String,
}

pub(crate) async fn two_orgs(app: &TestApp) -> TwoOrgs {
    let ada = id(app, ADMIN, "createUser", "CreateUserInput", json!({ "name": "Ada" })).await;
    let vic = id(app, ADMIN, "createUser", "CreateUserInput", json!({ "name": "Vic" })).await;
    let org_a = admin_org(app, "A", "org-a").await;
    let org_b = admin_org(app, "B", "org-b").await;
    for (user, role) in [(&ada, "owner"), (&vic, "viewer")] {
        id(
            app,
            ADMIN,
            "addMember",
            "MemberInput",
            json!({ "orgId": org_a, "userId": user, "role": role }),
        )
        .await;
    }
    let ada_token = token(app, ADMIN, json!({ "name": "ada", "userId": ada })).await;
    let vic_token = token(app, ADMIN, json!({ "name": "vic", "userId": vic })).await;
    TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        org_b,
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn requests_without_a_valid_token_are_refused_and_change_nothing(pool: PgPool) {
    let app = app(pool.clone()).await;
    let before = table_rows(&pool, "events", "position").await.expect("events");
    let create = "mutation { createOrg(input: {name: \"Acme\", slug: \"acme\"}) }";

    let (missing, body) = gql(&app, None, create, json!({})).await;
    assert_eq!((missing, code(&body)), (401, Some("UNAUTHENTICATED")), "{body}");
    let (wrong, body) = gql(&app, Some("mci_not-a-token"), create, json!({})).await;
    assert_eq!((wrong, code(&body)), (401, Some("UNAUTHENTICATED")), "{body}");
    let log = app.http.get(app.url("/builds/x/jobs/y/log")).send().await.expect("log");
    assert_eq!(log.status(), 401);
    assert_eq!(
        table_rows(&pool, "events", "position").await.expect("events"),
        before,
        "nothing was appended"
    );

    // The WebSocket wants the token in connection_init.
    let mut ws = app.websocket().await.expect("ws");
    ws.send(json!({ "type": "connection_init" })).await.expect("init");
    assert!(matches!(ws.next().await.expect("close"), WsEvent::Closed(4403, _)));
    let mut ws = app.websocket().await.expect("ws");
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {ADMIN}") } }))
        .await
        .expect("init");
    assert_eq!(ws.message().await.expect("ack")["type"], "connection_ack");
}

#[sqlx::test(migrations = "../migrations")]
async fn roles_decide_what_a_caller_may_do_and_other_orgs_stay_invisible(pool: PgPool) {
    let app = app(pool.clone()).await;
    // The admin bootstraps: two users, two orgs, Ada owns A, Vic views A.
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        org_b,
    } = two_orgs(&app).await;
    let repo_b = repo_in(&app, ADMIN, &org_b, "b").await;
    assert!(ada_token.starts_with("mci_"));
    // Only hashes are stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE data::text LIKE '%' || $1 || '%'")
        .bind(&ada_token)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "the token is in no event");

    // Ada, the owner, adds a repo; Vic, a viewer, may read it but not build it.
    let repo_a = id(
        &app,
        &ada_token,
        "createRepo",
        "CreateRepoInput",
        json!({ "orgId": org_a, "name": "a", "gitUrl": "https://git.example/a.git" }),
    )
    .await;
    let trigger = "mutation($input: TriggerBuildInput!) { triggerBuild(input: $input) }";
    let (_, body) = gql(
        &app,
        Some(&vic_token),
        trigger,
        json!({ "input": { "repoId": repo_a } }),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    let (_, body) = gql(
        &app,
        Some(&vic_token),
        "query($id: ID!) { repo(id: $id) { name } }",
        json!({ "id": repo_a }),
    )
    .await;
    assert_eq!(body["data"]["repo"]["name"], "a", "{body}");
    let (_, body) = gql(
        &app,
        Some(&vic_token),
        "{ orgs { edges { node { slug } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["orgs"]["edges"],
        json!([{ "node": { "slug": "org-a" } }]),
        "{body}"
    );

    // An org token of A (member) builds in A and finds nothing of B.
    let org_token = token(
        &app,
        &ada_token,
        json!({ "name": "ci", "orgId": org_a, "role": "member" }),
    )
    .await;
    let build = id(
        &app,
        &org_token,
        "triggerBuild",
        "TriggerBuildInput",
        json!({ "repoId": repo_a }),
    )
    .await;
    let (_, body) = gql(
        &app,
        Some(&org_token),
        trigger,
        json!({ "input": { "repoId": repo_b } }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    let (_, body) = gql(
        &app,
        Some(&org_token),
        "query($id: ID!) { org(id: $id) { name } }",
        json!({ "id": org_b }),
    )
    .await;
    assert_eq!(body["data"]["org"], Value::Null, "{body}");
    let (_, body) = gql(
        &app,
        Some(&org_token),
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": repo_b }),
    )
    .await;
    assert_eq!(body["data"]["node"], Value::Null, "{body}");
    let rename = "mutation($input: RenameOrgInput!) { renameOrg(input: $input) }";
    let (_, body) = gql(
        &app,
        Some(&org_token),
        rename,
        json!({ "input": { "id": org_b, "name": "X" } }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    let (_, body) = gql(
        &app,
        Some(&org_token),
        rename,
        json!({ "input": { "id": org_a, "name": "X" } }),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "a member is no owner: {body}");

    // Every event records who did it.
    let actors: Vec<String> = sqlx::query_scalar("SELECT DISTINCT metadata->>'actor' FROM events ORDER BY 1")
        .fetch_all(&pool)
        .await
        .expect("actors");
    assert!(
        actors.contains(&"admin".to_owned()) && actors.iter().any(|a| a.starts_with("user:")),
        "{actors:?}"
    );
    assert!(actors.iter().any(|a| a.starts_with("token:")), "{actors:?}");

    // Subscriptions are authorised too: B's builds are not found for A's token.
    let mut ws = app.websocket().await.expect("ws");
    ws.send(json!({ "type": "connection_init", "payload": { "token": org_token } }))
        .await
        .expect("init");
    assert_eq!(ws.message().await.expect("ack")["type"], "connection_ack");
    ws.subscribe(
        "1",
        "subscription($id: ID!) { buildsUpdated(orgId: $id) { id } }",
        json!({ "id": org_b }),
    )
    .await
    .expect("subscribe");
    let refused = ws.message().await.expect("error");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "NOT_FOUND", "{refused}");
    ws.subscribe(
        "2",
        "subscription($id: ID!) { buildUpdated(buildId: $id) { status } }",
        json!({ "id": build }),
    )
    .await
    .expect("subscribe");
    let state = ws.message().await.expect("state");
    assert_eq!(state["payload"]["data"]["buildUpdated"]["status"], "QUEUED", "{state}");

    // A revoked token stops working at once.
    let (_, body) = gql(
        &app,
        Some(&vic_token),
        "mutation { createApiToken(input: {name: \"mine\"}) { id token } }",
        json!({}),
    )
    .await;
    let own = body["data"]["createApiToken"]["token"]
        .as_str()
        .expect("own token")
        .to_owned();
    let own_id = body["data"]["createApiToken"]["id"].as_str().expect("id").to_owned();
    id(
        &app,
        &own,
        "revokeApiToken",
        "RevokeApiTokenInput",
        json!({ "id": own_id }),
    )
    .await;
    let (status, _) = gql(&app, Some(&own), "{ orgs { edges { node { id } } } }", json!({})).await;
    assert_eq!(status, 401, "revoked");
}

/// The role each operation needs in the org it touches.
fn operations(org: &str, repo: &str, build: &str, user: &str) -> Vec<(&'static str, &'static str, String, Value)> {
    let m = |field: &str, input_type: &str| format!("mutation($input: {input_type}!) {{ {field}(input: $input) }}");
    vec![
        (
            "read the repo",
            "viewer",
            "query($id: ID!) { repo(id: $id) { name } }".into(),
            json!({ "id": repo }),
        ),
        (
            "read the build",
            "viewer",
            "query($id: ID!) { build(id: $id) { status } }".into(),
            json!({ "id": build }),
        ),
        (
            "trigger a build",
            "member",
            m("triggerBuild", "TriggerBuildInput"),
            json!({ "input": { "repoId": repo } }),
        ),
        (
            "cancel a build",
            "member",
            m("cancelBuild", "BuildInput"),
            json!({ "input": { "id": build } }),
        ),
        (
            "rename the repo",
            "member",
            m("updateRepo", "UpdateRepoInput"),
            json!({ "input": { "id": repo, "name": "renamed" } }),
        ),
        // Labels and where the code comes from decide which secrets a repo's builds get.
        (
            "relabel the repo",
            "owner",
            m("updateRepo", "UpdateRepoInput"),
            json!({ "input": { "id": repo, "labels": [{ "name": "env", "value": "prod" }] } }),
        ),
        (
            "point the repo elsewhere",
            "owner",
            m("updateRepo", "UpdateRepoInput"),
            json!({ "input": { "id": repo, "gitUrl": "https://git.example/other.git" } }),
        ),
        (
            "add a repo",
            "owner",
            m("createRepo", "CreateRepoInput"),
            json!({ "input": { "orgId": org, "name": "new", "gitUrl": "https://git.example/new.git" } }),
        ),
        (
            "create a webhook",
            "member",
            "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhookId } }".into(),
            json!({ "input": { "repoId": repo, "host": "GITHUB" } }),
        ),
        (
            "create a schedule",
            "member",
            m("createSchedule", "CreateScheduleInput"),
            json!({ "input": { "repoId": repo, "cron": "@daily" } }),
        ),
        (
            "create a parameter set",
            "owner",
            m("createParamSet", "CreateParamSetInput"),
            json!({ "input": { "orgId": org, "name": "p", "parameters": [{ "name": "A", "value": "b" }] } }),
        ),
        (
            "rename the org",
            "owner",
            m("renameOrg", "RenameOrgInput"),
            json!({ "input": { "id": org, "name": "Renamed" } }),
        ),
        (
            "add a member",
            "owner",
            m("addMember", "MemberInput"),
            json!({ "input": { "orgId": org, "userId": user, "role": "viewer" } }),
        ),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "member" => 2,
        "owner" => 3,
        _ => 0,
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_authorisation_matrix_holds_for_every_role_and_operation(pool: PgPool) {
    let app = app(pool.clone()).await;
    let org = id(
        &app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": "A", "slug": "matrix-a" }),
    )
    .await;
    let other_org = id(
        &app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": "B", "slug": "matrix-b" }),
    )
    .await;
    let newcomer = id(&app, ADMIN, "createUser", "CreateUserInput", json!({ "name": "New" })).await;
    // One user per role in A, and the owner of B, who has no role in A.
    let mut callers = Vec::new();
    for (role, target) in [
        ("viewer", &org),
        ("member", &org),
        ("owner", &org),
        ("owner of B", &other_org),
    ] {
        let user = id(&app, ADMIN, "createUser", "CreateUserInput", json!({ "name": role })).await;
        let role_in_target = role.split(' ').next().expect("role");
        let input = json!({ "orgId": target, "userId": user, "role": role_in_target });
        id(&app, ADMIN, "addMember", "MemberInput", input).await;
        callers.push((role, token(&app, ADMIN, json!({ "name": role, "userId": user })).await));
    }
    for (caller, token) in &callers {
        // A fresh repo and build per caller, so that one caller's changes do not decide the next.
        let repo = id(
            &app,
            ADMIN,
            "createRepo",
            "CreateRepoInput",
            json!({ "orgId": org, "name": "app", "gitUrl": "https://git.example/app.git" }),
        )
        .await;
        let build = id(
            &app,
            ADMIN,
            "triggerBuild",
            "TriggerBuildInput",
            json!({ "repoId": repo }),
        )
        .await;
        for (what, needed, query, variables) in operations(&org, &repo, &build, &newcomer) {
            let (status, body) = gql(&app, Some(token), &query, variables).await;
            assert_eq!(status, 200, "{caller} / {what}: {body}");
            let allowed = rank(caller) >= rank(needed);
            let found = body["data"]
                .as_object()
                .is_some_and(|d| d.values().all(|v| !v.is_null()));
            match (allowed, code(&body)) {
                (true, None) => assert!(found, "{caller} / {what}: {body}"),
                (true, Some(code)) => panic!("{caller} may {what}, got {code}: {body}"),
                // No role at all: as if it did not exist (queries answer null, mutations NOT_FOUND).
                (false, None) => assert!(rank(caller) == 0 && !found, "{caller} / {what}: {body}"),
                (false, Some(code)) => {
                    let expected = if rank(caller) == 0 { "NOT_FOUND" } else { "FORBIDDEN" };
                    assert_eq!(code, expected, "{caller} / {what}: {body}");
                }
            }
        }
        // The same over WebSocket: a subscription to the build's org.
        let mut ws = app.websocket().await.expect("ws");
        ws.init_with(json!({ "Authorization": format!("Bearer {token}") }))
            .await
            .expect("init");
        ws.subscribe(
            "1",
            "subscription($id: ID!) { buildUpdated(buildId: $id) { status } }",
            json!({ "id": build }),
        )
        .await
        .expect("subscribe");
        let first = ws.message().await.expect("first message");
        if rank(caller) == 0 {
            assert_eq!(
                first["payload"][0]["extensions"]["code"], "NOT_FOUND",
                "{caller}: {first}"
            );
        } else {
            assert_eq!(first["type"], "next", "{caller}: {first}");
        }
        // The raw events of the org, or of the build's stream, are the audit log's: owners only
        // (an org's events include its tokens' and secrets' events).
        let build_stream = format!("build-{}", monkeyci_tests::uuid_of(&build));
        for (n, (query, variables)) in [
            (
                "subscription($org: ID!) { events(orgId: $org, after: \"0.0\") { type } }",
                json!({ "org": org }),
            ),
            (
                "subscription($s: String!) { events(streamId: $s, after: \"0.0\") { type } }",
                json!({ "s": build_stream }),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("events-{n}");
            ws.subscribe(&id, query, variables).await.expect("subscribe");
            let first = loop {
                let message = ws.message().await.expect("first message");
                if message["id"] == id.as_str() {
                    break message;
                }
            };
            let expected = match rank(caller) {
                0 => Some("NOT_FOUND"),
                3 => None,
                _ => Some("FORBIDDEN"),
            };
            match expected {
                Some(code) => {
                    assert_eq!(first["type"], "error", "{caller} / {query}: {first}");
                    assert_eq!(first["payload"][0]["extensions"]["code"], code, "{caller}: {first}");
                }
                None => assert_eq!(first["type"], "next", "{caller} / {query}: {first}"),
            }
        }
    }
    // Nothing a refused caller tried is in the log: B's owner appended nothing.
    let by_outsider: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata->>'actor' = (SELECT 'user:' || id FROM users WHERE name = 'owner of B')",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(by_outsider, 0);
}

/// Every kind of node `node(id)` resolves besides orgs, repos, builds and jobs, with the id of
/// its parent.
const NODE: &str = "query($id: ID!) { node(id: $id) { id
    ... on Webhook { host repo { id } }
    ... on Schedule { cron repo { id } }
    ... on ParamSet { name parameterNames org { id } }
    ... on SshKey { description publicKey org { id } }
    ... on ApiToken { name kind role revoked expiresAt createdAt org { id } }
} }";

/// `node(id)` as `token`; panics on any error.
async fn node(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = gql(app, Some(token), NODE, json!({ "id": id })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "node({id}): {body}");
    body["data"]["node"].clone()
}

/// `createApiToken`; returns (id, token).
pub(crate) async fn token_with_id(app: &TestApp, as_token: &str, input: Value) -> (String, String) {
    let (_, body) = gql(
        app,
        Some(as_token),
        "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { id token } }",
        json!({ "input": input }),
    )
    .await;
    let created = &body["data"]["createApiToken"];
    match (created["id"].as_str(), created["token"].as_str()) {
        (Some(id), Some(token)) => (id.to_owned(), token.to_owned()),
        _ => panic!("createApiToken: {body}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn webhooks_schedules_param_sets_and_ssh_keys_are_nodes_with_their_parents(pool: PgPool) {
    use crate::secrets::{PRIVATE_KEY, PUBLIC_KEY};

    let app = app(pool.clone()).await;
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        org_b,
    } = two_orgs(&app).await;
    let repo = repo_in(&app, &ada_token, &org_a, "app").await;
    let (_, body) = gql(
        &app,
        Some(&ada_token),
        "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhookId } }",
        json!({ "input": { "repoId": repo, "host": "GITHUB" } }),
    )
    .await;
    let webhook = body["data"]["createWebhook"]["webhookId"]
        .as_str()
        .unwrap_or_else(|| panic!("createWebhook: {body}"))
        .to_owned();
    let schedule = id(
        &app,
        &ada_token,
        "createSchedule",
        "CreateScheduleInput",
        json!({ "repoId": repo, "cron": "@daily" }),
    )
    .await;
    let param_set = id(
        &app,
        &ada_token,
        "createParamSet",
        "CreateParamSetInput",
        json!({ "orgId": org_a, "name": "deploy", "parameters": [{ "name": "API_KEY", "value": "v4lue-of-the-key" }] }),
    )
    .await;
    let ssh_key = id(
        &app,
        &ada_token,
        "addSshKey",
        "AddSshKeyInput",
        json!({ "orgId": org_a, "description": "deploy key", "privateKey": PRIVATE_KEY, "publicKey": PUBLIC_KEY }),
    )
    .await;
    let outsider = token(&app, ADMIN, json!({ "name": "b", "orgId": org_b, "role": "owner" })).await;

    // The owner, a viewer and the admin read each of them, with its parent; values never show.
    for caller in [&ada_token, &vic_token, &ADMIN.to_owned()] {
        assert_eq!(
            node(&app, caller, &webhook).await,
            json!({ "id": webhook, "host": "GITHUB", "repo": { "id": repo } })
        );
        assert_eq!(
            node(&app, caller, &schedule).await,
            json!({ "id": schedule, "cron": "@daily", "repo": { "id": repo } })
        );
        assert_eq!(
            node(&app, caller, &param_set).await,
            json!({ "id": param_set, "name": "deploy", "parameterNames": ["API_KEY"], "org": { "id": org_a } })
        );
        assert_eq!(
            node(&app, caller, &ssh_key).await,
            json!({ "id": ssh_key, "description": "deploy key", "publicKey": PUBLIC_KEY, "org": { "id": org_a } })
        );
    }
    // The repo's parent chain answers `terraform import`: webhook → repo → org.
    let (_, body) = gql(
        &app,
        Some(&vic_token),
        "query($id: ID!) { node(id: $id) { ... on Webhook { repo { id org { id } } } } }",
        json!({ "id": webhook }),
    )
    .await;
    assert_eq!(body["data"]["node"]["repo"]["org"]["id"], json!(org_a), "{body}");

    // Another org's owner finds none of them.
    for id in [&webhook, &schedule, &param_set, &ssh_key] {
        assert_eq!(node(&app, &outsider, id).await, Value::Null, "{id}");
    }

    // Deleted: `null`, as if they never existed, for everyone.
    id(
        &app,
        &ada_token,
        "deleteWebhook",
        "DeleteInput",
        json!({ "id": webhook }),
    )
    .await;
    id(
        &app,
        &ada_token,
        "deleteSchedule",
        "DeleteInput",
        json!({ "id": schedule }),
    )
    .await;
    id(
        &app,
        &ada_token,
        "deleteParamSet",
        "DeleteInput",
        json!({ "id": param_set }),
    )
    .await;
    id(
        &app,
        &ada_token,
        "deleteSshKey",
        "DeleteInput",
        json!({ "id": ssh_key }),
    )
    .await;
    for caller in [&ada_token, &ADMIN.to_owned()] {
        for id in [&webhook, &schedule, &param_set, &ssh_key] {
            assert_eq!(node(&app, caller, id).await, Value::Null, "deleted {id}");
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn api_tokens_are_nodes_only_for_their_org_owners_or_user_and_owners_list_them(pool: PgPool) {
    let app = app(pool.clone()).await;
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        org_b,
    } = two_orgs(&app).await;
    let (ci, ci_token) = token_with_id(
        &app,
        &ada_token,
        json!({ "name": "terraform", "orgId": org_a, "role": "member" }),
    )
    .await;
    let (bot, _) = token_with_id(
        &app,
        &ada_token,
        json!({ "name": "bot", "orgId": org_a, "role": "viewer" }),
    )
    .await;
    let (vic_own, _) = token_with_id(&app, &vic_token, json!({ "name": "vic's laptop" })).await;
    let outsider = token(&app, ADMIN, json!({ "name": "b", "orgId": org_b, "role": "owner" })).await;

    // The owner and the admin read an org token, with its org; never its secret or hash.
    for caller in [&ada_token, &ADMIN.to_owned()] {
        let found = node(&app, caller, &ci).await;
        assert_eq!(found["id"], json!(ci), "{found}");
        assert_eq!(found["name"], "terraform", "{found}");
        assert_eq!(found["kind"], "org", "{found}");
        assert_eq!(found["role"], "member", "{found}");
        assert_eq!(found["revoked"], false, "{found}");
        assert_eq!(found["org"]["id"], json!(org_a), "{found}");
        assert!(
            found["expiresAt"].is_string() && found["createdAt"].is_string(),
            "{found}"
        );
    }
    let (_, body) = gql(
        &app,
        Some(ADMIN),
        "{ __type(name: \"ApiToken\") { fields { name } } }",
        json!({}),
    )
    .await;
    let fields: Vec<&str> = body["data"]["__type"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("introspection: {body}"))
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["id", "name", "kind", "role", "org", "expiresAt", "revoked", "createdAt"],
        "{body}"
    );

    // Not an owner of its org (a viewer, the member token itself, another org's owner): `null`,
    // exactly like a token that does not exist.
    for caller in [&vic_token, &ci_token, &outsider] {
        assert_eq!(node(&app, caller, &ci).await, Value::Null);
    }
    let unknown = monkeyci_api::ids::encode(monkeyci_api::ids::Kind::Token, uuid::Uuid::now_v7());
    assert_eq!(node(&app, &ada_token, unknown.as_str()).await, Value::Null);

    // A user token: its user and the admin see it; the owner of the user's org does not.
    let own = node(&app, &vic_token, &vic_own).await;
    assert_eq!(
        (&own["kind"], &own["role"], &own["org"]),
        (&json!("user"), &Value::Null, &Value::Null),
        "{own}"
    );
    assert_eq!(node(&app, ADMIN, &vic_own).await["name"], "vic's laptop");
    assert_eq!(node(&app, &ada_token, &vic_own).await, Value::Null);

    // Owners list the org's tokens, oldest first; members and viewers are refused.
    let list = "query($id: ID!) { org(id: $id) { apiTokens { id name role } } }";
    let (_, body) = gql(&app, Some(&ada_token), list, json!({ "id": org_a })).await;
    assert_eq!(
        body["data"]["org"]["apiTokens"],
        json!([
            { "id": ci, "name": "terraform", "role": "member" },
            { "id": bot, "name": "bot", "role": "viewer" },
        ]),
        "{body}"
    );
    for caller in [&ci_token, &vic_token] {
        let (_, body) = gql(&app, Some(caller), list, json!({ "id": org_a })).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    }

    // Revoked: no longer listed, still a node, with `revoked: true`.
    id(
        &app,
        &ada_token,
        "revokeApiToken",
        "RevokeApiTokenInput",
        json!({ "id": bot }),
    )
    .await;
    let (_, body) = gql(&app, Some(&ada_token), list, json!({ "id": org_a })).await;
    assert_eq!(
        body["data"]["org"]["apiTokens"],
        json!([{ "id": ci, "name": "terraform", "role": "member" }]),
        "{body}"
    );
    let revoked = node(&app, &ada_token, &bot).await;
    assert_eq!(
        (&revoked["id"], &revoked["revoked"]),
        (&json!(bot), &json!(true)),
        "{revoked}"
    );
}

/// A token is refused or accepted from the log alone: neither a made-up token nor a token made or
/// revoked a moment ago waits for the read models (stopped here, so any wait would end in "cannot
/// check the token right now").
#[sqlx::test(migrations = "../migrations")]
async fn tokens_are_decided_without_waiting_for_the_read_models(pool: PgPool) {
    let keys = keys(&pool);
    let mut app = TestApp::spawn_with(pool, |c| {
        c.keys = Some(keys);
        c.auth = AuthConfig::Required {
            admin: Some(TokenHash::of(ADMIN)),
        };
        c.read_your_writes_timeout = std::time::Duration::from_secs(2);
    })
    .await
    .expect("app");
    let org = admin_org(&app, "Acme", "acme").await;
    let (_, before) = token_with_id(&app, ADMIN, json!({ "name": "ci", "orgId": org, "role": "owner" })).await;
    app.core.stop().await;
    // The read models fall behind the log from here on.
    id(
        &app,
        ADMIN,
        "renameOrg",
        "RenameOrgInput",
        json!({ "id": org, "name": "Acme Inc" }),
    )
    .await;

    let rename = |name: &str| {
        (
            "mutation($input: RenameOrgInput!) { renameOrg(input: $input) }",
            json!({ "input": { "id": org, "name": name } }),
        )
    };
    // Made up: random text, an old-style token, a token with an unknown id, a known id with
    // another secret.
    let (query, variables) = rename("Hijacked");
    let unknown_id = format!("mci_{}{}", "A".repeat(22), &before[26..]);
    let other_secret = format!("{}{}", &before[..26], "B".repeat(43));
    for made_up in [
        "not-a-token".to_owned(),
        format!("mci_{}", "x".repeat(43)),
        unknown_id,
        other_secret,
    ] {
        let (status, body) = gql(&app, Some(&made_up), query, variables.clone()).await;
        assert_eq!(status, 401, "{made_up}: {body}");
        assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{made_up}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("not valid"),
            "refused at once, not after a wait: {body}"
        );
    }
    // Made before the read models stopped, or just now: works at once.
    let (query, variables) = rename("Acme 2");
    let (status, body) = gql(&app, Some(&before), query, variables).await;
    assert_eq!((status, code(&body)), (200, None), "{body}");
    let (fresh_id, fresh) = token_with_id(&app, ADMIN, json!({ "name": "new", "orgId": org, "role": "owner" })).await;
    let (query, variables) = rename("Acme 3");
    let (status, body) = gql(&app, Some(&fresh), query, variables).await;
    assert_eq!((status, code(&body)), (200, None), "{body}");
    // Revoked just now: refused at once.
    id(
        &app,
        ADMIN,
        "revokeApiToken",
        "RevokeApiTokenInput",
        json!({ "id": fresh_id }),
    )
    .await;
    let (query, variables) = rename("Acme 4");
    let (status, body) = gql(&app, Some(&fresh), query, variables).await;
    assert_eq!(status, 401, "{body}");
}

/// Tokens made before tokens carried their id still work, found by their hash.
#[sqlx::test(migrations = "../migrations")]
async fn tokens_from_before_ids_were_embedded_still_work(pool: PgPool) {
    let app = app(pool).await;
    let org = admin_org(&app, "Acme", "acme").await;
    let old = format!("mci_{}", "o".repeat(43));
    app.core
        .commands
        .create_token(
            &monkeyci_tests::user(),
            monkeyci_commands::CreateToken {
                token_id: None,
                name: "from before".into(),
                subject: monkeyci_domain::access::TokenSubject::Org {
                    org_id: monkeyci_domain::OrgId::from_uuid(monkeyci_tests::uuid_of(&org).parse().expect("uuid")),
                    role: monkeyci_domain::access::Role::Viewer,
                },
                hash: TokenHash::of(&old).as_str().to_owned(),
                expires_at: chrono::Utc::now() + chrono::Duration::days(1),
            },
        )
        .await
        .expect("token");
    // Such a token is old by definition: the read models know it.
    app.core.caught_up().await.expect("caught up");
    let (status, body) = gql(&app, Some(&old), "{ orgs { edges { node { slug } } } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["orgs"]["edges"],
        json!([{ "node": { "slug": "acme" } }]),
        "{body}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_org_tells_each_caller_its_own_role(pool: PgPool) {
    let app = app(pool).await;
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        ..
    } = two_orgs(&app).await;
    let member = token(&app, ADMIN, json!({ "name": "ci", "orgId": org_a, "role": "member" })).await;
    let query = "query($id: ID!) { org(id: $id) { myRole } }";
    for (token, role) in [
        (ADMIN, "owner"),
        (ada_token.as_str(), "owner"),
        (member.as_str(), "member"),
        (vic_token.as_str(), "viewer"),
    ] {
        let (status, body) = gql(&app, Some(token), query, json!({ "id": org_a })).await;
        assert_eq!((status, &body["data"]["org"]["myRole"]), (200, &json!(role)), "{body}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn owners_list_an_orgs_members_and_no_other_role_does(pool: PgPool) {
    let app = app(pool).await;
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        ..
    } = two_orgs(&app).await;
    let member = token(&app, ADMIN, json!({ "name": "ci", "orgId": org_a, "role": "member" })).await;
    let query = "query($id: ID!) { org(id: $id) { members { name role userId } } }";
    for token in [ADMIN, ada_token.as_str()] {
        let (status, body) = gql(&app, Some(token), query, json!({ "id": org_a })).await;
        assert_eq!(status, 200, "{body}");
        let members = body["data"]["org"]["members"].as_array().expect("members");
        let named: Vec<(&str, &str)> = members
            .iter()
            .map(|m| (m["name"].as_str().unwrap_or(""), m["role"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(named, [("Ada", "owner"), ("Vic", "viewer")], "{body}");
        assert!(members
            .iter()
            .all(|m| m["userId"].as_str().is_some_and(|id| !id.is_empty())));
    }
    for token in [member.as_str(), vic_token.as_str()] {
        let (_, body) = gql(&app, Some(token), query, json!({ "id": org_a })).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    }
}
