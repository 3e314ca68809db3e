//! A job's log for readers at any size, on a real server with a real pipeline: how many lines it
//! has, search on the server, the whole log streamed as text, and download links that need no
//! `Authorization` header and open nothing but their own path, for their own token, while it
//! may still read the build.

use std::time::Duration;

use chrono::Utc;
use monkeyci_api::tickets::{Holder, TicketError, Tickets};
use monkeyci_api::AuthConfig;
use monkeyci_crypto::TokenHash;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{keys, ADMIN};
use crate::builds::repo_with;
use crate::server::Server;

const LINES: usize = 12_000;

/// 12,000 numbered lines, then two that say "needle" (one with the characters `LIKE` would
/// treat as wildcards), more than two pages of the download's 5,000 lines.
const PIPELINE: &str = r#"
- id: many
  script:
    - seq 1 12000 | sed 's/^/line /'
    - echo 'a Needle in the HAYSTACK, 100% _done_'
    - echo 'needle again'
"#;

/// A GraphQL request with `token`; the body.
async fn ask(server: &Server, token: &str, query: &str, variables: Value) -> Value {
    server.gql_as(token, query, variables).await
}

/// A new API token made by the admin for `input`; (its id, the token).
async fn new_token(server: &Server, input: Value) -> (String, String) {
    let body = ask(
        server,
        ADMIN,
        "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { id token } }",
        json!({ "input": input }),
    )
    .await;
    let made = &body["data"]["createApiToken"];
    match (made["id"].as_str(), made["token"].as_str()) {
        (Some(id), Some(token)) => (id.to_owned(), token.to_owned()),
        _ => panic!("createApiToken: {body}"),
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// The line numbers of a `logSearch`.
async fn search(server: &Server, job: &str, args: &str) -> Result<Vec<u64>, Value> {
    let query = format!("query($job: ID!) {{ job(id: $job) {{ logSearch({args}) {{ offset text }} }} }}");
    let body = ask(server, ADMIN, &query, json!({ "job": job })).await;
    match body["data"]["job"]["logSearch"].as_array() {
        Some(lines) => Ok(lines.iter().filter_map(|l| l["offset"].as_u64()).collect()),
        None => Err(body),
    }
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = server.http.get(format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("get");
    (response.status().as_u16(), response.text().await.expect("text"))
}

#[sqlx::test(migrations = "../migrations")]
async fn a_log_is_counted_searched_streamed_and_downloaded_by_a_link_that_opens_nothing_else(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with("build.yaml", PIPELINE);
    let server = Server::start(&pool, dir.path()).await;
    let (org, repo_id) = server
        .org_with_repo("logs", &format!("file://{}", repo.path().display()))
        .await;
    let build = server.build(&repo_id).await;
    assert_eq!(build["status"], "SUCCEEDED", "{build}");
    let build_id = build["id"].as_str().expect("id").to_owned();
    let job = build["jobs"][0]["id"].as_str().expect("job").to_owned();
    let expected: String = (1..=LINES)
        .map(|n| format!("line {n}\n"))
        .chain([
            "a Needle in the HAYSTACK, 100% _done_\n".to_owned(),
            "needle again\n".to_owned(),
        ])
        .collect();

    // How many lines there are: the number of the last.
    let body = ask(
        &server,
        ADMIN,
        "query($job: ID!) { job(id: $job) { logLines } }",
        json!({ "job": job }),
    )
    .await;
    assert_eq!(body["data"]["job"]["logLines"], LINES + 2, "{body}");

    // The abuse first: an empty or overlong text, both directions at once, too many lines, and
    // a search of every job of a build in one query (each may read a whole log) are refused.
    for args in [
        r#"text: "", first: 1"#,
        r#"text: "needle", first: 1, last: 1"#,
        r#"text: "needle""#,
        r#"text: "needle", first: 1001"#,
        r#"text: "needle", after: 3, last: 1"#,
    ] {
        let body = search(&server, &job, args).await.expect_err(args);
        assert_eq!(code(&body), "BAD_USER_INPUT", "{args}: {body}");
    }
    let long = "x".repeat(201);
    let body = search(&server, &job, &format!(r#"text: "{long}", first: 1"#))
        .await
        .expect_err("long");
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let body = ask(
        &server,
        ADMIN,
        r#"query($id: ID!) { build(id: $id) { jobs { logSearch(text: "a", first: 1) { offset } } } }"#,
        json!({ "id": build_id }),
    )
    .await;
    assert!(
        body["data"].is_null() && body["errors"][0]["message"].as_str().unwrap_or("").contains("cost"),
        "{body}"
    );
    // `%` and `_` are characters, not wildcards.
    assert_eq!(
        search(&server, &job, r#"text: "100%", first: 10"#).await,
        Ok(vec![12_001])
    );
    assert_eq!(search(&server, &job, r#"text: "_", first: 10"#).await, Ok(vec![12_001]));
    assert_eq!(search(&server, &job, r#"text: "%", first: 10"#).await, Ok(vec![12_001]));

    // Forward from a line, backward from a line or from the end, ignoring case.
    assert_eq!(
        search(&server, &job, r#"text: "NEEDLE", first: 10"#).await,
        Ok(vec![12_001, 12_002])
    );
    assert_eq!(
        search(&server, &job, r#"text: "needle", last: 1"#).await,
        Ok(vec![12_002])
    );
    assert_eq!(
        search(&server, &job, r#"text: "needle", before: 12002, last: 5"#).await,
        Ok(vec![12_001])
    );
    assert_eq!(
        search(&server, &job, r#"text: "line 1199", after: 1199, first: 3"#).await,
        Ok(vec![11_990, 11_991, 11_992])
    );
    assert_eq!(
        search(&server, &job, r#"text: "line 1199", before: 11991, last: 2"#).await,
        Ok(vec![1_199, 11_990])
    );
    assert_eq!(search(&server, &job, r#"text: "nowhere", first: 10"#).await, Ok(vec![]));

    // The whole log as text, streamed page by page, with the header.
    let path = format!("/builds/{build_id}/jobs/many/log");
    assert_eq!(get(&server, &path, Some(ADMIN)).await, (200, expected.clone()));
    assert_eq!(get(&server, &path, None).await.0, 401);

    // A download link opens its path without a header.
    let link_of = |token: &str| {
        let token = token.to_owned();
        let job = job.clone();
        let server = &server;
        async move {
            let body = ask(
                server,
                &token,
                "query($job: ID!) { job(id: $job) { logDownloadLink } }",
                json!({ "job": job }),
            )
            .await;
            body["data"]["job"]["logDownloadLink"]
                .as_str()
                .unwrap_or_else(|| panic!("logDownloadLink: {body}"))
                .to_owned()
        }
    };
    let link = link_of(ADMIN).await;
    assert!(link.starts_with(&format!("{path}?ticket=")), "{link}");
    assert!(!link.contains(ADMIN));
    assert_eq!(get(&server, &link, None).await, (200, expected.clone()));
    let ticket = link.split_once("?ticket=").expect("ticket").1.to_owned();

    // ... and nothing else: another job's path, an artifact's path, a changed ticket, garbage.
    for other in [
        format!("/builds/{build_id}/jobs/other/log?ticket={ticket}"),
        format!("/builds/{build_id}/artifacts/many?ticket={ticket}"),
    ] {
        let (status, body) = get(&server, &other, None).await;
        assert_eq!(status, 401, "{other}: {body}");
        assert!(body.contains("another path"), "{body}");
    }
    let mut changed = ticket.clone().into_bytes();
    let middle = changed.len() / 2;
    changed[middle] = if changed[middle] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).expect("ascii");
    for bad in [changed.as_str(), "", "not-a-ticket", &"A".repeat(5000)] {
        let (status, body) = get(&server, &format!("{path}?ticket={bad}"), None).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(body.contains("not valid"), "{body}");
    }

    // A viewer's link works while the viewer may read the build, and stops when it may not.
    let user = server
        .id("createUser", "CreateUserInput", json!({ "name": "Vic" }))
        .await;
    // Vic as a viewer of the org: added or removed.
    let membership = |mutation: &'static str| {
        server.id(
            mutation,
            "MemberInput",
            json!({ "orgId": org, "userId": user, "role": "viewer" }),
        )
    };
    membership("addMember").await;
    let (vic_token_id, vic) = new_token(&server, json!({ "name": "vic", "userId": user })).await;
    let vic_link = link_of(&vic).await;
    assert_eq!(get(&server, &vic_link, None).await, (200, expected.clone()));
    membership("removeMember").await;
    let (status, _) = get(&server, &vic_link, None).await;
    assert_eq!(status, 404, "a removed member's link finds no build");
    membership("addMember").await;
    // Membership is read from the read models: wait until the link works again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&server, &vic_link, None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the link did not work again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
        .id("revokeApiToken", "RevokeApiTokenInput", json!({ "id": vic_token_id }))
        .await;
    let (status, body) = get(&server, &vic_link, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no longer valid"), "{body}");

    // A token of another org cannot even see the job to ask for a link.
    let other_org = server
        .id("createOrg", "CreateOrgInput", json!({ "name": "o", "slug": "other" }))
        .await;
    let (_, outsider) = new_token(&server, json!({ "name": "o", "orgId": other_org, "role": "owner" })).await;
    let body = ask(
        &server,
        &outsider,
        "query($job: ID!) { job(id: $job) { logDownloadLink } }",
        json!({ "job": job }),
    )
    .await;
    assert_eq!(body["data"]["job"], Value::Null, "{body}");
    let (status, _) = get(&server, &path, Some(&outsider)).await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// What the server checks against the clock, checked with the clock moved: a ticket expires
/// after five minutes, and opens only where and for whom it was made.
#[sqlx::test(migrations = "../migrations")]
async fn a_ticket_expires_after_five_minutes_and_needs_the_key_it_was_sealed_with(pool: PgPool) {
    let admin = TokenHash::of(ADMIN);
    let auth = AuthConfig::Required { admin: Some(admin) };
    let tickets = Tickets::new(Some(keys(&pool)), &auth);
    let caller = monkeyci_api::Caller {
        actor: "admin".into(),
        grant: monkeyci_api::Grant::Admin,
        token: None,
        admin_fingerprint: None,
    };
    let now = Utc::now();
    let ticket = tickets
        .make(&caller, "/builds/b/jobs/j/log", now)
        .await
        .expect("ticket");
    let holder = tickets.open(&ticket, "/builds/b/jobs/j/log", now).await.expect("open");
    assert!(matches!(holder, Holder::Admin(_)), "{holder:?}");
    let later = now + chrono::Duration::seconds(299);
    assert!(tickets.open(&ticket, "/builds/b/jobs/j/log", later).await.is_ok());
    let expired = now + chrono::Duration::seconds(300);
    assert_eq!(
        tickets.open(&ticket, "/builds/b/jobs/j/log", expired).await,
        Err(TicketError::Expired)
    );
    assert_eq!(
        tickets.open(&ticket, "/builds/b/jobs/k/log", now).await,
        Err(TicketError::OtherPath)
    );

    // With another tickets key (another installation's) it does not open; without keys none is
    // made.
    sqlx::query("DELETE FROM data_keys")
        .execute(&pool)
        .await
        .expect("delete");
    let fresh = Tickets::new(Some(keys(&pool)), &auth);
    assert_eq!(
        fresh.open(&ticket, "/builds/b/jobs/j/log", now).await,
        Err(TicketError::Invalid)
    );
    let keyless = Tickets::new(None, &auth);
    assert_eq!(keyless.make(&caller, "/x", now).await, Err(TicketError::NoKeys));
    // A caller without a token of its own (the admin of a server without an admin token).
    let no_admin = Tickets::new(Some(keys(&pool)), &AuthConfig::Required { admin: None });
    assert_eq!(no_admin.make(&caller, "/x", now).await, Err(TicketError::NoHolder));
}
