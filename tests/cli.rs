//! The real `monkeyci` binary: creates and migrates its database, runs the projections, stops
//! cleanly on SIGTERM, and explains bad input.

use std::time::Duration;

use monkeyci_tests::{monkeyci_binary, ServerProcess};
use sqlx::PgPool;
use tokio::process::Command;

/// A database URL on the test server for a database that does not exist yet.
pub(crate) fn fresh_database(pool: &PgPool) -> (String, String) {
    let options = pool.connect_options();
    let name = format!("monkeyci_cli_{}", uuid::Uuid::now_v7().simple());
    let url = format!(
        "postgres://{}@{}:{}/{name}",
        options.get_username(),
        options.get_host(),
        options.get_port()
    );
    (name, url)
}

async fn monkeyci(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env("MONKEYCI_DATABASE_URL", url)
        .output()
        .await
        .expect("run monkeyci")
}

#[sqlx::test(migrations = false)]
async fn server_creates_its_database_serves_graphql_and_stops_on_sigterm(pool: PgPool) {
    let (name, url) = fresh_database(&pool);

    let migrated = monkeyci(&url, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let ServerProcess {
        child: mut server,
        base,
        ..
    } = ServerProcess::spawn(&url, "an-admin-token-for-the-test")
        .await
        .expect("server");

    let http = reqwest::Client::new();
    let graphql = |query: &'static str| {
        let request = http
            .post(format!("{base}/graphql"))
            .bearer_auth("an-admin-token-for-the-test")
            .json(&serde_json::json!({ "query": query }));
        async move {
            request
                .send()
                .await
                .expect("send")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let created = graphql("mutation { createOrg(input: {name: \"Acme\", slug: \"acme\"}) }").await;
    assert!(created["data"]["createOrg"].is_string(), "{created}");
    let found = graphql("{ org(slug: \"acme\") { name } }").await;
    let anonymous = http
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": "{ orgs { edges { node { name } } } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401, "the server asks for a token");
    assert_eq!(found["data"]["org"]["name"], "Acme", "{found}");
    let health = http.get(format!("{base}/health")).send().await.expect("health");
    assert_eq!(health.status(), 200);

    let pid = server.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops within 30 s of SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");

    let status = monkeyci(&url, &["projections", "status"]).await;
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    for name in ["orgs", "repos", "builds"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"));
        let lag = line.split_whitespace().nth(3);
        assert_eq!(lag, Some("0"), "{line}");
    }

    // An online rebuild builds the model beside the live one and swaps it in.
    let rebuilt = monkeyci(
        &url,
        &["projections", "rebuild", "orgs", "--online", "--batch-size", "2"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&rebuilt.stdout);
    let stderr = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "{stderr}");
    assert!(stdout.contains("projection orgs was rebuilt online from"), "{stdout}");
    assert!(stderr.contains("swapping the new model in"), "{stderr}");
    let db = PgPool::connect(&url).await.expect("connect");
    let orgs: Vec<String> = sqlx::query_scalar("SELECT slug FROM orgs")
        .fetch_all(&db)
        .await
        .expect("orgs");
    assert_eq!(orgs, ["acme"]);
    db.close().await;

    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_explained_on_stderr_with_a_failing_exit_status(pool: PgPool) {
    let (name, url) = fresh_database(&pool);

    let unknown = monkeyci(&url, &["projections", "rebuild", "nope"]).await;
    let unreachable = monkeyci("postgres://postgres@127.0.0.1:1/x", &["migrate"]).await;
    let bad_url = monkeyci("not-a-url", &["migrate"]).await;

    for (what, out, expected) in [
        (
            "unknown projection",
            &unknown,
            "no projection is named \"nope\"; the projections are orgs, repos, builds",
        ),
        ("unreachable database", &unreachable, "cannot connect"),
        ("bad url", &bad_url, "the database URL is not a URL"),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
}

/// A directory with `.monkeyci/build.yaml` holding `pipeline`.
fn local_checkout(pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join(".monkeyci")).expect("mkdir");
    std::fs::write(dir.path().join(".monkeyci/build.yaml"), pipeline).expect("write");
    dir
}

async fn build_run(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(monkeyci_binary().expect("binary"))
        .args(["build", "run", "--dir"])
        .arg(dir)
        .args(extra)
        .env("MONKEYCI_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("MONKEYCI_CONTAINER_RUNTIME", monkeyci_tests::PODMAN_RUNTIME)
        .env("MONKEYCI_CONTAINER_ULIMITS", monkeyci_tests::PODMAN_ULIMITS.join(","))
        .output()
        .await
        .expect("run monkeyci build run")
}

#[tokio::test]
async fn build_run_runs_a_local_pipeline_with_prefixed_output_a_summary_and_the_builds_exit_status() {
    let dir = local_checkout(
        "- id: hello\n  script: [\"echo hello from $MONKEYCI_JOB_ID\", \"touch made-by-hello\"]\n\
         - id: broken\n  dependencies: [hello]\n  script: [\"exit 4\"]\n\
         - id: after\n  dependencies: [broken]\n  script: [\"true\"]\n",
    );

    let failed = build_run(dir.path(), &[]).await;
    let only = build_run(dir.path(), &["--job", "hello"]).await;
    let unknown = build_run(dir.path(), &["--job", "nope"]).await;

    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{out}");
    assert!(out.contains("[hello] hello from hello"), "{out}");
    assert!(out.contains("broken failed: exited with status 4"), "{out}");
    let after = out.lines().find(|l| l.starts_with("after ")).unwrap_or_default();
    assert!(
        after.contains("skipped") && after.contains("dependency broken did not succeed"),
        "{out}"
    );
    assert!(
        out.contains("build failed in") && out.contains("1 failed, 1 skipped, 1 succeeded"),
        "{out}"
    );
    assert!(
        dir.path().join("made-by-hello").exists(),
        "jobs run in the directory itself"
    );
    assert_eq!(only.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&only.stdout).contains("build succeeded"));
    let unknown_err = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        unknown_err.contains("the pipeline has no job \"nope\"; its jobs are hello, broken, after"),
        "{unknown_err}"
    );
}

#[tokio::test]
async fn build_run_names_the_file_and_line_of_a_broken_pipeline() {
    let dir = local_checkout("- id: a\n  script: [\"true\"]\n- id: a\n  script: [\"true\"]\n");

    let output = build_run(dir.path(), &[]).await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains(".monkeyci/build.yaml:3") && stderr.contains("a"),
        "{stderr}"
    );
}

#[tokio::test]
async fn build_run_passes_artifacts_from_job_to_job() {
    // `clean` removes the files, so `use` finds them only if the artifact is restored.
    let dir = local_checkout(
        "- id: make\n  script: [\"mkdir -p out\", \"echo built > out/app\"]\n  save-artifacts: [{id: app, path: out}]\n\
         - id: clean\n  dependencies: [make]\n  script: [\"rm -rf out\"]\n\
         - id: use\n  dependencies: [clean]\n  restore-artifacts: [{id: app, path: out}]\n  script: [\"cat out/app\"]\n",
    );

    let run = build_run(dir.path(), &["--parallelism", "1"]).await;

    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(out.contains("=== make saved artifact app"), "{out}");
    assert!(out.contains("[use] restored artifact app"), "{out}");
    assert!(out.contains("[use] built"), "{out}");
}

#[tokio::test]
async fn build_run_confines_host_jobs_and_runs_image_jobs_in_containers_as_the_server_does() {
    let image = monkeyci_tests::test_image().expect("image");
    let dir = local_checkout(&format!(
        "- id: host\n  script: ['echo \"host in $(pwd) as $(id -u)\"', 'test ! -e /etc/shadow', 'echo made > made.txt']\n\
         - id: boxed\n  image: {image}\n  dependencies: [host]\n  memory: 64m\n  script: ['grep NAME= /etc/os-release', 'cat made.txt']\n"
    ));

    let confined = build_run(dir.path(), &[]).await;
    let unconfined = build_run(dir.path(), &["--executor", "host-unconfined", "--job", "host"]).await;

    let out = String::from_utf8_lossy(&confined.stdout);
    assert_eq!(confined.status.code(), Some(0), "{out}");
    assert!(out.contains("[host] host in /workspace as 65534"), "{out}");
    assert!(out.contains("[boxed] NAME=\"MonkeyCI test busybox\""), "{out}");
    assert!(out.contains("[boxed] made"), "{out}");
    // As the runner's own user, the job sees the host's files: its `test` fails.
    let out = String::from_utf8_lossy(&unconfined.stdout);
    assert_eq!(unconfined.status.code(), Some(1), "{out}");
    let canonical = dir.path().canonicalize().expect("canonical");
    assert!(
        out.contains(&format!("[host] host in {} as 0", canonical.display())),
        "{out}"
    );
}
