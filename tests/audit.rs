//! The audit trail over real HTTP: an org's audit log with filters and pages, one stream's
//! history, and builds as they were at any moment, all checked against the events table.

use monkeyci_tests::{uuid_of, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{admin_org, app, code, gql, id, repo_in, token, two_orgs, TwoOrgs, ADMIN};
use crate::api::{build_uuid, drive_build_to_success, CHECKED_OUT};

const AUDIT: &str = "query($org: ID!, $filter: AuditFilter, $first: Int, $after: String) { \
    auditLog(orgId: $org, filter: $filter, first: $first, after: $after) { \
      edges { cursor node { cursor streamId streamVersion type actor correlationId commandId recordedAt } } \
      pageInfo { hasNextPage } } }";

/// The org's events as the events table has them, in log order: (stream, version, type, actor).
async fn org_events(pool: &PgPool, org: &str) -> Vec<(String, i64, String, String)> {
    sqlx::query_as(
        "SELECT stream_id, stream_version, event_type, metadata->>'actor' FROM events \
         WHERE metadata->>'org_id' = $1 ORDER BY transaction_id, position",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("events")
}

/// Every edge of the audit log, page by page (`page` per request).
async fn whole_log(app: &TestApp, as_token: &str, org: &str, filter: Value, page: i64) -> Vec<Value> {
    let mut edges = Vec::new();
    let mut after = Value::Null;
    loop {
        let (_, body) = gql(
            app,
            Some(as_token),
            AUDIT,
            json!({ "org": org, "filter": filter, "first": page, "after": after }),
        )
        .await;
        let log = &body["data"]["auditLog"];
        let got = log["edges"].as_array().unwrap_or_else(|| panic!("{body}")).clone();
        assert!(got.len() <= usize::try_from(page).expect("page"), "{body}");
        after = got.last().map_or(Value::Null, |e| e["cursor"].clone());
        edges.extend(got);
        if log["pageInfo"]["hasNextPage"] != true {
            return edges;
        }
    }
}

fn summary(edges: &[Value]) -> Vec<(String, i64, String, String)> {
    edges
        .iter()
        .map(|e| {
            let n = &e["node"];
            assert_eq!(e["cursor"], n["cursor"]);
            (
                n["streamId"].as_str().expect("stream").to_owned(),
                n["streamVersion"].as_i64().expect("version"),
                n["type"].as_str().expect("type").to_owned(),
                n["actor"].as_str().expect("actor").to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn the_audit_log_lists_every_event_of_an_org_in_order_with_filters_and_pages(pool: PgPool) {
    let app = app(pool.clone()).await;
    let TwoOrgs {
        ada_token,
        vic_token,
        org_a,
        org_b,
        ..
    } = two_orgs(&app).await;
    let repo_a = repo_in(&app, &ada_token, &org_a, "a").await;
    repo_in(&app, ADMIN, &org_b, "b").await;
    for _ in 0..3 {
        id(
            &app,
            &ada_token,
            "triggerBuild",
            "TriggerBuildInput",
            json!({ "repoId": repo_a }),
        )
        .await;
    }
    id(
        &app,
        ADMIN,
        "renameOrg",
        "RenameOrgInput",
        json!({ "id": org_a, "name": "A Corp" }),
    )
    .await;

    // Everything of org A, in log order, whatever the page size; nothing of org B.
    let expected = org_events(&pool, &uuid_of(&org_a)).await;
    assert!(expected.len() >= 9, "{expected:?}");
    for page in [1, 4, 100] {
        let edges = whole_log(&app, &ada_token, &org_a, Value::Null, page).await;
        assert_eq!(summary(&edges), expected, "page size {page}");
    }
    let of_b = org_events(&pool, &uuid_of(&org_b)).await;
    assert!(!of_b.is_empty());
    let all_a = whole_log(&app, &ada_token, &org_a, Value::Null, 100).await;
    assert!(summary(&all_a).iter().all(|e| !of_b.contains(e)));

    // Filters: by actor, by type, by time.
    let ada_actor = expected
        .iter()
        .find(|(_, _, t, _)| t == "RepoAdded")
        .map(|(_, _, _, a)| a.clone())
        .expect("RepoAdded");
    let by_ada = whole_log(&app, &ada_token, &org_a, json!({ "actor": ada_actor }), 100).await;
    let want: Vec<_> = expected.iter().filter(|e| e.3 == ada_actor).cloned().collect();
    assert_eq!(summary(&by_ada), want);
    assert_eq!(want.len(), 4, "a repo and three builds: {want:?}");
    let queued = whole_log(
        &app,
        &ada_token,
        &org_a,
        json!({ "eventTypes": ["BuildQueued", "OrgRenamed"] }),
        2,
    )
    .await;
    let want: Vec<_> = expected
        .iter()
        .filter(|e| e.2 == "BuildQueued" || e.2 == "OrgRenamed")
        .cloned()
        .collect();
    assert_eq!(summary(&queued), want);
    assert_eq!(want.len(), 4);
    let times: Vec<&str> = all_a
        .iter()
        .map(|e| e["node"]["recordedAt"].as_str().expect("time"))
        .collect();
    let (from, to) = (times[2], times[times.len() - 1]);
    let window = whole_log(&app, &ada_token, &org_a, json!({ "from": from, "to": to }), 100).await;
    let want: Vec<_> = all_a
        .iter()
        .filter(|e| {
            let t = chrono::DateTime::parse_from_rfc3339(e["node"]["recordedAt"].as_str().expect("t")).expect("t");
            t >= chrono::DateTime::parse_from_rfc3339(from).expect("from")
                && t < chrono::DateTime::parse_from_rfc3339(to).expect("to")
        })
        .cloned()
        .collect();
    assert_eq!(summary(&window), summary(&want));
    assert!(!want.is_empty() && want.len() < all_a.len());

    // Only owners read the audit log; other orgs' callers do not learn the org exists.
    let (_, body) = gql(&app, Some(&vic_token), AUDIT, json!({ "org": org_a })).await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    let b_token = token(&app, ADMIN, json!({ "name": "b", "orgId": org_b, "role": "owner" })).await;
    let (_, body) = gql(&app, Some(&b_token), AUDIT, json!({ "org": org_a })).await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    // Bad input.
    for (variables, what) in [
        (json!({ "org": org_a, "after": "not-a-cursor" }), "cursor"),
        (json!({ "org": org_a, "filter": { "from": to, "to": from } }), "from/to"),
        (json!({ "org": org_a, "filter": { "eventTypes": [""] } }), "empty type"),
        (json!({ "org": org_a, "first": 1000 }), "page size"),
        (json!({ "org": repo_a }), "not an org id"),
    ] {
        let (_, body) = gql(&app, Some(&ada_token), AUDIT, variables).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{what}: {body}");
    }
    app.stop().await;
}

const HISTORY: &str = "query($stream: String!, $first: Int, $after: String) { \
    history(streamId: $stream, first: $first, after: $after) { \
      edges { cursor node { cursor streamVersion type actor } } pageInfo { hasNextPage } } }";

/// Org A with a repo and one queued build, all made by the admin: the org's and the build's ids.
async fn queued_build(app: &TestApp) -> (String, String) {
    let org = admin_org(app, "A", "org-a").await;
    let repo = repo_in(app, ADMIN, &org, "a").await;
    let build = id(
        app,
        ADMIN,
        "triggerBuild",
        "TriggerBuildInput",
        json!({ "repoId": repo }),
    )
    .await;
    (org, build)
}

const AS_OF: &str = "query($id: ID!, $asOf: AsOf) { build(id: $id, asOf: $asOf) { \
    status commit runner startedAt finishedAt jobCounts { total queued running succeeded } \
    jobs { jobId status } } }";

#[sqlx::test(migrations = "../migrations")]
async fn history_lists_a_streams_events_and_as_of_shows_a_build_as_it_was(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (_, build) = queued_build(&app).await;
    drive_build_to_success(&app, build_uuid(&build)).await;
    let stream = format!("build-{}", uuid_of(&build));

    // The build's history, in version order, in pages of two.
    let mut versions = Vec::new();
    let mut edge_cursors = Vec::new();
    let mut after = Value::Null;
    loop {
        let (_, body) = gql(
            &app,
            Some(ADMIN),
            HISTORY,
            json!({ "stream": stream, "first": 2, "after": after }),
        )
        .await;
        let edges = body["data"]["history"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .clone();
        for edge in &edges {
            assert_eq!(
                edge["cursor"], edge["node"]["cursor"],
                "an edge's cursor is its event's"
            );
            edge_cursors.push(edge["cursor"].clone());
            versions.push((
                edge["node"]["streamVersion"].as_i64().expect("v"),
                edge["node"]["type"].clone(),
            ));
        }
        after = edges.last().map_or(Value::Null, |e| e["cursor"].clone());
        if body["data"]["history"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
    }
    let types: Vec<(i64, Value)> = sqlx::query_as::<_, (i64, String)>(
        "SELECT stream_version, event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(&stream)
    .fetch_all(&pool)
    .await
    .expect("events")
    .into_iter()
    .map(|(v, t)| (v, json!(t)))
    .collect();
    assert_eq!(versions, types);
    // The build's global id names the same history, and every cursor it returns is a cursor
    // `build(asOf)` takes.
    let (_, by_id) = gql(&app, Some(ADMIN), HISTORY, json!({ "stream": build, "first": 100 })).await;
    let by_id: Vec<Value> = by_id["data"]["history"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{by_id}"))
        .iter()
        .map(|e| e["cursor"].clone())
        .collect();
    assert_eq!(by_id, edge_cursors);
    let (_, started) = gql(
        &app,
        Some(ADMIN),
        AS_OF,
        json!({ "id": build, "asOf": { "cursor": edge_cursors[1] } }),
    )
    .await;
    assert_eq!(started["data"]["build"]["status"], "RUNNING", "{started}");
    let (_, old_style) = gql(&app, Some(ADMIN), HISTORY, json!({ "stream": stream, "after": "6" })).await;
    assert_eq!(
        old_style["data"]["history"]["edges"][0]["node"]["streamVersion"], 7,
        "a stream version still pages: {old_style}"
    );
    assert_eq!(
        types.len(),
        7,
        "queued, started, checked out, job queued/started/succeeded, finished"
    );

    // As of each event's cursor: the state after exactly that event.
    let cursors: Vec<(String, String)> = sqlx::query_as(
        "SELECT transaction_id::text || '.' || position, event_type FROM events WHERE stream_id = $1 \
         ORDER BY stream_version",
    )
    .bind(&stream)
    .fetch_all(&pool)
    .await
    .expect("cursors");
    let mut seen = Vec::new();
    for (cursor, event_type) in &cursors {
        let (_, body) = gql(
            &app,
            Some(ADMIN),
            AS_OF,
            json!({ "id": build, "asOf": { "cursor": cursor } }),
        )
        .await;
        let b = &body["data"]["build"];
        let expected = match event_type.as_str() {
            "BuildQueued" => json!(["QUEUED", 0, Value::Null, Value::Null]),
            "BuildStarted" => json!(["RUNNING", 0, Value::Null, Value::Null]),
            "SourceCheckedOut" => json!(["RUNNING", 0, Value::Null, CHECKED_OUT]),
            "JobQueued" => json!(["RUNNING", 1, "QUEUED", CHECKED_OUT]),
            "JobStarted" => json!(["RUNNING", 1, "RUNNING", CHECKED_OUT]),
            "JobSucceeded" => json!(["RUNNING", 1, "SUCCEEDED", CHECKED_OUT]),
            "BuildFinished" => json!(["SUCCEEDED", 1, "SUCCEEDED", CHECKED_OUT]),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(
            json!([
                b["status"],
                b["jobCounts"]["total"],
                b["jobs"][0]["status"],
                b["commit"]
            ]),
            expected,
            "as of {event_type}: {body}"
        );
        seen.push(b.clone());
    }
    // As of now it equals the read model; before the build existed it is null.
    let (_, now) = gql(&app, Some(ADMIN), AS_OF, json!({ "id": build })).await;
    assert_eq!(seen.last(), Some(&now["data"]["build"]));
    let (_, later) = gql(
        &app,
        Some(ADMIN),
        AS_OF,
        json!({ "id": build, "asOf": { "time": chrono::Utc::now().to_rfc3339() } }),
    )
    .await;
    assert_eq!(later["data"]["build"], now["data"]["build"]);
    let (_, before) = gql(
        &app,
        Some(ADMIN),
        AS_OF,
        json!({ "id": build, "asOf": { "time": "2000-01-01T00:00:00Z" } }),
    )
    .await;
    assert_eq!(before["data"]["build"], Value::Null, "{before}");

    // Other orgs see neither; bad input is refused.
    let other = admin_org(&app, "B", "org-b").await;
    let b_token = token(&app, ADMIN, json!({ "name": "b", "orgId": other, "role": "owner" })).await;
    let (_, body) = gql(&app, Some(&b_token), HISTORY, json!({ "stream": stream })).await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    let (_, body) = gql(
        &app,
        Some(&b_token),
        AS_OF,
        json!({ "id": build, "asOf": { "cursor": cursors[0].0 } }),
    )
    .await;
    assert_eq!(body["data"]["build"], Value::Null, "{body}");
    for (query, variables, what) in [
        (
            HISTORY,
            json!({ "stream": "user-0190c6a1-0000-7000-8000-000000000000" }),
            "user stream",
        ),
        (HISTORY, json!({ "stream": stream, "after": "x" }), "cursor"),
        (
            AS_OF,
            json!({ "id": build, "asOf": { "cursor": "1-2" } }),
            "asOf cursor",
        ),
        (
            AS_OF,
            json!({ "id": build, "asOf": { "cursor": "1.2", "time": "2000-01-01T00:00:00Z" } }),
            "both",
        ),
    ] {
        let (_, body) = gql(&app, Some(ADMIN), query, variables).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{what}: {body}");
    }
    let (_, body) = gql(
        &app,
        Some(ADMIN),
        HISTORY,
        json!({ "stream": format!("build-{}", uuid::Uuid::now_v7()) }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    app.stop().await;
}

/// A `JobSkipped` written before its schema version 2 (field `reason`, version 1), as an older
/// MonkeyCI stored it, loads everywhere: the read model, time travel, a rebuild.
#[sqlx::test(migrations = "../migrations")]
async fn a_stored_version_1_event_still_loads(pool: PgPool) {
    use monkeyci_eventstore::{ExpectedVersion, Metadata, NewEvent, StreamAppend};

    let app = app(pool.clone()).await;
    let (org, build) = queued_build(&app).await;
    let build_id = build_uuid(&build);
    app.core
        .commands
        .start_build(
            &monkeyci_tests::user(),
            monkeyci_commands::StartBuild {
                build_id,
                runner: "r1".into(),
            },
        )
        .await
        .expect("start");
    app.core
        .commands
        .queue_job(
            &monkeyci_tests::user(),
            monkeyci_commands::QueueJob {
                build_id,
                job_id: "deploy".into(),
                dependencies: vec![],
            },
        )
        .await
        .expect("queue");
    let stream = format!("build-{}", uuid_of(&build));
    let version: i64 = sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
        .bind(&stream)
        .fetch_one(&pool)
        .await
        .expect("version");
    app.core
        .store
        .append(
            &[StreamAppend {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exact(u64::try_from(version).expect("version")),
                events: vec![NewEvent {
                    event_type: "JobSkipped".into(),
                    schema_version: 1,
                    data: json!({ "job_id": "deploy", "reason": "written by version 1" }),
                    metadata: Metadata {
                        actor: "runner:old".into(),
                        correlation_id: uuid::Uuid::now_v7(),
                        causation_id: None,
                        command_id: uuid::Uuid::now_v7(),
                        idempotency_key: None,
                        org_id: Some(uuid_of(&org).parse().expect("uuid")),
                    },
                }],
            }],
            None,
        )
        .await
        .expect("append v1");

    let query = "query($id: ID!, $asOf: AsOf) { build(id: $id, asOf: $asOf) { jobs { jobId status message } } }";
    let expected = json!({ "jobs": [{ "jobId": "deploy", "status": "SKIPPED", "message": "written by version 1" }] });
    let (_, body) = gql(&app, Some(ADMIN), query, json!({ "id": build })).await;
    assert_eq!(body["data"]["build"], expected, "read model: {body}");
    let now = chrono::Utc::now().to_rfc3339();
    let (_, body) = gql(
        &app,
        Some(ADMIN),
        query,
        json!({ "id": build, "asOf": { "time": now } }),
    )
    .await;
    assert_eq!(body["data"]["build"], expected, "as of now: {body}");
    // The stored event is unchanged: still version 1 with `reason`.
    let stored: (i32, Value) =
        sqlx::query_as("SELECT schema_version, data FROM events WHERE stream_id = $1 AND event_type = 'JobSkipped'")
            .bind(&stream)
            .fetch_one(&pool)
            .await
            .expect("stored");
    assert_eq!(
        stored,
        (1, json!({ "job_id": "deploy", "reason": "written by version 1" }))
    );
    // A rebuild replays it into the same row.
    let before = monkeyci_tests::table_rows(&pool, "jobs", "job_id").await.expect("jobs");
    monkeyci_projections::rebuild(&app.core.store, &monkeyci_projections::BuildsProjection)
        .await
        .expect("rebuild");
    app.core.caught_up().await.expect("caught up");
    let after = monkeyci_tests::table_rows(&pool, "jobs", "job_id").await.expect("jobs");
    assert_eq!(after, before);
    app.stop().await;
}
