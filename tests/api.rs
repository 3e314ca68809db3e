//! The GraphQL API over real HTTP and a real WebSocket client, against a server on port 0.

use std::time::Duration;

use monkeyci_commands::{FinishBuild, JobTransitionInput, QueueJob, RecordCheckout, StartBuild, TransitionJob};
use monkeyci_domain::build::BuildOutcome;
use monkeyci_domain::BuildId;
use monkeyci_tests::{user, TestApp, WsEvent};
use serde_json::{json, Value};
use sqlx::PgPool;

fn code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// The uuid inside a global id, for driving the build with commands as a runner would.
pub(crate) fn build_uuid(id: &str) -> BuildId {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .expect("base64");
    let text = String::from_utf8(raw).expect("utf8");
    text.strip_prefix("Build:").expect("a build id").parse().expect("uuid")
}

const BUILD_QUERY: &str = "query($id: ID!) { build(id: $id) { id status branch jobCounts { total succeeded } \
                           repo { name org { slug } } } }";

#[sqlx::test(migrations = "../migrations")]
async fn a_triggered_build_is_visible_to_the_next_query(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");

    let build = app.trigger_build(&repo).await.expect("build");
    let response = app.graphql(BUILD_QUERY, json!({ "id": build })).await.expect("query");

    assert_eq!(
        response["data"]["build"],
        json!({ "id": build, "status": "QUEUED", "branch": "main", "jobCounts": { "total": 0, "succeeded": 0 },
                "repo": { "name": "app", "org": { "slug": "acme" } } })
    );
    let listed = app
        .graphql(
            "query($id: ID!) { node(id: $id) { ... on Repo { builds(first: 5) { edges { node { id } } pageInfo { hasNextPage } } } } }",
            json!({ "id": repo }),
        )
        .await
        .expect("list");
    assert_eq!(listed["data"]["node"]["builds"]["edges"][0]["node"]["id"], json!(build));
    assert_eq!(
        listed["data"]["node"]["builds"]["pageInfo"]["hasNextPage"],
        json!(false)
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn read_your_writes_holds_for_concurrent_clients(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let clients = (0..16).map(|c| {
        let app = &app;
        async move {
            for i in 0..8 {
                let slug = format!("c{c}-o{i}");
                app.create_org(&slug).await.expect("create");
                let response = app
                    .graphql("query($s: String!) { org(slug: $s) { slug } }", json!({ "s": slug }))
                    .await
                    .expect("query");
                assert_eq!(response["data"]["org"]["slug"], json!(slug), "{response}");
            }
        }
    });
    futures::future::join_all(clients).await;
    let orgs = app
        .graphql(
            "{ orgs(first: 100) { edges { cursor } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await
        .expect("orgs");
    assert_eq!(orgs["data"]["orgs"]["edges"].as_array().map(Vec::len), Some(100));
    assert_eq!(orgs["data"]["orgs"]["pageInfo"]["hasNextPage"], json!(true));
    let cursor = orgs["data"]["orgs"]["edges"][99]["cursor"].clone();
    let rest = app
        .graphql(
            "query($a: String) { orgs(first: 100, after: $a) { edges { cursor } } }",
            json!({ "a": cursor }),
        )
        .await
        .expect("rest");
    assert_eq!(rest["data"]["orgs"]["edges"].as_array().map(Vec::len), Some(28));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idempotency_key_returns_the_same_id_and_refuses_other_input(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let input = json!({ "name": "Acme", "slug": "acme", "idempotencyKey": "create-acme-1" });

    let first = app
        .mutate_id("createOrg", "CreateOrgInput", input.clone())
        .await
        .expect("first");
    let again = app
        .mutate_id("createOrg", "CreateOrgInput", input)
        .await
        .expect("again");
    let other = app
        .graphql(
            "mutation($i: CreateOrgInput!) { createOrg(input: $i) }",
            json!({ "i": { "name": "Other", "slug": "other", "idempotencyKey": "create-acme-1" } }),
        )
        .await
        .expect("other");

    assert_eq!(first, again);
    assert_eq!(code(&other), Some("BAD_USER_INPUT"), "{other}");
    let orgs = app
        .graphql("{ orgs { edges { node { slug } } } }", json!({}))
        .await
        .expect("orgs");
    assert_eq!(orgs["data"]["orgs"]["edges"], json!([{ "node": { "slug": "acme" } }]));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn every_refusal_carries_its_error_code(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");
    let build = app.trigger_build(&repo).await.expect("build");
    let unknown_org = "T3JnOjAxOWEwMDAwLTAwMDAtNzAwMC04MDAwLTAwMDAwMDAwMDAwMA"; // Org:019a0000-…

    let cases = [
        ("duplicate slug", "mutation { createOrg(input: {name: \"A\", slug: \"acme\"}) }", "CONFLICT"),
        ("invalid slug", "mutation { createOrg(input: {name: \"A\", slug: \"Not OK\"}) }", "BAD_USER_INPUT"),
        ("unknown org", &format!("mutation {{ renameOrg(input: {{id: \"{unknown_org}\", name: \"B\"}}) }}"), "NOT_FOUND"),
        ("id of the wrong kind", &format!("mutation {{ renameOrg(input: {{id: \"{repo}\", name: \"B\"}}) }}"), "BAD_USER_INPUT"),
        ("garbage id", "{ build(id: \"%%%\") { id } }", "BAD_USER_INPUT"),
        ("unknown field", "{ nope }", "BAD_USER_INPUT"),
        ("syntax", "{ orgs { ", "BAD_USER_INPUT"),
        ("retry of an unfinished build", &format!("mutation {{ retryBuild(input: {{id: \"{build}\"}}) }}"), "CONFLICT"),
        ("page too large", "{ orgs(first: 1000) { edges { cursor } } }", "BAD_USER_INPUT"),
        ("bad cursor", "{ orgs(after: \"nope\") { edges { cursor } } }", "BAD_USER_INPUT"),
        ("too deep", "{ orgs { edges { node { repos { edges { node { builds { edges { node { repo { org { repos { edges { node { id } } } } } } } } } } } } } } }", "BAD_USER_INPUT"),
    ];
    for (what, query, expected) in cases {
        let response = app.graphql(query, json!({})).await.expect(what);
        assert_eq!(code(&response), Some(expected), "{what}: {response}");
    }
    let cancel = app
        .mutate_id("cancelBuild", "BuildInput", json!({ "id": build }))
        .await
        .expect("cancel");
    assert_eq!(cancel, build);
    let again = app
        .graphql(
            &format!("mutation {{ cancelBuild(input: {{id: \"{build}\"}}) }}"),
            json!({}),
        )
        .await
        .expect("again");
    assert_eq!(
        code(&again),
        Some("CONFLICT"),
        "a finished build cannot be canceled: {again}"
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_and_oversized_bodies_are_refused(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.body_limit = 4096).await.expect("app");

    let not_json = app
        .http
        .post(app.url("/graphql"))
        .body("{not json")
        .send()
        .await
        .expect("send");
    let huge = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(json!({ "query": format!("{{ orgs {{ edges {{ cursor }} }} }} # {}", "x".repeat(8192)) }).to_string())
        .send()
        .await
        .expect("send");

    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.expect("json");
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    assert_eq!(huge.status(), 413);
    app.stop().await;
}

/// The commit [`drive_build_to_success`] records as checked out.
pub(crate) const CHECKED_OUT: &str = "c0ffee0123456789c0ffee0123456789c0ffee01";

pub(crate) async fn drive_build_to_success(app: &TestApp, build: BuildId) {
    let c = &app.core.commands;
    let ctx = user();
    c.start_build(
        &ctx,
        StartBuild {
            build_id: build,
            runner: "r1".into(),
        },
    )
    .await
    .expect("start");
    c.record_checkout(
        &ctx,
        RecordCheckout {
            build_id: build,
            commit: CHECKED_OUT.into(),
        },
    )
    .await
    .expect("checkout");
    c.queue_job(
        &ctx,
        QueueJob {
            build_id: build,
            job_id: "unit".into(),
            dependencies: vec![],
        },
    )
    .await
    .expect("queue");
    for transition in [JobTransitionInput::Started, JobTransitionInput::Succeeded] {
        c.transition_job(
            &ctx,
            TransitionJob {
                build_id: build,
                job_id: "unit".into(),
                transition,
            },
        )
        .await
        .expect("transition");
    }
    c.finish_build(
        &ctx,
        FinishBuild {
            build_id: build,
            outcome: BuildOutcome::Succeeded,
            message: None,
        },
    )
    .await
    .expect("finish");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_build_updated_subscriber_sees_every_change_and_completes_at_the_end(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");
    let build = app.trigger_build(&repo).await.expect("build");
    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "b1",
        "subscription($id: ID!) { buildUpdated(buildId: $id) { status commit jobCounts { total running succeeded } } }",
        json!({ "id": build }),
    )
    .await
    .expect("subscribe");
    let first = ws.next_data("b1").await.expect("initial state");
    assert_eq!(first["data"]["buildUpdated"]["status"], json!("QUEUED"));

    drive_build_to_success(&app, build_uuid(&build)).await;

    let mut states = Vec::new();
    loop {
        let message = ws.message().await.expect("message");
        match message["type"].as_str() {
            Some("next") => states.push(message["payload"]["data"]["buildUpdated"].clone()),
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    // Six changes (start, checkout, job queued, started, succeeded, build finished): changes
    // that reach the read model together come as one state, so there are one to six, each
    // different.
    let statuses: Vec<&str> = states.iter().filter_map(|s| s["status"].as_str()).collect();
    assert!((1..=6).contains(&states.len()), "{states:?}");
    assert_eq!(statuses.last(), Some(&"SUCCEEDED"));
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == "RUNNING"),
        "{statuses:?}"
    );
    assert!(
        states.windows(2).all(|w| w[0] != w[1]),
        "a state was repeated: {states:?}"
    );
    assert_eq!(
        states.last().map(|s| s["jobCounts"].clone()),
        Some(json!({ "total": 1, "running": 0, "succeeded": 1 }))
    );
    assert_eq!(states.last().map(|s| s["commit"].clone()), Some(json!(CHECKED_OUT)));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reconnecting_event_subscriber_gets_exactly_the_missed_events_then_live_ones(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let query =
        "subscription($org: ID!, $after: String) { events(orgId: $org, after: $after) { cursor type streamId actor } }";

    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe("e", query, json!({ "org": org, "after": "0.0" }))
        .await
        .expect("subscribe");
    // OrgCreated and SlugClaimed of the org, in log order.
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(ws.next_data("e").await.expect("event")["data"]["events"].clone());
    }
    let mut types: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["OrgCreated", "SlugClaimed"]);
    drop(ws);

    let last = seen[1]["cursor"].as_str().expect("cursor").to_owned();
    let repo = app.create_repo(&org, "app").await.expect("repo");
    app.mutate_id("renameOrg", "RenameOrgInput", json!({ "id": org, "name": "Acme 2" }))
        .await
        .expect("rename");
    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe("e", query, json!({ "org": org, "after": last }))
        .await
        .expect("resubscribe");
    let missed: Vec<Value> = [ws.next_data("e").await.expect("1"), ws.next_data("e").await.expect("2")]
        .into_iter()
        .map(|p| p["data"]["events"].clone())
        .collect();
    assert_eq!(
        missed.iter().map(|e| e["type"].clone()).collect::<Vec<_>>(),
        [json!("RepoAdded"), json!("OrgRenamed")]
    );
    assert_eq!(missed[0]["actor"], json!("anonymous"));
    app.trigger_build(&repo).await.expect("build");
    let live = ws.next_data("e").await.expect("live")["data"]["events"].clone();
    assert_eq!(live["type"], json!("BuildQueued"));
    assert!(live["streamId"].as_str().is_some_and(|s| s.starts_with("build-")));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_websocket_protocol_rules_are_enforced(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| {
        c.ws.init_timeout = Duration::from_millis(300);
        c.ws.max_subscriptions = 2;
    })
    .await
    .expect("app");
    let org = app.create_org("acme").await.expect("org");
    let sub = "subscription($org: ID!) { events(orgId: $org) { cursor } }";

    let mut early = app.websocket().await.expect("ws");
    early.subscribe("1", sub, json!({ "org": org })).await.expect("send");
    assert_eq!(
        early.next().await.expect("close"),
        WsEvent::Closed(4401, "Unauthorized".into())
    );

    let mut silent = app.websocket().await.expect("ws");
    assert_eq!(
        silent.next().await.expect("close"),
        WsEvent::Closed(4408, "Connection initialisation timeout".into())
    );

    let mut twice = app.websocket().await.expect("ws");
    twice.init().await.expect("init");
    twice.send(json!({ "type": "connection_init" })).await.expect("send");
    assert_eq!(
        twice.next().await.expect("close"),
        WsEvent::Closed(4429, "Too many initialisation requests".into())
    );

    let mut dup = app.websocket().await.expect("ws");
    dup.init().await.expect("init");
    dup.send(json!({ "type": "ping" })).await.expect("ping");
    assert_eq!(dup.message().await.expect("pong")["type"], json!("pong"));
    dup.subscribe("a", sub, json!({ "org": org })).await.expect("a");
    dup.subscribe("b", sub, json!({ "org": org })).await.expect("b");
    dup.subscribe("c", sub, json!({ "org": org })).await.expect("c");
    let refused = dup.message().await.expect("error");
    assert_eq!(
        (refused["type"].clone(), refused["id"].clone()),
        (json!("error"), json!("c"))
    );
    assert_eq!(refused["payload"][0]["extensions"]["code"], json!("BAD_USER_INPUT"));
    dup.subscribe("a", sub, json!({ "org": org })).await.expect("a again");
    assert_eq!(
        dup.next().await.expect("close"),
        WsEvent::Closed(4409, "Subscriber for a already exists".into())
    );

    let mut invalid = app.websocket().await.expect("ws");
    invalid.init().await.expect("init");
    invalid
        .subscribe("v", "subscription { nope }", json!({}))
        .await
        .expect("send");
    let error = invalid.message().await.expect("error");
    assert_eq!(error["type"], json!("error"), "{error}");
    invalid.send(json!({ "type": "what" })).await.expect("send");
    assert!(matches!(invalid.next().await.expect("close"), WsEvent::Closed(4400, _)));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_readiness_metrics_and_graphiql_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    app.graphql("{ orgs { edges { cursor } } }", json!({}))
        .await
        .expect("query");

    let health = app.http.get(app.url("/health")).send().await.expect("health");
    assert_eq!(health.status(), 200);
    app.core.caught_up().await.expect("caught up");
    let ready = app.http.get(app.url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["projectionsCaughtUp"], json!(true), "{ready}");
    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "m",
        "subscription($o: ID!) { events(orgId: $o, after: \"0.0\") { cursor } }",
        json!({ "o": org }),
    )
    .await
    .expect("sub");
    ws.next_data("m").await.expect("event");

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for expected in [
        "monkeyci_commands_total{command=\"createOrg\",outcome=\"ok\"} 1",
        "monkeyci_open_subscriptions 1",
        "monkeyci_projection_lag_events{projection=\"builds\"}",
        "monkeyci_http_request_duration_seconds_count{method=\"POST\",path=\"/graphql\",status=\"200\"}",
        "monkeyci_events_total",
    ] {
        assert!(metrics.contains(expected), "{expected} missing from\n{metrics}");
    }
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("graphiql");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").to_lowercase().contains("graphiql"));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_builds_updated_subscriber_follows_the_builds_of_one_repo_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");
    let other = app.create_repo(&org, "other").await.expect("other repo");
    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "r",
        "subscription($r: ID!) { buildsUpdated(repoId: $r) { id status } }",
        json!({ "r": repo }),
    )
    .await
    .expect("subscribe");

    // The subscription starts at the log's end when the server runs it; trigger builds until
    // one arrives, then every later change must arrive too.
    let mut first = None;
    for _ in 0..20 {
        app.trigger_build(&other).await.expect("other build");
        let build = app.trigger_build(&repo).await.expect("build");
        if let Some(WsEvent::Message(message)) = ws.next_within(Duration::from_secs(1)).await.expect("read") {
            let update = message["payload"]["data"]["buildsUpdated"].clone();
            assert_eq!(update["status"], json!("QUEUED"), "{message}");
            first = Some(update["id"].as_str().expect("id").to_owned());
            if update["id"] == json!(build) {
                break;
            }
        }
    }
    let build = first.expect("an update for a build of the repo");
    // Updates of builds triggered before the one that arrived may still be queued: drain them.
    while ws
        .next_within(Duration::from_millis(500))
        .await
        .expect("read")
        .is_some()
    {}
    app.mutate_id("cancelBuild", "BuildInput", json!({ "id": build }))
        .await
        .expect("cancel");
    let update = ws.next_data("r").await.expect("canceled")["data"]["buildsUpdated"].clone();
    assert_eq!(update, json!({ "id": build, "status": "CANCELED" }));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_internal_failure_is_reported_as_internal_without_its_details(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await.expect("app");
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");
    let build = app.trigger_build(&repo).await.expect("build");
    // A stored event that no longer decodes (here: written by hand without its field).
    sqlx::query(
        "INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata) \
         VALUES ($1, 2, 'BuildStarted', 1, '{}', '{\"actor\": \"test\", \"correlation_id\": \"00000000-0000-0000-0000-000000000000\", \"command_id\": \"00000000-0000-0000-0000-000000000000\"}')",
    )
    .bind(format!("build-{}", build_uuid(&build)))
    .execute(&pool)
    .await
    .expect("insert");

    let response = app
        .graphql(
            &format!("mutation {{ cancelBuild(input: {{id: \"{build}\"}}) }}"),
            json!({}),
        )
        .await
        .expect("cancel");

    assert_eq!(code(&response), Some("INTERNAL"), "{response}");
    assert_eq!(response["errors"][0]["message"], json!("internal error"));
    assert!(!response.to_string().contains("runner"), "details leaked: {response}");
    app.stop().await;
}
