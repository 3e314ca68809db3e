//! `monkeyci events export` and `monkeyci events import`, through the real binary: a history
//! moved to a fresh database replays into the same read models, the filters select what they say,
//! and bad input or a database that is not empty writes nothing.

use std::collections::{BTreeMap, HashSet};
use std::process::{Output, Stdio};
use std::time::Instant;

use chrono::{Duration, Utc};
use monkeyci_commands::*;
use monkeyci_domain::access::{Role, TokenSubject};
use monkeyci_domain::{OrgId, RepoId};
use monkeyci_eventstore::{ExpectedVersion, Metadata, NewEvent, StreamAppend};
use monkeyci_tests::{monkeyci_binary, run_workload, user, wait_for_checkpoints, Core};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A database on the test server that does not exist yet (the binary creates it); dropped by
/// [`Target::drop_database`].
struct Target {
    name: String,
    url: String,
    admin: PgPool,
}

impl Target {
    fn new(pool: &PgPool) -> Self {
        let options = pool.connect_options();
        let name = format!("monkeyci_import_{}", uuid::Uuid::now_v7().simple());
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        Self {
            name,
            url,
            admin: pool.clone(),
        }
    }

    /// A new database made by `monkeyci migrate`: the way to get one to import into (`events
    /// import` creates no database).
    async fn migrated(pool: &PgPool) -> Self {
        let target = Self::new(pool);
        let migrated = monkeyci(&target.url, &["migrate"], b"").await;
        assert!(migrated.status.success(), "{}", stderr(&migrated));
        target
    }

    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(10)
            .connect(&self.url)
            .await
            .expect("connect to the imported database")
    }

    async fn drop_database(self) {
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("drop the imported database");
    }
}

/// The URL of the database behind `pool`.
fn url_of(pool: &PgPool) -> String {
    monkeyci_tests::database_url(pool)
}

/// Runs `monkeyci` on the database at `url` with `stdin` as its input.
pub(crate) async fn monkeyci(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env("MONKEYCI_DATABASE_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run monkeyci");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = tokio::spawn(async move {
        // A refused import stops reading: a broken pipe is expected then.
        let _ = input.write_all(&stdin).await;
    });
    let output = child.wait_with_output().await.expect("wait for monkeyci");
    writer.await.expect("stdin writer");
    output
}

async fn export(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["events", "export"];
    all.extend_from_slice(args);
    let out = monkeyci(url, &all, b"").await;
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    out
}

async fn import(url: &str, args: &[&str], input: &[u8]) -> Output {
    let mut all = vec!["events", "import"];
    all.extend_from_slice(args);
    monkeyci(url, &all, input).await
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of an export, each parsed (and so each checked to be one JSON object).
fn lines(stdout: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(stdout).expect("stdout is UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends with \\n");
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value.is_object(), "{line}");
            (line.to_owned(), value)
        })
        .collect()
}

fn event_lines(all: &[(String, Value)]) -> Vec<&(String, Value)> {
    all.iter().filter(|(_, v)| v.get("data_key").is_none()).collect()
}

fn key_lines(all: &[(String, Value)]) -> Vec<&(String, Value)> {
    all.iter().filter(|(_, v)| v.get("data_key").is_some()).collect()
}

/// Every stored field of every event, in log order; positions and transaction ids left out.
async fn stored_events(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT to_jsonb(e) - 'position' - 'transaction_id' FROM events e ORDER BY transaction_id, position",
    )
    .fetch_all(pool)
    .await
    .expect("events")
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Every row of `table`, as JSON, sorted; the audit index with each entry's event named by stream
/// and version (its positions are the database's own).
async fn read_model(pool: &PgPool, table: &str) -> Vec<Value> {
    let sql = if table == "audit_entries" {
        "SELECT jsonb_build_object('org_id', a.org_id, 'stream_id', e.stream_id, 'version', e.stream_version) \
         FROM audit_entries a JOIN events e ON e.transaction_id = a.tx::text::xid8 AND e.position = a.position \
         ORDER BY a.org_id, a.tx, a.position"
            .to_owned()
    } else {
        format!("SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text")
    };
    sqlx::query_scalar(&sql).fetch_all(pool).await.expect(table)
}

/// The projections of the server, by name.
fn projection_names() -> Vec<&'static str> {
    monkeyci_projections::all().iter().map(|p| p.name()).collect()
}

/// The read-model tables of every projection.
fn read_model_tables() -> Vec<&'static str> {
    monkeyci_projections::all()
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect()
}

/// Data keys in `pool`, under the tests' master key.
fn keys(pool: &PgPool) -> KeyStore {
    crate::access::keys(pool)
}

/// Two orgs with members, tokens, repos, builds with jobs, webhooks, schedules, parameter sets
/// and ssh keys (some changed, some deleted), plus two more orgs of the standard workload.
async fn history(commands: &CommandHandler) -> (OrgId, OrgId) {
    let ctx = user();
    let ada = commands
        .create_user(&ctx, CreateUser { name: "Ada".into() })
        .await
        .expect("user");
    let mut orgs = Vec::new();
    for slug in ["acme", "globex"] {
        let org_id = commands
            .create_org(
                &ctx.clone().with_idempotency_key(format!("create-{slug}")),
                CreateOrg {
                    name: format!("Org {slug}"),
                    slug: slug.into(),
                },
            )
            .await
            .expect("org");
        commands
            .add_member(
                &ctx,
                AddMember {
                    org_id,
                    user_id: ada,
                    role: "member".into(),
                },
            )
            .await
            .expect("member");
        let token = commands
            .create_token(
                &ctx,
                CreateToken {
                    token_id: None,
                    name: format!("{slug} automation"),
                    subject: TokenSubject::Org {
                        org_id,
                        role: Role::Member,
                    },
                    hash: monkeyci_crypto::TokenHash::of(&format!("token-of-{slug}"))
                        .as_str()
                        .to_owned(),
                    expires_at: Utc::now() + Duration::days(30),
                },
            )
            .await
            .expect("token");
        if slug == "globex" {
            commands
                .revoke_token(&ctx, RevokeToken { token_id: token })
                .await
                .expect("revoke");
        }
        let mut repos: Vec<RepoId> = Vec::new();
        for name in ["app", "lib"] {
            let repo_id = commands
                .add_repo(
                    &ctx,
                    AddRepo {
                        org_id,
                        name: name.into(),
                        git_url: format!("https://git.example/{slug}/{name}.git"),
                        main_branch: None,
                        labels: [("team".to_owned(), name.to_owned())].into(),
                    },
                )
                .await
                .expect("repo");
            repos.push(repo_id);
            let build_id = commands
                .trigger_build(
                    &ctx,
                    TriggerBuild {
                        repo_id,
                        source: monkeyci_domain::build::TriggerSource::Api,
                        branch: Some("main".into()),
                        tag: None,
                        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                        params: BTreeMap::new(),
                        push: None,
                    },
                )
                .await
                .expect("build");
            commands
                .start_build(
                    &ctx,
                    StartBuild {
                        build_id,
                        runner: "runner-1".into(),
                    },
                )
                .await
                .expect("start");
            commands
                .queue_job(
                    &ctx,
                    QueueJob {
                        build_id,
                        job_id: "test".into(),
                        dependencies: vec![],
                    },
                )
                .await
                .expect("queue");
            for transition in [JobTransitionInput::Started, JobTransitionInput::Succeeded] {
                commands
                    .transition_job(
                        &ctx,
                        TransitionJob {
                            build_id,
                            job_id: "test".into(),
                            transition,
                        },
                    )
                    .await
                    .expect("transition");
            }
            commands
                .finish_build(
                    &ctx,
                    FinishBuild {
                        build_id,
                        outcome: monkeyci_domain::build::BuildOutcome::Succeeded,
                        message: None,
                    },
                )
                .await
                .expect("finish");
        }
        commands
            .rename_org(
                &ctx,
                RenameOrg {
                    org_id,
                    name: format!("Org {slug}, renamed"),
                },
            )
            .await
            .expect("rename");
        commands
            .archive_repo(&ctx, ArchiveRepo { repo_id: repos[1] })
            .await
            .expect("archive");
        let webhook = commands
            .create_webhook(
                &ctx,
                CreateWebhook {
                    repo_id: repos[0],
                    host: "github".into(),
                    secret: Some(SecretText::new(format!("whsec-{slug}"))),
                },
            )
            .await
            .expect("webhook");
        commands
            .rotate_webhook_secret(
                &ctx,
                RotateWebhookSecret {
                    webhook_id: webhook,
                    secret: None,
                },
            )
            .await
            .expect("rotate");
        let gone = commands
            .create_webhook(
                &ctx,
                CreateWebhook {
                    repo_id: repos[0],
                    host: "gitlab".into(),
                    secret: None,
                },
            )
            .await
            .expect("second webhook");
        commands
            .delete_webhook(&ctx, DeleteWebhook { webhook_id: gone })
            .await
            .expect("delete webhook");
        let schedule = commands
            .create_schedule(
                &ctx,
                CreateSchedule {
                    repo_id: repos[0],
                    cron: "0 3 * * *".into(),
                },
            )
            .await
            .expect("schedule");
        commands
            .change_schedule(
                &ctx,
                ChangeSchedule {
                    schedule_id: schedule,
                    cron: "@hourly".into(),
                },
            )
            .await
            .expect("change schedule");
        commands
            .create_param_set(
                &ctx,
                CreateParamSet {
                    org_id,
                    content: ParamSetContent::new(
                        "deploy".into(),
                        vec![vec![("team".into(), "app".into())]],
                        true,
                        [("TOKEN".to_owned(), SecretText::new(format!("secret-of-{slug}")))].into(),
                    ),
                },
            )
            .await
            .expect("param set");
        commands
            .add_ssh_key(
                &ctx,
                AddSshKey {
                    org_id,
                    description: "checkout".into(),
                    filter: vec![],
                    protected: false,
                    public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ci@example".into(),
                    private_key: SecretText::new(
                        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                    ),
                },
            )
            .await
            .expect("ssh key");
        orgs.push(org_id);
    }
    run_workload(commands, 2, 2, 4).await.expect("workload");
    (orgs[0], orgs[1])
}

/// Starts the projections on `pool` and waits until every one has applied the whole log.
async fn replayed(pool: PgPool) -> Core {
    let core = Core::start(pool).await.expect("core");
    wait_for_checkpoints(&core.store, &projection_names(), std::time::Duration::from_secs(60))
        .await
        .expect("the projections reach the head");
    core
}

#[sqlx::test(migrations = "../migrations")]
async fn an_exported_history_imported_into_a_fresh_database_replays_into_the_same_read_models(pool: PgPool) {
    let mut source = replayed(pool.clone()).await;
    let commands = CommandHandler::new(source.store.clone()).with_keys(keys(&pool));
    history(&commands).await;
    wait_for_checkpoints(&source.store, &projection_names(), std::time::Duration::from_secs(60))
        .await
        .expect("source projections at the head");
    let source_url = url_of(&pool);

    let exported = export(&source_url, &[]).await;
    let all = lines(&exported.stdout);
    let events = event_lines(&all);
    assert_eq!(events.len() as i64, count(&pool, "events").await);
    assert_eq!(key_lines(&all).len() as i64, count(&pool, "data_keys").await);
    assert!(
        count(&pool, "data_keys").await >= 6,
        "webhooks, parameter sets and ssh keys have keys"
    );
    let first_key = all
        .iter()
        .position(|(_, v)| v.get("data_key").is_some())
        .expect("a key line");
    assert!(
        all[first_key..].iter().all(|(_, v)| v.get("data_key").is_some()),
        "the data keys come after the events"
    );
    let sample = &events[0].1;
    for field in [
        "stream_id",
        "stream_version",
        "type",
        "schema_version",
        "data",
        "metadata",
        "recorded_at",
        "cursor",
    ] {
        assert!(sample.get(field).is_some(), "{field} in {sample}");
    }

    let target = Target::migrated(&pool).await;
    let imported = import(&target.url, &[], &exported.stdout).await;
    assert!(imported.status.success(), "import failed: {}", stderr(&imported));
    assert!(
        stderr(&imported).contains(&format!("imported {} events", events.len())),
        "{}",
        stderr(&imported)
    );
    let target_pool = target.pool().await;

    // The log: every field the same, in the same order; positions are new.
    assert_eq!(stored_events(&target_pool).await, stored_events(&pool).await);
    assert_eq!(
        read_model(&target_pool, "data_keys").await,
        read_model(&pool, "data_keys").await,
        "the data keys are restored"
    );

    // The projections of the new database rebuild the same read models, row by row.
    let mut replay = replayed(target_pool.clone()).await;
    let tables = read_model_tables();
    for table in [
        "orgs",
        "repos",
        "builds",
        "jobs",
        "users",
        "api_tokens",
        "webhooks",
        "schedules",
        "param_sets",
        "ssh_keys",
    ] {
        assert!(tables.contains(&table), "{table} is a read model");
        assert!(count(&pool, table).await > 0, "the history fills {table}");
    }
    for table in tables {
        assert_eq!(
            read_model(&target_pool, table).await,
            read_model(&pool, table).await,
            "read model {table}"
        );
    }
    // Secrets stay usable with the same master key: the webhook secrets open in the new database.
    let webhooks: Vec<(uuid::Uuid, Value)> = sqlx::query_as("SELECT id, secret FROM webhooks WHERE NOT deleted")
        .fetch_all(&target_pool)
        .await
        .expect("webhooks");
    assert!(!webhooks.is_empty());
    for (id, secret) in webhooks {
        let sealed = serde_json::from_value(secret).expect("sealed");
        keys(&target_pool)
            .open(id, WEBHOOK_SECRET, &sealed)
            .await
            .expect("the secret opens with the imported data key");
    }

    // A second import into the now filled database is refused and writes nothing.
    let before = count(&target_pool, "events").await;
    let again = import(&target.url, &[], &exported.stdout).await;
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds events"), "{}", stderr(&again));
    assert_eq!(count(&target_pool, "events").await, before);

    replay.stop().await;
    source.stop().await;
    target_pool.close().await;
    target.drop_database().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn org_and_after_select_the_events_of_one_org_and_the_events_after_a_cursor(pool: PgPool) {
    let store = monkeyci_eventstore::EventStore::new(pool.clone());
    let commands = CommandHandler::new(store).with_keys(keys(&pool));
    let (acme, globex) = history(&commands).await;
    let url = url_of(&pool);
    let full = lines(&export(&url, &[]).await.stdout);
    let full_events = event_lines(&full);

    // --org: exactly the events whose metadata names the org, in the same order and form, and the
    // data keys of its aggregates only.
    let by_org = export(&url, &["--org", &acme.as_uuid().to_string()]).await;
    let org_lines = lines(&by_org.stdout);
    let expected: Vec<&String> = full_events
        .iter()
        .filter(|(_, v)| v["metadata"]["org_id"] == json!(acme.as_uuid()))
        .map(|(line, _)| line)
        .collect();
    let got: Vec<&String> = event_lines(&org_lines).into_iter().map(|(line, _)| line).collect();
    assert!(!got.is_empty());
    assert_eq!(got, expected);
    let org_count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE metadata->>'org_id' = $1")
        .bind(acme.as_uuid().to_string())
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(got.len() as i64, org_count);
    let acme_streams: HashSet<String> = event_lines(&org_lines)
        .iter()
        .map(|(_, v)| v["stream_id"].as_str().expect("stream id").to_owned())
        .collect();
    let org_keys = key_lines(&org_lines);
    assert_eq!(
        org_keys.len(),
        3,
        "webhook, parameter set and ssh key of acme (the deleted webhook's key is gone)"
    );
    for (_, key) in &org_keys {
        let owner = key["data_key"]["owner_id"].as_str().expect("owner");
        assert!(
            acme_streams.iter().any(|s| s.ends_with(owner)),
            "{owner} is an aggregate of acme"
        );
    }
    let globex = lines(&export(&url, &["--org", &globex.as_uuid().to_string()]).await.stdout);
    let globex_keys: Vec<&String> = key_lines(&globex).into_iter().map(|(line, _)| line).collect();
    assert_eq!(globex_keys.len(), 3);
    assert!(org_keys.iter().all(|(line, _)| !globex_keys.contains(&line)));

    // The API's global id of the org selects the same.
    let global = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Org:{}", acme.as_uuid()))
    };
    assert_eq!(export(&url, &["--org", &global]).await.stdout, by_org.stdout);
    // Small pages (an org's export scans the log in windows of a page) change nothing.
    let acme_id = acme.as_uuid().to_string();
    assert_eq!(
        export(&url, &["--org", &acme_id, "--page-size", "7"]).await.stdout,
        by_org.stdout
    );

    // The org's export is complete stream by stream, so it imports on its own.
    let target = Target::migrated(&pool).await;
    let imported = import(&target.url, &[], &by_org.stdout).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let target_pool = target.pool().await;
    assert_eq!(count(&target_pool, "events").await, org_count);
    assert_eq!(count(&target_pool, "data_keys").await, 3);
    target_pool.close().await;
    target.drop_database().await;

    // --after: exactly the events after the cursor.
    let middle = full_events.len() / 2;
    let cursor = full_events[middle].1["cursor"].as_str().expect("cursor").to_owned();
    let after_output = export(&url, &["--after", &cursor]).await.stdout;
    assert_eq!(
        export(&url, &["--after", &cursor, "--page-size", "7"]).await.stdout,
        after_output
    );
    let after = lines(&after_output);
    let got: Vec<&String> = event_lines(&after).into_iter().map(|(line, _)| line).collect();
    let expected: Vec<&String> = full_events[middle + 1..].iter().map(|(line, _)| line).collect();
    assert_eq!(got, expected);
    // Both filters together.
    let both = lines(
        &export(&url, &["--org", &acme.as_uuid().to_string(), "--after", &cursor])
            .await
            .stdout,
    );
    assert!(event_lines(&both)
        .iter()
        .all(|(_, v)| v["metadata"]["org_id"] == json!(acme.as_uuid())));
    // A cursor past the end: nothing.
    let last = full_events.last().expect("events").1["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    assert!(event_lines(&lines(&export(&url, &["--after", &last]).await.stdout)).is_empty());

    // An --after export continues streams it does not hold: import refuses it and says why.
    let target = Target::migrated(&pool).await;
    let partial = export(&url, &["--after", &cursor]).await;
    let refused = import(&target.url, &[], &partial.stdout).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("a stream's first event must have version 1"),
        "{}",
        stderr(&refused)
    );
    target.drop_database().await;

    let bad = monkeyci(&url, &["events", "export", "--after", "12"], b"").await;
    assert_eq!(bad.status.code(), Some(2), "clap refuses a bad cursor");
    assert!(stderr(&bad).contains("<tx>.<position>"), "{}", stderr(&bad));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_malformed_or_discontinuous_line_aborts_the_import_naming_the_line_and_writing_nothing(pool: PgPool) {
    let store = monkeyci_eventstore::EventStore::new(pool.clone());
    let commands = CommandHandler::new(store).with_keys(keys(&pool));
    history(&commands).await;
    let exported = export(&url_of(&pool), &[]).await.stdout;
    let text = String::from_utf8(exported).expect("utf-8");
    let good: Vec<&str> = text.lines().collect();
    assert!(good.len() > 100);
    let target = Target::migrated(&pool).await;

    let with = |n: usize, replacement: Option<&str>| -> Vec<u8> {
        let mut out = String::new();
        for (i, line) in good.iter().enumerate() {
            if i + 1 == n {
                if let Some(r) = replacement {
                    out.push_str(r);
                    out.push('\n');
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.into_bytes()
    };
    let parsed = |n: usize| -> Value { serde_json::from_str(good[n - 1]).expect("json") };
    // A line of a stream past its first event, in the middle of the file (several batches in).
    let later = (60..good.len())
        .find(|&n| parsed(n)["stream_version"].as_i64().is_some_and(|v| v > 1))
        .expect("a later event");
    let mut wrong_type = parsed(later);
    wrong_type["stream_version"] = json!("two");
    let mut no_actor = parsed(later);
    no_actor["metadata"]["actor"] = json!("");
    let mut bad_time = parsed(later);
    bad_time["recorded_at"] = json!("yesterday");
    let mut extra = parsed(later);
    extra["surprise"] = json!(1);
    let mut no_data = parsed(later);
    no_data.as_object_mut().expect("object").remove("data");
    let stream = parsed(later)["stream_id"].as_str().expect("stream").to_owned();
    let gap_version = parsed(later)["stream_version"].as_i64().expect("version");
    // Which line follows the removed one in the same stream, counted after the removal.
    let next_of_stream = (later + 1..=good.len())
        .find(|&n| parsed(n)["stream_id"] == json!(stream))
        .map(|n| n - 1);
    let mut duplicated = good.clone();
    duplicated.insert(later, good[later - 1]);
    let duplicated = (duplicated.join("\n") + "\n").into_bytes();

    let mut cases: Vec<(&str, Vec<u8>, usize, String)> = vec![
        (
            "broken JSON",
            with(later, Some("{\"stream_id\": \"x\"")),
            later,
            "EOF while parsing".into(),
        ),
        (
            "not an object",
            with(later, Some("[1, 2]")),
            later,
            "invalid type".into(),
        ),
        (
            "a wrong type",
            with(later, Some(&wrong_type.to_string())),
            later,
            "invalid type: string \"two\"".into(),
        ),
        (
            "no actor",
            with(later, Some(&no_actor.to_string())),
            later,
            "metadata must name an actor".into(),
        ),
        (
            "a bad time",
            with(later, Some(&bad_time.to_string())),
            later,
            "recorded_at".into(),
        ),
        (
            "an unknown field",
            with(later, Some(&extra.to_string())),
            later,
            "unknown field `surprise`".into(),
        ),
        (
            "a missing field",
            with(later, Some(&no_data.to_string())),
            later,
            "missing field `data`".into(),
        ),
        (
            "a duplicated event",
            duplicated,
            later + 1,
            format!("stream {stream}: version {gap_version} does not follow version {gap_version}"),
        ),
    ];
    if let Some(next) = next_of_stream {
        cases.push((
            "a gap",
            with(later, None),
            next,
            format!(
                "stream {stream}: version {} does not follow version {}",
                gap_version + 1,
                gap_version - 1
            ),
        ));
    }
    for (what, input, line, message) in cases {
        // Batches of 10 events: the bad line comes after several inserted batches.
        let out = import(&target.url, &["--batch-size", "10"], &input).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(&format!("line {line}:")), "{what}: line {line} in {err}");
        assert!(err.contains(&message), "{what}: {message:?} in {err}");
        let target_pool = target.pool().await;
        assert_eq!(count(&target_pool, "events").await, 0, "{what}: nothing written");
        assert_eq!(count(&target_pool, "data_keys").await, 0, "{what}: nothing written");
        target_pool.close().await;
    }
    target.drop_database().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn importing_into_a_database_that_has_events_is_refused_and_writes_nothing(pool: PgPool) {
    let store = monkeyci_eventstore::EventStore::new(pool.clone());
    let commands = CommandHandler::new(store).with_keys(keys(&pool));
    history(&commands).await;
    let url = url_of(&pool);
    let exported = export(&url, &[]).await.stdout;
    let events = count(&pool, "events").await;
    let data_keys = count(&pool, "data_keys").await;

    let refused = import(&url, &[], &exported).await;
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing to import: this database already holds events") && err.contains("empty database"),
        "{err}"
    );
    assert_eq!(count(&pool, "events").await, events);
    assert_eq!(count(&pool, "data_keys").await, data_keys);

    // An empty log with read models that moved on is refused too.
    let target = Target::migrated(&pool).await;
    let target_pool = target.pool().await;
    sqlx::query("INSERT INTO projection_checkpoints (name, tx, position) VALUES ('orgs', 5, 7)")
        .execute(&target_pool)
        .await
        .expect("checkpoint");
    let refused = import(&target.url, &[], &exported).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("projection orgs at 5.7 is past its start"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(count(&target_pool, "events").await, 0);
    target_pool.close().await;
    target.drop_database().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn long_exports_and_imports_report_progress_on_stderr_and_keep_stdout_pure_ndjson(pool: PgPool) {
    // 120,000 events in 120 streams, appended a thousand at a time.
    let store = monkeyci_eventstore::EventStore::new(pool.clone());
    let org = uuid::Uuid::now_v7();
    for s in 0..120 {
        let events = (0..1000)
            .map(|i| NewEvent {
                event_type: "LoadTested".into(),
                schema_version: 1,
                data: json!({ "stream": s, "n": i, "text": "line\nwith \"quotes\", ünïcödé and \u{1F600}" }),
                metadata: Metadata {
                    actor: "user:load".into(),
                    correlation_id: uuid::Uuid::now_v7(),
                    causation_id: Some(uuid::Uuid::now_v7()),
                    command_id: uuid::Uuid::now_v7(),
                    idempotency_key: Some(format!("key-{s}-{i}")),
                    org_id: Some(org),
                },
            })
            .collect();
        store
            .append(
                &[StreamAppend {
                    stream_id: format!("load-{}", uuid::Uuid::now_v7()),
                    expected: ExpectedVersion::NoStream,
                    events,
                }],
                None,
            )
            .await
            .expect("append");
    }

    let started = Instant::now();
    let exported = export(&url_of(&pool), &[]).await;
    let export_seconds = started.elapsed().as_secs_f64();
    let err = stderr(&exported);
    assert!(err.contains("exported 100000 events ("), "{err}");
    assert!(err.contains("exported 120000 events and 0 data keys in "), "{err}");
    assert!(err.contains("events/s"), "{err}");
    let all = lines(&exported.stdout);
    assert_eq!(all.len(), 120_000, "stdout holds the events and nothing else");
    assert!(all.iter().all(|(_, v)| v["type"] == "LoadTested"));

    let target = Target::migrated(&pool).await;
    let started = Instant::now();
    let imported = import(&target.url, &[], &exported.stdout).await;
    let import_seconds = started.elapsed().as_secs_f64();
    let err = stderr(&imported);
    assert!(imported.status.success(), "{err}");
    assert!(imported.stdout.is_empty(), "import writes nothing to stdout");
    assert!(err.contains("imported 100000 events ("), "{err}");
    assert!(err.contains("imported 120000 events and 0 data keys in "), "{err}");
    let target_pool = target.pool().await;
    assert_eq!(stored_events(&target_pool).await, stored_events(&pool).await);
    eprintln!(
        "120000 events ({} bytes): export {export_seconds:.2} s, import {import_seconds:.2} s (binary runs, \
         including start-up)\nexport: {}\nimport: {}",
        exported.stdout.len(),
        stderr(&exported).trim(),
        err.trim()
    );
    target_pool.close().await;
    target.drop_database().await;
}
