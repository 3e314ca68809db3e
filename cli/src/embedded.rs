//! The PostgreSQL cluster MonkeyCI runs for itself when no database is configured and nothing
//! answers on the default address: made with the machine's `initdb` under
//! `<data dir>/postgres`, reachable only through a Unix socket in that directory (no TCP port),
//! run by `pg_ctl`, and stopped when the last MonkeyCI process using it ends.
//!
//! Two `flock` locks in the data directory keep count. Each process using the cluster holds a
//! shared lock on `postgres.lock` until it ends. Making, starting and stopping happen under an
//! exclusive lock on `postgres.control.lock`, held only meanwhile: a process takes it, makes and
//! starts the cluster if need be, takes its share and lets it go; on the way out it takes it
//! again and stops the cluster only if it can turn its share into an exclusive lock, that is if
//! no other process holds one. The kernel drops the locks of a process that dies, so a cluster
//! left running by a killed server is stopped by the last process that uses it after that.
//!
//! `initdb` and `postgres` refuse to run as root, so as root the cluster belongs to, and runs
//! as, the unprivileged user `postgres` (or `nobody` where there is none).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// What to install when no PostgreSQL server programs are found.
const INSTALL_HINT: &str =
    "install PostgreSQL's server programs (Debian/Ubuntu: `apt-get install postgresql`; Fedora: \
     `dnf install postgresql-server`; macOS: `brew install postgresql`), or point MonkeyCI at a database with \
     --database-url / MONKEYCI_DATABASE_URL";

/// The longest path of a Unix socket (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The embedded cluster of a data directory.
#[derive(Debug)]
pub struct Embedded {
    /// `<data dir>/postgres`: the socket, the server's log and `data/`.
    dir: PathBuf,
    bin: PathBuf,
    /// Whom the cluster's programs run as, when this process is root.
    owner: Option<Owner>,
    /// `<data dir>/postgres.lock`, locked shared while this process uses the cluster; `None`
    /// once this process has left it.
    users: Option<std::fs::File>,
    /// `<data dir>/postgres.control.lock`.
    control: PathBuf,
}

#[derive(Debug, Clone)]
struct Owner {
    name: String,
    uid: u32,
    gid: u32,
}

impl Embedded {
    /// The directory of the embedded cluster of `data_dir`.
    pub fn dir_of(data_dir: &Path) -> PathBuf {
        data_dir.join("postgres")
    }

    /// Whether `data_dir` holds an embedded cluster.
    pub fn exists(data_dir: &Path) -> bool {
        Self::dir_of(data_dir).join("data/PG_VERSION").is_file()
    }

    /// Makes the cluster if `create` and it does not exist yet, and starts it unless it runs
    /// already; progress goes to stderr.
    /// `bin` is where PostgreSQL's programs are (found if not given).
    pub fn start(data_dir: &Path, bin: Option<PathBuf>, create: bool) -> anyhow::Result<Self> {
        let dir = Self::dir_of(data_dir);
        let socket = dir.join(".s.PGSQL.5432");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the embedded PostgreSQL's socket would be {} ({} bytes; a Unix socket path has at most {}): use a \
                 shorter data directory (--data-dir / MONKEYCI_DATA_DIR)",
                socket.display(),
                socket.as_os_str().len(),
                MAX_SOCKET_PATH
            );
        }
        let bin = server_programs(bin).ok_or_else(|| anyhow::anyhow!("no PostgreSQL server programs (initdb, pg_ctl, postgres) in --postgres-bin, on PATH or under /usr/lib/postgresql/*/bin: {INSTALL_HINT}"))?;
        let owner = if running_as_root() {
            Some(unprivileged_owner()?)
        } else {
            None
        };
        if !Self::exists(data_dir) && !create {
            bail!(
                "no database is configured, nothing answers on the default address, and {} holds no embedded \
                 PostgreSQL: start `monkeyci server` once (it makes one), or set --database-url / \
                 MONKEYCI_DATABASE_URL",
                data_dir.display()
            );
        }
        let control = data_dir.join("postgres.control.lock");
        let held = hold(&control)?;
        let users = lock_file(&data_dir.join("postgres.lock"))?;
        let mut cluster = Self {
            dir,
            bin,
            owner,
            users: None,
            control,
        };
        if !Self::exists(data_dir) {
            cluster.create()?;
        }
        if !cluster.running() {
            eprintln!("starting the embedded PostgreSQL in {}", cluster.dir.display());
            cluster.pg_ctl(&["start", "-w", "-t", "60"])?;
        }
        // From here on it is in use: by this process, and by any other that holds a share. Only
        // a process holding the control lock takes the users' lock exclusively, so this does not
        // wait.
        users
            .lock_shared()
            .context("cannot share the lock of the embedded PostgreSQL")?;
        cluster.users = Some(users);
        drop(held);
        Ok(cluster)
    }

    /// The URL of database `database` on the cluster's socket.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost/{database}?host={}", self.dir.display())
    }

    /// Where a person reaches it with `psql`.
    pub fn describe(&self) -> String {
        format!("psql -h {} -U postgres monkeyci", self.dir.display())
    }

    /// Leaves the cluster: stops it unless another MonkeyCI process uses it (fast shutdown:
    /// sessions are ended, what was committed is kept).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.leave()
    }

    fn leave(&mut self) -> anyhow::Result<()> {
        let Some(users) = self.users.take() else {
            return Ok(());
        };
        let _held = hold(&self.control)?;
        // Exclusively only if nobody else holds a share; the locks go when the files are closed.
        if users.try_lock().is_err() || !self.running() {
            return Ok(());
        }
        eprintln!("stopping the embedded PostgreSQL");
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"])
    }

    fn create(&self) -> anyhow::Result<()> {
        eprintln!(
            "no database configured and nothing answers on the default address: making an embedded PostgreSQL in {}{}",
            self.dir.display(),
            self.owner
                .as_ref()
                .map(|o| format!(" (run as user {}: PostgreSQL refuses root)", o.name))
                .unwrap_or_default()
        );
        {
            use std::os::unix::fs::DirBuilderExt;
            // The data directory as the server makes it (others may pass, not list), then the
            // cluster's own, for its owner only.
            if let Some(data_dir) = self.dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(data_dir)?;
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&self.dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
        }
        if let Some(owner) = &self.owner {
            std::os::unix::fs::chown(&self.dir, Some(owner.uid), Some(owner.gid))
                .with_context(|| format!("cannot give {} to user {}", self.dir.display(), owner.name))?;
            // Every directory above must let that user through.
            let reaches = Command::new("/bin/sh")
                .args(["-c", "test -w \"$0\""])
                .arg(&self.dir)
                .uid(owner.uid)
                .gid(owner.gid)
                .status()
                .is_ok_and(|s| s.success());
            if !reaches {
                bail!(
                    "user {} cannot reach {} (a directory above it is closed to other users, as /root is): use a data \
                     directory it can reach (--data-dir / MONKEYCI_DATA_DIR, e.g. /var/lib/monkeyci), or configure a \
                     database",
                    owner.name,
                    self.dir.display()
                );
            }
        }
        let data = self.dir.join("data");
        let output = self
            .command(&self.bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "-D"])
            .arg(&data)
            .output()
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Only the socket: no TCP port, and the socket only for the cluster's owner (and root).
        let settings = format!(
            "\n# Set by MonkeyCI: reachable only through the socket in {dir}.\nlisten_addresses = ''\nunix_socket_directories = '{dir}'\nunix_socket_permissions = 0700\n",
            dir = self.dir.display().to_string().replace('\'', "''")
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .context("cannot write postgresql.conf of the embedded PostgreSQL")?;
        Ok(())
    }

    fn running(&self) -> bool {
        self.command(&self.bin.join("pg_ctl"))
            .arg("status")
            .arg("-D")
            .arg(self.dir.join("data"))
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(&self.bin.join("pg_ctl"))
            .args(args)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .output()
            .context("cannot run pg_ctl")?;
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!(
                "pg_ctl {} failed: {}{}\nlast lines of {}:\n{}",
                args[0],
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.dir.join("server.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// `program`, run as the cluster's owner, in the cluster's directory.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir).env_remove("PGDATA");
        if let Some(owner) = &self.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Err(error) = self.leave() {
            eprintln!("error: {error:#}");
        }
    }
}

/// A lock file in the data directory (made, mode 0711, if it does not exist), opened without
/// following a link.
fn lock_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(data_dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The control lock, exclusively: waits while another process makes, starts or stops the
/// cluster. Released when the file is dropped.
fn hold(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = lock_file(path)?;
    if file.try_lock().is_err() {
        eprintln!("waiting for another MonkeyCI process to start or stop the embedded PostgreSQL");
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    }
    Ok(file)
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `given` if set (and only it), else the first directory of PATH with all three, else the newest of
/// `/usr/lib/postgresql/*/bin` (Debian's layout, not on PATH).
fn server_programs(given: Option<PathBuf>) -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|p| dir.join(p).is_file());
    if let Some(dir) = given {
        return complete(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| complete(d)) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `postgres`, else `nobody`.
fn unprivileged_owner() -> anyhow::Result<Owner> {
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Owner {
                name: name.to_owned(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            });
        }
    }
    bail!("running as root, and neither user postgres nor nobody exists to run the embedded PostgreSQL as (PostgreSQL refuses root)")
}
