//! Build execution: the [`Runner`] claims queued builds, [`checkout`] fetches the code a build
//! asks for with git, [`run_pipeline`] runs the job graph, an [`Executor`] runs one job's script
//! as real processes (streaming its output line by line, honouring cancel and timeouts by
//! stopping the job's whole process group), and [`BuildBlobs`] keeps artifacts, caches and
//! archived logs in blob storage.

mod blobs;
mod checkout;
mod executor;
mod local;
mod logs;
mod scheduler;
mod secrets;
mod service;
mod ticker;

pub use blobs::BuildBlobs;
pub use checkout::{checkout, CheckoutError, GitAuth, GitTarget};
pub use executor::{ExecutionError, Executor, JobOutcome, JobSpec, LogLine, LogStream};
pub use local::LocalExecutor;
pub use logs::{read_job_log, render_job_log, write_logs, StoredLine, JOB_LOG_CHANNEL};
pub use scheduler::{
    run_pipeline, unblocked_jobs, BuildPlan, CommandRecorder, LogItem, LogSender, ScheduleError, StepRecorder,
};
pub use service::{Runner, RunnerSettings};
pub use ticker::{Fired, ScheduleTicker};
pub use tokio_util::sync::CancellationToken;
