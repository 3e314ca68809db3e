//! Scenario 3: how long after an append returns the builds projection has applied it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use monkeyci_eventstore::{AppendResult, Cursor, EventFeed, EventStore, FeedConfig};
use monkeyci_projections::{ProjectionRunner, Role, RunnerConfig, RunnerHandle};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::stats::Samples;
use crate::workload::{self, Generator, LIFECYCLE_LEN};

/// How long to wait, after the last append, for the projection to apply the rest.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct LagResult {
    pub writers: usize,
    pub target_rate: f64,
    pub appends: u64,
    pub seconds: f64,
    /// Append return → builds checkpoint at or past the append's cursor.
    pub lag: Samples,
    /// Append latency while the projections ran.
    pub append_latency: Samples,
    /// Appends the projection had not applied `GRACE` after the last one.
    pub unresolved: usize,
}

impl LagResult {
    pub fn achieved_rate(&self) -> f64 {
        self.appends as f64 / self.seconds
    }
}

/// The default runner settings with `batch_size` events per transaction.
pub fn runner_config(batch_size: u32) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        ..RunnerConfig::default()
    }
}

/// Starts the event feed and every projection on `store` and waits until they hold their leases.
pub async fn start_runner(store: &EventStore, batch_size: u32) -> anyhow::Result<RunnerHandle> {
    let feed = EventFeed::start(store.clone(), FeedConfig::default()).await?;
    let handle = ProjectionRunner::new(
        store.clone(),
        feed,
        monkeyci_projections::all(),
        runner_config(batch_size),
    )
    .start();
    for name in ["orgs", "repos", "builds"] {
        let mut role = handle.role(name).with_context(|| format!("no projection {name}"))?;
        tokio::time::timeout(Duration::from_secs(30), role.wait_for(|r| *r == Role::Active))
            .await
            .with_context(|| format!("projection {name} did not become active"))?
            .with_context(|| format!("projection {name} stopped"))?;
    }
    Ok(handle)
}

/// Waits until the checkpoint reaches `head`.
pub async fn wait_for_checkpoint(
    checkpoint: &mut watch::Receiver<Cursor>,
    head: Cursor,
    limit: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(limit, checkpoint.wait_for(|c| *c >= head))
        .await
        .with_context(|| format!("checkpoint did not reach {head} within {limit:?}"))?
        .context("the projection stopped")?;
    Ok(())
}

/// Paced writers append one event per command to builds that go through their whole life,
/// `rate` commands per second in all, for `seconds`, while the projections run.
pub async fn run(
    pool: &PgPool,
    writers: usize,
    rate: f64,
    seconds: Duration,
    batch_size: u32,
) -> anyhow::Result<LagResult> {
    let store = EventStore::new(pool.clone());
    let handle = start_runner(&store, batch_size).await?;
    let result = measure(&store, &handle, writers, rate, seconds).await;
    handle.shutdown().await;
    result
}

async fn measure(
    store: &EventStore,
    handle: &RunnerHandle,
    writers: usize,
    rate: f64,
    seconds: Duration,
) -> anyhow::Result<LagResult> {
    let mut checkpoint = handle.checkpoint("builds").context("no builds projection")?;
    // Anything appended before (a rate calibration) must be applied first.
    let head = store.head().await?;
    wait_for_checkpoint(&mut checkpoint, head, Duration::from_secs(120)).await?;

    let (sent, received) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_lag(checkpoint, received));
    let generator = Arc::new(Generator::new()?);
    let period = Duration::from_secs_f64(writers as f64 / rate);
    let start = Instant::now();
    let end = start + seconds;
    let mut tasks = JoinSet::new();
    for w in 0..writers {
        let store = store.clone();
        let generator = generator.clone();
        let sent = sent.clone();
        // Spread the writers over one period so they do not all fire together.
        let offset = period.mul_f64(w as f64 / writers as f64);
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval_at(start + offset, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let (org_id, repo_id) = workload::random_owner();
            let mut seq = (w as u64) << 32;
            let mut script = generator.build(org_id, repo_id, seq)?;
            let mut step = 0;
            let mut appends = 0u64;
            let mut latency = Samples::with_capacity(1024);
            loop {
                ticks.tick().await;
                if Instant::now() >= end {
                    break;
                }
                if step == LIFECYCLE_LEN {
                    seq += 1;
                    script = generator.build(org_id, repo_id, seq)?;
                    step = 0;
                }
                let write = workload::append_of(&script, step, 1);
                let began = Instant::now();
                let result = store.append(&[write], None).await?;
                let returned = Instant::now();
                let AppendResult::Appended { last: Some(cursor) } = result else {
                    anyhow::bail!("unexpected append result {result:?}");
                };
                step += 1;
                appends += 1;
                latency.push(returned - began);
                // The watcher outlives the writers; a closed channel only means it failed.
                let _ = sent.send((cursor, returned));
            }
            anyhow::Ok((appends, latency))
        });
    }
    drop(sent);
    let mut appends = 0;
    let mut append_latency = Samples::with_capacity(65536);
    while let Some(joined) = tasks.join_next().await {
        let (a, l) = joined.context("a writer panicked")??;
        appends += a;
        append_latency.extend(l);
    }
    let (lag, unresolved) = watcher.await.context("the lag watcher panicked")?;
    Ok(LagResult {
        writers,
        target_rate: rate,
        appends,
        seconds: seconds.as_secs_f64(),
        lag,
        append_latency,
        unresolved,
    })
}

/// Matches each append's cursor against the builds checkpoint as it moves.
async fn watch_lag(
    mut checkpoint: watch::Receiver<Cursor>,
    mut appended: mpsc::UnboundedReceiver<(Cursor, Instant)>,
) -> (Samples, usize) {
    let mut pending: BinaryHeap<Reverse<(Cursor, Instant)>> = BinaryHeap::new();
    let mut lag = Samples::with_capacity(65536);
    let mut open = true;
    let mut deadline = Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        if !open && pending.is_empty() {
            break;
        }
        tokio::select! {
            changed = checkpoint.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            message = appended.recv(), if open => match message {
                Some(entry) => pending.push(Reverse(entry)),
                None => {
                    open = false;
                    deadline = Instant::now() + GRACE;
                }
            },
            () = tokio::time::sleep_until(deadline), if !open => break,
        }
        let reached = *checkpoint.borrow_and_update();
        let now = Instant::now();
        while let Some(Reverse((cursor, at))) = pending.peek() {
            if *cursor > reached {
                break;
            }
            lag.push(now.saturating_duration_since(*at));
            pending.pop();
        }
    }
    (lag, pending.len())
}
