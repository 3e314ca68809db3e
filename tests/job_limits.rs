//! What keeps a runner's memory, storage and time bounded whatever a pipeline or a git host
//! does: long lines and floods of output are cut at the limits (and the cuts noted in the log),
//! a checkout that hangs times out, and a cancel stops one in progress.

use std::time::Duration;

use monkeyci_commands::CancelBuild;
use monkeyci_runner::CancellationToken;
use monkeyci_tests::{user, TestApp};
use serde_json::json;
use sqlx::PgPool;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::builds::{finished, repo_with, settings, spawn_runner, trigger_url, wait_for_build};
use crate::server::Server;

/// A git "server" that accepts connections and never answers: each accepted connection is sent
/// on, so that a test can tell when the other side gave up on it.
async fn tarpit() -> (String, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/acme/app.git", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            if tx.send(socket).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// Waits until the client of `socket` has gone (git killed), reading and dropping whatever it
/// sent; panics after 10 s.
async fn closed_by_client(mut socket: TcpStream) {
    let mut buffer = [0; 4096];
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "git still holds the connection 10 s after the checkout ended"
    );
}

/// An app with a runner whose checkouts may take `checkout_timeout`.
async fn runner_with(pool: PgPool, checkout_timeout: Duration) -> (TestApp, CancellationToken, tempfile::TempDir) {
    let app = TestApp::spawn(pool).await.expect("app");
    let workspace = tempfile::tempdir().expect("workspace");
    let mut settings = settings(workspace.path(), "r1");
    settings.checkout_timeout = checkout_timeout;
    let stop = spawn_runner(&app, settings).await;
    (app, stop, workspace)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_checkout_that_hangs_times_out_and_its_git_is_stopped(pool: PgPool) {
    let (app, stop, _workspace) = runner_with(pool, Duration::from_secs(2)).await;
    let (url, mut connections) = tarpit().await;
    let build = trigger_url(&app.core, &url).await;
    let connection = connections.recv().await.expect("git connects");
    let ended = wait_for_build(&app.core, build, finished).await;
    assert_eq!(ended.status, "errored");
    let message = ended.message.unwrap_or_default();
    assert!(
        message.contains("checkout failed: it took longer than 2 s"),
        "{message}"
    );
    closed_by_client(connection).await;
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_cancel_during_checkout_ends_the_build_and_stops_git(pool: PgPool) {
    let (app, stop, _workspace) = runner_with(pool, Duration::from_secs(600)).await;
    let (url, mut connections) = tarpit().await;
    let build = trigger_url(&app.core, &url).await;
    let connection = connections.recv().await.expect("git connects");
    app.core
        .commands
        .cancel_build(&user(), CancelBuild { build_id: build })
        .await
        .expect("cancel");
    let ended = wait_for_build(&app.core, build, finished).await;
    assert_eq!(ended.status, "canceled");
    assert_eq!(ended.message.as_deref(), Some("canceled during checkout"));
    closed_by_client(connection).await;
    stop.cancel();
}

/// The peak resident memory of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// One 100 MB line, then 1 GB of output: the server keeps 64 KiB of the line and 64 MiB of the
/// log (the defaults), says so in the log, and its memory stays under 300 MiB.
#[sqlx::test(migrations = "../migrations")]
async fn a_flood_of_output_is_cut_at_the_limits_and_the_server_stays_small(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with(
        "build.yaml",
        "- id: flood\n  script:\n\
         \x20   - head -c 104857600 /dev/zero | tr '\\0' a; echo\n\
         \x20   - yes \"$(head -c 999 /dev/zero | tr '\\0' b)\" | head -c 1073741824\n\
         \x20   - echo the end\n",
    );
    let server = Server::start(&pool, dir.path()).await;
    let (_, repo_id) = server
        .org_with_repo("acme", &format!("file://{}", repo.path().display()))
        .await;
    let build = server.trigger(&repo_id, json!([])).await;
    let query = "query($id: ID!) { build(id: $id) { status message } }";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let done = loop {
        let body = server.gql(query, json!({ "id": build })).await;
        if ["SUCCEEDED", "FAILED", "ERRORED", "CANCELED"]
            .contains(&body["data"]["build"]["status"].as_str().unwrap_or(""))
        {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "not done in 600 s: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["data"]["build"]["status"], "SUCCEEDED", "{done}");
    let peak = peak_rss_mib(server.child.id().expect("pid"));
    assert!(peak < 300, "the server's peak RSS was {peak} MiB");
    eprintln!("peak RSS of the server: {peak} MiB");

    let build_id = uuid::Uuid::parse_str(&monkeyci_tests::uuid_of(&build)).expect("uuid");
    let lines: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, stream, text FROM job_log_lines WHERE build_id = $1 AND job_id = 'flood' ORDER BY seq",
    )
    .bind(build_id)
    .fetch_all(&pool)
    .await
    .expect("lines");
    let (_, _, first) = &lines[0];
    let note = " [MonkeyCI: line cut at 65536 of its 104857600 bytes]";
    assert_eq!(first.len(), 65536 + note.len());
    assert!(first.ends_with(note), "{}", &first[first.len() - 100..]);
    let kept: usize = lines.iter().map(|(_, _, text)| text.len() + 1).sum();
    assert!(kept <= 64 * 1024 * 1024 + 200, "{kept} bytes kept");
    assert!(kept > 63 * 1024 * 1024, "only {kept} bytes kept");
    let (_, stream, last) = lines.last().expect("lines");
    assert_eq!(stream, "system");
    assert!(
        last.contains("passed the limit of 67108864 bytes of log; the rest of it is dropped"),
        "{last}"
    );
    assert!(
        !lines.iter().any(|(_, _, text)| text == "the end"),
        "dropped after the cut"
    );
    server.stop().await;
}
