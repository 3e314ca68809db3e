//! Scenario 8 (`build-overhead`): what running a build adds to the build's own commands.
//!
//! A `monkeyci server` process of its own (runner on, workspace and data directory in a
//! temporary directory) builds two pipelines of `--build-jobs` jobs whose scripts are `true`,
//! each from a real git repository (`file://` URL): a chain, each job depending on the one
//! before, and independent jobs, started as the server's default parallelism allows. Every build
//! is triggered over HTTP and followed with a `buildUpdated` subscription until its first
//! terminal state. The first job also writes the wall-clock time its process started
//! (`date +%s%N`), which is compared with the wall clock read just before `triggerBuild` was
//! sent. The baselines run the same scripts without MonkeyCI, interleaved with the builds: all in
//! one `sh -e -c`, and one `sh -e -c` per job (as the local executor runs each job), one after
//! the other; and, as a diagnostic, the runner's checkout alone (its git commands). Afterwards
//! the builds' events (`recorded_at`, the database's clock) show where the time went.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::SinkExt;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{default_server_binary, next_json_by, open_ws, Gql, ServerProcess, Ws};
use crate::stats::{ms, Samples};

/// How long one build may take before the scenario gives up.
const BUILD_LIMIT: Duration = Duration::from_secs(120);
/// Pause after each build, so that the runner's clean-up (lease, workspace) is not measured
/// as part of the next build.
const SETTLE: Duration = Duration::from_millis(200);

const BUILD_UPDATED: &str = "subscription($id: ID!) { buildUpdated(buildId: $id) { status message } }";

/// Settings of `build-overhead`.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// Measured builds of each pipeline shape (and baseline runs).
    pub samples: usize,
    /// Jobs per pipeline.
    pub jobs: usize,
    /// The pipelines to build.
    pub shapes: Vec<Shape>,
    pub server_binary: Option<PathBuf>,
    pub server_connections: u32,
}

/// How the jobs of a pipeline depend on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `j02` depends on `j01`, `j03` on `j02`, …
    Chain,
    /// No dependencies.
    Independent,
}

impl Shape {
    pub const ALL: [Shape; 2] = [Shape::Chain, Shape::Independent];

    /// Parses a shape's name (`chain`, `independent`).
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        match Self::ALL.into_iter().find(|s| s.name() == raw) {
            Some(shape) => Ok(shape),
            None => bail!("unknown pipeline {raw:?} (chain, independent)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Independent => "independent",
        }
    }
}

/// The measurements of one pipeline shape.
#[derive(Debug, Clone)]
pub struct ShapeResult {
    pub shape: Shape,
    /// `triggerBuild` sent → the subscriber received the build's terminal state.
    pub finished: Samples,
    /// `triggerBuild` sent → the first job's process started (both wall clock).
    pub first_start: Samples,
    /// Moments of each build, from `triggerBuild` sent, in the order of the build's life.
    pub phases: Vec<(&'static str, Samples)>,
    /// Time between consecutive events of a build's stream, by the two events' types.
    pub gaps: BTreeMap<(String, String), Samples>,
    /// The most jobs running at once (JobStarted to their end), over all builds.
    pub most_running: usize,
    /// Measured builds that ended other than SUCCEEDED (left out of the timings): their
    /// final states.
    pub failures: Vec<String>,
}

/// Everything `build-overhead` measured.
#[derive(Debug, Clone)]
pub struct BuildOverheadResult {
    pub jobs: usize,
    pub samples: usize,
    pub shapes: Vec<ShapeResult>,
    pub baselines: Baselines,
    pub load: (f64, f64),
}

impl BuildOverheadResult {
    /// Measured builds that did not succeed, over all shapes.
    pub fn failures(&self) -> usize {
        self.shapes.iter().map(|s| s.failures.len()).sum()
    }
}

/// A directory of its own below the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let name = format!("monkeyci-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let path = std::env::temp_dir().join(name);
        // The path goes into shell scripts in single quotes.
        if path.to_string_lossy().contains(['\'', '\n']) {
            bail!("the temporary directory {} has a quote in its name", path.display());
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The job ids: `j01`, `j02`, …
fn job_id(i: usize) -> String {
    format!("j{:02}", i + 1)
}

/// The scripts of the jobs: the first writes its start time to `stamp`, the others are `true`.
fn scripts(jobs: usize, stamp: &Path) -> Vec<String> {
    (0..jobs)
        .map(|i| {
            if i == 0 {
                format!("date +%s%N > '{}'", stamp.display())
            } else {
                "true".to_owned()
            }
        })
        .collect()
}

/// `.monkeyci/build.yaml` of a shape: one job per script.
fn pipeline_yaml(shape: Shape, scripts: &[String]) -> String {
    let mut yaml = String::new();
    for (i, script) in scripts.iter().enumerate() {
        // JSON strings are YAML double-quoted scalars.
        let _ = writeln!(yaml, "- id: {}", job_id(i));
        let _ = writeln!(yaml, "  script: [{}]", Value::from(script.as_str()));
        if shape == Shape::Chain && i > 0 {
            let _ = writeln!(yaml, "  dependencies: [{}]", job_id(i - 1));
        }
    }
    yaml
}

/// Runs git in `dir`, failing with git's message.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "monkeyci-bench")
        .env("GIT_AUTHOR_EMAIL", "bench@monkeyci.invalid")
        .env("GIT_COMMITTER_NAME", "monkeyci-bench")
        .env("GIT_COMMITTER_EMAIL", "bench@monkeyci.invalid")
        .stdin(Stdio::null())
        .output()
        .context("cannot run git")?;
    if !output.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The URL of a shape's repository.
fn repo_url(scratch: &Scratch, shape: Shape) -> String {
    format!("file://{}", scratch.path.join(shape.name()).display())
}

/// A git repository at `dir` whose `main` holds the pipeline.
fn create_repo(dir: &Path, pipeline: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join(".monkeyci"))?;
    std::fs::write(dir.join(".monkeyci").join("build.yaml"), pipeline)?;
    git(dir, &["init", "--quiet", "--initial-branch=main"])?;
    git(dir, &["add", "."])?;
    git(dir, &["commit", "--quiet", "-m", "pipeline"])?;
    Ok(())
}

fn wall_ns() -> anyhow::Result<i128> {
    Ok(i128::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos(),
    )?)
}

/// `later - earlier` in nanoseconds as a duration; 0 if negative.
fn since(earlier: i128, later: i128) -> Duration {
    Duration::from_nanos(u64::try_from(later - earlier).unwrap_or(0))
}

/// Reads the start time the first job wrote.
fn read_stamp(path: &Path) -> anyhow::Result<i128> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("the first job did not write {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} holds {text:?}, not nanoseconds", path.display()))
}

/// One measured build.
#[derive(Debug)]
struct BuildSample {
    build: String,
    /// Wall clock just before `triggerBuild` was sent, in ns since the epoch.
    sent: i128,
    answered: Duration,
    finished: Duration,
    /// The first job's process start, wall clock in ns.
    first_start: i128,
}

/// How a build ended.
#[derive(Debug)]
enum Ended {
    Succeeded(BuildSample),
    /// Any other terminal state; the state.
    Other(String),
}

/// Triggers one build of `repo` and follows it over `ws` (operation `op`) until it ends.
async fn one_build(gql: &Gql, ws: &mut Ws, repo: &str, stamp: &Path, op: &str) -> anyhow::Result<Ended> {
    match std::fs::remove_file(stamp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let sent = wall_ns()?;
    let began = Instant::now();
    let build = gql
        .mutate_id("triggerBuild", "TriggerBuildInput", json!({ "repoId": repo }))
        .await?;
    let answered = began.elapsed();
    let subscribe = json!({
        "id": op, "type": "subscribe", "payload": { "query": BUILD_UPDATED, "variables": { "id": build } }
    });
    ws.send(Message::text(subscribe.to_string())).await?;
    let deadline = began + BUILD_LIMIT;
    let state = loop {
        let message = next_json_by(ws, deadline)
            .await
            .with_context(|| format!("build {build} did not finish within {BUILD_LIMIT:?}"))?;
        if message["id"] != op {
            continue;
        }
        if message["type"] != "next" || message["payload"]["errors"].is_array() {
            bail!("subscription to build {build}: {message}");
        }
        let state = &message["payload"]["data"]["buildUpdated"];
        if !matches!(state["status"].as_str(), Some("QUEUED" | "RUNNING")) {
            break state.clone();
        }
    };
    let finished = began.elapsed();
    if state["status"] != "SUCCEEDED" {
        return Ok(Ended::Other(format!("build {build}: {state}")));
    }
    Ok(Ended::Succeeded(BuildSample {
        build,
        sent,
        answered,
        finished,
        first_start: read_stamp(stamp)?,
    }))
}

/// The same work without MonkeyCI.
#[derive(Debug, Clone)]
struct Baseline {
    /// The jobs' scripts, the first writing to a file of its own.
    scripts: Vec<String>,
    /// A repository to check out, and where.
    repo_url: String,
    checkout: PathBuf,
}

/// One run of each baseline.
#[derive(Debug, Clone, Copy)]
struct BaselineRun {
    one_shell: Duration,
    separate: Duration,
    checkout: Duration,
}

impl Baseline {
    /// Runs the scripts in one shell, then each in a shell of its own, then the checkout.
    fn run(&self) -> anyhow::Result<BaselineRun> {
        let sh = |script: &str| -> anyhow::Result<()> {
            let status = Command::new("sh")
                .args(["-e", "-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("sh -e -c {script:?}: {status}");
            }
            Ok(())
        };
        let began = std::time::Instant::now();
        sh(&self.scripts.join("\n"))?;
        let one_shell = began.elapsed();
        let began = std::time::Instant::now();
        for script in &self.scripts {
            sh(script)?;
        }
        let separate = began.elapsed();
        match std::fs::remove_dir_all(&self.checkout) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::create_dir_all(&self.checkout)?;
        let began = std::time::Instant::now();
        // The git commands of runner/src/checkout.rs for a branch without a commit.
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
        Ok(BaselineRun {
            one_shell,
            separate,
            checkout: began.elapsed(),
        })
    }

    async fn run_async(&self) -> anyhow::Result<BaselineRun> {
        let baseline = self.clone();
        tokio::task::spawn_blocking(move || baseline.run()).await?
    }
}

/// The baselines' durations.
#[derive(Debug, Clone, Default)]
pub struct Baselines {
    /// All scripts in one `sh -e -c`.
    pub one_shell: Samples,
    /// One `sh -e -c` per script, one after the other.
    pub separate: Samples,
    /// The runner's git commands checking out the pipeline's repository.
    pub checkout: Samples,
}

/// An event of a build's stream.
#[derive(Debug, sqlx::FromRow)]
struct Event {
    event_type: String,
    job_id: Option<String>,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

impl Event {
    fn ns(&self) -> i128 {
        i128::from(self.recorded_at.timestamp_micros()) * 1000
    }
}

async fn events_of(pool: &PgPool, build: &str) -> anyhow::Result<Vec<Event>> {
    let id = crate::api::build_uuid(build)?;
    Ok(sqlx::query_as(
        "SELECT event_type, data->>'job_id' AS job_id, recorded_at FROM events \
         WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(format!("build-{id}"))
    .fetch_all(pool)
    .await?)
}

/// The moments of a build's life, from `triggerBuild` sent; `None` where an event is missing.
fn phases(sample: &BuildSample, events: &[Event], received: i128) -> Vec<(&'static str, Option<i128>)> {
    let first = |ty: &str| events.iter().find(|e| e.event_type == ty).map(Event::ns);
    let last = |ty: &str| events.iter().rev().find(|e| e.event_type == ty).map(Event::ns);
    let answered = sample.sent + i128::try_from(sample.answered.as_nanos()).unwrap_or(0);
    vec![
        ("`triggerBuild` answered", Some(answered)),
        ("BuildQueued recorded", first("BuildQueued")),
        (
            "BuildStarted recorded (the runner claimed the build)",
            first("BuildStarted"),
        ),
        (
            "first JobQueued recorded (checked out, pipeline read)",
            first("JobQueued"),
        ),
        ("last JobQueued recorded", last("JobQueued")),
        ("first JobStarted recorded", first("JobStarted")),
        (
            "first job's process started (`date` in the job)",
            Some(sample.first_start),
        ),
        ("last JobSucceeded recorded", last("JobSucceeded")),
        ("BuildFinished recorded", first("BuildFinished")),
        ("terminal state received by the subscriber", Some(received)),
    ]
}

/// The most jobs running at once in one build's events.
fn most_running(events: &[Event]) -> usize {
    let mut running = HashSet::new();
    let mut most = 0;
    for event in events {
        let Some(job) = &event.job_id else { continue };
        match event.event_type.as_str() {
            "JobStarted" => {
                running.insert(job.clone());
                most = most.max(running.len());
            }
            "JobSucceeded" | "JobFailed" | "JobCanceled" | "JobSkipped" => {
                running.remove(job);
            }
            _ => {}
        }
    }
    most
}

/// What one shape's builds measured, with their events.
fn analyse(shape: Shape, samples: &[(BuildSample, Vec<Event>)]) -> ShapeResult {
    let mut result = ShapeResult {
        shape,
        finished: Samples::with_capacity(samples.len()),
        first_start: Samples::with_capacity(samples.len()),
        phases: Vec::new(),
        gaps: BTreeMap::new(),
        most_running: 0,
        failures: Vec::new(),
    };
    for (sample, events) in samples {
        result.finished.push(sample.finished);
        result.first_start.push(since(sample.sent, sample.first_start));
        let received = sample.sent + i128::try_from(sample.finished.as_nanos()).unwrap_or(0);
        for (i, (name, at)) in phases(sample, events, received).into_iter().enumerate() {
            if result.phases.len() <= i {
                result.phases.push((name, Samples::default()));
            }
            if let Some(at) = at {
                result.phases[i].1.push(since(sample.sent, at));
            }
        }
        for pair in events.windows(2) {
            result
                .gaps
                .entry((pair[0].event_type.clone(), pair[1].event_type.clone()))
                .or_default()
                .push(since(pair[0].ns(), pair[1].ns()));
        }
        result.most_running = result.most_running.max(most_running(events));
    }
    result
}

/// `build-overhead`: see the module's documentation.
pub async fn run(database: &PgConnectOptions, settings: &BuildSettings) -> anyhow::Result<BuildOverheadResult> {
    let load_before = crate::sys::load_average();
    let scratch = Scratch::create()?;
    let stamp = scratch.path.join("first-start");
    let job_scripts = scripts(settings.jobs, &stamp);
    for &shape in &settings.shapes {
        create_repo(&scratch.path.join(shape.name()), &pipeline_yaml(shape, &job_scripts))?;
    }
    let baseline = Baseline {
        scripts: scripts(settings.jobs, &scratch.path.join("baseline-start")),
        repo_url: repo_url(&scratch, settings.shapes.first().copied().unwrap_or(Shape::Chain)),
        checkout: scratch.path.join("baseline-checkout"),
    };
    let workspace = scratch.path.join("workspace");
    let data = scratch.path.join("data");
    std::fs::create_dir_all(&workspace)?;
    std::fs::create_dir_all(&data)?;

    let binary = match &settings.server_binary {
        Some(path) => path.clone(),
        None => default_server_binary()?,
    };
    let database_url = crate::db::url_of(database);
    eprintln!("  starting {} on {database_url}", binary.display());
    let env = [
        ("MONKEYCI_WORKSPACE", workspace.as_os_str()),
        // The blob store's directory, in servers that have one.
        ("MONKEYCI_DATA_DIR", data.as_os_str()),
        ("MONKEYCI_RUNNER_ID", OsStr::new("bench-runner")),
    ];
    let server = ServerProcess::spawn(&binary, &database_url, settings.server_connections, &env).await?;
    let measured = async {
        let pool = crate::db::connect(database, 2).await?;
        let measured = measure(&server, &pool, &scratch, &stamp, &baseline, settings).await;
        pool.close().await;
        measured
    }
    .await;
    server.stop().await;
    let (shapes, baselines) = measured?;
    Ok(BuildOverheadResult {
        jobs: settings.jobs,
        samples: settings.samples,
        shapes,
        baselines,
        load: (load_before, crate::sys::load_average()),
    })
}

async fn measure(
    server: &ServerProcess,
    pool: &PgPool,
    scratch: &Scratch,
    stamp: &Path,
    baseline: &Baseline,
    settings: &BuildSettings,
) -> anyhow::Result<(Vec<ShapeResult>, Baselines)> {
    let gql = Gql::new(server.addr)?;
    let org = gql
        .mutate_id(
            "createOrg",
            "CreateOrgInput",
            json!({ "name": "Build overhead", "slug": "build-overhead" }),
        )
        .await?;
    let mut repos = Vec::new();
    for &shape in &settings.shapes {
        let input = json!({ "orgId": org, "name": shape.name(), "gitUrl": repo_url(scratch, shape) });
        repos.push(gql.mutate_id("createRepo", "CreateRepoInput", input).await?);
    }
    let mut ws = open_ws(server.addr).await?;
    // One unmeasured round: git, the shell and the server's caches warm up.
    for (shape, repo) in settings.shapes.iter().zip(&repos) {
        let ended = one_build(&gql, &mut ws, repo, stamp, &format!("warm-{}", shape.name()))
            .await
            .with_context(|| format!("warm-up build of the {} pipeline", shape.name()))?;
        if let Ended::Other(state) = ended {
            eprintln!("  warning: the warm-up build did not succeed: {state}");
        }
        tokio::time::sleep(SETTLE).await;
    }
    baseline.run_async().await?;

    let mut builds: Vec<Vec<BuildSample>> = settings.shapes.iter().map(|_| Vec::new()).collect();
    let mut failures: Vec<Vec<String>> = settings.shapes.iter().map(|_| Vec::new()).collect();
    let mut baselines = Baselines::default();
    for i in 0..settings.samples {
        // Interleaved, so that the builds and the baselines see the same load on the machine.
        for (s, (shape, repo)) in settings.shapes.iter().zip(&repos).enumerate() {
            let ended = one_build(&gql, &mut ws, repo, stamp, &format!("{}-{i}", shape.name()))
                .await
                .with_context(|| format!("build {} of the {} pipeline", i + 1, shape.name()))?;
            match ended {
                Ended::Succeeded(sample) => builds[s].push(sample),
                Ended::Other(state) => {
                    eprintln!("  warning: {} build {} did not succeed: {state}", shape.name(), i + 1);
                    failures[s].push(state);
                }
            }
            tokio::time::sleep(SETTLE).await;
        }
        let run = baseline.run_async().await?;
        baselines.one_shell.push(run.one_shell);
        baselines.separate.push(run.separate);
        baselines.checkout.push(run.checkout);
        if (i + 1).is_multiple_of(5) {
            eprintln!("    {} of {} builds of each pipeline", i + 1, settings.samples);
        }
    }
    let _ = ws.close(None).await;

    let mut shapes = Vec::new();
    for ((shape, samples), failures) in settings.shapes.iter().copied().zip(builds).zip(failures) {
        let mut with_events = Vec::with_capacity(samples.len());
        for sample in samples {
            let events = events_of(pool, &sample.build).await?;
            with_events.push((sample, events));
        }
        let mut result = analyse(shape, &with_events);
        result.failures = failures;
        eprintln!(
            "  {}: trigger → finished p50 {:.1} ms, trigger → first job start p50 {:.1} ms",
            shape.name(),
            result.finished.percentile_ms(50.0),
            result.first_start.percentile_ms(50.0)
        );
        shapes.push(result);
    }
    Ok((shapes, baselines))
}

/// The report's tables.
pub fn render(result: &BuildOverheadResult) -> String {
    let mut out = String::new();
    let jobs = result.jobs as f64;
    let Baselines {
        mut one_shell,
        mut separate,
        mut checkout,
    } = result.baselines.clone();
    let one_p50 = one_shell.percentile_ms(50.0);
    let separate_p50 = separate.percentile_ms(50.0);
    let _ = writeln!(
        out,
        "### Running builds: {} jobs of `true`, `monkeyci server` with its runner\n\n\
         {} measured builds of each pipeline (after one unmeasured build each), interleaved with the \
         baselines. Load average {:.1} → {:.1}.\n\n\
         | pipeline | succeeded | trigger → finished p50 ms | p99 ms | max ms | trigger → first job start p50 ms | p99 ms | max ms | \
         overhead per job ms (vs one shell) | (vs one shell per job) | jobs running at once (max) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        result.jobs, result.samples, result.load.0, result.load.1
    );
    for shape in &result.shapes {
        let (mut finished, mut first) = (shape.finished.clone(), shape.first_start.clone());
        let p50 = finished.percentile_ms(50.0);
        let _ = writeln!(
            out,
            "| {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            shape.shape.name(),
            finished.len(),
            finished.len() + shape.failures.len(),
            ms(p50),
            ms(finished.percentile_ms(99.0)),
            ms(finished.max_ms()),
            ms(first.percentile_ms(50.0)),
            ms(first.percentile_ms(99.0)),
            ms(first.max_ms()),
            ms((p50 - one_p50) / jobs),
            ms((p50 - separate_p50) / jobs),
            shape.most_running,
        );
    }
    for shape in &result.shapes {
        if let Some(first) = shape.failures.first() {
            let _ = writeln!(
                out,
                "
{} of the {} builds did not succeed (left out of the timings), e.g. {first}",
                shape.failures.len(),
                shape.shape.name()
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| baseline (no MonkeyCI) | samples | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|"
    );
    for (name, samples) in [
        ("one `sh -e -c` running all of them", &mut one_shell),
        ("one `sh -e -c` per job, one after the other", &mut separate),
        (
            "diagnostic: the runner's checkout alone (its 5 git commands, `file://`, depth 1)",
            &mut checkout,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            samples.len(),
            ms(samples.percentile_ms(50.0)),
            ms(samples.percentile_ms(99.0)),
            ms(samples.max_ms()),
        );
    }
    for shape in &result.shapes {
        let _ = writeln!(
            out,
            "\n#### Where the time goes: {} pipeline\n\n\
             | moment (event times are the database's `recorded_at`) | p50 ms after `triggerBuild` was sent | p99 ms |\n\
             |---|---:|---:|",
            shape.shape.name()
        );
        for (name, samples) in &shape.phases {
            let mut samples = samples.clone();
            let _ = writeln!(
                out,
                "| {name} | {} | {} |",
                ms(samples.percentile_ms(50.0)),
                ms(samples.percentile_ms(99.0))
            );
        }
        let _ = writeln!(
            out,
            "\n| from event → next event of the build | per build | p50 ms | p99 ms | ms per build (mean) |\n\
             |---|---:|---:|---:|---:|"
        );
        let builds = shape.finished.len().max(1) as f64;
        let mut gaps: Vec<_> = shape.gaps.iter().map(|(k, v)| (k, v.clone())).collect();
        gaps.sort_by_key(|(_, samples)| std::cmp::Reverse(samples.total()));
        for ((from, to), mut samples) in gaps {
            let _ = writeln!(
                out,
                "| {from} → {to} | {:.1} | {} | {} | {} |",
                samples.len() as f64 / builds,
                ms(samples.percentile_ms(50.0)),
                ms(samples.percentile_ms(99.0)),
                ms(samples.total().as_secs_f64() * 1000.0 / builds),
            );
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_chain_or_leave_the_jobs_independent() {
        let scripts = scripts(3, Path::new("/tmp/x/first-start"));
        assert_eq!(scripts[0], "date +%s%N > '/tmp/x/first-start'");
        assert_eq!(scripts[2], "true");
        let chain = pipeline_yaml(Shape::Chain, &scripts);
        assert_eq!(
            chain,
            "- id: j01\n  script: [\"date +%s%N > '/tmp/x/first-start'\"]\n\
             - id: j02\n  script: [\"true\"]\n  dependencies: [j01]\n\
             - id: j03\n  script: [\"true\"]\n  dependencies: [j02]\n"
        );
        assert!(!pipeline_yaml(Shape::Independent, &scripts).contains("dependencies"));
    }

    #[test]
    fn pipelines_parse_as_monkeyci_pipelines() -> anyhow::Result<()> {
        let scripts = scripts(20, Path::new("/tmp/x/first-start"));
        for shape in Shape::ALL {
            let pipeline = monkeyci_domain::pipeline::parse(".monkeyci/build.yaml", &pipeline_yaml(shape, &scripts))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert_eq!(pipeline.jobs().len(), 20);
        }
        Ok(())
    }

    #[test]
    fn most_running_counts_overlapping_jobs() {
        let at = chrono::Utc::now();
        let event = |ty: &str, job: &str| Event {
            event_type: ty.to_owned(),
            job_id: Some(job.to_owned()),
            recorded_at: at,
        };
        let events = [
            event("JobStarted", "a"),
            event("JobStarted", "b"),
            event("JobSucceeded", "a"),
            event("JobStarted", "c"),
            event("JobSucceeded", "b"),
            event("JobSucceeded", "c"),
        ];
        assert_eq!(most_running(&events), 2);
    }
}
