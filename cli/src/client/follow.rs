//! Following builds and logs live over the `buildUpdated` and `jobLog` subscriptions, across
//! dropped connections and server restarts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::{Incoming, Subscriptions};
use super::{names, Api, Failure};

const BUILD_UPDATED: &str = "subscription($id: ID!) { buildUpdated(buildId: $id) { id status message startedAt \
     finishedAt jobs { id jobId status message startedAt finishedAt } } }";

const JOB_LOG: &str = "subscription($job: ID!, $after: Int) { jobLog(jobId: $job, after: $after) { offset text } }";

/// How long the client keeps trying to reach the server again after losing it.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

/// A subscription connection, opened again (with a pause that grows to 2 s) while the server
/// cannot be reached, for up to [`RECONNECT_FOR`] since `lost` (the first attempt has no limit
/// but the connect timeout).
async fn reconnect(api: &Api, lost: Option<Instant>) -> Result<Subscriptions, Failure> {
    let mut pause = Duration::from_millis(100);
    loop {
        match api.subscriptions().await {
            Ok(subscriptions) => return Ok(subscriptions),
            Err(failure) if failure.status == super::exit::UNREACHABLE => match lost {
                Some(since) if since.elapsed() < RECONNECT_FOR => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                _ => return Err(failure),
            },
            Err(failure) => return Err(failure),
        }
    }
}

fn lost_connection(code: u16, reason: &str) -> Result<Instant, Failure> {
    // The server refused the token or the build on purpose: trying again would not help.
    if matches!(code, 4401 | 4403) {
        return Err(Failure::auth(format!("the server ended the subscription: {reason}")));
    }
    eprintln!("lost the connection to the server; reconnecting…");
    Ok(Instant::now())
}

fn graphql_failure(errors: &Value) -> Failure {
    match errors.as_array().and_then(|e| e.first()) {
        Some(error) => Failure::from_graphql_error(error),
        None => Failure::refused(format!("the server refused the subscription: {errors}")),
    }
}

/// Follows `build` until it ends and returns its status (`SUCCEEDED`…).
pub async fn watch(api: &Api, build: &str) -> Result<String, Failure> {
    let mut display = Display::new(build, std::io::stdout().is_terminal());
    let mut lost = None;
    loop {
        let mut subscriptions = reconnect(api, lost).await?;
        subscriptions
            .subscribe("build", BUILD_UPDATED, json!({ "id": build }))
            .await?;
        loop {
            match subscriptions.next().await? {
                Incoming::Next(_, payload) => {
                    if let Some(errors) = payload.get("errors") {
                        return Err(graphql_failure(errors));
                    }
                    display.show(&payload["data"]["buildUpdated"]);
                }
                Incoming::Error(errors) => return Err(graphql_failure(&errors)),
                Incoming::Complete(_) => return Ok(display.finish()),
                Incoming::Closed(code, reason) => {
                    lost = Some(lost_connection(code, &reason)?);
                    break;
                }
                Incoming::Ack => {}
            }
        }
    }
}

/// What `watch` shows: on a terminal, a table of the jobs redrawn in place; otherwise a line
/// per change.
struct Display {
    build: String,
    terminal: bool,
    state: Value,
    /// Lines drawn last time (terminal).
    drawn: usize,
    /// The status printed last for the build (`""`) and each job (plain lines).
    printed: HashMap<String, String>,
}

impl Display {
    fn new(build: &str, terminal: bool) -> Self {
        Self {
            build: build.to_owned(),
            terminal,
            state: Value::Null,
            drawn: 0,
            printed: HashMap::new(),
        }
    }

    fn show(&mut self, state: &Value) {
        self.state = state.clone();
        let mut out = std::io::stdout().lock();
        if self.terminal {
            let lines = self.table();
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for line in &lines {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            self.drawn = lines.len();
        } else {
            let now = chrono::Utc::now().format("%H:%M:%S");
            let status = text(state, "status").to_ascii_lowercase();
            if self.printed.get("").is_none_or(|s| *s != status) {
                let _ = writeln!(out, "{now} build {} {status}", self.build);
                self.printed.insert(String::new(), status);
            }
            for job in state["jobs"].as_array().into_iter().flatten() {
                let name = text(job, "jobId");
                let status = text(job, "status").to_ascii_lowercase();
                if self.printed.get(name).is_none_or(|s| *s != status) {
                    let message = job["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
                    let _ = writeln!(out, "{now} job {name} {status}{message}");
                    self.printed.insert(name.to_owned(), status);
                }
            }
        }
        let _ = out.flush();
    }

    fn table(&self) -> Vec<String> {
        let state = &self.state;
        let jobs: Vec<&Value> = state["jobs"].as_array().into_iter().flatten().collect();
        let width = jobs.iter().map(|j| text(j, "jobId").len()).max().unwrap_or(0);
        let mut lines = vec![format!(
            "build {}  {}  {}",
            self.build,
            text(state, "status").to_ascii_lowercase(),
            elapsed(state)
        )];
        for job in jobs {
            let status = text(job, "status");
            let mark = match status {
                "SUCCEEDED" => "✓",
                "FAILED" => "✗",
                "RUNNING" => "▶",
                "CANCELED" | "SKIPPED" => "-",
                "BLOCKED" => "‖",
                _ => "·",
            };
            lines.push(format!(
                "  {mark} {:<width$}  {:<9}  {}",
                text(job, "jobId"),
                status.to_ascii_lowercase(),
                elapsed(job)
            ));
        }
        lines
    }

    /// Prints the summary line and returns the build's status.
    fn finish(self) -> String {
        let status = text(&self.state, "status").to_owned();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for job in self.state["jobs"].as_array().into_iter().flatten() {
            *counts.entry(text(job, "status").to_ascii_lowercase()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let message = self.state["message"]
            .as_str()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        println!(
            "build {} {}{message} after {} (jobs: {})",
            self.build,
            status.to_ascii_lowercase(),
            elapsed(&self.state),
            if counts.is_empty() {
                "none".to_owned()
            } else {
                counts.join(", ")
            }
        );
        status
    }
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// `12.3s` from `startedAt` to `finishedAt` (or now), or empty before it started.
fn elapsed(value: &Value) -> String {
    let at = |field: &str| {
        value[field]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    match at("startedAt") {
        Some(start) => {
            let end = at("finishedAt").unwrap_or_else(chrono::Utc::now);
            format!("{:.1}s", (end - start).num_milliseconds().max(0) as f64 / 1000.0)
        }
        None => String::new(),
    }
}

/// Prints the logs of `build` (every job's, or `job`'s) as they are now.
pub async fn print_logs(api: &Api, build: &str, job: Option<&str>) -> Result<(), Failure> {
    let jobs = names::jobs(api, build).await?;
    let chosen = choose(&jobs, job, build)?;
    let mut out = std::io::stdout().lock();
    for job_state in chosen {
        let prefix = match job {
            Some(_) => String::new(),
            None => format!("[{}] ", text(job_state, "jobId")),
        };
        api.download_lines(text(job_state, "logPath"), |line| {
            let _ = writeln!(out, "{prefix}{line}");
        })
        .await?;
    }
    Ok(())
}

/// The jobs to show: all, or the one called `job`.
fn choose<'a>(jobs: &'a [Value], job: Option<&str>, build: &str) -> Result<Vec<&'a Value>, Failure> {
    let Some(name) = job else {
        return Ok(jobs.iter().collect());
    };
    match jobs.iter().find(|j| text(j, "jobId") == name) {
        Some(found) => Ok(vec![found]),
        None if jobs.is_empty() => Ok(Vec::new()),
        None => {
            let names: Vec<&str> = jobs.iter().map(|j| text(j, "jobId")).collect();
            Err(Failure::refused(format!(
                "build {build} has no job {name:?}; its jobs: {}",
                names.join(", ")
            )))
        }
    }
}

/// Follows the logs of `build` (every job's, or `job`'s) until the build has ended (or that
/// job has) and every line was printed. Each job's lines are numbered; after a dropped connection each job is
/// followed again from its last printed line, so no line is missed or printed twice.
pub async fn follow_logs(api: &Api, build: &str, job: Option<&str>) -> Result<(), Failure> {
    // Per job (global id): its name and the last line printed.
    let mut names_of: HashMap<String, String> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut lost = None;
    let mut out = std::io::stdout().lock();
    loop {
        let mut subscriptions = reconnect(api, lost).await?;
        subscriptions
            .subscribe("build", BUILD_UPDATED, json!({ "id": build }))
            .await?;
        let mut following: HashSet<String> = HashSet::new();
        let mut build_ended = false;
        loop {
            match subscriptions.next().await? {
                Incoming::Next(id, payload) => {
                    if let Some(errors) = payload.get("errors") {
                        return Err(graphql_failure(errors));
                    }
                    if id == "build" {
                        let state = &payload["data"]["buildUpdated"];
                        let jobs = state["jobs"].as_array().cloned().unwrap_or_default();
                        if let Some(name) = job {
                            if !jobs.is_empty() && !jobs.iter().any(|j| text(j, "jobId") == name) {
                                choose(&jobs, job, build)?;
                            }
                        }
                        for job_state in jobs.iter().filter(|j| job.is_none_or(|name| text(j, "jobId") == name)) {
                            let id = text(job_state, "id").to_owned();
                            if ended.contains(&id) || !following.insert(id.clone()) {
                                continue;
                            }
                            names_of.insert(id.clone(), text(job_state, "jobId").to_owned());
                            subscriptions
                                .subscribe(
                                    &format!("log:{id}"),
                                    JOB_LOG,
                                    json!({ "job": id, "after": last.get(&id) }),
                                )
                                .await?;
                        }
                    } else if let Some(job_id) = id.strip_prefix("log:") {
                        let line = &payload["data"]["jobLog"];
                        let offset = line["offset"].as_i64().unwrap_or(0);
                        let seen = last.entry(job_id.to_owned()).or_insert(0);
                        if offset > *seen {
                            *seen = offset;
                            match job {
                                Some(_) => {
                                    let _ = writeln!(out, "{}", text(line, "text"));
                                }
                                None => {
                                    let name = names_of.get(job_id).map_or("", String::as_str);
                                    let _ = writeln!(out, "[{name}] {}", text(line, "text"));
                                }
                            }
                            let _ = out.flush();
                        }
                    }
                }
                Incoming::Complete(id) => {
                    if id == "build" {
                        build_ended = true;
                    } else if let Some(job_id) = id.strip_prefix("log:") {
                        ended.insert(job_id.to_owned());
                    }
                    // One job: until its log is complete (a later job may wait for approval
                    // for days); every job: until the build has ended and every log is.
                    let logs_done = following.iter().all(|j| ended.contains(j));
                    let done = logs_done && (build_ended || (job.is_some() && !following.is_empty()));
                    if done {
                        return Ok(());
                    }
                }
                Incoming::Error(errors) => return Err(graphql_failure(&errors)),
                Incoming::Closed(code, reason) => {
                    lost = Some(lost_connection(code, &reason)?);
                    break;
                }
                Incoming::Ack => {}
            }
        }
    }
}
