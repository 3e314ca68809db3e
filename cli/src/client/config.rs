//! The client's config file: the server `monkeyci login` saved and its token.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Api, Failure};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Config {
    server: Option<String>,
    token: Option<String>,
}

/// MONKEYCI_CONFIG, else `$XDG_CONFIG_HOME/monkeyci/config.json`, else
/// `~/.config/monkeyci/config.json`.
fn path() -> Result<PathBuf, Failure> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = var("MONKEYCI_CONFIG") {
        return Ok(path);
    }
    let dir = var("XDG_CONFIG_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".config")))
        .ok_or_else(|| {
            Failure::usage("neither MONKEYCI_CONFIG, XDG_CONFIG_HOME nor HOME is set: no place for the config file")
        })?;
    Ok(dir.join("monkeyci/config.json"))
}

fn load() -> Result<Config, Failure> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| Failure::usage(format!("{} is not a MonkeyCI config file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Failure::usage(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Saves `server` and `token`, readable by the owner only; returns where.
pub fn save(server: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let config = Config {
        server: Some(server.to_owned()),
        token: Some(token.to_owned()),
    };
    crate::write_private_file(&path, &format!("{}\n", serde_json::to_string_pretty(&config)?))?;
    Ok(path)
}

/// The API of the server given (`--server`, MONKEYCI_SERVER) or saved, with MONKEYCI_TOKEN or
/// the saved token.
pub fn connect(server: Option<String>) -> Result<Api, Failure> {
    let config = load()?;
    let server = server
        .filter(|s| !s.trim().is_empty())
        .or(config.server)
        .ok_or_else(|| Failure::usage("no server: run `monkeyci login --server URL` first (or set MONKEYCI_SERVER)"))?;
    let token = std::env::var("MONKEYCI_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or(config.token)
        .ok_or_else(|| Failure::usage("no token: run `monkeyci login --server URL` first (or set MONKEYCI_TOKEN)"))?;
    Api::new(&server, token.trim())
}

/// A token from the terminal (not echoed), else the first line of standard input.
pub fn read_token() -> Result<String, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("cannot read the token from standard input: {e}")))?;
        return Ok(line);
    }
    // Echo off before the prompt: whatever is typed (or pasted) once it shows is not shown.
    let fd = std::io::stdin();
    let saved = nix::sys::termios::tcgetattr(&fd).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        let _ = nix::sys::termios::tcsetattr(&fd, nix::sys::termios::SetArg::TCSANOW, &quiet);
    }
    eprint!("API token (not shown): ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = nix::sys::termios::tcsetattr(&fd, nix::sys::termios::SetArg::TCSANOW, saved);
    }
    eprintln!();
    read.map_err(|e| Failure::usage(format!("cannot read the token: {e}")))?;
    Ok(line)
}
