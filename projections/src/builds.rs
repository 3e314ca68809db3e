use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use monkeyci_domain::build::{Build, BuildEvent, JobStatus};
use monkeyci_domain::Aggregate;
use monkeyci_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::rows;
use crate::Projection;

/// One build as queries see it (table `builds`): status, trigger, timings and job counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub repo_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed`, `errored` or `canceled`.
    pub status: String,
    /// `api`, `cli`, `webhook` or `schedule`.
    pub source: String,
    /// `branch` or `tag`.
    pub ref_kind: String,
    pub ref_name: String,
    /// The commit asked for until the runner checks out, then the commit it checked out.
    pub commit_sha: Option<String>,
    pub params: BTreeMap<String, String>,
    pub retry_of: Option<Uuid>,
    pub retried_by: Option<Uuid>,
    pub runner: Option<String>,
    pub cancel_requested: bool,
    pub message: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub jobs_total: i32,
    pub jobs_queued: i32,
    pub jobs_blocked: i32,
    pub jobs_running: i32,
    pub jobs_succeeded: i32,
    pub jobs_failed: i32,
    pub jobs_skipped: i32,
    pub jobs_canceled: i32,
    pub updated_at: DateTime<Utc>,
    /// The version of the build's stream this row reflects.
    pub version: i64,
    /// Artifacts saved by the build's jobs, in the order they were saved.
    #[serde(default)]
    pub artifacts: Vec<ArtifactRow>,
    /// For webhook builds: the pushed head commit's message and author, and the changed files.
    #[serde(default)]
    pub push: Option<monkeyci_domain::build::PushDetails>,
}

/// An artifact of a build, in blob storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRow {
    pub id: String,
    pub job_id: String,
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub saved_at: DateTime<Utc>,
}

/// Where an ended job's log was archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogArchiveRow {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub lines: u64,
}

/// One job of a build (table `jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub build_id: Uuid,
    pub job_id: String,
    /// `queued`, `blocked`, `running`, `succeeded`, `failed`, `skipped` or `canceled`.
    pub status: String,
    pub dependencies: Vec<String>,
    pub message: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Set once the job's log is archived to blob storage.
    #[serde(default)]
    pub log_archive: Option<LogArchiveRow>,
}

/// Projects build events into `builds` and `jobs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildsProjection;

impl Projection for BuildsProjection {
    fn name(&self) -> &'static str {
        "builds"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["builds", "jobs"]
    }

    fn categories(&self) -> &'static [&'static str] {
        &[Build::CATEGORY]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let events = rows::decode_category::<BuildEvent>(events, Build::CATEGORY)?;
            let ids = rows::distinct_ids(&events);
            let mut builds = rows::index(rows::load::<BuildRow>(conn, "builds", "id", &ids).await?, |r| r.id);
            // Jobs are written only with their build, so builds not stored yet have none (during
            // a replay, that is nearly every build of a batch).
            let stored: Vec<Uuid> = ids.iter().copied().filter(|id| builds.contains_key(id)).collect();
            let mut jobs: HashMap<Uuid, BTreeMap<String, JobRow>> = HashMap::new();
            for job in rows::load::<JobRow>(conn, "jobs", "build_id", &stored).await? {
                jobs.entry(job.build_id).or_default().insert(job.job_id.clone(), job);
            }
            for (id, recorded, event) in &events {
                let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
                let at = recorded.recorded_at;
                let build_jobs = jobs.entry(*id).or_default();
                match builds.get_mut(id) {
                    Some(row) if row.version >= version => {}
                    Some(row) => {
                        apply(row, build_jobs, event, at);
                        row.version = version;
                        row.updated_at = at;
                    }
                    None => match new_row(*id, event, at, version) {
                        Some(row) => {
                            builds.insert(*id, row);
                        }
                        None => tracing::warn!(stream = %recorded.stream_id, "build event before BuildQueued; ignored"),
                    },
                }
            }
            let mut changed_builds = Vec::with_capacity(ids.len());
            let mut changed_jobs = Vec::new();
            for id in &ids {
                let build_jobs = jobs.remove(id).unwrap_or_default();
                if let Some(mut row) = builds.remove(id) {
                    count_jobs(&mut row, build_jobs.values());
                    changed_builds.push(row);
                }
                changed_jobs.extend(build_jobs.into_values());
            }
            rows::upsert(conn, "builds", &["id"], &changed_builds).await?;
            rows::upsert(conn, "jobs", &["build_id", "job_id"], &changed_jobs).await
        })
    }
}

/// The row a build's first event makes; `None` for any other event.
fn new_row(id: Uuid, event: &BuildEvent, at: DateTime<Utc>, version: i64) -> Option<BuildRow> {
    let BuildEvent::BuildQueued {
        org_id,
        repo_id,
        trigger,
        retry_of,
    } = event
    else {
        return None;
    };
    Some(BuildRow {
        id,
        org_id: org_id.as_uuid(),
        repo_id: repo_id.as_uuid(),
        status: "queued".into(),
        source: trigger.source.as_str().into(),
        ref_kind: trigger.git_ref.kind().into(),
        ref_name: trigger.git_ref.name().to_string(),
        commit_sha: trigger.commit.as_ref().map(ToString::to_string),
        params: trigger.params.as_map().clone(),
        retry_of: retry_of.map(|b| b.as_uuid()),
        retried_by: None,
        runner: None,
        cancel_requested: false,
        message: None,
        push: trigger.push.clone(),
        queued_at: at,
        started_at: None,
        finished_at: None,
        jobs_total: 0,
        jobs_queued: 0,
        jobs_blocked: 0,
        jobs_running: 0,
        jobs_succeeded: 0,
        jobs_failed: 0,
        jobs_skipped: 0,
        jobs_canceled: 0,
        updated_at: at,
        version,
        artifacts: Vec::new(),
    })
}

/// The build and its jobs as the builds projection would store them after exactly `events`
/// (the build stream's events, in order, from its first): a build as it was at any moment.
/// `None` if `events` holds no `BuildQueued`.
pub fn fold_build(id: Uuid, events: &[RecordedEvent]) -> Result<Option<(BuildRow, Vec<JobRow>)>, ProjectionError> {
    let mut row: Option<BuildRow> = None;
    let mut jobs = BTreeMap::new();
    for (_, recorded, event) in rows::decode_category::<BuildEvent>(events, Build::CATEGORY)? {
        let version = i64::try_from(recorded.stream_version).unwrap_or(i64::MAX);
        let at = recorded.recorded_at;
        match row.as_mut() {
            Some(row) => {
                apply(row, &mut jobs, &event, at);
                row.version = version;
                row.updated_at = at;
            }
            None => row = new_row(id, &event, at, version),
        }
    }
    Ok(row.map(|mut row| {
        count_jobs(&mut row, jobs.values());
        (row, jobs.into_values().collect())
    }))
}

fn apply(row: &mut BuildRow, jobs: &mut BTreeMap<String, JobRow>, event: &BuildEvent, at: DateTime<Utc>) {
    let mut set_job = |job_id: &str, status: JobStatus, message: Option<&str>| {
        if let Some(job) = jobs.get_mut(job_id) {
            job.status = status.as_str().into();
            job.updated_at = at;
            match status {
                JobStatus::Running => job.started_at = Some(at),
                s if s.is_terminal() => job.finished_at = Some(at),
                _ => {}
            }
            if let Some(message) = message {
                job.message = Some(message.to_owned());
            }
        }
    };
    match event {
        BuildEvent::BuildQueued { .. } => {}
        BuildEvent::BuildStarted { runner } => {
            row.status = "running".into();
            row.runner = Some(runner.clone());
            row.started_at = Some(at);
        }
        BuildEvent::SourceCheckedOut { commit, .. } => row.commit_sha = Some(commit.to_string()),
        BuildEvent::JobQueued { job_id, dependencies } => {
            jobs.insert(
                job_id.to_string(),
                JobRow {
                    build_id: row.id,
                    job_id: job_id.to_string(),
                    status: JobStatus::Queued.as_str().into(),
                    dependencies: dependencies.iter().map(ToString::to_string).collect(),
                    message: None,
                    queued_at: at,
                    started_at: None,
                    finished_at: None,
                    updated_at: at,
                    log_archive: None,
                },
            );
        }
        BuildEvent::JobBlocked { job_id } => set_job(job_id.as_str(), JobStatus::Blocked, None),
        BuildEvent::JobUnblocked { job_id } => set_job(job_id.as_str(), JobStatus::Queued, None),
        BuildEvent::JobStarted { job_id } => set_job(job_id.as_str(), JobStatus::Running, None),
        BuildEvent::JobSucceeded { job_id } => set_job(job_id.as_str(), JobStatus::Succeeded, None),
        BuildEvent::JobFailed { job_id, message } => set_job(job_id.as_str(), JobStatus::Failed, Some(message)),
        BuildEvent::JobSkipped { job_id, message } => set_job(job_id.as_str(), JobStatus::Skipped, Some(message)),
        BuildEvent::JobCanceled { job_id } => set_job(job_id.as_str(), JobStatus::Canceled, None),
        BuildEvent::BuildCancelRequested => row.cancel_requested = true,
        BuildEvent::BuildFinished { outcome, message } => {
            row.status = outcome.as_str().into();
            row.message.clone_from(message);
            row.finished_at = Some(at);
        }
        BuildEvent::BuildRetried { new_build_id } => row.retried_by = Some(new_build_id.as_uuid()),
        BuildEvent::ArtifactSaved {
            job_id,
            artifact_id,
            blob,
        } => row.artifacts.push(ArtifactRow {
            id: artifact_id.to_string(),
            job_id: job_id.to_string(),
            key: blob.key.clone(),
            size: blob.size,
            sha256: blob.sha256.clone(),
            saved_at: at,
        }),
        BuildEvent::JobLogArchived { job_id, blob, lines } => {
            if let Some(job) = jobs.get_mut(job_id.as_str()) {
                job.log_archive = Some(LogArchiveRow {
                    key: blob.key.clone(),
                    size: blob.size,
                    sha256: blob.sha256.clone(),
                    lines: *lines,
                });
            }
        }
    }
}

fn count_jobs<'a>(row: &mut BuildRow, jobs: impl Iterator<Item = &'a JobRow>) {
    let mut counts: HashMap<&str, i32> = HashMap::new();
    let mut total = 0;
    for job in jobs {
        total += 1;
        *counts.entry(job.status.as_str()).or_default() += 1;
    }
    let count = |status: JobStatus| counts.get(status.as_str()).copied().unwrap_or(0);
    row.jobs_total = total;
    row.jobs_queued = count(JobStatus::Queued);
    row.jobs_blocked = count(JobStatus::Blocked);
    row.jobs_running = count(JobStatus::Running);
    row.jobs_succeeded = count(JobStatus::Succeeded);
    row.jobs_failed = count(JobStatus::Failed);
    row.jobs_skipped = count(JobStatus::Skipped);
    row.jobs_canceled = count(JobStatus::Canceled);
}
