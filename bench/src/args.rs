//! Command-line arguments, parsed by hand (no extra dependency in the workspace lock file).

use std::time::Duration;

use anyhow::{bail, Context};

use crate::builds::Shape;

pub const USAGE: &str = "\
monkeyci-bench: benchmarks of the MonkeyCI event log, projections and API

USAGE:
    cargo run --release -p monkeyci-bench -- [OPTIONS]

OPTIONS:
    --scenarios LIST          Comma-separated, default all of: append, append-sql,
                              events-insert, ceiling, lag, rebuild, api-mutations, api-updates,
                              api-fanout, build-overhead (append-sql and events-insert are
                              diagnostics: the event store's append statement without the store,
                              and the ceiling's INSERT into the events table)
    --seconds N               Measured seconds per append/ceiling shape and API run (default 10)
    --warmup N                Unmeasured warm-up seconds before each of them (default 1)
    --slices N                Split each append/ceiling shape's seconds into N slices, the targets
                              taking turns (order alternating), so that each ratio to the ceiling
                              compares seconds of the same machine conditions (default 1: each
                              target's seconds in one piece, one target after the other)
    --writers LIST            Writer counts for append/ceiling (default 1,16,64)
    --events-per-command LIST Events per command for append/ceiling (default 1,10)
    --lag-seconds N           Measured seconds of the projection-lag scenario (default 10)
    --lag-writers N           Writers of the projection-lag scenario (default 16)
    --lag-rate N              Commands/s for the lag scenario; default: half of the append rate
                              measured for 16 writers and 1 event per command (measured briefly
                              if the append scenario is not selected)
    --rebuild-events N        Events in the log before the rebuild (default 1000000)
    --catch-up                Before the rebuilds, also time a fresh runner replaying the whole
                              log into all projections at once (default: start them at the head)
    --load-writers N          Writers that load the rebuild log (default 16)
    --batch-size N            Events per projection transaction (default: the runner's, 5000)
    --api-clients LIST        Concurrent triggerBuild clients, closed loop (default 16,64)
    --api-rate N              triggerBuild requests/s of the paced run (default 500)
    --update-samples N        Changes timed per kind in api-updates (default 500)
    --subscribers N           WebSocket subscribers in api-fanout (default 10000)
    --build-samples N         Measured builds of each pipeline in build-overhead (default 20)
    --build-jobs N            Jobs per pipeline in build-overhead (default 20)
    --build-pipelines LIST    Pipelines built in build-overhead (default chain,independent,
                              chain-image,independent-image; the -image ones run every job in
                              a podman container of a local busybox image)
    --container-runtime NAME  podman's OCI runtime for build-overhead's containers, the server's
                              and the baselines' (default runc; empty: podman's default)
    --container-ulimits LIST  --ulimit values of those containers (default
                              nofile=1024:1024,nproc=1024:1024; empty: none)
    --server-binary PATH      The `monkeyci` binary api-fanout and build-overhead start (default:
                              the one next to this binary; `cargo build --release -p monkeyci`)
    --server-connections N    That server's database connections (default 20, its default)
    --pool-size N             Connections per pool (default 80; capped by free server slots)
    --database-url URL        Server to use; a fresh database is created on it and dropped at
                              the end (default postgres://postgres@127.0.0.1:5432/postgres)
    --keep-database           Do not drop the benchmark databases at the end
    -h, --help                This text
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Append,
    StoreSql,
    EventsInsert,
    Ceiling,
    Lag,
    Rebuild,
    ApiMutations,
    ApiUpdates,
    ApiFanout,
    BuildOverhead,
}

impl Scenario {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        Ok(match raw {
            "append" => Self::Append,
            "append-sql" => Self::StoreSql,
            "events-insert" => Self::EventsInsert,
            "ceiling" => Self::Ceiling,
            "lag" => Self::Lag,
            "rebuild" => Self::Rebuild,
            "api-mutations" => Self::ApiMutations,
            "api-updates" => Self::ApiUpdates,
            "api-fanout" => Self::ApiFanout,
            "build-overhead" => Self::BuildOverhead,
            other => bail!(
                "unknown scenario {other:?} (append, append-sql, events-insert, ceiling, lag, rebuild, api-mutations, api-updates, api-fanout, build-overhead)"
            ),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Args {
    pub scenarios: Vec<Scenario>,
    pub seconds: Duration,
    pub warmup: Duration,
    pub slices: usize,
    pub writers: Vec<usize>,
    pub events_per_command: Vec<usize>,
    pub lag_seconds: Duration,
    pub lag_writers: usize,
    pub lag_rate: Option<f64>,
    pub rebuild_events: u64,
    pub load_writers: usize,
    pub catch_up: bool,
    pub batch_size: u32,
    pub api_clients: Vec<usize>,
    pub api_rate: f64,
    pub update_samples: usize,
    pub subscribers: usize,
    pub build_samples: usize,
    pub build_jobs: usize,
    pub build_pipelines: Vec<Shape>,
    pub container_runtime: Option<String>,
    pub container_ulimits: Vec<String>,
    pub server_binary: Option<std::path::PathBuf>,
    pub server_connections: u32,
    pub pool_size: u32,
    pub database_url: String,
    pub keep_database: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            scenarios: vec![
                Scenario::Append,
                Scenario::StoreSql,
                Scenario::EventsInsert,
                Scenario::Ceiling,
                Scenario::Lag,
                Scenario::Rebuild,
                Scenario::ApiMutations,
                Scenario::ApiUpdates,
                Scenario::ApiFanout,
                Scenario::BuildOverhead,
            ],
            seconds: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            slices: 1,
            writers: vec![1, 16, 64],
            events_per_command: vec![1, 10],
            lag_seconds: Duration::from_secs(10),
            lag_writers: 16,
            lag_rate: None,
            rebuild_events: 1_000_000,
            load_writers: 16,
            catch_up: false,
            batch_size: monkeyci_projections::RunnerConfig::default().batch_size,
            api_clients: vec![16, 64],
            api_rate: 500.0,
            update_samples: 500,
            subscribers: 10_000,
            build_samples: 20,
            build_jobs: 20,
            build_pipelines: Shape::ALL.to_vec(),
            // What podman needs on the machine of BENCHMARKS.md (crun and podman's default
            // limits fail there).
            container_runtime: Some("runc".into()),
            container_ulimits: vec!["nofile=1024:1024".into(), "nproc=1024:1024".into()],
            server_binary: None,
            server_connections: 20,
            pool_size: 80,
            database_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            keep_database: false,
        }
    }
}

impl Args {
    pub fn has(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// Parses the arguments after the program name; `Ok(None)` means help was asked for.
    pub fn parse(raw: impl IntoIterator<Item = String>) -> anyhow::Result<Option<Self>> {
        let mut args = Self::default();
        let mut raw = raw.into_iter();
        while let Some(flag) = raw.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (flag, None),
            };
            let mut value = || -> anyhow::Result<String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => raw.next().with_context(|| format!("{flag} needs a value")),
                }
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--scenarios" => {
                    args.scenarios = list(&value()?, "--scenarios", Scenario::parse)?;
                }
                "--seconds" => args.seconds = seconds(&value()?, "--seconds")?,
                "--warmup" => args.warmup = seconds(&value()?, "--warmup")?,
                "--slices" => args.slices = positive(&value()?, "--slices")?,
                "--writers" => args.writers = list(&value()?, "--writers", |s| positive(s, "--writers"))?,
                "--events-per-command" => {
                    args.events_per_command = list(&value()?, "--events-per-command", |s| {
                        positive(s, "--events-per-command")
                    })?;
                    if args.events_per_command.iter().any(|k| *k > 12) {
                        bail!("--events-per-command: at most 12 (the events of one build's life)");
                    }
                }
                "--lag-seconds" => args.lag_seconds = seconds(&value()?, "--lag-seconds")?,
                "--lag-writers" => args.lag_writers = positive(&value()?, "--lag-writers")?,
                "--lag-rate" => {
                    let v = value()?;
                    let rate: f64 = v
                        .parse()
                        .with_context(|| format!("--lag-rate: {v:?} is not a number"))?;
                    if !(rate.is_finite() && rate > 0.0) {
                        bail!("--lag-rate must be positive");
                    }
                    args.lag_rate = Some(rate);
                }
                "--rebuild-events" => {
                    let v = value()?;
                    args.rebuild_events = v
                        .replace('_', "")
                        .parse()
                        .with_context(|| format!("--rebuild-events: {v:?}"))?;
                }
                "--load-writers" => args.load_writers = positive(&value()?, "--load-writers")?,
                "--pool-size" => {
                    let n = positive(&value()?, "--pool-size")?;
                    args.pool_size = u32::try_from(n).context("--pool-size is too large")?;
                }
                "--batch-size" => {
                    let n = positive(&value()?, "--batch-size")?;
                    args.batch_size = u32::try_from(n).context("--batch-size is too large")?;
                }
                "--api-clients" => {
                    args.api_clients = list(&value()?, "--api-clients", |s| positive(s, "--api-clients"))?;
                }
                "--api-rate" => {
                    let v = value()?;
                    let rate: f64 = v
                        .parse()
                        .with_context(|| format!("--api-rate: {v:?} is not a number"))?;
                    if !(rate.is_finite() && rate > 0.0) {
                        bail!("--api-rate must be positive");
                    }
                    args.api_rate = rate;
                }
                "--update-samples" => args.update_samples = positive(&value()?, "--update-samples")?,
                "--subscribers" => args.subscribers = positive(&value()?, "--subscribers")?,
                "--build-samples" => args.build_samples = positive(&value()?, "--build-samples")?,
                "--build-pipelines" => {
                    args.build_pipelines.clear();
                    for shape in list(&value()?, "--build-pipelines", Shape::parse)? {
                        if !args.build_pipelines.contains(&shape) {
                            args.build_pipelines.push(shape);
                        }
                    }
                }
                "--container-runtime" => {
                    args.container_runtime = Some(value()?).filter(|r| !r.trim().is_empty());
                }
                "--container-ulimits" => {
                    args.container_ulimits = value()?
                        .split(',')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "--build-jobs" => {
                    args.build_jobs = positive(&value()?, "--build-jobs")?;
                    if args.build_jobs > 99 {
                        bail!("--build-jobs: at most 99 (job ids are j01…j99)");
                    }
                }
                "--server-binary" => args.server_binary = Some(value()?.into()),
                "--server-connections" => {
                    let n = positive(&value()?, "--server-connections")?;
                    args.server_connections = u32::try_from(n).context("--server-connections is too large")?;
                }
                "--database-url" => args.database_url = value()?,
                "--keep-database" => args.keep_database = true,
                "--catch-up" => args.catch_up = true,
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        if args.scenarios.is_empty() {
            bail!("--scenarios: nothing selected");
        }
        Ok(Some(args))
    }
}

fn list<T>(raw: &str, flag: &str, parse: impl Fn(&str) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    let items: Vec<T> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect::<anyhow::Result<_>>()?;
    if items.is_empty() {
        bail!("{flag}: empty list");
    }
    Ok(items)
}

fn positive(raw: &str, flag: &str) -> anyhow::Result<usize> {
    let n: usize = raw
        .parse()
        .with_context(|| format!("{flag}: {raw:?} is not a whole number"))?;
    if n == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

fn seconds(raw: &str, flag: &str) -> anyhow::Result<Duration> {
    let s: f64 = raw
        .parse()
        .with_context(|| format!("{flag}: {raw:?} is not a number"))?;
    if !(s.is_finite() && s >= 0.0) {
        bail!("{flag} must be a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Args>> {
        Args::parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_select_every_scenario() -> anyhow::Result<()> {
        let args = parse(&[])?.context("not help")?;
        assert_eq!(args.writers, vec![1, 16, 64]);
        assert_eq!(args.events_per_command, vec![1, 10]);
        assert!(args.has(Scenario::Rebuild));
        assert!(args.has(Scenario::BuildOverhead));
        assert_eq!((args.build_samples, args.build_jobs), (20, 20));
        assert_eq!(args.build_pipelines, Shape::ALL.to_vec());
        assert_eq!(args.container_runtime.as_deref(), Some("runc"));
        assert_eq!(args.container_ulimits, ["nofile=1024:1024", "nproc=1024:1024"]);
        Ok(())
    }

    #[test]
    fn flags_take_separate_or_inline_values() -> anyhow::Result<()> {
        let args = parse(&[
            "--seconds",
            "5",
            "--writers=2,4",
            "--scenarios",
            "lag",
            "--rebuild-events=1_000",
        ])?
        .context("not help")?;
        assert_eq!(args.seconds, Duration::from_secs(5));
        assert_eq!(args.writers, vec![2, 4]);
        assert_eq!(args.scenarios, vec![Scenario::Lag]);
        assert_eq!(args.rebuild_events, 1000);
        Ok(())
    }

    #[test]
    fn api_flags_are_parsed() -> anyhow::Result<()> {
        let args = parse(&[
            "--scenarios=api-mutations,api-fanout",
            "--api-clients",
            "8",
            "--api-rate=250",
            "--subscribers",
            "100",
            "--server-binary",
            "/bin/monkeyci",
        ])?
        .context("not help")?;
        assert_eq!(args.scenarios, vec![Scenario::ApiMutations, Scenario::ApiFanout]);
        assert_eq!(args.api_clients, vec![8]);
        assert_eq!(args.api_rate, 250.0);
        assert_eq!(args.subscribers, 100);
        assert_eq!(args.server_binary, Some("/bin/monkeyci".into()));
        assert!(parse(&["--api-rate", "0"]).is_err());
        Ok(())
    }

    #[test]
    fn build_overhead_flags_are_parsed() -> anyhow::Result<()> {
        let args = parse(&[
            "--scenarios=build-overhead",
            "--build-samples",
            "5",
            "--build-jobs=3",
            "--build-pipelines=chain",
        ])?
        .context("not help")?;
        assert_eq!(args.scenarios, vec![Scenario::BuildOverhead]);
        assert_eq!((args.build_samples, args.build_jobs), (5, 3));
        assert_eq!(args.build_pipelines, vec![Shape::Chain]);
        let twice = parse(&["--build-pipelines", "independent,chain,independent"])?.context("not help")?;
        assert_eq!(twice.build_pipelines, vec![Shape::Independent, Shape::Chain]);
        assert!(parse(&["--build-pipelines", "diamond"]).is_err());
        let images = parse(&["--build-pipelines=chain-image,independent-image"])?.context("not help")?;
        assert_eq!(images.build_pipelines, vec![Shape::ChainImage, Shape::IndependentImage]);
        assert!(parse(&["--build-jobs", "100"]).is_err());
        assert!(parse(&["--build-samples", "0"]).is_err());
        Ok(())
    }

    #[test]
    fn container_flags_can_be_emptied_for_podmans_defaults() -> anyhow::Result<()> {
        let args =
            parse(&["--container-runtime", "crun", "--container-ulimits=nofile=4096:4096"])?.context("not help")?;
        assert_eq!(args.container_runtime.as_deref(), Some("crun"));
        assert_eq!(args.container_ulimits, ["nofile=4096:4096"]);
        let defaults = parse(&["--container-runtime=", "--container-ulimits", ""])?.context("not help")?;
        assert_eq!(defaults.container_runtime, None);
        assert!(defaults.container_ulimits.is_empty());
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--writers", "0"]).is_err());
        assert!(parse(&["--scenarios", "nope"]).is_err());
        assert!(parse(&["--lag-rate", "-1"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(matches!(parse(&["--help"]), Ok(None)));
    }
}
