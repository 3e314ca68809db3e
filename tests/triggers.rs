//! Builds that start by themselves: signed webhook deliveries from each git host over real HTTP,
//! cron schedules fired with a chosen clock by racing tickers, and the secrets behind webhooks
//! (sealed at rest, destroyed with the webhook, rewrapped when the master key rotates).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use monkeyci_commands::{CreateSchedule, KeyStore, WEBHOOK_SECRET};
use monkeyci_crypto::{MasterKey, MasterKeys};
use monkeyci_domain::RepoId;
use monkeyci_runner::ScheduleTicker;
use monkeyci_tests::{table_rows, user, TestApp};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::PgPool;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHhscGxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwI=";

const BEFORE: &str = "1111111111111111111111111111111111111111";
const FIRST: &str = "2222222222222222222222222222222222222222";
const HEAD: &str = "3333333333333333333333333333333333333333";

fn keys(pool: &PgPool, current: &str, previous: &[&str]) -> KeyStore {
    let current = MasterKey::from_base64(current).expect("key");
    let previous = previous.iter().map(|k| MasterKey::from_base64(k).expect("key"));
    KeyStore::new(pool.clone(), MasterKeys::new(current, previous).expect("keyring"))
}

async fn app(pool: PgPool) -> TestApp {
    let keys = keys(&pool, KEY_A, &[]);
    TestApp::spawn_with(pool, |c| c.keys = Some(keys)).await.expect("app")
}

/// An org and a repo; returns the repo's global id.
async fn repo(app: &TestApp, slug: &str) -> String {
    let org = app.create_org(slug).await.expect("org");
    app.create_repo(&org, "app").await.expect("repo")
}

/// `createWebhook`; returns (id, secret, path).
async fn create_webhook(app: &TestApp, repo: &str, host: &str, secret: Option<&str>) -> (String, String, String) {
    let body = app
        .graphql(
            "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhookId secret path } }",
            json!({ "input": { "repoId": repo, "host": host, "secret": secret } }),
        )
        .await
        .expect("createWebhook");
    let created = &body["data"]["createWebhook"];
    let field = |name: &str| {
        created[name]
            .as_str()
            .unwrap_or_else(|| panic!("createWebhook: {body}"))
            .to_owned()
    };
    (field("webhookId"), field("secret"), field("path"))
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A delivery as `host` sends it: its event, delivery and signature headers, signed with
/// `secret` the way the host documents it.
fn delivery(host: &str, event: &str, delivery_id: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let signed = hmac_hex(secret, body);
    let headers: Vec<(&str, String)> = match host {
        "github" => vec![
            ("X-GitHub-Event", event.into()),
            ("X-GitHub-Delivery", delivery_id.into()),
            ("X-Hub-Signature-256", format!("sha256={signed}")),
        ],
        "gitlab" => vec![
            ("X-Gitlab-Event", event.into()),
            ("X-Gitlab-Event-UUID", delivery_id.into()),
            ("X-Gitlab-Token", secret.into()),
        ],
        "bitbucket" => vec![
            ("X-Event-Key", event.into()),
            ("X-Request-UUID", delivery_id.into()),
            ("X-Hub-Signature", format!("sha256={signed}")),
        ],
        "gitea" => vec![
            ("X-Gitea-Event", event.into()),
            ("X-Gitea-Delivery", delivery_id.into()),
            ("X-Gitea-Signature", signed),
        ],
        "forgejo" => vec![
            ("X-Forgejo-Event", event.into()),
            ("X-Forgejo-Delivery", delivery_id.into()),
            ("X-Forgejo-Signature", signed.clone()),
            ("X-Gitea-Signature", signed),
        ],
        other => panic!("unknown host {other}"),
    };
    headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A push of two commits to `refs/heads/main` in each host's documented shape, and its event name.
fn push(host: &str) -> (&'static str, Value) {
    let commits = json!([
        { "id": FIRST, "message": "Add login form\n", "author": { "name": "Ada", "email": "ada@example.com" },
          "added": ["web/login.html"], "modified": ["web/app.js"], "removed": [] },
        { "id": HEAD, "message": "Validate input\n", "author": { "name": "Grace", "email": "grace@example.com" },
          "added": [], "modified": ["web/app.js"], "removed": ["web/old.js"] }
    ]);
    match host {
        "github" => (
            "push",
            json!({ "ref": "refs/heads/main", "before": BEFORE, "after": HEAD, "created": false, "deleted": false,
                    "forced": false, "commits": commits, "head_commit": commits[1],
                    "repository": { "full_name": "acme/app" }, "pusher": { "name": "grace" } }),
        ),
        "gitlab" => (
            "Push Hook",
            json!({ "object_kind": "push", "event_name": "push", "ref": "refs/heads/main", "before": BEFORE,
                    "after": HEAD, "checkout_sha": HEAD, "user_name": "Grace", "commits": commits,
                    "total_commits_count": 2, "project": { "path_with_namespace": "acme/app" } }),
        ),
        "gitea" | "forgejo" => (
            "push",
            json!({ "ref": "refs/heads/main", "before": BEFORE, "after": HEAD, "commits": commits,
                    "total_commits": 2, "head_commit": commits[1], "repository": { "full_name": "acme/app" },
                    "pusher": { "login": "grace" } }),
        ),
        "bitbucket" => {
            let side = |hash: &str, message: &str| {
                json!({ "type": "branch", "name": "main",
                        "target": { "type": "commit", "hash": hash, "message": message,
                                    "author": { "raw": "Grace <grace@example.com>", "user": { "display_name": "Grace" } } } })
            };
            (
                "repo:push",
                json!({ "actor": { "display_name": "Grace" }, "repository": { "full_name": "acme/app" },
                        "push": { "changes": [ { "old": side(BEFORE, "Before\n"), "new": side(HEAD, "Validate input\n"),
                                                 "created": false, "closed": false, "forced": false, "commits": [] } ] } }),
            )
        }
        other => panic!("unknown host {other}"),
    }
}

async fn post(app: &TestApp, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
    let mut request = app
        .http
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn build_of(app: &TestApp, id: &str) -> Value {
    let body = app
        .graphql(
            "query($id: ID!) { build(id: $id) { source branch tag commit repo { id } } }",
            json!({ "id": id }),
        )
        .await
        .expect("build");
    body["data"]["build"].clone()
}

async fn event_count(pool: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_signed_push_from_each_host_queues_one_build_with_its_details(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    for host in ["github", "gitlab", "bitbucket", "gitea", "forgejo"] {
        let (webhook_id, secret, path) = create_webhook(&app, &repo, &host.to_uppercase(), None).await;
        assert!(path.starts_with(&format!("/webhooks/{host}/")), "{path}");
        // The id `createWebhook` returns names the webhook in its URL as well as the path's UUID.
        let path = match host {
            "gitlab" | "forgejo" => format!("/webhooks/{host}/{webhook_id}"),
            _ => path,
        };
        let (event, payload) = push(host);
        let body = serde_json::to_vec(&payload).expect("test setup");
        let headers = delivery(host, event, &format!("{host}-delivery-1"), &body, &secret);
        let (status, answer) = post(&app, &path, &headers, &body).await;
        assert_eq!(status, 202, "{host}: {answer}");
        let build_id = answer["buildId"].as_str().unwrap_or_else(|| panic!("{host}: {answer}"));
        let build = build_of(&app, build_id).await;
        assert_eq!(build["source"], "WEBHOOK", "{host}: {build}");
        assert_eq!(
            (build["branch"].as_str(), build["tag"].as_str()),
            (Some("main"), None),
            "{host}"
        );
        assert_eq!(build["commit"], HEAD, "{host}");
        assert_eq!(build["repo"]["id"], repo.as_str(), "{host}");

        // The push's details are in the build's event: message and author of the head commit,
        // and the changed files where the host lists them all (Bitbucket lists none).
        let queued: Value = sqlx::query_scalar(
            "SELECT data FROM events WHERE event_type = 'BuildQueued' ORDER BY position DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .expect("test setup");
        let details = &queued["trigger"]["push"];
        assert_eq!(details["message"], "Validate input", "{host}: {details}");
        assert!(
            details["author"].as_str().is_some_and(|a| a.contains("Grace")),
            "{host}: {details}"
        );
        if host == "bitbucket" {
            assert!(details.get("changed_files").is_none(), "{details}");
        } else {
            assert_eq!(
                details["changed_files"],
                json!(["web/app.js", "web/login.html", "web/old.js"]),
                "{host}"
            );
        }
    }
    assert_eq!(event_count(&pool, "BuildQueued").await, 5);
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_signatures_unknown_webhooks_and_redeliveries_start_nothing(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    let (_, secret, path) = create_webhook(&app, &repo, "GITHUB", Some("a-secret-chosen-by-the-user")).await;
    assert_eq!(secret, "a-secret-chosen-by-the-user");
    let (event, payload) = push("github");
    let body = serde_json::to_vec(&payload).expect("test setup");

    // Signed with another secret; no signature; a tampered body.
    let wrong = delivery("github", event, "d-1", &body, "not-the-secret-at-all");
    let (status, answer) = post(&app, &path, &wrong, &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().expect("test setup").contains("does not match"),
        "{answer}"
    );
    let unsigned: Vec<_> = wrong
        .iter()
        .filter(|(k, _)| k != "X-Hub-Signature-256")
        .cloned()
        .collect();
    let (status, answer) = post(&app, &path, &unsigned, &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("test setup")
            .contains("X-Hub-Signature-256"),
        "{answer}"
    );
    let signed = delivery("github", event, "d-1", &body, &secret);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(post(&app, &path, &signed, &tampered).await.0, 401);

    // Unknown webhook, unknown host, the right id under another host.
    let id = path.rsplit('/').next().expect("test setup");
    let other = format!("/webhooks/github/{}", uuid::Uuid::now_v7());
    assert_eq!(post(&app, &other, &signed, &body).await.0, 404);
    assert_eq!(post(&app, &format!("/webhooks/svn/{id}"), &signed, &body).await.0, 404);
    assert_eq!(
        post(&app, &format!("/webhooks/gitea/{id}"), &signed, &body).await.0,
        404
    );
    assert_eq!(
        event_count(&pool, "BuildQueued").await,
        0,
        "refused deliveries appended nothing"
    );

    // A redelivery (same delivery id) answers with the first build and starts nothing.
    let (status, first) = post(&app, &path, &signed, &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post(&app, &path, &signed, &body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(first["buildId"], again["buildId"]);
    let next = delivery("github", event, "d-2", &body, &secret);
    let (_, second) = post(&app, &path, &next, &body).await;
    assert_ne!(first["buildId"], second["buildId"]);
    assert_eq!(event_count(&pool, "BuildQueued").await, 2);

    // Ping answers 200, other events are accepted and ignored, a branch deletion builds nothing.
    let ping = serde_json::to_vec(&json!({ "zen": "Keep it logically awesome.", "hook_id": 1 })).expect("test setup");
    let (status, answer) = post(&app, &path, &delivery("github", "ping", "d-3", &ping, &secret), &ping).await;
    assert_eq!((status, answer["event"].as_str()), (200, Some("ping")), "{answer}");
    let issue = serde_json::to_vec(&json!({ "action": "opened", "issue": { "number": 1 } })).expect("test setup");
    let (status, answer) = post(
        &app,
        &path,
        &delivery("github", "issues", "d-4", &issue, &secret),
        &issue,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"].as_str().expect("test setup").starts_with("issues"),
        "{answer}"
    );
    let mut deletion = payload.clone();
    deletion["deleted"] = json!(true);
    deletion["after"] = json!("0000000000000000000000000000000000000000");
    deletion["commits"] = json!([]);
    deletion["head_commit"] = Value::Null;
    let deletion = serde_json::to_vec(&deletion).expect("test setup");
    let (status, answer) = post(
        &app,
        &path,
        &delivery("github", "push", "d-5", &deletion, &secret),
        &deletion,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"].as_str().expect("test setup").contains("deletion"),
        "{answer}"
    );

    // Malformed JSON, correctly signed: 400, nothing appended.
    let junk = b"{not json".to_vec();
    let (status, _) = post(&app, &path, &delivery("github", "push", "d-6", &junk, &secret), &junk).await;
    assert_eq!(status, 400);
    assert_eq!(event_count(&pool, "BuildQueued").await, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn rotating_and_deleting_a_webhook_changes_which_deliveries_pass(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    let (id, old_secret, path) = create_webhook(&app, &repo, "GITEA", None).await;
    let (event, payload) = push("gitea");
    let body = serde_json::to_vec(&payload).expect("test setup");

    let rotated = app
        .graphql(
            "mutation($input: RotateWebhookSecretInput!) { rotateWebhookSecret(input: $input) { secret path } }",
            json!({ "input": { "id": id } }),
        )
        .await
        .expect("test setup");
    let new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]
        .as_str()
        .expect("test setup")
        .to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        post(&app, &path, &delivery("gitea", event, "r-1", &body, &old_secret), &body)
            .await
            .0,
        401
    );
    assert_eq!(
        post(&app, &path, &delivery("gitea", event, "r-2", &body, &new_secret), &body)
            .await
            .0,
        202
    );

    // The repo lists its webhooks without secrets.
    let listed = app
        .graphql(
            "query($id: ID!) { repo(id: $id) { webhooks { id host path rotatedAt } } }",
            json!({ "id": repo }),
        )
        .await
        .expect("test setup");
    let hooks = &listed["data"]["repo"]["webhooks"];
    assert_eq!(hooks.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(hooks[0]["host"], "GITEA");
    assert!(hooks[0]["rotatedAt"].is_string());

    // Deleting destroys the data key: deliveries get 404 and no copy of the secret opens again.
    app.mutate_id("deleteWebhook", "DeleteInput", json!({ "id": id }))
        .await
        .expect("test setup");
    assert_eq!(
        post(&app, &path, &delivery("gitea", event, "r-3", &body, &new_secret), &body)
            .await
            .0,
        404
    );
    let keys_left: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys")
        .fetch_one(&pool)
        .await
        .expect("test setup");
    assert_eq!(keys_left, 0);
    let again = app
        .graphql(
            "mutation($input: DeleteInput!) { deleteWebhook(input: $input) }",
            json!({ "input": { "id": id } }),
        )
        .await
        .expect("test setup");
    assert_eq!(again["errors"][0]["extensions"]["code"], "NOT_FOUND", "{again}");

    // Too short a secret is refused, and so is a repo that does not exist.
    let short = app
        .graphql(
            "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhookId } }",
            json!({ "input": { "repoId": repo, "host": "GITHUB", "secret": "short" } }),
        )
        .await
        .expect("test setup");
    assert_eq!(short["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{short}");
}

#[sqlx::test(migrations = "../migrations")]
async fn secrets_are_only_ciphertext_in_the_log_and_the_read_models(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    let secret = "plaintext-webhook-secret-4711";
    let (id, _, _) = create_webhook(&app, &repo, "GITLAB", Some(secret)).await;
    let rotated = "plaintext-rotated-secret-0815";
    app.graphql(
        "mutation($input: RotateWebhookSecretInput!) { rotateWebhookSecret(input: $input) { secret } }",
        json!({ "input": { "id": id, "secret": rotated } }),
    )
    .await
    .expect("test setup");
    app.core.caught_up().await.expect("test setup");
    let log: String =
        sqlx::query_scalar("SELECT string_agg(event_type || data::text || metadata::text, ' ') FROM events")
            .fetch_one(&pool)
            .await
            .expect("test setup");
    let webhooks =
        serde_json::to_string(&table_rows(&pool, "webhooks", "id").await.expect("test setup")).expect("test setup");
    let keys = serde_json::to_string(&table_rows(&pool, "data_keys", "owner_id").await.expect("test setup"))
        .expect("test setup");
    let idempotency = serde_json::to_string(&table_rows(&pool, "idempotency_keys", "key").await.expect("test setup"))
        .expect("test setup");
    for plaintext in [secret, rotated] {
        for (what, text) in [
            ("log", &log),
            ("webhooks", &webhooks),
            ("data_keys", &keys),
            ("idempotency", &idempotency),
        ] {
            assert!(!text.contains(plaintext), "{plaintext} found in {what}");
        }
    }
    assert!(log.contains("WebhookSecretRotated"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rotated_master_key_rewraps_every_data_key_and_secrets_still_open(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    let (_, secret, _) = create_webhook(&app, &repo, "GITHUB", None).await;
    let (_, secret_2, _) = create_webhook(&app, &repo, "GITLAB", None).await;
    app.core.caught_up().await.expect("caught up");
    let old = keys(&pool, KEY_A, &[]);
    let new_id = MasterKey::from_base64(KEY_B).expect("test setup").id().to_owned();

    // Step 1: the new key is current, the old one previous; everything is rewrapped.
    let rotating = keys(&pool, KEY_B, &[KEY_A]);
    assert_eq!(rotating.rewrap_all().await.expect("test setup"), 2);
    assert_eq!(
        rotating.rewrap_all().await.expect("test setup"),
        0,
        "a second pass has nothing to do"
    );
    let ids: BTreeSet<String> = sqlx::query_scalar("SELECT master_key_id FROM data_keys")
        .fetch_all(&pool)
        .await
        .expect("test setup")
        .into_iter()
        .collect();
    assert_eq!(ids, BTreeSet::from([new_id.clone()]));

    // Step 2: the old key is gone from the configuration; both secrets open with the new key
    // alone, and the old key alone opens nothing.
    let new_only = keys(&pool, KEY_B, &[]);
    let rows = table_rows(&pool, "webhooks", "id").await.expect("webhooks");
    let mut opened = BTreeSet::new();
    for row in &rows {
        let id: uuid::Uuid = row["id"].as_str().expect("id").parse().expect("uuid");
        let sealed: monkeyci_crypto::Sealed = serde_json::from_value(row["secret"].clone()).expect("sealed");
        let plain = new_only
            .open(id, WEBHOOK_SECRET, &sealed)
            .await
            .expect("opens with the new key");
        opened.insert(plain.to_string());
        let Err(error) = old.open(id, WEBHOOK_SECRET, &sealed).await else {
            panic!("the retired key must not open a key wrapped by the new one");
        };
        assert!(error.to_string().contains(&new_id), "{error}");
    }
    assert_eq!(opened, BTreeSet::from([secret, secret_2]));
}

/// The UUID inside a global id of `kind`.
fn uuid_of(global: &str, kind: &str) -> uuid::Uuid {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .expect("test setup");
    let text = String::from_utf8(raw).expect("test setup");
    let uuid = text
        .strip_prefix(&format!("{kind}:"))
        .unwrap_or_else(|| panic!("{text} is no {kind}"));
    uuid.parse().expect("test setup")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test setup")
        .with_timezone(&Utc)
}

#[sqlx::test(migrations = "../migrations")]
async fn each_tick_fires_one_build_even_with_racing_schedulers_and_no_backlog(pool: PgPool) {
    let app = app(pool.clone()).await;
    let repo = repo(&app, "acme").await;
    let repo_id = RepoId::from_uuid(uuid_of(&repo, "Repo"));
    let commands = app.core.commands.clone();
    let schedule = commands
        .create_schedule(
            &user(),
            CreateSchedule {
                repo_id,
                cron: "0 * * * *".into(),
            },
        )
        .await
        .expect("test setup");
    app.core.caught_up().await.expect("test setup");
    let created: DateTime<Utc> = sqlx::query_scalar("SELECT since FROM schedules WHERE id = $1")
        .bind(schedule.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("test setup");

    // Hourly ticks; pretend the clock is just after the second full hour following creation.
    let cron = monkeyci_domain::cron::Cron::parse("0 * * * *").expect("test setup");
    let first_tick = cron.next_after(created).expect("test setup");
    let second_tick = cron.next_after(first_tick).expect("test setup");
    let third_tick = cron.next_after(second_tick).expect("test setup");

    // Before the first tick nothing fires (the latest tick lies before the schedule existed).
    let ticker = ScheduleTicker::new(pool.clone(), commands.clone());
    assert!(ticker
        .fire(first_tick - chrono::Duration::seconds(1))
        .await
        .expect("test setup")
        .is_empty());

    // Two servers race for the same tick, many times over: one build.
    let other = ScheduleTicker::new(pool.clone(), commands.clone());
    let now = first_tick + chrono::Duration::seconds(5);
    let (a, b) = tokio::join!(ticker.fire(now), other.fire(now));
    let (a, b) = (a.expect("test setup"), b.expect("test setup"));
    assert_eq!(a.len(), 1);
    assert_eq!(a, b, "both servers report the same build");
    assert_eq!(a[0].tick, first_tick);
    for _ in 0..3 {
        ticker
            .fire(now + chrono::Duration::seconds(30))
            .await
            .expect("test setup");
    }
    assert_eq!(event_count(&pool, "BuildQueued").await, 1);

    // A server down through the second and third tick fires only the latest one when it is back.
    let back = third_tick + chrono::Duration::minutes(20);
    let fired = ticker.fire(back).await.expect("test setup");
    assert_eq!(fired.iter().map(|f| f.tick).collect::<Vec<_>>(), vec![third_tick]);
    assert_eq!(
        event_count(&pool, "BuildQueued").await,
        2,
        "the second tick is not replayed"
    );

    // The builds are of the main branch, from the schedule, recorded as its actor.
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT metadata->>'actor' FROM events WHERE event_type = 'BuildQueued' ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("test setup");
    assert_eq!(actors, vec![format!("schedule:{schedule}"); 2]);
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT data->'trigger'->>'source' FROM events WHERE event_type = 'BuildQueued'")
            .fetch_all(&pool)
            .await
            .expect("test setup");
    assert_eq!(sources, vec!["schedule".to_owned(); 2]);

    // Deleted, it fires no more.
    commands
        .delete_schedule(&user(), monkeyci_commands::DeleteSchedule { schedule_id: schedule })
        .await
        .expect("test setup");
    app.core.caught_up().await.expect("test setup");
    assert!(ticker
        .fire(back + chrono::Duration::hours(5))
        .await
        .expect("test setup")
        .is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn schedules_are_managed_through_the_api_with_clear_errors(pool: PgPool) {
    let app = app(pool).await;
    let repo = repo(&app, "acme").await;
    let id = app
        .mutate_id(
            "createSchedule",
            "CreateScheduleInput",
            json!({ "repoId": repo, "cron": "30 2 * * mon-fri" }),
        )
        .await
        .expect("test setup");
    let bad = app
        .graphql(
            "mutation($input: CreateScheduleInput!) { createSchedule(input: $input) }",
            json!({ "input": { "repoId": repo, "cron": "61 * * * *" } }),
        )
        .await
        .expect("test setup");
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{bad}");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .expect("test setup")
            .contains("minute"),
        "{bad}"
    );
    app.mutate_id(
        "updateSchedule",
        "UpdateScheduleInput",
        json!({ "id": id, "cron": "@daily" }),
    )
    .await
    .expect("test setup");
    let listed = app
        .graphql(
            "query($id: ID!) { repo(id: $id) { schedules { id cron nextRunAt } } }",
            json!({ "id": repo }),
        )
        .await
        .expect("test setup");
    let schedules = &listed["data"]["repo"]["schedules"];
    assert_eq!(schedules[0]["cron"], "@daily", "{listed}");
    let next = at(schedules[0]["nextRunAt"].as_str().expect("test setup"));
    assert_eq!((next.timestamp() % 86_400, next > Utc::now()), (0, true));
    app.mutate_id("deleteSchedule", "DeleteInput", json!({ "id": id }))
        .await
        .expect("test setup");
    let listed = app
        .graphql(
            "query($id: ID!) { repo(id: $id) { schedules { id } } }",
            json!({ "id": repo }),
        )
        .await
        .expect("test setup");
    assert_eq!(listed["data"]["repo"]["schedules"], json!([]));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_delivery_body_is_read_only_for_a_known_webhook_and_only_up_to_the_limit(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = keys(&pool, KEY_A, &[]);
    let app = TestApp::spawn_with(pool.clone(), |c| {
        c.keys = Some(keys);
        c.webhook_body_limit = 64 * 1024;
    })
    .await
    .expect("app");
    let repo = repo(&app, "acme").await;
    let (_, secret, path) = create_webhook(&app, &repo, "GITHUB", None).await;

    // The abuse first: 25 MiB announced to a webhook that does not exist, and not one byte of
    // it sent. The answer comes without waiting for the body.
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/github/{} HTTP/1.1\r\nHost: ci\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        uuid::Uuid::new_v4(),
        25 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("answered before the body was sent")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // A known webhook reads at most the limit: one byte more is refused, signed or not.
    let (event, payload) = push("github");
    let mut body = serde_json::to_vec(&payload).expect("test setup");
    body.resize(64 * 1024 + 1, b' ');
    let headers = delivery("github", event, "d-big", &body, &secret);
    let (status, answer) = post(&app, &path, &headers, &body).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("65536 bytes"),
        "{answer}"
    );
    assert_eq!(event_count(&pool, "BuildQueued").await, 0);
    app.stop().await;
}
