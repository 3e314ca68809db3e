//! How jobs run: the flags shared by `server`, `runner` and `build run`.

use std::time::Duration;

use monkeyci_runner::{ContainerExecutor, HostExecutor, JobExecutor, JobNetwork, JobUser, Sandbox};

/// How jobs without an image run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostMode {
    /// In a bubblewrap sandbox: new PID, mount, IPC and UTS namespaces, only /usr, a few files
    /// of /etc and the build's checkout (at /workspace) visible, as an unprivileged user when
    /// the runner is root. Needs bubblewrap (`bwrap`).
    Confined,
    /// As this process's own user, with its files and its database in reach. Anyone who can
    /// push a pipeline then owns the runner: only for trusted pipelines on a throwaway machine.
    HostUnconfined,
}

/// Which network a job reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// Containers get podman's default network; confined host jobs share the host's.
    Default,
    /// No network at all, but a loopback interface of the job's own.
    None,
}

/// Settings of the executors.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// How jobs without an `image` run. Jobs with an `image` always run in a podman container.
    #[arg(long, env = "MONKEYCI_EXECUTOR", value_enum, default_value_t = HostMode::Confined)]
    executor: HostMode,

    /// The user (UID[:GID]) confined host jobs run as when the runner runs as root.
    #[arg(long, env = "MONKEYCI_JOB_USER", default_value = "65534:65534", value_parser = parse_user)]
    job_user: JobUser,

    /// The network jobs reach.
    #[arg(long, env = "MONKEYCI_JOB_NETWORK", value_enum, default_value_t = Network::Default)]
    job_network: Network,

    /// The podman program that runs container jobs.
    #[arg(long, env = "MONKEYCI_PODMAN", default_value = "podman")]
    podman: std::path::PathBuf,

    /// The OCI runtime podman uses for jobs (`podman --runtime`), e.g. `runc`; podman's
    /// default if not given.
    #[arg(long, env = "MONKEYCI_CONTAINER_RUNTIME")]
    container_runtime: Option<String>,

    /// A resource limit every job container gets (`podman run --ulimit`), e.g.
    /// `nofile=1024:1024`; repeat the flag or separate with commas. Hosts that refuse
    /// podman's default limits need them.
    #[arg(long, env = "MONKEYCI_CONTAINER_ULIMITS", value_delimiter = ',')]
    container_ulimit: Vec<String>,

    /// How long a canceled or timed-out container gets between SIGTERM and SIGKILL, in
    /// milliseconds (whole seconds are used).
    #[arg(long, env = "MONKEYCI_CONTAINER_GRACE_MS", default_value_t = 2000)]
    container_grace_ms: u64,
}

fn parse_user(raw: &str) -> Result<JobUser, String> {
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not a numeric user or group id"))
    };
    let (uid, gid) = match raw.split_once(':') {
        Some((uid, gid)) => (number(uid)?, number(gid)?),
        None => (number(raw)?, number(raw)?),
    };
    if uid == 0 || gid == 0 {
        return Err("jobs must not run as root (uid or gid 0)".into());
    }
    Ok(JobUser { uid, gid })
}

impl ExecutorArgs {
    /// The executors these flags describe; a host executor that cannot confine jobs here says
    /// why in the log at start, and again in the log of every job without an image.
    pub async fn executor(&self, runner_id: &str, installation: &str) -> JobExecutor {
        let network = match self.job_network {
            Network::Default => JobNetwork::Host,
            Network::None => JobNetwork::None,
        };
        let host = match self.executor {
            HostMode::Confined => HostExecutor::confined(Sandbox::detect(self.job_user, network).await),
            HostMode::HostUnconfined => HostExecutor::unconfined(),
        };
        let containers = ContainerExecutor {
            podman: self.podman.clone(),
            runtime: self.container_runtime.clone(),
            ulimits: self.container_ulimit.clone(),
            network: self.job_network == Network::Default,
            grace: Duration::from_millis(self.container_grace_ms),
            ..ContainerExecutor::new(runner_id, installation)
        };
        JobExecutor { host, containers }
    }
}
