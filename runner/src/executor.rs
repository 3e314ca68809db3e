use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use monkeyci_domain::pipeline::Resources;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::container::ContainerExecutor;
use crate::host::{HostExecutor, JobUser};

/// Where a job sees its build's checkout, whatever runs it (but the unconfined host executor,
/// which runs in the checkout itself).
pub const WORKSPACE: &str = "/workspace";

/// What to run for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The build the job belongs to (its containers are labelled with it).
    pub build_id: String,
    /// The job's id in the pipeline.
    pub job_id: String,
    /// Shell commands, run in order by `sh -e`; the first that fails fails the job.
    pub script: Vec<String>,
    /// The job's environment: its own `env`, the build's parameters and `MONKEYCI_*`.
    pub env: BTreeMap<String, String>,
    /// The build's checked-out code; it must exist. Jobs see it at [`WORKSPACE`].
    pub checkout: PathBuf,
    /// Where the script runs, relative to the checkout.
    pub work_dir: Option<String>,
    /// The OCI image to run the job in; without one the job runs on the host.
    pub image: Option<String>,
    /// Limits of a container job.
    pub resources: Resources,
    /// How long the job may run.
    pub timeout: Option<Duration>,
    /// How much of its output is kept.
    pub log_limits: LogLimits,
}

/// How much of a job's output is kept: memory and storage stay bounded whatever a job prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// A longer line is cut at this many bytes; the rest of it is dropped and the cut noted at
    /// its end.
    pub max_line_bytes: usize,
    /// Once a job's kept lines reach this many bytes, the rest of its output is read and
    /// dropped, and a line of MonkeyCI's says so.
    pub max_log_bytes: u64,
}

/// What applies to every job of a runner unless its pipeline says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    pub logs: LogLimits,
    /// The timeout of a job whose pipeline sets none.
    pub default_timeout: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            logs: LogLimits::default(),
            default_timeout: Duration::from_secs(60 * 60),
        }
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            max_log_bytes: 64 * 1024 * 1024,
        }
    }
}

impl JobSpec {
    /// The work directory as the job sees it, below [`WORKSPACE`].
    pub(crate) fn inner_work_dir(&self) -> String {
        match &self.work_dir {
            Some(dir) => format!("{WORKSPACE}/{}", dir.trim_start_matches('/')),
            None => WORKSPACE.to_owned(),
        }
    }

    /// The work directory on the host.
    pub(crate) fn host_work_dir(&self) -> PathBuf {
        match &self.work_dir {
            Some(dir) => self.checkout.join(dir),
            None => self.checkout.clone(),
        }
    }

    /// Refuses a job whose work directory is missing, before anything runs.
    pub(crate) fn check_work_dir(&self) -> Result<(), ExecutionError> {
        let dir = self.host_work_dir();
        if dir.is_dir() {
            Ok(())
        } else {
            Err(ExecutionError::NoWorkDir(dir))
        }
    }
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A line written by MonkeyCI itself (e.g. "the job was canceled").
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
    /// The job used more memory than its limit and was killed.
    OutOfMemory { limit: u64 },
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
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the job's process")]
    Wait(#[source] std::io::Error),
    #[error("cannot hand the job its file ownership")]
    Ownership(#[source] std::io::Error),
    /// The job needs something this runner lacks (podman, bubblewrap).
    #[error("{0}")]
    Unavailable(String),
    /// podman refused or failed to run the container, e.g. an image that cannot be pulled.
    #[error("podman could not run the container: {0}")]
    Podman(String),
}

/// Runs jobs.
pub trait Executor: Send + Sync {
    /// Runs `spec`, sending its output to `logs` as it comes, until it ends, times out or
    /// `cancel` fires. Every process the job started is gone when this returns.
    fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<JobOutcome, ExecutionError>> + Send;

    /// The user jobs' files belong to, when it is not the runner's own: the runner then packs
    /// and unpacks the checkout with that user's rights (see `BuildBlobs::with_owner`).
    fn job_user(&self) -> Option<JobUser> {
        None
    }

    /// What jobs left that can outlive their runner (containers), of every build of this
    /// installation. Executors whose jobs end with the runner have none.
    fn leftovers(&self) -> impl Future<Output = Vec<Leftover>> + Send {
        async { Vec::new() }
    }

    /// Stops and removes a leftover.
    fn remove_leftover(&self, leftover: &Leftover) -> impl Future<Output = ()> + Send {
        let _ = leftover;
        async {}
    }
}

/// Something a job left that can outlive its runner: a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The container's name.
    pub name: String,
    /// The build it belongs to, from its label.
    pub build_id: String,
}

/// The executors of a runner: jobs with an `image` run in containers, the others on the host.
#[derive(Debug, Clone)]
pub struct JobExecutor {
    pub host: HostExecutor,
    pub containers: ContainerExecutor,
}

impl Executor for JobExecutor {
    async fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutionError> {
        match spec.image {
            Some(_) => self.containers.run(spec, logs, cancel).await,
            None => self.host.run(spec, logs, cancel).await,
        }
    }

    fn job_user(&self) -> Option<JobUser> {
        self.host.job_user()
    }

    async fn leftovers(&self) -> Vec<Leftover> {
        self.containers.leftovers().await
    }

    async fn remove_leftover(&self, leftover: &Leftover) {
        self.containers.remove_leftover(leftover).await;
    }
}
