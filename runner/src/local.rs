//! Runs jobs as processes on the host.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecutionError, Executor, JobOutcome, JobSpec, LogLine, LogStream};

/// Variables passed through from the runner's own environment; everything else comes from the
/// job's `env`.
const INHERITED: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

/// Runs each job's script with `sh -e` in its work directory, in a process group of its own so
/// that cancel and timeouts stop everything the job started.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    /// How long a stopped job gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
        }
    }
}

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Canceled,
}

impl Executor for LocalExecutor {
    async fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutionError> {
        if !spec.work_dir.is_dir() {
            return Err(ExecutionError::NoWorkDir(spec.work_dir.clone()));
        }
        if let Some(image) = &spec.image {
            let note = format!("this runner has no container executor: running on the host instead of in {image}");
            let _ = logs.send(system_line(note)).await;
        }
        let mut command = Command::new("sh");
        command
            .arg("-e")
            .arg("-c")
            .arg(spec.script.join("\n"))
            .current_dir(&spec.work_dir)
            .env_clear()
            .envs(INHERITED.iter().filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))))
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(ExecutionError::Spawn)?;
        let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(forward(out, LogStream::Stdout, logs.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(forward(err, LogStream::Stderr, logs.clone())));

        let ended = wait(&mut child, spec.timeout, &cancel).await?;
        // Also stop what the script left running in the background: it belongs to the job.
        self.stop_group(group, &mut child, !matches!(ended, Ended::Exited(_)))
            .await;
        for reader in [stdout, stderr].into_iter().flatten() {
            let _ = reader.await;
        }
        Ok(match ended {
            Ended::Exited(status) if status.success() => JobOutcome::Succeeded,
            Ended::Exited(status) => {
                use std::os::unix::process::ExitStatusExt;
                JobOutcome::Failed {
                    exit_code: status.code(),
                    signal: status.signal(),
                }
            }
            Ended::TimedOut => {
                let _ = logs
                    .send(system_line("the job ran out of time and was stopped".into()))
                    .await;
                JobOutcome::TimedOut
            }
            Ended::Canceled => {
                let _ = logs.send(system_line("the job was canceled and stopped".into())).await;
                JobOutcome::Canceled
            }
        })
    }
}

impl LocalExecutor {
    /// Ends every process of the job's group: politely first if `term`, then for good.
    async fn stop_group(&self, group: Option<Pid>, child: &mut Child, term: bool) {
        let Some(group) = group else { return };
        if term && killpg(group, Signal::SIGTERM).is_ok() {
            // Give the shell a moment to end by itself; its children may linger, so the group
            // is killed below in any case.
            let _ = tokio::time::timeout(self.grace, child.wait()).await;
        }
        // ESRCH (no such group) means everything has already ended.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

async fn wait(
    child: &mut Child,
    timeout: Option<std::time::Duration>,
    cancel: &CancellationToken,
) -> Result<Ended, ExecutionError> {
    let deadline = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => Ok(Ended::Exited(status.map_err(ExecutionError::Wait)?)),
        () = deadline => Ok(Ended::TimedOut),
        () = cancel.cancelled() => Ok(Ended::Canceled),
    }
}

fn system_line(text: String) -> LogLine {
    LogLine {
        at: Utc::now(),
        stream: LogStream::System,
        text,
    }
}

async fn forward(output: impl AsyncRead + Unpin, stream: LogStream, logs: mpsc::Sender<LogLine>) {
    let mut lines = BufReader::new(output).split(b'\n');
    while let Ok(Some(raw)) = lines.next_segment().await {
        let text = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(&raw)).into_owned();
        if logs
            .send(LogLine {
                at: Utc::now(),
                stream,
                text,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}
