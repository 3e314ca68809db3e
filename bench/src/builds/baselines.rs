//! The baselines of `build-overhead`: a build's work done without MonkeyCI, the way the
//! server's executors would start it, but with nothing in between.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::IMAGE;

/// Jobs of a build the server runs at once (its default `--parallelism`).
const SERVER_PARALLELISM: usize = 2;

/// The work of a build, done without MonkeyCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Baseline {
    /// All scripts in one `sh -e -c`.
    OneShell,
    /// One `sh -e -c` per script, one after the other.
    Separate,
    /// One `sh -e -c` per script, as many at once as the server runs jobs of a build.
    SeparateInParallel,
    /// Diagnostic: bubblewrap as the server starts it for a job, running `true`, once per job.
    Confined,
    /// `podman run --rm IMAGE true` once per job (with the runtime and ulimits of the server).
    Podman,
    /// The same, as many at once as the server runs jobs of a build.
    PodmanInParallel,
    /// Diagnostic: the podman command the runner issues for a job running `true` (`podman run
    /// --rm` with its flags and the launcher on stdin), once per job.
    PodmanAsRunner,
    /// Diagnostic: the runner's git commands checking out the pipeline's repository.
    Checkout,
}

impl Baseline {
    /// What the report calls it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::OneShell => "one `sh -e -c` running all the scripts",
            Self::Separate => "one `sh -e -c` per job, one after the other",
            Self::SeparateInParallel => "one `sh -e -c` per job, two at a time (the server's parallelism)",
            Self::Confined => {
                "diagnostic: one `bwrap … sh -s` per job as the server confines a job (as root through `setpriv`), \
                 `true` on stdin, one after the other"
            }
            Self::Podman => "one `podman run --rm IMAGE true` per job, one after the other",
            Self::PodmanInParallel => {
                "one `podman run --rm IMAGE true` per job, two at a time (the server's parallelism)"
            }
            Self::PodmanAsRunner => {
                "diagnostic: the runner's podman command per job (`podman run --rm --interactive --name … --pull \
                 missing --security-opt no-new-privileges --label ×4 --mount … IMAGE sh -s`, the launcher on \
                 stdin), one after the other"
            }
            Self::Checkout => "diagnostic: the runner's checkout alone (its 5 git commands, `file://`, depth 1)",
        }
    }

    /// A short name for the overhead table.
    pub(super) fn short(self) -> &'static str {
        match self {
            Self::OneShell => "one `sh -e -c` for all jobs",
            Self::Separate => "`sh -e -c` per job",
            Self::SeparateInParallel => "`sh -e -c` per job, two at a time",
            Self::Confined => "`bwrap` per job (diagnostic)",
            Self::Podman => "`podman run --rm IMAGE true` per job",
            Self::PodmanInParallel => "`podman run --rm IMAGE true` per job, two at a time",
            Self::PodmanAsRunner => "the runner's podman command per job (diagnostic)",
            Self::Checkout => "checkout",
        }
    }

    /// Whether it runs one process (or podman sequence) per job.
    pub(super) fn per_job(self) -> bool {
        !matches!(self, Self::OneShell | Self::Checkout)
    }
}

/// Runs `command` with `stdin` (or none), its output discarded, failing unless it succeeds.
pub(super) fn run_quietly(command: &mut Command, stdin: Option<&[u8]>) -> anyhow::Result<()> {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes)?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{:?} {:?}: {}: {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Makes [`IMAGE`] unless podman has it: `/bin/busybox` (a static build: `busybox-static`)
/// and its applets in `/bin`, imported from a tar of `root` (an empty directory).
pub(super) fn ensure_image(root: &Path) -> anyhow::Result<()> {
    let exists = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run podman (install it: apt-get install podman runc)")?;
    if exists.success() {
        return Ok(());
    }
    eprintln!("  importing {IMAGE} from /bin/busybox");
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox is missing: install busybox-static");
    }
    let bin = root.join("bin");
    for dir in [&bin, &root.join("etc"), &root.join("tmp")] {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(busybox, bin.join("busybox"))?;
    let applets = Command::new(busybox).arg("--list").stdin(Stdio::null()).output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let imported = Command::new("podman")
        .args(["import", "--change", "ENV=PATH=/bin", "-", IMAGE])
        .stdin(tar.stdout.take().context("no output of tar")?)
        .output()?;
    tar.wait()?;
    if !imported.status.success() {
        bail!(
            "podman import of {IMAGE}: {}",
            String::from_utf8_lossy(&imported.stderr).trim()
        );
    }
    Ok(())
}

/// The arguments with which the server's confined executor starts bubblewrap for a job whose
/// checkout is `workspace`: those of `Sandbox::command` in runner/src/host.rs with the server's
/// defaults (the host's network; as root, the job as uid and gid 65534).
pub(super) fn bwrap_args(workspace: &Path) -> anyhow::Result<Vec<OsString>> {
    use std::os::unix::fs::MetadataExt;
    fn words<'a>(items: &'a [&'a str]) -> impl Iterator<Item = OsString> + 'a {
        items.iter().map(OsString::from)
    }
    // `/proc/self` belongs to the process's effective user and group.
    let me = std::fs::metadata("/proc/self")?;
    let root = me.uid() == 0;
    let mut args: Vec<OsString> = words(&[
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "monkeyci-job",
        "--die-with-parent",
        "--new-session",
    ])
    .collect();
    if !root {
        let (uid, gid) = (me.uid().to_string(), me.gid().to_string());
        args.extend(words(&[
            "--unshare-user",
            "--disable-userns",
            "--uid",
            &uid,
            "--gid",
            &gid,
        ]));
    }
    args.extend(words(&["--ro-bind", "/usr", "/usr"]));
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        match std::fs::read_link(top) {
            Ok(target) => args.extend(["--symlink".into(), target.into(), top.into()]),
            Err(_) if Path::new(top).is_dir() => args.extend(words(&["--ro-bind", top, top])),
            Err(_) => {}
        }
    }
    for name in monkeyci_runner::SANDBOX_ETC {
        let path = format!("/etc/{name}");
        args.extend(words(&["--ro-bind-try", &path, &path]));
    }
    args.extend(words(&[
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
    ]));
    args.extend(["--bind".into(), workspace.as_os_str().to_owned(), "/workspace".into()]);
    args.extend(words(&["--chdir", "/workspace", "--clearenv"]));
    for (name, value) in monkeyci_runner::SANDBOX_ENV {
        args.extend(words(&["--setenv", name, value]));
    }
    if root {
        args.extend(words(&[
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]));
    } else {
        args.push("--".into());
    }
    args.extend(words(&["sh", "-s"]));
    Ok(args)
}

/// What the confined executor writes to the job's `sh -s` for a script `true` without
/// variables.
fn launcher() -> Vec<u8> {
    monkeyci_runner::launcher(&Default::default(), &["true".to_owned()])
}

/// What the container executor writes to the container's `sh -s` for a script `true` without
/// variables.
fn container_launcher() -> Vec<u8> {
    monkeyci_runner::container_launcher(&Default::default(), &["true".to_owned()])
}

/// How the podman baselines call podman.
#[derive(Debug, Clone)]
pub(super) struct Podman {
    /// `--runtime …`, if any.
    pub runtime: Option<String>,
    pub ulimits: Vec<String>,
    /// The directory mounted at `/workspace` by the runner's commands.
    pub workspace: PathBuf,
}

impl Podman {
    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        if let Some(runtime) = &self.runtime {
            command.args(["--runtime", runtime]);
        }
        command
    }

    fn ulimit_args(&self) -> Vec<&str> {
        self.ulimits.iter().flat_map(|u| ["--ulimit", u.as_str()]).collect()
    }

    /// `podman run --rm IMAGE true`.
    fn bare(&self) -> anyhow::Result<()> {
        let mut command = self.command();
        command
            .args(["run", "--rm"])
            .args(self.ulimit_args())
            .args([IMAGE, "true"]);
        run_quietly(&mut command, None)
    }

    /// The podman command of `ContainerExecutor` (runner/src/container.rs) for a job running
    /// `true` without limits: `podman run --rm` with the runner's flags and environment in a
    /// fresh working directory, the launcher on stdin.
    fn as_runner(&self, name: &str) -> anyhow::Result<()> {
        let scratch = std::env::temp_dir().join(name);
        std::fs::create_dir(&scratch)?;
        let ran = self.run_as_runner(name, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        ran
    }

    fn run_as_runner(&self, name: &str, scratch: &Path) -> anyhow::Result<()> {
        let mut run = self.command();
        run.env_clear();
        for var in ["PATH", "HOME", "XDG_RUNTIME_DIR", "TMPDIR", "LANG"] {
            if let Some(value) = std::env::var_os(var) {
                run.env(var, value);
            }
        }
        run.current_dir(scratch);
        run.args(["run", "--rm", "--interactive", "--name", name, "--pull", "missing"]);
        run.args(["--security-opt", "no-new-privileges"]);
        for label in ["build", "job", "runner", "installation"] {
            run.args(["--label", &format!("monkeyci.{label}=monkeyci-bench")]);
        }
        run.args(self.ulimit_args());
        run.arg("--mount").arg(format!(
            "type=bind,source={},destination=/workspace",
            self.workspace.display()
        ));
        run.args(["--workdir", "/workspace", IMAGE, "sh", "-s"]);
        run_quietly(&mut run, Some(&container_launcher()))
    }
}

/// The same work without MonkeyCI.
#[derive(Debug, Clone)]
pub(super) struct BaselineWork {
    /// The jobs' scripts (as on the host).
    pub scripts: Vec<String>,
    /// A repository to check out, and where.
    pub repo_url: String,
    pub checkout: PathBuf,
    /// bubblewrap and its arguments, when host jobs are measured.
    pub bwrap: Option<(PathBuf, Vec<OsString>)>,
    /// podman, when container jobs are measured.
    pub podman: Option<Podman>,
}

/// One run of each baseline.
pub(super) type BaselineRun = BTreeMap<Baseline, Duration>;

/// Runs `job(0)` … `job(jobs - 1)` with [`SERVER_PARALLELISM`] running at once, each taking the
/// next job when it is done (as the scheduler fills its slots); the first error, if any.
fn in_parallel(jobs: usize, job: impl Fn(usize) -> anyhow::Result<()> + Sync) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..SERVER_PARALLELISM)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        return Ok(());
                    }
                    job(i)?;
                })
            })
            .collect();
        // The scope waits for every worker, also after the first error.
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().unwrap_or_else(|_| bail!("a baseline thread panicked")))
    })
}

/// How long `work` took.
fn timed(work: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let began = Instant::now();
    work()?;
    Ok(began.elapsed())
}

impl BaselineWork {
    /// Runs each baseline once: the shells, the confined and the container jobs, the checkout.
    fn run(&self) -> anyhow::Result<BaselineRun> {
        let mut run = BaselineRun::new();
        let jobs = self.scripts.len();
        let sh = |script: &str| run_quietly(Command::new("sh").args(["-e", "-c", script]), None);
        run.insert(Baseline::OneShell, timed(|| sh(&self.scripts.join("\n")))?);
        run.insert(
            Baseline::Separate,
            timed(|| self.scripts.iter().try_for_each(|script| sh(script)))?,
        );
        run.insert(
            Baseline::SeparateInParallel,
            timed(|| in_parallel(jobs, |i| sh(&self.scripts[i])))?,
        );
        if let Some((bwrap, args)) = &self.bwrap {
            let confined = || {
                let mut command = Command::new(bwrap);
                command.env_clear().current_dir("/").process_group(0).args(args);
                run_quietly(&mut command, Some(&launcher()))
            };
            run.insert(Baseline::Confined, timed(|| (0..jobs).try_for_each(|_| confined()))?);
        }
        if let Some(podman) = &self.podman {
            run.insert(Baseline::Podman, timed(|| (0..jobs).try_for_each(|_| podman.bare()))?);
            run.insert(
                Baseline::PodmanInParallel,
                timed(|| in_parallel(jobs, |_| podman.bare()))?,
            );
            let as_runner = timed(|| {
                (0..jobs).try_for_each(|i| {
                    let name = format!("monkeyci-bench-{}-{i}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                    podman.as_runner(&name)
                })
            })?;
            run.insert(Baseline::PodmanAsRunner, as_runner);
        }
        run.insert(Baseline::Checkout, timed(|| self.checkout())?);
        Ok(run)
    }

    /// The git commands of runner/src/checkout.rs for a branch without a commit, in a fresh
    /// directory.
    fn checkout(&self) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&self.checkout) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::create_dir_all(&self.checkout)?;
        let steps: [&[&str]; 5] = [
            &["init", "--quiet"],
            &["remote", "add", "origin", &self.repo_url],
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "1",
                "origin",
                "refs/heads/main",
            ],
            &["checkout", "--quiet", "--detach", "FETCH_HEAD"],
            &["rev-parse", "HEAD"],
        ];
        for args in steps {
            let output = Command::new("git")
                .args(args)
                .current_dir(&self.checkout)
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(Stdio::null())
                .output()?;
            if !output.status.success() {
                bail!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
        }
        Ok(())
    }

    pub(super) async fn run_async(&self) -> anyhow::Result<BaselineRun> {
        let baseline = self.clone();
        tokio::task::spawn_blocking(move || baseline.run()).await?
    }
}

/// The first executable file called `name` on `PATH`.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_parallel_runs_every_job_once() -> anyhow::Result<()> {
        let done = std::sync::Mutex::new(Vec::new());
        in_parallel(7, |i| {
            done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(i);
            Ok(())
        })?;
        let mut done = done.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
        done.sort_unstable();
        assert_eq!(done, (0..7).collect::<Vec<_>>());
        assert!(in_parallel(3, |i| if i == 1 { bail!("no") } else { Ok(()) }).is_err());
        Ok(())
    }

    #[test]
    fn the_bwrap_arguments_end_with_the_shell_reading_stdin() -> anyhow::Result<()> {
        let args = bwrap_args(Path::new("/tmp/w"))?;
        let text: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(text[..2], ["--unshare-pid", "--unshare-ipc"]);
        assert_eq!(text[text.len() - 2..], ["sh", "-s"]);
        let bind = text.iter().position(|a| a == "--bind").context("--bind")?;
        assert_eq!(text[bind + 1..bind + 3], ["/tmp/w", "/workspace"]);
        Ok(())
    }
}
