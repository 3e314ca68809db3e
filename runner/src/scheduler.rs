//! Runs a pipeline as a graph of jobs and records every step in the event log.
//!
//! Jobs start as soon as their dependencies have succeeded, at most `parallelism` at a time. A
//! job whose dependency failed, was skipped or was canceled is skipped; a job whose conditions
//! do not hold is skipped; a `blocked` job waits until somebody unblocks it. A failing job is
//! run again up to its `retries` while it stays "running". Every transition is a command, so the
//! log holds the build's whole history.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;

use futures::stream::{FuturesUnordered, StreamExt};
use monkeyci_commands::{
    CommandContext, CommandError, CommandHandler, FinishBuild, JobTransitionInput, QueueJob, TransitionJob,
};
use monkeyci_domain::build::{BuildOutcome, Trigger};
use monkeyci_domain::pipeline::{ConditionContext, Job, Pipeline};
use monkeyci_domain::{BuildId, JobId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::{Executor, JobOutcome, JobSpec, LogLine, LogStream};

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
    /// The build ended.
    fn finished(&self, outcome: BuildOutcome) -> impl Future<Output = Result<(), ScheduleError>> + Send;
}

/// Records every step as a command on the build's stream.
#[derive(Debug, Clone)]
pub struct CommandRecorder {
    pub commands: CommandHandler,
    pub ctx: CommandContext,
    pub build_id: BuildId,
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

    async fn finished(&self, outcome: BuildOutcome) -> Result<(), ScheduleError> {
        let finish = FinishBuild {
            build_id: self.build_id,
            outcome,
            message: None,
        };
        self.commands
            .finish_build(&self.ctx, finish)
            .await
            .map(|_| ())
            .map_err(failed("the build", "the end"))
    }
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
    let mut env: BTreeMap<String, String> = plan.trigger.params.as_map().clone();
    env.extend(job.env.clone());
    let (branch, tag) = match &plan.trigger.git_ref {
        monkeyci_domain::GitRef::Branch(b) => (Some(b.to_string()), None),
        monkeyci_domain::GitRef::Tag(t) => (None, Some(t.to_string())),
    };
    env.insert("MONKEYCI_BUILD_ID".into(), plan.build_id.to_string());
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
/// and finishes the build. Unblocked job ids arrive on `unblocked`. Returns the build's outcome.
pub async fn run_pipeline<E: Executor, R: StepRecorder>(
    executor: &E,
    rec: &R,
    plan: &BuildPlan,
    logs: LogSender,
    mut unblocked: mpsc::Receiver<JobId>,
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
                running.push(run_job(executor, plan, job, logs.clone(), cancel.clone()));
            }
        }
        if running.is_empty() && !state.values().any(|s| *s == State::Blocked && !canceled) {
            break;
        }
        tokio::select! {
            Some((id, outcome)) = running.next(), if !running.is_empty() => {
                let job = jobs.iter().find(|j| j.id == id).copied();
                let allow_failure = job.is_some_and(|j| j.allow_failure);
                let (transition, next) = match outcome {
                    JobOutcome::Succeeded => (JobTransitionInput::Succeeded, State::Succeeded),
                    JobOutcome::Canceled => (JobTransitionInput::Canceled, State::Canceled),
                    failed => {
                        let message = describe(failed);
                        let next = if allow_failure { State::FailedAllowed } else { State::Failed };
                        (JobTransitionInput::Failed { message }, next)
                    }
                };
                rec.transition(&id, transition).await?;
                if let Some(job) = job {
                    state.insert(&job.id, next);
                }
            }
            Some(id) = unblocked.recv() => {
                if let Some(job) = jobs.iter().find(|j| j.id == id) {
                    if state[&job.id] == State::Blocked {
                        state.insert(&job.id, State::Waiting);
                    }
                }
            }
            () = cancel.cancelled(), if !canceled => canceled = true,
        }
    }

    let outcome = if canceled {
        BuildOutcome::Canceled
    } else if state.values().any(|s| *s == State::Failed) {
        BuildOutcome::Failed
    } else {
        BuildOutcome::Succeeded
    };
    rec.finished(outcome).await?;
    Ok(outcome)
}

fn describe(outcome: JobOutcome) -> String {
    match outcome {
        JobOutcome::Failed {
            exit_code: Some(code), ..
        } => format!("exited with status {code}"),
        JobOutcome::Failed { signal: Some(sig), .. } => format!("killed by signal {sig}"),
        JobOutcome::TimedOut => "ran out of time".into(),
        _ => "failed".into(),
    }
}

/// Runs one job, again after a failure up to its retries; returns its id and final outcome.
async fn run_job<E: Executor>(
    executor: &E,
    plan: &BuildPlan,
    job: &Job,
    logs: LogSender,
    cancel: CancellationToken,
) -> (JobId, JobOutcome) {
    let work_dir = match &job.work_dir {
        Some(dir) => plan.checkout.join(dir.as_str()),
        None => plan.checkout.clone(),
    };
    let spec = JobSpec {
        job_id: job.id.to_string(),
        script: job.script.clone(),
        env: monkeyci_env(plan, job),
        work_dir,
        image: job.image.clone(),
        timeout: job.timeout,
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
    let attempts = job.retries + 1;
    let mut outcome = JobOutcome::Canceled;
    for attempt in 1..=attempts {
        if attempt > 1 {
            let note = format!("attempt {attempt} of {attempts}");
            let _ = tx
                .send(LogLine {
                    at: chrono::Utc::now(),
                    stream: LogStream::System,
                    text: note,
                })
                .await;
        }
        outcome = match executor.run(&spec, tx.clone(), cancel.clone()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                let _ = tx
                    .send(LogLine {
                        at: chrono::Utc::now(),
                        stream: LogStream::System,
                        text: format!("could not run the job: {error}"),
                    })
                    .await;
                JobOutcome::Failed {
                    exit_code: None,
                    signal: None,
                }
            }
        };
        if matches!(outcome, JobOutcome::Succeeded | JobOutcome::Canceled) {
            break;
        }
    }
    drop(tx);
    let _ = forward.await;
    (id, outcome)
}

/// Feeds `JobUnblocked` events of one build, read from the live event feed, to the scheduler.
pub fn unblocked_jobs(
    feed: &monkeyci_eventstore::EventFeed,
    build_id: BuildId,
    after: monkeyci_eventstore::Cursor,
) -> mpsc::Receiver<JobId> {
    let (tx, rx) = mpsc::channel(64);
    let stream_id = format!("build-{build_id}");
    let events = feed.subscribe(after);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(Ok(event)) = events.next().await {
            if event.stream_id != stream_id || event.event_type != "JobUnblocked" {
                continue;
            }
            let Some(job) = event.data.get("job_id").and_then(|v| v.as_str()) else {
                continue;
            };
            let Ok(job) = JobId::parse(job) else { continue };
            if tx.send(job).await.is_err() {
                return;
            }
        }
    });
    rx
}
