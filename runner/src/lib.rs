//! Build execution: the [`Runner`] claims queued builds, [`checkout`] fetches the code a build
//! asks for with git, [`run_pipeline`] runs the job graph, a [`JobExecutor`] runs one job's
//! script isolated (in a podman container for jobs with an image, confined by bubblewrap on the
//! host for the others), streaming its output line by line and stopping every process of the
//! job on cancel and timeouts, and [`BuildBlobs`] keeps artifacts, caches and archived logs in
//! blob storage.

mod blobs;
mod checkout;
mod container;
mod executor;
mod host;
mod logs;
mod process;
mod scheduler;
mod secrets;
mod service;
mod ticker;

pub use blobs::BuildBlobs;
pub use checkout::{changed_paths, checkout, CheckoutError, GitAuth, GitTarget};
pub use container::{ContainerExecutor, BUILD_LABEL, INSTALLATION_LABEL, JOB_LABEL, RUNNER_LABEL};
pub use executor::{
    ExecutionError, Executor, JobExecutor, JobLimits, JobOutcome, JobSpec, Leftover, LogLimits, LogLine, LogStream,
    WORKSPACE,
};
pub use host::{HostExecutor, JobNetwork, JobUser, Sandbox, SANDBOX_ENV, SANDBOX_ETC};
pub use logs::write_logs;
pub use process::{container_launcher, launcher};
pub use scheduler::{
    run_pipeline, unblocked_jobs, Approval, BuildPlan, CommandRecorder, LogItem, LogSender, ScheduleError, StepRecorder,
};
pub use service::{installation_id, Runner, RunnerSettings};
pub use ticker::{Fired, ScheduleTicker};
pub use tokio_util::sync::CancellationToken;
