//! `monkeyci build run`: a local checkout's pipeline, run in place with no server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use monkeyci_commands::JobTransitionInput;
use monkeyci_domain::build::{BuildOutcome, Trigger, TriggerSource};
use monkeyci_domain::pipeline::{self, ArtifactId, Job, PIPELINE_DIR, PIPELINE_FILES};
use monkeyci_domain::{BuildId, GitRef, JobId, OrgId, Params, RefName, RepoId};
use monkeyci_runner::{
    run_pipeline, BuildBlobs, BuildPlan, CancellationToken, JobExecutor, LogItem, LogStream, ScheduleError,
    StepRecorder,
};
use monkeyci_storage::{BlobStore, FsStore, ObjectInfo};
use tokio::sync::mpsc;

/// One line of the summary.
#[derive(Debug)]
struct JobLine {
    id: String,
    status: String,
    started: Option<Instant>,
    seconds: Option<f64>,
    note: String,
}

/// Prints each step as it happens and keeps what the summary needs.
#[derive(Debug, Default)]
struct Console {
    jobs: Mutex<Vec<JobLine>>,
}

impl Console {
    fn set(&self, job: &JobId, status: &str, note: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
            JobTransitionInput::Blocked => ("blocked", "needs approval, which a local run cannot give".to_owned()),
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

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs the pipeline in `dir` (only `job`, if given) and returns whether it succeeded.
pub async fn run(dir: PathBuf, job: Option<String>, parallelism: usize, executor: JobExecutor) -> anyhow::Result<bool> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} is not a directory", dir.display()))?;
    let mut pipeline = load(&dir)?;
    if let Some(job) = job {
        let id = JobId::parse(&job)?;
        pipeline = pipeline.only(&id).with_context(|| {
            let ids: Vec<_> = pipeline.jobs().iter().map(|j| j.id.to_string()).collect();
            format!("the pipeline has no job {job:?}; its jobs are {}", ids.join(", "))
        })?;
    }
    let branch = git(&dir, &["rev-parse", "--abbrev-ref", "HEAD"])
        .filter(|b| b != "HEAD")
        .unwrap_or_else(|| "local".into());
    let commit = git(&dir, &["rev-parse", "HEAD"]).unwrap_or_default();
    let build_id = BuildId::from_uuid(uuid::Uuid::now_v7());
    // Artifacts pass from job to job through a store of this run's own; caches are not kept
    // between local runs.
    let scratch = std::env::temp_dir().join(format!("monkeyci-local-{build_id}"));
    let store: Arc<dyn BlobStore> = Arc::new(FsStore::new(scratch.join("blobs")));
    let blobs = BuildBlobs::new(
        store,
        OrgId::from_uuid(uuid::Uuid::nil()),
        RepoId::from_uuid(uuid::Uuid::nil()),
        build_id,
        scratch.join("archives"),
    )?;
    let plan = BuildPlan {
        build_id,
        pipeline,
        trigger: Trigger {
            source: TriggerSource::Cli,
            git_ref: GitRef::Branch(
                RefName::parse(&branch).unwrap_or_else(|_| RefName::parse("local").expect("valid")),
            ),
            commit: None,
            params: Params::default(),
            push: None,
        },
        commit,
        changed_paths: None,
        checkout: dir,
        secret_env: Default::default(),
        parallelism,
        blobs: Some(blobs),
        job_limits: Default::default(),
    };
    let console = Console::default();
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
    let cancel = CancellationToken::new();
    let on_ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let (_unblock, unblocked) = mpsc::channel(1);
    let started = Instant::now();
    let outcome = run_pipeline(&executor, &console, &plan, logs, unblocked, cancel).await?;
    on_ctrl_c.abort();
    let _ = printer.await;
    let _ = std::fs::remove_dir_all(&scratch);
    summary(&console, outcome, started.elapsed().as_secs_f64());
    Ok(outcome == BuildOutcome::Succeeded)
}

fn summary(console: &Console, outcome: BuildOutcome, seconds: f64) {
    let jobs = console.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
