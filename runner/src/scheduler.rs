//! Runs a pipeline as a graph of jobs and records every step in the event log.
//!
//! Jobs start as soon as their dependencies have succeeded, at most `parallelism` at a time. A
//! job whose dependency failed, was skipped or was canceled is skipped; a job whose conditions
//! do not hold is skipped; a `blocked` job waits until somebody unblocks it (or decides it is
//! skipped: see [`Approval`]). A failing job is run again up to its `retries` while it stays
//! "running". Every transition is a command, so the log holds the build's whole history.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::{FuturesUnordered, StreamExt};
use monkeyci_commands::{
    ArchiveJobLog, CommandContext, CommandError, CommandHandler, FinishBuild, JobTransitionInput, QueueJob,
    SaveArtifact, TransitionJob,
};
use monkeyci_domain::build::{BlobRef, BuildEvent, BuildOutcome, Trigger};
use monkeyci_domain::pipeline::{ArtifactId, ConditionContext, Job, Pipeline};
use monkeyci_domain::DomainEvent;
use monkeyci_domain::{BuildId, JobId};
use monkeyci_storage::ObjectInfo;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::blobs::BuildBlobs;
use crate::executor::{Executor, JobLimits, JobOutcome, JobSpec, LogLine, LogStream};

/// Everything needed to run one build's pipeline.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub build_id: BuildId,
    pub pipeline: Pipeline,
    pub trigger: Trigger,
    /// The commit checked out.
    pub commit: String,
    /// Paths changed by the trigger, if known (for `paths` conditions).
    pub changed_paths: Option<Vec<String>>,
    /// The checked-out code; jobs run in it (or in their `work-dir` below it).
    pub checkout: PathBuf,
    /// How many jobs may run at once.
    pub parallelism: usize,
    /// Where artifacts and caches go; without it, jobs that name any fail.
    pub blobs: Option<BuildBlobs>,
    /// The org's parameters for this repo; build parameters override them.
    pub secret_env: BTreeMap<String, String>,
    /// Log limits and the timeout of jobs that set none.
    pub job_limits: JobLimits,
}

/// What the scheduler sends to whoever stores or shows job output.
#[derive(Debug)]
pub enum LogItem {
    /// A line of a job's output.
    Line(JobId, LogLine),
    /// Answer once every line sent before has been stored: a job's end is recorded only after
    /// its output is, so a reader that sees the job ended has every line.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where job output goes.
pub type LogSender = mpsc::Sender<LogItem>;

/// What somebody decided about a blocked job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Let it run once its dependencies have succeeded (the `unblockJob` mutation, a yes at
    /// `monkeyci build run`'s prompt).
    Unblock(JobId),
    /// Never run it: it is skipped with `reason`, and its dependents are skipped after it as
    /// after any job that did not succeed.
    Skip { job: JobId, reason: String },
}

/// The scheduler could not record a step; the build should end as errored.
#[derive(Debug, thiserror::Error)]
#[error("recording {what} of {job} failed")]
pub struct ScheduleError {
    pub job: String,
    pub what: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the scheduler records each step of a build: the event log for builds of the server,
/// the terminal for `monkeyci build run`.
pub trait StepRecorder: Send + Sync {
    /// The job was added to the build.
    fn queued(&self, job: &Job) -> impl Future<Output = Result<(), ScheduleError>> + Send;
    /// The job moved on.
    fn transition(&self, job: &JobId, to: JobTransitionInput)
        -> impl Future<Output = Result<(), ScheduleError>> + Send;
    /// A running job saved an artifact.
    fn artifact_saved(
        &self,
        job: &JobId,
        artifact: &ArtifactId,
        info: &ObjectInfo,
    ) -> impl Future<Output = Result<(), ScheduleError>> + Send;
    /// The job's end is recorded and all its output stored (e.g. to archive the log). This
    /// must return soon: slow work belongs in a task that `finished` waits for.
    fn job_ended(&self, job: &JobId) -> impl Future<Output = ()> + Send {
        let _ = job;
        async {}
    }
    /// The build ended; `message` says why, where the outcome alone does not.
    fn finished(
        &self,
        outcome: BuildOutcome,
        message: Option<String>,
    ) -> impl Future<Output = Result<(), ScheduleError>> + Send;
}

/// Records every step as a command on the build's stream.
#[derive(Debug, Clone)]
pub struct CommandRecorder {
    commands: CommandHandler,
    ctx: CommandContext,
    build_id: BuildId,
    /// Where ended jobs' logs are archived, read from this database.
    log_archive: Option<(monkeyci_projections::ReadModels, BuildBlobs)>,
    /// Logs on their way to blob storage. They are tasks of their own, so that they make
    /// progress (and give back their database connections) while the scheduler waits on
    /// something else; the build is finished only after all of them.
    archiving: Arc<Mutex<JoinSet<()>>>,
}

impl CommandRecorder {
    /// A recorder for `build_id`; with `log_archive`, each ended job's log is stored as a blob.
    pub fn new(
        commands: CommandHandler,
        ctx: CommandContext,
        build_id: BuildId,
        log_archive: Option<(monkeyci_projections::ReadModels, BuildBlobs)>,
    ) -> Self {
        Self {
            commands,
            ctx,
            build_id,
            log_archive,
            archiving: Arc::default(),
        }
    }

    /// Waits until every log archive started so far is stored (or has failed and said so).
    async fn archived(&self) {
        let mut tasks = std::mem::take(&mut *self.archiving.lock().unwrap_or_else(PoisonError::into_inner));
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                tracing::warn!(build = %self.build_id, %error, "a log archive task did not finish");
            }
        }
    }
}

fn failed(job: impl ToString, what: &'static str) -> impl FnOnce(CommandError) -> ScheduleError {
    move |source| ScheduleError {
        job: job.to_string(),
        what,
        source: Box::new(source),
    }
}

impl StepRecorder for CommandRecorder {
    async fn queued(&self, job: &Job) -> Result<(), ScheduleError> {
        let command = QueueJob {
            build_id: self.build_id,
            job_id: job.id.to_string(),
            dependencies: job.dependencies.iter().map(ToString::to_string).collect(),
        };
        self.commands
            .queue_job(&self.ctx, command)
            .await
            .map(|_| ())
            .map_err(failed(&job.id, "queueing"))
    }

    async fn transition(&self, job: &JobId, to: JobTransitionInput) -> Result<(), ScheduleError> {
        let command = TransitionJob {
            build_id: self.build_id,
            job_id: job.to_string(),
            transition: to,
        };
        self.commands
            .transition_job(&self.ctx, command)
            .await
            .map(|_| ())
            .map_err(failed(job, "a transition"))
    }

    async fn artifact_saved(&self, job: &JobId, artifact: &ArtifactId, info: &ObjectInfo) -> Result<(), ScheduleError> {
        let command = SaveArtifact {
            build_id: self.build_id,
            job_id: job.to_string(),
            artifact_id: artifact.to_string(),
            blob: BlobRef {
                key: info.key.to_string(),
                size: info.size,
                sha256: info.sha256.clone(),
            },
        };
        self.commands
            .save_artifact(&self.ctx, command)
            .await
            .map(|_| ())
            .map_err(failed(job, "an artifact"))
    }

    async fn job_ended(&self, job: &JobId) {
        let Some((read, blobs)) = self.log_archive.clone() else {
            return;
        };
        let (commands, ctx, build_id, job) = (self.commands.clone(), self.ctx.clone(), self.build_id, job.clone());
        let task = async move {
            if let Err(error) = archive_log(&commands, &ctx, &read, &blobs, build_id, &job).await {
                tracing::warn!(build = %build_id, %job, %error, "could not archive the job's log");
            }
        };
        self.archiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spawn(task);
    }

    async fn finished(&self, outcome: BuildOutcome, message: Option<String>) -> Result<(), ScheduleError> {
        self.archived().await;
        let finish = FinishBuild {
            build_id: self.build_id,
            outcome,
            message,
        };
        self.commands
            .finish_build(&self.ctx, finish)
            .await
            .map(|_| ())
            .map_err(failed("the build", "the end"))
    }
}

/// Stores a job's whole output in blob storage and records where.
async fn archive_log(
    commands: &CommandHandler,
    ctx: &CommandContext,
    read: &monkeyci_projections::ReadModels,
    blobs: &BuildBlobs,
    build_id: BuildId,
    job: &JobId,
) -> Result<(), String> {
    let (archive, lines) = monkeyci_projections::joblog::job_log_archive(read, build_id.as_uuid(), job.as_str())
        .await
        .map_err(|e| format!("reading the log failed: {e}"))?;
    let key = blobs.log_key(job).map_err(|e| e.to_string())?;
    let info = blobs
        .store()
        .put_bytes(&key, archive)
        .await
        .map_err(|e| e.to_string())?;
    let command = ArchiveJobLog {
        build_id,
        job_id: job.to_string(),
        blob: BlobRef {
            key: info.key.to_string(),
            size: info.size,
            sha256: info.sha256,
        },
        lines,
    };
    // The build's stream is busy while its other jobs run, and an archive is worth waiting for:
    // a command that lost all its races is sent again, after a pause that grows, until the
    // scheduler's own appends leave a gap (at the latest when the last job has ended).
    let mut round = 0u64;
    loop {
        match commands.archive_job_log(ctx, command.clone()).await {
            Ok(_) => return Ok(()),
            Err(CommandError::Conflict { .. }) if round < ARCHIVE_ROUNDS => {
                round += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * round)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// How often an archive that lost every race is sent again (waiting 20 ms, 40 ms, … in between:
/// about 4.5 s in all).
const ARCHIVE_ROUNDS: u64 = 20;

/// How a job ended, with the reason if the outcome alone does not say it.
struct JobEnd {
    outcome: JobOutcome,
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Blocked,
    Running,
    Succeeded,
    /// Failed, but the job may fail without failing the build.
    FailedAllowed,
    Failed,
    Skipped,
    Canceled,
}

impl State {
    fn is_done(self) -> bool {
        !matches!(self, Self::Waiting | Self::Blocked | Self::Running)
    }

    /// Whether dependents may run after this state.
    fn lets_dependents_run(self) -> bool {
        matches!(self, Self::Succeeded | Self::FailedAllowed)
    }
}

/// The environment every job gets, on top of its own `env`.
fn monkeyci_env(plan: &BuildPlan, job: &Job) -> BTreeMap<String, String> {
    let mut env = plan.secret_env.clone();
    env.extend(plan.trigger.params.as_map().clone());
    env.extend(job.env.clone());
    let (branch, tag) = match &plan.trigger.git_ref {
        monkeyci_domain::GitRef::Branch(b) => (Some(b.to_string()), None),
        monkeyci_domain::GitRef::Tag(t) => (None, Some(t.to_string())),
    };
    env.insert("MONKEYCI_BUILD_ID".into(), plan.build_id.to_string());
    // The id the API returns for the build (`Build.id`); its endpoints take either.
    env.insert(
        "MONKEYCI_BUILD_GLOBAL_ID".into(),
        monkeyci_domain::global_id("Build", plan.build_id),
    );
    env.insert("MONKEYCI_JOB_ID".into(), job.id.to_string());
    env.insert("MONKEYCI_COMMIT".into(), plan.commit.clone());
    env.insert(
        "MONKEYCI_REF".into(),
        match (&branch, &tag) {
            (Some(b), _) => format!("refs/heads/{b}"),
            (_, Some(t)) => format!("refs/tags/{t}"),
            _ => String::new(),
        },
    );
    if let Some(branch) = branch {
        env.insert("MONKEYCI_BRANCH".into(), branch);
    }
    if let Some(tag) = tag {
        env.insert("MONKEYCI_TAG".into(), tag);
    }
    env
}

/// Runs the plan's jobs to the end (or until `cancel`), records every step with `recorder`,
/// and finishes the build. What is decided about blocked jobs arrives on `approvals`; while a
/// job is blocked the build waits for it. Returns the build's outcome.
pub async fn run_pipeline<E: Executor, R: StepRecorder>(
    executor: &E,
    rec: &R,
    plan: &BuildPlan,
    logs: LogSender,
    mut approvals: mpsc::Receiver<Approval>,
    cancel: CancellationToken,
) -> Result<BuildOutcome, ScheduleError> {
    let jobs: Vec<&Job> = plan.pipeline.jobs().iter().collect();
    let mut state: HashMap<&JobId, State> = HashMap::new();
    let conditions = ConditionContext::from_trigger(&plan.trigger, plan.changed_paths.as_deref());
    for job in &jobs {
        rec.queued(job).await?;
        if !job.conditions.matches(&conditions) {
            let reason = "its conditions do not hold for this build".to_owned();
            rec.transition(&job.id, JobTransitionInput::Skipped { reason }).await?;
            state.insert(&job.id, State::Skipped);
        } else if job.blocked {
            rec.transition(&job.id, JobTransitionInput::Blocked).await?;
            state.insert(&job.id, State::Blocked);
        } else {
            state.insert(&job.id, State::Waiting);
        }
    }

    let mut running = FuturesUnordered::new();
    let mut canceled = false;
    // The build's own timeout stops its jobs like a cancel, but the build fails.
    let jobs_cancel = cancel.child_token();
    let deadline = plan.pipeline.timeout().map(|t| (t, tokio::time::Instant::now() + t));
    let mut timed_out = None;
    loop {
        // Skip what can no longer run; start what can, within the parallelism limit. Once the
        // build is canceled nothing starts, and finishing it cancels the jobs still open.
        for job in &jobs {
            if state[&job.id] != State::Waiting && state[&job.id] != State::Blocked {
                continue;
            }
            let blocker = job
                .dependencies
                .iter()
                .find(|d| state.get(d).is_some_and(|s| s.is_done() && !s.lets_dependents_run()));
            if let (Some(dep), false) = (blocker, canceled) {
                let reason = format!("dependency {dep} did not succeed");
                rec.transition(&job.id, JobTransitionInput::Skipped { reason }).await?;
                state.insert(&job.id, State::Skipped);
                continue;
            }
            let ready = job
                .dependencies
                .iter()
                .all(|d| state.get(d).is_some_and(|s| s.lets_dependents_run()));
            if ready && state[&job.id] == State::Waiting && running.len() < plan.parallelism.max(1) && !canceled {
                rec.transition(&job.id, JobTransitionInput::Started).await?;
                state.insert(&job.id, State::Running);
                running.push(run_job(executor, rec, plan, job, logs.clone(), jobs_cancel.clone()));
            }
        }
        if running.is_empty() && !state.values().any(|s| *s == State::Blocked && !canceled) {
            break;
        }
        tokio::select! {
            Some((id, end)) = running.next(), if !running.is_empty() => {
                let job = jobs.iter().find(|j| j.id == id).copied();
                let allow_failure = job.is_some_and(|j| j.allow_failure);
                let (transition, next) = match end.outcome {
                    JobOutcome::Succeeded => (JobTransitionInput::Succeeded, State::Succeeded),
                    JobOutcome::Canceled => (JobTransitionInput::Canceled, State::Canceled),
                    failed => {
                        let message = end.message.unwrap_or_else(|| describe(failed));
                        let next = if allow_failure { State::FailedAllowed } else { State::Failed };
                        (JobTransitionInput::Failed { message }, next)
                    }
                };
                rec.transition(&id, transition).await?;
                rec.job_ended(&id).await;
                if let Some(job) = job {
                    state.insert(&job.id, next);
                }
            }
            Some(approval) = approvals.recv() => {
                let id = match &approval {
                    Approval::Unblock(id) | Approval::Skip { job: id, .. } => id,
                };
                // A decision about a job that is no longer blocked (skipped after a failed
                // dependency, or decided twice) changes nothing.
                let Some(job) = jobs.iter().find(|j| j.id == *id && state[&j.id] == State::Blocked) else {
                    continue;
                };
                match approval {
                    Approval::Unblock(_) => {
                        state.insert(&job.id, State::Waiting);
                    }
                    Approval::Skip { reason, .. } => {
                        rec.transition(&job.id, JobTransitionInput::Skipped { reason }).await?;
                        state.insert(&job.id, State::Skipped);
                    }
                }
            }
            () = cancel.cancelled(), if !canceled => canceled = true,
            () = sleep_until(deadline.map(|(_, at)| at)), if !canceled => {
                canceled = true;
                timed_out = deadline.map(|(limit, _)| limit);
                jobs_cancel.cancel();
            }
        }
    }

    let (outcome, message) = match timed_out {
        Some(limit) => {
            // Jobs that never started end as skipped, so that the build can fail.
            let reason = "the build ran out of time".to_owned();
            for job in &jobs {
                if matches!(state[&job.id], State::Waiting | State::Blocked) {
                    let skip = JobTransitionInput::Skipped { reason: reason.clone() };
                    rec.transition(&job.id, skip).await?;
                }
            }
            let message = format!(
                "the build ran longer than its timeout of {}; its running jobs were stopped",
                humantime_secs(limit)
            );
            (BuildOutcome::Failed, Some(message))
        }
        None if canceled => (BuildOutcome::Canceled, None),
        None if state.values().any(|s| *s == State::Failed) => (BuildOutcome::Failed, None),
        None => (BuildOutcome::Succeeded, None),
    };
    rec.finished(outcome, message).await?;
    Ok(outcome)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A duration as a person writes it in a pipeline: `90s`, `5m`, `1h30m`.
fn humantime_secs(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn describe(outcome: JobOutcome) -> String {
    match outcome {
        JobOutcome::Failed {
            exit_code: Some(code), ..
        } => format!("exited with status {code}"),
        JobOutcome::Failed { signal: Some(sig), .. } => format!("killed by signal {sig}"),
        JobOutcome::TimedOut => "ran out of time".into(),
        JobOutcome::OutOfMemory { limit } => {
            format!(
                "ran out of memory: used more than its limit of {}",
                crate::container::bytes(limit)
            )
        }
        _ => "failed".into(),
    }
}

/// Runs one job, again after a failure up to its retries; returns its id and how it ended.
///
/// Before the script: the job's caches and the artifacts it restores are unpacked into the
/// checkout. After a successful script: its artifacts and caches are packed and stored. A
/// missing artifact, or one that cannot be saved, fails the job; a cache never does.
async fn run_job<E: Executor, R: StepRecorder>(
    executor: &E,
    rec: &R,
    plan: &BuildPlan,
    job: &Job,
    logs: LogSender,
    cancel: CancellationToken,
) -> (JobId, JobEnd) {
    let spec = JobSpec {
        build_id: plan.build_id.to_string(),
        job_id: job.id.to_string(),
        script: job.script.clone(),
        env: monkeyci_env(plan, job),
        checkout: plan.checkout.clone(),
        work_dir: job.work_dir.as_ref().map(|dir| dir.as_str().to_owned()),
        image: job.image.clone(),
        resources: job.resources,
        timeout: Some(job.timeout.unwrap_or(plan.job_limits.default_timeout)),
        log_limits: plan.job_limits.logs,
    };
    let (tx, mut rx) = mpsc::channel::<LogLine>(256);
    let id = job.id.clone();
    let forward = {
        let id = id.clone();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if logs.send(LogItem::Line(id.clone(), line)).await.is_err() {
                    return;
                }
            }
            let (stored, flushed) = tokio::sync::oneshot::channel();
            if logs.send(LogItem::Flush(stored)).await.is_ok() {
                let _ = flushed.await;
            }
        })
    };
    let say = |text: String| {
        let tx = tx.clone();
        async move {
            let line = LogLine {
                at: chrono::Utc::now(),
                stream: LogStream::System,
                text,
            };
            let _ = tx.send(line).await;
        }
    };
    let end = match restore_files(plan, job, &say).await {
        Err(message) => {
            say(message.clone()).await;
            JobEnd {
                outcome: FAILED,
                message: Some(message),
            }
        }
        Ok(()) => {
            let end = run_attempts(executor, &spec, job, &tx, &cancel, &say).await;
            match end.outcome {
                JobOutcome::Succeeded => match save_files(rec, plan, job, &say).await {
                    Ok(()) => end,
                    Err(message) => {
                        say(message.clone()).await;
                        JobEnd {
                            outcome: FAILED,
                            message: Some(message),
                        }
                    }
                },
                _ => end,
            }
        }
    };
    drop(tx);
    let _ = forward.await;
    (id, end)
}

const FAILED: JobOutcome = JobOutcome::Failed {
    exit_code: None,
    signal: None,
};

/// Runs the script, and again after a failure up to the job's retries; a job that could not
/// be run at all ends with the reason as its message.
async fn run_attempts<E: Executor, F, Fut>(
    executor: &E,
    spec: &JobSpec,
    job: &Job,
    tx: &mpsc::Sender<LogLine>,
    cancel: &CancellationToken,
    say: &F,
) -> JobEnd
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let attempts = job.retries + 1;
    let mut end = JobEnd {
        outcome: JobOutcome::Canceled,
        message: None,
    };
    for attempt in 1..=attempts {
        if attempt > 1 {
            say(format!("attempt {attempt} of {attempts}")).await;
        }
        end = match executor.run(spec, tx.clone(), cancel.clone()).await {
            Ok(outcome) => JobEnd { outcome, message: None },
            Err(error) => {
                let message = error.to_string();
                say(format!("could not run the job: {message}")).await;
                JobEnd {
                    outcome: FAILED,
                    message: Some(message),
                }
            }
        };
        if matches!(end.outcome, JobOutcome::Succeeded | JobOutcome::Canceled) {
            break;
        }
    }
    end
}

fn no_storage(what: &str, id: &ArtifactId) -> String {
    format!("{what} {id} cannot be used: this runner has no blob storage")
}

/// Unpacks the job's caches and the artifacts it restores into the checkout.
async fn restore_files<F, Fut>(plan: &BuildPlan, job: &Job, say: &F) -> Result<(), String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    for cache in &job.caches {
        let Some(blobs) = &plan.blobs else {
            return Err(no_storage("cache", &cache.id));
        };
        let key = blobs.cache_key(cache.id.as_str()).map_err(|e| e.to_string())?;
        match blobs.restore(&key, &plan.checkout).await {
            Ok(Some(done)) => say(format!("restored cache {} ({} files)", cache.id, done.files)).await,
            Ok(None) => {
                say(format!(
                    "cache {} is empty; it is saved when this job succeeds",
                    cache.id
                ))
                .await
            }
            // A cache is only an optimisation: the job runs without it.
            Err(error) => say(format!("cache {} not restored: {error}", cache.id)).await,
        }
    }
    for artifact in &job.restore_artifacts {
        let Some(blobs) = &plan.blobs else {
            return Err(no_storage("artifact", &artifact.id));
        };
        let key = blobs.artifact_key(artifact.id.as_str()).map_err(|e| e.to_string())?;
        match blobs.restore(&key, &plan.checkout).await {
            Ok(Some(done)) => say(format!("restored artifact {} ({} files)", artifact.id, done.files)).await,
            Ok(None) => {
                return Err(format!(
                    "artifact {} was not saved by an earlier job of this build",
                    artifact.id
                ))
            }
            Err(error) => return Err(format!("restoring artifact {} failed: {error}", artifact.id)),
        }
    }
    Ok(())
}

/// Packs and stores the job's artifacts (recording each) and caches.
async fn save_files<R: StepRecorder, F, Fut>(rec: &R, plan: &BuildPlan, job: &Job, say: &F) -> Result<(), String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    for artifact in &job.save_artifacts {
        let Some(blobs) = &plan.blobs else {
            return Err(no_storage("artifact", &artifact.id));
        };
        let key = blobs.artifact_key(artifact.id.as_str()).map_err(|e| e.to_string())?;
        let (info, packed) = blobs
            .save(&key, &plan.checkout, artifact.path.as_str())
            .await
            .map_err(|e| format!("saving artifact {} failed: {e}", artifact.id))?;
        rec.artifact_saved(&job.id, &artifact.id, &info)
            .await
            .map_err(|e| format!("recording artifact {} failed: {e}", artifact.id))?;
        say(format!(
            "saved artifact {} ({} files, {} bytes compressed)",
            artifact.id, packed.files, info.size
        ))
        .await;
    }
    for cache in &job.caches {
        let Some(blobs) = &plan.blobs else {
            return Err(no_storage("cache", &cache.id));
        };
        let key = blobs.cache_key(cache.id.as_str()).map_err(|e| e.to_string())?;
        match blobs.save(&key, &plan.checkout, cache.path.as_str()).await {
            Ok((info, packed)) => {
                say(format!(
                    "saved cache {} ({} files, {} bytes compressed)",
                    cache.id, packed.files, info.size
                ))
                .await
            }
            Err(error) => say(format!("cache {} not saved: {error}", cache.id)).await,
        }
    }
    Ok(())
}

/// Feeds `JobUnblocked` events of one build, read from the live event feed, to the scheduler.
pub fn unblocked_jobs(
    feed: &monkeyci_eventstore::EventFeed,
    build_id: BuildId,
    after: monkeyci_eventstore::Cursor,
) -> mpsc::Receiver<Approval> {
    let (tx, rx) = mpsc::channel(64);
    let stream_id = format!("build-{build_id}");
    let events = feed.subscribe(after);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(Ok(event)) = events.next().await {
            if event.stream_id != stream_id {
                continue;
            }
            let decoded = BuildEvent::decode(&event.event_type, event.schema_version, &event.data);
            let Ok(BuildEvent::JobUnblocked { job_id }) = decoded else {
                continue;
            };
            if tx.send(Approval::Unblock(job_id)).await.is_err() {
                return;
            }
        }
    });
    rx
}
