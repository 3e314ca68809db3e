//! Reads of the read models. Lists are keyset-paginated on ids, which are UUIDv7 and therefore
//! sort by creation time.

use serde::de::DeserializeOwned;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::Postgres;
use uuid::Uuid;

use crate::access::TokenRow;
use crate::builds::{BuildRow, JobRow};
use crate::error::ProjectionError;
use crate::orgs::OrgRow;
use crate::read::ReadModels;
use crate::repos::RepoRow;
use crate::secrets::{ParamSetRow, SshKeyRow};
use crate::triggers::{ScheduleRow, WebhookRow};

type JsonQuery<'q> = QueryScalar<'q, Postgres, serde_json::Value, PgArguments>;

async fn rows<R: DeserializeOwned>(
    db: &ReadModels,
    table: &'static str,
    query: JsonQuery<'_>,
) -> Result<Vec<R>, ProjectionError> {
    query
        .fetch_all(&db.pool)
        .await?
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|source| ProjectionError::Row { table, source }))
        .collect()
}

/// One page of a list: up to `limit` rows, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<R> {
    pub rows: Vec<R>,
    pub has_more: bool,
}

impl<R> Page<R> {
    pub fn of(mut rows: Vec<R>, limit: usize) -> Self {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Self { rows, has_more }
    }
}

fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

/// An org that is not deleted.
pub async fn org(db: &ReadModels, id: Uuid) -> Result<Option<OrgRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(o) FROM orgs o WHERE id = $1 AND NOT deleted").bind(id);
    Ok(rows(db, "orgs", q).await?.pop())
}

/// The org that holds `slug`, unless deleted.
pub async fn org_by_slug(db: &ReadModels, slug: &str) -> Result<Option<OrgRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(o) FROM orgs o WHERE slug = $1 AND NOT deleted").bind(slug);
    Ok(rows(db, "orgs", q).await?.pop())
}

/// Orgs that are not deleted, oldest first, after the org `after`.
pub async fn orgs(db: &ReadModels, after: Option<Uuid>, limit: usize) -> Result<Page<OrgRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(o) FROM orgs o WHERE NOT deleted AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit_plus_one(limit));
    Ok(Page::of(rows(db, "orgs", q).await?, limit))
}

/// Orgs `user` is a member of, by id, after `after`.
pub async fn orgs_of_member(
    db: &ReadModels,
    user: Uuid,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Page<OrgRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(o) FROM orgs o WHERE NOT deleted AND members ? $1 \
         AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(user.to_string())
    .bind(after)
    .bind(limit_plus_one(limit));
    Ok(Page::of(rows(db, "orgs", q).await?, limit))
}

/// A repo, archived or not.
pub async fn repo(db: &ReadModels, id: Uuid) -> Result<Option<RepoRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(r) FROM repos r WHERE id = $1").bind(id);
    Ok(rows(db, "repos", q).await?.pop())
}

/// The repos of an org, oldest first, after the repo `after`.
pub async fn repos_of_org(
    db: &ReadModels,
    org_id: Uuid,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Page<RepoRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(r) FROM repos r WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(org_id)
    .bind(after)
    .bind(limit_plus_one(limit));
    Ok(Page::of(rows(db, "repos", q).await?, limit))
}

/// A build.
pub async fn build(db: &ReadModels, id: Uuid) -> Result<Option<BuildRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(b) FROM builds b WHERE id = $1").bind(id);
    Ok(rows(db, "builds", q).await?.pop())
}

/// A running build, for a runner looking for builds whose runner was lost.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunningBuild {
    pub id: Uuid,
    /// The runner that started it.
    pub runner: Option<String>,
    /// Started longer ago than the age asked about (by the database's clock).
    pub started_long_ago: bool,
}

/// Every running build; `started_long_ago` says whether it started more than `age` ago.
pub async fn running_builds(db: &ReadModels, age: std::time::Duration) -> Result<Vec<RunningBuild>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT id, runner, started_at < now() - make_interval(secs => $1) AS started_long_ago \
         FROM builds WHERE status = 'running'",
    )
    .bind(age.as_secs_f64())
    .fetch_all(&db.pool)
    .await?)
}

/// Which builds of a repo to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildFilter {
    /// Only builds in this status (`queued`, `running`, `succeeded`, …).
    pub status: Option<String>,
    /// Only builds of this branch.
    pub branch: Option<String>,
}

/// The builds of a repo, newest first, before the build `after` in that order.
pub async fn builds_of_repo(
    db: &ReadModels,
    repo_id: Uuid,
    filter: &BuildFilter,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Page<BuildRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(b) FROM builds b WHERE repo_id = $1 \
           AND ($2::text IS NULL OR status = $2) \
           AND ($3::text IS NULL OR (ref_kind = 'branch' AND ref_name = $3)) \
           AND ($4::uuid IS NULL OR id < $4) \
         ORDER BY id DESC LIMIT $5",
    )
    .bind(repo_id)
    .bind(filter.status.as_deref())
    .bind(filter.branch.as_deref())
    .bind(after)
    .bind(limit_plus_one(limit));
    Ok(Page::of(rows(db, "builds", q).await?, limit))
}

/// The jobs of a build, by job id.
pub async fn jobs_of_build(db: &ReadModels, build_id: Uuid) -> Result<Vec<JobRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE build_id = $1 ORDER BY job_id").bind(build_id);
    rows(db, "jobs", q).await
}

/// One job of a build.
pub async fn job(db: &ReadModels, build_id: Uuid, job_id: &str) -> Result<Option<JobRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE build_id = $1 AND job_id = $2")
        .bind(build_id)
        .bind(job_id);
    Ok(rows(db, "jobs", q).await?.pop())
}

/// The oldest queued builds, oldest first: what runners claim.
pub async fn queued_builds(db: &ReadModels, limit: usize) -> Result<Vec<BuildRow>, ProjectionError> {
    let q =
        sqlx::query_scalar("SELECT to_jsonb(b) FROM builds b WHERE status = 'queued' ORDER BY queued_at, id LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    rows(db, "builds", q).await
}

/// One webhook, deleted or not.
pub async fn webhook(db: &ReadModels, id: Uuid) -> Result<Option<WebhookRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(w) FROM webhooks w WHERE id = $1").bind(id);
    Ok(rows(db, "webhooks", q).await?.pop())
}

/// A repo's webhooks that were not deleted, oldest first.
pub async fn webhooks_of_repo(db: &ReadModels, repo_id: Uuid) -> Result<Vec<WebhookRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(w) FROM webhooks w WHERE repo_id = $1 AND NOT deleted ORDER BY id")
        .bind(repo_id);
    rows(db, "webhooks", q).await
}

/// One schedule, deleted or not.
pub async fn schedule(db: &ReadModels, id: Uuid) -> Result<Option<ScheduleRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(s) FROM schedules s WHERE id = $1").bind(id);
    Ok(rows(db, "schedules", q).await?.pop())
}

/// A repo's schedules that were not deleted, oldest first.
pub async fn schedules_of_repo(db: &ReadModels, repo_id: Uuid) -> Result<Vec<ScheduleRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(s) FROM schedules s WHERE repo_id = $1 AND NOT deleted ORDER BY id")
        .bind(repo_id);
    rows(db, "schedules", q).await
}

/// Every schedule that was not deleted.
pub async fn active_schedules(db: &ReadModels) -> Result<Vec<ScheduleRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(s) FROM schedules s WHERE NOT deleted ORDER BY id");
    rows(db, "schedules", q).await
}

/// An org's parameter sets that were not deleted, oldest first.
pub async fn param_sets_of_org(db: &ReadModels, org_id: Uuid) -> Result<Vec<ParamSetRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(p) FROM param_sets p WHERE org_id = $1 AND NOT deleted ORDER BY id")
        .bind(org_id);
    rows(db, "param_sets", q).await
}

/// One parameter set, deleted or not.
pub async fn param_set(db: &ReadModels, id: Uuid) -> Result<Option<ParamSetRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(p) FROM param_sets p WHERE id = $1").bind(id);
    Ok(rows(db, "param_sets", q).await?.pop())
}

/// An org's ssh keys that were not deleted, oldest first.
pub async fn ssh_keys_of_org(db: &ReadModels, org_id: Uuid) -> Result<Vec<SshKeyRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(k) FROM ssh_keys k WHERE org_id = $1 AND NOT deleted ORDER BY id")
        .bind(org_id);
    rows(db, "ssh_keys", q).await
}

/// One ssh key, deleted or not.
pub async fn ssh_key(db: &ReadModels, id: Uuid) -> Result<Option<SshKeyRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(k) FROM ssh_keys k WHERE id = $1").bind(id);
    Ok(rows(db, "ssh_keys", q).await?.pop())
}

/// One API token, revoked or not (its row holds the hash of the secret: never show it).
pub async fn api_token(db: &ReadModels, id: Uuid) -> Result<Option<TokenRow>, ProjectionError> {
    let q = sqlx::query_scalar("SELECT to_jsonb(t) FROM api_tokens t WHERE id = $1").bind(id);
    Ok(rows(db, "api_tokens", q).await?.pop())
}

/// An org's org tokens that are not revoked (expired ones included), oldest first.
pub async fn org_tokens(db: &ReadModels, org_id: Uuid) -> Result<Vec<TokenRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(t) FROM api_tokens t WHERE kind = 'org' AND org_id = $1 AND NOT revoked \
         ORDER BY created_at, id",
    )
    .bind(org_id);
    rows(db, "api_tokens", q).await
}

/// The token whose secret has the SHA-256 `hash`, if it is neither revoked nor expired.
pub async fn active_token(db: &ReadModels, hash: &str) -> Result<Option<TokenRow>, ProjectionError> {
    let q = sqlx::query_scalar(
        "SELECT to_jsonb(t) FROM api_tokens t WHERE hash = $1 AND NOT revoked AND expires_at > now()",
    )
    .bind(hash);
    Ok(rows(db, "api_tokens", q).await?.pop())
}

/// A child of an org or repo whose parent authorisation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// Of an org.
    ParamSet,
    SshKey,
    /// Of a repo.
    Webhook,
    Schedule,
}

/// The org (parameter sets, ssh keys) or repo (webhooks, schedules) `id` belongs to, unless it
/// does not exist or was deleted.
pub async fn owner_of(db: &ReadModels, kind: Owned, id: Uuid) -> Result<Option<Uuid>, ProjectionError> {
    let sql = match kind {
        Owned::ParamSet => "SELECT org_id FROM param_sets WHERE id = $1 AND NOT deleted",
        Owned::SshKey => "SELECT org_id FROM ssh_keys WHERE id = $1 AND NOT deleted",
        Owned::Webhook => "SELECT repo_id FROM webhooks WHERE id = $1 AND NOT deleted",
        Owned::Schedule => "SELECT repo_id FROM schedules WHERE id = $1 AND NOT deleted",
    };
    Ok(sqlx::query_scalar(sql).bind(id).fetch_optional(&db.pool).await?)
}

/// The role of `user` in the org `org_id` (not deleted), if any.
pub async fn member_role(db: &ReadModels, org_id: Uuid, user: Uuid) -> Result<Option<String>, ProjectionError> {
    let role: Option<Option<String>> =
        sqlx::query_scalar("SELECT members ->> $2 FROM orgs WHERE id = $1 AND NOT deleted")
            .bind(org_id)
            .bind(user.to_string())
            .fetch_optional(&db.pool)
            .await?;
    Ok(role.flatten())
}

/// A member of an org: the user's id and name, and the role.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub name: String,
    pub role: String,
}

/// The members of the org `org_id` (none if it is deleted), by name.
pub async fn org_members(db: &ReadModels, org_id: Uuid) -> Result<Vec<MemberRow>, ProjectionError> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.name, m.role \
         FROM orgs o CROSS JOIN LATERAL jsonb_each_text(o.members) AS m(user_id, role) \
         JOIN users u ON u.id = m.user_id::uuid \
         WHERE o.id = $1 AND NOT o.deleted ORDER BY u.name, u.id",
    )
    .bind(org_id)
    .fetch_all(&db.pool)
    .await
    .map_err(Into::into)
}

/// The ids of the orgs (not deleted) in which `user` has a role.
pub async fn member_org_ids(db: &ReadModels, user: Uuid) -> Result<Vec<Uuid>, ProjectionError> {
    sqlx::query_scalar("SELECT id FROM orgs WHERE NOT deleted AND members ? $1 ORDER BY id")
        .bind(user.to_string())
        .fetch_all(&db.pool)
        .await
        .map_err(Into::into)
}

/// Which of an org's events [`audit_log`] lists; every field that is set narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events with this actor in their metadata.
    pub actor: Option<String>,
    /// Only events of these types; all types if empty.
    pub event_types: Vec<String>,
    /// Only events recorded at or after this time.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events recorded before this time.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Up to `limit` of the org's events after `after`, in log order (the `audit` projection's index
/// joined to the log).
pub async fn audit_log(
    db: &ReadModels,
    org: Uuid,
    filter: &AuditFilter,
    after: monkeyci_eventstore::Cursor,
    limit: usize,
) -> Result<Page<monkeyci_eventstore::RecordedEvent>, ProjectionError> {
    let sql = format!(
        "SELECT {} FROM audit_entries a \
         JOIN events ON events.transaction_id = a.tx::text::xid8 AND events.position = a.position \
         WHERE a.org_id = $1 AND (a.tx, a.position) > ($2, $3) \
           AND ($4::text IS NULL OR events.metadata->>'actor' = $4) \
           AND (cardinality($5::text[]) = 0 OR events.event_type = ANY($5)) \
           AND ($6::timestamptz IS NULL OR events.recorded_at >= $6) \
           AND ($7::timestamptz IS NULL OR events.recorded_at < $7) \
         ORDER BY a.tx, a.position LIMIT $8",
        monkeyci_eventstore::EVENT_COLUMNS
    );
    let rows = sqlx::query(&sql)
        .bind(org)
        .bind(after.tx)
        .bind(after.position)
        .bind(filter.actor.as_deref())
        .bind(&filter.event_types)
        .bind(filter.from)
        .bind(filter.to)
        .bind(limit_plus_one(limit))
        .fetch_all(&db.pool)
        .await?;
    let events = rows
        .iter()
        .map(monkeyci_eventstore::decode_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::of(events, limit))
}

/// One stored line of a job's output (`job_log_lines`, written by the runner while the job runs).
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
pub async fn job_log(
    db: &ReadModels,
    build_id: Uuid,
    job_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredLine>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT seq, at, stream, text FROM job_log_lines \
         WHERE build_id = $1 AND job_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
    )
    .bind(build_id)
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?)
}

/// How many lines of a job's output are stored (the number of its last line: lines are numbered
/// from 1 without gaps). One backward step of the primary key's index.
pub async fn job_log_count(db: &ReadModels, build_id: Uuid, job_id: &str) -> Result<i64, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE((SELECT seq FROM job_log_lines WHERE build_id = $1 AND job_id = $2 \
         ORDER BY seq DESC LIMIT 1), 0)",
    )
    .bind(build_id)
    .bind(job_id)
    .fetch_one(&db.pool)
    .await?)
}

/// Which way a search of a job's output goes from its starting line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchDirection {
    /// The first matches after the line, in order.
    Forward,
    /// The last matches before the line, in order.
    Backward,
}

/// The longest one part of a search of a job's output may run: a part of
/// [`LOG_SEARCH_CHUNK`] lines is read in well under this; one that takes longer ends the search
/// with [`ProjectionError::Database`] (a `statement_timeout` cancel) instead of holding a
/// connection.
pub const LOG_SEARCH_TIMEOUT_MS: u32 = 5_000;

/// Lines one part of a search reads. A search reads its parts in order, two at a time (each on
/// a connection of its own, so a long log is searched by two PostgreSQL backends at once), and
/// stops reading once it has its matches.
pub const LOG_SEARCH_CHUNK: i64 = 131_072;

/// Up to `limit` lines of a job's output that contain `needle` (literally, ignoring case; `%` and
/// `_` are plain characters) after line `from` ([`SearchDirection::Forward`]) or before it
/// (`Backward`), in line order either way. The lines' text is searched as stored, escape codes
/// included. An ASCII needle is compared with ASCII case folding, which is much cheaper than
/// the database's full lower-casing and finds the same lines for it; any other needle with the
/// full lower-casing.
pub async fn search_job_log(
    db: &ReadModels,
    build_id: Uuid,
    job_id: &str,
    needle: &str,
    from: i64,
    direction: SearchDirection,
    limit: i64,
) -> Result<Vec<StoredLine>, ProjectionError> {
    use futures::{StreamExt, TryStreamExt};

    if limit <= 0 {
        return Ok(Vec::new());
    }
    let last = job_log_count(db, build_id, job_id).await?;
    let chunks: Vec<(i64, i64)> = match direction {
        SearchDirection::Forward => {
            let first = from.saturating_add(1).max(1);
            (0..)
                .map(|n| first + n * LOG_SEARCH_CHUNK)
                .take_while(|start| *start <= last)
                .map(|start| (start, (start + LOG_SEARCH_CHUNK - 1).min(last)))
                .collect()
        }
        SearchDirection::Backward => {
            let end = from.saturating_sub(1).min(last);
            (0..)
                .map(|n| end - n * LOG_SEARCH_CHUNK)
                .take_while(|stop| *stop >= 1)
                .map(|stop| ((stop - LOG_SEARCH_CHUNK + 1).max(1), stop))
                .collect()
        }
    };
    let (fold, order) = match (needle.is_ascii(), direction) {
        (true, SearchDirection::Forward) => ("lower(text COLLATE \"C\"), lower($5 COLLATE \"C\")", "ASC"),
        (true, SearchDirection::Backward) => ("lower(text COLLATE \"C\"), lower($5 COLLATE \"C\")", "DESC"),
        (false, SearchDirection::Forward) => ("lower(text), lower($5)", "ASC"),
        (false, SearchDirection::Backward) => ("lower(text), lower($5)", "DESC"),
    };
    let sql = format!(
        "SELECT seq, at, stream, text FROM job_log_lines \
         WHERE build_id = $1 AND job_id = $2 AND seq BETWEEN $3 AND $4 AND strpos({fold}) > 0 \
         ORDER BY seq {order} LIMIT $6"
    );
    let search_chunk = |(low, high): (i64, i64)| {
        let sql = sql.clone();
        async move {
            let mut tx = db.pool.begin().await?;
            sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                .bind(LOG_SEARCH_TIMEOUT_MS.to_string())
                .execute(&mut *tx)
                .await?;
            let lines: Vec<StoredLine> = sqlx::query_as(&sql)
                .bind(build_id)
                .bind(job_id)
                .bind(low)
                .bind(high)
                .bind(needle)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, ProjectionError>(lines)
        }
    };
    let mut parts = futures::stream::iter(chunks).map(search_chunk).buffered(2);
    let mut found = Vec::new();
    while let Some(lines) = parts.try_next().await? {
        found.extend(lines);
        if found.len() as i64 >= limit {
            break;
        }
    }
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if direction == SearchDirection::Backward {
        found.reverse();
    }
    Ok(found)
}

/// Calls `visit` with every stored line of a job's output, in order, reading them a page at a
/// time; returns how many there were.
pub async fn each_job_log_line(
    db: &ReadModels,
    build_id: Uuid,
    job_id: &str,
    mut visit: impl FnMut(&StoredLine) -> Result<(), ProjectionError>,
) -> Result<u64, ProjectionError> {
    let (mut after, mut count) = (0, 0);
    loop {
        let lines = job_log(db, build_id, job_id, after, 5000).await?;
        let Some(last) = lines.last() else {
            return Ok(count);
        };
        after = last.seq;
        for line in &lines {
            visit(line)?;
            count += 1;
        }
    }
}

/// A job's whole output as text, one line per line of output, and the number of lines: what
/// `GET /builds/{build}/jobs/{job}/log` serves.
pub async fn job_log_text(db: &ReadModels, build_id: Uuid, job_id: &str) -> Result<(String, u64), ProjectionError> {
    let mut text = String::new();
    let count = each_job_log_line(db, build_id, job_id, |line| {
        text.push_str(&line.text);
        text.push('\n');
        Ok(())
    })
    .await?;
    Ok((text, count))
}
