//! `monkeyci-bench`: throughput and latency of the event log, the projections and the API.
//!
//! Every scenario runs on a fresh database created for this run and dropped at the end. The
//! report, a set of markdown tables, goes to stdout; progress goes to stderr. See BENCHMARKS.md.

mod api;
mod append;
mod args;
mod builds;
mod db;
mod lag;
mod rebuild;
mod stats;
mod sys;
mod workload;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;

use crate::append::{Measurement, Target};
use crate::args::{Args, Scenario, USAGE};
use crate::db::{Server, ServerInfo};
use crate::lag::LagResult;
use crate::rebuild::RebuildResult;
use crate::stats::{ms, rate};

/// Connections left free on the server for everybody else.
const SPARE_CONNECTIONS: i64 = 8;

#[derive(Debug, Default)]
struct Report {
    append: Vec<Measurement>,
    lag: Option<LagResult>,
    lag_rate_source: String,
    rebuild: Option<RebuildResult>,
    mutations: Vec<api::MutationRun>,
    updates: Vec<api::UpdateRun>,
    fanout: Option<api::FanoutResult>,
    builds: Option<builds::BuildOverheadResult>,
    /// The 1-minute load average before and after each scenario.
    loads: Vec<(&'static str, f64, f64)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(args) = Args::parse(std::env::args().skip(1))? else {
        print!("{USAGE}");
        return Ok(());
    };
    let mut server = Server::new(&args.database_url)?;
    let info = server.info().await?;
    let free = info.max_connections - info.in_use - SPARE_CONNECTIONS;
    let pool_size = u32::try_from(free.min(i64::from(args.pool_size)))
        .ok()
        .filter(|n| *n >= 4)
        .with_context(|| {
            format!(
                "only {free} connections free on the server ({} of {} in use)",
                info.in_use, info.max_connections
            )
        })?;
    let needed = args.writers.iter().copied().max().unwrap_or(1);
    if (pool_size as usize) < needed {
        eprintln!(
            "warning: pool of {pool_size} connections (server: {} of {} in use) is smaller than {needed} writers",
            info.in_use, info.max_connections
        );
    }
    eprintln!(
        "PostgreSQL {}, max_connections {} ({} in use), pool {pool_size}",
        info.version, info.max_connections, info.in_use
    );
    let started = chrono::Utc::now();
    let mut report = Report::default();
    let outcome = run(&args, &mut server, pool_size, &mut report).await;
    if args.keep_database {
        eprintln!("kept databases {:?}", server.created());
    } else if let Err(error) = server.drop_all().await {
        eprintln!("warning: {error:#}");
    }
    // What was measured before a failure is still worth having.
    print!("{}", render(&args, &info, pool_size, started, &report));
    outcome
}

async fn run(args: &Args, server: &mut Server, pool_size: u32, report: &mut Report) -> anyhow::Result<()> {
    let targets: Vec<Target> = [
        (Scenario::Append, Target::Store),
        (Scenario::StoreSql, Target::StoreSql),
        (Scenario::EventsInsert, Target::EventsInsert),
        (Scenario::Ceiling, Target::Ceiling),
    ]
    .into_iter()
    .filter(|(s, _)| args.has(*s))
    .map(|(_, t)| t)
    .collect();
    if !targets.is_empty() {
        eprintln!("append/ceiling: {targets:?}");
        let load = sys::load_average();
        let pool = server.fresh_database("append", pool_size).await?;
        append::create_ceiling_tables(&pool).await?;
        let most = args.writers.iter().copied().max().unwrap_or(1);
        Server::warm_pool(&pool, pool_size.min(u32::try_from(most).unwrap_or(u32::MAX))).await?;
        report.append = append::run_all(
            &pool,
            &targets,
            &args.writers,
            &args.events_per_command,
            args.warmup,
            args.seconds,
            args.slices,
        )
        .await?;
        pool.close().await;
        report.loads.push(("append/ceiling", load, sys::load_average()));
    }
    if args.has(Scenario::Lag) {
        eprintln!("projection lag");
        let load = sys::load_average();
        let pool = server.fresh_database("lag", pool_size).await?;
        let measured = report
            .append
            .iter()
            .find(|m| m.target == Target::Store && m.writers == args.lag_writers && m.events_per_command == 1);
        let rate = match (args.lag_rate, measured) {
            (Some(rate), _) => {
                report.lag_rate_source = "--lag-rate".into();
                rate
            }
            (None, Some(m)) => {
                report.lag_rate_source = format!(
                    "half of the {} cmd/s measured above for {} writers, 1 event/cmd",
                    rate_of(m),
                    m.writers
                );
                m.commands_per_s() / 2.0
            }
            (None, None) => {
                let m = append::measure(
                    &pool,
                    Target::Store,
                    args.lag_writers,
                    1,
                    Duration::from_secs(1),
                    Duration::from_secs(3),
                )
                .await?;
                report.lag_rate_source = format!(
                    "half of the {} cmd/s of a 3 s calibration run, {} writers, 1 event/cmd",
                    rate_of(&m),
                    m.writers
                );
                m.commands_per_s() / 2.0
            }
        };
        eprintln!(
            "  {} writers at {rate:.0} commands/s for {:?}",
            args.lag_writers, args.lag_seconds
        );
        let mut result = lag::run(&pool, args.lag_writers, rate, args.lag_seconds, args.batch_size).await?;
        eprintln!(
            "  lag p50 {:.2} ms p99 {:.2} ms over {} appends ({} unresolved)",
            result.lag.percentile_ms(50.0),
            result.lag.percentile_ms(99.0),
            result.lag.len(),
            result.unresolved
        );
        report.lag = Some(result);
        pool.close().await;
        report.loads.push(("lag", load, sys::load_average()));
    }
    if args.has(Scenario::Rebuild) {
        eprintln!("rebuild");
        let load = sys::load_average();
        let pool = server.fresh_database("rebuild", pool_size).await?;
        report.rebuild = Some(
            rebuild::run(
                &pool,
                args.rebuild_events,
                args.load_writers,
                args.catch_up,
                args.batch_size,
            )
            .await?,
        );
        pool.close().await;
        report.loads.push(("rebuild", load, sys::load_average()));
    }
    let settings = api::ApiSettings {
        warmup: args.warmup,
        seconds: args.seconds,
        clients: args.api_clients.clone(),
        rate: args.api_rate,
        update_samples: args.update_samples,
        batch_size: args.batch_size,
    };
    if args.has(Scenario::ApiMutations) {
        eprintln!("API: triggerBuild over HTTP");
        let pool = server.fresh_database("api_mutations", args.server_connections).await?;
        report.mutations = api::mutations(&pool, &settings).await?;
        pool.close().await;
    }
    if args.has(Scenario::ApiUpdates) {
        eprintln!("API: buildUpdated delivery");
        let pool = server.fresh_database("api_updates", args.server_connections).await?;
        report.updates = api::updates(&pool, &settings).await?;
        pool.close().await;
    }
    if args.has(Scenario::ApiFanout) {
        eprintln!("API: {} subscribers of one build", args.subscribers);
        // The server creates its tables (its migrations may be newer than this binary's).
        let options = server.empty_database("api_fanout").await?;
        let settings = api::FanoutSettings {
            subscribers: args.subscribers,
            server_binary: args.server_binary.clone(),
            server_connections: args.server_connections,
            connect_concurrency: 200,
        };
        report.fanout = Some(api::fanout(&options, &settings).await?);
    }
    if args.has(Scenario::BuildOverhead) {
        eprintln!(
            "running builds: {} jobs, {} builds of each pipeline",
            args.build_jobs, args.build_samples
        );
        let options = server.empty_database("build_overhead").await?;
        let settings = builds::BuildSettings {
            samples: args.build_samples,
            jobs: args.build_jobs,
            shapes: args.build_pipelines.clone(),
            server_binary: args.server_binary.clone(),
            server_connections: args.server_connections,
            container_runtime: args.container_runtime.clone(),
            container_ulimits: args.container_ulimits.clone(),
        };
        let result = builds::run(&options, &settings).await?;
        let failures = result.failures();
        report.builds = Some(result);
        if failures > 0 {
            anyhow::bail!("build-overhead: {failures} builds did not succeed (see the report)");
        }
    }
    Ok(())
}

fn rate_of(m: &Measurement) -> String {
    rate(m.commands_per_s())
}

fn render(
    args: &Args,
    info: &ServerInfo,
    pool_size: u32,
    started: chrono::DateTime<chrono::Utc>,
    report: &Report,
) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(out, "## Run of {}\n", started.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        out,
        "- command: `cargo run --release -p monkeyci-bench --{}`",
        command.iter().map(|a| format!(" {a}")).collect::<String>()
    );
    let _ = writeln!(
        out,
        "- machine: {cores} cores (client and server share them); PostgreSQL {} (max_connections {}, \
         {} in use by others at the start; shared_buffers {}, synchronous_commit {}, fsync {}, \
         wal_sync_method {}, commit_delay {}); pool of {pool_size} connections",
        info.version,
        info.max_connections,
        info.in_use,
        info.shared_buffers,
        info.synchronous_commit,
        info.fsync,
        info.wal_sync_method,
        info.commit_delay
    );
    let _ = writeln!(
        out,
        "- append/ceiling and API runs: {} s measured after {} s warm-up each; projections: \
         RunnerConfig::default() with batch_size {}\n",
        args.seconds.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.batch_size
    );
    if !report.append.is_empty() {
        let mut rows = report.append.clone();
        let _ = writeln!(out, "### Append throughput\n\n{}", append::table(&mut rows));
    }
    if let Some(lag) = &report.lag {
        let mut lag = lag.clone();
        let _ = writeln!(
            out,
            "### Projection lag (builds)\n\nRate: {}.\n\n\
             | writers | target cmd/s | achieved cmd/s | appends | lag p50 ms | lag p99 ms | lag max ms | \
             append p50 ms | append p99 ms | not applied after 30 s |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            report.lag_rate_source,
            lag.writers,
            rate(lag.target_rate),
            rate(lag.achieved_rate()),
            lag.appends,
            ms(lag.lag.percentile_ms(50.0)),
            ms(lag.lag.percentile_ms(99.0)),
            ms(lag.lag.max_ms()),
            ms(lag.append_latency.percentile_ms(50.0)),
            ms(lag.append_latency.percentile_ms(99.0)),
            lag.unresolved,
        );
    }
    if let Some(r) = &report.rebuild {
        let _ = writeln!(
            out,
            "### Rebuild\n\nLog: {} events ({} builds of 12 events, plus orgs and repos), loaded by {} writers in \
             {:.1} s ({} events/s, one 12-event append per build). After the rebuild: {} rows in builds, {} in jobs.\n",
            r.events,
            r.builds,
            r.load_writers,
            r.load_seconds,
            rate(r.events as f64 / r.load_seconds),
            r.build_rows,
            r.job_rows,
        );
        if !r.catch_up.is_empty() {
            let _ = writeln!(
                out,
                "Initial catch-up of a fresh runner (all three projections at once): {}.\n",
                r.catch_up
                    .iter()
                    .map(|(name, s)| format!("{name} {s:.1} s ({} events/s)", rate(r.events as f64 / s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "| projection | rebuild() call s | noticed after s | total s | events/s (total) | events/s (replay only) | \
             builds analyzed before | seq scans (rows read) / index scans of builds+jobs |\n\
             |---|---:|---:|---:|---:|---:|---|---|"
        );
        for b in &r.rebuilds {
            let name = if b.note.is_empty() {
                b.name.to_owned()
            } else {
                format!("{} ({})", b.name, b.note)
            };
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} ({}) / {} |",
                name,
                b.call_seconds,
                b.noticed_seconds,
                b.total_seconds,
                rate(b.events_per_s(r.events)),
                rate(b.replay_events_per_s(r.events)),
                if b.scans.analyzed { "yes" } else { "no" },
                rate(b.scans.seq_scans as f64),
                rate(b.scans.seq_rows as f64),
                rate(b.scans.idx_scans as f64),
            );
        }
        out.push('\n');
    }
    render_api(&mut out, report);
    if let Some(builds) = &report.builds {
        out.push_str(&builds::render(builds));
    }
    if !report.loads.is_empty() {
        let _ = writeln!(
            out,
            "Load average (1 min) before → after: {}\n",
            report
                .loads
                .iter()
                .map(|(name, a, b)| format!("{name} {a:.1} → {b:.1}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    out
}

fn render_api(out: &mut String, report: &Report) {
    if !report.mutations.is_empty() {
        let _ = writeln!(
            out,
            "### API: `triggerBuild` over HTTP\n\n\
             | run | requests/s | requests | errors | p50 ms | p99 ms | max ms | load before → after |\n\
             |---|---:|---:|---:|---:|---:|---:|---|"
        );
        for run in &report.mutations {
            let mut latency = run.latency.clone();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} → {:.1} |",
                run.shape,
                rate(run.rate()),
                run.requests,
                run.errors,
                ms(latency.percentile_ms(50.0)),
                ms(latency.percentile_ms(99.0)),
                ms(latency.max_ms()),
                run.load.0,
                run.load.1,
            );
        }
        out.push('\n');
    }
    if !report.updates.is_empty() {
        let _ = writeln!(
            out,
            "### API: `buildUpdated` delivery (one subscriber)\n\n\
             | change | samples | change p50 ms | change p99 ms | delivery p50 ms | delivery p99 ms | delivery max ms | missing |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for run in &report.updates {
            let (mut change, mut delivery) = (run.change_latency.clone(), run.delivery.clone());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                run.change,
                delivery.len(),
                ms(change.percentile_ms(50.0)),
                ms(change.percentile_ms(99.0)),
                ms(delivery.percentile_ms(50.0)),
                ms(delivery.percentile_ms(99.0)),
                ms(delivery.max_ms()),
                run.missing,
            );
        }
        if let Some(run) = report.updates.first() {
            let _ = writeln!(out, "\nLoad average {:.1} → {:.1}.", run.load.0, run.load.1);
        }
        out.push('\n');
    }
    if let Some(f) = &report.fanout {
        let per = |kib: u64, n: usize| {
            if n == 0 {
                "–".to_owned()
            } else {
                format!("{:.1}", kib as f64 / n as f64)
            }
        };
        let connections = f.connected_memory.rss_kib.saturating_sub(f.before.rss_kib);
        let subscriptions = f.subscribed_memory.rss_kib.saturating_sub(f.connected_memory.rss_kib);
        let total = f.subscribed_memory.rss_kib.saturating_sub(f.before.rss_kib);
        let _ = writeln!(
            out,
            "### API: {} WebSocket subscribers of one build (`monkeyci server` process, {} database connections)\n\n\
             {} of {} connected and initialised in {:.1} s, then {} subscribed in {:.1} s (200 at a time). \
             Open-files limit {}. Load average {:.1} → {:.1}.\n\n\
             | server memory | VmRSS MiB | VmHWM (peak) MiB | growth KiB per connection |\n|---|---:|---:|---:|\n\
             | before the subscribers | {} | {} | |\n\
             | {} connections, initialised, no subscription | {} | {} | {} |\n\
             | {} subscribers | {} | {} | {} (of which subscriptions {}) |\n\
             | after the build finished (subscriptions completed, clients disconnected) | {} | {} | |\n\n\
             The clients (this process, 8 KiB WebSocket read buffers): {} MiB.\n",
            f.subscribers,
            f.server_connections,
            f.connected,
            f.subscribers,
            f.connect_seconds,
            f.subscribed,
            f.subscribe_seconds,
            f.open_files_limit,
            f.load.0,
            f.load.1,
            sys::mib(f.before.rss_kib),
            sys::mib(f.before.peak_kib),
            f.connected,
            sys::mib(f.connected_memory.rss_kib),
            sys::mib(f.connected_memory.peak_kib),
            per(connections, f.connected),
            f.subscribed,
            sys::mib(f.subscribed_memory.rss_kib),
            sys::mib(f.subscribed_memory.peak_kib),
            per(total, f.subscribed),
            per(subscriptions, f.subscribed),
            sys::mib(f.after.rss_kib),
            sys::mib(f.after.peak_kib),
            sys::mib(f.client_memory.rss_kib),
        );
        let _ = writeln!(
            out,
            "| change (command handler, another process) | delivered | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|"
        );
        let mut all = stats::Samples::default();
        for round in &f.rounds {
            let mut d = round.delivery.clone();
            let _ = writeln!(
                out,
                "| {} | {} of {} | {} | {} | {} |",
                round.change,
                round.delivered,
                f.subscribed,
                ms(d.percentile_ms(50.0)),
                ms(d.percentile_ms(99.0)),
                ms(d.max_ms()),
            );
            all.extend(round.delivery.clone());
        }
        let _ = writeln!(
            out,
            "| all changes | {} | {} | {} | {} |\n",
            all.len(),
            ms(all.percentile_ms(50.0)),
            ms(all.percentile_ms(99.0)),
            ms(all.max_ms()),
        );
    }
}
