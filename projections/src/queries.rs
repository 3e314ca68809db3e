//! Reads of the read models.

use serde::de::DeserializeOwned;
use sqlx::PgPool;
use uuid::Uuid;

use crate::builds::{BuildRow, JobRow};
use crate::error::ProjectionError;
use crate::orgs::OrgRow;
use crate::repos::RepoRow;

async fn fetch<'q, R: DeserializeOwned>(
    pool: &PgPool,
    table: &'static str,
    sql: &'q str,
    id: impl sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
) -> Result<Vec<R>, ProjectionError> {
    let values: Vec<serde_json::Value> = sqlx::query_scalar(sql).bind(id).fetch_all(pool).await?;
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|source| ProjectionError::Row { table, source }))
        .collect()
}

/// An org that is not deleted.
pub async fn org(pool: &PgPool, id: Uuid) -> Result<Option<OrgRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(o) FROM orgs o WHERE id = $1 AND NOT deleted";
    Ok(fetch(pool, "orgs", sql, id).await?.pop())
}

/// The org that holds `slug`, unless deleted.
pub async fn org_by_slug(pool: &PgPool, slug: &str) -> Result<Option<OrgRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(o) FROM orgs o WHERE slug = $1 AND NOT deleted";
    Ok(fetch(pool, "orgs", sql, slug).await?.pop())
}

/// A repo, archived or not.
pub async fn repo(pool: &PgPool, id: Uuid) -> Result<Option<RepoRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(r) FROM repos r WHERE id = $1";
    Ok(fetch(pool, "repos", sql, id).await?.pop())
}

/// The repos of an org, oldest first.
pub async fn repos_of_org(pool: &PgPool, org_id: Uuid) -> Result<Vec<RepoRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(r) FROM repos r WHERE org_id = $1 ORDER BY created_at, id";
    fetch(pool, "repos", sql, org_id).await
}

/// A build.
pub async fn build(pool: &PgPool, id: Uuid) -> Result<Option<BuildRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(b) FROM builds b WHERE id = $1";
    Ok(fetch(pool, "builds", sql, id).await?.pop())
}

/// The builds of a repo, newest first.
pub async fn builds_of_repo(pool: &PgPool, repo_id: Uuid) -> Result<Vec<BuildRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(b) FROM builds b WHERE repo_id = $1 ORDER BY queued_at DESC, id DESC";
    fetch(pool, "builds", sql, repo_id).await
}

/// The jobs of a build, by job id.
pub async fn jobs_of_build(pool: &PgPool, build_id: Uuid) -> Result<Vec<JobRow>, ProjectionError> {
    let sql = "SELECT to_jsonb(j) FROM jobs j WHERE build_id = $1 ORDER BY job_id";
    fetch(pool, "jobs", sql, build_id).await
}
