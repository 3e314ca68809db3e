//! Runs jobs with an `image` in OCI containers through podman.
//!
//! Each job is one `podman run` of its image with the checkout mounted at `/workspace`, the
//! job's limits (`--memory`, `--cpus`, `--arch`) and labels naming its build, job, runner and
//! installation. The script and environment reach the container's `sh` on stdin (see
//! `process::launcher`). The container is removed when the job ends, however it ends; a runner
//! that was killed leaves containers behind, which [`ContainerExecutor::remove_leftovers`]
//! finds by their labels.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecutionError, Executor, JobOutcome, JobSpec, Leftover, LogLine, WORKSPACE};
use crate::host::outcome;
use crate::process::{self, container_launcher, system_line, Ended, OUT_OF_MEMORY_EXIT};

/// The label naming a container's build.
pub const BUILD_LABEL: &str = "monkeyci.build";
/// The label naming a container's job.
pub const JOB_LABEL: &str = "monkeyci.job";
/// The label naming the runner that started a container.
pub const RUNNER_LABEL: &str = "monkeyci.runner";
/// The label naming the installation (the database) whose build a container runs.
pub const INSTALLATION_LABEL: &str = "monkeyci.installation";

/// Runs jobs in containers with podman.
#[derive(Debug, Clone)]
pub struct ContainerExecutor {
    /// The podman program.
    pub podman: PathBuf,
    /// The OCI runtime podman should use (`--runtime`), if not its default.
    pub runtime: Option<String>,
    /// `--ulimit` values every container gets (e.g. `nofile=1024:1024`), for hosts where
    /// podman's defaults cannot be set.
    pub ulimits: Vec<String>,
    /// The runner's name, on every container it starts.
    pub runner_id: String,
    /// The installation's id, on every container; leftovers are looked for among these only.
    pub installation: String,
    /// Whether containers get podman's default network or none.
    pub network: bool,
    /// How long a stopped container gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl ContainerExecutor {
    /// An executor using `podman` from `PATH` with its default runtime and network.
    pub fn new(runner_id: impl Into<String>, installation: impl Into<String>) -> Self {
        Self {
            podman: PathBuf::from("podman"),
            runtime: None,
            ulimits: Vec::new(),
            runner_id: runner_id.into(),
            installation: installation.into(),
            network: true,
            grace: Duration::from_secs(2),
        }
    }

    fn podman(&self) -> Command {
        let mut command = Command::new(&self.podman);
        // podman reads many variables (CONTAINERS_CONF, REGISTRY_AUTH_FILE, …): it gets the
        // runner's own few, never a job's.
        command.env_clear();
        for name in ["PATH", "HOME", "XDG_RUNTIME_DIR", "TMPDIR", "LANG"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        if let Some(runtime) = &self.runtime {
            command.args(["--runtime", runtime]);
        }
        command
    }

    fn run_command(&self, spec: &JobSpec, name: &str, image: &str) -> Result<Command, ExecutionError> {
        let checkout = spec
            .checkout
            .to_str()
            .filter(|p| !p.contains([',', ':']))
            .ok_or_else(|| {
                ExecutionError::Unavailable(format!(
                    "the checkout path {} cannot be mounted into a container (it must be UTF-8 without ',' or ':')",
                    spec.checkout.display()
                ))
            })?;
        let mut command = self.podman();
        // `--rm`: podman removes a container that ended on its own as part of this command,
        // which is faster than a separate `podman rm` after every job.
        command.args(["run", "--rm", "--interactive", "--name", name, "--pull", "missing"]);
        command.args(["--security-opt", "no-new-privileges"]);
        for (label, value) in [
            (BUILD_LABEL, spec.build_id.as_str()),
            (JOB_LABEL, spec.job_id.as_str()),
            (RUNNER_LABEL, self.runner_id.as_str()),
            (INSTALLATION_LABEL, self.installation.as_str()),
        ] {
            command.arg("--label").arg(format!("{label}={value}"));
        }
        for ulimit in &self.ulimits {
            command.args(["--ulimit", ulimit]);
        }
        if !self.network {
            command.args(["--network", "none"]);
        }
        let resources = spec.resources;
        if let Some(bytes) = resources.memory {
            // Swap counts against the same limit, so the limit is what the job can use.
            command.args(["--memory", &bytes.to_string(), "--memory-swap", &bytes.to_string()]);
        }
        if let Some(millicpus) = resources.millicpus {
            command.args(["--cpus", &format!("{}.{:03}", millicpus / 1000, millicpus % 1000)]);
        }
        if let Some(arch) = resources.arch {
            command.args(["--arch", arch.as_oci()]);
        }
        command
            .arg("--mount")
            .arg(format!("type=bind,source={checkout},destination={WORKSPACE}"));
        command.args(["--workdir", &spec.inner_work_dir()]);
        command.args([image, "sh", "-s"]);
        Ok(command)
    }

    /// Stops and removes the container `name`, if it exists.
    async fn remove(&self, name: &str, grace: Duration) {
        let result = self
            .podman()
            .args([
                "rm",
                "--force",
                "--ignore",
                "--time",
                &grace.as_secs().to_string(),
                name,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await;
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                container = name,
                error = %String::from_utf8_lossy(&out.stderr).trim(),
                "could not remove a job's container"
            ),
            Err(error) => tracing::warn!(container = name, %error, "could not run podman rm"),
        }
    }

    /// Runs the container `name` with `command` (a `podman run --rm`) to its end; removes it
    /// itself when it was stopped, timed out or podman failed.
    async fn run_in(
        &self,
        spec: &JobSpec,
        name: &str,
        mut command: Command,
        logs: &mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutionError> {
        let stdin = container_launcher(&spec.env, &spec.script);
        let mut running = match process::start(&mut command, "podman", Some(stdin), logs, spec.log_limits) {
            Err(ExecutionError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(ExecutionError::Unavailable(format!(
                    "this runner cannot run jobs with an image: {} was not found (install podman)",
                    self.podman.display()
                )))
            }
            other => other?,
        };
        let ended = running.wait(spec.timeout, &cancel).await;
        if !matches!(ended, Ok(Ended::Exited(_))) {
            // The podman client only watches the container: stopping the container ends it.
            self.remove(name, self.grace).await;
            if tokio::time::timeout(Duration::from_secs(5), running.child.wait())
                .await
                .is_err()
            {
                let _ = running.child.kill().await;
            }
        }
        let ended = ended?;
        let oom = match (&ended, spec.resources.memory) {
            (Ended::Exited(status), Some(limit)) if status.code() == Some(OUT_OF_MEMORY_EXIT) => Some(limit),
            _ => None,
        };
        let podman_error = matches!(&ended, Ended::Exited(s) if matches!(s.code(), Some(125..=127)))
            .then(|| running.last_stderr())
            .filter(|line| line.starts_with("Error: "));
        if matches!(&ended, Ended::Exited(s) if matches!(s.code(), Some(125..=127) | None)) {
            // podman failed or was killed: it may have left the container behind.
            self.remove(name, Duration::ZERO).await;
        }
        running.drain().await;
        if let Some(message) = podman_error {
            return Err(ExecutionError::Podman(message.trim_start_matches("Error: ").to_owned()));
        }
        if let Some(limit) = oom {
            let message = format!(
                "the job used more than its memory limit of {} and was killed",
                bytes(limit)
            );
            let _ = logs.send(system_line(message)).await;
            return Ok(JobOutcome::OutOfMemory { limit });
        }
        Ok(outcome(ended, logs).await)
    }
}

impl Executor for ContainerExecutor {
    async fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutionError> {
        spec.check_work_dir()?;
        let Some(image) = &spec.image else {
            return Err(ExecutionError::Unavailable("the job has no image".into()));
        };
        let name = format!(
            "monkeyci-{}-{}-{}",
            spec.build_id,
            spec.job_id,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut command = self.run_command(spec, &name, image)?;
        // conmon may leave files (an `oom` marker) in its working directory: one of the job's own.
        let scratch = std::env::temp_dir().join(&name);
        std::fs::create_dir(&scratch).map_err(|e| ExecutionError::Spawn {
            program: format!("podman (cannot create {}: {e})", scratch.display()),
            source: e,
        })?;
        command.current_dir(&scratch);
        let result = self.run_in(spec, &name, command, &logs, cancel).await;
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    async fn leftovers(&self) -> Vec<Leftover> {
        let listed = self
            .podman()
            .args(["ps", "--all", "--filter"])
            .arg(format!("label={INSTALLATION_LABEL}={}", self.installation))
            .args([
                "--format",
                &format!("{{{{.Names}}}}\t{{{{index .Labels \"{BUILD_LABEL}\"}}}}"),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        let listed = match listed {
            Ok(listed) if listed.status.success() => listed,
            Ok(listed) => {
                let error = String::from_utf8_lossy(&listed.stderr);
                tracing::warn!(error = %error.trim(), "could not list job containers");
                return Vec::new();
            }
            // No podman, no containers.
            Err(_) => return Vec::new(),
        };
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(name, build)| Leftover {
                name: name.to_owned(),
                build_id: build.to_owned(),
            })
            .collect()
    }

    async fn remove_leftover(&self, leftover: &Leftover) {
        tracing::warn!(container = %leftover.name, build = %leftover.build_id, "removing the container of a build no runner runs");
        // The scratch directory its podman runs in, which the killed runner never removed.
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&leftover.name));
        self.remove(&leftover.name, Duration::ZERO).await;
    }
}

/// A byte count as a person reads it: `32 MiB`, `2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if n.is_multiple_of(GIB) {
        format!("{} GiB", n / GIB)
    } else if n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}
