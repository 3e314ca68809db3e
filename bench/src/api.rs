//! Scenarios 5–7: the GraphQL API, over real HTTP and WebSocket connections on loopback.
//!
//! - `api-mutations`: `triggerBuild` from concurrent HTTP clients, closed loop, and paced
//!   (open loop: each request has a scheduled start and its latency counts from there, so a
//!   stalled server is not hidden by clients that wait for it).
//! - `api-updates`: a `buildUpdated` subscriber's delay, from a change of the build returning to
//!   the subscriber receiving the build's new state.
//! - `api-fanout`: many WebSocket subscribers of one build on a `monkeyci server` process of its
//!   own: the server's memory, and how long one change takes to reach all of them.
//!
//! `api-mutations` and `api-updates` run the API server, the projections and the clients in this
//! process, as the end-to-end tests do.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use monkeyci_api::{ApiConfig, ApiServer};
use monkeyci_commands::{
    CommandContext, CommandHandler, FinishBuild, JobTransitionInput, QueueJob, StartBuild, TransitionJob,
};
use monkeyci_domain::build::BuildOutcome;
use monkeyci_domain::BuildId;
use monkeyci_eventstore::{EventFeed, EventStore, FeedConfig};
use monkeyci_projections::{ProjectionRunner, Role, RunnerHandle};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::lag::runner_config;
use crate::stats::Samples;
use crate::sys::Memory;

/// Repos the `triggerBuild` clients take turns on.
const REPOS: usize = 8;
/// Requests of the paced run that may be in flight at once.
const MAX_IN_FLIGHT: usize = 1024;
/// The clients' WebSocket read buffer.
const CLIENT_READ_BUFFER: usize = 8 * 1024;
/// How long one expected WebSocket message may take before it counts as missing.
const MESSAGE_LIMIT: Duration = Duration::from_secs(10);

const TRIGGER: &str = "mutation($input: TriggerBuildInput!) { triggerBuild(input: $input) }";
const BUILD_UPDATED: &str =
    "subscription($id: ID!) { buildUpdated(buildId: $id) { status cancelRequested jobCounts { total running succeeded } } }";

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One `triggerBuild` run.
#[derive(Debug, Clone)]
pub struct MutationRun {
    /// `closed loop, 16 clients` or `paced, 500/s`.
    pub shape: String,
    pub requests: u64,
    /// Responses without an id (GraphQL errors) or failed requests.
    pub errors: u64,
    pub seconds: f64,
    pub latency: Samples,
    pub load: (f64, f64),
}

impl MutationRun {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Subscriber delays of one kind of change.
#[derive(Debug, Clone)]
pub struct UpdateRun {
    /// How the build was changed.
    pub change: &'static str,
    /// How long the change itself took.
    pub change_latency: Samples,
    /// Change returned → the subscriber received the new state.
    pub delivery: Samples,
    /// Changes whose new state did not arrive within `MESSAGE_LIMIT`.
    pub missing: usize,
    pub load: (f64, f64),
}

/// Many subscribers of one build on a server process of its own.
#[derive(Debug, Clone)]
pub struct FanoutResult {
    pub subscribers: usize,
    /// Connections that were initialised.
    pub connected: usize,
    /// Subscribers that got their first state.
    pub subscribed: usize,
    pub connect_seconds: f64,
    pub subscribe_seconds: f64,
    pub server_connections: u32,
    pub before: Memory,
    /// With every connection open and initialised, before any subscription.
    pub connected_memory: Memory,
    pub subscribed_memory: Memory,
    pub after: Memory,
    /// This process (the clients) once everybody was subscribed.
    pub client_memory: Memory,
    pub open_files_limit: u64,
    pub rounds: Vec<FanoutRound>,
    pub load: (f64, f64),
}

/// One change of the build and its delivery to every subscriber.
#[derive(Debug, Clone)]
pub struct FanoutRound {
    pub change: &'static str,
    pub delivered: usize,
    /// Change returned → each subscriber received the new state.
    pub delivery: Samples,
}

/// The admin token of every server the benchmarks start; servers embedded in the benchmark
/// run without authentication and ignore it.
pub(crate) const ADMIN_TOKEN: &str = "mci_benchmark_admin_token";

/// A GraphQL-over-HTTP client acting as the admin.
#[derive(Debug, Clone)]
pub(crate) struct Gql {
    http: reqwest::Client,
    /// `http://<addr>`.
    base: String,
}

impl Gql {
    pub(crate) fn new(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()?,
            base: format!("http://{addr}"),
        })
    }

    async fn post(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// Runs a mutation that returns an id.
    pub(crate) async fn mutate_id(&self, field: &str, input_type: &str, input: Value) -> anyhow::Result<String> {
        let query = format!("mutation($input: {input_type}!) {{ {field}(input: $input) }}");
        let response = self.post(&query, json!({ "input": input })).await?;
        match response["data"][field].as_str() {
            Some(id) => Ok(id.to_owned()),
            None => bail!("{field} failed: {response}"),
        }
    }

    /// A job's whole output, as `GET /builds/<build>/jobs/<job>/log` serves it.
    pub(crate) async fn job_log(&self, build: &str, job: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/builds/{build}/jobs/{job}/log", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("the log of {job} of build {build}: {status}: {}", text.trim());
        }
        Ok(text)
    }

    /// An org with `repos` repos; their ids.
    async fn org_with_repos(&self, slug: &str, repos: usize) -> anyhow::Result<Vec<String>> {
        let org = self
            .mutate_id(
                "createOrg",
                "CreateOrgInput",
                json!({ "name": format!("Org {slug}"), "slug": slug }),
            )
            .await?;
        let mut ids = Vec::new();
        for r in 0..repos {
            ids.push(
                self.mutate_id(
                    "createRepo",
                    "CreateRepoInput",
                    json!({ "orgId": org, "name": format!("repo-{r}"), "gitUrl": format!("https://git.example/{slug}/repo-{r}.git") }),
                )
                .await?,
            );
        }
        Ok(ids)
    }

    async fn trigger_build(&self, repo: &str) -> anyhow::Result<String> {
        self.mutate_id("triggerBuild", "TriggerBuildInput", json!({ "repoId": repo }))
            .await
    }
}

/// The uuid inside a build's global id (`base64url("Build:<uuid>")`).
pub(crate) fn build_uuid(id: &str) -> anyhow::Result<BuildId> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .with_context(|| format!("{id:?} is not a global id"))?;
    let text = String::from_utf8(raw)?;
    let uuid = text
        .strip_prefix("Build:")
        .with_context(|| format!("{text:?} is not a build id"))?;
    Ok(uuid.parse()?)
}

/// The API server, the event feed and every projection in this process.
struct App {
    addr: std::net::SocketAddr,
    commands: CommandHandler,
    runner: RunnerHandle,
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl App {
    async fn start(pool: &PgPool, batch_size: u32) -> anyhow::Result<Self> {
        let store = EventStore::new(pool.clone());
        let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
        let runner = ProjectionRunner::new(
            store.clone(),
            feed.clone(),
            monkeyci_projections::all(),
            runner_config(batch_size),
        )
        .start();
        for name in ["orgs", "repos", "builds"] {
            let mut role = runner.role(name).with_context(|| format!("no projection {name}"))?;
            tokio::time::timeout(Duration::from_secs(30), role.wait_for(|r| *r == Role::Active))
                .await
                .with_context(|| format!("projection {name} did not become active"))?
                .with_context(|| format!("projection {name} stopped"))?;
        }
        let config = ApiConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ApiConfig::default()
        };
        let server = ApiServer::bind(store.clone(), feed, config).await?;
        let addr = server.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            commands: CommandHandler::new(store),
            runner,
            stop,
            serving,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        // Open WebSockets keep a graceful shutdown waiting; they are closed by now.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.serving).await;
        self.runner.shutdown().await;
    }
}

/// Settings of the API scenarios.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub warmup: Duration,
    pub seconds: Duration,
    pub clients: Vec<usize>,
    pub rate: f64,
    pub update_samples: usize,
    pub batch_size: u32,
}

/// `api-mutations`: closed-loop runs for each client count, then the paced run.
pub async fn mutations(pool: &PgPool, settings: &ApiSettings) -> anyhow::Result<Vec<MutationRun>> {
    let app = App::start(pool, settings.batch_size).await?;
    let result = async {
        let gql = Gql::new(app.addr)?;
        let repos: Arc<[String]> = gql.org_with_repos("mutations", REPOS).await?.into();
        let mut runs = Vec::new();
        for &clients in &settings.clients {
            let load_before = crate::sys::load_average();
            let mut run = closed_loop(&gql, &repos, clients, settings.warmup, settings.seconds).await?;
            run.load = (load_before, crate::sys::load_average());
            eprintln!(
                "  triggerBuild, {clients} clients: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {} errors",
                run.rate(),
                run.latency.percentile_ms(50.0),
                run.latency.percentile_ms(99.0),
                run.errors
            );
            runs.push(run);
        }
        let load_before = crate::sys::load_average();
        let mut run = paced(&gql, &repos, settings.rate, settings.warmup, settings.seconds).await?;
        run.load = (load_before, crate::sys::load_average());
        eprintln!(
            "  triggerBuild, paced at {:.0}/s: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {} errors",
            settings.rate,
            run.rate(),
            run.latency.percentile_ms(50.0),
            run.latency.percentile_ms(99.0),
            run.errors
        );
        runs.push(run);
        anyhow::Ok(runs)
    }
    .await;
    app.stop().await;
    result
}

async fn trigger_once(gql: &Gql, repo: &str) -> bool {
    match gql.post(TRIGGER, json!({ "input": { "repoId": repo } })).await {
        Ok(response) => response["data"]["triggerBuild"].is_string(),
        Err(_) => false,
    }
}

async fn closed_loop(
    gql: &Gql,
    repos: &Arc<[String]>,
    clients: usize,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<MutationRun> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + seconds;
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let (gql, repos) = (gql.clone(), repos.clone());
        tasks.spawn(async move {
            let mut latency = Samples::with_capacity(4096);
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut i = c;
            while Instant::now() < end {
                let repo = &repos[i % repos.len()];
                i += 1;
                let began = Instant::now();
                let ok = trigger_once(&gql, repo).await;
                let done = Instant::now();
                if done >= measure_from && done <= end {
                    requests += 1;
                    errors += u64::from(!ok);
                    latency.push(done - began);
                }
            }
            (requests, errors, latency)
        });
    }
    let mut run = MutationRun {
        shape: format!("closed loop, {clients} clients"),
        requests: 0,
        errors: 0,
        seconds: seconds.as_secs_f64(),
        latency: Samples::with_capacity(65536),
        load: (f64::NAN, f64::NAN),
    };
    while let Some(joined) = tasks.join_next().await {
        let (requests, errors, latency) = joined.context("a client panicked")?;
        run.requests += requests;
        run.errors += errors;
        run.latency.extend(latency);
    }
    Ok(run)
}

async fn paced(
    gql: &Gql,
    repos: &Arc<[String]>,
    rate: f64,
    warmup: Duration,
    seconds: Duration,
) -> anyhow::Result<MutationRun> {
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + warmup;
    let total = ((warmup + seconds).as_secs_f64() * rate).floor() as u64;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let (sent, mut received) = mpsc::unbounded_channel::<(Instant, Duration, bool)>();
    for i in 0..total {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (gql, sent) = (gql.clone(), sent.clone());
        let repo = repos[(i as usize) % repos.len()].clone();
        tokio::spawn(async move {
            let ok = trigger_once(&gql, &repo).await;
            // From the scheduled start: time spent waiting for a free slot counts.
            let _ = sent.send((scheduled, scheduled.elapsed(), ok));
            drop(permit);
        });
    }
    drop(sent);
    let mut run = MutationRun {
        shape: format!("paced, {rate:.0}/s (open loop)"),
        requests: 0,
        errors: 0,
        seconds: seconds.as_secs_f64(),
        latency: Samples::with_capacity(total as usize),
        load: (f64::NAN, f64::NAN),
    };
    while let Some((scheduled, latency, ok)) = received.recv().await {
        if scheduled >= measure_from {
            run.requests += 1;
            run.errors += u64::from(!ok);
            run.latency.push(latency);
        }
    }
    Ok(run)
}

/// Opens a WebSocket speaking graphql-transport-ws and initialises it.
pub(crate) async fn open_ws(addr: std::net::SocketAddr) -> anyhow::Result<Ws> {
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // tungstenite's default 128 KiB read buffer is zero-filled on the first read: 1.25 GiB for
    // 10,000 clients. The clients read small messages only.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {ADMIN_TOKEN}") } });
    ws.send(Message::text(init.to_string())).await?;
    let ack = next_json(&mut ws).await?;
    if ack["type"] != "connection_ack" {
        bail!("expected connection_ack, got {ack}");
    }
    Ok(ws)
}

/// The next text message as JSON, within `MESSAGE_LIMIT`.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    next_json_by(ws, Instant::now() + MESSAGE_LIMIT).await
}

/// The next text message as JSON, by `deadline`.
pub(crate) async fn next_json_by(ws: &mut Ws, deadline: Instant) -> anyhow::Result<Value> {
    loop {
        let item = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no message within the limit")?;
        match item {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            None => bail!("the connection ended"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("websocket error: {e}"),
        }
    }
}

async fn subscribe(ws: &mut Ws, id: &str, build: &str) -> anyhow::Result<()> {
    let message = json!({
        "id": id, "type": "subscribe", "payload": { "query": BUILD_UPDATED, "variables": { "id": build } }
    });
    ws.send(Message::text(message.to_string())).await?;
    Ok(())
}

/// The next `next` payload of operation `id`, skipping other operations' messages.
async fn next_state(ws: &mut Ws, id: &str) -> anyhow::Result<Value> {
    loop {
        let message = next_json(ws).await?;
        if message["id"] != id {
            continue;
        }
        if message["type"] != "next" {
            bail!("expected next for {id}, got {message}");
        }
        return Ok(message["payload"]["data"]["buildUpdated"].clone());
    }
}

/// `api-updates`: for each sample, a new build and a subscription to it, then two changes
/// timed one after the other: the runner's `start_build` through the command handler, then the
/// `cancelBuild` mutation over HTTP.
pub async fn updates(pool: &PgPool, settings: &ApiSettings) -> anyhow::Result<Vec<UpdateRun>> {
    let app = App::start(pool, settings.batch_size).await?;
    let result = async {
        let gql = Gql::new(app.addr)?;
        let repo = gql.org_with_repos("updates", 1).await?.pop().context("no repo")?;
        let ctx = CommandContext::new("runner:bench");
        let mut ws = open_ws(app.addr).await?;
        let n = settings.update_samples;
        let mut started = UpdateRun {
            change: "CommandHandler::start_build (in the server's process)",
            change_latency: Samples::with_capacity(n),
            delivery: Samples::with_capacity(n),
            missing: 0,
            load: (crate::sys::load_average(), f64::NAN),
        };
        let mut canceled = UpdateRun {
            change: "`cancelBuild` mutation over HTTP",
            change_latency: Samples::with_capacity(n),
            delivery: Samples::with_capacity(n),
            missing: 0,
            load: started.load,
        };
        for i in 0..n {
            let id = format!("s{i}");
            let build = gql.trigger_build(&repo).await?;
            subscribe(&mut ws, &id, &build).await?;
            let first = next_state(&mut ws, &id).await?;
            if first["status"] != "QUEUED" {
                bail!("a new build is {first}");
            }
            let began = Instant::now();
            app.commands
                .start_build(
                    &ctx,
                    StartBuild {
                        build_id: build_uuid(&build)?,
                        runner: "runner-1".into(),
                    },
                )
                .await?;
            let returned = Instant::now();
            started.change_latency.push(returned - began);
            match next_state(&mut ws, &id).await {
                Ok(state) if state["status"] == "RUNNING" => started.delivery.push(returned.elapsed()),
                Ok(state) => bail!("expected RUNNING, got {state}"),
                Err(_) => started.missing += 1,
            }
            let began = Instant::now();
            gql.mutate_id("cancelBuild", "BuildInput", json!({ "id": build }))
                .await?;
            let returned = Instant::now();
            canceled.change_latency.push(returned - began);
            match next_state(&mut ws, &id).await {
                Ok(state) if state["cancelRequested"] == true => canceled.delivery.push(returned.elapsed()),
                Ok(state) => bail!("expected cancelRequested, got {state}"),
                Err(_) => canceled.missing += 1,
            }
            ws.send(Message::text(json!({ "type": "complete", "id": id }).to_string()))
                .await?;
            if (i + 1).is_multiple_of(100) {
                eprintln!("    {} samples", i + 1);
            }
        }
        let _ = ws.close(None).await;
        let load_after = crate::sys::load_average();
        started.load.1 = load_after;
        canceled.load.1 = load_after;
        anyhow::Ok(vec![started, canceled])
    }
    .await;
    app.stop().await;
    result
}

/// Settings of `api-fanout`.
#[derive(Debug, Clone)]
pub struct FanoutSettings {
    pub subscribers: usize,
    pub server_binary: Option<PathBuf>,
    pub server_connections: u32,
    /// Subscribers connecting at once.
    pub connect_concurrency: usize,
}

/// The `monkeyci` binary next to this one (both are built into the same target directory).
pub(crate) fn default_server_binary() -> anyhow::Result<PathBuf> {
    let mut dir = std::env::current_exe()?;
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir.join("monkeyci"))
}

/// A `monkeyci server` process, killed when dropped.
pub(crate) struct ServerProcess {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) addr: std::net::SocketAddr,
}

impl ServerProcess {
    /// Starts `binary server` on a free port of 127.0.0.1 with `env` on top of the database
    /// settings, and waits until it answers `/health`.
    pub(crate) async fn spawn(
        binary: &Path,
        database_url: &str,
        connections: u32,
        env: &[(&str, &OsStr)],
    ) -> anyhow::Result<Self> {
        // A free port: bind, note it, release it for the server.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = tokio::process::Command::new(binary)
            .args(["server", "--listen", &addr.to_string()])
            .env("MONKEYCI_DATABASE_URL", database_url)
            .env("MONKEYCI_DATABASE_CONNECTIONS", connections.to_string())
            .env("MONKEYCI_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {} (build it with `cargo build --release -p monkeyci`, or pass --server-binary)",
                    binary.display()
                )
            })?;
        let pid = child.id().context("the server exited at once")?;
        let server = Self { child, pid, addr };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthy = http
                .get(format!("http://{addr}/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server at {addr} did not answer /health within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// What a subscriber reports to the collector.
enum Note {
    /// Connected and initialised, not subscribed yet.
    Connected,
    Subscribed,
    /// The time a `next` message arrived and the message.
    Update(Instant, String),
    Failed(String),
}

async fn subscriber(
    addr: std::net::SocketAddr,
    build: Arc<str>,
    notes: mpsc::UnboundedSender<Note>,
    connecting: Arc<Semaphore>,
    mut go: watch::Receiver<bool>,
) {
    let outcome = async {
        let permit = connecting.clone().acquire_owned().await?;
        let mut ws = open_ws(addr).await?;
        drop(permit);
        let _ = notes.send(Note::Connected);
        // Everybody connects first, so the server's memory can be taken with idle connections.
        go.wait_for(|go| *go).await?;
        let permit = connecting.acquire_owned().await?;
        subscribe(&mut ws, "b", &build).await?;
        let first = next_state(&mut ws, "b").await?;
        if first["status"] != "QUEUED" {
            bail!("first state {first}");
        }
        drop(permit);
        let _ = notes.send(Note::Subscribed);
        // Only the arrival time is taken here; the collector reads the message later.
        while let Some(item) = ws.next().await {
            match item? {
                Message::Text(text) => {
                    let at = Instant::now();
                    // The subscription is over. The client keeps its connection, as a web UI
                    // that shows the finished build does, until the bench has collected every
                    // delivery and aborts all clients: 10,000 clients tearing down their
                    // connections at once would take the two cores from the deliveries still
                    // being timed (the bench's clients share the machine with the server).
                    if text.as_str().contains("\"complete\"") {
                        std::future::pending::<()>().await;
                    }
                    let _ = notes.send(Note::Update(at, text.as_str().to_owned()));
                }
                Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                _ => {}
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let _ = notes.send(Note::Failed(format!("{error:#}")));
    }
}

/// `api-fanout`: `subscribers` WebSocket connections to one `monkeyci server`, each subscribed to
/// `buildUpdated` of the same build; then the build goes through its life, one change at a
/// time, and each change's delivery to every subscriber is timed.
pub async fn fanout(database: &PgConnectOptions, settings: &FanoutSettings) -> anyhow::Result<FanoutResult> {
    let open_files_limit = crate::sys::raise_open_files_limit()?;
    let needed = settings.subscribers as u64 + 512;
    if open_files_limit < needed {
        bail!(
            "{} subscribers need about {needed} open files in this process and in the server, but the limit \
             is {open_files_limit}: raise it (`ulimit -n {needed}` as root, or the hard limit in \
             /etc/security/limits.conf) or lower --subscribers",
            settings.subscribers
        );
    }
    let binary = match &settings.server_binary {
        Some(path) => path.clone(),
        None => default_server_binary()?,
    };
    let database_url = crate::db::url_of(database);
    eprintln!("  starting {} on {database_url}", binary.display());
    // The bench plays the runner: the server must not claim the build itself.
    let no_runner = [("MONKEYCI_NO_RUNNER", OsStr::new("true"))];
    let server = ServerProcess::spawn(&binary, &database_url, settings.server_connections, &no_runner).await?;
    // The bench appends the build's changes as a runner would, from its own process.
    let result = match crate::db::connect(database, 4).await {
        Ok(pool) => {
            let result = fanout_with(&pool, &server, settings, open_files_limit).await;
            pool.close().await;
            result
        }
        Err(error) => Err(error),
    };
    server.stop().await;
    result
}

async fn fanout_with(
    pool: &PgPool,
    server: &ServerProcess,
    settings: &FanoutSettings,
    open_files_limit: u64,
) -> anyhow::Result<FanoutResult> {
    let load_before = crate::sys::load_average();
    let gql = Gql::new(server.addr)?;
    let repo = gql.org_with_repos("fanout", 1).await?.pop().context("no repo")?;
    let build: Arc<str> = gql.trigger_build(&repo).await?.into();
    let build_id = build_uuid(&build)?;
    // Let the server settle (projections caught up, allocator warm) before taking its size.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Memory::of(Some(server.pid))?;
    eprintln!(
        "  server pid {} at {} MiB; opening {} subscribers…",
        server.pid,
        crate::sys::mib(before.rss_kib),
        settings.subscribers
    );

    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let connecting = Arc::new(Semaphore::new(settings.connect_concurrency));
    let (go, go_rx) = watch::channel(false);
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..settings.subscribers {
        clients.spawn(subscriber(
            server.addr,
            build.clone(),
            notes_tx.clone(),
            connecting.clone(),
            go_rx.clone(),
        ));
    }
    drop(notes_tx);
    let (mut connected, mut failed) = (0usize, Vec::new());
    let setup_deadline = Instant::now() + Duration::from_secs(300);
    while connected + failed.len() < settings.subscribers {
        match tokio::time::timeout_at(setup_deadline, notes.recv()).await {
            Ok(Some(Note::Connected)) => connected += 1,
            Ok(Some(Note::Failed(e))) => failed.push(e),
            Ok(Some(_)) => bail!("a subscriber went ahead of the others"),
            Ok(None) | Err(_) => break,
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!("  {connected} connected in {connect_seconds:.1} s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected_memory = Memory::of(Some(server.pid))?;
    eprintln!(
        "  server at {} MiB with {connected} idle connections; subscribing…",
        crate::sys::mib(connected_memory.rss_kib)
    );
    let started = Instant::now();
    go.send_replace(true);
    let mut subscribed = 0usize;
    while subscribed + failed.len() < settings.subscribers {
        match tokio::time::timeout_at(setup_deadline, notes.recv()).await {
            Ok(Some(Note::Connected)) => {}
            Ok(Some(Note::Subscribed)) => {
                subscribed += 1;
                if subscribed.is_multiple_of(2000) {
                    eprintln!("    {subscribed} subscribed ({:.1} s)", started.elapsed().as_secs_f64());
                }
            }
            Ok(Some(Note::Failed(e))) => failed.push(e),
            Ok(Some(Note::Update(..))) => bail!("an update arrived before any change"),
            Ok(None) | Err(_) => break,
        }
    }
    let subscribe_seconds = started.elapsed().as_secs_f64();
    if !failed.is_empty() {
        eprintln!("  {} subscribers failed, e.g. {}", failed.len(), failed[0]);
    }
    eprintln!("  {subscribed} subscribed in {subscribe_seconds:.1} s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let subscribed_memory = Memory::of(Some(server.pid))?;
    let client_memory = Memory::of(None)?;
    eprintln!(
        "  server at {} MiB (peak {} MiB) with {subscribed} subscribers",
        crate::sys::mib(subscribed_memory.rss_kib),
        crate::sys::mib(subscribed_memory.peak_kib)
    );

    let commands = CommandHandler::new(EventStore::new(pool.clone()));
    let ctx = CommandContext::new("runner:bench");
    let transition = |transition| TransitionJob {
        build_id,
        job_id: "unit".into(),
        transition,
    };
    let mut rounds = Vec::new();
    for change in [
        "start_build",
        "queue_job",
        "job started",
        "job succeeded",
        "finish_build (subscriptions complete)",
    ] {
        let result = match change {
            "start_build" => {
                commands
                    .start_build(
                        &ctx,
                        StartBuild {
                            build_id,
                            runner: "runner-1".into(),
                        },
                    )
                    .await
            }
            "queue_job" => {
                commands
                    .queue_job(
                        &ctx,
                        QueueJob {
                            build_id,
                            job_id: "unit".into(),
                            dependencies: vec![],
                        },
                    )
                    .await
            }
            "job started" => {
                commands
                    .transition_job(&ctx, transition(JobTransitionInput::Started))
                    .await
            }
            "job succeeded" => {
                commands
                    .transition_job(&ctx, transition(JobTransitionInput::Succeeded))
                    .await
            }
            _ => {
                commands
                    .finish_build(
                        &ctx,
                        FinishBuild {
                            build_id,
                            outcome: BuildOutcome::Succeeded,
                            message: None,
                        },
                    )
                    .await
            }
        };
        result.with_context(|| format!("{change} failed"))?;
        let returned = Instant::now();
        let mut round = FanoutRound {
            change,
            delivered: 0,
            delivery: Samples::with_capacity(subscribed),
        };
        let mut messages = Vec::with_capacity(subscribed);
        let deadline = returned + Duration::from_secs(60);
        while round.delivered < subscribed {
            match tokio::time::timeout_at(deadline, notes.recv()).await {
                Ok(Some(Note::Update(at, message))) => {
                    round.delivered += 1;
                    round.delivery.push(at.saturating_duration_since(returned));
                    messages.push(message);
                }
                Ok(Some(Note::Failed(e))) => failed.push(e),
                Ok(Some(Note::Subscribed | Note::Connected)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // Every subscriber must have received a `next` with data, and all the same state.
        let states: std::collections::HashSet<String> = messages
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(m).unwrap_or(Value::Null);
                v["payload"]["data"]["buildUpdated"].to_string()
            })
            .collect();
        if states.len() != 1 || states.contains("null") {
            eprintln!(
                "  warning: {change}: subscribers saw {} different states: {states:?}",
                states.len()
            );
        }
        eprintln!(
            "  {change}: {} of {subscribed} delivered, p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            round.delivered,
            round.delivery.percentile_ms(50.0),
            round.delivery.percentile_ms(99.0),
            round.delivery.max_ms()
        );
        rounds.push(round);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = Memory::of(Some(server.pid))?;
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    Ok(FanoutResult {
        subscribers: settings.subscribers,
        connected,
        subscribed,
        connect_seconds,
        subscribe_seconds,
        server_connections: settings.server_connections,
        before,
        connected_memory,
        subscribed_memory,
        after,
        client_memory,
        open_files_limit,
        rounds,
        load: (load_before, crate::sys::load_average()),
    })
}
