//! `monkeyci`: runs the MonkeyCI server and operates its database, and talks to a server as a
//! client (`login`, `trigger`, `watch`, `logs`…).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};
use monkeyci_api::{ApiConfig, ApiServer, AuthConfig, QueryLimits, WsConfig};
use monkeyci_commands::KeyStore;
use monkeyci_crypto::{MasterKey, MasterKeys};
use monkeyci_eventstore::{EventFeed, EventStore, FeedConfig};
use monkeyci_projections::{ProjectionRunner, RunnerConfig};
use monkeyci_runner::{CancellationToken, JobLimits, LogLimits, Runner, RunnerSettings, ScheduleTicker};
use monkeyci_storage::{BlobStore, FsStore, S3Config, S3Store};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tracing_subscriber::EnvFilter;

mod client;
mod embedded;
mod events;
mod executors;
mod local;

/// A local build ran and did not succeed; its summary said why, its exit status (`.0`, see
/// `build run --help`) says how.
#[derive(Debug, thiserror::Error)]
#[error("the build did not succeed")]
struct BuildFailed(u8);

/// Where `--help` lists the database settings (of every command but the client's).
const DATABASE_HEADING: &str = "Database (not for the client commands)";

/// The database used when none is configured and a server answers on its address.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/monkeyci";

/// MonkeyCI: a CI/CD server built on an event log in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "monkeyci", version)]
struct Cli {
    /// The PostgreSQL database (a postgres:// URL) holding the event log and the read models.
    /// `server`, `runner` and `migrate` create it if it does not exist and migrate it; every
    /// other command refuses a database that does not exist or is not migrated.
    ///
    /// Without it: postgres://postgres@127.0.0.1:5432/monkeyci if a server answers there;
    /// otherwise MonkeyCI's own PostgreSQL cluster in `<data dir>/postgres`, which `monkeyci
    /// server` makes on its first start with the machine's `initdb` (reachable only through a
    /// Unix socket in that directory) and stops when it stops. A configured database is never
    /// replaced by it.
    #[arg(long, global = true, help_heading = DATABASE_HEADING, env = "MONKEYCI_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// The directory of PostgreSQL's `initdb`, `pg_ctl` and `postgres` for the embedded cluster;
    /// default: the first directory of PATH with all three, else the newest
    /// `/usr/lib/postgresql/*/bin`.
    #[arg(long, global = true, help_heading = DATABASE_HEADING, env = "MONKEYCI_POSTGRES_BIN")]
    postgres_bin: Option<std::path::PathBuf>,

    /// The address tried when no database is configured (for tests).
    #[arg(long, global = true, env = "MONKEYCI_DEFAULT_DATABASE_URL", hide = true, default_value = DEFAULT_DATABASE_URL)]
    default_database_url: String,

    /// Database connections to keep open.
    #[arg(long, global = true, help_heading = DATABASE_HEADING, env = "MONKEYCI_DATABASE_CONNECTIONS", default_value_t = 20)]
    database_connections: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server: creates and migrates the database, serves the GraphQL API and keeps
    /// every projection current until stopped with Ctrl-C or SIGTERM. Several servers may share
    /// one database; each projection runs in one of them at a time.
    Server(ServerArgs),
    /// Runs builds only (no API, no projections): claims queued builds from the database the
    /// servers use. Several runners may share one database; each build runs exactly once.
    Runner(RunnerArgs),
    /// Runs a local checkout's pipeline in place, with no server or database.
    Build {
        #[command(subcommand)]
        command: BuildCommand,
    },
    /// Creates the database if needed and applies pending migrations, then exits.
    Migrate,
    /// Prints the GraphQL schema of the API (its SDL), as the repository's `schema.graphql`
    /// holds it; no database needed. For code generators and third parties.
    Schema,
    /// Inspects and rebuilds projections (read models).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Exports the event log as NDJSON, or imports an export into an empty database (backups,
    /// moves, replays).
    #[command(long_about = events::EVENTS_ABOUT)]
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Makes a new admin token and keeps its hash in the database: every server accepts it at
    /// once, and the one it replaces stops working. The token is printed on a terminal only (a
    /// token in a log is a leaked token); elsewhere give --file.
    AdminToken {
        /// Write the token to this file (created with mode 0600) instead of the terminal.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// Settings of `monkeyci server`.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address and port of the HTTP API (GraphQL at /graphql, /health, /ready, /metrics).
    #[arg(long, env = "MONKEYCI_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,

    /// Largest request body and WebSocket message, in bytes.
    #[arg(long, env = "MONKEYCI_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,

    /// Deepest GraphQL query accepted.
    #[arg(long, env = "MONKEYCI_MAX_QUERY_DEPTH", default_value_t = 12)]
    max_query_depth: usize,

    /// Costliest GraphQL query accepted: each field costs 1 plus what it selects, and a list
    /// multiplies what it selects by its size (`first`, or 1,000 log lines at 1 per line, or
    /// an estimate of 20 jobs and 10 items for other lists). An org page of 20 repos with their
    /// 5 latest builds and their jobs costs about 6,000; a build with every job's first 1,000
    /// log lines about 20,000.
    #[arg(long, env = "MONKEYCI_MAX_QUERY_COMPLEXITY", default_value_t = 50_000)]
    max_query_complexity: usize,

    /// Most root fields (aliases included) of one GraphQL operation.
    #[arg(long, env = "MONKEYCI_MAX_QUERY_ROOT_FIELDS", default_value_t = 50)]
    max_query_root_fields: usize,

    /// Operations one WebSocket connection may run at once.
    #[arg(long, env = "MONKEYCI_MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value_t = 100)]
    max_subscriptions_per_connection: usize,

    /// How long a WebSocket client may take to send connection_init, in milliseconds.
    #[arg(long, env = "MONKEYCI_WS_INIT_TIMEOUT_MS", default_value_t = 10_000)]
    ws_init_timeout_ms: u64,

    /// How long a query waits for the read models to include earlier writes, in milliseconds.
    #[arg(long, env = "MONKEYCI_READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 5_000)]
    read_your_writes_timeout_ms: u64,

    /// How often a standby server tries to take over a projection, in milliseconds.
    #[arg(long, env = "MONKEYCI_LEASE_RETRY_MS", default_value_t = 2000)]
    lease_retry_ms: u64,

    /// The admin token: a bearer token with every right, to bootstrap a fresh install (create
    /// users, orgs and API tokens). Without it, the server makes one up at start and prints it.
    #[arg(long, env = "MONKEYCI_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Do not fire cron schedules in this server. Several servers may fire them: each tick
    /// still triggers one build.
    #[arg(long, env = "MONKEYCI_NO_SCHEDULES", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    no_schedules: bool,

    /// Do not run builds in this server (run `monkeyci runner` elsewhere).
    #[arg(long, env = "MONKEYCI_NO_RUNNER", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    no_runner: bool,

    #[command(flatten)]
    runner: RunnerArgs,
}

impl ServerArgs {
    fn api_config(&self) -> ApiConfig {
        ApiConfig {
            listen: self.listen,
            body_limit: self.body_limit,
            limits: QueryLimits {
                max_depth: self.max_query_depth,
                max_complexity: self.max_query_complexity,
                max_root_fields: self.max_query_root_fields,
            },
            ws: WsConfig {
                init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
                max_subscriptions: self.max_subscriptions_per_connection,
            },
            read_your_writes_timeout: Duration::from_millis(self.read_your_writes_timeout_ms),
            ..ApiConfig::default()
        }
    }
}

/// Settings of the build runner (in `monkeyci runner` and in `monkeyci server`).
#[derive(Debug, Clone, clap::Args)]
struct RunnerArgs {
    /// This runner's name in the build history; defaults to host name and process id.
    #[arg(long, env = "MONKEYCI_RUNNER_ID")]
    runner_id: Option<String>,

    /// Directory where builds are checked out and run (each in a directory of its own, removed
    /// when the build ends).
    #[arg(long, env = "MONKEYCI_WORKSPACE", default_value_os_t = std::env::temp_dir().join("monkeyci-builds"))]
    workspace: std::path::PathBuf,

    /// Jobs of one build that may run at once.
    #[arg(long, env = "MONKEYCI_PARALLELISM", default_value_t = 2)]
    parallelism: usize,

    /// Builds this runner runs at once.
    #[arg(long, env = "MONKEYCI_MAX_BUILDS", default_value_t = 2)]
    max_builds: usize,

    /// How long a build's lease lasts without renewal; a build whose runner stops renewing is
    /// ended as errored by another runner, in milliseconds.
    #[arg(long, env = "MONKEYCI_LEASE_TTL_MS", default_value_t = 30_000)]
    lease_ttl_ms: u64,

    /// A job that sets no `timeout` in its pipeline is stopped after this many seconds.
    #[arg(long, env = "MONKEYCI_DEFAULT_JOB_TIMEOUT_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    default_job_timeout_secs: u64,

    /// A build whose checkout (git fetch included) takes longer than this many seconds errors.
    #[arg(long, env = "MONKEYCI_CHECKOUT_TIMEOUT_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    checkout_timeout_secs: u64,

    /// A longer line of job output is cut at this many bytes (the cut is noted in the line).
    #[arg(long, env = "MONKEYCI_MAX_LOG_LINE_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(80..=16 * 1024 * 1024))]
    max_log_line_bytes: u64,

    /// Once a job's log holds this many bytes, the rest of its output is dropped (a line of the
    /// log says so); the job runs on.
    #[arg(long, env = "MONKEYCI_MAX_JOB_LOG_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    max_job_log_bytes: u64,

    #[command(flatten)]
    storage: StorageArgs,

    #[command(flatten)]
    executors: executors::ExecutorArgs,

    /// The master key: 32 bytes in standard base64 (e.g. from `openssl rand -base64 32`). It wraps
    /// the data keys that encrypt webhook secrets. Without it, the server uses the key in
    /// `<data dir>/master.key`, made on first start and readable only by its owner.
    #[arg(long, env = "MONKEYCI_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,

    /// Master keys being retired, comma-separated: data keys they wrapped still open, and the
    /// server rewraps all of them under the current master key at start. Remove them once the
    /// server has logged the rewrap.
    #[arg(
        long,
        env = "MONKEYCI_PREVIOUS_MASTER_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    previous_master_keys: Vec<String>,
}

/// Where artifacts, caches and archived job logs are kept: the filesystem under the data
/// directory, or an S3 bucket when `--s3-bucket` is given.
#[derive(Debug, Clone, clap::Args)]
struct StorageArgs {
    /// Directory for the server's files; blobs (artifacts, caches, archived logs) go to its
    /// `blobs/` folder unless S3 is configured.
    #[arg(long, env = "MONKEYCI_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: std::path::PathBuf,

    /// Keep blobs in this S3 bucket instead of the data directory.
    #[arg(long, env = "MONKEYCI_S3_BUCKET")]
    s3_bucket: Option<String>,

    /// The S3 endpoint, for S3-compatible servers (MinIO, Ceph, Garage…); AWS's by default.
    #[arg(long, env = "MONKEYCI_S3_ENDPOINT")]
    s3_endpoint: Option<String>,

    /// The S3 region.
    #[arg(long, env = "MONKEYCI_S3_REGION", default_value = "us-east-1")]
    s3_region: String,

    /// A prefix for every object key in the bucket, e.g. `monkeyci/`.
    #[arg(long, env = "MONKEYCI_S3_PREFIX", default_value = "")]
    s3_prefix: String,

    /// Address buckets by path (`endpoint/bucket/key`), as most S3-compatible servers need.
    #[arg(long, env = "MONKEYCI_S3_PATH_STYLE", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    s3_path_style: bool,

    /// The S3 access key id; without it, AWS's usual credential chain (AWS_ACCESS_KEY_ID,
    /// profiles, instance roles…) is used.
    #[arg(long, env = "MONKEYCI_S3_ACCESS_KEY_ID", hide_env_values = true)]
    s3_access_key_id: Option<String>,

    /// The S3 secret key (prefer the environment variable: a flag shows in `ps`).
    #[arg(long, env = "MONKEYCI_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
}

/// The configured master keys, or the one in `<data dir>/master.key` (made if missing).
fn master_keys(args: &RunnerArgs) -> anyhow::Result<MasterKeys> {
    let current = match &args.master_key {
        Some(key) => MasterKey::from_base64(key).context("MONKEYCI_MASTER_KEY")?,
        None => {
            let path = args.storage.data_dir.join("master.key");
            MasterKey::from_base64(&read_or_make_key_file(&path)?)
                .with_context(|| format!("the master key in {}", path.display()))?
        }
    };
    let previous = args
        .previous_master_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| MasterKey::from_base64(k).context("MONKEYCI_PREVIOUS_MASTER_KEYS"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(MasterKeys::new(current, previous)?)
}

/// Creates `dir` (and its missing parents) with `mode` (before the umask); an existing one is
/// left as it is. The data directory gets 0711 (others may pass through to the embedded
/// PostgreSQL's directory, not list it), its `blobs/` 0700 (only the server reads them).
fn make_dir(dir: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The base64 key in `path`; a new random one is written there first if the file is missing.
fn read_or_make_key_file(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        make_dir(dir, 0o711)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let text = MasterKey::generate_base64()?;
            file.write_all(text.as_bytes())?;
            tracing::warn!(path = %path.display(), "made a new master key; back it up with the database, or set MONKEYCI_MASTER_KEY");
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// `$XDG_DATA_HOME/monkeyci`, `~/.local/share/monkeyci`, or `monkeyci-data` in the temp dir;
/// as root `/var/lib/monkeyci` (unless `~/.local/share/monkeyci` exists from an earlier
/// version), which the embedded PostgreSQL's user can reach (root's home is closed to it).
fn default_data_dir() -> std::path::PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let earlier = home.as_ref().map(|h| h.join(".local/share/monkeyci"));
    if nix::unistd::geteuid().is_root()
        && std::env::var_os("XDG_DATA_HOME").is_none()
        && !earlier.as_ref().is_some_and(|d| d.exists())
    {
        return std::path::PathBuf::from("/var/lib/monkeyci");
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(data), _) if !data.is_empty() => std::path::PathBuf::from(data).join("monkeyci"),
        (_, Some(home)) if !home.is_empty() => std::path::PathBuf::from(home).join(".local/share/monkeyci"),
        _ => std::env::temp_dir().join("monkeyci-data"),
    }
}

impl StorageArgs {
    /// The configured blob store; an S3 bucket is checked once, so that a wrong setting stops
    /// the server at start rather than failing builds later.
    async fn open(&self) -> anyhow::Result<Arc<dyn BlobStore>> {
        let Some(bucket) = &self.s3_bucket else {
            let root = self.data_dir.join("blobs");
            make_dir(&self.data_dir, 0o711)?;
            make_dir(&root, 0o700)?;
            return Ok(Arc::new(FsStore::new(root)));
        };
        let config = S3Config {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            bucket: bucket.clone(),
            prefix: self.s3_prefix.clone(),
            path_style: self.s3_path_style,
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
        };
        let store = S3Store::new(config).await?;
        store
            .check()
            .await
            .with_context(|| format!("cannot use S3 bucket {bucket:?}"))?;
        Ok(Arc::new(store))
    }
}

impl RunnerArgs {
    fn settings(&self, blobs: Arc<dyn BlobStore>, keys: KeyStore) -> RunnerSettings {
        let runner_id = self.runner_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        RunnerSettings {
            runner_id,
            workspace_root: self.workspace.clone(),
            parallelism: self.parallelism,
            max_builds: self.max_builds,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            poll: Duration::from_secs(1)
                .min(Duration::from_millis(self.lease_ttl_ms / 2).max(Duration::from_millis(50))),
            blobs,
            keys: Some(keys),
            job_limits: JobLimits {
                logs: LogLimits {
                    max_line_bytes: usize::try_from(self.max_log_line_bytes).unwrap_or(usize::MAX),
                    max_log_bytes: self.max_job_log_bytes,
                },
                default_timeout: Duration::from_secs(self.default_job_timeout_secs),
            },
            checkout_timeout: Duration::from_secs(self.checkout_timeout_secs),
        }
    }
}

#[derive(Debug, Subcommand)]
enum BuildCommand {
    /// Runs the `.monkeyci/` pipeline of a directory in place, as the server runs a build,
    /// printing each job's output with a `[job]` prefix and a summary at the end.
    ///
    /// Jobs run as on the server: with an image in a podman container, without one confined by
    /// bubblewrap (see --executor).
    ///
    /// Blocked jobs (`blocked: true`), which wait for the unblockJob mutation on the server, are
    /// asked about before any job starts: "Run it? [y/N]" when stdin is a terminal. Without a
    /// terminal (scripts, CI) they are skipped; --approve-blocked runs them and --skip-blocked
    /// skips them without asking. The dependents of a skipped job are skipped too.
    ///
    /// `paths` conditions look at the files the checkout's HEAD commit changed against its
    /// first parent, as the server looks at a build's commit; uncommitted changes do not count.
    /// Outside a git repository (or before its first commit) they hold for every job, as on the
    /// server when a build's changed files are unknown.
    ///
    /// Caches are kept in --cache-dir from run to run, as the server keeps them
    /// (`<org>/<repo>/caches/<cache id>.tgz`, here with one repo per checkout directory): a run
    /// restores what the last run of the same directory saved. Artifacts last for the run.
    ///
    /// Exit status: 0 the build succeeded; 1 it failed (a job failed, it ran out of time or was
    /// canceled) or could not run (no pipeline, a broken one); 2 bad arguments; 3 nothing
    /// failed, but blocked jobs were skipped for want of approval.
    Run {
        /// The checkout whose pipeline to run; jobs see it at /workspace and may change it. As
        /// root, it is handed to the job user (--job-user) first.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// Run only this job (without its dependencies).
        #[arg(long)]
        job: Option<String>,
        /// Jobs that may run at once.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// Run blocked jobs (`blocked: true`) without asking.
        #[arg(long, conflicts_with = "skip_blocked")]
        approve_blocked: bool,
        /// Skip blocked jobs without asking, even at a terminal (exit status 3 if nothing
        /// failed).
        #[arg(long)]
        skip_blocked: bool,
        /// Where caches are kept between runs: `$XDG_CACHE_HOME/monkeyci` or `~/.cache/monkeyci`
        /// unless given.
        #[arg(long, env = "MONKEYCI_CACHE_DIR", default_value_os_t = local::default_cache_dir())]
        cache_dir: std::path::PathBuf,
        #[command(flatten)]
        executors: executors::ExecutorArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Shows each projection's checkpoint, the events it applied since it was (re)built, its lag
    /// (committed events not applied yet) and its rate (events applied per second, measured
    /// over `--sample-ms`).
    Status {
        /// How long to watch the checkpoints to measure each projection's rate, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        sample_ms: u64,
    },
    /// Rebuilds a projection's read model from the whole log.
    ///
    /// Without `--online`: empties the read model and moves the projection's checkpoint to the
    /// start; a running server replays the log into it, and queries see the model fill up again.
    ///
    /// With `--online`: this command builds the new read model itself, in tables beside the live
    /// ones (schema `rebuild_<name>`), while servers keep serving and writing; once it has caught
    /// up it swaps the new tables in, in one short transaction. Queries never see a half-built
    /// model. Progress goes to stderr. If it is interrupted, the live model is untouched.
    Rebuild {
        /// The projection: orgs, repos, builds, triggers, secrets or audit.
        name: String,
        /// Build beside the live model and swap, instead of emptying it first.
        #[arg(long)]
        online: bool,
        /// Events per transaction of the online replay.
        #[arg(long, default_value_t = 5000)]
        batch_size: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(BuildFailed(status)) = error.downcast_ref::<BuildFailed>() {
                // The summary already said why.
                return ExitCode::from(*status);
            }
            if let Some(failure) = error.downcast_ref::<client::Failure>() {
                if !failure.message.is_empty() {
                    eprintln!("error: {}", failure.message);
                }
                return ExitCode::from(failure.status);
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema = cli.command {
        print!("{}", monkeyci_api::schema::sdl());
        return Ok(());
    }
    if let Command::Build {
        command:
            BuildCommand::Run {
                dir,
                job,
                parallelism,
                approve_blocked,
                skip_blocked,
                cache_dir,
                executors,
            },
    } = cli.command
    {
        let runner_id = format!("local-{}", std::process::id());
        let executor = executors.executor(&runner_id, "local").await;
        let blocked = match (approve_blocked, skip_blocked) {
            (true, _) => local::BlockedJobs::Approve,
            (_, true) => local::BlockedJobs::Skip,
            _ => local::BlockedJobs::Ask,
        };
        let run = local::LocalRun {
            dir,
            job,
            parallelism,
            cache_dir,
            blocked,
        };
        return match local::run(run, executor).await? {
            local::Ended::Succeeded => Ok(()),
            ended => Err(BuildFailed(ended.exit_status()).into()),
        };
    }
    // Bad arguments are reported before the database is looked at.
    if let Command::AdminToken { file: None } = &cli.command {
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            bail!("standard output is not a terminal, and a token must not end up in a log: give --file PATH");
        }
    }
    if let Command::Projections {
        command: ProjectionsCommand::Rebuild { name, .. },
    } = &cli.command
    {
        projection_named(name)?;
    }
    let command = match cli.command {
        Command::Client(command) => return client::run(command).await,
        command => command,
    };
    let schema = match command {
        Command::Server(_) | Command::Runner(_) | Command::Migrate => Schema::CreateAndMigrate,
        _ => Schema::MustBeCurrent,
    };
    let data_dir = match &command {
        Command::Server(args) => args.runner.storage.data_dir.clone(),
        Command::Runner(args) => args.storage.data_dir.clone(),
        _ => std::env::var_os("MONKEYCI_DATA_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(default_data_dir, std::path::PathBuf::from),
    };
    let may_create = matches!(command, Command::Server(_) | Command::Migrate);
    // Set but empty is not set.
    let configured = cli.database_url.filter(|url| !url.trim().is_empty());
    let place = DatabasePlace {
        configured,
        default: cli.default_database_url,
        data_dir,
        postgres_bin: cli.postgres_bin.filter(|d| !d.as_os_str().is_empty()),
        may_create,
    };
    let (database_url, embedded) = resolve_database(place).await?;
    let pool = connect(&database_url, cli.database_connections, schema).await?;
    let store = EventStore::new(pool);
    let outcome = run_with_database(command, &store, &database_url).await;
    store.pool().close().await;
    if let Some(embedded) = embedded {
        tokio::task::spawn_blocking(move || embedded.stop()).await??;
    }
    outcome
}

/// What decides where the database is.
struct DatabasePlace {
    configured: Option<String>,
    default: String,
    data_dir: std::path::PathBuf,
    postgres_bin: Option<std::path::PathBuf>,
    /// `server` and `migrate` may make an embedded cluster.
    may_create: bool,
}

/// Where the database is: the configured URL; else the data directory's embedded cluster if it
/// has one; else the default address if a server answers there; else a new embedded cluster
/// (`server` and `migrate` only). An embedded cluster this process starts is returned with it,
/// to be stopped at the end.
async fn resolve_database(place: DatabasePlace) -> anyhow::Result<(String, Option<embedded::Embedded>)> {
    if let Some(url) = place.configured {
        return Ok((url, None));
    }
    if !embedded::Embedded::exists(&place.data_dir) && answers(&postgres_options(&place.default)?).await {
        return Ok((place.default, None));
    }
    let (dir, bin, create) = (place.data_dir.clone(), place.postgres_bin, place.may_create);
    let cluster = tokio::task::spawn_blocking(move || embedded::Embedded::start(&dir, bin, create)).await??;
    tracing::info!(
        "using the embedded PostgreSQL of {} (a person reaches it with `{}`)",
        place.data_dir.display(),
        cluster.describe()
    );
    Ok((cluster.url("monkeyci"), Some(cluster)))
}

/// Whether something accepts connections at the PostgreSQL address of `options`.
async fn answers(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    let port = options.get_port();
    if host.starts_with('/') {
        return std::path::Path::new(host).join(format!(".s.PGSQL.{port}")).exists();
    }
    let connect = tokio::net::TcpStream::connect((host, port));
    matches!(tokio::time::timeout(Duration::from_secs(3), connect).await, Ok(Ok(_)))
}

async fn run_with_database(command: Command, store: &EventStore, database_url: &str) -> anyhow::Result<()> {
    let store = store.clone();
    match command {
        Command::Migrate => {
            println!("database is migrated");
            Ok(())
        }
        Command::Server(args) => serve(store, &args).await,
        Command::Runner(args) => run_builds(store, &args).await,
        Command::Build { .. } | Command::Schema | Command::Client(_) => Ok(()),
        Command::AdminToken { file } => new_admin_token(&store, file.as_deref()).await,
        Command::Events { command } => events::run(store.pool(), command).await,
        Command::Projections {
            command: ProjectionsCommand::Status { sample_ms },
        } => print_status(&store, Duration::from_millis(sample_ms)).await,
        Command::Projections {
            command:
                ProjectionsCommand::Rebuild {
                    name,
                    online,
                    batch_size,
                },
        } => {
            let projection = projection_named(&name)?;
            if online {
                return rebuild_online(&store, database_url, projection.as_ref(), batch_size).await;
            }
            monkeyci_projections::rebuild(&store, projection.as_ref()).await?;
            println!("projection {name} was reset; a running server replays the log into it");
            Ok(())
        }
    }
}

/// The projection called `name`, or an error listing the names.
fn projection_named(name: &str) -> anyhow::Result<Arc<dyn monkeyci_projections::Projection>> {
    let mut projections = monkeyci_projections::all();
    match projections.iter().position(|p| p.name() == name) {
        Some(index) => Ok(projections.swap_remove(index)),
        None => {
            let names: Vec<_> = projections.iter().map(|p| p.name()).collect();
            bail!(
                "no projection is named {name:?}; the projections are {}",
                names.join(", ")
            )
        }
    }
}

/// `projections rebuild NAME --online`: builds beside the live model, reporting progress on
/// stderr at most every 2 s, then swaps.
async fn rebuild_online(
    store: &EventStore,
    url: &str,
    projection: &dyn monkeyci_projections::Projection,
    batch_size: u32,
) -> anyhow::Result<()> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let options = postgres_options(url)?;
    let place = describe_database(&options);
    let conn = sqlx::PgConnection::connect_with(&options.application_name("monkeyci rebuild"))
        .await
        .with_context(|| format!("cannot connect to {place}"))?;
    let name = projection.name();
    let started = std::time::Instant::now();
    let mut last_report = started;
    eprintln!("rebuilding {name} beside the live model…");
    let outcome = monkeyci_projections::rebuild_online(store, conn, projection, batch_size, |p| {
        if p.swapping {
            eprintln!("  {} events replayed; swapping the new model in", p.events);
        } else if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = std::time::Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            eprintln!(
                "  {} of ~{} events ({:.0} events/s)",
                p.events,
                p.total,
                p.events as f64 / seconds.max(0.001)
            );
        }
    })
    .await
    .with_context(|| format!("the online rebuild of {name} failed; the live model is unchanged"))?;
    println!(
        "projection {name} was rebuilt online from {} events in {:.1} s and swapped in at {} (swap held the \
         checkpoint for {} ms)",
        outcome.events,
        started.elapsed().as_secs_f64(),
        outcome.checkpoint,
        outcome.swap_ms
    );
    Ok(())
}

/// What a command may do to the database it is pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Create the database if it does not exist and apply pending migrations: `server`,
    /// `runner` and `migrate` only.
    CreateAndMigrate,
    /// Use the database only if it exists and is migrated to exactly this version; change
    /// nothing otherwise. Every other command: a typo in a URL must not make an empty database
    /// that then "exports" nothing successfully.
    MustBeCurrent,
}

/// Connects to the database; with [`Schema::CreateAndMigrate`] creates and migrates it first.
async fn connect(url: &str, connections: u32, schema: Schema) -> anyhow::Result<PgPool> {
    let options = postgres_options(url)?.application_name("monkeyci");
    let place = describe_database(&options);
    if schema == Schema::CreateAndMigrate {
        create_database_if_missing(&options).await?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|error| match error.as_database_error().and_then(|e| e.code()) {
            // invalid_catalog_name: no such database.
            Some(code) if code == "3D000" => anyhow::anyhow!(
                "{place} does not exist; this command does not create databases (`monkeyci migrate` or \
                     `monkeyci server` does): check --database-url / MONKEYCI_DATABASE_URL"
            ),
            _ => anyhow::Error::new(error).context(format!("cannot connect to {place}")),
        })?;
    match schema {
        Schema::CreateAndMigrate => monkeyci_eventstore::migrate(&pool)
            .await
            .with_context(|| format!("migrating {place}"))?,
        Schema::MustBeCurrent => {
            use monkeyci_eventstore::SchemaState;
            let state = monkeyci_eventstore::schema_state(&pool)
                .await
                .with_context(|| format!("reading the migrations of {place}"))?;
            match state {
                SchemaState::Current => {}
                SchemaState::Unmigrated => bail!(
                    "{place} exists but is not a MonkeyCI database (no migration was ever applied); \
                     check --database-url, or run `monkeyci migrate` to make it one"
                ),
                SchemaState::Behind {
                    applied,
                    known,
                    missing,
                } => bail!(
                    "{place} has {applied} of this monkeyci's {known} migrations (the first missing is \
                     {missing}); run `monkeyci migrate` (or start `monkeyci server`) first"
                ),
                SchemaState::Ahead { unknown } => bail!(
                    "{place} was migrated by a newer MonkeyCI (migrations {unknown:?} are unknown to this \
                     one); use that version"
                ),
            }
        }
    }
    Ok(pool)
}

/// The connection options of a PostgreSQL URL; any other kind of URL is refused (the parser
/// of the PostgreSQL driver would take `mysql://…` for a PostgreSQL server).
fn postgres_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => {}
        Some(other) => {
            bail!("the database URL is a {other}:// URL; MonkeyCI needs PostgreSQL: postgres://USER@HOST:PORT/DATABASE")
        }
        None => bail!("the database URL is not a URL; MonkeyCI needs postgres://USER@HOST:PORT/DATABASE"),
    }
    // The parser's error may quote the URL, password included: say what is wrong without it.
    url.parse()
        .map_err(|e: sqlx::Error| anyhow::anyhow!("invalid PostgreSQL URL: {}", redact_password(&e.to_string(), url)))
}

/// `text` with the password of `url`, if any, replaced by `***`.
fn redact_password(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

/// "database NAME on HOST:PORT", without user or password, for messages.
fn describe_database(options: &PgConnectOptions) -> String {
    format!(
        "database {:?} on {}:{}",
        options.get_database().unwrap_or("(the user's default)"),
        options.get_host(),
        options.get_port()
    )
}

async fn create_database_if_missing(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL on {}:{} (its `postgres` database, to check that database {name:?} exists)",
            options.get_host(),
            options.get_port()
        )
    })?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        tracing::info!(database = %name, "creating the database");
        sqlx::query(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    admin.close().await?;
    Ok(())
}

async fn serve(store: EventStore, args: &ServerArgs) -> anyhow::Result<()> {
    let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
    let config = RunnerConfig {
        lease_retry: Duration::from_millis(args.lease_retry_ms),
        ..RunnerConfig::default()
    };
    let runner = ProjectionRunner::new(store.clone(), feed.clone(), monkeyci_projections::all(), config).start();
    let blobs = args.runner.storage.open().await?;
    tracing::info!(storage = %blobs.describe(), "blob storage");
    let keys = KeyStore::new(store.pool().clone(), master_keys(&args.runner)?);
    let rewrapped = keys
        .rewrap_all()
        .await
        .context("rewrapping data keys under the current master key")?;
    if rewrapped > 0 {
        tracing::info!(
            rewrapped,
            "data keys rewrapped under the current master key; older master keys can be removed"
        );
    }
    let stop_runner = CancellationToken::new();
    let builds = if args.no_runner {
        tracing::info!("not running builds (--no-runner): `monkeyci runner` processes run them");
        None
    } else {
        let settings = args.runner.settings(blobs.clone(), keys.clone());
        tracing::info!(runner = %settings.runner_id, "running builds in this server (--no-runner leaves them to `monkeyci runner`)");
        let installation = monkeyci_runner::installation_id(store.pool()).await?;
        let executor = args
            .runner
            .executors
            .executor(&settings.runner_id, &installation.to_string())
            .await;
        let runner = Runner::new(store.clone(), feed.clone(), executor, settings);
        runner.check().await.map_err(anyhow::Error::msg)?;
        Some(tokio::spawn(runner.run(stop_runner.clone())))
    };
    let admin = match args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) if token.len() >= 16 => Some(monkeyci_crypto::TokenHash::of(token)),
        Some(_) => bail!("the admin token must be at least 16 characters long"),
        None => {
            announce_admin_token(store.pool()).await?;
            None
        }
    };
    let stop_ticker = CancellationToken::new();
    let ticker = (!args.no_schedules).then(|| {
        let commands = monkeyci_commands::CommandHandler::new(store.clone());
        let ticker = ScheduleTicker::new(store.pool().clone(), commands);
        tokio::spawn(ticker.run(stop_ticker.clone()))
    });
    let api_config = ApiConfig {
        keys: Some(keys),
        blobs: Some(blobs),
        auth: AuthConfig::Required { admin },
        ..args.api_config()
    };
    let api = ApiServer::bind(store, feed, api_config).await?;
    let addr = api.local_addr()?;
    // On stdout, for people and for scripts that start the server on port 0.
    println!("monkeyci server listening on http://{addr} (GraphQL at http://{addr}/graphql); Ctrl-C stops it");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(api.serve(async {
        let _ = stop_rx.await;
    }));
    shutdown_signal().await?;
    tracing::info!("stopping: finishing requests in flight and the current projection batches");
    let _ = stop_tx.send(());
    // Requests in flight get a bounded time; open WebSockets end with the process.
    match tokio::time::timeout(Duration::from_secs(30), serving).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("requests still running after 30 s; stopping anyway"),
    }
    stop_runner.cancel();
    stop_ticker.cancel();
    if let Some(builds) = builds {
        builds.await?;
    }
    if let Some(ticker) = ticker {
        ticker.await?;
    }
    runner.shutdown().await;
    Ok(())
}

/// Without a configured admin token: makes the installation's kept admin token if there is none
/// yet, and says where it is. The token is shown on a terminal only: server output usually
/// ends up in a log.
async fn announce_admin_token(pool: &PgPool) -> anyhow::Result<()> {
    if let Some((_, made_at)) = monkeyci_commands::stored_admin_token(pool).await? {
        tracing::info!(
            "admin token: the one made {} (kept across restarts; `monkeyci admin-token` makes a new one)",
            made_at.format("%Y-%m-%d %H:%M UTC")
        );
        return Ok(());
    }
    let Some(token) = monkeyci_commands::make_admin_token(pool, false).await? else {
        // Another server made it meanwhile.
        return Ok(());
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!(
            "made the admin token (kept across restarts; shown only now, `monkeyci admin-token` makes a new one): {}",
            token.expose()
        );
    } else {
        tracing::warn!(
            "made an admin token; it is not shown because the output is not a terminal: run `monkeyci admin-token` \
             on a terminal (or with --file) for one you can use"
        );
    }
    Ok(())
}

/// `monkeyci admin-token`: a new admin token, on the terminal or in `file`.
async fn new_admin_token(store: &EventStore, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let token = monkeyci_commands::make_admin_token(store.pool(), true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the database has no installation row; run `monkeyci migrate`"))?;
    match file {
        Some(path) => {
            write_private_file(path, &format!("{}\n", token.expose()))?;
            eprintln!(
                "wrote a new admin token to {}; the previous one no longer works",
                path.display()
            );
        }
        None => println!(
            "{}\n(the new admin token; the previous one no longer works. Shown only now.)",
            token.expose()
        ),
    }
    Ok(())
}

/// Writes `text` to `path`, readable and writable by its owner only. The text goes to a new file
/// beside it (created exclusively, so never through a link planted there), which then replaces
/// `path`: a symbolic link at `path` (say in a shared /tmp) is replaced, never written through.
pub(crate) fn write_private_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file name", path.display()))?;
    let mut temporary = path.to_owned();
    temporary.set_file_name(format!(".{}.{}.new", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

async fn run_builds(store: EventStore, args: &RunnerArgs) -> anyhow::Result<()> {
    let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
    let blobs = args.storage.open().await?;
    tracing::info!(storage = %blobs.describe(), "blob storage");
    let keys = KeyStore::new(store.pool().clone(), master_keys(args)?);
    let settings = args.settings(blobs, keys);
    println!(
        "monkeyci runner {} is waiting for builds; Ctrl-C stops it",
        settings.runner_id
    );
    let installation = monkeyci_runner::installation_id(store.pool()).await?;
    let executor = args
        .executors
        .executor(&settings.runner_id, &installation.to_string())
        .await;
    let runner = Runner::new(store, feed, executor, settings);
    runner.check().await.map_err(anyhow::Error::msg)?;
    let stop = CancellationToken::new();
    let runner = tokio::spawn(runner.run(stop.clone()));
    shutdown_signal().await?;
    tracing::info!("stopping: canceling the builds this runner runs");
    stop.cancel();
    runner.await?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn print_status(store: &EventStore, sample: Duration) -> anyhow::Result<()> {
    match store.held_back_by().await? {
        Some(appender) => println!(
            "log: readable end held back by {} for {:.1} s ({}): projections and read-your-writes wait \
             for it; appends end after monkeyci.append_timeout (default 5 s)",
            appender.describe(),
            appender.open_for.as_secs_f64(),
            appender.state.as_deref().unwrap_or("state unknown")
        ),
        None => println!("log: readable to its end (no appending transaction holds it back)"),
    }
    let before = monkeyci_projections::status(store).await?;
    if before.is_empty() {
        println!("no projection has run yet: start `monkeyci server`");
        return Ok(());
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(sample).await;
    let statuses = monkeyci_projections::status(store).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:<10} {:>22} {:>12} {:>10} {:>12}  updated",
        "projection", "checkpoint", "applied", "lag", "events/s"
    );
    for s in statuses {
        // A rebuild in between resets the count: no rate then.
        let rate = before
            .iter()
            .find(|b| b.name == s.name && b.events_processed <= s.events_processed)
            .map_or_else(
                || "-".to_owned(),
                |b| format!("{:.0}", (s.events_processed - b.events_processed) as f64 / seconds),
            );
        println!(
            "{:<10} {:>22} {:>12} {:>10} {:>12}  {}",
            s.name,
            s.checkpoint.to_string(),
            s.events_processed,
            s.lag_events,
            rate,
            s.updated_at.to_rfc3339()
        );
    }
    Ok(())
}
