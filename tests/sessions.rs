//! WebSocket sessions end when their access goes away: a revoked or expired token, a member
//! removed or given another role, a deleted org; and an operation sent on such a session is
//! refused. Real HTTP, real WebSockets, real PostgreSQL.

use std::time::{Duration, Instant};

use monkeyci_tests::{uuid_of, TestApp, WsClient, WsEvent};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{app, gql, id, repo_in, token, token_with_id, ADMIN};

/// How soon a session must end once the change that ends it has been answered.
const WITHIN: Duration = Duration::from_secs(1);

/// An org with a repo and a build, made by the admin: (org, build).
async fn org_with_build(app: &TestApp, slug: &str) -> (String, String) {
    let org = id(
        app,
        ADMIN,
        "createOrg",
        "CreateOrgInput",
        json!({ "name": slug, "slug": slug }),
    )
    .await;
    let repo = repo_in(app, ADMIN, &org, "app").await;
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

/// A user of `org` with `role`, and a user token of theirs: (user, token).
async fn member(app: &TestApp, org: &str, name: &str, role: &str) -> (String, String) {
    let user = id(app, ADMIN, "createUser", "CreateUserInput", json!({ "name": name })).await;
    let input = json!({ "orgId": org, "userId": user, "role": role });
    id(app, ADMIN, "addMember", "MemberInput", input).await;
    let token = token(app, ADMIN, json!({ "name": name, "userId": user })).await;
    (user, token)
}

/// A session of `token` following `build`, its first update received.
async fn following(app: &TestApp, token: &str, build: &str) -> WsClient {
    let mut ws = app.websocket().await.expect("ws");
    ws.init_with(json!({ "Authorization": format!("Bearer {token}") }))
        .await
        .expect("init");
    ws.subscribe(
        "live",
        "subscription($id: ID!) { buildUpdated(buildId: $id) { status } }",
        json!({ "id": build }),
    )
    .await
    .expect("subscribe");
    let first = ws.message().await.expect("first");
    assert_eq!(first["type"], "next", "{first}");
    ws
}

/// Waits at most `limit` for the session to be closed, skipping messages; its close code and
/// reason, and how long it took.
async fn closed_within(ws: &mut WsClient, limit: Duration) -> (u16, String, Duration) {
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match ws.next_within(left).await {
            Ok(Some(WsEvent::Closed(code, reason))) => return (code, reason, started.elapsed()),
            Ok(Some(WsEvent::Message(_))) => {}
            Ok(None) => panic!("still open after {limit:?}"),
            Err(error) => panic!("{error}"),
        }
    }
}

async fn mutate(app: &TestApp, query: &str, variables: Value) {
    let (status, body) = gql(app, Some(ADMIN), query, variables).await;
    assert_eq!((status, &body["errors"]), (200, &Value::Null), "{body}");
}

async fn token_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TokenCreated'")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_revoked_token_ends_its_sessions_and_cannot_act_on_them(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (org, build) = org_with_build(&app, "revoke").await;
    let (token_id, owner) = token_with_id(&app, ADMIN, json!({ "name": "ci", "orgId": org, "role": "owner" })).await;
    let mut live = following(&app, &owner, &build).await;
    let mut idle = app.websocket().await.expect("ws");
    idle.init_with(json!({ "token": owner })).await.expect("init");
    let tokens_before = token_events(&pool).await;

    mutate(
        &app,
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) }",
        json!({ "id": token_id }),
    )
    .await;
    // The abuse, as measured before: a new owner token asked for on a socket opened before.
    let _ = idle
        .subscribe(
            "mint",
            "mutation($org: ID!) { createApiToken(input: {name: \"x\", orgId: $org, role: \"owner\"}) { token } }",
            json!({ "org": org }),
        )
        .await;

    let (code, reason, took) = closed_within(&mut live, WITHIN).await;
    assert_eq!(
        (code, reason.as_str()),
        (4403, "the token was revoked"),
        "after {took:?}"
    );
    let (code, _, _) = closed_within(&mut idle, WITHIN).await;
    assert_eq!(code, 4403);
    assert_eq!(token_events(&pool).await, tokens_before, "no token was created");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_expiring_token_ends_its_session_when_it_expires(pool: PgPool) {
    let app = app(pool.clone()).await;
    let (org, build) = org_with_build(&app, "expire").await;
    // The API makes tokens that live whole days; this one, made as the API makes them, ends in 2 s.
    let id = monkeyci_domain::TokenId::from_uuid(uuid::Uuid::now_v7());
    let (viewer, hash) = monkeyci_crypto::Token::generate_with_id("mci_", id.as_uuid().into_bytes()).expect("token");
    app.core
        .commands
        .create_token(
            &monkeyci_tests::user(),
            monkeyci_commands::CreateToken {
                token_id: Some(id),
                name: "v".into(),
                subject: monkeyci_domain::access::TokenSubject::Org {
                    org_id: monkeyci_domain::OrgId::from_uuid(uuid_of(&org).parse().expect("uuid")),
                    role: monkeyci_domain::access::Role::Viewer,
                },
                hash: hash.as_str().to_owned(),
                expires_at: chrono::Utc::now() + chrono::Duration::seconds(2),
            },
        )
        .await
        .expect("token");
    let viewer = viewer.expose().to_owned();
    let mut live = following(&app, &viewer, &build).await;

    let (code, reason, _) = closed_within(&mut live, Duration::from_secs(2) + WITHIN).await;

    assert_eq!((code, reason.as_str()), (4403, "the token expired"));
    let (status, _) = gql(&app, Some(&viewer), "{ orgs { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_member_removed_or_given_another_role_loses_their_sessions(pool: PgPool) {
    let app = app(pool).await;
    let (org, build) = org_with_build(&app, "members").await;
    let (removed, removed_token) = member(&app, &org, "Rem", "member").await;
    let (demoted, demoted_token) = member(&app, &org, "Dem", "owner").await;
    // The org keeps an owner when Dem is demoted.
    member(&app, &org, "Own", "owner").await;
    let (_, bystander_token) = member(&app, &org, "By", "viewer").await;
    let mut removed_ws = following(&app, &removed_token, &build).await;
    let mut demoted_ws = following(&app, &demoted_token, &build).await;
    let mut bystander_ws = following(&app, &bystander_token, &build).await;

    let change =
        "mutation($org: ID!, $user: ID!, $role: String!) { NAME(input: {orgId: $org, userId: $user, role: $role}) }";
    mutate(
        &app,
        &change.replace("NAME", "removeMember"),
        json!({ "org": org, "user": removed, "role": "viewer" }),
    )
    .await;
    let (code, reason, _) = closed_within(&mut removed_ws, WITHIN).await;
    assert_eq!(
        (code, reason.as_str()),
        (4403, "this user's role in an org changed; connect again")
    );
    mutate(
        &app,
        &change.replace("NAME", "changeMemberRole"),
        json!({ "org": org, "user": demoted, "role": "viewer" }),
    )
    .await;
    let (code, _, _) = closed_within(&mut demoted_ws, WITHIN).await;
    assert_eq!(code, 4403);

    // Others' changes end nobody else's session.
    assert_eq!(bystander_ws.next_within(WITHIN).await.expect("read"), None);
    // The removed member is refused from then on; the demoted one acts with the new role.
    let (status, _) = gql(&app, Some(&removed_token), "{ orgs { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = gql(
        &app,
        Some(&removed_token),
        "query($id: ID!) { build(id: $id) { id } }",
        json!({ "id": build }),
    )
    .await;
    assert_eq!(body["data"]["build"], Value::Null, "{body}");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn deleting_an_org_ends_the_sessions_of_its_tokens_and_members(pool: PgPool) {
    let app = app(pool).await;
    let (org, build) = org_with_build(&app, "doomed").await;
    let (_, other_build) = org_with_build(&app, "spared").await;
    let (_, org_token) = token_with_id(&app, ADMIN, json!({ "name": "v", "orgId": org, "role": "viewer" })).await;
    let (_, user_token) = member(&app, &org, "Mem", "member").await;
    let mut by_token = following(&app, &org_token, &build).await;
    let mut by_user = following(&app, &user_token, &build).await;
    let mut elsewhere = following(&app, ADMIN, &other_build).await;

    mutate(
        &app,
        "mutation($id: ID!) { deleteOrg(input: {id: $id}) }",
        json!({ "id": org }),
    )
    .await;

    let (code, reason, _) = closed_within(&mut by_token, WITHIN).await;
    assert_eq!((code, reason.as_str()), (4403, "the token's org was deleted"));
    let (code, _, _) = closed_within(&mut by_user, WITHIN).await;
    assert_eq!(code, 4403);
    assert_eq!(elsewhere.next_within(WITHIN).await.expect("read"), None);

    // The org's token is refused over HTTP too: no query, no new session, no job output of the
    // deleted org's builds; the admin still reads the other org.
    let (status, body) = gql(&app, Some(&org_token), "{ orgs { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{body}");
    let log = app
        .http
        .get(app.url(&format!("/builds/{build}/jobs/compile/log")))
        .bearer_auth(&org_token)
        .send()
        .await
        .expect("send");
    assert_eq!(log.status().as_u16(), 401);
    let mut ws = app.websocket().await.expect("ws");
    let refused = ws
        .init_with(json!({ "Authorization": format!("Bearer {org_token}") }))
        .await;
    assert!(refused.is_err(), "a session opened with the deleted org's token");
    let (status, body) = gql(&app, Some(ADMIN), "{ orgs { edges { cursor } } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}
