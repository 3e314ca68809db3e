//! What one request may ask of the API: query cost, depth, root fields; introspection always
//! passes; the schema file matches the code; the GraphQL console works with no network.

use std::ffi::OsStr;

use monkeyci_tests::TestApp;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{app, gql, id, ADMIN};

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// An org made by the admin and a viewer token of it.
async fn org_with_viewer(app: &TestApp, name: &str, slug: &str) -> (String, String) {
    let org = id(
        app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": name, "slug": slug }),
    )
    .await;
    let viewer = crate::access::token(app, ADMIN, json!({ "name": "v", "orgId": org, "role": "viewer" })).await;
    (org, viewer)
}

/// The query a web UI's org page makes: 20 repos, each with its 5 latest builds and their jobs.
const ORG_PAGE: &str = "query($slug: String!) { org(slug: $slug) { id name repos(first: 20) { edges { node { id name
    builds(first: 5) { edges { node { id status branch commit queuedAt finishedAt
        jobs { jobId status } } } pageInfo { hasNextPage } } } } pageInfo { hasNextPage endCursor } } } }";

/// The queries of a build page: the build with its jobs and their first 1,000 log lines each,
/// or one job's.
const BUILD_PAGE: &str = "query($id: ID!) { build(id: $id) { id status branch commit message startedAt finishedAt
    jobCounts { total succeeded failed } artifacts { id size }
    jobs { id jobId status dependencies message startedAt finishedAt logPath
        log(first: 1000) { offset at stream text } } } }";
const JOB_LOG: &str = "query($id: ID!) { job(id: $id) { jobId status log(first: 1000) { offset at stream text } } }";

#[sqlx::test(migrations = "../migrations")]
async fn costly_queries_are_refused_with_their_cost_and_a_web_uis_queries_pass(pool: PgPool) {
    let app = app(pool).await;
    let (org, viewer) = org_with_viewer(&app, "A", "cost-a").await;
    let nested = "org(slug: \"cost-a\") { repos(first: 100) { edges { node { builds(first: 100) { edges { node { jobs { log(first: 5000) { text } } } } } } } } }";
    let aliases: String = (0..90).map(|n| format!("a{n}: {nested} ")).collect();

    // The abuse first: one nested query, and 90 aliases of it, each far over the limit.
    for query in [format!("{{ {nested} }}"), format!("{{ {aliases} }}")] {
        let (status, body) = gql(&app, Some(&viewer), &query, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"], Value::Null, "{body}");
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        let cost = body["errors"][0]["extensions"]["measured"].as_u64().expect("cost");
        assert!(cost > 50_000 * 1000, "{body}");
        assert!(
            message.contains(&format!("costs {cost}")) && message.contains("50000"),
            "{message}"
        );
    }
    // Cheap root fields, but too many of them.
    let many: String = (0..51).map(|n| format!("t{n}: __typename ")).collect();
    let (_, body) = gql(&app, Some(&viewer), &format!("{{ {many} }}"), json!({})).await;
    assert_eq!(body["errors"][0]["extensions"]["limit"], 50, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("51 root fields"),
        "{body}"
    );

    // What a web UI asks for passes.
    let (_, body) = gql(&app, Some(&viewer), ORG_PAGE, json!({ "slug": "cost-a" })).await;
    assert_eq!(body["errors"], Value::Null, "{body}");
    assert_eq!(body["data"]["org"]["name"], "A");
    let repo = crate::access::repo_in(&app, ADMIN, &org, "app").await;
    let build = id(
        &app,
        ADMIN,
        "triggerBuild",
        "TriggerBuildInput",
        json!({ "repoId": repo }),
    )
    .await;
    let (_, body) = gql(&app, Some(&viewer), BUILD_PAGE, json!({ "id": build })).await;
    assert_eq!(body["errors"], Value::Null, "{body}");
    assert_eq!(body["data"]["build"]["id"], build.as_str());
    let (_, body) = gql(&app, Some(&viewer), JOB_LOG, json!({ "id": "Sm9iOm5vbmU" })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert!(
        !body["errors"][0]["message"].as_str().unwrap_or("").contains("costs"),
        "{body}"
    );
    app.stop().await;
}

/// An introspection query of the shape graphql-js's `getIntrospectionQuery` builds (every
/// option on), which GraphiQL, code generators and API fuzzers send: 14 levels deep.
const FULL_INTROSPECTION: &str = "query Introspect { __schema { description queryType { name } mutationType { name }
  subscriptionType { name } types { ...Full } directives { name description isRepeatable locations
  args(includeDeprecated: true) { ...Value } } } }
fragment Full on __Type { kind name description specifiedByURL
  fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...Value } type { ...Ref }
    isDeprecated deprecationReason }
  inputFields(includeDeprecated: true) { ...Value } interfaces { ...Ref }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...Ref } }
fragment Value on __InputValue { name description type { ...Ref } defaultValue isDeprecated deprecationReason }
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } } }";

#[sqlx::test(migrations = "../migrations")]
async fn introspection_passes_and_cannot_be_made_to_multiply(pool: PgPool) {
    let app = app(pool).await;
    let (_, viewer) = org_with_viewer(&app, "A", "intro-a").await;

    let runaway =
        "{ __type(name: \"Org\") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }";
    let (_, refused) = gql(&app, Some(&viewer), runaway, json!({})).await;
    let (_, full) = gql(&app, Some(&viewer), FULL_INTROSPECTION, json!({})).await;
    let (_, anonymous) = gql(&app, None, FULL_INTROSPECTION, json!({})).await;

    assert_eq!(code(&refused), Some("BAD_USER_INPUT"), "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nests 4 lists"),
        "{refused}"
    );
    assert_eq!(full["errors"], Value::Null, "{full}");
    let types = full["data"]["__schema"]["types"].as_array().expect("types");
    assert!(types.iter().any(|t| t["name"] == "Build"), "{full}");
    // Introspection needs a token like everything else.
    assert_eq!(code(&anonymous), Some("UNAUTHENTICATED"), "{anonymous}");
    app.stop().await;
}

#[test]
fn monkeyci_schema_prints_the_schema_the_repository_holds() {
    let output = std::process::Command::new(monkeyci_tests::monkeyci_binary().expect("binary"))
        .arg("schema")
        .output()
        .expect("run monkeyci schema");

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql")).expect("schema.graphql");
    assert!(printed == committed, "`monkeyci schema` differs from schema.graphql");
    assert!(printed.contains("type Build implements Node"), "{printed}");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_graphql_console_runs_a_query_in_a_browser_without_any_other_host(pool: PgPool) {
    let app = app(pool).await;
    let (_, viewer) = org_with_viewer(&app, "Console Org", "console").await;

    let outcome = browse_console(&app, &viewer).await;

    // graphql-js's own introspection query passed, as GraphiQL sent it and as the script did.
    assert_eq!(outcome["introspection"]["errors"], Value::Null, "{outcome}");
    assert!(
        outcome["introspection"]["typeCount"].as_u64().unwrap_or(0) > 20,
        "{outcome}"
    );
    // The page ran the query with the token typed into its field.
    assert!(
        outcome["result"].as_str().unwrap_or("").contains("Console Org"),
        "{outcome}"
    );
    // It asked nothing of any other host: every request it made went to this server.
    assert_eq!(outcome["foreign"], json!([]), "{outcome}");
    assert!(outcome["requests"].as_u64().unwrap_or(0) >= 6, "{outcome}");
    // Nothing broke, nothing was refused by the page's content security policy; the one error
    // is the schema asked for before the token was typed.
    let problems = outcome["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .all(|p| p.as_str().unwrap_or("").contains("401 (Unauthorized)")),
        "{outcome}"
    );
    app.stop().await;
}

/// Runs `web/tests/graphiql.mjs` (Node.js, playwright-core, Debian's chromium) against the app.
async fn browse_console(app: &TestApp, token: &str) -> Value {
    let base = app.url("");
    let args = [OsStr::new(&base), OsStr::new(token)];
    monkeyci_tests::run_browser_script("graphiql.mjs", &args).await
}

#[sqlx::test(migrations = "../migrations")]
async fn invented_http_methods_do_not_grow_the_metrics(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{n}").as_bytes()).expect("method");
        app.http.request(method, app.url("/health")).send().await.expect("send");
    }

    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");

    assert!(!metrics.contains("BREW"), "{metrics}");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    app.stop().await;
}
