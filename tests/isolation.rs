//! A pipeline is untrusted code: through the real `monkeyci server`, jobs on the host
//! (confined by bubblewrap) and in containers (podman) try what an attacker who can push a
//! pipeline would, and get nothing: not the server's environment, not its data directory or
//! master key, not another build's checkout, not a signal to the server, and no process that
//! outlives the build.

use std::time::Duration;

use monkeyci_runner::BUILD_LABEL;
use monkeyci_tests::{containers_labelled, git, sleeping, test_image, uuid_of};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::ADMIN;
use crate::server::Server;

/// A master key being retired: the server holds it in its environment.
const RETIRED_KEY: &str = "c2VjcmV0LW9sZC1tYXN0ZXIta2V5LTMyLWJ5dGVzISE=";

/// What each escaping job does; every attempt prints `<what>=yes|no`, everything the job can
/// see of processes and environments is printed too, and four processes are left behind.
const ESCAPE: &str = r#"
echo "uid=$(id -u)"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < "$f" 2>/dev/null || true; done
env
if cat "$DATA/master.key" > /dev/null 2>&1; then echo read-key=yes; else echo read-key=no; fi
if ls "$DATA" > /dev/null 2>&1; then echo list-data=yes; else echo list-data=no; fi
if kill -0 "$SERVER_PID" 2> /dev/null; then echo signal-server=yes; else echo signal-server=no; fi
if cat "$OTHER/src/secret.txt" 2> /dev/null; then echo read-other=yes; else echo read-other=no; fi
if ls "$BUILDS" > /dev/null 2>&1; then echo list-builds=yes; else echo list-builds=no; fi
setsid sleep 1000 > /dev/null 2>&1 &
setsid sleep 1001 &
nohup sleep 1002 > /dev/null 2>&1 &
(sleep 1003 &)
echo done
"#;

/// A repository whose pipeline runs [`ESCAPE`] in a host job and in a container job, and
/// whose `hold` job (run by itself with `--job`-like conditions: only for the tag `hold`)
/// keeps a secret in its checkout while it waits.
fn repo() -> tempfile::TempDir {
    let image = test_image().expect("test image");
    let escape: Vec<String> = ESCAPE.trim().lines().map(str::to_owned).collect();
    let pipeline = json!([
        { "id": "host", "script": escape, "conditions": { "branches": ["main"] } },
        { "id": "box", "image": image, "script": escape, "conditions": { "branches": ["main"] } },
        { "id": "hold", "conditions": { "branches": ["hold"] }, "script": [
            "echo the-other-builds-secret-5150 > secret.txt",
            "echo \"holding $MONKEYCI_BUILD_ID\"",
            "sleep 120",
        ] },
    ]);
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path();
    git(p, &["init", "--quiet", "--initial-branch", "main"]);
    std::fs::create_dir(p.join(".monkeyci")).expect("mkdir");
    std::fs::write(p.join(".monkeyci/build.json"), pipeline.to_string()).expect("pipeline");
    git(p, &["add", "."]);
    git(p, &["commit", "--quiet", "-m", "pipeline"]);
    git(p, &["branch", "hold"]);
    dir
}

fn job<'a>(build: &'a Value, id: &str) -> &'a Value {
    build["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["jobId"] == id))
        .unwrap_or_else(|| panic!("no job {id} in {build}"))
}

fn log_text(job: &Value) -> String {
    job["log"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[sqlx::test(migrations = "../migrations")]
async fn jobs_on_the_host_and_in_containers_cannot_reach_the_server_its_files_or_other_builds(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo();
    let server = Server::start_with(
        &pool,
        dir.path(),
        &[],
        &[("MONKEYCI_PREVIOUS_MASTER_KEYS", RETIRED_KEY)],
    )
    .await;
    let git_url = format!("file://{}", repo.path().display());
    let (_, repo_id) = server.org_with_repo("acme", &git_url).await;

    // Another build holds a secret in its checkout while the escaping build runs.
    let holder = server
        .id(
            "triggerBuild",
            "TriggerBuildInput",
            json!({ "repoId": repo_id, "branch": "hold" }),
        )
        .await;
    let holding = server
        .wait_until(&holder, Duration::from_secs(60), |b| {
            b["jobs"]
                .as_array()
                .is_some_and(|jobs| jobs.iter().any(|j| log_text(j).contains("holding ")))
        })
        .await;
    let holder_uuid = log_text(job(&holding, "hold"))
        .lines()
        .find_map(|l| l.strip_prefix("holding ").map(str::to_owned))
        .expect("the holder's id");
    let builds = dir.path().join("builds");
    let data = dir.path().join("data");
    let other = builds.join(&holder_uuid);
    assert!(
        other.join("src/secret.txt").is_file(),
        "the holder's secret is where the attack looks"
    );
    let server_pid = server.child.id().expect("pid").to_string();
    let params = json!([
        { "name": "DATA", "value": data.to_str().expect("utf8") },
        { "name": "SERVER_PID", "value": server_pid },
        { "name": "OTHER", "value": other.to_str().expect("utf8") },
        { "name": "BUILDS", "value": builds.to_str().expect("utf8") },
    ]);

    let build = server.trigger(&repo_id, params).await;
    let built = server
        .wait_until(&build, Duration::from_secs(120), |b| {
            b["status"] != "QUEUED" && b["status"] != "RUNNING"
        })
        .await;

    assert_eq!(built["status"], "SUCCEEDED", "{built}");
    let master_key = std::fs::read_to_string(data.join("master.key")).expect("master key file");
    let url = monkeyci_tests::database_url(&pool);
    for id in ["host", "box"] {
        let text = log_text(job(&built, id));
        for attempt in ["read-key", "list-data", "signal-server", "read-other", "list-builds"] {
            assert!(
                text.contains(&format!("{attempt}=no")),
                "{id}: {attempt} succeeded: {text}"
            );
        }
        assert!(text.contains("done"), "{id}: {text}");
        for secret in [
            ADMIN,
            "MONKEYCI_ADMIN_TOKEN",
            RETIRED_KEY,
            "MONKEYCI_PREVIOUS_MASTER_KEYS",
            master_key.trim(),
            &url,
            "MONKEYCI_DATABASE_URL",
            "the-other-builds-secret-5150",
        ] {
            assert!(!text.contains(secret), "{id} saw {secret:?}: {text}");
        }
    }
    assert!(log_text(job(&built, "host")).contains("uid=65534"));
    // Every process a job left behind ended with it; its container is gone.
    assert_eq!(sleeping(&["1000", "1001", "1002", "1003"]), Vec::<String>::new());
    assert_eq!(containers_labelled(BUILD_LABEL, &uuid_of(&build)), Vec::<String>::new());

    server.id("cancelBuild", "BuildInput", json!({ "id": holder })).await;
    server
        .wait_until(&holder, Duration::from_secs(30), |b| b["status"] == "CANCELED")
        .await;
    server.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn host_unconfined_runs_jobs_as_the_server_and_says_so_at_start(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = crate::builds::repo_with(
        "build.yaml",
        "- id: who\n  script: ['echo \"uid=$(id -u) pwd=$(pwd)\"']\n",
    );
    let server = Server::start_with(&pool, dir.path(), &["--executor", "host-unconfined"], &[]).await;
    let (_, repo_id) = server
        .org_with_repo("acme", &format!("file://{}", repo.path().display()))
        .await;

    let built = server.build(&repo_id).await;

    assert_eq!(built["status"], "SUCCEEDED", "{built}");
    let text = log_text(job(&built, "who"));
    assert!(text.contains(&format!("uid={}", own_uid())), "{text}");
    assert!(!text.contains("pwd=/workspace"), "{text}");
    let output = server.stop().await;
    assert!(
        output.contains("--executor host-unconfined: jobs without an image run as this process's own user"),
        "{output}"
    );
}

fn own_uid() -> String {
    let out = std::process::Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
