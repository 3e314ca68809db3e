use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What to run for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's id in the pipeline, for log messages.
    pub job_id: String,
    /// Shell commands, run in order; the first that fails fails the job.
    pub script: Vec<String>,
    /// Environment variables on top of a minimal inherited set (`PATH`, `HOME`, …).
    pub env: BTreeMap<String, String>,
    /// The directory the script runs in; it must exist.
    pub work_dir: PathBuf,
    /// The container image the job asks for, if any; executors without containers run the
    /// job on the host and say so in its log.
    pub image: Option<String>,
    /// How long the job may run.
    pub timeout: Option<Duration>,
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A line written by MonkeyCI itself (e.g. "running on the host").
    System,
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub stream: LogStream,
    /// The line without its line ending; invalid UTF-8 is replaced.
    pub text: String,
}

/// How a job's processes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every command succeeded.
    Succeeded,
    /// A command failed with this exit code, or was killed by this signal.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The job ran longer than its timeout and was stopped.
    TimedOut,
    /// The job was canceled and stopped.
    Canceled,
}

/// The job could not be run at all.
#[derive(Debug, Error)]
pub enum ExecutionError {
    #[error("work directory {0} does not exist")]
    NoWorkDir(PathBuf),
    #[error("cannot start the job's shell")]
    Spawn(#[source] std::io::Error),
    #[error("lost the job's process")]
    Wait(#[source] std::io::Error),
}

/// Runs jobs. A container executor implements the same trait; the runner does not change.
pub trait Executor: Send + Sync {
    /// Runs `spec`, sending its output to `logs` as it comes, until it ends, times out or
    /// `cancel` fires. Every process the job started is gone when this returns.
    fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<JobOutcome, ExecutionError>> + Send;
}
