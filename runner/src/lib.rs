//! Build execution. So far: [`checkout`] fetches the code a build asks for with git, and an
//! [`Executor`] runs one job's script as real processes, streams its output line by line, and
//! honours cancel and timeouts by stopping the job's whole process group.

mod checkout;
mod executor;
mod local;
mod logs;
mod scheduler;
mod service;

pub use checkout::{checkout, CheckoutError, GitAuth, GitTarget};
pub use executor::{ExecutionError, Executor, JobOutcome, JobSpec, LogLine, LogStream};
pub use local::LocalExecutor;
pub use logs::{read_job_log, write_logs, StoredLine, JOB_LOG_CHANNEL};
pub use scheduler::{
    run_pipeline, unblocked_jobs, BuildPlan, CommandRecorder, LogItem, LogSender, ScheduleError, StepRecorder,
};
pub use service::{Runner, RunnerSettings};
pub use tokio_util::sync::CancellationToken;
