//! Helpers for MonkeyCI's end-to-end tests: a started core on a test database, typed commands,
//! and the worker process used by crash and take-over tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use monkeyci_commands::{CommandContext, CommandHandler};
use monkeyci_eventstore::{EventFeed, EventStore, FeedConfig};
use monkeyci_projections::{Projection, ProjectionRunner, RunnerConfig, RunnerHandle};
use sqlx::PgPool;

/// The URL of the database `pool` is connected to, for child processes.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

/// Runner settings for tests: small batches and quick take-over.
pub fn test_runner_config(batch_size: u32) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        lease_retry: Duration::from_millis(50),
        error_backoff: Duration::from_millis(50),
        idle_poll: Duration::from_millis(200),
    }
}

/// The core of MonkeyCI on one database: event store, feed, command handler and projections.
#[derive(Debug)]
pub struct Core {
    pub store: EventStore,
    pub feed: EventFeed,
    pub commands: CommandHandler,
    pub runner: Option<RunnerHandle>,
}

impl Core {
    /// Starts the core with every projection running in this process.
    pub async fn start(pool: PgPool) -> anyhow::Result<Self> {
        Self::start_with(pool, monkeyci_projections::all(), 500).await
    }

    /// Starts the core with the given projections.
    pub async fn start_with(
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        batch_size: u32,
    ) -> anyhow::Result<Self> {
        let store = EventStore::new(pool);
        let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
        let runner =
            ProjectionRunner::new(store.clone(), feed.clone(), projections, test_runner_config(batch_size)).start();
        Ok(Self {
            commands: CommandHandler::new(store.clone()),
            store,
            feed,
            runner: Some(runner),
        })
    }

    /// Waits until every projection has applied every event committed so far.
    pub async fn caught_up(&self) -> anyhow::Result<()> {
        wait_for_checkpoints(
            &self.store,
            &["orgs", "repos", "builds", "triggers", "secrets", "audit"],
            Duration::from_secs(30),
        )
        .await
    }

    /// Stops the projections.
    pub async fn stop(&mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
    }
}

/// The context of a test user.
pub fn user() -> CommandContext {
    CommandContext::new("user:test")
}

/// Waits, up to `limit`, until every projection checkpoint stored in the database has reached
/// the log head: for projections run by other processes.
pub async fn wait_for_checkpoints(store: &EventStore, names: &[&str], limit: Duration) -> anyhow::Result<()> {
    let head = store.head().await?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let statuses = monkeyci_projections::status(store).await?;
        let behind: Vec<_> = names
            .iter()
            .filter(|n| !statuses.iter().any(|s| s.name == **n && s.checkpoint >= head))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("projections {behind:?} did not reach {head} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the whole log from the start once every event committed so far is readable.
///
/// Reading stops at the oldest transaction still writing anywhere in the cluster (other tests'
/// databases included), so a read right after an append may briefly return less; this waits
/// until the reader reaches the head as of the call.
pub async fn read_whole_log(store: &EventStore) -> anyhow::Result<Vec<monkeyci_eventstore::RecordedEvent>> {
    let head = store.head().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut cursor = monkeyci_eventstore::Cursor::START;
    let mut all = Vec::new();
    while cursor < head {
        let page = store.read_all(cursor, 1000).await?;
        match page.last() {
            Some(last) => cursor = last.cursor,
            None if tokio::time::Instant::now() > deadline => bail!("the log did not reach {head} within 30 s"),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        all.extend(page);
    }
    Ok(all)
}

/// Every row of `table`, as JSON, in a stable order: for comparing read models row by row.
pub async fn table_rows(pool: &PgPool, table: &str, order: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(
        sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}"))
            .fetch_all(pool)
            .await?,
    )
}

/// What [`run_workload`] created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Workload {
    pub orgs: usize,
    pub repos: usize,
    pub builds: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub canceled: usize,
}

/// Drives a realistic mix of commands: orgs with repos, builds with three jobs each that
/// succeed, fail or get canceled, and retries of the failed ones.
pub async fn run_workload(
    commands: &CommandHandler,
    orgs: usize,
    repos_per_org: usize,
    builds_per_repo: usize,
) -> anyhow::Result<Workload> {
    use monkeyci_commands::*;
    use monkeyci_domain::build::{BuildOutcome, TriggerSource};

    let ctx = user();
    let mut done = Workload::default();
    for o in 0..orgs {
        let org_id = commands
            .create_org(
                &ctx,
                CreateOrg {
                    name: format!("Org {o}"),
                    slug: format!("org-{o}-{}", uuid::Uuid::now_v7().simple()),
                },
            )
            .await?;
        done.orgs += 1;
        for r in 0..repos_per_org {
            let repo_id = commands
                .add_repo(
                    &ctx,
                    AddRepo {
                        org_id,
                        name: format!("repo {r}"),
                        git_url: format!("https://git.example/org-{o}/repo-{r}.git"),
                        main_branch: None,
                        labels: [("team".to_owned(), format!("t{}", r % 3))].into(),
                    },
                )
                .await?;
            done.repos += 1;
            for b in 0..builds_per_repo {
                let build_id = commands
                    .trigger_build(
                        &ctx,
                        TriggerBuild {
                            repo_id,
                            source: TriggerSource::Api,
                            branch: (b % 2 == 0).then(|| format!("feature/{b}")),
                            tag: None,
                            commit: Some(format!("{:040x}", b + 1)),
                            params: [("N".to_owned(), b.to_string())].into(),
                            push: None,
                        },
                    )
                    .await?;
                done.builds += 1;
                let job = |job_id: &str, transition: JobTransitionInput| TransitionJob {
                    build_id,
                    job_id: job_id.into(),
                    transition,
                };
                if b % 4 == 3 {
                    commands.cancel_build(&ctx, CancelBuild { build_id }).await?;
                    done.canceled += 1;
                    continue;
                }
                commands
                    .start_build(
                        &ctx,
                        StartBuild {
                            build_id,
                            runner: "runner-1".into(),
                        },
                    )
                    .await?;
                for (id, deps) in [("compile", vec![]), ("test", vec!["compile"]), ("deploy", vec!["test"])] {
                    commands
                        .queue_job(
                            &ctx,
                            QueueJob {
                                build_id,
                                job_id: id.into(),
                                dependencies: deps.into_iter().map(Into::into).collect(),
                            },
                        )
                        .await?;
                }
                commands
                    .transition_job(&ctx, job("compile", JobTransitionInput::Started))
                    .await?;
                commands
                    .transition_job(&ctx, job("compile", JobTransitionInput::Succeeded))
                    .await?;
                commands
                    .transition_job(&ctx, job("test", JobTransitionInput::Started))
                    .await?;
                let failed = b % 4 == 2;
                let outcome = if failed {
                    commands
                        .transition_job(
                            &ctx,
                            job(
                                "test",
                                JobTransitionInput::Failed {
                                    message: "exit 1".into(),
                                },
                            ),
                        )
                        .await?;
                    commands
                        .transition_job(
                            &ctx,
                            job(
                                "deploy",
                                JobTransitionInput::Skipped {
                                    reason: "test failed".into(),
                                },
                            ),
                        )
                        .await?;
                    BuildOutcome::Failed
                } else {
                    commands
                        .transition_job(&ctx, job("test", JobTransitionInput::Succeeded))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Blocked))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Unblocked))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Started))
                        .await?;
                    commands
                        .transition_job(&ctx, job("deploy", JobTransitionInput::Succeeded))
                        .await?;
                    BuildOutcome::Succeeded
                };
                commands
                    .finish_build(
                        &ctx,
                        FinishBuild {
                            build_id,
                            outcome,
                            message: None,
                        },
                    )
                    .await?;
                if failed {
                    done.failed += 1;
                    commands.retry_build(&ctx, RetryBuild { build_id }).await?;
                    done.builds += 1;
                } else {
                    done.succeeded += 1;
                }
            }
        }
    }
    Ok(done)
}

/// Whether `name` is an environment variable that cargo sets for the crate it compiles or the
/// test it runs, rather than one a user sets to configure cargo.
fn set_by_cargo_for_a_test(name: &str) -> bool {
    const SET: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    SET.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

/// The directory of the workspace's binaries (`monkeyci`, `terraform-provider-monkeyci`), built
/// on first use.
///
/// `cargo test` builds only test harnesses for packages without integration tests, so the
/// binaries are built here with the same cargo and target directory as the tests themselves, and
/// the same selection and environment as `cargo test --workspace` from a shell: after that run
/// (or `cargo nextest run --workspace`) this compiles nothing.
fn built_binaries() -> anyhow::Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut dir = std::env::current_exe().map_err(|e| e.to_string())?;
            dir.pop();
            if dir.ends_with("deps") {
                dir.pop();
            }
            let packages = ["monkeyci", "terraform-provider-monkeyci"];
            // The same selection as `cargo test --workspace` (every package, dev-dependencies
            // on), so features unify the same way and what that run compiled is reused: with
            // `-p` only, dependencies whose features differ were compiled a second time while
            // the tests waited.
            let args = ["build", "--quiet", "--workspace", "--all-targets"];
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
            // What cargo sets for this test process would be inherited, and a dependency whose
            // build script reads one of them (ring reads CARGO_MANIFEST_DIR) would count as
            // changed against a `cargo` run from a shell: it and all that depends on it were
            // compiled again at every switch.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if set_by_cargo_for_a_test(&name) {
                    cargo.env_remove(name.as_ref());
                }
            }
            let status = cargo.status().map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err(format!("cargo {} failed: {status}", args.join(" ")));
            }
            match packages.iter().find(|p| !dir.join(p).is_file()) {
                Some(missing) => Err(format!("no {missing} in {}", dir.display())),
                None => Ok(dir),
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A real `monkeyci server` child process on a free port of 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`, as the server announced it.
    pub base: String,
    /// The rest of the server's stdout, kept open so that its later lines do not fail.
    _stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _data: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `monkeyci server` on the database at `url` with the admin token `admin` and a data
    /// directory of its own, and waits (up to 30 s) for the line that says where it listens.
    pub async fn spawn(url: &str, admin: &str) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut server = Self::spawn_in(url, admin, data.path(), &[]).await?;
        server._data = Some(data);
        Ok(server)
    }

    /// Starts `monkeyci server` as [`ServerProcess::spawn`] does, with the data directory `data`
    /// (which outlives the process) and `extra` flags. Container jobs use [`PODMAN_RUNTIME`]
    /// and [`PODMAN_ULIMITS`].
    pub async fn spawn_in(url: &str, admin: &str, data: &std::path::Path, extra: &[&str]) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(monkeyci_binary()?)
            .args(["server", "--lease-retry-ms", "100", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("MONKEYCI_DATABASE_URL", url)
            .env("MONKEYCI_DATA_DIR", data)
            .env("MONKEYCI_ADMIN_TOKEN", admin)
            .env("MONKEYCI_CONTAINER_RUNTIME", PODMAN_RUNTIME)
            .env("MONKEYCI_CONTAINER_ULIMITS", PODMAN_ULIMITS.join(","))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await?? else {
            bail!("the server ended before saying where it listens");
        };
        Ok(Self {
            child,
            base: listen_address(&line),
            _stdout: lines,
            _data: None,
        })
    }
}

/// The OCI runtime the tests' podman uses: podman's default (`crun`) fails on the machines the
/// tests run on (cgroups in hybrid mode).
pub const PODMAN_RUNTIME: &str = "runc";

/// Resource limits every test container gets: those machines refuse podman's defaults.
pub const PODMAN_ULIMITS: [&str; 2] = ["nofile=1024:1024", "nproc=1024:1024"];

/// The executors tests run jobs with: confined host jobs (bubblewrap), and podman containers
/// labelled with `installation`.
pub async fn executor(installation: &str) -> monkeyci_runner::JobExecutor {
    use monkeyci_runner::{ContainerExecutor, HostExecutor, JobExecutor, JobNetwork, JobUser, Sandbox};
    let sandbox = Sandbox::detect(JobUser::default(), JobNetwork::Host).await;
    assert!(sandbox.is_ok(), "cannot confine jobs here: {sandbox:?}");
    let mut host = HostExecutor::confined(sandbox);
    host.grace = Duration::from_millis(500);
    JobExecutor {
        host,
        containers: ContainerExecutor {
            runtime: Some(PODMAN_RUNTIME.into()),
            ulimits: PODMAN_ULIMITS.iter().map(|u| (*u).to_owned()).collect(),
            grace: Duration::from_secs(1),
            ..ContainerExecutor::new("tests", installation)
        },
    }
}

/// The name of a small local image (busybox, with an `/etc/os-release` of its own), imported
/// into podman on first use: no registry is needed.
pub fn test_image() -> anyhow::Result<&'static str> {
    const IMAGE: &str = "localhost/monkeyci-test-busybox:1";
    static MADE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    MADE.get_or_init(|| make_test_image(IMAGE, &[]).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    Ok(IMAGE)
}

/// A local image like [`test_image`]'s with `programs` (name, shell script) added to its
/// `/bin`: stand-ins for the tools of an image the tests cannot fetch (they reach no registry).
/// Its tag is a digest of the programs, so changed scripts make a new image.
pub fn image_with_programs(programs: &[(&str, &str)]) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for (name, script) in programs {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(script.as_bytes());
        digest.update([0]);
    }
    let image = format!(
        "localhost/monkeyci-test-tools:{}",
        &hex::encode(digest.finalize())[..16]
    );
    make_test_image(&image, programs)?;
    Ok(image)
}

fn make_test_image(image: &str, programs: &[(&str, &str)]) -> anyhow::Result<()> {
    let exists = std::process::Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run podman (install it: apt-get install podman runc): {e}"))?;
    if exists.success() {
        return Ok(());
    }
    let busybox = std::path::Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox is missing: install busybox-static");
    }
    let root = tempfile::tempdir()?;
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::create_dir_all(root.path().join("etc"))?;
    std::fs::create_dir_all(root.path().join("tmp"))?;
    std::fs::copy(busybox, bin.join("busybox"))?;
    for (name, script) in programs {
        let path = bin.join(name);
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let applets = std::process::Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    std::fs::write(
        root.path().join("etc/os-release"),
        "NAME=\"MonkeyCI test busybox\"\nID=monkeyci-test\n",
    )?;
    std::fs::write(root.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    let tar = std::process::Command::new("tar")
        .args(["-C"])
        .arg(root.path())
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let imported = std::process::Command::new("podman")
        .args(["import", "--change", "ENV=PATH=/bin", "-", image])
        .stdin(tar.stdout.ok_or_else(|| anyhow::anyhow!("no tar output"))?)
        .output()?;
    if !imported.status.success() {
        bail!("podman import failed: {}", String::from_utf8_lossy(&imported.stderr));
    }
    Ok(())
}

/// The processes of this machine (pid and command line) running `sleep <seconds>` for any of
/// `seconds`: the tests' way to find what a job left behind, whatever its PID namespace.
pub fn sleeping(seconds: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
        if !zombie
            && words.first().is_some_and(|w| w.ends_with("sleep"))
            && words.get(1).is_some_and(|n| seconds.contains(&n.as_str()))
        {
            found.push(format!("{}: {}", entry.file_name().to_string_lossy(), words.join(" ")));
        }
    }
    found
}

/// The UUID inside a Relay global id (`base64url("<Type>:<uuid>")`).
pub fn uuid_of(global: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .expect("base64");
    let text = String::from_utf8(raw).expect("utf8");
    text.split_once(':').expect("kind:uuid").1.to_owned()
}

/// The names of the containers podman has (running or not) with the label `label=value`.
pub fn containers_labelled(label: &str, value: &str) -> Vec<String> {
    let output = std::process::Command::new("podman")
        .args(["ps", "--all", "--filter"])
        .arg(format!("label={label}={value}"))
        .args(["--format", "{{.Names}}"])
        .output()
        .expect("podman ps");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The base URL in the line `monkeyci server` prints first (`… http://127.0.0.1:<port> …`).
pub fn listen_address(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://") && !w.contains("/graphql"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// The path of the real `monkeyci` binary, built from this workspace on first use.
pub fn monkeyci_binary() -> anyhow::Result<std::path::PathBuf> {
    Ok(built_binaries()?.join("monkeyci"))
}

/// The whole server in this process on a free port: projections plus the HTTP API.
#[derive(Debug)]
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub core: Core,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    /// Starts the app with default API settings.
    pub async fn spawn(pool: PgPool) -> anyhow::Result<Self> {
        Self::spawn_with(pool, |_| {}).await
    }

    /// Starts the app after `configure` adjusted the API settings.
    pub async fn spawn_with(
        pool: PgPool,
        configure: impl FnOnce(&mut monkeyci_api::ApiConfig),
    ) -> anyhow::Result<Self> {
        let core = Core::start(pool).await?;
        let mut config = monkeyci_api::ApiConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..monkeyci_api::ApiConfig::default()
        };
        configure(&mut config);
        let server = monkeyci_api::ApiServer::bind(core.store.clone(), core.feed.clone(), config).await?;
        let addr = server.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            core,
            http: reqwest::Client::new(),
            stop: Some(stop),
        })
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a GraphQL request and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(self.url("/graphql"))
            .json(&serde_json::json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// Runs a mutation that returns an id and returns that id, failing on any error.
    pub async fn mutate_id(&self, field: &str, input_type: &str, input: serde_json::Value) -> anyhow::Result<String> {
        let query = format!("mutation($input: {input_type}!) {{ {field}(input: $input) }}");
        let response = self.graphql(&query, serde_json::json!({ "input": input })).await?;
        match response["data"][field].as_str() {
            Some(id) => Ok(id.to_owned()),
            None => bail!("{field} failed: {response}"),
        }
    }

    /// Creates an org and returns its id.
    pub async fn create_org(&self, slug: &str) -> anyhow::Result<String> {
        self.mutate_id(
            "createOrg",
            "CreateOrgInput",
            serde_json::json!({ "name": format!("Org {slug}"), "slug": slug }),
        )
        .await
    }

    /// Creates a repo in an org and returns its id.
    pub async fn create_repo(&self, org_id: &str, name: &str) -> anyhow::Result<String> {
        self.mutate_id(
            "createRepo",
            "CreateRepoInput",
            serde_json::json!({ "orgId": org_id, "name": name, "gitUrl": format!("https://git.example/{name}.git") }),
        )
        .await
    }

    /// Triggers a build of the repo's main branch and returns its id.
    pub async fn trigger_build(&self, repo_id: &str) -> anyhow::Result<String> {
        self.mutate_id(
            "triggerBuild",
            "TriggerBuildInput",
            serde_json::json!({ "repoId": repo_id }),
        )
        .await
    }

    /// Opens a WebSocket speaking graphql-transport-ws (not yet initialised).
    pub async fn websocket(&self) -> anyhow::Result<WsClient> {
        WsClient::connect(&self.addr.to_string()).await
    }

    /// Stops the HTTP server and the projections.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.core.stop().await;
    }
}

/// A graphql-transport-ws client for tests.
#[derive(Debug)]
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent next.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Message(serde_json::Value),
    Closed(u16, String),
}

impl WsClient {
    /// Opens a WebSocket to `ws://{host_port}/graphql` speaking graphql-transport-ws (not yet
    /// initialised).
    pub async fn connect(host_port: &str) -> anyhow::Result<WsClient> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{host_port}/graphql").into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("graphql-transport-ws"),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(WsClient { stream })
    }

    /// Sends one protocol message.
    pub async fn send(&mut self, message: serde_json::Value) -> anyhow::Result<()> {
        use futures::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::text(message.to_string()))
            .await?;
        Ok(())
    }

    /// The next message or the close frame, waiting up to 20 s.
    pub async fn next(&mut self) -> anyhow::Result<WsEvent> {
        match self.next_within(Duration::from_secs(20)).await? {
            Some(event) => Ok(event),
            None => bail!("nothing from the server within 20 s"),
        }
    }

    /// The next message or the close frame, or `None` if nothing arrives within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> anyhow::Result<Option<WsEvent>> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let Ok(item) = tokio::time::timeout(limit, self.stream.next()).await else {
                return Ok(None);
            };
            match item {
                Some(Ok(Message::Text(text))) => {
                    return Ok(Some(WsEvent::Message(serde_json::from_str(text.as_str())?)))
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok(Some(WsEvent::Closed(
                        u16::from(frame.code),
                        frame.reason.as_str().to_owned(),
                    )))
                }
                Some(Ok(Message::Close(None))) | None => return Ok(Some(WsEvent::Closed(1005, String::new()))),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("websocket error: {e}"),
            }
        }
    }

    /// The next message, failing on a close.
    pub async fn message(&mut self) -> anyhow::Result<serde_json::Value> {
        match self.next().await? {
            WsEvent::Message(m) => Ok(m),
            WsEvent::Closed(code, reason) => bail!("closed with {code} {reason:?}"),
        }
    }

    /// Sends `connection_init` and expects `connection_ack`.
    pub async fn init(&mut self) -> anyhow::Result<()> {
        self.init_with(serde_json::Value::Null).await
    }

    /// Sends `connection_init` with `payload` (none if null) and expects `connection_ack`.
    pub async fn init_with(&mut self, payload: serde_json::Value) -> anyhow::Result<()> {
        let mut init = serde_json::json!({ "type": "connection_init" });
        if !payload.is_null() {
            init["payload"] = payload;
        }
        self.send(init).await?;
        let ack = self.message().await?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        Ok(())
    }

    /// Starts an operation with the given id.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: serde_json::Value) -> anyhow::Result<()> {
        self.send(serde_json::json!({
            "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables }
        }))
        .await
    }

    /// The payload of the next `next` message of operation `id`; fails on anything else.
    pub async fn next_data(&mut self, id: &str) -> anyhow::Result<serde_json::Value> {
        let message = self.message().await?;
        if message["type"] != "next" || message["id"] != id {
            bail!("expected next for {id}, got {message}");
        }
        Ok(message["payload"].clone())
    }
}

/// Runs git in `dir` as a test author and returns its output; fails the test if git fails.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The directory holding the `terraform-provider-monkeyci` binary, built from this workspace on
/// first use: what a Terraform `dev_overrides` entry points at.
pub fn terraform_provider_dir() -> anyhow::Result<std::path::PathBuf> {
    built_binaries()
}

/// Runs the Node.js script `web/tests/<script>` (playwright-core driving Debian's chromium) with
/// `args`, and returns the JSON of the last line it printed. Panics, with its output, when it
/// fails.
pub async fn run_browser_script(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");
    assert!(
        std::path::Path::new(web).join("node_modules/playwright-core").is_dir(),
        "the browser tests need `npm ci` in web/ (.ci/run does it)"
    );
    let output = tokio::process::Command::new("node")
        .arg(format!("tests/{script}"))
        .args(args)
        .current_dir(web)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the script's last line is JSON")
}

/// A PostgreSQL cluster of its own, for tests that restart the server or need settings the
/// shared one lacks (e.g. `max_prepared_transactions`). It listens only on a Unix socket in its
/// directory and is stopped when dropped. Made with the `initdb` and `pg_ctl` of the installed
/// PostgreSQL, as the `postgres` user when the tests run as root (initdb refuses root).
#[derive(Debug)]
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    settings: Vec<String>,
}

impl PrivateCluster {
    /// Creates and starts a cluster with `settings` (`name=value`) on top of the defaults.
    pub fn start(settings: &[&str]) -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("monkeyci-pg-").tempdir()?;
        if running_as_root() {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(status.success(), "chown of {} to postgres failed", dir.path().display());
        }
        let cluster = Self {
            dir,
            bin,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "-D",
                &data,
            ],
        )?;
        cluster.pg_ctl("start")?;
        Ok(cluster)
    }

    /// A URL for database `postgres` on the cluster's socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/postgres?host={}",
            self.dir.path().display()
        )
    }

    /// Stops the server (fast shutdown: open sessions are ended) and starts it again.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl("restart")
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let mut options = format!("-c listen_addresses= -k {} -c fsync=off", self.dir.path().display());
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                action, "-w", "-t", "60", "-m", "fast", "-D", &data, "-l", &log, "-o", &options,
            ],
        )
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let output = command.args(args).current_dir(self.dir.path()).output()?;
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            bail!(
                "{program} {args:?} failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &data]);
    }
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest of
/// /usr/lib/postgresql/*/bin (Debian's layout).
fn postgres_bin_dir() -> anyhow::Result<std::path::PathBuf> {
    if let Ok(output) = std::process::Command::new("pg_config").arg("--bindir").output() {
        let dir = std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow::anyhow!("no initdb: neither pg_config --bindir nor /usr/lib/postgresql/*/bin has one"))
}

/// Whether the tests run as root (`id -u` says 0).
pub fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
