//! Projections: read models that follow the log exactly once, rebuild to the same rows, survive
//! a killed process, and run in exactly one process at a time.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use monkeyci_commands::{
    AddRepo, CreateOrg, FinishBuild, JobTransitionInput, QueueJob, RetryBuild, StartBuild, TransitionJob, TriggerBuild,
};
use monkeyci_domain::build::{BuildOutcome, TriggerSource};
use monkeyci_eventstore::EventStore;
use monkeyci_projections::{queries, BuildsProjection, OrgsProjection, Projection, ReposProjection};
use monkeyci_tests::{database_url, run_workload, table_rows, user, wait_for_checkpoints, Core};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const READ_MODEL_TABLES: [(&str, &str); 4] = [
    ("orgs", "id"),
    ("repos", "id"),
    ("builds", "id"),
    ("jobs", "build_id, job_id"),
];

async fn snapshot(pool: &PgPool) -> Vec<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    for (table, order) in READ_MODEL_TABLES {
        all.push(table_rows(pool, table, order).await.expect("rows"));
    }
    all
}

/// The tables of the builds projection (the others go on running while it stalls).
async fn build_tables(pool: &PgPool) -> Vec<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    for (table, order) in &READ_MODEL_TABLES[2..] {
        all.push(table_rows(pool, table, order).await.expect("rows"));
    }
    all
}

#[sqlx::test(migrations = "../migrations")]
async fn read_models_show_status_timings_trigger_and_job_counts(pool: PgPool) {
    let core = Core::start(pool.clone()).await.expect("core");
    let ctx = user();
    let c = &core.commands;
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
                git_url: "git@git.example:acme/app.git".into(),
                main_branch: Some("trunk".into()),
                labels: [("team".to_owned(), "core".to_owned())].into(),
            },
        )
        .await
        .expect("repo");
    let build_id = c
        .trigger_build(
            &ctx,
            TriggerBuild {
                repo_id,
                source: TriggerSource::Cli,
                branch: None,
                tag: None,
                commit: Some("ABCDEF1234567".into()),
                params: [("DEPLOY".to_owned(), "no".to_owned())].into(),
                push: None,
            },
        )
        .await
        .expect("build");
    c.start_build(
        &ctx,
        StartBuild {
            build_id,
            runner: "runner-7".into(),
        },
    )
    .await
    .expect("start");
    for (job, deps) in [("a", vec![]), ("b", vec!["a".to_owned()])] {
        c.queue_job(
            &ctx,
            QueueJob {
                build_id,
                job_id: job.into(),
                dependencies: deps,
            },
        )
        .await
        .expect("queue");
    }
    let step = |job: &str, transition| TransitionJob {
        build_id,
        job_id: job.into(),
        transition,
    };
    c.transition_job(&ctx, step("a", JobTransitionInput::Started))
        .await
        .expect("start a");
    c.transition_job(
        &ctx,
        step(
            "a",
            JobTransitionInput::Failed {
                message: "exit 2".into(),
            },
        ),
    )
    .await
    .expect("fail a");
    c.transition_job(
        &ctx,
        step(
            "b",
            JobTransitionInput::Skipped {
                reason: "a failed".into(),
            },
        ),
    )
    .await
    .expect("skip b");
    c.finish_build(
        &ctx,
        FinishBuild {
            build_id,
            outcome: BuildOutcome::Failed,
            message: Some("job a failed".into()),
        },
    )
    .await
    .expect("finish");
    let retry_id = c.retry_build(&ctx, RetryBuild { build_id }).await.expect("retry");

    core.caught_up().await.expect("caught up");
    let read = monkeyci_projections::ReadModels::new(pool.clone());

    let org = queries::org_by_slug(&read, "acme")
        .await
        .expect("query")
        .expect("org row");
    assert_eq!((org.id, org.name.as_str()), (org_id.as_uuid(), "Acme"));
    let repo = queries::repo(&read, repo_id.as_uuid())
        .await
        .expect("query")
        .expect("repo row");
    assert_eq!(repo.main_branch, "trunk");
    assert_eq!(repo.labels, BTreeMap::from([("team".to_owned(), "core".to_owned())]));
    let build = queries::build(&read, build_id.as_uuid())
        .await
        .expect("query")
        .expect("build row");
    assert_eq!(build.status, "failed");
    assert_eq!(
        (build.source.as_str(), build.ref_kind.as_str(), build.ref_name.as_str()),
        ("cli", "branch", "trunk")
    );
    assert_eq!(build.commit_sha.as_deref(), Some("abcdef1234567"));
    assert_eq!(build.params.get("DEPLOY").map(String::as_str), Some("no"));
    assert_eq!(build.runner.as_deref(), Some("runner-7"));
    assert_eq!(build.message.as_deref(), Some("job a failed"));
    assert_eq!(build.retried_by, Some(retry_id.as_uuid()));
    let (started, finished) = (build.started_at.expect("started"), build.finished_at.expect("finished"));
    assert!(build.queued_at <= started && started <= finished);
    assert_eq!(
        (
            build.jobs_total,
            build.jobs_failed,
            build.jobs_skipped,
            build.jobs_succeeded
        ),
        (2, 1, 1, 0)
    );
    let jobs = queries::jobs_of_build(&read, build_id.as_uuid()).await.expect("jobs");
    assert_eq!(
        jobs.iter()
            .map(|j| (j.job_id.as_str(), j.status.as_str()))
            .collect::<Vec<_>>(),
        [("a", "failed"), ("b", "skipped")]
    );
    assert_eq!(jobs[0].message.as_deref(), Some("exit 2"));
    assert_eq!(jobs[1].dependencies, ["a"]);
    let retry = queries::build(&read, retry_id.as_uuid())
        .await
        .expect("query")
        .expect("retry row");
    assert_eq!(
        (retry.status.as_str(), retry.retry_of),
        ("queued", Some(build_id.as_uuid()))
    );
    assert_eq!(retry.commit_sha, build.commit_sha);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rebuilt_read_model_equals_the_live_one_row_by_row(pool: PgPool) {
    let mut core = Core::start(pool.clone()).await.expect("core");
    run_workload(&core.commands, 3, 3, 6).await.expect("workload");
    core.caught_up().await.expect("caught up");
    let live = snapshot(&pool).await;
    assert!(live.iter().all(|rows| !rows.is_empty()));

    let projections: [&dyn Projection; 3] = [&OrgsProjection, &ReposProjection, &BuildsProjection];
    for projection in projections {
        monkeyci_projections::rebuild(&core.store, projection)
            .await
            .expect("rebuild");
    }
    core.caught_up().await.expect("caught up after rebuild");

    assert_eq!(snapshot(&pool).await, live);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    for status in monkeyci_projections::status(&core.store).await.expect("status") {
        assert_eq!((status.events_processed, status.lag_events), (total, 0), "{status:?}");
    }
    core.stop().await;
}

struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(pool: &PgPool, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_monkeyci-test-worker"))
            .arg(database_url(pool))
            .args(["--batch-size", "25"])
            .args(extra)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn worker");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, lines }
    }

    /// Reads the worker's output until it has printed every line of `wanted`.
    async fn expect_lines(&mut self, wanted: &[&str]) {
        let mut missing: Vec<&str> = wanted.to_vec();
        while !missing.is_empty() {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("worker did not print {missing:?} within 30 s"))
                .expect("read")
                .unwrap_or_else(|| panic!("worker exited before printing {missing:?}"));
            missing.retain(|m| *m != line);
        }
    }

    async fn kill(mut self) {
        // SIGKILL: no chance to roll back or release anything by itself.
        self.child.kill().await.expect("kill");
    }
}

async fn builds_checkpoint(store: &EventStore) -> (monkeyci_eventstore::Cursor, i64) {
    let status = monkeyci_projections::status(store).await.expect("status");
    let builds = status
        .into_iter()
        .find(|s| s.name == "builds")
        .expect("builds checkpoint");
    (builds.checkpoint, builds.events_processed)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_projection_killed_mid_batch_resumes_without_loss_or_double_counting(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let commands = monkeyci_commands::CommandHandler::new(store.clone());
    let workload = run_workload(&commands, 1, 2, 8).await.expect("workload");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");

    // Batches of 25 events: the worker commits two, then dies inside the third.
    let mut worker = Worker::spawn(&pool, &["--stall-builds-at-batch", "3"]);
    worker.expect_lines(&["stalled builds"]).await;
    let before_kill = build_tables(&pool).await;
    worker.kill().await;

    let (_, processed) = builds_checkpoint(&store).await;
    assert_eq!(processed, 50, "two whole batches were committed, the third not at all");
    assert_eq!(build_tables(&pool).await, before_kill, "the killed batch left no trace");

    let core = Core::start(pool.clone()).await.expect("core");
    core.caught_up().await.expect("caught up");
    let (_, processed) = builds_checkpoint(&store).await;
    assert_eq!(processed, total, "every event applied exactly once");
    let builds =
        sqlx::query_as::<_, (String, i64)>("SELECT status, count(*) FROM builds GROUP BY status ORDER BY status")
            .fetch_all(&pool)
            .await
            .expect("builds");
    let retries = workload.failed as i64;
    assert_eq!(
        builds,
        [
            ("canceled".to_owned(), workload.canceled as i64),
            ("failed".to_owned(), workload.failed as i64),
            ("queued".to_owned(), retries),
            ("succeeded".to_owned(), workload.succeeded as i64),
        ]
    );
    let jobs: i64 = sqlx::query_scalar("SELECT sum(jobs_total) FROM builds")
        .fetch_one(&pool)
        .await
        .expect("jobs");
    assert_eq!(jobs, 3 * (workload.succeeded + workload.failed) as i64);

    let recovered = snapshot(&pool).await;
    monkeyci_projections::rebuild(&store, &BuildsProjection)
        .await
        .expect("rebuild");
    core.caught_up().await.expect("caught up after rebuild");
    assert_eq!(snapshot(&pool).await, recovered);
}

#[sqlx::test(migrations = "../migrations")]
async fn one_process_runs_each_projection_and_another_takes_over_when_it_dies(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let commands = monkeyci_commands::CommandHandler::new(store.clone());
    run_workload(&commands, 1, 1, 2).await.expect("workload");

    let mut first = Worker::spawn(&pool, &[]);
    first
        .expect_lines(&["active orgs", "active repos", "active builds"])
        .await;
    let mut second = Worker::spawn(&pool, &[]);
    second
        .expect_lines(&["standby orgs", "standby repos", "standby builds"])
        .await;
    wait_for_checkpoints(&store, &["orgs", "repos", "builds"], Duration::from_secs(30))
        .await
        .expect("first worker catches up");
    let holders: Vec<(String, i64)> = sqlx::query_as(
        "SELECT a.application_name, count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() \
         GROUP BY a.application_name",
    )
    .fetch_all(&pool)
    .await
    .expect("locks");
    let first_name = format!("monkeyci-test-worker-{}", first.child.id().expect("pid"));
    assert_eq!(holders, [(first_name, 3)], "the first process holds all three leases");

    first.kill().await;
    second
        .expect_lines(&["active orgs", "active repos", "active builds"])
        .await;
    run_workload(&commands, 1, 1, 2).await.expect("more work");
    wait_for_checkpoints(&store, &["orgs", "repos", "builds"], Duration::from_secs(30))
        .await
        .expect("second worker catches up");
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
        .fetch_one(&pool)
        .await
        .expect("orgs");
    assert_eq!(orgs, 2);
    second.kill().await;
}
