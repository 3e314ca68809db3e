//! A first start with nothing configured: `monkeyci server` without a database URL, with
//! nothing answering on the default address, makes and runs its own PostgreSQL cluster under the
//! data directory and keeps the admin token it made (as a hash) across restarts.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use monkeyci_tests::monkeyci_binary;
use serde_json::{json, Value};

use crate::server::Server;

/// Where the tests say the default database is: a port nothing listens on.
const CLOSED_DEFAULT: &str = "postgres://postgres@127.0.0.1:1/monkeyci";

/// No database URL, no admin token, and the default address closed.
fn nothing_configured(data: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("MONKEYCI_DATABASE_URL", String::new()),
        ("MONKEYCI_ADMIN_TOKEN", String::new()),
        ("MONKEYCI_DEFAULT_DATABASE_URL", CLOSED_DEFAULT.to_owned()),
        ("MONKEYCI_DATA_DIR", data.display().to_string()),
    ]
}

async fn start(dir: &Path) -> Server {
    let env = nothing_configured(&dir.join("data"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_at("", dir, &["--no-runner"], &env).await
}

/// `monkeyci admin-token args…` with nothing configured, without a terminal.
async fn admin_token(dir: &Path, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(monkeyci_binary().expect("binary"))
        .arg("admin-token")
        .args(args)
        .envs(nothing_configured(&dir.join("data")))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("admin-token ends within 120 s")
        .expect("run")
}

/// A token made by `admin-token --file`, and that its file is private.
async fn new_token(dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    let made = admin_token(dir, &["--file", file.to_str().expect("path")]).await;
    assert!(made.status.success(), "{made:?}");
    assert!(made.stdout.is_empty(), "the token went to stdout: {made:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("file").permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::read_to_string(&file).expect("token").trim().to_owned()
}

async fn status_with(server: &Server, token: &str) -> u16 {
    server
        .http
        .post(format!("{}/graphql", server.base))
        .bearer_auth(token)
        .json(&json!({ "query": "{ orgs { nodes { slug } } }" }))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn org_slugs(server: &Server, token: &str) -> Value {
    let body = server.gql_as(token, "{ orgs { nodes { slug } } }", json!({})).await;
    body["data"]["orgs"]["nodes"].clone()
}

/// The stderr of a server started with nothing configured but `setting`, which must fail.
async fn refused_start(dir: &Path, setting: (&'static str, &str)) -> String {
    let mut env = nothing_configured(&dir.join("data"));
    env.push((setting.0, setting.1.to_owned()));
    let refused = tokio::process::Command::new(monkeyci_binary().expect("binary"))
        .args(["server", "--no-runner", "--listen", "127.0.0.1:0"])
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run");
    assert!(!refused.status.success(), "{refused:?}");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

#[tokio::test]
async fn a_first_start_without_a_database_makes_its_own_and_a_restart_keeps_its_data_and_admin_token() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("data/postgres/.s.PGSQL.5432");

    // The abuse first: without PostgreSQL's programs it says what to install, and makes nothing.
    let postgres_bin = dir.path().join("none").display().to_string();
    let stderr = refused_start(dir.path(), ("MONKEYCI_POSTGRES_BIN", &postgres_bin)).await;
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(!dir.path().join("data/postgres").exists());
    // A configured database that does not answer is an error, never replaced by the embedded one.
    let stderr = refused_start(dir.path(), ("MONKEYCI_DATABASE_URL", CLOSED_DEFAULT)).await;
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!dir.path().join("data/postgres").exists());

    let server = start(dir.path()).await;
    // The cluster belongs to an unprivileged user when the tests run as root (initdb refuses
    // root).
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(dir.path().join("data/postgres/data")).expect("cluster"),
    );
    if monkeyci_tests::running_as_root() {
        assert_ne!(owner, 0, "the embedded cluster belongs to root");
    }
    // No admin token in the output: it is not a terminal.
    let output = server.output.lock().expect("output").clone();
    assert!(output.contains("making an embedded PostgreSQL"), "{output}");
    assert!(!output.contains("mci_admin_"), "{output}");
    // Nor from admin-token without a terminal, unless it is given a file.
    let refused = admin_token(dir.path(), &[]).await;
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a terminal"),
        "{refused:?}"
    );

    let first = new_token(dir.path(), "first-token").await;
    let org = server
        .gql_as(
            &first,
            "mutation($input: CreateOrgInput!) { createOrg(input: $input) }",
            json!({ "input": { "name": "Acme", "slug": "acme" } }),
        )
        .await;
    assert!(org["data"]["createOrg"].is_string(), "{org}");
    let output = server.stop().await;
    assert!(output.contains("stopping the embedded PostgreSQL"), "{output}");
    assert!(
        !socket.exists(),
        "the embedded PostgreSQL still runs after the server stopped"
    );

    // Started again: the same cluster, its data, and the same admin token.
    let server = start(dir.path()).await;
    let output = server.output.lock().expect("output").clone();
    assert!(output.contains("starting the embedded PostgreSQL"), "{output}");
    assert!(!output.contains("making an embedded PostgreSQL"), "{output}");
    assert_eq!(org_slugs(&server, &first).await, json!([{ "slug": "acme" }]));

    // A new admin token works at once on the running server; the one it replaces no longer.
    // Its file is a link planted where it is to be written (as in a shared /tmp): the link is
    // replaced, and the file it pointed at is left as it was.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me\n").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.path().join("second-token")).expect("link");
    let second = new_token(dir.path(), "second-token").await;
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me\n");
    assert!(!std::fs::symlink_metadata(dir.path().join("second-token"))
        .expect("file")
        .is_symlink());
    assert_eq!(org_slugs(&server, &second).await, json!([{ "slug": "acme" }]));
    assert_eq!(status_with(&server, &first).await, 401);

    // Killed outright, the server leaves its PostgreSQL running. The next MonkeyCI process to use
    // it is its last user, so it stops it at its end (one that is not, as `admin-token` above
    // while the server ran, leaves it running).
    let mut server = server;
    server.child.kill().await.expect("kill");
    assert!(
        socket.exists(),
        "the embedded PostgreSQL stopped with the killed server"
    );
    let third = admin_token(
        dir.path(),
        &["--file", dir.path().join("third-token").to_str().expect("path")],
    )
    .await;
    assert!(third.status.success(), "{third:?}");
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("stopping the embedded PostgreSQL"),
        "{third:?}"
    );
    assert!(!socket.exists(), "the embedded PostgreSQL still runs without a user");
}
