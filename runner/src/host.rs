//! Runs jobs without an image as processes on the host: confined by bubblewrap (the default),
//! or as the runner's own user when the operator explicitly asks for it.
//!
//! A confined job runs in new PID, IPC, UTS and mount namespaces: it sees `/usr` and a few
//! files of `/etc` read-only, its own `/proc`, `/dev` and `/tmp`, and its build's checkout at
//! `/workspace`, nothing else of the host. When the runner is root, the job runs as an
//! unprivileged user with no capabilities ([`JobUser`], `nobody` by default); otherwise as the
//! runner's user inside a user namespace. When the script ends (or the job is stopped), the
//! namespace's first process ends and the kernel kills every process left in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecutionError, Executor, JobOutcome, JobSpec, LogLine, WORKSPACE};
use crate::process::{self, launcher, system_line, Ended, Running};

/// The user confined jobs run as when the runner runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobUser {
    pub uid: u32,
    pub gid: u32,
}

impl Default for JobUser {
    /// `nobody`.
    fn default() -> Self {
        Self { uid: 65534, gid: 65534 }
    }
}

/// How a confined job reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobNetwork {
    /// The host's network, loopback included.
    #[default]
    Host,
    /// None: a loopback interface of the job's own.
    None,
}

/// Bubblewrap, ready to confine jobs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    /// The user to become inside, when the runner is root.
    user: Option<JobUser>,
    network: JobNetwork,
}

/// Variables of the runner's own environment an unconfined job gets; everything else comes
/// from the job.
const INHERITED: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

/// The environment of a confined job, before its own.
pub const SANDBOX_ENV: [(&str, &str); 5] = [
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/tmp"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("USER", "job"),
];

/// What of `/etc` a confined job sees (read-only, where the host has it): names, addresses,
/// certificates, the loader's cache and Debian's alternatives, nothing of the host's services.
pub const SANDBOX_ETC: [&str; 19] = [
    "passwd",
    "group",
    "hosts",
    "hostname",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "localtime",
    "os-release",
    "gitconfig",
];

impl Sandbox {
    /// Finds bubblewrap and checks that it confines a process on this machine; the error says
    /// what is missing.
    pub async fn detect(user: JobUser, network: JobNetwork) -> Result<Self, String> {
        let bwrap = find_program("bwrap").ok_or(
            "bubblewrap (bwrap) is not installed; install it (Debian: apt-get install bubblewrap) to run jobs \
             without an image, or start with --executor host-unconfined to run them as the server's own user (unsafe)",
        )?;
        let root = nix::unistd::geteuid().is_root();
        let sandbox = Self {
            bwrap,
            user: root.then_some(user),
            network,
        };
        let probe = tempfile_dir()?;
        let spec = JobSpec {
            build_id: "probe".into(),
            job_id: "probe".into(),
            script: vec!["test \"$(pwd)\" = /workspace".into()],
            env: BTreeMap::new(),
            checkout: probe.clone(),
            work_dir: None,
            image: None,
            resources: Default::default(),
            timeout: None,
            log_limits: Default::default(),
        };
        let output = sandbox
            .command(&spec)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let result = match output {
            Err(e) => Err(format!("cannot start {}: {e}", sandbox.bwrap.display())),
            Ok(mut child) => {
                if let Some(mut stdin) = child.stdin.take() {
                    use tokio::io::AsyncWriteExt;
                    let _ = stdin.write_all(&launcher(&spec.env, &spec.script)).await;
                }
                match child.wait_with_output().await {
                    Ok(out) if out.status.success() => Ok(sandbox),
                    Ok(out) => Err(format!(
                        "bubblewrap cannot confine jobs on this machine ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => Err(format!("bubblewrap did not finish: {e}")),
                }
            }
        };
        let _ = std::fs::remove_dir(&probe);
        result
    }

    /// The command that runs the launcher read from stdin inside the sandbox.
    fn command(&self, spec: &JobSpec) -> Command {
        let mut command = Command::new(&self.bwrap);
        command.env_clear().current_dir("/").process_group(0);
        command.args([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "monkeyci-job",
            "--die-with-parent",
            "--new-session",
        ]);
        if self.network == JobNetwork::None {
            command.arg("--unshare-net");
        }
        if self.user.is_none() {
            // Not root: a user namespace gives bubblewrap its rights, and the job stays the
            // runner's user inside it.
            let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
            command.args([
                "--unshare-user",
                "--disable-userns",
                "--uid",
                &uid.to_string(),
                "--gid",
                &gid.to_string(),
            ]);
        }
        command.args(["--ro-bind", "/usr", "/usr"]);
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            match std::fs::read_link(top) {
                Ok(target) => {
                    command.arg("--symlink").arg(target).arg(top);
                }
                Err(_) if Path::new(top).is_dir() => {
                    command.args(["--ro-bind", top, top]);
                }
                Err(_) => {}
            }
        }
        for name in SANDBOX_ETC {
            let path = format!("/etc/{name}");
            command.args(["--ro-bind-try", &path, &path]);
        }
        command.args([
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
        ]);
        command.arg("--bind").arg(&spec.checkout).arg(WORKSPACE);
        command.args(["--chdir", &spec.inner_work_dir(), "--clearenv"]);
        for (name, value) in SANDBOX_ENV {
            command.args(["--setenv", name, value]);
        }
        if let Some(user) = self.user {
            // bwrap, as root, keeps only the two capabilities setpriv needs to become the job's
            // user; setpriv then drops every capability for good.
            command.args(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", "setpriv"]);
            command.args([
                format!("--reuid={}", user.uid),
                format!("--regid={}", user.gid),
                "--clear-groups".into(),
                "--inh-caps=-all".into(),
                "--bounding-set=-all".into(),
                "--no-new-privs".into(),
            ]);
        } else {
            command.arg("--");
        }
        command.args(["sh", "-s"]);
        command
    }
}

/// A fresh empty directory for the probe job.
fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("monkeyci-probe-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The first executable file called `name` on `PATH`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[derive(Debug, Clone)]
enum Mode {
    Confined(Sandbox),
    /// Confinement was asked for but cannot be had here: jobs without an image fail with this.
    Unavailable(String),
    Unconfined,
}

/// Runs jobs without an image on the host.
#[derive(Debug, Clone)]
pub struct HostExecutor {
    mode: Mode,
    /// How long a stopped unconfined job gets between SIGTERM and SIGKILL (confined jobs are
    /// killed at once: their namespace ends with its first process).
    pub grace: Duration,
}

impl HostExecutor {
    /// Confines jobs with `sandbox`; if it could not be had, jobs without an image fail with
    /// the reason.
    pub fn confined(sandbox: Result<Sandbox, String>) -> Self {
        let mode = match sandbox {
            Ok(sandbox) => Mode::Confined(sandbox),
            Err(reason) => {
                tracing::error!(%reason, "jobs without an image cannot run until this is fixed");
                Mode::Unavailable(reason)
            }
        };
        Self {
            mode,
            grace: Duration::from_secs(5),
        }
    }

    /// Runs jobs as the runner's own user, with its files and (in part) its environment. Logs
    /// a warning: a pipeline then owns the runner.
    pub fn unconfined() -> Self {
        tracing::warn!(
            "--executor host-unconfined: jobs without an image run as this process's own user and can read its \
             files, its database and its keys; anyone who can push a pipeline owns this server"
        );
        Self {
            mode: Mode::Unconfined,
            grace: Duration::from_secs(5),
        }
    }

    /// The user confined jobs run as, when it is not the runner's own.
    pub fn job_user(&self) -> Option<JobUser> {
        match &self.mode {
            Mode::Confined(sandbox) => sandbox.user,
            Mode::Unavailable(_) | Mode::Unconfined => None,
        }
    }
}

impl Executor for HostExecutor {
    async fn run(
        &self,
        spec: &JobSpec,
        logs: mpsc::Sender<LogLine>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutionError> {
        spec.check_work_dir()?;
        let (mut running, confined) = match &self.mode {
            Mode::Unavailable(reason) => return Err(ExecutionError::Unavailable(reason.clone())),
            Mode::Confined(sandbox) => {
                if let Some(user) = sandbox.user {
                    let checkout = spec.checkout.clone();
                    tokio::task::spawn_blocking(move || hand_over(&checkout, user))
                        .await
                        .map_err(|e| ExecutionError::Ownership(std::io::Error::other(e)))?
                        .map_err(ExecutionError::Ownership)?;
                }
                let stdin = launcher(&spec.env, &spec.script);
                (
                    process::start(&mut sandbox.command(spec), "bwrap", Some(stdin), &logs, spec.log_limits)?,
                    true,
                )
            }
            Mode::Unconfined => {
                let mut command = Command::new("sh");
                command
                    .arg("-e")
                    .arg("-c")
                    .arg(spec.script.join("\n"))
                    .current_dir(spec.host_work_dir())
                    .env_clear()
                    .envs(INHERITED.iter().filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))))
                    .envs(&spec.env)
                    .process_group(0);
                (process::start(&mut command, "sh", None, &logs, spec.log_limits)?, false)
            }
        };
        let group = running
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let ended = running.wait(spec.timeout, &cancel).await?;
        let stopped = !matches!(ended, Ended::Exited(_));
        // Also stop what the script left running in the background: it belongs to the job.
        let grace = if confined { Duration::ZERO } else { self.grace };
        stop_group(group, &mut running, stopped, grace).await;
        running.drain().await;
        Ok(outcome(ended, &logs).await)
    }
}

/// The job's outcome; a stopped job also says why in its log.
pub(crate) async fn outcome(ended: Ended, logs: &mpsc::Sender<LogLine>) -> JobOutcome {
    match ended {
        Ended::Exited(status) if status.success() => JobOutcome::Succeeded,
        Ended::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            JobOutcome::Failed {
                exit_code: status.code(),
                signal: status.signal(),
            }
        }
        Ended::TimedOut => {
            let _ = logs.send(system_line("the job ran out of time and was stopped")).await;
            JobOutcome::TimedOut
        }
        Ended::Canceled => {
            let _ = logs.send(system_line("the job was canceled and stopped")).await;
            JobOutcome::Canceled
        }
    }
}

/// Ends every process of the job's group: politely first if `term` and there is a grace
/// time, then for good.
async fn stop_group(group: Option<Pid>, running: &mut Running, term: bool, grace: Duration) {
    let Some(group) = group else { return };
    if term && !grace.is_zero() && killpg(group, Signal::SIGTERM).is_ok() {
        // Give the shell a moment to end by itself; its children may linger, so the group
        // is killed below in any case.
        let _ = tokio::time::timeout(grace, running.child.wait()).await;
    }
    // ESRCH (no such group) means everything has already ended.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = running.child.wait().await;
}

/// Gives the checkout to the job's user: everything in it that another user owns (files
/// the runner checked out or restored, or a container job wrote as root).
///
/// Other jobs of the build may be changing the tree meanwhile, so the walk never follows a
/// symbolic link: every directory is opened relative to its parent with `O_NOFOLLOW`, and
/// every change of owner names an entry of an open directory (`AT_SYMLINK_NOFOLLOW`). A
/// directory swapped for a link halfway is skipped, never entered.
pub(crate) fn hand_over(dir: &Path, user: JobUser) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = nix::dir::Dir::open(dir, flags, Mode::empty())?;
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(user.uid),
        nix::unistd::Gid::from_raw(user.gid),
    );
    nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(&root), Some(uid), Some(gid))?;
    hand_over_entries(root, user, flags)
}

fn hand_over_entries(mut dir: nix::dir::Dir, user: JobUser, flags: nix::fcntl::OFlag) -> std::io::Result<()> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use std::os::fd::AsRawFd;
    let fd = dir.as_raw_fd();
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(user.uid),
        nix::unistd::Gid::from_raw(user.gid),
    );
    for name in names {
        let Ok(stat) = fstatat(Some(fd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue; // gone meanwhile
        };
        if stat.st_uid != user.uid || stat.st_gid != user.gid {
            match nix::unistd::fchownat(
                Some(fd),
                name.as_c_str(),
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            match nix::dir::Dir::openat(Some(fd), name.as_c_str(), flags, Mode::empty()) {
                Ok(child) => hand_over_entries(child, user, flags)?,
                // Replaced by a link or removed since the look: nothing of ours to hand over.
                Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Runs `f` on this thread with the filesystem rights of `user`, then gives the thread back
/// its own. `setfsuid` and `setfsgid` change the calling thread only (they are not broadcast
/// to the process's other threads), and a thread whose filesystem uid is not 0 loses the
/// capabilities that bypass file permissions: whatever `f` opens, creates or follows, it does
/// as that user would.
pub(crate) fn as_user<T>(user: JobUser, f: impl FnOnce() -> T) -> std::io::Result<T> {
    use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
    struct Restore(Uid, Gid);
    impl Drop for Restore {
        fn drop(&mut self) {
            setfsuid(self.0);
            setfsgid(self.1);
        }
    }
    let gid = setfsgid(Gid::from_raw(user.gid));
    let uid = setfsuid(Uid::from_raw(user.uid));
    let _restore = Restore(uid, gid);
    // Both calls answer with the previous id, never an error: an invalid id reads the current.
    let now = setfsuid(Uid::from_raw(u32::MAX));
    if now.as_raw() != user.uid {
        return Err(std::io::Error::other(format!(
            "cannot take the filesystem rights of uid {}",
            user.uid
        )));
    }
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_user_changes_the_file_rights_of_its_own_thread_only() {
        if !nix::unistd::geteuid().is_root() {
            // Only root can take another user's rights, and only as root does the runner.
            return;
        }
        let path = std::env::temp_dir().join(format!("monkeyci-as-user-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "root only").expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");

        // A thread started before: threads copy the rights of the thread that starts them.
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, told) = std::sync::mpsc::channel::<bool>();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                while asked.recv().is_ok() {
                    let _ = tell.send(std::fs::read_to_string(&path).is_ok());
                }
            })
        };
        let (inside, other_thread) = as_user(JobUser::default(), || {
            let inside = std::fs::read_to_string(&path).map_err(|e| e.kind());
            let _ = ask.send(());
            (inside, told.recv().unwrap_or(false))
        })
        .expect("as nobody");
        drop(ask);
        let _ = reader.join();
        let after = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);

        assert_eq!(inside, Err(std::io::ErrorKind::PermissionDenied));
        assert!(other_thread, "another thread kept the runner's rights");
        assert_eq!(after.expect("read after"), "root only");
    }
}
