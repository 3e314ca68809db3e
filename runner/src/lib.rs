//! Build execution. This first part holds the executors: an [`Executor`] runs one job's script
//! as real processes, streams its output line by line, and honours cancel and timeouts by
//! stopping the job's whole process group.

mod executor;
mod local;

pub use executor::{ExecutionError, Executor, JobOutcome, JobSpec, LogLine, LogStream};
pub use local::LocalExecutor;
pub use tokio_util::sync::CancellationToken;
