//! Builds run end to end: a runner claims a queued build, checks out a real git repository,
//! runs its `.monkeyci/` pipeline with real processes, and the outcome lands in the read models.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use monkeyci_commands::{AddRepo, CancelBuild, CreateOrg, TriggerBuild};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::BuildId;
use monkeyci_projections::{queries, BuildRow};
use monkeyci_runner::{CancellationToken, Runner, RunnerSettings};
use monkeyci_storage::{BlobStore, FsStore};
use monkeyci_tests::{database_url, git, monkeyci_binary, user, Core};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A repository on `main` whose `.monkeyci/<file>` holds `pipeline`.
pub(crate) fn repo_with(file: &str, pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path();
    git(p, &["init", "--quiet", "--initial-branch", "main"]);
    std::fs::create_dir(p.join(".monkeyci")).expect("mkdir");
    std::fs::write(p.join(".monkeyci").join(file), pipeline).expect("pipeline");
    std::fs::write(p.join("app.txt"), "the app\n").expect("app");
    git(p, &["add", "."]);
    git(p, &["commit", "--quiet", "-m", "initial"]);
    dir
}

/// Creates an org and a repo pointing at `repo`, and triggers a build of `main`.
pub(crate) async fn trigger(core: &Core, repo: &Path) -> BuildId {
    trigger_url(core, &format!("file://{}", repo.display())).await
}

/// Creates an org and a repo whose code is at `git_url`, and triggers a build of `main`.
pub(crate) async fn trigger_url(core: &Core, git_url: &str) -> BuildId {
    let c = &core.commands;
    let ctx = user();
    let org_id = c
        .create_org(
            &ctx,
            CreateOrg {
                name: "Acme".into(),
                slug: format!("acme-{}", uuid::Uuid::now_v7().simple()),
            },
        )
        .await
        .expect("org");
    let repo_id = c
        .add_repo(
            &ctx,
            AddRepo {
                org_id,
                name: "app".into(),
                git_url: git_url.to_owned(),
                main_branch: None,
                labels: BTreeMap::new(),
            },
        )
        .await
        .expect("repo");
    c.trigger_build(
        &ctx,
        TriggerBuild {
            repo_id,
            source: TriggerSource::Api,
            branch: None,
            tag: None,
            commit: None,
            params: BTreeMap::new(),
            push: None,
        },
    )
    .await
    .expect("trigger")
}

pub(crate) fn settings(workspace: &Path, id: &str) -> RunnerSettings {
    settings_with(workspace, id, Arc::new(FsStore::new(workspace.join("blobs"))))
}

pub(crate) fn settings_with(workspace: &Path, id: &str, blobs: Arc<dyn BlobStore>) -> RunnerSettings {
    RunnerSettings {
        runner_id: id.into(),
        workspace_root: workspace.to_path_buf(),
        parallelism: 2,
        max_builds: 2,
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(100),
        blobs,
        keys: None,
        job_limits: Default::default(),
        checkout_timeout: Duration::from_secs(60),
    }
}

/// Runs a runner with `settings` on the app's core until the returned token is canceled.
pub(crate) async fn spawn_runner(
    app: &monkeyci_tests::TestApp,
    settings: RunnerSettings,
) -> monkeyci_runner::CancellationToken {
    let stop = monkeyci_runner::CancellationToken::new();
    let runner = monkeyci_runner::Runner::new(
        app.core.store.clone(),
        app.core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings,
    );
    tokio::spawn(runner.run(stop.clone()));
    stop
}

/// Waits until the build satisfies `done` in the read model, up to 60 s.
pub(crate) async fn wait_for_build(core: &Core, id: BuildId, done: impl Fn(&BuildRow) -> bool) -> BuildRow {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        core.caught_up().await.expect("caught up");
        let build = queries::build(&monkeyci_projections::ReadModels::of(&core.store), id.as_uuid())
            .await
            .expect("query");
        if let Some(build) = build.filter(|b| done(b)) {
            return build;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "build {id} did not get there within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn finished(build: &BuildRow) -> bool {
    build.finished_at.is_some()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_runner_checks_out_the_repository_and_runs_its_pipeline(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        r#"
- id: check
  script:
    - test "$(cat app.txt)" = "the app"
    - test "$MONKEYCI_BRANCH" = main
    - test -n "$MONKEYCI_COMMIT"
- id: package
  dependencies: [check]
  script: ["echo packaged"]
"#,
    );
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let stop = CancellationToken::new();
    let runner = Runner::new(
        core.store.clone(),
        core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings(workspace.path(), "r1"),
    );
    let running = tokio::spawn(runner.run(stop.clone()));

    let build_id = trigger(&core, repo.path()).await;
    let build = wait_for_build(&core, build_id, finished).await;

    assert_eq!(
        (build.status.as_str(), build.jobs_succeeded, build.runner.as_deref()),
        ("succeeded", 2, Some("r1"))
    );
    // The trigger named no commit: what was built is in the log all the same.
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    assert_eq!(build.commit_sha.as_deref(), Some(head.trim()));
    stop.cancel();
    running.await.expect("runner");
    assert!(
        !workspace.path().join(build_id.to_string()).exists(),
        "the build's workspace is removed"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_broken_or_missing_pipeline_ends_the_build_as_errored_with_the_reason(pool: PgPool) {
    let broken = repo_with("build.yaml", "- id: a\n  script: [\"true\"]\n  colour: blue\n");
    let missing = tempfile::tempdir().expect("dir");
    git(missing.path(), &["init", "--quiet", "--initial-branch", "main"]);
    std::fs::write(missing.path().join("README"), "no pipeline\n").expect("write");
    git(missing.path(), &["add", "."]);
    git(missing.path(), &["commit", "--quiet", "-m", "initial"]);
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let stop = CancellationToken::new();
    let runner = Runner::new(
        core.store.clone(),
        core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings(workspace.path(), "r1"),
    );
    let running = tokio::spawn(runner.run(stop.clone()));

    let broken_build = trigger(&core, broken.path()).await;
    let missing_build = trigger(&core, missing.path()).await;
    let broken_build = wait_for_build(&core, broken_build, finished).await;
    let missing_build = wait_for_build(&core, missing_build, finished).await;

    assert_eq!(broken_build.status, "errored");
    // The commit that broke the pipeline is recorded before the pipeline is read.
    let head = git(broken.path(), &["rev-parse", "HEAD"]);
    assert_eq!(broken_build.commit_sha.as_deref(), Some(head.trim()));
    let message = broken_build.message.unwrap_or_default();
    assert!(
        message.contains(".monkeyci/build.yaml:3") && message.contains("colour"),
        "{message}"
    );
    assert_eq!(missing_build.status, "errored");
    assert!(missing_build
        .message
        .unwrap_or_default()
        .starts_with("no pipeline found"));
    stop.cancel();
    running.await.expect("runner");
}

#[sqlx::test(migrations = "../migrations")]
async fn canceling_a_running_build_kills_its_job(pool: PgPool) {
    let repo = repo_with("build.yml", "- id: slow\n  script: [\"sleep 300\"]\n");
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let stop = CancellationToken::new();
    let runner = Runner::new(
        core.store.clone(),
        core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings(workspace.path(), "r1"),
    );
    let running = tokio::spawn(runner.run(stop.clone()));
    let build_id = trigger(&core, repo.path()).await;
    wait_for_build(&core, build_id, |b| b.jobs_running == 1).await;

    core.commands
        .cancel_build(&user(), CancelBuild { build_id })
        .await
        .expect("cancel");
    let build = wait_for_build(&core, build_id, finished).await;

    assert_eq!((build.status.as_str(), build.jobs_canceled), ("canceled", 1));
    stop.cancel();
    running.await.expect("runner");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_build_whose_runner_is_killed_is_ended_by_another_runner(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        "- id: slow\n  script: [\"echo started\", \"sleep 3303\"]\n",
    );
    let core = Core::start(pool.clone()).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let spawn_runner = |id: &str| {
        let mut child = Command::new(monkeyci_binary().expect("binary"))
            .args(["runner", "--runner-id", id, "--lease-ttl-ms", "1000"])
            .arg("--workspace")
            .arg(workspace.path())
            .env("MONKEYCI_DATABASE_URL", database_url(&pool))
            .env("MONKEYCI_DATA_DIR", workspace.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn runner");
        let stdout = child.stdout.take().expect("stdout");
        (child, BufReader::new(stdout).lines())
    };
    let (mut first, mut first_out) = spawn_runner("first");
    let ready = tokio::time::timeout(Duration::from_secs(60), first_out.next_line())
        .await
        .expect("ready");
    assert!(ready.expect("read").is_some_and(|l| l.contains("waiting for builds")));

    let build_id = trigger(&core, repo.path()).await;
    let build = wait_for_build(&core, build_id, |b| b.jobs_running == 1).await;
    assert_eq!(build.runner.as_deref(), Some("first"));
    first.kill().await.expect("SIGKILL");
    // A confined job dies with its runner (bubblewrap's --die-with-parent).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !monkeyci_tests::sleeping(&["3303"]).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job outlived its killed runner by 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_second, _second_out) = spawn_runner("second");
    let build = wait_for_build(&core, build_id, finished).await;

    assert_eq!(build.status, "errored");
    assert_eq!(
        build.message.as_deref(),
        Some("runner first stopped responding; the build was ended by runner second")
    );
    assert_eq!(build.jobs_canceled, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn job_output_is_stored_streamed_live_and_downloadable(pool: PgPool) {
    use monkeyci_tests::TestApp;
    use serde_json::json;

    let repo = repo_with(
        "build.yaml",
        "- id: count\n  script:\n    - echo line-1\n    - echo warning >&2\n    - sleep 0.5\n    - echo line-2\n    - sleep 0.5\n    - echo line-3\n",
    );
    let app = TestApp::spawn(pool).await.expect("app");
    let workspace = tempfile::tempdir().expect("workspace");
    let stop = CancellationToken::new();
    let runner = Runner::new(
        app.core.store.clone(),
        app.core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings(workspace.path(), "r1"),
    );
    let running = tokio::spawn(runner.run(stop.clone()));
    let build_id = trigger(&app.core, repo.path()).await;
    wait_for_build(&app.core, build_id, |b| b.jobs_running == 1).await;
    let job = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Job:{build_id}:count"))
    };

    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "log",
        "subscription($j: ID!) { jobLog(jobId: $j) { offset stream text } }",
        json!({ "j": job }),
    )
    .await
    .expect("subscribe");
    let mut live = Vec::new();
    loop {
        let message = ws.message().await.expect("message");
        match message["type"].as_str() {
            Some("next") => live.push(message["payload"]["data"]["jobLog"].clone()),
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    let offsets: Vec<i64> = live.iter().filter_map(|l| l["offset"].as_i64()).collect();
    assert_eq!(offsets, [1, 2, 3, 4], "{live:?}");
    let stdout: Vec<&str> = live
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(stdout, ["line-1", "line-2", "line-3"]);
    assert!(live.iter().any(|l| l["stream"] == "stderr" && l["text"] == "warning"));

    // Resuming after the second line gives exactly the rest, then completes.
    ws.subscribe(
        "rest",
        "subscription($j: ID!) { jobLog(jobId: $j, after: 2) { offset } }",
        json!({ "j": job }),
    )
    .await
    .expect("resume");
    let third = ws.next_data("rest").await.expect("third");
    let fourth = ws.next_data("rest").await.expect("fourth");
    assert_eq!(
        (
            third["data"]["jobLog"]["offset"].clone(),
            fourth["data"]["jobLog"]["offset"].clone()
        ),
        (json!(3), json!(4))
    );
    assert_eq!(ws.message().await.expect("complete")["type"], json!("complete"));

    let queried = app
        .graphql(
            "query($j: ID!) { job(id: $j) { status log(after: 3) { offset text } } }",
            json!({ "j": job }),
        )
        .await
        .expect("query");
    assert_eq!(
        queried["data"]["job"]["log"],
        json!([{ "offset": 4, "text": stdout_of(&live, 4) }])
    );
    let build_global = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Build:{build_id}"))
    };
    let download = app
        .http
        .get(app.url(&format!("/builds/{build_global}/jobs/count/log")))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let text = download.text().await.expect("text");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("line-")).collect::<Vec<_>>(),
        ["line-1", "line-2", "line-3"]
    );
    let missing = app
        .http
        .get(app.url(&format!("/builds/{build_global}/jobs/nope/log")))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    stop.cancel();
    running.await.expect("runner");
    app.stop().await;
}

fn stdout_of(lines: &[serde_json::Value], offset: i64) -> serde_json::Value {
    lines
        .iter()
        .find(|l| l["offset"] == offset)
        .map(|l| l["text"].clone())
        .unwrap_or_default()
}
