//! Job output is part of replayable history: after `events export` → `events import` into a
//! new database and a server started on it with the same blob storage, every job's log reads
//! as before, line for line (number, time, stream, text), through the plain-text download,
//! `Job.log` and the `jobLog` subscription; the same when `job_log_lines` was lost. An archive
//! that is not the one its event recorded is refused, and nothing is restored from it.

use std::process::Output;
use std::time::Duration;

use monkeyci_tests::{database_url, WsClient};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::access::ADMIN;
use crate::builds::repo_with;
use crate::server::Server;

/// Colours, stderr, an empty line, and more lines than one page of `Job.log` (5,000) and of
/// the subscription (1,000).
const PIPELINE: &str = r#"
- id: colours
  script:
    - printf '\033[31mred\033[0m and \033[1mbold\033[0m\n'
    - echo "to stderr" >&2
    - echo
    - echo 'quotes " and \ backslash	tab'
    - echo "global=$MONKEYCI_BUILD_GLOBAL_ID uuid=$MONKEYCI_BUILD_ID"
- id: many
  dependencies: [colours]
  script:
    - seq 1 6500
"#;

/// Runs `monkeyci ARGS` on `url` with `stdin`; fails the test if it fails.
async fn monkeyci(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    let out = crate::export::monkeyci(url, args, stdin).await;
    assert!(
        out.status.success(),
        "monkeyci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Everything a client can read of one job's output.
#[derive(Debug, PartialEq)]
struct JobOutput {
    download: String,
    lines: Vec<Value>,
    streamed: Vec<Value>,
}

/// Every job's output of `build`, read the three ways.
async fn read_logs(server: &Server, build: &str) -> Vec<(String, JobOutput)> {
    let jobs = server
        .gql(
            "query($id: ID!) { build(id: $id) { jobs { id jobId } } }",
            json!({ "id": build }),
        )
        .await;
    let mut all = Vec::new();
    for job in jobs["data"]["build"]["jobs"].as_array().expect("jobs") {
        let (global, name) = (job["id"].as_str().expect("id"), job["jobId"].as_str().expect("job"));
        let mut lines = Vec::new();
        let mut after = 0;
        loop {
            let page = server
                .gql(
                    "query($id: ID!, $after: Int) { node(id: $id) { ... on Job { log(after: $after, first: 5000) \
                     { offset at stream text } } } }",
                    json!({ "id": global, "after": after }),
                )
                .await;
            let page = page["data"]["node"]["log"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"))
                .clone();
            let Some(last) = page.last() else { break };
            after = last["offset"].as_i64().expect("offset");
            lines.extend(page);
        }
        let mut ws = WsClient::connect(server.base.trim_start_matches("http://"))
            .await
            .expect("ws");
        ws.init_with(json!({ "Authorization": format!("Bearer {ADMIN}") }))
            .await
            .expect("init");
        ws.subscribe(
            "log",
            "subscription($j: ID!) { jobLog(jobId: $j) { offset at stream text } }",
            json!({ "j": global }),
        )
        .await
        .expect("subscribe");
        let mut streamed = Vec::new();
        loop {
            let message = ws.message().await.expect("message");
            match message["type"].as_str() {
                Some("next") => streamed.push(message["payload"]["data"]["jobLog"].clone()),
                Some("complete") => break,
                _ => panic!("{message}"),
            }
        }
        let download = server.log_text(build, name).await;
        all.push((
            name.to_owned(),
            JobOutput {
                download,
                lines,
                streamed,
            },
        ));
    }
    all
}

/// Waits until every job of the build has its log archived.
async fn wait_for_archives(server: &Server, build: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = server
            .gql(
                "query($id: ID!) { build(id: $id) { jobs { logArchive { lines } } } }",
                json!({ "id": build }),
            )
            .await;
        let jobs = body["data"]["build"]["jobs"].as_array().cloned().unwrap_or_default();
        if !jobs.is_empty() && jobs.iter().all(|j| !j["logArchive"].is_null()) {
            return;
        }
        assert!(Instant::now() < deadline, "logs not archived within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn job_logs_read_the_same_after_export_import_and_after_the_log_table_is_lost(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with("build.yaml", PIPELINE);
    let source = Server::start(&pool, dir.path()).await;
    let (_, repo_id) = source
        .org_with_repo("replay", &format!("file://{}", repo.path().display()))
        .await;
    let build = source.build(&repo_id).await;
    assert_eq!(build["status"], "SUCCEEDED", "{build}");
    let build = build["id"].as_str().expect("id").to_owned();
    wait_for_archives(&source, &build).await;
    let before = read_logs(&source, &build).await;
    let colours = &before.iter().find(|(name, _)| name == "colours").expect("colours").1;
    assert!(
        colours
            .download
            .contains("\u{1b}[31mred\u{1b}[0m and \u{1b}[1mbold\u{1b}[0m\n"),
        "{:?}",
        colours.download
    );
    assert!(colours
        .lines
        .iter()
        .any(|l| l["stream"] == "stderr" && l["text"] == "to stderr"));
    // A job knows its build by both names, and the log endpoint takes both.
    let uuid = monkeyci_tests::uuid_of(&build);
    assert!(
        colours.download.contains(&format!("global={build} uuid={uuid}\n")),
        "{:?}",
        colours.download
    );
    assert_eq!(source.log_text(&uuid, "colours").await, colours.download);
    let many = &before.iter().find(|(name, _)| name == "many").expect("many").1;
    assert!(
        many.lines.len() >= 6500 && many.lines == many.streamed,
        "{}",
        many.lines.len()
    );
    source.stop().await;

    // Export, import into a new database, serve it with the same blob storage.
    let exported = monkeyci(&database_url(&pool), &["events", "export"], b"").await;
    let name = format!("monkeyci_replay_{}", uuid::Uuid::now_v7().simple());
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{name}",
        options.get_username(),
        options.get_host(),
        options.get_port()
    );
    monkeyci(&url, &["migrate"], b"").await;
    monkeyci(&url, &["events", "import"], &exported.stdout).await;
    let target = Server::start_at(&url, dir.path(), &[], &[]).await;
    let imported = PgPool::connect(&url).await.expect("connect");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM job_log_lines")
        .fetch_one(&imported)
        .await
        .expect("count");
    assert_eq!(stored, 0, "an import carries no job output: it comes from the archives");
    // The read models are built from the imported log first.
    target
        .wait_until(&build, Duration::from_secs(60), |b| b["status"] == "SUCCEEDED")
        .await;
    wait_for_archives(&target, &build).await;
    assert_eq!(read_logs(&target, &build).await, before, "after export and import");

    // The table lost: the archives bring it back again.
    sqlx::query("DELETE FROM job_log_lines")
        .execute(&imported)
        .await
        .expect("lose the lines");
    assert_eq!(read_logs(&target, &build).await, before, "after job_log_lines was lost");

    // An archive that is not the one its event recorded is refused; nothing is restored.
    sqlx::query("DELETE FROM job_log_lines")
        .execute(&imported)
        .await
        .expect("lose the lines");
    let archive = find_file(&dir.path().join("data"), "colours.ndjson").expect("the colours archive");
    let mut damaged = std::fs::read(&archive).expect("read");
    damaged[2] ^= 1;
    std::fs::write(&archive, damaged).expect("damage");
    let response = target
        .http
        .get(format!("{}/builds/{build}/jobs/colours/log", target.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("log");
    assert_eq!(response.status(), 503);
    let message = response.text().await.expect("text");
    assert!(message.contains("is not the one recorded"), "{message}");
    let query = target
        .gql(
            "query($id: ID!) { build(id: $id) { jobs { jobId log { text } } } }",
            json!({ "id": build }),
        )
        .await;
    assert_eq!(query["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{query}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM job_log_lines WHERE job_id = 'colours'")
        .fetch_one(&imported)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    target.stop().await;
    imported.close().await;
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
}

/// The first file named `name` below `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}
