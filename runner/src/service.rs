//! The runner: claims queued builds, checks out their code, runs their pipeline and recovers
//! builds whose runner died.
//!
//! Claiming is the `StartBuild` command: it succeeds only for a queued build and appends with the
//! version it read, so when several runners race for one build exactly one wins. The winner
//! holds a lease in `runner_leases` and renews it while the build runs; any runner that finds an
//! expired lease (or a running build without one) ends that build as errored, naming the runner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use monkeyci_commands::{CommandContext, CommandError, CommandHandler, FinishBuild, RecordCheckout, StartBuild};
use monkeyci_domain::build::{BuildEvent, BuildOutcome, Trigger, TriggerSource};
use monkeyci_domain::pipeline::{self, PIPELINE_DIR, PIPELINE_FILES};
use monkeyci_domain::repo::Repo;
use monkeyci_domain::DomainEvent;
use monkeyci_domain::{BuildId, CommitSha, DomainError, GitRef, OrgId, Params, RefName, RepoId};
use monkeyci_eventstore::{EventFeed, EventStore};
use monkeyci_projections::{queries, BuildRow, ProjectionError, ReadModels, CHECKPOINT_CHANNEL};
use monkeyci_storage::BlobStore;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::blobs::BuildBlobs;
use crate::checkout::{changed_paths, checkout, GitAuth, GitTarget};
use crate::executor::{Executor, JobLimits};
use crate::logs::write_logs;
use crate::scheduler::{run_pipeline, unblocked_jobs, BuildPlan, CommandRecorder};

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// This runner's name in events and leases.
    pub runner_id: String,
    /// Builds are checked out and run below this directory.
    pub workspace_root: PathBuf,
    /// Jobs of one build that may run at once.
    pub parallelism: usize,
    /// Builds this runner runs at once.
    pub max_builds: usize,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the queue and the leases are looked at when nothing wakes the runner.
    pub poll: Duration,
    /// Where artifacts, caches and archived job logs go.
    pub blobs: Arc<dyn BlobStore>,
    /// Opens the org's parameters and ssh keys; without it, builds of repos that have any error.
    pub keys: Option<monkeyci_commands::KeyStore>,
    /// Log limits and the timeout of jobs whose pipeline sets none.
    pub job_limits: JobLimits,
    /// How long a checkout may take.
    pub checkout_timeout: Duration,
}

/// A runner on one database.
#[derive(Debug, Clone)]
pub struct Runner<E> {
    store: EventStore,
    feed: EventFeed,
    commands: CommandHandler,
    executor: E,
    settings: RunnerSettings,
}

impl<E: Executor + Clone + 'static> Runner<E> {
    /// A runner appending to `store`, woken by `feed`.
    pub fn new(store: EventStore, feed: EventFeed, executor: E, settings: RunnerSettings) -> Self {
        Self {
            commands: CommandHandler::new(store.clone()),
            store,
            feed,
            executor,
            settings,
        }
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    fn read(&self) -> ReadModels {
        ReadModels::of(&self.store)
    }

    fn context(&self) -> CommandContext {
        CommandContext::new(format!("runner:{}", self.settings.runner_id))
    }

    /// Checks that builds can run here: the workspace directory can be made, and the user jobs
    /// run as (if not the runner's own) can pass through to it. The error says what to change.
    pub async fn check(&self) -> Result<(), String> {
        let root = self.settings.workspace_root.clone();
        private_dir(&root).map_err(|e| format!("cannot create the workspace {}: {e}", root.display()))?;
        let Some(user) = self.executor.job_user() else {
            return Ok(());
        };
        // A directory as a build's would be: can the job user open it?
        let probe = root.join(format!("probe-{}", Uuid::new_v4()));
        std::fs::create_dir(&probe).map_err(|e| format!("cannot write to the workspace {}: {e}", root.display()))?;
        let target = probe.clone();
        let reached =
            tokio::task::spawn_blocking(move || crate::host::as_user(user, || std::fs::read_dir(&target).is_ok()))
                .await
                .is_ok_and(|reached| reached.unwrap_or(false));
        let _ = std::fs::remove_dir(&probe);
        if reached {
            Ok(())
        } else {
            Err(format!(
                "jobs run as uid {} cannot reach the workspace {}: every directory above it must let others pass \
                 (chmod o+x), or choose another --workspace",
                user.uid,
                root.display()
            ))
        }
    }

    /// Claims and runs builds until `shutdown` fires; running builds are then canceled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut running = tokio::task::JoinSet::new();
        let mut queue_moved = builds_projection_moves(self.read(), shutdown.clone());
        self.remove_leftovers().await;
        loop {
            match self.recover_lost_builds().await {
                Ok(0) => {}
                Ok(_) => self.remove_leftovers().await,
                Err(error) => tracing::warn!(%error, "could not look for builds of lost runners"),
            }
            while running.len() < self.settings.max_builds.max(1) {
                match self.claim().await {
                    Ok(Some(build)) => {
                        let runner = self.clone();
                        let stop = shutdown.child_token();
                        running.spawn(async move { runner.run_build(build, stop).await });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "could not claim a build");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                Ok(()) = queue_moved.changed() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// Takes the oldest queued build another runner has not taken first (from the `builds` read
    /// model, which is why the runner wakes when that projection moves, not when the log does).
    async fn claim(&self) -> Result<Option<BuildRow>, String> {
        let queued = queries::queued_builds(&self.read(), 20)
            .await
            .map_err(|e| e.to_string())?;
        for build in queued {
            let build_id = BuildId::from_uuid(build.id);
            let start = StartBuild {
                build_id,
                runner: self.settings.runner_id.clone(),
            };
            match self.commands.start_build(&self.context(), start).await {
                Ok(_) => {
                    // Without a lease the build is recovered as errored after one lease time.
                    if let Err(error) = self.renew_lease(build_id).await {
                        tracing::warn!(%error, build = %build_id, "could not take the lease");
                    }
                    return Ok(Some(build));
                }
                // Another runner was first, or the build was canceled meanwhile.
                Err(CommandError::Domain(_) | CommandError::Conflict { .. }) => continue,
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(None)
    }

    async fn renew_lease(&self, build_id: BuildId) -> Result<(), sqlx::Error> {
        let ttl = self.settings.lease_ttl.as_secs_f64();
        sqlx::query(
            "INSERT INTO runner_leases (build_id, runner_id, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (build_id) DO UPDATE SET runner_id = $2, expires_at = EXCLUDED.expires_at",
        )
        .bind(build_id.as_uuid())
        .bind(&self.settings.runner_id)
        .bind(ttl)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stops and removes what jobs left behind (containers) of builds without a live lease:
    /// builds that ended, or whose runner was killed.
    async fn remove_leftovers(&self) {
        // Listed before the leases are read: a build takes its lease before it starts any
        // container, so every listed container whose build runs has its lease in the read.
        let leftovers = self.executor.leftovers().await;
        if leftovers.is_empty() {
            return;
        }
        let live: Vec<Uuid> = match sqlx::query_scalar("SELECT build_id FROM runner_leases WHERE expires_at > now()")
            .fetch_all(self.pool())
            .await
        {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!(%error, "could not read the leases; leftover containers stay for now");
                return;
            }
        };
        for leftover in leftovers {
            let running = Uuid::parse_str(&leftover.build_id).is_ok_and(|id| live.contains(&id));
            if !running {
                self.executor.remove_leftover(&leftover).await;
            }
        }
    }

    /// Ends as errored every running build whose runner stopped renewing its lease; returns
    /// how many.
    async fn recover_lost_builds(&self) -> Result<usize, monkeyci_projections::ProjectionError> {
        // The leases first: a build that starts after this read has no lease here but started
        // less than a lease's lifetime ago, so it is not taken for lost.
        let leases: HashMap<Uuid, bool> = sqlx::query_as("SELECT build_id, expires_at < now() FROM runner_leases")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .collect();
        let running = queries::running_builds(&self.read(), self.settings.lease_ttl).await?;
        let lost: Vec<(Uuid, Option<String>)> = running
            .into_iter()
            .filter(|b| leases.get(&b.id).copied().unwrap_or(b.started_long_ago))
            .map(|b| (b.id, b.runner))
            .collect();
        let count = lost.len();
        for (id, runner) in lost {
            let build_id = BuildId::from_uuid(id);
            let runner = runner.unwrap_or_else(|| "unknown".into());
            let message = format!(
                "runner {runner} stopped responding; the build was ended by runner {}",
                self.settings.runner_id
            );
            tracing::warn!(build = %build_id, %runner, "recovering a build of a lost runner");
            let finish = FinishBuild {
                build_id,
                outcome: BuildOutcome::Errored,
                message: Some(message),
            };
            match self.commands.finish_build(&self.context(), finish).await {
                Ok(_) | Err(CommandError::Domain(DomainError::BuildFinished { .. })) => {
                    sqlx::query("DELETE FROM runner_leases WHERE build_id = $1")
                        .bind(id)
                        .execute(self.pool())
                        .await?;
                }
                Err(error) => tracing::warn!(%error, build = %build_id, "could not end a lost build"),
            }
        }
        Ok(count)
    }

    /// Checks out, runs and finishes one claimed build; any failure before the pipeline runs
    /// ends the build as errored with the reason.
    async fn run_build(&self, build: BuildRow, stop: CancellationToken) {
        let build_id = BuildId::from_uuid(build.id);
        let renewing = {
            let runner = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let every = runner.settings.lease_ttl / 3;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(error) = runner.renew_lease(build_id).await {
                        tracing::warn!(%error, build = %build_id, "could not renew the lease");
                    }
                }
            })
        };
        let workspace = self.settings.workspace_root.join(build.id.to_string());
        if let Err(error) = private_dir(&self.settings.workspace_root) {
            tracing::warn!(%error, "cannot make the workspace directory private");
        }
        let cancel = self.watch_cancel(build_id, stop);
        let result = self.prepare_and_run(&build, &workspace, cancel.clone()).await;
        cancel.cancel();
        if let Err((outcome, message)) = result {
            tracing::warn!(build = %build_id, %message, outcome = outcome.as_str(), "build ended before its pipeline ran");
            let finish = FinishBuild {
                build_id,
                outcome,
                message: Some(message),
            };
            if let Err(error) = self.commands.finish_build(&self.context(), finish).await {
                tracing::warn!(%error, build = %build_id, "could not end a build that did not run");
            }
        }
        renewing.abort();
        let _ = sqlx::query("DELETE FROM runner_leases WHERE build_id = $1")
            .bind(build.id)
            .execute(self.pool())
            .await;
        let _ = tokio::fs::remove_dir_all(&workspace).await;
    }

    /// Checks out and runs the build; `cancel` fires when the build is asked to cancel (or the
    /// runner stops). Fails with the outcome and message of a build that ended before or
    /// without a pipeline outcome.
    async fn prepare_and_run(
        &self,
        build: &BuildRow,
        workspace: &Path,
        cancel: CancellationToken,
    ) -> Result<(), (BuildOutcome, String)> {
        let errored = |message: String| (BuildOutcome::Errored, message);
        let build_id = BuildId::from_uuid(build.id);
        // From the repo's stream, not the read model: the `repos` projection may not have
        // reached the repo's creation yet when the `builds` one shows its first build.
        let repo = self
            .commands
            .current::<Repo>(RepoId::from_uuid(build.repo_id))
            .await
            .map_err(|e| errored(format!("reading the repo failed: {e}")))?
            .settings
            .ok_or_else(|| errored("the build's repo does not exist".into()))?;
        let (git_ref, target) = git_target(build).map_err(errored)?;
        let scope = crate::secrets::BuildScope {
            org_id: build.org_id,
            labels: &repo.labels,
            main_branch: &repo.main_branch,
            git_ref: &git_ref,
        };
        let secrets = crate::secrets::load(&self.read(), self.settings.keys.as_ref(), scope)
            .await
            .map_err(errored)?;
        let auth = match &secrets.ssh_key {
            Some(private) => GitAuth {
                ssh_key: Some(write_ssh_key(workspace, private).await.map_err(errored)?),
            },
            None => GitAuth::default(),
        };
        let source = checkout_dir(workspace);
        let limit = self.settings.checkout_timeout;
        let commit = tokio::select! {
            checked_out = checkout(repo.git_url.as_str(), &target, &source, &auth) => {
                checked_out.map_err(|e| errored(format!("checkout failed: {e}")))?
            }
            () = tokio::time::sleep(limit) => {
                let message = format!("checkout failed: it took longer than {} s (--checkout-timeout-secs)", limit.as_secs());
                return Err(errored(message));
            }
            () = cancel.cancelled() => {
                return Err((BuildOutcome::Canceled, "canceled during checkout".into()));
            }
        };
        // What was built is the first fact of an audit: recorded before the pipeline is read, so
        // a build that errors on a broken pipeline still says which commit broke it.
        let checked_out = RecordCheckout {
            build_id,
            commit: commit.clone(),
        };
        self.commands
            .record_checkout(&self.context(), checked_out)
            .await
            .map_err(|e| errored(format!("recording the checked-out commit {commit} failed: {e}")))?;
        let pipeline = load_pipeline(&source).await.map_err(errored)?;
        let trigger = Trigger {
            source: match build.source.as_str() {
                "cli" => TriggerSource::Cli,
                "webhook" => TriggerSource::Webhook,
                "schedule" => TriggerSource::Schedule,
                _ => TriggerSource::Api,
            },
            git_ref,
            commit: CommitSha::parse(&commit).ok(),
            params: Params::parse(build.params.clone()).map_err(|e| errored(e.to_string()))?,
            push: build.push.clone(),
        };
        let blobs = BuildBlobs::new(
            self.settings.blobs.clone(),
            OrgId::from_uuid(build.org_id),
            RepoId::from_uuid(build.repo_id),
            build_id,
            workspace.join("archives"),
        )
        .map_err(|e| errored(e.to_string()))?
        .with_owner(self.executor.job_user());
        // The host's list when it named every changed file, else git's view of the commit.
        let listed = build.push.as_ref().and_then(|p| p.changed_files.clone());
        let changed_paths = match listed {
            Some(files) => Some(files),
            None => changed_paths(&source, &commit).await,
        };
        let plan = BuildPlan {
            build_id,
            pipeline,
            trigger,
            commit,
            changed_paths,
            checkout: source,
            parallelism: self.settings.parallelism,
            blobs: Some(blobs.clone()),
            secret_env: secrets.env,
            job_limits: self.settings.job_limits,
        };

        let head = self.store.readable_head().await.map_err(|e| errored(e.to_string()))?;
        let unblocked = unblocked_jobs(&self.feed, build_id, head);
        let (logs, lines) = mpsc::channel(1024);
        let writer = tokio::spawn(write_logs(self.pool().clone(), build_id, lines, secrets.masker));
        let archive = Some((self.read(), blobs));
        let recorder = CommandRecorder::new(self.commands.clone(), self.context(), build_id, archive);
        let outcome = run_pipeline(&self.executor, &recorder, &plan, logs, unblocked, cancel)
            .await
            .map_err(|e| {
                let mut message = e.to_string();
                if let Some(source) = std::error::Error::source(&e) {
                    message.push_str(&format!(": {source}"));
                }
                errored(message)
            })?;
        let _ = writer.await;
        tracing::info!(build = %build_id, outcome = outcome.as_str(), "build finished");
        Ok(())
    }

    /// A token that fires when the build is asked to cancel (or the runner stops).
    fn watch_cancel(&self, build_id: BuildId, stop: CancellationToken) -> CancellationToken {
        let token = stop.child_token();
        let stream_id = format!("build-{build_id}");
        let read = self.read();
        let feed = self.feed.clone();
        let fire = token.clone();
        tokio::spawn(async move {
            // The request may already be in the read model before this watch starts.
            let requested = queries::build(&read, build_id.as_uuid())
                .await
                .ok()
                .flatten()
                .is_some_and(|b| b.cancel_requested);
            if requested {
                fire.cancel();
                return;
            }
            let events = feed.subscribe(feed.head());
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    () = fire.cancelled() => return,
                    event = futures::StreamExt::next(&mut events) => match event {
                        Some(Ok(e)) if e.stream_id == stream_id
                            && matches!(
                                BuildEvent::decode(&e.event_type, e.schema_version, &e.data),
                                Ok(BuildEvent::BuildCancelRequested)
                            ) =>
                        {
                            fire.cancel();
                            return;
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
        token
    }
}

fn checkout_dir(workspace: &Path) -> PathBuf {
    workspace.join("src")
}

fn git_target(build: &BuildRow) -> Result<(GitRef, GitTarget), String> {
    let name = RefName::parse(&build.ref_name).map_err(|e| e.to_string())?;
    let commit = build.commit_sha.clone();
    Ok(match build.ref_kind.as_str() {
        "tag" => (
            GitRef::Tag(name.clone()),
            GitTarget::Tag {
                name: name.to_string(),
                commit,
            },
        ),
        _ => (
            GitRef::Branch(name.clone()),
            GitTarget::Branch {
                name: name.to_string(),
                commit,
            },
        ),
    })
}

/// Reads and parses the first pipeline file found in `.monkeyci/`.
async fn load_pipeline(source: &Path) -> Result<pipeline::Pipeline, String> {
    let dir = source.join(PIPELINE_DIR);
    for name in PIPELINE_FILES {
        let path = dir.join(name);
        match tokio::fs::read_to_string(&path).await {
            Ok(contents) => {
                return pipeline::parse(&format!("{PIPELINE_DIR}/{name}"), &contents).map_err(|e| e.to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {PIPELINE_DIR}/{name}: {e}")),
        }
    }
    Err(format!(
        "no pipeline found: add {PIPELINE_DIR}/{} to the repository",
        PIPELINE_FILES.join(" or ")
    ))
}

/// This database's id (see the `installation` table), which the runner's containers carry.
pub async fn installation_id(pool: &PgPool) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM installation").fetch_one(pool).await
}

/// Changes each time the `builds` projection moves its checkpoint, whichever process runs it:
/// only then can a newly queued build be in `queued_builds`. The poll in `Runner::run` covers
/// the moments without a listener (the connection dropped and was not yet back).
fn builds_projection_moves(read: ReadModels, shutdown: CancellationToken) -> tokio::sync::watch::Receiver<()> {
    let (moved, receiver) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => return,
                () = moved.closed() => return,
                Err(error) = announce_builds_moves(&read, &moved) => error,
            };
            tracing::warn!(%error, "lost the checkpoint listener; polling until it is back");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    receiver
}

async fn announce_builds_moves(
    read: &ReadModels,
    moved: &tokio::sync::watch::Sender<()>,
) -> Result<std::convert::Infallible, ProjectionError> {
    let mut listener = read.listen(CHECKPOINT_CHANNEL).await?;
    loop {
        if listener.recv().await?.starts_with("builds ") {
            moved.send_replace(());
        }
    }
}

/// Makes `dir` (and missing parents) and lets only this user list it: builds' checkouts and
/// keys are below it. Others may pass through (the job user packs and unpacks checkouts with
/// its own rights), but only to a path they know, and build ids are not guessed.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

/// Writes the build's ssh key where only this user can read it, outside the checkout.
async fn write_ssh_key(workspace: &Path, private: &str) -> Result<PathBuf, String> {
    use tokio::io::AsyncWriteExt;
    let dir = workspace.join("ssh");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("id");
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await
        .map_err(|e| format!("cannot write the ssh key: {e}"))?;
    let mut text = private.trim_end().to_owned();
    text.push('\n');
    file.write_all(text.as_bytes())
        .await
        .map_err(|e| format!("cannot write the ssh key: {e}"))?;
    Ok(path)
}
