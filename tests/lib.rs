//! Helpers for MonkeyCI's end-to-end tests: a started core on a test database, typed commands,
//! and the worker process used by crash and take-over tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use monkeyci_commands::{CommandContext, CommandHandler};
use monkeyci_eventstore::{EventFeed, EventStore, FeedConfig};
use monkeyci_projections::{Projection, ProjectionRunner, RunnerConfig, RunnerHandle};
use sqlx::PgPool;

/// The URL of the database `pool` is connected to, for child processes.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

/// Runner settings for tests: small batches and quick take-over.
pub fn test_runner_config(batch_size: u32) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        lease_retry: Duration::from_millis(50),
        error_backoff: Duration::from_millis(50),
        idle_poll: Duration::from_millis(200),
    }
}

/// The core of MonkeyCI on one database: event store, feed, command handler and projections.
#[derive(Debug)]
pub struct Core {
    pub store: EventStore,
    pub feed: EventFeed,
    pub commands: CommandHandler,
    pub runner: Option<RunnerHandle>,
}

impl Core {
    /// Starts the core with every projection running in this process.
    pub async fn start(pool: PgPool) -> anyhow::Result<Self> {
        Self::start_with(pool, monkeyci_projections::all(), 500).await
    }

    /// Starts the core with the given projections.
    pub async fn start_with(
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        batch_size: u32,
    ) -> anyhow::Result<Self> {
        let store = EventStore::new(pool);
        let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
        let runner =
            ProjectionRunner::new(store.clone(), feed.clone(), projections, test_runner_config(batch_size)).start();
        Ok(Self {
            commands: CommandHandler::new(store.clone()),
            store,
            feed,
            runner: Some(runner),
        })
    }

    /// Waits until every projection has applied every event committed so far.
    pub async fn caught_up(&self) -> anyhow::Result<()> {
        wait_for_checkpoints(&self.store, &["orgs", "repos", "builds"], Duration::from_secs(30)).await
    }

    /// Stops the projections.
    pub async fn stop(&mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
    }
}

/// The context of a test user.
pub fn user() -> CommandContext {
    CommandContext::new("user:test")
}

/// Waits, up to `limit`, until every projection checkpoint stored in the database has reached
/// the log head: for projections run by other processes.
pub async fn wait_for_checkpoints(store: &EventStore, names: &[&str], limit: Duration) -> anyhow::Result<()> {
    let head = store.head().await?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let statuses = monkeyci_projections::status(store).await?;
        let behind: Vec<_> = names
            .iter()
            .filter(|n| !statuses.iter().any(|s| s.name == **n && s.checkpoint >= head))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("projections {behind:?} did not reach {head} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the whole log from the start once every event committed so far is readable.
///
/// Reading stops at the oldest transaction still writing anywhere in the cluster (other tests'
/// databases included), so a read right after an append may briefly return less; this waits
/// until the reader reaches the head as of the call.
pub async fn read_whole_log(store: &EventStore) -> anyhow::Result<Vec<monkeyci_eventstore::RecordedEvent>> {
    let head = store.head().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut cursor = monkeyci_eventstore::Cursor::START;
    let mut all = Vec::new();
    while cursor < head {
        let page = store.read_all(cursor, 1000).await?;
        match page.last() {
            Some(last) => cursor = last.cursor,
            None if tokio::time::Instant::now() > deadline => bail!("the log did not reach {head} within 30 s"),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        all.extend(page);
    }
    Ok(all)
}

/// Every row of `table`, as JSON, in a stable order: for comparing read models row by row.
pub async fn table_rows(pool: &PgPool, table: &str, order: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(
        sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}"))
            .fetch_all(pool)
            .await?,
    )
}

/// What [`run_workload`] created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Workload {
    pub orgs: usize,
    pub repos: usize,
    pub builds: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub canceled: usize,
}

/// Drives a realistic mix of commands: orgs with repos, builds with three jobs each that
/// succeed, fail or get canceled, and retries of the failed ones.
pub async fn run_workload(
    commands: &CommandHandler,
    orgs: usize,
    repos_per_org: usize,
    builds_per_repo: usize,
) -> anyhow::Result<Workload> {
    use monkeyci_commands::*;
    use monkeyci_domain::build::{BuildOutcome, TriggerSource};

    let ctx = user();
    let mut done = Workload::default();
    for o in 0..orgs {
        let org_id = commands
            .create_org(
                &ctx,
                CreateOrg {
                    name: format!("Org {o}"),
                    slug: format!("org-{o}-{}", uuid::Uuid::now_v7().simple()),
                },
            )
            .await?;
        done.orgs += 1;
        for r in 0..repos_per_org {
            let repo_id = commands
                .add_repo(
                    &ctx,
                    AddRepo {
                        org_id,
                        name: format!("repo {r}"),
                        git_url: format!("https://git.example/org-{o}/repo-{r}.git"),
                        main_branch: None,
                        labels: [("team".to_owned(), format!("t{}", r % 3))].into(),
                    },
                )
                .await?;
            done.repos += 1;
            for b in 0..builds_per_repo {
                let build_id = commands
                    .trigger_build(
                        &ctx,
                        TriggerBuild {
                            repo_id,
                            source: TriggerSource::Api,
                            branch: (b % 2 == 0).then(|| format!("feature/{b}")),
                            tag: None,
                            commit: Some(format!("{:040x}", b + 1)),
                            params: [("N".to_owned(), b.to_string())].into(),
                        },
                    )
                    .await?;
                done.builds += 1;
                let job = |job_id: &str, transition: JobTransitionInput| TransitionJob {
                    build_id,
                    job_id: job_id.into(),
                    transition,
                };
                if b % 4 == 3 {
                    commands.cancel_build(&ctx, CancelBuild { build_id }).await?;
                    done.canceled += 1;
                    continue;
                }
                commands
                    .start_build(
                        &ctx,
                        StartBuild {
                            build_id,
                            runner: "runner-1".into(),
                        },
                    )
                    .await?;
                for (id, deps) in [("compile", vec![]), ("test", vec!["compile"]), ("deploy", vec!["test"])] {
                    commands
                        .queue_job(
                            &ctx,
                            QueueJob {
                                build_id,
                                job_id: id.into(),
                                dependencies: deps.into_iter().map(Into::into).collect(),
                            },
                        )
                        .await?;
                }
                commands
                    .transition_job(&ctx, job("compile", JobTransitionInput::Started))
                    .await?;
                commands
                    .transition_job(&ctx, job("compile", JobTransitionInput::Succeeded))
                    .await?;
                commands
                    .transition_job(&ctx, job("test", JobTransitionInput::Started))
                    .await?;
                let failed = b % 4 == 2;
                let outcome = if failed {
                    commands
                        .transition_job(
                            &ctx,
                            job(
                                "test",
                                JobTransitionInput::Failed {
                                    message: "exit 1".into(),
                                },
                            ),
                        )
                        .await?;
                    commands
                        .transition_job(
                            &ctx,
                            job(
                                "deploy",
                                JobTransitionInput::Skipped {
                                    reason: "test failed".into(),
                                },
                            ),
                        )
                        .await?;
                    BuildOutcome::Failed
                } else {
                    commands
                        .transition_job(&ctx, job("test", JobTransitionInput::Succeeded))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Blocked))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Unblocked))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Started))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Succeeded))
                        .await?;
                    BuildOutcome::Succeeded
                };
                commands
                    .finish_build(
                        &ctx,
                        FinishBuild {
                            build_id,
                            outcome,
                            message: None,
                        },
                    )
                    .await?;
                if failed {
                    done.failed += 1;
                    commands.retry_build(&ctx, RetryBuild { build_id }).await?;
                    done.builds += 1;
                } else {
                    done.succeeded += 1;
                }
            }
        }
    }
    Ok(done)
}

/// The path of the real `monkeyci` binary, built from this workspace on first use.
///
/// `cargo test` builds only test harnesses for packages without integration tests, so the binary
/// is built here with the same cargo and target directory as the tests themselves.
pub fn monkeyci_binary() -> anyhow::Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut dir = std::env::current_exe().map_err(|e| e.to_string())?;
            dir.pop();
            if dir.ends_with("deps") {
                dir.pop();
            }
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "monkeyci", "--bin", "monkeyci"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p monkeyci failed: {status}"));
            }
            Ok(dir.join("monkeyci"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}
