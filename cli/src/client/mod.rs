//! `monkeyci` as a client of a server: log in, list orgs, repos and builds, trigger, follow and
//! steer builds, read logs. Only the public API is used (GraphQL over HTTP and WebSocket).

mod api;
mod config;
mod follow;
mod names;

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

pub use api::Api;

/// Exit statuses of the client commands other than 0 (done; a build waited for succeeded), as
/// `--help` lists them.
pub mod exit {
    /// A build it waited for failed (a job failed).
    pub const FAILED: u8 = 1;
    /// Bad arguments, or not logged in.
    pub const USAGE: u8 = 2;
    /// A build it waited for was canceled or errored.
    pub const CANCELED: u8 = 3;
    /// The server refused the token (unknown, revoked, expired) or the role is too small.
    pub const AUTH: u8 = 4;
    /// The server cannot be reached, or could not answer (try again).
    pub const UNREACHABLE: u8 = 5;
    /// The server refused the request: no such org, repo, build or job, or invalid input.
    pub const REFUSED: u8 = 6;
}

const EXIT_STATUSES: &str = "Exit status: 0 done (a build waited for succeeded); 1 the build failed; 2 bad arguments \
     or not logged in; 3 the build was canceled or errored; 4 the token was refused or its role is too small; 5 the \
     server cannot be reached or could not answer; 6 the server refused the request (no such org, repo, build or \
     job, or invalid input).";

/// What `builds --status` accepts: the API's `BuildStatus`, in any case.
const BUILD_STATUSES: [&str; 6] = ["queued", "running", "succeeded", "failed", "errored", "canceled"];

/// Why a client command stopped, with the exit status that says so.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            status: exit::USAGE,
            message: message.into(),
        }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self {
            status: exit::AUTH,
            message: message.into(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            status: exit::UNREACHABLE,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            status: exit::REFUSED,
            message: message.into(),
        }
    }

    /// A build ended other than succeeded; its summary said so already.
    fn build(status: u8) -> Self {
        Self {
            status,
            message: String::new(),
        }
    }

    /// The failure a GraphQL error's `extensions.code` calls for.
    pub fn from_graphql_error(error: &Value) -> Self {
        let message = error["message"]
            .as_str()
            .unwrap_or("the server refused the request")
            .to_owned();
        match error["extensions"]["code"].as_str() {
            Some("UNAUTHENTICATED" | "FORBIDDEN") => Self::auth(message),
            Some("UNAVAILABLE" | "INTERNAL") => Self::unreachable(message),
            _ => Self::refused(message),
        }
    }
}

/// How listings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Text,
    /// One JSON array of objects, as the API returns them, for scripts.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArg {
    /// text (aligned columns) or json (an array of objects, for scripts).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Which server to talk to, overriding what `login` saved.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArg {
    /// The server's URL (http://HOST:PORT); default: the one `monkeyci login` saved.
    #[arg(long, env = "MONKEYCI_SERVER")]
    server: Option<String>,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Saves a server's URL and an API token for the other client commands.
    ///
    /// The token is read from MONKEYCI_TOKEN, else asked for on the terminal (not echoed), else
    /// read from the first line of standard input. It is checked with the server, then saved with
    /// the URL in the config file (MONKEYCI_CONFIG, default `~/.config/monkeyci/config.json`),
    /// readable by its owner only (mode 0600). MONKEYCI_SERVER and MONKEYCI_TOKEN override the
    /// saved ones in every command.
    #[command(after_help = EXIT_STATUSES)]
    Login {
        /// The server's URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "MONKEYCI_SERVER")]
        server: String,
    },
    /// Lists the orgs the token can read.
    #[command(after_help = EXIT_STATUSES)]
    Orgs {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Lists the repos of an org (its slug or id), or of every org.
    #[command(after_help = EXIT_STATUSES)]
    Repos {
        /// The org's slug or id.
        org: Option<String>,
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Lists the latest builds of a repo (`ORG/REPO` or its id), or of every repo, newest first.
    #[command(after_help = EXIT_STATUSES)]
    Builds {
        /// The repo: `ORG/REPO` (slug and name) or its id.
        repo: Option<String>,
        /// How many builds.
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Only builds with this status.
        #[arg(long, ignore_case = true, value_parser = BUILD_STATUSES)]
        status: Option<String>,
        /// Only builds of this branch.
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Triggers a build of a repo (of its main branch unless told otherwise) and prints its id;
    /// with --watch, follows it to its end and exits with its outcome.
    #[command(after_help = EXIT_STATUSES)]
    Trigger {
        /// The repo: `ORG/REPO` (slug and name) or its id.
        repo: String,
        /// Build this branch.
        #[arg(long, conflicts_with = "tag")]
        branch: Option<String>,
        /// Build this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Build this commit (of the branch or tag).
        #[arg(long)]
        commit: Option<String>,
        /// A build parameter, `KEY=VALUE`; may be repeated.
        #[arg(long = "param", short = 'p', value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Follow the build until it ends (as `monkeyci watch`).
        #[arg(long, short = 'w')]
        watch: bool,
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Follows a build's jobs live until the build ends, and exits with its outcome: a table
    /// redrawn in place on a terminal, a line per change otherwise.
    #[command(after_help = EXIT_STATUSES)]
    Watch {
        /// The build's id.
        build: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Prints a job's output, or every job's (each line after `[job]`), in job order; with -f,
    /// follows it live until the build ends, resuming after a dropped connection without
    /// repeating or missing a line.
    #[command(after_help = EXIT_STATUSES)]
    Logs {
        /// The build's id.
        build: String,
        /// The job (its name in the pipeline); all jobs if not given.
        job: Option<String>,
        /// Follow: print new lines as the jobs print them, until the build ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancels a queued or running build.
    #[command(after_help = EXIT_STATUSES)]
    Cancel {
        /// The build's id.
        build: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Queues a new build with the trigger of a finished one and prints its id; with --watch,
    /// follows it.
    #[command(after_help = EXIT_STATUSES)]
    Retry {
        /// The finished build's id.
        build: String,
        /// Follow the new build until it ends (as `monkeyci watch`).
        #[arg(long, short = 'w')]
        watch: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Approves a job that waits for manual approval (`blocked: true` in the pipeline).
    #[command(after_help = EXIT_STATUSES)]
    Unblock {
        /// The build's id.
        build: String,
        /// The blocked job's name.
        job: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    // rustls has two crypto providers in this program (ring for the client, aws-lc-rs from the
    // S3 SDK): choose one, as the Terraform provider does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match command {
        ClientCommand::Login { server } => login(&server).await?,
        ClientCommand::Orgs { output, server } => {
            let api = config::connect(server.server)?;
            let orgs = names::all_orgs(&api).await?;
            print_list(
                output.output,
                &orgs,
                &[("SLUG", "slug"), ("NAME", "name"), ("ROLE", "myRole"), ("ID", "id")],
            );
        }
        ClientCommand::Repos { org, output, server } => {
            let api = config::connect(server.server)?;
            let orgs = match org {
                Some(org) => vec![names::org(&api, &org).await?],
                None => names::all_orgs(&api).await?,
            };
            let mut repos = Vec::new();
            for org in &orgs {
                for mut repo in names::repos_of(&api, org["id"].as_str().unwrap_or_default()).await? {
                    repo["org"] = json!({ "id": org["id"], "slug": org["slug"] });
                    repo["path"] = json!(format!("{}/{}", str_of(org, "slug"), str_of(&repo, "name")));
                    repos.push(repo);
                }
            }
            print_list(
                output.output,
                &repos,
                &[
                    ("REPO", "path"),
                    ("MAIN", "mainBranch"),
                    ("ARCHIVED", "archived"),
                    ("GIT URL", "gitUrl"),
                    ("ID", "id"),
                ],
            );
        }
        ClientCommand::Builds {
            repo,
            limit,
            status,
            branch,
            output,
            server,
        } => {
            let api = config::connect(server.server)?;
            let repos = match repo {
                Some(repo) => vec![names::repo(&api, &repo).await?],
                None => names::every_repo(&api).await?,
            };
            let status = status.map(|s| s.to_ascii_uppercase());
            let mut builds = Vec::new();
            for repo in &repos {
                builds.extend(names::builds_of(&api, repo, limit, status.as_deref(), branch.as_deref()).await?);
            }
            builds.sort_by(|a, b| str_of(b, "queuedAt").cmp(str_of(a, "queuedAt")));
            builds.truncate(limit as usize);
            for build in &mut builds {
                build["ref"] = json!(build_ref(build));
                build["jobs"] = json!(format!(
                    "{}/{}",
                    build["jobCounts"]["succeeded"].as_i64().unwrap_or(0),
                    build["jobCounts"]["total"].as_i64().unwrap_or(0)
                ));
            }
            print_list(
                output.output,
                &builds,
                &[
                    ("BUILD", "id"),
                    ("REPO", "repoPath"),
                    ("STATUS", "status"),
                    ("REF", "ref"),
                    ("JOBS OK", "jobs"),
                    ("QUEUED", "queuedAt"),
                ],
            );
        }
        ClientCommand::Trigger {
            repo,
            branch,
            tag,
            commit,
            params,
            watch,
            output,
            server,
        } => {
            let api = config::connect(server.server)?;
            let repo = names::repo(&api, &repo).await?;
            let params: Vec<Value> = params.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
            let data = api
                .graphql(
                    "mutation($input: TriggerBuildInput!) { triggerBuild(input: $input) }",
                    json!({ "input": {
                        "repoId": repo["id"], "branch": branch, "tag": tag, "commit": commit, "params": params
                    } }),
                )
                .await?;
            let build = str_of(&data, "triggerBuild").to_owned();
            match output.output {
                Output::Json => println!("{}", json!({ "id": build })),
                Output::Text => println!("{build}"),
            }
            if watch {
                finish(follow::watch(&api, &build).await?)?;
            }
        }
        ClientCommand::Watch { build, server } => {
            let api = config::connect(server.server)?;
            let build = names::build_id(&build)?;
            finish(follow::watch(&api, &build).await?)?;
        }
        ClientCommand::Logs {
            build,
            job,
            follow: keep_following,
            server,
        } => {
            let api = config::connect(server.server)?;
            let build = names::build_id(&build)?;
            if keep_following {
                follow::follow_logs(&api, &build, job.as_deref()).await?;
            } else {
                follow::print_logs(&api, &build, job.as_deref()).await?;
            }
        }
        ClientCommand::Cancel { build, server } => {
            let api = config::connect(server.server)?;
            let build = names::build_id(&build)?;
            api.graphql(
                "mutation($input: BuildInput!) { cancelBuild(input: $input) }",
                json!({ "input": { "id": build } }),
            )
            .await?;
            eprintln!("asked build {build} to cancel");
        }
        ClientCommand::Retry { build, watch, server } => {
            let api = config::connect(server.server)?;
            let build = names::build_id(&build)?;
            let data = api
                .graphql(
                    "mutation($input: BuildInput!) { retryBuild(input: $input) }",
                    json!({ "input": { "id": build } }),
                )
                .await?;
            let retry = str_of(&data, "retryBuild").to_owned();
            println!("{retry}");
            if watch {
                finish(follow::watch(&api, &retry).await?)?;
            }
        }
        ClientCommand::Unblock { build, job, server } => {
            let api = config::connect(server.server)?;
            let build = names::build_id(&build)?;
            let job_id = names::job(&api, &build, &job).await?;
            api.graphql(
                "mutation($input: UnblockJobInput!) { unblockJob(input: $input) }",
                json!({ "input": { "id": job_id } }),
            )
            .await?;
            eprintln!("approved job {job} of build {build}");
        }
    }
    Ok(())
}

/// Exits with the outcome of a build waited for.
fn finish(status: String) -> Result<(), Failure> {
    match status.as_str() {
        "SUCCEEDED" => Ok(()),
        "FAILED" => Err(Failure::build(exit::FAILED)),
        _ => Err(Failure::build(exit::CANCELED)),
    }
}

async fn login(server: &str) -> anyhow::Result<()> {
    let base = api::normalise_server(server)?;
    let token = match std::env::var("MONKEYCI_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        Some(token) => token,
        None => config::read_token()?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(Failure::usage("no token given").into());
    }
    let api = Api::new(&base, &token)?;
    let data = api
        .graphql("{ orgs(first: 100) { nodes { slug } } }", json!({}))
        .await?;
    let orgs = data["orgs"]["nodes"].as_array().map_or(0, Vec::len);
    let path = config::save(&base, &token)?;
    eprintln!(
        "logged in to {base}: the token reads {orgs} org{}; saved to {} (mode 0600)",
        if orgs == 1 { "" } else { "s" },
        path.display()
    );
    Ok(())
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// `branch main`, `tag v1`, with `@commit` if one was asked for.
fn build_ref(build: &Value) -> String {
    let name = match (build["branch"].as_str(), build["tag"].as_str()) {
        (_, Some(tag)) => format!("tag {tag}"),
        (Some(branch), _) => branch.to_owned(),
        _ => String::new(),
    };
    match build["commit"].as_str() {
        Some(commit) => format!("{name}@{}", &commit[..commit.len().min(10)]),
        None => name,
    }
}

/// Prints `rows` as JSON, or as columns (`(heading, field)`).
fn print_list(output: Output, rows: &[Value], columns: &[(&str, &str)]) {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        let _ = writeln!(out, "{}", Value::Array(rows.to_vec()));
        return;
    }
    if rows.is_empty() {
        eprintln!("(none)");
        return;
    }
    let cell = |row: &Value, field: &str| match &row[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|(heading, field)| {
            rows.iter()
                .map(|r| cell(r, field).chars().count())
                .fold(heading.len(), usize::max)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    let _ = writeln!(out, "{}", line(columns.iter().map(|(h, _)| (*h).to_owned()).collect()));
    for row in rows {
        let _ = writeln!(out, "{}", line(columns.iter().map(|(_, f)| cell(row, f)).collect()));
    }
}
