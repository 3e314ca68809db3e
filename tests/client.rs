//! `monkeyci` as a client of a real server (child processes both): login, listings, trigger and
//! watch with their exit statuses, logs followed across a server restart, cancel, retry and
//! unblock.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use monkeyci_tests::{database_url, git, monkeyci_binary};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::AsyncBufReadExt;

use crate::access::ADMIN;
use crate::builds::repo_with;
use crate::server::Server;

/// What a finished `monkeyci` client command did.
#[derive(Debug)]
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `monkeyci args…` with the config file `config` and `env`, without a terminal, and
/// waits (up to 120 s) for it to end.
async fn monkeyci(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Ran {
    let run = tokio::process::Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env("MONKEYCI_CONFIG", config)
        .env_remove("MONKEYCI_TOKEN")
        .env_remove("MONKEYCI_SERVER")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("monkeyci {args:?} did not end within 120 s"))
        .expect("run monkeyci");
    Ran {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The pipeline of the tests' repo: on `main` one job that passes, on `broken` one that fails,
/// on `gated` a job that waits for approval, on `slow` a job that runs for a minute.
fn pipelines() -> tempfile::TempDir {
    let repo = repo_with("build.yaml", "- id: hello\n  script: [\"echo hello from main\"]\n");
    let p = repo.path();
    let branch = |name: &str, pipeline: &str| {
        git(p, &["checkout", "--quiet", "-b", name, "main"]);
        std::fs::write(p.join(".monkeyci/build.yaml"), pipeline).expect("pipeline");
        git(p, &["commit", "--quiet", "-am", name]);
    };
    branch(
        "broken",
        "- id: hello\n  script: [\"echo about to fail\", \"exit 3\"]\n",
    );
    branch(
        "gated",
        "- id: build\n  script: [\"echo built\"]\n- id: deploy\n  dependencies: [build]\n  blocked: true\n  script: [\"echo deployed\"]\n",
    );
    branch("slow", "- id: wait\n  script: [\"sleep 60\"]\n");
    git(p, &["checkout", "--quiet", "main"]);
    repo
}

/// A server with org `acme` whose repo `app` has [`pipelines`]: (its directory, the repo, the
/// server).
async fn server_with_pipelines(pool: &PgPool) -> (tempfile::TempDir, tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = pipelines();
    let server = Server::start(pool, dir.path()).await;
    server
        .org_with_repo("acme", &format!("file://{}", repo.path().display()))
        .await;
    (dir, repo, server)
}

/// A config file in `dir` logged in to `server` as the admin.
async fn logged_in(dir: &Path, server: &Server) -> std::path::PathBuf {
    let config = dir.join("config.json");
    let ran = monkeyci(
        &config,
        &[("MONKEYCI_TOKEN", ADMIN)],
        &["login", "--server", &server.base],
    )
    .await;
    assert_eq!(ran.status, 0, "{ran:?}");
    config
}

/// The abuse first: a wrong token, no login, an unreachable server and unknown names each end
/// with their own exit status and a clear message, and a refused login writes nothing. Then
/// login saves the server and token readable by the owner only, the listings parse as JSON,
/// and trigger --watch exits 0 for a passing pipeline and 1 for a failing one.
#[sqlx::test(migrations = "../migrations")]
async fn the_client_logs_in_lists_and_triggers_with_exit_statuses_a_script_can_use(pool: PgPool) {
    let (dir, _repo, server) = server_with_pipelines(&pool).await;
    let config = dir.path().join("client/config.json");
    let base = server.base.as_str();

    // Not logged in: usage, and it says what to do.
    let ran = monkeyci(&config, &[], &["orgs"]).await;
    assert_eq!(ran.status, 2, "{ran:?}");
    assert!(ran.stderr.contains("monkeyci login --server"), "{ran:?}");

    // A wrong token: refused at login (nothing saved) and in any command.
    let wrong = [("MONKEYCI_TOKEN", "mci_not-a-token-of-this-server")];
    let ran = monkeyci(&config, &wrong, &["login", "--server", base]).await;
    assert_eq!(ran.status, 4, "{ran:?}");
    assert!(ran.stderr.contains("refused the token"), "{ran:?}");
    assert!(!config.exists(), "a refused login saved {}", config.display());
    let ran = monkeyci(
        &config,
        &[("MONKEYCI_TOKEN", "mci_wrong"), ("MONKEYCI_SERVER", base)],
        &["orgs"],
    )
    .await;
    assert_eq!(ran.status, 4, "{ran:?}");

    // A server that does not answer: the connection status.
    let ran = monkeyci(
        &config,
        &[("MONKEYCI_TOKEN", ADMIN)],
        &["orgs", "--server", "http://127.0.0.1:1"],
    )
    .await;
    assert_eq!(ran.status, 5, "{ran:?}");
    assert!(ran.stderr.contains("cannot reach http://127.0.0.1:1"), "{ran:?}");

    // Login: checked, then saved with mode 0600; the token is not printed.
    let ran = monkeyci(&config, &[("MONKEYCI_TOKEN", ADMIN)], &["login", "--server", base]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    assert!(!ran.stdout.contains(ADMIN) && !ran.stderr.contains(ADMIN), "{ran:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).expect("config").permissions());
    assert_eq!(mode & 0o777, 0o600, "config file mode {mode:o}");

    // Unknown names: refused, with what exists.
    let ran = monkeyci(&config, &[], &["repos", "nope"]).await;
    assert_eq!(ran.status, 6, "{ran:?}");
    assert!(ran.stderr.contains("no org \"nope\""), "{ran:?}");
    let ran = monkeyci(&config, &[], &["trigger", "acme/nope"]).await;
    assert_eq!(ran.status, 6, "{ran:?}");
    let ran = monkeyci(&config, &[], &["watch", "not-an-id"]).await;
    assert_eq!(ran.status, 2, "{ran:?}");

    // A passing pipeline: 0; a failing one: 1, with a summary that says so.
    let ran = monkeyci(&config, &[], &["trigger", "acme/app", "--watch"]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    assert!(ran.stdout.contains("job hello succeeded"), "{ran:?}");
    assert!(
        ran.stdout.lines().last().unwrap_or_default().contains("succeeded"),
        "{ran:?}"
    );
    let passed = ran.stdout.lines().next().unwrap_or_default().to_owned();
    let ran = monkeyci(&config, &[], &["trigger", "acme/app", "--branch", "broken", "--watch"]).await;
    assert_eq!(ran.status, 1, "{ran:?}");
    assert!(ran.stdout.contains("job hello failed"), "{ran:?}");
    let failed = ran.stdout.lines().next().unwrap_or_default().to_owned();

    // Every listing as JSON.
    let json = |ran: &Ran| -> Vec<Value> {
        assert_eq!(ran.status, 0, "{ran:?}");
        serde_json::from_str::<Vec<Value>>(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran:?}"))
    };
    let orgs = json(&monkeyci(&config, &[], &["orgs", "--output", "json"]).await);
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0]["slug"], "acme");
    let repos = json(&monkeyci(&config, &[], &["repos", "acme", "-o", "json"]).await);
    assert_eq!(repos[0]["path"], "acme/app");
    let builds = json(&monkeyci(&config, &[], &["builds", "acme/app", "-o", "json"]).await);
    let listed: Vec<(&str, &str)> = builds
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap_or_default(),
                b["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(listed, [(failed.as_str(), "FAILED"), (passed.as_str(), "SUCCEEDED")]);
    let failures = json(&monkeyci(&config, &[], &["builds", "--status", "FAILED", "-o", "json"]).await);
    assert_eq!(failures.len(), 1);
    // A status that does not exist is a usage error, with the ones that do.
    let ran = monkeyci(&config, &[], &["builds", "--status", "broken"]).await;
    assert_eq!(ran.status, 2, "{ran:?}");
    assert!(ran.stderr.contains("succeeded"), "{ran:?}");
    // And for people: a header and a row per build.
    let ran = monkeyci(&config, &[], &["builds"]).await;
    assert_eq!(ran.stdout.lines().count(), 3, "{ran:?}");
    assert!(ran.stdout.starts_with("BUILD"), "{ran:?}");

    // The log of a finished build, whole.
    let ran = monkeyci(&config, &[], &["logs", &failed]).await;
    assert_eq!(ran.stdout, "[hello] about to fail\n", "{ran:?}");
    let ran = monkeyci(&config, &[], &["logs", &failed, "hello"]).await;
    assert_eq!(ran.stdout, "about to fail\n", "{ran:?}");
    let ran = monkeyci(&config, &[], &["logs", &failed, "nope"]).await;
    assert_eq!(ran.status, 6, "{ran:?}");
    assert!(ran.stderr.contains("its jobs: hello"), "{ran:?}");
    server.stop().await;
}

/// Unblock approves a waiting job, retry queues the same trigger again, cancel ends a running
/// build: watch exits 0 for the first two and 3 (canceled) for the last.
#[sqlx::test(migrations = "../migrations")]
async fn unblock_retry_and_cancel_steer_builds_from_the_command_line(pool: PgPool) {
    let (dir, _repo, server) = server_with_pipelines(&pool).await;
    let config = logged_in(dir.path(), &server).await;

    let gated = monkeyci(&config, &[], &["trigger", "acme/app", "--branch", "gated"]).await;
    let gated = gated.stdout.trim().to_owned();
    server
        .wait_until(&gated, Duration::from_secs(60), |b| {
            b["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|j| j["status"] == "BLOCKED")
        })
        .await;
    let ran = monkeyci(&config, &[], &["unblock", &gated, "nope"]).await;
    assert_eq!(ran.status, 6, "{ran:?}");
    let ran = monkeyci(&config, &[], &["unblock", &gated, "deploy"]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    let ran = monkeyci(&config, &[], &["watch", &gated]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    assert!(ran.stdout.contains("job deploy succeeded"), "{ran:?}");

    let ran = monkeyci(&config, &[], &["retry", &gated]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    let retried = ran.stdout.trim().to_owned();
    assert_ne!(retried, gated);
    let ran = monkeyci(&config, &[], &["logs", &retried, "build", "-f"]).await;
    assert_eq!(ran.stdout, "built\n", "{ran:?}");

    let slow = monkeyci(&config, &[], &["trigger", "acme/app", "--branch", "slow"]).await;
    let slow = slow.stdout.trim().to_owned();
    server
        .wait_until(&slow, Duration::from_secs(60), |b| b["status"] == "RUNNING")
        .await;
    let ran = monkeyci(&config, &[], &["cancel", &slow]).await;
    assert_eq!(ran.status, 0, "{ran:?}");
    let ran = monkeyci(&config, &[], &["watch", &slow]).await;
    assert_eq!(ran.status, 3, "{ran:?}");
    assert!(
        ran.stdout.lines().last().unwrap_or_default().contains("canceled"),
        "{ran:?}"
    );
    server.stop().await;
}

/// A free port of 127.0.0.1 (bound and let go), for a server restarted at the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// The next line of a child's output, waiting up to 60 s.
async fn next_line(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a line within 60 s")
        .expect("read")
}

/// `logs -f` follows a job that runs in a separate runner while the API server is killed and
/// started again: every line is printed exactly once, in order.
#[sqlx::test(migrations = "../migrations")]
async fn logs_follow_prints_every_line_once_across_a_server_restart(pool: PgPool) {
    const LINES: usize = 40;
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with(
        "build.yaml",
        &format!("- id: count\n  script: [\"for i in $(seq 1 {LINES}); do echo line $i; sleep 0.2; done\"]\n"),
    );
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let url = database_url(&pool);
    let api_only = ["--no-runner", "--listen", listen.as_str()];
    let server = Server::start_at(&url, dir.path(), &api_only, &[]).await;
    let (_, repo_id) = server
        .org_with_repo("acme", &format!("file://{}", repo.path().display()))
        .await;
    // The runner: its own process, with the server's database and data directory.
    let mut runner = tokio::process::Command::new(monkeyci_binary().expect("binary"))
        .args(["runner", "--workspace"])
        .arg(dir.path().join("runner-builds"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("MONKEYCI_DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("runner");
    let config = logged_in(dir.path(), &server).await;
    let build = server.trigger(&repo_id, serde_json::json!([])).await;

    let mut follow = tokio::process::Command::new(monkeyci_binary().expect("binary"))
        .args(["logs", &build, "-f"])
        .env("MONKEYCI_CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("logs -f");
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    while printed.len() < 5 {
        printed.push(next_line(&mut lines).await.expect("more lines"));
    }
    // The server dies in the middle of the job and comes back at the same address.
    let mut server = server;
    server.child.kill().await.expect("kill the server");
    let server = Server::start_at(&url, dir.path(), &api_only, &[]).await;
    let state = server
        .gql(
            "query($id: ID!) { build(id: $id) { status } }",
            serde_json::json!({ "id": build }),
        )
        .await;
    assert_eq!(
        state["data"]["build"]["status"], "RUNNING",
        "the job had ended before the server came back: the test would prove nothing"
    );
    while let Some(line) = next_line(&mut lines).await {
        printed.push(line);
    }
    let exit = tokio::time::timeout(Duration::from_secs(30), follow.wait())
        .await
        .expect("logs -f ends with the build")
        .expect("wait");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut follow.stderr.take().expect("stderr"), &mut stderr)
        .await
        .expect("stderr");
    let expected: Vec<String> = (1..=LINES).map(|n| format!("[count] line {n}")).collect();
    assert_eq!(printed, expected, "stderr: {stderr}");
    assert!(exit.success(), "{exit:?}: {stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    server.stop().await;
    runner.kill().await.expect("stop the runner");
}

/// Runs `command` (a shell command line) under `script`, which gives it a terminal; `input` is
/// typed once `prompt` has appeared in its output. Returns its exit status and output.
async fn on_a_terminal(config: &Path, command: &str, prompt: Option<(&str, &str)>) -> (i32, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("MONKEYCI_CONFIG", config)
        .env_remove("MONKEYCI_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut output = Vec::new();
    if let Some((prompt, input)) = prompt {
        while !String::from_utf8_lossy(&output).contains(prompt) {
            let mut chunk = [0_u8; 256];
            let read = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut chunk))
                .await
                .expect("the prompt within 30 s")
                .expect("read");
            assert!(
                read > 0,
                "ended before the prompt: {}",
                String::from_utf8_lossy(&output)
            );
            output.extend_from_slice(&chunk[..read]);
        }
        stdin.write_all(input.as_bytes()).await.expect("type");
    }
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_end(&mut output))
        .await
        .expect("ends within 60 s")
        .expect("read");
    drop(stdin);
    let status = child.wait().await.expect("wait");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output).into_owned(),
    )
}

/// On a terminal, login asks for the token without echoing it, and watch draws the jobs as a
/// table redrawn in place.
#[sqlx::test(migrations = "../migrations")]
async fn on_a_terminal_login_hides_the_token_and_watch_redraws_in_place(pool: PgPool) {
    let (dir, _repo, server) = server_with_pipelines(&pool).await;
    let bin = monkeyci_binary().expect("binary").display().to_string();
    let config = dir.path().join("config.json");

    let login = format!("{bin} login --server {}", server.base);
    let typed = format!("{ADMIN}\n");
    let (status, output) = on_a_terminal(&config, &login, Some(("API token (not shown): ", &typed))).await;
    assert_eq!(status, 0, "{output}");
    assert!(!output.contains(ADMIN), "the token was echoed: {output:?}");
    assert!(output.contains("logged in to"), "{output:?}");

    let (status, output) = on_a_terminal(&config, &format!("{bin} trigger acme/app --watch"), None).await;
    assert_eq!(status, 0, "{output:?}");
    // The table: the job's line, redrawn in place (cursor up, line cleared), then the summary.
    assert!(output.contains("\u{1b}[2K  ✓ hello"), "{output:?}");
    assert!(
        output.lines().last().unwrap_or_default().contains("succeeded"),
        "{output:?}"
    );
    server.stop().await;
}
