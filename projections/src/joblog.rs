//! Job output kept for good: the archive a runner writes to blob storage when a job ends, and
//! the restore of the `job_log_lines` read model from such an archive.
//!
//! `job_log_lines` is written by the runner while a job runs; it is not made from events, so a
//! replay of the log (an import into a new database, a lost table) does not bring it back. The
//! archive does: `JobLogArchived` names it (key, size, SHA-256, lines), and a reader that finds a
//! finished job with an archive but no stored lines restores them from it, every line with its
//! number, time and stream as the runner stored it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::queries::{each_job_log_line, job_log, StoredLine};
use crate::ReadModels;

/// The file name ending of archives written as NDJSON, one [`StoredLine`] per line:
/// `{"seq":1,"at":"…","stream":"stdout","text":"…"}`. Archives whose key ends otherwise (`.log`,
/// from before) hold the plain text, one line of output per line.
pub const ARCHIVE_SUFFIX: &str = ".ndjson";

/// One line of an archive.
#[derive(Debug, Serialize, Deserialize)]
struct ArchivedLine<'a> {
    seq: i64,
    at: DateTime<Utc>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// Why an archive could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("line {line} of the archive is not a stored log line: {reason}")]
    Malformed { line: usize, reason: String },
}

/// A job's whole stored output as an archive ([`ARCHIVE_SUFFIX`] format) and its line count.
pub async fn job_log_archive(db: &ReadModels, build_id: Uuid, job_id: &str) -> Result<(Vec<u8>, u64), ProjectionError> {
    let mut out = Vec::new();
    let count = each_job_log_line(db, build_id, job_id, |line| {
        let archived = ArchivedLine {
            seq: line.seq,
            at: line.at,
            stream: Cow::Borrowed(&line.stream),
            text: Cow::Borrowed(&line.text),
        };
        serde_json::to_writer(&mut out, &archived).map_err(|source| ProjectionError::Row {
            table: "job_log_lines",
            source,
        })?;
        out.push(b'\n');
        Ok(())
    })
    .await?;
    Ok((out, count))
}

/// The lines of an archive stored under `key`. Plain-text archives (keys not ending in
/// [`ARCHIVE_SUFFIX`]) kept no times or streams: their lines get `at` and `stdout`.
pub fn decode_archive(key: &str, bytes: &[u8], at: DateTime<Utc>) -> Result<Vec<StoredLine>, ArchiveError> {
    let mut lines = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(lines);
    }
    for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        if !key.ends_with(ARCHIVE_SUFFIX) {
            lines.push(StoredLine {
                seq: i64::try_from(number).unwrap_or(i64::MAX),
                at,
                stream: "stdout".into(),
                text: String::from_utf8_lossy(raw).into_owned(),
            });
            continue;
        }
        let malformed = |reason: String| ArchiveError::Malformed { line: number, reason };
        let line: ArchivedLine<'_> = serde_json::from_slice(raw).map_err(|e| malformed(e.to_string()))?;
        if !matches!(line.stream.as_ref(), "stdout" | "stderr" | "system") {
            return Err(malformed(format!("unknown stream {:?}", line.stream)));
        }
        let previous = lines.last().map_or(0, |l: &StoredLine| l.seq);
        if line.seq <= previous {
            return Err(malformed(format!("line number {} after {previous}", line.seq)));
        }
        lines.push(StoredLine {
            seq: line.seq,
            at: line.at,
            stream: line.stream.into_owned(),
            text: line.text.into_owned(),
        });
    }
    Ok(lines)
}

/// Whether any line of the job's output is stored.
pub async fn has_stored_lines(db: &ReadModels, build_id: Uuid, job_id: &str) -> Result<bool, ProjectionError> {
    Ok(!job_log(db, build_id, job_id, 0, 1).await?.is_empty())
}

/// Stores `lines` as the job's output, unless some of it is stored already (another reader
/// restored it first): all or nothing, in one transaction. Returns the lines written.
pub async fn restore_job_log(
    db: &ReadModels,
    build_id: Uuid,
    job_id: &str,
    lines: &[StoredLine],
) -> Result<u64, ProjectionError> {
    let mut tx = db.pool.begin().await?;
    // One restore per job at a time; the loser finds the lines and writes nothing.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || ' ' || $2, 0))")
        .bind(build_id)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
    let stored: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_log_lines WHERE build_id = $1 AND job_id = $2)")
            .bind(build_id)
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
    if stored {
        return Ok(0);
    }
    for chunk in lines.chunks(5000) {
        let seqs: Vec<i64> = chunk.iter().map(|l| l.seq).collect();
        let ats: Vec<DateTime<Utc>> = chunk.iter().map(|l| l.at).collect();
        let streams: Vec<&str> = chunk.iter().map(|l| l.stream.as_str()).collect();
        let texts: Vec<&str> = chunk.iter().map(|l| l.text.as_str()).collect();
        sqlx::query(
            "INSERT INTO job_log_lines (build_id, job_id, seq, at, stream, text) \
             SELECT $1, $2, l.seq, l.at, l.stream, l.text \
             FROM UNNEST($3::bigint[], $4::timestamptz[], $5::text[], $6::text[]) AS l(seq, at, stream, text)",
        )
        .bind(build_id)
        .bind(job_id)
        .bind(&seqs)
        .bind(&ats)
        .bind(&streams)
        .bind(&texts)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(lines.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: i64, stream: &str, text: &str) -> StoredLine {
        StoredLine {
            seq,
            at: DateTime::parse_from_rfc3339("2026-12-06T10:00:00.123456Z")
                .expect("time")
                .with_timezone(&Utc)
                + chrono::Duration::milliseconds(seq),
            stream: stream.into(),
            text: text.into(),
        }
    }

    fn encode(lines: &[StoredLine]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            let archived = ArchivedLine {
                seq: l.seq,
                at: l.at,
                stream: Cow::Borrowed(&l.stream),
                text: Cow::Borrowed(&l.text),
            };
            serde_json::to_writer(&mut out, &archived).expect("encode");
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn an_archive_gives_back_every_line_with_its_time_and_stream() {
        let lines = vec![
            line(1, "stdout", "plain"),
            line(2, "stderr", "\u{1b}[31mred\u{1b}[0m \"quoted\" \\ tab\t"),
            line(3, "system", ""),
            line(4, "stdout", "ünïcödé ✓"),
        ];
        let decoded = decode_archive("o/r/b/logs/test.ndjson", &encode(&lines), Utc::now()).expect("decode");
        assert_eq!(decoded, lines);
    }

    #[test]
    fn a_plain_text_archive_gives_numbered_stdout_lines_at_the_given_time() {
        let at = Utc::now();
        let decoded = decode_archive("o/r/b/logs/test.log", b"one\n\nthree\n", at).expect("decode");
        assert_eq!(
            decoded,
            vec![
                StoredLine {
                    seq: 1,
                    at,
                    stream: "stdout".into(),
                    text: "one".into()
                },
                StoredLine {
                    seq: 2,
                    at,
                    stream: "stdout".into(),
                    text: "".into()
                },
                StoredLine {
                    seq: 3,
                    at,
                    stream: "stdout".into(),
                    text: "three".into()
                },
            ]
        );
        assert!(decode_archive("k.log", b"", at).expect("empty").is_empty());
    }

    #[test]
    fn a_damaged_archive_is_refused_naming_the_line() {
        let mut bytes = encode(&[line(1, "stdout", "a"), line(2, "stdout", "b")]);
        bytes.extend_from_slice(
            b"{\"seq\":2,\"at\":\"2026-12-06T10:00:00Z\",\"stream\":\"stdout\",\"text\":\"again\"}\n",
        );
        bytes.extend_from_slice(b"not json\n");
        let error = decode_archive("k.ndjson", &bytes, Utc::now()).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "line 3 of the archive is not a stored log line: line number 2 after 2"
        );
        let error = decode_archive(
            "k.ndjson",
            b"{\"seq\":1,\"at\":\"2026-12-06T10:00:00Z\",\"stream\":\"tty\",\"text\":\"\"}",
            Utc::now(),
        )
        .expect_err("refused");
        assert!(error.to_string().contains("unknown stream \"tty\""), "{error}");
    }
}
