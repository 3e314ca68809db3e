//! Storing job output durably while jobs run.
//!
//! Lines arrive from the executors; one writer per build stores them in batches in
//! `job_log_lines`, numbering each job's lines from 1. A trigger announces every batch on
//! [`monkeyci_projections::JOB_LOG_CHANNEL`], so live readers (the `jobLog` subscription) wake at
//! once; they read the lines through [`monkeyci_projections::queries::job_log`].

use std::collections::HashMap;

use monkeyci_domain::{BuildId, JobId};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::executor::{LogLine, LogStream};
use crate::scheduler::LogItem;

const BATCH: usize = 500;

fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
    }
}

/// Writes every line received on `lines` for `build_id`, until the channel closes.
///
/// A batch is whatever has arrived by the time the previous one is written (at most 500 lines),
/// so a quiet job's line is stored at once and a chatty job's lines share few statements.
pub async fn write_logs(
    pool: PgPool,
    build_id: BuildId,
    mut items: mpsc::Receiver<LogItem>,
    masker: Option<monkeyci_crypto::Masker>,
) {
    let mut next_seq: HashMap<JobId, i64> = HashMap::new();
    let mut batch: Vec<(JobId, LogLine)> = Vec::with_capacity(BATCH);
    let mut flushed = Vec::new();
    while let Some(first) = items.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                LogItem::Line(job, mut line) => {
                    if let Some(masker) = &masker {
                        if let std::borrow::Cow::Owned(masked) = masker.mask(&line.text) {
                            line.text = masked;
                        }
                    }
                    batch.push((job, line))
                }
                LogItem::Flush(done) => flushed.push(done),
            }
            if batch.len() < BATCH {
                next = items.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(error) = insert(&pool, build_id, &mut next_seq, &batch).await {
                tracing::warn!(%error, build = %build_id, lines = batch.len(), "could not store job output");
            }
            batch.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn insert(
    pool: &PgPool,
    build_id: BuildId,
    next_seq: &mut HashMap<JobId, i64>,
    batch: &[(JobId, LogLine)],
) -> Result<(), sqlx::Error> {
    let mut jobs = Vec::with_capacity(batch.len());
    let mut seqs = Vec::with_capacity(batch.len());
    let mut ats = Vec::with_capacity(batch.len());
    let mut streams = Vec::with_capacity(batch.len());
    let mut texts = Vec::with_capacity(batch.len());
    for (job, line) in batch {
        let seq = next_seq.entry(job.clone()).or_insert(0);
        *seq += 1;
        jobs.push(job.to_string());
        seqs.push(*seq);
        ats.push(line.at);
        streams.push(stream_name(line.stream));
        texts.push(line.text.replace('\0', "\u{FFFD}"));
    }
    sqlx::query(
        "INSERT INTO job_log_lines (build_id, job_id, seq, at, stream, text) \
         SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::timestamptz[], $5::text[], $6::text[])",
    )
    .bind(build_id.as_uuid())
    .bind(&jobs)
    .bind(&seqs)
    .bind(&ats)
    .bind(&streams)
    .bind(&texts)
    .execute(pool)
    .await?;
    Ok(())
}
