//! Scenario 4: replaying a large log into a projection after `rebuild()`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use monkeyci_commands::{AddRepo, CommandContext, CommandHandler, CreateOrg};
use monkeyci_domain::{OrgId, RepoId};
use monkeyci_eventstore::{AppendResult, Cursor, EventStore};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::lag::{start_runner, wait_for_checkpoint};
use crate::workload::{self, Generator, LIFECYCLE_LEN};

const ORGS: usize = 10;
const REPOS_PER_ORG: usize = 10;
const LIMIT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct RebuildResult {
    pub events: u64,
    pub builds: u64,
    pub load_writers: usize,
    pub load_seconds: f64,
    /// Every projection replaying the whole log at once, from a fresh start of the runner.
    pub catch_up: Vec<(&'static str, f64)>,
    pub rebuilds: Vec<Rebuilt>,
    /// Rows in `builds` and `jobs` after the rebuild of the builds projection.
    pub build_rows: i64,
    pub job_rows: i64,
}

/// One projection's rebuild while the runner is active and the log is still.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub name: &'static str,
    /// What differs from a plain `rebuild()` under a running runner, if anything.
    pub note: &'static str,
    /// How long `rebuild()` itself took (truncate and checkpoint reset).
    pub call_seconds: f64,
    /// From the start of `rebuild()` until the running worker noticed the moved checkpoint.
    pub noticed_seconds: f64,
    /// From the start of `rebuild()` until the checkpoint reached the head.
    pub total_seconds: f64,
    /// How PostgreSQL read the builds and jobs tables meanwhile.
    pub scans: Scans,
}

/// Sequential and index scans of the builds and jobs tables (from the cumulative statistics,
/// which lag by up to a few seconds), and whether they had planner statistics.
#[derive(Debug, Clone, Default)]
pub struct Scans {
    pub seq_scans: i64,
    pub seq_rows: i64,
    pub idx_scans: i64,
    /// Whether builds had been analyzed (by autovacuum or by hand) when the rebuild started.
    pub analyzed: bool,
}

impl Scans {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let row: (i64, i64, i64, bool) = sqlx::query_as(
            "SELECT COALESCE(sum(seq_scan), 0)::bigint, COALESCE(sum(seq_tup_read), 0)::bigint, \
                    COALESCE(sum(idx_scan), 0)::bigint, \
                    bool_or(relname = 'builds' AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)) \
             FROM pg_stat_user_tables WHERE relname IN ('builds', 'jobs')",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            seq_scans: row.0,
            seq_rows: row.1,
            idx_scans: row.2,
            analyzed: row.3,
        })
    }

    fn since(&self, before: &Scans) -> Scans {
        Scans {
            seq_scans: self.seq_scans - before.seq_scans,
            seq_rows: self.seq_rows - before.seq_rows,
            idx_scans: self.idx_scans - before.idx_scans,
            analyzed: before.analyzed,
        }
    }
}

impl Rebuilt {
    pub fn events_per_s(&self, events: u64) -> f64 {
        events as f64 / self.total_seconds
    }

    pub fn replay_events_per_s(&self, events: u64) -> f64 {
        events as f64 / (self.total_seconds - self.noticed_seconds)
    }
}

pub async fn run(
    pool: &PgPool,
    events: u64,
    load_writers: usize,
    measure_catch_up: bool,
    batch_size: u32,
) -> anyhow::Result<RebuildResult> {
    let store = EventStore::new(pool.clone());
    let repos = create_repos(&store).await?;
    let existing = store.count_after(Cursor::START).await?;
    let builds = events.saturating_sub(existing).div_ceil(LIFECYCLE_LEN as u64);
    eprintln!(
        "  loading {builds} builds ({} events) with {load_writers} writers…",
        builds * 12
    );
    let started = Instant::now();
    load(&store, &repos, builds, load_writers).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let events = store.count_after(Cursor::START).await?;
    let head = store.head().await?;
    eprintln!("  loaded {events} events in {load_seconds:.1} s; head {head}");

    let mut catch_up = Vec::new();
    let started = Instant::now();
    // Every projection the runner runs, not only the three rebuilt below: one left at the start
    // of the log would replay it during the rebuilds and share their two cores.
    let all_names: Vec<&'static str> = monkeyci_projections::all().iter().map(|p| p.name()).collect();
    if !measure_catch_up {
        // The projections start at the head; the rebuilds below replay the whole log anyway.
        for name in all_names.iter().copied() {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, position, events_processed) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET tx = $2, position = $3, events_processed = $4",
            )
            .bind(name)
            .bind(head.tx)
            .bind(head.position)
            .bind(i64::try_from(events).unwrap_or(i64::MAX))
            .execute(pool)
            .await?;
        }
    }
    let handle = start_runner(&store, batch_size).await?;
    if measure_catch_up {
        // A fresh runner replays the whole log into every projection at once.
        let mut waits = JoinSet::new();
        for name in ["builds", "orgs", "repos"] {
            let mut checkpoint = handle.checkpoint(name).context("missing projection")?;
            waits.spawn(async move {
                wait_for_checkpoint(&mut checkpoint, head, LIMIT).await?;
                anyhow::Ok((name, started.elapsed().as_secs_f64()))
            });
        }
        while let Some(joined) = waits.join_next().await {
            catch_up.push(joined.context("a wait panicked")??);
        }
        catch_up.sort_by(|a, b| a.1.total_cmp(&b.1));
        eprintln!("  initial catch-up: {catch_up:?}");
    }
    // Each worker has loaded its checkpoint (the head) before any rebuild is timed.
    for name in all_names.iter().copied() {
        let mut checkpoint = handle.checkpoint(name).context("missing projection")?;
        wait_for_checkpoint(&mut checkpoint, head, LIMIT).await?;
    }

    let projections = monkeyci_projections::all();
    let mut rebuilds = Vec::new();
    let mut counts = (0, 0);
    for name in ["builds", "orgs", "repos"] {
        let projection = projections
            .iter()
            .find(|p| p.name() == name)
            .with_context(|| format!("no projection {name}"))?;
        let mut checkpoint = handle.checkpoint(name).context("missing projection")?;
        checkpoint.borrow_and_update();
        let scans_before = Scans::read(pool).await?;
        let started = Instant::now();
        monkeyci_projections::rebuild(&store, projection.as_ref()).await?;
        let call_seconds = started.elapsed().as_secs_f64();
        // Nothing is appended meanwhile, so the first move of the checkpoint is the worker
        // noticing the rebuild.
        tokio::time::timeout(LIMIT, checkpoint.changed())
            .await
            .context("the rebuild was not noticed")?
            .context("the projection stopped")?;
        let noticed_seconds = started.elapsed().as_secs_f64();
        wait_for_checkpoint(&mut checkpoint, head, LIMIT).await?;
        let total_seconds = started.elapsed().as_secs_f64();
        let rebuilt = Rebuilt {
            name,
            note: "",
            call_seconds,
            noticed_seconds,
            total_seconds,
            scans: Scans::read(pool).await?.since(&scans_before),
        };
        eprintln!("  {rebuilt:?}");
        if name == "builds" {
            counts = (
                sqlx::query_scalar("SELECT count(*) FROM builds")
                    .fetch_one(pool)
                    .await?,
                sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(pool).await?,
            );
        }
        rebuilds.push(rebuilt);
    }
    for status in monkeyci_projections::status(&store).await? {
        if status.checkpoint != head || status.lag_events != 0 {
            eprintln!(
                "  warning: projection {} is at {} with lag {}",
                status.name, status.checkpoint, status.lag_events
            );
        }
    }
    handle.shutdown().await;
    Ok(RebuildResult {
        events,
        builds,
        load_writers,
        load_seconds,
        catch_up,
        rebuilds,
        build_rows: counts.0,
        job_rows: counts.1,
    })
}

/// Orgs and repos made through the command handler, so the orgs and repos projections have
/// something to do.
async fn create_repos(store: &EventStore) -> anyhow::Result<Vec<(OrgId, RepoId)>> {
    let commands = CommandHandler::new(store.clone());
    let ctx = CommandContext::new("user:bench");
    let mut repos = Vec::new();
    for o in 0..ORGS {
        let org_id = commands
            .create_org(
                &ctx,
                CreateOrg {
                    name: format!("Org {o}"),
                    slug: format!("org-{o}"),
                },
            )
            .await?;
        for r in 0..REPOS_PER_ORG {
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
            repos.push((org_id, repo_id));
        }
    }
    Ok(repos)
}

/// Appends `builds` whole builds, one 12-event append per build, from `writers` writers.
async fn load(store: &EventStore, repos: &[(OrgId, RepoId)], builds: u64, writers: usize) -> anyhow::Result<()> {
    if repos.is_empty() {
        bail!("no repos to build");
    }
    let generator = Arc::new(Generator::new()?);
    let next = Arc::new(AtomicU64::new(0));
    let repos: Arc<[(OrgId, RepoId)]> = repos.into();
    let mut tasks = JoinSet::new();
    for _ in 0..writers {
        let (store, generator, next, repos) = (store.clone(), generator.clone(), next.clone(), repos.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= builds {
                    return anyhow::Ok(());
                }
                let (org_id, repo_id) = repos[(i % repos.len() as u64) as usize];
                let script = generator.build(org_id, repo_id, i)?;
                let write = workload::append_of(&script, 0, LIFECYCLE_LEN);
                match store.append(&[write], None).await? {
                    AppendResult::Appended { last: Some(_) } => {}
                    other => bail!("unexpected append result {other:?}"),
                }
                if i > 0 && i.checked_rem(10_000) == Some(0) {
                    eprintln!("    {i} builds");
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a loader panicked")??;
    }
    Ok(())
}
