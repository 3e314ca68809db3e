//! Artifacts, caches, archived logs, build timeouts and changed paths, end to end: a real runner
//! runs real git repositories' pipelines, with blobs in a real S3-compatible server (s3s-fs,
//! started by the test and driven by aws-sdk-s3) or on the filesystem.

use std::collections::BTreeMap;
use std::sync::Arc;

use monkeyci_api::ids::{encode, Kind};
use monkeyci_commands::TriggerBuild;
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::{BuildId, RepoId};
use monkeyci_projections::queries;
use monkeyci_runner::{CancellationToken, Runner};
use monkeyci_storage::testing::S3TestServer;
use monkeyci_storage::{BlobKey, BlobStore, FsStore, S3Config, S3Store};
use monkeyci_tests::{git, user, Core, TestApp};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::builds::{finished, repo_with, settings_with, trigger, wait_for_build};

/// Starts a runner on `core` with `blobs`; stopped by the returned token.
async fn start_runner(core: &Core, workspace: &std::path::Path, blobs: Arc<dyn BlobStore>) -> CancellationToken {
    let stop = CancellationToken::new();
    let runner = Runner::new(
        core.store.clone(),
        core.feed.clone(),
        monkeyci_tests::executor("tests").await,
        settings_with(workspace, "r1", blobs),
    );
    tokio::spawn(runner.run(stop.clone()));
    stop
}

async fn log_of(core: &Core, build: BuildId, job: &str) -> String {
    queries::job_log_text(&monkeyci_projections::ReadModels::of(&core.store), build.as_uuid(), job)
        .await
        .expect("log")
        .0
}

// The API, the projections and the runner each hold connections for as long as they run: more
// than the default test pool has.
#[sqlx::test(migrations = "../migrations")]
async fn an_artifact_on_s3_passes_between_jobs_and_is_listed_downloadable_and_logs_are_archived(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = PgPoolOptions::new()
        .max_connections(30)
        .connect_with(options)
        .await
        .expect("pool");
    let s3_dir = tempfile::tempdir().expect("s3 dir");
    let s3 = S3TestServer::start(s3_dir.path()).expect("s3 server");
    let config = S3Config {
        prefix: "ci/".into(),
        ..s3.config()
    };
    let store: Arc<dyn BlobStore> = Arc::new(S3Store::new(config).await.expect("s3 store"));
    // `clean` removes the files, so `use` sees them only if the artifact is restored.
    let repo = repo_with(
        "build.yaml",
        r#"
- id: make
  script: ["mkdir -p out", "echo hello > out/hello.txt"]
  save-artifacts: [{id: dist, path: out}]
- id: clean
  dependencies: [make]
  script: ["rm -rf out", "test ! -e out"]
- id: use
  dependencies: [clean]
  restore-artifacts: [{id: dist, path: out}]
  script: ['test "$(cat out/hello.txt)" = hello']
"#,
    );
    let blobs = store.clone();
    let app = TestApp::spawn_with(pool, move |c| c.blobs = Some(blobs))
        .await
        .expect("app");
    let workspace = tempfile::tempdir().expect("workspace");
    let stop = start_runner(&app.core, workspace.path(), store.clone()).await;

    let build_id = trigger(&app.core, repo.path()).await;
    let build = wait_for_build(&app.core, build_id, finished).await;
    assert_eq!((build.status.as_str(), build.jobs_succeeded), ("succeeded", 3));
    let use_log = log_of(&app.core, build_id, "use").await;
    assert!(use_log.contains("restored artifact dist"), "{use_log}");

    let response = app
        .graphql(
            "query($id: ID!) { build(id: $id) { artifacts { id jobId size sha256 downloadPath } \
             jobs { jobId logArchive { size sha256 lines } logPath } } }",
            serde_json::json!({ "id": encode(Kind::Build, build_id.as_uuid()).as_str() }),
        )
        .await
        .expect("query");
    let artifacts = response["data"]["build"]["artifacts"]
        .as_array()
        .expect("artifacts")
        .clone();
    assert_eq!(artifacts.len(), 1, "{response}");
    assert_eq!(
        (artifacts[0]["id"].as_str(), artifacts[0]["jobId"].as_str()),
        (Some("dist"), Some("make"))
    );

    // The download is the stored tar.gz: same size and hash, and it holds the file.
    let download = app
        .http
        .get(app.url(artifacts[0]["downloadPath"].as_str().expect("path")))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/gzip");
    let bytes = download.bytes().await.expect("body");
    assert_eq!(Some(bytes.len() as u64), artifacts[0]["size"].as_u64());
    assert_eq!(
        Some(hex::encode(Sha256::digest(&bytes)).as_str()),
        artifacts[0]["sha256"].as_str()
    );
    let tgz = workspace.path().join("dist.tgz");
    std::fs::write(&tgz, &bytes).expect("write");
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&tgz)
        .output()
        .expect("tar");
    assert!(String::from_utf8_lossy(&listing.stdout).contains("out/hello.txt"));

    // In the bucket under the prefix: the artifact and one log per job, each log the same lines
    // as the log download.
    let org_repo = format!("{}/{}", build.org_id, build.repo_id);
    let keys: Vec<String> = store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    let build_key = format!("{org_repo}/{}", build.id);
    assert!(keys.contains(&format!("{build_key}/dist.tgz")), "{keys:?}");
    for job in response["data"]["build"]["jobs"].as_array().expect("jobs") {
        let name = job["jobId"].as_str().expect("job id");
        let archived = &job["logArchive"];
        let key = BlobKey::new(format!("{build_key}/logs/{name}.ndjson")).expect("key");
        let stored = store.get_bytes(&key).await.expect("get").expect("archived log");
        let served = app
            .http
            .get(app.url(job["logPath"].as_str().expect("log path")))
            .send()
            .await
            .expect("log")
            .text()
            .await
            .expect("text");
        // The archive keeps every line with its number, time and stream; its texts are the
        // download's lines.
        let archived_text: String = String::from_utf8(stored.clone())
            .expect("utf-8")
            .lines()
            .map(|line| {
                let line: serde_json::Value = serde_json::from_str(line).expect("an NDJSON line");
                format!("{}\n", line["text"].as_str().expect("text"))
            })
            .collect();
        assert_eq!(archived_text, served);
        assert_eq!(Some(stored.len() as u64), archived["size"].as_u64(), "{job}");
        assert_eq!(Some(served.lines().count() as u64), archived["lines"].as_u64(), "{job}");
    }
    assert!(s3_dir
        .path()
        .join(s3.bucket())
        .join("ci")
        .join(&build_key)
        .join("dist.tgz")
        .exists());

    // An artifact the build does not have is a 404.
    let missing = app
        .http
        .get(app.url(&format!(
            "/builds/{}/artifacts/nope",
            encode(Kind::Build, build.id).as_str()
        )))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_cache_saved_by_one_build_is_restored_in_the_next(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        r#"
- id: deps
  caches: [{id: deps, path: deps}]
  script:
    - 'if [ -f deps/stamp ]; then echo cache-hit; else echo cache-miss; mkdir -p deps; echo x > deps/stamp; fi'
"#,
    );
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&core, workspace.path(), store).await;

    let first = trigger(&core, repo.path()).await;
    let first_row = wait_for_build(&core, first, finished).await;
    assert_eq!(first_row.status, "succeeded");
    let log = log_of(&core, first, "deps").await;
    assert!(log.contains("cache-miss") && log.contains("saved cache deps"), "{log}");

    // Each build starts from a fresh checkout: only the cache can bring the stamp back.
    let second = core
        .commands
        .trigger_build(
            &user(),
            TriggerBuild {
                repo_id: RepoId::from_uuid(first_row.repo_id),
                source: TriggerSource::Api,
                branch: None,
                tag: None,
                commit: None,
                params: BTreeMap::new(),
                push: None,
            },
        )
        .await
        .expect("trigger");
    assert_eq!(wait_for_build(&core, second, finished).await.status, "succeeded");
    let log = log_of(&core, second, "deps").await;
    assert!(
        log.contains("restored cache deps") && log.contains("cache-hit"),
        "{log}"
    );
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn an_artifact_path_that_leads_out_of_the_workspace_is_refused(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        "- id: leak\n  script: [\"true\"]\n  save-artifacts: [{id: secrets, path: etc}]\n",
    );
    // A committed symlink to /etc: the path looks relative but leads outside.
    std::os::unix::fs::symlink("/etc", repo.path().join("etc")).expect("symlink");
    git(repo.path(), &["add", "etc"]);
    git(repo.path(), &["commit", "--quiet", "-m", "link"]);
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&core, workspace.path(), store.clone()).await;

    let build_id = trigger(&core, repo.path()).await;
    let build = wait_for_build(&core, build_id, finished).await;
    assert_eq!(build.status, "failed");
    assert!(build.artifacts.is_empty());
    let job = queries::job(&monkeyci_projections::ReadModels::of(&core.store), build.id, "leak")
        .await
        .expect("job")
        .expect("leak");
    let message = job.message.unwrap_or_default();
    assert!(
        message.contains("saving artifact secrets failed") && message.contains("escapes the workspace"),
        "{message}"
    );
    let stored = store.list("").await.expect("list");
    assert!(
        !stored.iter().any(|(k, _)| k.as_str().ends_with("secrets.tgz")),
        "{stored:?}"
    );
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_build_over_its_timeout_is_stopped_and_fails(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        r#"
timeout: 1s
jobs:
  - id: slow
    script: ["sleep 60"]
  - id: after
    dependencies: [slow]
    script: ["true"]
"#,
    );
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&core, workspace.path(), store).await;

    let build_id = trigger(&core, repo.path()).await;
    let build = wait_for_build(&core, build_id, finished).await;
    assert_eq!(
        (build.status.as_str(), build.jobs_canceled, build.jobs_skipped),
        ("failed", 1, 1)
    );
    let message = build.message.unwrap_or_default();
    assert!(message.contains("timeout of 1s"), "{message}");
    // Stopped at the timeout, not after the 60 s sleep.
    let took = build.finished_at.expect("finished") - build.started_at.expect("started");
    assert!(took < chrono::Duration::seconds(30), "took {took}");
    stop.cancel();
}

#[sqlx::test(migrations = "../migrations")]
async fn path_conditions_look_at_the_files_the_commit_changed(pool: PgPool) {
    let repo = repo_with(
        "build.yaml",
        r#"
- id: docs
  conditions: {paths: ["docs/**"]}
  script: ["true"]
- id: code
  conditions: {paths: ["src/**"]}
  script: ["true"]
"#,
    );
    let p = repo.path();
    std::fs::create_dir_all(p.join("docs")).expect("docs");
    std::fs::create_dir_all(p.join("src")).expect("src");
    std::fs::write(p.join("docs/guide.md"), "guide\n").expect("write");
    std::fs::write(p.join("src/main.c"), "int main;\n").expect("write");
    git(p, &["add", "."]);
    git(p, &["commit", "--quiet", "-m", "docs and code"]);
    std::fs::write(p.join("src/main.c"), "int main(void);\n").expect("write");
    git(p, &["commit", "--quiet", "-am", "code only"]);
    let core = Core::start(pool).await.expect("core");
    let workspace = tempfile::tempdir().expect("workspace");
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(workspace.path().join("blobs")));
    let stop = start_runner(&core, workspace.path(), store).await;

    let build_id = trigger(&core, p).await;
    let build = wait_for_build(&core, build_id, finished).await;
    assert_eq!(build.status, "succeeded");
    let jobs = queries::jobs_of_build(&monkeyci_projections::ReadModels::of(&core.store), build.id)
        .await
        .expect("jobs");
    let status: BTreeMap<&str, &str> = jobs.iter().map(|j| (j.job_id.as_str(), j.status.as_str())).collect();
    assert_eq!(status, BTreeMap::from([("code", "succeeded"), ("docs", "skipped")]));
    stop.cancel();
}
