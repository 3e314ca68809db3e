//! An org's ssh key checks out code over ssh, end to end: the real `monkeyci server` binary
//! clones from a real OpenSSH server with the key given to `addSshKey`, and no secret (neither
//! the private key nor a parameter value) ever shows in the server's own log output, at its most
//! verbose, nor in a job's log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use monkeyci_tests::git;
use serde_json::json;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::server::Server;

const SSHD: &str = "/usr/sbin/sshd";
const PARAM_VALUE: &str = "Ssh-E2e-param-Value-4711";

/// Runs `program` with `args` and returns its stdout; fails the test if it fails.
fn run(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A new ed25519 key pair without a passphrase at `path` and `path.pub`: (private, public).
fn keygen(path: &Path, comment: &str) -> (String, String) {
    let file = path.to_str().expect("utf-8 path");
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file],
    );
    let private = std::fs::read_to_string(path).expect("private key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (private, public.trim().to_owned())
}

/// The base64 lines of an OpenSSH private key: what must never be printed anywhere.
fn key_body(private: &str) -> Vec<&str> {
    let lines: Vec<&str> = private
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    assert!(!lines.is_empty(), "no key body in {private:?}");
    lines
}

/// A real OpenSSH server on 127.0.0.1 that lets in the keys of one authorized_keys file; killed
/// when dropped.
#[derive(Debug)]
struct Sshd {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd with its own host key and configuration in `dir` and waits until it accepts
    /// connections.
    async fn start(dir: &Path, authorized_keys: &Path) -> Self {
        assert!(
            Path::new(SSHD).is_file(),
            "this test needs OpenSSH's server at {SSHD}: install it with \
             `apt-get install openssh-server` (.ci/run does so when it is missing)"
        );
        // Privilege separation: sshd refuses to start without this directory.
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            std::fs::create_dir_all(privsep).expect("cannot create /run/sshd, which sshd needs");
        }
        let host_key = dir.join("host_key");
        keygen(&host_key, "sshd host key");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 AuthorizedKeysFile {}\n\
                 StrictModes no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 PidFile none\n\
                 UsePAM no\n",
                host_key.display(),
                authorized_keys.display()
            ),
        )
        .expect("sshd_config");
        // A port that was free a moment ago; sshd exits at once if somebody took it meanwhile.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("sshd.log");
        let out = std::fs::File::create(&log).expect("sshd.log");
        let child = std::process::Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("sshd.log"))
            .stderr(out)
            .spawn()
            .expect("start sshd");
        let mut sshd = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return sshd;
            }
            if let Some(status) = sshd.child.try_wait().expect("sshd status") {
                panic!("sshd exited with {status}: {}", sshd.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sshd does not accept connections on {addr} after 20 s: {}",
                sshd.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn add_ssh_key(&self, org: &str, description: &str, team: &str, (private, public): &(String, String)) {
        self.id(
            "addSshKey",
            "AddSshKeyInput",
            json!({ "orgId": org, "description": description, "privateKey": private, "publicKey": public,
                    "filter": [{ "labels": [{ "name": "team", "value": team }] }] }),
        )
        .await;
    }
}

/// The lines of `text` that hold any of `secrets`.
fn leaks<'a>(text: &'a str, secrets: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| secrets.iter().any(|s| line.contains(s)))
        .collect()
}

/// Every file below `dir`, with its contents.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("entry").path();
            let kind = std::fs::symlink_metadata(&path).expect("metadata").file_type();
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).expect("read");
                found.push((path, bytes));
            }
        }
    }
    found
}

#[sqlx::test(migrations = false)]
async fn an_orgs_ssh_key_clones_over_ssh_and_no_secret_reaches_the_server_log(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    let client = keygen(&keys.join("client"), "the org's deploy key");
    let stranger = keygen(&keys.join("stranger"), "a key sshd does not know");
    let authorized_keys = keys.join("authorized_keys");
    std::fs::write(&authorized_keys, format!("{}\n", client.1)).expect("authorized_keys");
    let sshd = Sshd::start(dir.path(), &authorized_keys).await;

    // The repository: two commits, so that the tip is what gets built.
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir_all(repo_dir.join(".monkeyci")).expect("repo dir");
    git(&repo_dir, &["init", "--quiet", "--initial-branch", "main"]);
    std::fs::write(repo_dir.join("app.txt"), "the app\n").expect("app");
    git(&repo_dir, &["add", "."]);
    git(&repo_dir, &["commit", "--quiet", "-m", "initial"]);
    std::fs::write(
        repo_dir.join(".monkeyci/build.yaml"),
        r#"
- id: show
  script:
    - echo "token=$DEPLOY_TOKEN"
    - echo "commit=$MONKEYCI_COMMIT"
    - echo "head=$(git rev-parse HEAD)"
"#,
    )
    .expect("pipeline");
    git(&repo_dir, &["add", "."]);
    git(&repo_dir, &["commit", "--quiet", "-m", "the pipeline"]);
    let head = git(&repo_dir, &["rev-parse", "HEAD"]);
    let user = run("whoami", &[]);
    let git_url = format!("ssh://{user}@127.0.0.1:{}{}", sshd.port, repo_dir.display());

    let server = Server::start(&pool, dir.path()).await;

    // Acme: a parameter and two keys; the filter chooses the right one although the other is
    // older (the first chosen key is used).
    let (acme, acme_repo) = server.org_with_repo("acme", &git_url).await;
    server
        .id(
            "createParamSet",
            "CreateParamSetInput",
            json!({ "orgId": acme, "name": "deploy", "filter": [{ "labels": [{ "name": "team", "value": "web" }] }],
                    "parameters": [{ "name": "DEPLOY_TOKEN", "value": PARAM_VALUE }] }),
        )
        .await;
    server.add_ssh_key(&acme, "ops key", "ops", &stranger).await;
    server.add_ssh_key(&acme, "deploy key", "web", &client).await;
    // Other: only a key sshd does not accept. None: no key at all.
    let (other, other_repo) = server.org_with_repo("other", &git_url).await;
    server.add_ssh_key(&other, "unknown key", "web", &stranger).await;
    let (_, keyless_repo) = server.org_with_repo("keyless", &git_url).await;

    let built = server.build(&acme_repo).await;
    let refused = server.build(&other_repo).await;
    let keyless = server.build(&keyless_repo).await;

    assert_eq!(built["status"], "SUCCEEDED", "{built}\nsshd: {}", sshd.log_text());
    let lines: Vec<&str> = built["jobs"][0]["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(lines.contains(&"token=***"), "the parameter is masked: {lines:?}");
    assert!(
        lines.contains(&format!("commit={head}").as_str()) && lines.contains(&format!("head={head}").as_str()),
        "the checkout is the repository's HEAD {head}: {lines:?}"
    );
    let text = server.log_text(built["id"].as_str().expect("build id"), "show").await;
    assert!(text.contains("token=***"), "{text}");
    let sshd_log = sshd.log_text();
    let fingerprint = run(
        "ssh-keygen",
        &["-l", "-f", keys.join("client.pub").to_str().expect("utf-8")],
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).expect("fingerprint");
    assert!(
        sshd_log.contains(&format!("Accepted publickey for {user}")) && sshd_log.contains(fingerprint),
        "sshd let the deploy key ({fingerprint}) in: {sshd_log}"
    );

    for (what, build) in [("an unknown key", &refused), ("no key", &keyless)] {
        let message = build["message"].as_str().unwrap_or_default();
        assert_eq!(build["status"], "ERRORED", "{what}: {build}");
        assert!(
            message.contains("checkout failed") && message.contains(&git_url),
            "{what}: the message names the failed checkout: {build}"
        );
        assert!(
            message.contains("Could not read from remote repository"),
            "{what}: the message says what git said: {build}"
        );
    }
    let refused_message = refused["message"].as_str().unwrap_or_default();
    assert!(refused_message.contains("Permission denied (publickey)"), "{refused}");

    // Nothing secret in any job log, in the server's output at its most verbose, or in any file
    // the server left behind (the build's key file goes with its workspace).
    let mut secrets: Vec<&str> = key_body(&client.0).into_iter().chain(key_body(&stranger.0)).collect();
    secrets.push(PARAM_VALUE);
    for build in [&built, &refused, &keyless] {
        let shown = build.to_string();
        assert!(leaks(&shown, &secrets).is_empty(), "a secret in {shown}");
    }
    assert!(
        leaks(&text, &secrets).is_empty(),
        "a secret in the downloaded log: {text}"
    );
    let output = server.stop().await;
    assert!(
        output.contains("TRACE") && output.contains("build finished"),
        "the server's output is captured at trace level: {output}"
    );
    let leaked = leaks(&output, &secrets);
    assert!(leaked.is_empty(), "secrets in the server's output: {leaked:#?}");
    for (path, bytes) in files_below(&dir.path().join("builds"))
        .into_iter()
        .chain(files_below(&dir.path().join("data")))
    {
        let text = String::from_utf8_lossy(&bytes);
        assert!(leaks(&text, &secrets).is_empty(), "a secret in {}", path.display());
    }
    assert!(
        files_below(&dir.path().join("builds")).is_empty(),
        "the builds' workspaces, ssh keys included, are removed"
    );
}
