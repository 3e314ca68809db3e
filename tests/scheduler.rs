//! Pipelines run as job graphs against a real event log, with real processes.

use std::collections::BTreeMap;
use std::time::Duration;

use monkeyci_commands::{AddRepo, CreateOrg, JobTransitionInput, StartBuild, TransitionJob, TriggerBuild};
use monkeyci_domain::build::{BuildOutcome, Trigger, TriggerSource};
use monkeyci_domain::pipeline;
use monkeyci_domain::{BuildId, GitRef, JobId, Params, RefName};
use monkeyci_projections::queries;
use monkeyci_runner::{
    run_pipeline, unblocked_jobs, BuildPlan, CancellationToken, CommandRecorder, JobExecutor, LogItem, LogLine,
};
use monkeyci_tests::{user, Core};
use sqlx::PgPool;
use tokio::sync::mpsc;

struct Fixture {
    core: Core,
    build_id: BuildId,
    dir: tempfile::TempDir,
}

async fn running_build(pool: PgPool, branch: &str) -> Fixture {
    let core = Core::start(pool).await.expect("core");
    let c = &core.commands;
    let ctx = user();
    let org_id = c
        .create_org(
            &ctx,
            CreateOrg {
                name: "Acme".into(),
                slug: "acme".into(),
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
                git_url: "https://git.example/app.git".into(),
                main_branch: None,
                labels: BTreeMap::new(),
            },
        )
        .await
        .expect("repo");
    let build_id = c
        .trigger_build(
            &ctx,
            TriggerBuild {
                repo_id,
                source: TriggerSource::Api,
                branch: Some(branch.into()),
                tag: None,
                commit: None,
                params: [("GREETING".to_owned(), "hello".to_owned())].into(),
                push: None,
            },
        )
        .await
        .expect("build");
    c.start_build(
        &ctx,
        StartBuild {
            build_id,
            runner: "test".into(),
        },
    )
    .await
    .expect("start");
    Fixture {
        core,
        build_id,
        dir: tempfile::tempdir().expect("dir"),
    }
}

fn plan(f: &Fixture, yaml: &str, branch: &str) -> BuildPlan {
    BuildPlan {
        build_id: f.build_id,
        pipeline: pipeline::parse("build.yaml", yaml).expect("pipeline"),
        trigger: Trigger {
            source: TriggerSource::Api,
            git_ref: GitRef::Branch(RefName::parse(branch).expect("ref")),
            commit: None,
            params: Params::parse([("GREETING".to_owned(), "hello".to_owned())]).expect("params"),
            push: None,
        },
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        changed_paths: None,
        checkout: f.dir.path().to_path_buf(),
        parallelism: 4,
        blobs: None,
        secret_env: Default::default(),
        job_limits: Default::default(),
    }
}

/// Answers the scheduler's flushes at once and passes the lines on, as a log store would.
fn collect() -> (monkeyci_runner::LogSender, mpsc::UnboundedReceiver<(JobId, LogLine)>) {
    let (logs, mut items) = mpsc::channel(64);
    let (lines, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = items.recv().await {
            match item {
                LogItem::Line(job, line) => {
                    let _ = lines.send((job, line));
                }
                LogItem::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    (logs, out)
}

fn recorder(f: &Fixture) -> CommandRecorder {
    CommandRecorder::new(f.core.commands.clone(), user(), f.build_id, None)
}

async fn executor() -> JobExecutor {
    monkeyci_tests::executor("tests-scheduler").await
}

/// Runs the plan to its end; returns the outcome and every log line.
async fn run(f: &Fixture, plan: &BuildPlan) -> (BuildOutcome, Vec<(JobId, LogLine)>) {
    let (logs, mut rx) = collect();
    let (_unblock, unblocked) = mpsc::channel(1);
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run_pipeline(
            &executor().await,
            &recorder(f),
            plan,
            logs,
            unblocked,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the pipeline ends within 60 s")
    .expect("recorded");
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    (outcome, lines)
}

async fn jobs(f: &Fixture) -> BTreeMap<String, (String, Option<String>)> {
    f.core.caught_up().await.expect("caught up");
    queries::jobs_of_build(
        &monkeyci_projections::ReadModels::of(&f.core.store),
        f.build_id.as_uuid(),
    )
    .await
    .expect("jobs")
    .into_iter()
    .map(|j| (j.job_id, (j.status, j.message)))
    .collect()
}

fn status(jobs: &BTreeMap<String, (String, Option<String>)>, id: &str) -> String {
    jobs.get(id).map(|(s, _)| s.clone()).unwrap_or_default()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_diamond_runs_its_independent_jobs_in_parallel(pool: PgPool) {
    let f = running_build(pool, "main").await;
    // b and c each wait for the other's marker: they can only both succeed side by side.
    let yaml = r#"
- id: a
  script: ["echo $GREETING from $MONKEYCI_JOB_ID on $MONKEYCI_BRANCH"]
- id: b
  dependencies: [a]
  script: ["touch b.started", "for i in $(seq 1 200); do [ -f c.started ] && exit 0; sleep 0.05; done; exit 1"]
- id: c
  dependencies: [a]
  script: ["touch c.started", "for i in $(seq 1 200); do [ -f b.started ] && exit 0; sleep 0.05; done; exit 1"]
- id: d
  dependencies: [b, c]
  script: ["test -f b.started && test -f c.started"]
"#;
    let (outcome, logs) = run(&f, &plan(&f, yaml, "main")).await;

    assert_eq!(outcome, BuildOutcome::Succeeded);
    let jobs = jobs(&f).await;
    assert!(
        ["a", "b", "c", "d"].iter().all(|j| status(&jobs, j) == "succeeded"),
        "{jobs:?}"
    );
    let a: Vec<&str> = logs
        .iter()
        .filter(|(j, _)| j.as_str() == "a")
        .map(|(_, l)| l.text.as_str())
        .collect();
    assert_eq!(a, ["hello from a on main"]);
    let build = queries::build(
        &monkeyci_projections::ReadModels::of(&f.core.store),
        f.build_id.as_uuid(),
    )
    .await
    .expect("q")
    .expect("build");
    assert_eq!((build.status.as_str(), build.jobs_succeeded), ("succeeded", 4));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failing_job_skips_its_dependents_and_fails_the_build(pool: PgPool) {
    let f = running_build(pool, "main").await;
    let yaml = r#"
- id: compile
  script: ["echo compiling", "exit 2"]
- id: test
  dependencies: [compile]
  script: ["echo never"]
- id: lint
  script: ["true"]
- id: flaky-report
  allow-failure: true
  script: ["exit 1"]
- id: publish
  dependencies: [flaky-report]
  script: ["true"]
"#;
    let (outcome, logs) = run(&f, &plan(&f, yaml, "main")).await;

    assert_eq!(outcome, BuildOutcome::Failed);
    let jobs = jobs(&f).await;
    assert_eq!(jobs["compile"], ("failed".into(), Some("exited with status 2".into())));
    assert_eq!(
        jobs["test"],
        ("skipped".into(), Some("dependency compile did not succeed".into()))
    );
    assert_eq!(status(&jobs, "lint"), "succeeded");
    assert_eq!(status(&jobs, "flaky-report"), "failed");
    assert_eq!(
        status(&jobs, "publish"),
        "succeeded",
        "a job allowed to fail does not stop its dependents"
    );
    assert!(!logs.iter().any(|(_, l)| l.text == "never"));
}

#[sqlx::test(migrations = "../migrations")]
async fn conditions_skip_jobs_and_retries_run_a_failing_job_again(pool: PgPool) {
    let f = running_build(pool, "main").await;
    let yaml = r#"
- id: release
  conditions:
    branches: ["release/*"]
  script: ["echo releasing"]
- id: flaky
  retries: 2
  script: ["n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; [ $n -ge 1 ]"]
"#;
    let (outcome, logs) = run(&f, &plan(&f, yaml, "main")).await;

    assert_eq!(outcome, BuildOutcome::Succeeded);
    let jobs = jobs(&f).await;
    assert_eq!(
        jobs["release"],
        (
            "skipped".into(),
            Some("its conditions do not hold for this build".into())
        )
    );
    assert_eq!(status(&jobs, "flaky"), "succeeded");
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("tries"))
            .expect("tries")
            .trim(),
        "2"
    );
    assert!(logs
        .iter()
        .any(|(j, l)| j.as_str() == "flaky" && l.text == "attempt 2 of 3"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_blocked_job_waits_until_it_is_unblocked(pool: PgPool) {
    let f = running_build(pool, "main").await;
    let yaml = r#"
- id: build
  script: ["true"]
- id: deploy
  dependencies: [build]
  blocked: true
  script: ["echo deployed"]
"#;
    let plan = plan(&f, yaml, "main");
    let head = f.core.store.readable_head().await.expect("head");
    let unblocked = unblocked_jobs(&f.core.feed, f.build_id, head);
    let (logs, mut lines) = collect();
    let rec = recorder(&f);
    let pipeline = tokio::spawn(async move {
        run_pipeline(
            &executor().await,
            &rec,
            &plan,
            logs,
            unblocked,
            CancellationToken::new(),
        )
        .await
    });

    // The deploy job is blocked once build has succeeded and the scheduler waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = jobs(&f).await;
        if status(&jobs, "build") == "succeeded" && status(&jobs, "deploy") == "blocked" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deploy never waited blocked: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pipeline.is_finished());
    f.core
        .commands
        .transition_job(
            &user(),
            TransitionJob {
                build_id: f.build_id,
                job_id: "deploy".into(),
                transition: JobTransitionInput::Unblocked,
            },
        )
        .await
        .expect("unblock");
    let outcome = tokio::time::timeout(Duration::from_secs(30), pipeline)
        .await
        .expect("the pipeline ends after the unblock")
        .expect("task")
        .expect("recorded");

    assert_eq!(outcome, BuildOutcome::Succeeded);
    assert_eq!(status(&jobs(&f).await, "deploy"), "succeeded");
    let mut deployed = false;
    while let Ok((job, line)) = lines.try_recv() {
        deployed |= job.as_str() == "deploy" && line.text == "deployed";
    }
    assert!(deployed);
}

#[sqlx::test(migrations = "../migrations")]
async fn canceling_a_build_stops_its_running_job_and_cancels_the_rest(pool: PgPool) {
    let f = running_build(pool, "main").await;
    let yaml = r#"
- id: slow
  script: ["echo started", "sleep 300"]
- id: after
  dependencies: [slow]
  script: ["true"]
"#;
    let plan = plan(&f, yaml, "main");
    let (logs, mut lines) = collect();
    let (_unblock, unblocked) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let rec = recorder(&f);
    let pipeline = tokio::spawn({
        let cancel = cancel.clone();
        async move { run_pipeline(&executor().await, &rec, &plan, logs, unblocked, cancel).await }
    });
    let started = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .expect("output");
    assert_eq!(started.map(|(_, l)| l.text), Some("started".to_owned()));

    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), pipeline)
        .await
        .expect("the pipeline stops within 30 s of cancel")
        .expect("task")
        .expect("recorded");

    assert_eq!(outcome, BuildOutcome::Canceled);
    let jobs = jobs(&f).await;
    assert_eq!(
        (status(&jobs, "slow"), status(&jobs, "after")),
        ("canceled".into(), "canceled".into())
    );
}
