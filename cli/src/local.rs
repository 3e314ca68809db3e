//! `monkeyci build run`: a local checkout's pipeline, run in place with no server.
//!
//! It runs the server's scheduler (`run_pipeline`) with the server's executors; what differs is
//! only where things go: steps to the terminal instead of the event log, artifacts to a store of
//! the run's own, caches to a directory kept between runs, and the approval of blocked jobs to a
//! prompt (or a flag) instead of the `unblockJob` mutation.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{bail, Context};
use monkeyci_commands::JobTransitionInput;
use monkeyci_domain::build::{BuildOutcome, Trigger, TriggerSource};
use monkeyci_domain::pipeline::{self, ArtifactId, Job, PIPELINE_DIR, PIPELINE_FILES};
use monkeyci_domain::{BuildId, CommitSha, GitRef, JobId, OrgId, Params, RefName, RepoId};
use monkeyci_runner::{
    changed_paths, run_pipeline, Approval, BuildBlobs, BuildPlan, CancellationToken, JobExecutor, LogItem, LogStream,
    ScheduleError, StepRecorder,
};
use monkeyci_storage::{BlobStore, FsStore, ObjectInfo};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// What a local run does with a job marked `blocked: true`, which on the server waits for the
/// `unblockJob` mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedJobs {
    /// Ask at the terminal; without one (stdin is not a terminal), skip the job.
    Ask,
    /// Run it without asking.
    Approve,
    /// Skip it without asking.
    Skip,
}

/// How a local run ended; each has an exit status of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every job that ran succeeded (or was allowed to fail).
    Succeeded,
    /// A job failed, or the build ran out of time or was canceled.
    Failed,
    /// Nothing failed, but jobs needing approval were skipped (and their dependents with them).
    ApprovalMissing,
}

impl Ended {
    /// The exit status `monkeyci build run` ends with (see its `--help`).
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Succeeded => 0,
            Self::Failed => 1,
            Self::ApprovalMissing => 3,
        }
    }
}

/// What `monkeyci build run` was asked to do.
#[derive(Debug)]
pub struct LocalRun {
    /// The checkout whose pipeline runs (in place).
    pub dir: PathBuf,
    /// Only this job, if given.
    pub job: Option<String>,
    pub parallelism: usize,
    /// Where caches are kept between runs.
    pub cache_dir: PathBuf,
    pub blocked: BlockedJobs,
}

/// `$XDG_CACHE_HOME/monkeyci`, `~/.cache/monkeyci`, or `monkeyci-cache` in the temp dir.
pub fn default_cache_dir() -> PathBuf {
    match (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
        (Some(cache), _) if !cache.is_empty() => PathBuf::from(cache).join("monkeyci"),
        (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".cache/monkeyci"),
        _ => std::env::temp_dir().join("monkeyci-cache"),
    }
}

/// One line of the summary.
#[derive(Debug)]
struct JobLine {
    id: String,
    status: String,
    started: Option<Instant>,
    seconds: Option<f64>,
    note: String,
}

/// Decides about blocked jobs, as a person with the `unblockJob` mutation would on the server,
/// and tells the scheduler.
#[derive(Debug)]
struct Approver {
    policy: BlockedJobs,
    /// Whether there is a person to ask: stdin is a terminal.
    can_ask: bool,
    decisions: mpsc::Sender<Approval>,
    /// Ctrl-C: a question still open is answered "no".
    cancel: CancellationToken,
    /// The jobs skipped for want of approval.
    unapproved: Mutex<Vec<JobId>>,
}

impl Approver {
    /// Decides about `job`, which has just been blocked, and sends the decision. The scheduler
    /// is still queueing jobs then, so the questions come before any job runs.
    async fn decide(&self, job: &JobId) -> Result<(), ScheduleError> {
        let skip = |reason: &str| Approval::Skip {
            job: job.clone(),
            reason: reason.to_owned(),
        };
        let decision = match self.policy {
            BlockedJobs::Approve => {
                println!("=== {job} approved (--approve-blocked)");
                Approval::Unblock(job.clone())
            }
            BlockedJobs::Skip => skip("it needs approval; --skip-blocked skips it"),
            BlockedJobs::Ask if !self.can_ask => {
                skip("it needs approval; skipped in a local run without a terminal (--approve-blocked runs it)")
            }
            BlockedJobs::Ask if self.ask(job).await => {
                println!("=== {job} approved");
                Approval::Unblock(job.clone())
            }
            BlockedJobs::Ask => skip("it needs approval, which was not given at the prompt"),
        };
        if matches!(decision, Approval::Skip { .. }) {
            self.unapproved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(job.clone());
        }
        // The channel holds a decision for every job of the pipeline, so this never waits.
        self.decisions.send(decision).await.map_err(|e| ScheduleError {
            job: job.to_string(),
            what: "an approval",
            source: Box::new(e),
        })
    }

    /// Asks at the terminal whether `job` may run; anything but "y" or "yes" (or Ctrl-C) is no.
    async fn ask(&self, job: &JobId) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        eprint!("job {job} needs approval (blocked: true). Run it? [y/N] ");
        let (answer, answered) = oneshot::channel();
        // A thread of its own, not a task: it may stay blocked on the terminal after Ctrl-C, and
        // nothing waits for it at exit.
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = answer.send(std::io::stdin().read_line(&mut line).map(|_| line));
        });
        tokio::select! {
            line = answered => line.is_ok_and(|line| {
                line.is_ok_and(|l| matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
            }),
            () = self.cancel.cancelled() => {
                eprintln!();
                false
            }
        }
    }
}

/// Prints each step as it happens and keeps what the summary needs.
#[derive(Debug)]
struct Console {
    jobs: Mutex<Vec<JobLine>>,
    approver: Approver,
}

impl Console {
    fn set(&self, job: &JobId, status: &str, note: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = jobs.iter_mut().find(|r| r.id == job.as_str()) {
            row.status = status.to_owned();
            match status {
                "running" => row.started = Some(Instant::now()),
                "succeeded" | "failed" | "canceled" => row.seconds = row.started.map(|t| t.elapsed().as_secs_f64()),
                _ => {}
            }
            row.note = note;
        }
    }
}

impl StepRecorder for Console {
    async fn queued(&self, job: &Job) -> Result<(), ScheduleError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.push(JobLine {
            id: job.id.to_string(),
            status: "queued".into(),
            started: None,
            seconds: None,
            note: String::new(),
        });
        Ok(())
    }

    async fn transition(&self, job: &JobId, to: JobTransitionInput) -> Result<(), ScheduleError> {
        let (status, note) = match to {
            JobTransitionInput::Blocked => ("blocked", "it needs approval".to_owned()),
            JobTransitionInput::Unblocked => ("queued", String::new()),
            JobTransitionInput::Started => ("running", String::new()),
            JobTransitionInput::Succeeded => ("succeeded", String::new()),
            JobTransitionInput::Failed { message } => ("failed", message),
            JobTransitionInput::Skipped { reason } => ("skipped", reason),
            JobTransitionInput::Canceled => ("canceled", String::new()),
        };
        match status {
            "running" => println!("=== {job} started"),
            "queued" => {}
            _ if note.is_empty() => println!("=== {job} {status}"),
            _ => println!("=== {job} {status}: {note}"),
        }
        self.set(job, status, note);
        if status == "blocked" {
            self.approver.decide(job).await?;
        }
        Ok(())
    }

    async fn artifact_saved(&self, job: &JobId, artifact: &ArtifactId, info: &ObjectInfo) -> Result<(), ScheduleError> {
        println!("=== {job} saved artifact {artifact} ({} bytes)", info.size);
        Ok(())
    }

    async fn finished(&self, _outcome: BuildOutcome, message: Option<String>) -> Result<(), ScheduleError> {
        if let Some(message) = message {
            eprintln!("{message}");
        }
        Ok(())
    }
}

/// Reads the pipeline of the checkout in `dir`.
fn load(dir: &Path) -> anyhow::Result<pipeline::Pipeline> {
    for name in PIPELINE_FILES {
        let path = dir.join(PIPELINE_DIR).join(name);
        match std::fs::read_to_string(&path) {
            Ok(contents) => return Ok(pipeline::parse(&format!("{PIPELINE_DIR}/{name}"), &contents)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    bail!(
        "no pipeline in {}: add {PIPELINE_DIR}/{}",
        dir.display(),
        PIPELINE_FILES.join(" or ")
    )
}

/// Runs git in `dir`; its output if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // After a run as root the checkout belongs to the job user, and git reads another user's
    // repository only when told it is safe. These commands only read refs.
    let safe = format!("safe.directory={}", dir.display());
    let output = std::process::Command::new("git")
        .args(["-c", &safe])
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The repo id a local checkout's caches are kept under: one per directory.
fn local_repo_id(dir: &Path) -> RepoId {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    RepoId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// Runs the pipeline of `local.dir` (only its `job`, if given) and says how it ended.
pub async fn run(local: LocalRun, executor: JobExecutor) -> anyhow::Result<Ended> {
    let dir = local
        .dir
        .canonicalize()
        .with_context(|| format!("{} is not a directory", local.dir.display()))?;
    let mut pipeline = load(&dir)?;
    if let Some(job) = local.job {
        let id = JobId::parse(&job)?;
        pipeline = pipeline.only(&id).with_context(|| {
            let ids: Vec<_> = pipeline.jobs().iter().map(|j| j.id.to_string()).collect();
            format!("the pipeline has no job {job:?}; its jobs are {}", ids.join(", "))
        })?;
    }
    let branch = git(&dir, &["rev-parse", "--abbrev-ref", "HEAD"])
        .filter(|b| b != "HEAD")
        .unwrap_or_else(|| "local".into());
    let head = git(&dir, &["rev-parse", "--verify", "HEAD^{commit}"]);
    // `paths` conditions look at what the checked-out commit changed, as on the server; where
    // that is unknown they hold, as they do there.
    let changed = match &head {
        Some(commit) => changed_paths(&dir, commit).await,
        None => None,
    };
    match (&head, &changed) {
        (None, _) => eprintln!(
            "{} is not a git repository with a commit: `paths` conditions hold for every job, as on the server \
             when a build's changed files are unknown",
            dir.display()
        ),
        (Some(commit), None) => eprintln!(
            "git cannot tell which files commit {commit} changed: `paths` conditions hold for every job, as on the \
             server when a build's changed files are unknown"
        ),
        (Some(_), Some(_)) => {}
    }
    let commit = head.unwrap_or_default();
    let build_id = BuildId::from_uuid(uuid::Uuid::now_v7());
    // Artifacts pass from job to job through a store of this run's own; caches are kept in the
    // cache directory under the keys the server uses, with this directory for the repo.
    let scratch = std::env::temp_dir().join(format!("monkeyci-local-{build_id}"));
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(scratch.join("blobs")));
    let caches: Arc<dyn BlobStore> = Arc::new(FsStore::new(local.cache_dir.clone()));
    if pipeline.jobs().iter().any(|j| !j.caches.is_empty()) {
        println!("=== caches are kept in {}", local.cache_dir.display());
    }
    let blobs = BuildBlobs::new(
        store,
        OrgId::from_uuid(uuid::Uuid::nil()),
        local_repo_id(&dir),
        build_id,
        scratch.join("archives"),
    )?
    .with_cache_store(caches);
    let cancel = CancellationToken::new();
    let (decisions, approvals) = mpsc::channel(pipeline.jobs().len().max(1));
    let plan = BuildPlan {
        build_id,
        pipeline,
        trigger: Trigger {
            source: TriggerSource::Cli,
            git_ref: GitRef::Branch(
                RefName::parse(&branch).unwrap_or_else(|_| RefName::parse("local").expect("valid")),
            ),
            commit: CommitSha::parse(&commit).ok(),
            params: Params::default(),
            push: None,
        },
        commit,
        changed_paths: changed,
        checkout: dir,
        secret_env: Default::default(),
        parallelism: local.parallelism,
        blobs: Some(blobs),
        job_limits: Default::default(),
    };
    let console = Console {
        jobs: Mutex::default(),
        approver: Approver {
            policy: local.blocked,
            can_ask: std::io::stdin().is_terminal(),
            decisions,
            cancel: cancel.clone(),
            unapproved: Mutex::default(),
        },
    };
    let (logs, mut lines) = mpsc::channel(1024);
    let printer = tokio::spawn(async move {
        while let Some(item) = lines.recv().await {
            match item {
                LogItem::Line(job, line) if line.stream == LogStream::Stderr => eprintln!("[{job}] {}", line.text),
                LogItem::Line(job, line) => println!("[{job}] {}", line.text),
                LogItem::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    let on_ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let started = Instant::now();
    let outcome = run_pipeline(&executor, &console, &plan, logs, approvals, cancel).await?;
    on_ctrl_c.abort();
    let _ = printer.await;
    let _ = std::fs::remove_dir_all(&scratch);
    summary(&console, outcome, started.elapsed().as_secs_f64());
    let unapproved = console
        .approver
        .unapproved
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(match outcome {
        BuildOutcome::Succeeded if unapproved.is_empty() => Ended::Succeeded,
        BuildOutcome::Succeeded => {
            let ids: Vec<_> = unapproved.iter().map(ToString::to_string).collect();
            println!(
                "not approved, so skipped with their dependents: {} (--approve-blocked runs them)",
                ids.join(", ")
            );
            Ended::ApprovalMissing
        }
        _ => Ended::Failed,
    })
}

fn summary(console: &Console, outcome: BuildOutcome, seconds: f64) {
    let jobs = console.jobs.lock().unwrap_or_else(PoisonError::into_inner);
    let width = jobs.iter().map(|r| r.id.len()).max().unwrap_or(3).max(3);
    println!();
    println!("{:<width$}  {:<9}  {:>8}  note", "job", "status", "seconds");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in jobs.iter() {
        *counts.entry(row.status.as_str()).or_default() += 1;
        let secs = row.seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into());
        println!("{:<width$}  {:<9}  {secs:>8}  {}", row.id, row.status, row.note);
    }
    println!();
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("build {} in {seconds:.1} s ({})", outcome.as_str(), counts.join(", "));
}
