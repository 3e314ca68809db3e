//! A MonkeyCI projection worker for tests: runs every projection against a database and prints
//! `<role> <projection>` whenever its role changes, so tests can kill it at a known point.
//!
//! `monkeyci-test-worker URL [--batch-size N] [--stall-builds-at-batch K]`: with the stall option
//! the builds projection applies half of its K-th batch inside the transaction, prints
//! `stalled builds` and waits forever, for a test to kill the process mid-batch.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use monkeyci_eventstore::{EventFeed, EventStore, FeedConfig, RecordedEvent};
use monkeyci_projections::{BuildsProjection, OrgsProjection, Projection, ProjectionError, ReposProjection};
use sqlx::PgConnection;

#[derive(Debug)]
struct StallingBuilds {
    at_batch: u32,
    batches: AtomicU32,
}

impl Projection for StallingBuilds {
    fn name(&self) -> &'static str {
        BuildsProjection.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        BuildsProjection.tables()
    }

    fn categories(&self) -> &'static [&'static str] {
        BuildsProjection.categories()
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let batch = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            if batch < self.at_batch {
                return BuildsProjection.apply(conn, events).await;
            }
            BuildsProjection.apply(conn, &events[..events.len() / 2]).await?;
            say("stalled builds");
            std::future::pending().await
        })
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: monkeyci-test-worker URL [--batch-size N] [--stall-builds-at-batch K]")?;
    let mut batch_size = 500;
    let mut stall_at = None;
    while let Some(flag) = args.next() {
        let value: u32 = args.next().context("flag without value")?.parse()?;
        match flag.as_str() {
            "--batch-size" => batch_size = value,
            "--stall-builds-at-batch" => stall_at = Some(value),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let options = options.application_name(&format!("monkeyci-test-worker-{}", std::process::id()));
    let pool = sqlx::PgPool::connect_with(options).await?;
    let store = EventStore::new(pool);
    let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
    let builds: Arc<dyn Projection> = match stall_at {
        Some(at_batch) => Arc::new(StallingBuilds {
            at_batch,
            batches: AtomicU32::new(0),
        }),
        None => Arc::new(BuildsProjection),
    };
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(OrgsProjection), Arc::new(ReposProjection), builds];
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    let runner = monkeyci_projections::ProjectionRunner::new(
        store,
        feed,
        projections,
        monkeyci_tests::test_runner_config(batch_size),
    )
    .start();
    let mut watchers = Vec::new();
    for name in names {
        let mut role = runner.role(name).context("role")?;
        watchers.push(tokio::spawn(async move {
            loop {
                let current = *role.borrow_and_update();
                say(&format!("{} {name}", format!("{current:?}").to_lowercase()));
                if role.changed().await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::signal::ctrl_c().await?;
    runner.shutdown().await;
    Ok(())
}
