//! Jobs with an `image` run in podman containers: the image's files, the checkout at
//! `/workspace`, live output, artifacts to and from host jobs, limits, cancel and timeouts that
//! stop the container within 5 s, containers always removed (also after a `kill -9` of the
//! server), and bad images or limits refused with the reason.

use std::time::{Duration, Instant};

use monkeyci_commands::CancelBuild;
use monkeyci_domain::BuildId;
use monkeyci_projections::queries;
use monkeyci_runner::{CancellationToken, Runner, BUILD_LABEL};
use monkeyci_tests::{containers_labelled, test_image, user, TestApp};
use serde_json::json;
use sqlx::PgPool;

use crate::builds::{finished, repo_with, settings, trigger, wait_for_build};
use crate::server::Server;

/// A started app with a runner whose jobs run in real containers and confined on the host.
struct Fixture {
    app: TestApp,
    workspace: tempfile::TempDir,
    stop: CancellationToken,
    runner: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(pool: PgPool) -> Self {
        let app = TestApp::spawn(pool).await.expect("app");
        let workspace = tempfile::tempdir().expect("workspace");
        let installation = monkeyci_runner::installation_id(app.core.store.pool())
            .await
            .expect("installation");
        let executor = monkeyci_tests::executor(&installation.to_string()).await;
        let stop = CancellationToken::new();
        let runner = Runner::new(
            app.core.store.clone(),
            app.core.feed.clone(),
            executor,
            settings(workspace.path(), "r1"),
        );
        let runner = tokio::spawn(runner.run(stop.clone()));
        Self {
            app,
            workspace,
            stop,
            runner,
        }
    }

    /// Triggers a build of a repository with `pipeline` as its `build.yaml`.
    async fn build(&self, pipeline: &str) -> (BuildId, tempfile::TempDir) {
        let repo = repo_with("build.yaml", pipeline);
        (trigger(&self.app.core, repo.path()).await, repo)
    }

    /// (status, message) of each job of the build.
    async fn jobs(&self, build: BuildId) -> Vec<(String, String, Option<String>)> {
        queries::jobs_of_build(
            &monkeyci_projections::ReadModels::of(&self.app.core.store),
            build.as_uuid(),
        )
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| (j.job_id, j.status, j.message))
        .collect()
    }

    async fn log(&self, build: BuildId, job: &str) -> Vec<String> {
        queries::job_log(
            &monkeyci_projections::ReadModels::of(&self.app.core.store),
            build.as_uuid(),
            job,
            0,
            10_000,
        )
        .await
        .expect("log")
        .into_iter()
        .map(|l| l.text)
        .collect()
    }

    /// Waits (up to 60 s) until `job` of `build` has written `line`.
    async fn wait_for_line(&self, build: BuildId, job: &str, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log(build, job).await.iter().any(|l| l == line) {
            assert!(Instant::now() < deadline, "{job} did not write {line:?} within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.runner.await.expect("runner");
        self.app.stop().await;
    }
}

fn job_global(build: BuildId, job: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Job:{build}:{job}"))
}

#[sqlx::test(migrations = "../migrations")]
async fn a_container_job_runs_in_its_image_streams_live_and_trades_artifacts_with_host_jobs(pool: PgPool) {
    let image = test_image().expect("image");
    let f = Fixture::start(pool).await;
    let pipeline = format!(
        r#"
- id: boxed
  image: {image}
  script:
    - cat /etc/os-release
    - echo "in $(pwd)"
    - echo first-line
    - while [ ! -f go ]; do sleep 0.05; done
    - mkdir -p out && echo made-in-the-container > out/made.txt
  save-artifacts: [{{id: made, path: out}}]
- id: host
  dependencies: [boxed]
  restore_artifacts: [{{id: made, path: out}}]
  script:
    - cat out/made.txt
    - echo made-on-the-host > back.txt
  saveArtifacts: [{{id: back, path: back.txt}}]
- id: boxed-again
  image: {image}
  dependencies: [host]
  restoreArtifacts: [{{id: back, path: back.txt}}]
  script: [cat back.txt]
"#
    );
    let (build, _repo) = f.build(&pipeline).await;
    wait_for_build(&f.app.core, build, |b| b.jobs_running == 1).await;

    let mut ws = f.app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "log",
        "subscription($j: ID!) { jobLog(jobId: $j) { text } }",
        json!({ "j": job_global(build, "boxed") }),
    )
    .await
    .expect("subscribe");
    let mut seen = Vec::new();
    while !seen.iter().any(|l| l == "first-line") {
        let data = ws.next_data("log").await.expect("a line");
        seen.push(data["data"]["jobLog"]["text"].as_str().unwrap_or_default().to_owned());
    }
    // The line arrived while the job still runs: it waits for the file written now.
    let jobs = f.jobs(build).await;
    assert!(
        jobs.iter().any(|(id, status, _)| id == "boxed" && status == "running"),
        "{jobs:?}"
    );
    let checkout = f.workspace.path().join(build.to_string()).join("src");
    std::fs::write(checkout.join("go"), "").expect("go");

    let done = wait_for_build(&f.app.core, build, finished).await;

    assert_eq!(done.status, "succeeded", "{:?}", f.jobs(build).await);
    assert!(seen.contains(&"NAME=\"MonkeyCI test busybox\"".to_owned()), "{seen:?}");
    assert!(seen.contains(&"in /workspace".to_owned()), "{seen:?}");
    assert!(f.log(build, "host").await.contains(&"made-in-the-container".to_owned()));
    assert!(f
        .log(build, "boxed-again")
        .await
        .contains(&"made-on-the-host".to_owned()));
    assert_eq!(
        containers_labelled(BUILD_LABEL, &build.to_string()),
        Vec::<String>::new()
    );
    f.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn cancel_and_timeouts_stop_the_container_within_5_s_and_remove_it(pool: PgPool) {
    let image = test_image().expect("image");
    let f = Fixture::start(pool).await;
    let (canceled, _a) = f
        .build(&format!(
            "- id: wait\n  image: {image}\n  script: ['echo up', 'sleep 300']\n"
        ))
        .await;
    let (timed_out, _b) = f
        .build(&format!(
            "- id: wait\n  image: {image}\n  timeout: 2\n  script: ['echo up', 'sleep 300']\n"
        ))
        .await;
    f.wait_for_line(canceled, "wait", "up").await;

    let asked = Instant::now();
    f.app
        .core
        .commands
        .cancel_build(&user(), CancelBuild { build_id: canceled })
        .await
        .expect("cancel");
    let ended = wait_for_build(&f.app.core, canceled, finished).await;
    let took = asked.elapsed();

    assert_eq!(ended.status, "canceled");
    assert!(took < Duration::from_secs(5), "the cancel took {took:?}");
    assert_eq!(
        containers_labelled(BUILD_LABEL, &canceled.to_string()),
        Vec::<String>::new()
    );

    f.wait_for_line(timed_out, "wait", "up").await;
    let started = Instant::now();
    let ended = wait_for_build(&f.app.core, timed_out, finished).await;
    assert_eq!(ended.status, "failed");
    assert!(
        started.elapsed() < Duration::from_secs(2 + 5),
        "took {:?}",
        started.elapsed()
    );
    let jobs = f.jobs(timed_out).await;
    assert_eq!(jobs[0].2.as_deref(), Some("ran out of time"), "{jobs:?}");
    assert_eq!(
        containers_labelled(BUILD_LABEL, &timed_out.to_string()),
        Vec::<String>::new()
    );
    f.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_container_over_its_memory_limit_fails_and_says_so(pool: PgPool) {
    let image = test_image().expect("image");
    let f = Fixture::start(pool).await;
    let pipeline = format!(
        "- id: hungry\n  image: {image}\n  memory: 32m\n  script:\n    - cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max\n    - x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived\n"
    );
    let (build, _repo) = f.build(&pipeline).await;

    let ended = wait_for_build(&f.app.core, build, finished).await;

    assert_eq!(ended.status, "failed");
    let jobs = f.jobs(build).await;
    assert_eq!(
        jobs[0].2.as_deref(),
        Some("ran out of memory: used more than its limit of 32 MiB"),
        "{jobs:?}"
    );
    let log = f.log(build, "hungry").await;
    assert!(log.contains(&"33554432".to_owned()), "{log:?}");
    assert!(!log.contains(&"survived".to_owned()), "{log:?}");
    f.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_images_and_limits_are_refused_with_the_reason(pool: PgPool) {
    let f = Fixture::start(pool).await;
    let (missing, _a) = f
        .build("- id: pull\n  image: localhost/monkeyci-no-such-image:1\n  script: [true]\n")
        .await;
    let (metachar, _b) = f
        .build("- id: evil\n  image: 'alpine; touch /tmp/pwned'\n  script: [true]\n")
        .await;
    let (negative, _c) = f
        .build("- id: small\n  image: alpine\n  memory: -1\n  script: [true]\n")
        .await;

    let missing_build = wait_for_build(&f.app.core, missing, finished).await;
    let metachar_build = wait_for_build(&f.app.core, metachar, finished).await;
    let negative_build = wait_for_build(&f.app.core, negative, finished).await;

    assert_eq!(missing_build.status, "failed");
    let jobs = f.jobs(missing).await;
    let message = jobs[0].2.clone().unwrap_or_default();
    assert!(
        message.starts_with("podman could not run the container: ") && message.contains("monkeyci-no-such-image"),
        "{message}"
    );
    assert_eq!(metachar_build.status, "errored");
    let refused = metachar_build.message.unwrap_or_default();
    assert!(
        refused.contains("invalid image \"alpine; touch /tmp/pwned\""),
        "{refused}"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    assert_eq!(negative_build.status, "errored");
    let refused = negative_build.message.unwrap_or_default();
    assert!(refused.contains("invalid memory"), "{refused}");
    f.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_killed_server_leaves_no_container_once_it_is_back(pool: PgPool) {
    let image = test_image().expect("image");
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with(
        "build.yaml",
        &format!("- id: wait\n  image: {image}\n  script: ['echo up', 'sleep 300']\n"),
    );
    let flags = ["--lease-ttl-ms", "1500"];
    let mut server = Server::start_with(&pool, dir.path(), &flags, &[]).await;
    let (_, repo_id) = server
        .org_with_repo("acme", &format!("file://{}", repo.path().display()))
        .await;
    let build = server.trigger(&repo_id, json!([])).await;
    server
        .wait_until(&build, Duration::from_secs(60), |b| {
            b["jobs"][0]["log"]
                .as_array()
                .is_some_and(|lines| lines.iter().any(|l| l["text"] == "up"))
        })
        .await;
    let uuid = monkeyci_tests::uuid_of(&build);
    let names = containers_labelled(BUILD_LABEL, &uuid);
    assert_eq!(names.len(), 1);

    server.child.start_kill().expect("kill -9");
    server.child.wait().await.expect("killed");
    assert_eq!(
        containers_labelled(BUILD_LABEL, &uuid).len(),
        1,
        "the container outlives a killed server"
    );
    let server = Server::start_with(&pool, dir.path(), &flags, &[]).await;
    let ended = server
        .wait_until(&build, Duration::from_secs(60), |b| b["status"] == "ERRORED")
        .await;

    let message = ended["message"].as_str().unwrap_or_default();
    assert!(message.contains("stopped responding"), "{message}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_labelled(BUILD_LABEL, &uuid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the container is still there 30 s after the build ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scratch = std::env::temp_dir().join(&names[0]);
    assert!(!scratch.exists(), "{} is left behind", scratch.display());
    server.stop().await;
}
