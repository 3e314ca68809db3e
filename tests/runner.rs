//! Executors run jobs as real processes: output streamed line by line, the first failing command
//! fails the job, and cancel and timeouts stop every process the job started.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use monkeyci_runner::{
    checkout, CancellationToken, ExecutionError, Executor, GitAuth, GitTarget, HostExecutor, JobExecutor, JobOutcome,
    JobSpec, LogLine, LogStream,
};
use monkeyci_tests::{git, sleeping};
use tokio::sync::mpsc;

fn spec(dir: &Path, script: &[&str]) -> JobSpec {
    JobSpec {
        build_id: uuid::Uuid::now_v7().to_string(),
        job_id: "test".into(),
        script: script.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::new(),
        checkout: dir.to_path_buf(),
        work_dir: None,
        image: None,
        resources: Default::default(),
        timeout: None,
        log_limits: Default::default(),
    }
}

async fn executor() -> JobExecutor {
    monkeyci_tests::executor("tests-runner").await
}

/// Runs the job to its end and returns its outcome and every log line.
async fn run(spec: JobSpec) -> (Result<JobOutcome, ExecutionError>, Vec<LogLine>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let outcome = executor().await.run(&spec, tx, CancellationToken::new()).await;
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    (outcome, lines)
}

fn texts(lines: &[LogLine], stream: LogStream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.as_str())
        .collect()
}

#[tokio::test]
async fn a_script_runs_in_its_work_dir_with_its_env_and_its_output_is_streamed_line_by_line() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let mut job = spec(
        dir.path(),
        &["echo out-$GREETING", "echo err >&2", "pwd", "printf 'no newline'"],
    );
    job.env.insert("GREETING".into(), "hi 'quoted' $(not run)".into());
    job.work_dir = Some("sub".into());

    let (outcome, lines) = run(job).await;

    assert_eq!(outcome.expect("ran"), JobOutcome::Succeeded);
    assert_eq!(
        texts(&lines, LogStream::Stdout),
        ["out-hi 'quoted' $(not run)", "/workspace/sub", "no newline"]
    );
    assert_eq!(texts(&lines, LogStream::Stderr), ["err"]);
    let stdout: Vec<_> = lines.iter().filter(|l| l.stream == LogStream::Stdout).collect();
    assert!(stdout.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn an_unconfined_host_job_runs_in_the_checkout_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let job = spec(dir.path(), &["pwd", "id -u"]);
    let (tx, mut rx) = mpsc::channel(1024);

    let outcome = HostExecutor::unconfined().run(&job, tx, CancellationToken::new()).await;

    assert_eq!(outcome.expect("ran"), JobOutcome::Succeeded);
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line.text);
    }
    let work_dir = dir.path().canonicalize().expect("canonical");
    let uid = std::process::Command::new("id").arg("-u").output().expect("id -u");
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
    assert_eq!(lines, [work_dir.to_str().expect("utf8"), uid.as_str()]);
}

#[tokio::test]
async fn the_first_failing_command_fails_the_job_and_later_ones_do_not_run() {
    let dir = tempfile::tempdir().expect("dir");

    let (outcome, lines) = run(spec(dir.path(), &["echo one", "exit 3", "echo never"])).await;

    assert_eq!(
        outcome.expect("ran"),
        JobOutcome::Failed {
            exit_code: Some(3),
            signal: None
        }
    );
    assert_eq!(texts(&lines, LogStream::Stdout), ["one"]);
}

#[tokio::test]
async fn cancel_stops_the_job_and_every_process_it_started() {
    let dir = tempfile::tempdir().expect("dir");
    let job = spec(dir.path(), &["sleep 3301 &", "echo started", "sleep 3302"]);
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { executor().await.run(&job, tx, cancel).await }
    });

    let started = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("output within 20 s");
    assert_eq!(started.map(|l| l.text), Some("started".to_owned()));
    // The background shell may print nothing before it has become `sleep`: wait for both.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sleeping(&["3301", "3302"]).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "both sleeps run within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the job stops within 20 s of cancel")
        .expect("task");

    assert_eq!(outcome.expect("ran"), JobOutcome::Canceled);
    // The kill is delivered asynchronously: on a busy machine a process may take a moment to
    // end after the job has returned.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sleeping(&["3301", "3302"]).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sleeping(&["3301", "3302"]),
        Vec::<String>::new(),
        "survived the cancel by 10 s"
    );
}

#[tokio::test]
async fn a_job_that_runs_out_of_time_is_stopped() {
    let dir = tempfile::tempdir().expect("dir");
    let mut job = spec(dir.path(), &["echo started", "sleep 300"]);
    job.timeout = Some(Duration::from_millis(300));

    let (outcome, lines) = tokio::time::timeout(Duration::from_secs(20), run(job))
        .await
        .expect("within 20 s");

    assert_eq!(outcome.expect("ran"), JobOutcome::TimedOut);
    assert_eq!(texts(&lines, LogStream::Stdout), ["started"]);
    assert_eq!(
        texts(&lines, LogStream::System),
        ["the job ran out of time and was stopped"]
    );
}

#[tokio::test]
async fn a_missing_work_dir_is_an_error_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("nope");

    let (outcome, lines) = run(spec(&missing, &["touch ../ran"])).await;

    assert!(
        matches!(outcome, Err(ExecutionError::NoWorkDir(ref p)) if *p == missing),
        "{outcome:?}"
    );
    assert!(lines.is_empty());
    assert!(!dir.path().join("ran").exists());
}

/// A real repository with two commits on `main`, a tag on the first and a branch `feature`.
struct Repo {
    dir: tempfile::TempDir,
    first: String,
    second: String,
}

fn repo() -> Repo {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path();
    git(p, &["init", "--quiet", "--initial-branch", "main"]);
    std::fs::write(p.join("file.txt"), "one\n").expect("write");
    git(p, &["add", "."]);
    git(p, &["commit", "--quiet", "-m", "first"]);
    let first = git(p, &["rev-parse", "HEAD"]);
    git(p, &["tag", "v1.0.0"]);
    git(p, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(p.join("feature.txt"), "feature\n").expect("write");
    git(p, &["add", "."]);
    git(p, &["commit", "--quiet", "-m", "feature"]);
    git(p, &["checkout", "--quiet", "main"]);
    std::fs::write(p.join("file.txt"), "two\n").expect("write");
    git(p, &["commit", "--quiet", "-am", "second"]);
    let second = git(p, &["rev-parse", "HEAD"]);
    Repo { dir, first, second }
}

async fn check_out(
    repo: &Repo,
    target: GitTarget,
) -> (Result<String, monkeyci_runner::CheckoutError>, tempfile::TempDir) {
    let dest = tempfile::tempdir().expect("dest");
    let url = format!("file://{}", repo.dir.path().display());
    let result = checkout(&url, &target, &dest.path().join("src"), &GitAuth::default()).await;
    (result, dest)
}

#[tokio::test]
async fn a_branch_a_tag_and_a_commit_are_checked_out_from_a_real_repository() {
    let repo = repo();
    let branch = |name: &str, commit: Option<&str>| GitTarget::Branch {
        name: name.into(),
        commit: commit.map(Into::into),
    };

    let (main, main_dir) = check_out(&repo, branch("main", None)).await;
    let (tag, tag_dir) = check_out(
        &repo,
        GitTarget::Tag {
            name: "v1.0.0".into(),
            commit: None,
        },
    )
    .await;
    let (old, old_dir) = check_out(&repo, branch("main", Some(&repo.first))).await;
    let (feature, feature_dir) = check_out(&repo, branch("feature", None)).await;

    assert_eq!(main.expect("main"), repo.second);
    let read = |dir: &tempfile::TempDir, file: &str| std::fs::read_to_string(dir.path().join("src").join(file)).ok();
    assert_eq!(read(&main_dir, "file.txt").as_deref(), Some("two\n"));
    assert_eq!(tag.expect("tag"), repo.first);
    assert_eq!(read(&tag_dir, "file.txt").as_deref(), Some("one\n"));
    assert_eq!(old.expect("old commit"), repo.first);
    assert_eq!(read(&old_dir, "file.txt").as_deref(), Some("one\n"));
    assert!(feature.is_ok());
    assert_eq!(read(&feature_dir, "feature.txt").as_deref(), Some("feature\n"));
}

#[tokio::test]
async fn an_unknown_branch_or_a_commit_outside_the_branch_is_a_clear_error() {
    let repo = repo();
    let feature_tip = git(repo.dir.path(), &["rev-parse", "feature"]);

    let (unknown, _a) = check_out(
        &repo,
        GitTarget::Branch {
            name: "nope".into(),
            commit: None,
        },
    )
    .await;
    let (foreign, _b) = check_out(
        &repo,
        GitTarget::Branch {
            name: "main".into(),
            commit: Some(feature_tip.clone()),
        },
    )
    .await;

    let unknown = unknown.expect_err("unknown branch").to_string();
    assert!(unknown.contains("fetching refs/heads/nope"), "{unknown}");
    let foreign = foreign.expect_err("commit of another branch").to_string();
    assert!(
        foreign.contains(&format!(
            "finding commit {feature_tip} in the history of refs/heads/main"
        )),
        "{foreign}"
    );
}
