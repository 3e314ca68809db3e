//! Checking out the code a build asks for, with git itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use thiserror::Error;
use tokio::process::Command;

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitTarget {
    /// The tip of a branch, or the given commit of its history.
    Branch { name: String, commit: Option<String> },
    /// A tag, or the given commit of its history.
    Tag { name: String, commit: Option<String> },
}

/// How to reach the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitAuth {
    /// A private key file for ssh URLs.
    pub ssh_key: Option<PathBuf>,
}

/// The checkout failed; the message says which git step and what git said.
#[derive(Debug, Error)]
pub enum CheckoutError {
    #[error("cannot run git: {0}")]
    Git(#[source] std::io::Error),
    #[error("{step} failed: {stderr}")]
    Step { step: String, stderr: String },
    #[error("the destination {0} is not empty")]
    NotEmpty(PathBuf),
}

/// Kills a process group when dropped, unless disarmed (`None`).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Runs one git command in `dir`; its stderr becomes the error message.
async fn git(dir: &Path, auth: &GitAuth, step: &str, args: &[&str]) -> Result<String, CheckoutError> {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    if let Some(key) = &auth.ssh_key {
        // A fresh build knows no host keys: the host's key is accepted on first contact and kept
        // beside the build's key for the rest of the checkout (no pinning across builds yet).
        let known_hosts = key.with_file_name("known_hosts");
        command.env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}'",
                key.display(),
                known_hosts.display()
            ),
        );
    } else if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        // Without a key ssh uses the runner user's own keys and known hosts, but it must never
        // ask: started from a terminal, it would wait there for somebody to accept an unknown
        // host key or type a passphrase, and the build would hang.
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    // git starts helpers (ssh, git-remote-https, upload-pack): in a process group of their
    // own, all of them end when the checkout is abandoned (timeout, cancel) and this future
    // dropped.
    command.process_group(0).kill_on_drop(true);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CheckoutError::Git)?;
    let mut group = GroupGuard(child.id());
    let output = child.wait_with_output().await.map_err(CheckoutError::Git)?;
    group.0 = None;
    if !output.status.success() {
        return Err(CheckoutError::Step {
            step: step.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Checks out `target` of the repository at `url` into the empty or missing directory `dest`
/// and returns the commit that was checked out.
///
/// Works with every URL git itself understands: https, ssh (with `auth.ssh_key`), file paths.
pub async fn checkout(url: &str, target: &GitTarget, dest: &Path, auth: &GitAuth) -> Result<String, CheckoutError> {
    if dest.exists() && dest.read_dir().map_err(CheckoutError::Git)?.next().is_some() {
        return Err(CheckoutError::NotEmpty(dest.to_path_buf()));
    }
    tokio::fs::create_dir_all(dest).await.map_err(CheckoutError::Git)?;
    let (refspec, commit) = match target {
        GitTarget::Branch { name, commit } => (format!("refs/heads/{name}"), commit),
        GitTarget::Tag { name, commit } => (format!("refs/tags/{name}"), commit),
    };
    git(dest, auth, "git init", &["init", "--quiet"]).await?;
    git(dest, auth, "git remote add", &["remote", "add", "origin", url]).await?;
    let mut fetch = vec!["fetch", "--quiet", "--no-tags"];
    if commit.is_none() {
        // The tip and its parent: enough to tell which paths the commit changed.
        fetch.extend(["--depth", "2"]);
    }
    fetch.extend(["origin", refspec.as_str()]);
    git(dest, auth, &format!("fetching {refspec} from {url}"), &fetch).await?;
    let wanted = match commit {
        Some(commit) => {
            // The commit must belong to the ref's history, not just exist somewhere.
            let step = format!("finding commit {commit} in the history of {refspec}");
            git(
                dest,
                auth,
                &step,
                &["merge-base", "--is-ancestor", commit, "FETCH_HEAD"],
            )
            .await?;
            commit.clone()
        }
        None => "FETCH_HEAD".to_owned(),
    };
    git(
        dest,
        auth,
        &format!("checking out {wanted}"),
        &["checkout", "--quiet", "--detach", &wanted],
    )
    .await?;
    git(dest, auth, "git rev-parse", &["rev-parse", "HEAD"]).await
}

/// The paths `commit` of the repository at `checkout` changed against its first parent (every
/// path of a root commit), for `paths` conditions; `None` if git cannot tell (e.g. a shallow
/// clone without the parent, or no repository at all).
pub async fn changed_paths(checkout: &Path, commit: &str) -> Option<Vec<String>> {
    // The checkout may belong to the job user by now (confined jobs are handed it, and `build
    // run` works in place), and git reads another user's repository only when told it is safe.
    // Listing a commit's paths runs none of the programs a repository's config may name.
    let safe = format!("safe.directory={}", checkout.display());
    let output = Command::new("git")
        .args([
            "-c",
            &safe,
            "diff-tree",
            "--no-commit-id",
            "--name-only",
            "-r",
            "--root",
            "-m",
            "--first-parent",
            commit,
        ])
        .current_dir(checkout)
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}
