//! The real `monkeyci server` as a child process for end-to-end tests, with a typed client of
//! its API.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monkeyci_tests::{database_url, monkeyci_binary};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use crate::access::ADMIN;

/// The real `monkeyci server` as a child process, with everything it prints kept in `output`.
#[derive(Debug)]
pub(crate) struct Server {
    pub child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
    pub output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Appends every line of `from` to `into`; the first line naming the listening address goes to
/// `address` too.
fn keep_lines(
    from: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
    mut address: Option<tokio::sync::oneshot::Sender<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on http://") {
                if let Some(tx) = address.take() {
                    let _ = tx.send(line.clone());
                }
            }
            let mut all = into.lock().expect("output");
            all.push_str(&line);
            all.push('\n');
        }
    })
}

impl Server {
    /// Starts the server on the test's database with a port of its own, logging everything;
    /// its builds and data go below `dir`.
    pub async fn start(pool: &PgPool, dir: &Path) -> Self {
        Self::start_with(pool, dir, &[], &[]).await
    }

    /// Starts the server as [`Server::start`] does, with `extra` flags and `env` variables
    /// (which override the test's database URL and admin token).
    /// Container jobs use the tests' podman settings.
    pub async fn start_with(pool: &PgPool, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_at(&database_url(pool), dir, extra, env).await
    }

    /// Starts the server as [`Server::start_with`] does, on the database at `url` (on a port of
    /// its own unless `extra` has `--listen`).
    pub async fn start_at(url: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        // The job user passes through to the workspace below it (a temporary directory is
        // private to its owner).
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod");
        // A port of its own unless `extra` names one.
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(monkeyci_binary().expect("binary"))
            .args(["server", "--no-schedules", "--lease-retry-ms", "100"])
            .args(listen)
            .arg("--workspace")
            .arg(dir.join("builds"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .env("MONKEYCI_CONTAINER_RUNTIME", monkeyci_tests::PODMAN_RUNTIME)
            .env("MONKEYCI_CONTAINER_ULIMITS", monkeyci_tests::PODMAN_ULIMITS.join(","))
            .env("MONKEYCI_DATABASE_URL", url)
            .env("MONKEYCI_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "trace")
            .envs(env.iter().copied())
            .env_remove("GIT_SSH_COMMAND")
            .env_remove("GIT_SSH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn monkeyci server");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let readers = vec![
            keep_lines(child.stdout.take().expect("stdout"), output.clone(), Some(tx)),
            keep_lines(child.stderr.take().expect("stderr"), output.clone(), None),
        ];
        let line = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(line)) => line,
            _ => panic!(
                "the server did not say where it listens within 60 s: {}",
                output.lock().expect("output")
            ),
        };
        let base = monkeyci_tests::listen_address(&line);
        Self {
            child,
            base,
            http: reqwest::Client::new(),
            output,
            readers,
        }
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(ADMIN, query, variables).await
    }

    /// A GraphQL request with `token`; the body.
    pub async fn gql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    /// A mutation that returns an id; panics with the response otherwise.
    pub async fn id(&self, field: &str, input_type: &str, input: Value) -> String {
        let query = format!("mutation($input: {input_type}!) {{ {field}(input: $input) }}");
        let body = self.gql(&query, json!({ "input": input })).await;
        body["data"][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {body}"))
            .to_owned()
    }

    /// An org with a repo labelled `team=web` at `git_url`; (org id, repo id).
    pub async fn org_with_repo(&self, slug: &str, git_url: &str) -> (String, String) {
        let org = self
            .id("createOrg", "CreateOrgInput", json!({ "name": slug, "slug": slug }))
            .await;
        let repo = self
            .id(
                "createRepo",
                "CreateRepoInput",
                json!({ "orgId": org, "name": "app", "gitUrl": git_url,
                        "labels": [{ "name": "team", "value": "web" }] }),
            )
            .await;
        (org, repo)
    }

    /// Triggers a build of `repo`'s main branch and waits until it has ended; the build.
    pub async fn build(&self, repo: &str) -> Value {
        let build = self.trigger(repo, json!([])).await;
        self.wait_until(&build, Duration::from_secs(60), |b| {
            ["SUCCEEDED", "FAILED", "ERRORED", "CANCELED"].contains(&b["status"].as_str().unwrap_or_default())
        })
        .await
    }

    /// Triggers a build of `repo`'s main branch with the build parameters `params` (a list of
    /// `{name, value}`); its id.
    pub async fn trigger(&self, repo: &str, params: Value) -> String {
        self.id(
            "triggerBuild",
            "TriggerBuildInput",
            json!({ "repoId": repo, "params": params }),
        )
        .await
    }

    /// Polls the build until `done` holds for it (id, status, message and jobs with their
    /// status, message and log), at most `limit`; the build.
    pub async fn wait_until(&self, build: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let query = "query($id: ID!) { build(id: $id) { id status message \
                     jobs { id jobId status message log { text } } } }";
        let deadline = Instant::now() + limit;
        loop {
            let body = self.gql(query, json!({ "id": build })).await;
            if done(&body["data"]["build"]) {
                return body["data"]["build"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "the build did not get there within {limit:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A job's output as the plain-text download.
    pub async fn log_text(&self, build: &str, job: &str) -> String {
        let response = self
            .http
            .get(format!("{}/builds/{build}/jobs/{job}/log", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("log");
        assert_eq!(response.status(), 200);
        response.text().await.expect("text")
    }

    /// Stops the server with SIGTERM, expects a clean exit, and returns everything it printed.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("pid").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the server stops within 60 s of SIGTERM")
            .expect("wait");
        for reader in self.readers.drain(..) {
            reader.await.expect("reader");
        }
        let output = self.output.lock().expect("output").clone();
        assert!(exit.success(), "{exit:?}: {output}");
        output
    }
}
