//! Storing job output durably while jobs run.
//!
//! Lines arrive from the executors; one writer per build stores them in batches in
//! `job_log_lines`, numbering each job's lines from 1. A trigger announces every batch, so live
//! readers (the `jobLog` subscription) wake at once.

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

/// One stored line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredLine {
    /// 1 for the job's first line; resume after the last offset seen.
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub text: String,
}

/// Up to `limit` lines of a job's output after line `after`.
pub async fn read_job_log(
    pool: &PgPool,
    build_id: BuildId,
    job_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, at, stream, text FROM job_log_lines \
         WHERE build_id = $1 AND job_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
    )
    .bind(build_id.as_uuid())
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A job's whole output as text, one line per line of output, and the number of lines: what
/// `GET /builds/{build}/jobs/{job}/log` serves and what is archived when the job ends.
pub async fn render_job_log(pool: &PgPool, build_id: BuildId, job_id: &str) -> Result<(String, u64), sqlx::Error> {
    let mut text = String::new();
    let mut after = 0;
    let mut count = 0;
    loop {
        let lines = read_job_log(pool, build_id, job_id, after, 5000).await?;
        if lines.is_empty() {
            return Ok((text, count));
        }
        for line in lines {
            after = line.seq;
            count += 1;
            text.push_str(&line.text);
            text.push('\n');
        }
    }
}

/// The channel on which every stored batch is announced, with payload `<build id> <job id>`.
pub const JOB_LOG_CHANNEL: &str = "monkeyci_job_logs";
