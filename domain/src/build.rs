//! Builds and their jobs: the life of one run of a repo's pipeline.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ValidationError};
use crate::event::DomainEvent;
use crate::ids::{BuildId, OrgId, RepoId};
use crate::org::Org;
use crate::pipeline::ArtifactId;
use crate::repo::Repo;
use crate::values::{CommitSha, GitRef, JobId, Params};

/// Who or what asked for a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerSource {
    /// A call to the GraphQL API.
    Api,
    /// The `monkeyci` command line.
    Cli,
    /// A git host's webhook.
    Webhook,
    /// A cron schedule.
    Schedule,
}

impl TriggerSource {
    /// The lower-case name used in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Cli => "cli",
            Self::Webhook => "webhook",
            Self::Schedule => "schedule",
        }
    }
}

/// What a trigger asked for; a missing ref means the repo's main branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRequest {
    pub source: TriggerSource,
    pub git_ref: Option<GitRef>,
    pub commit: Option<CommitSha>,
    pub params: Params,
    pub push: Option<PushDetails>,
}

/// What a git host said about the push that triggered a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushDetails {
    /// The head commit's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The head commit's author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Every file the push changed, when the host listed them all; otherwise the runner asks git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_files: Option<Vec<String>>,
}

/// The resolved trigger a build carries for its whole life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub source: TriggerSource,
    pub git_ref: GitRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitSha>,
    #[serde(default)]
    pub params: Params,
    /// The push that triggered a webhook build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushDetails>,
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildOutcome {
    /// Every job that had to pass passed.
    Succeeded,
    /// A job failed.
    Failed,
    /// The build could not run (bad pipeline, checkout failure, lost runner…).
    Errored,
    /// Somebody canceled it.
    Canceled,
}

impl BuildOutcome {
    /// The lower-case name used in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Errored => "errored",
            Self::Canceled => "canceled",
        }
    }
}

/// An object in blob storage: where it is, how big it is, and its SHA-256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl BlobRef {
    fn validate(&self) -> Result<(), DomainError> {
        if self.key.is_empty() || self.key.len() > 1024 || self.key.starts_with('/') {
            return Err(ValidationError::new("key", "must be a relative object key of 1 to 1024 characters").into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ValidationError::new("sha256", "must be 64 lower-case hexadecimal digits").into());
        }
        Ok(())
    }
}

/// What happened to a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum BuildEvent {
    /// The build was asked for and waits for a runner.
    BuildQueued {
        org_id: OrgId,
        repo_id: RepoId,
        trigger: Trigger,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<BuildId>,
    },
    /// A runner took the build.
    BuildStarted { runner: String },
    /// The runner checked out the build's source: `commit` is the commit it resolved `git_ref`
    /// (and the trigger's commit, if one was asked for) to, the commit the jobs ran on.
    SourceCheckedOut { git_ref: GitRef, commit: CommitSha },
    /// A job of the pipeline was added to the build.
    JobQueued {
        job_id: JobId,
        #[serde(default)]
        dependencies: Vec<JobId>,
    },
    /// The job waits for manual approval.
    JobBlocked { job_id: JobId },
    /// Somebody approved the blocked job; it is queued again.
    JobUnblocked { job_id: JobId },
    /// The job's process started.
    JobStarted { job_id: JobId },
    /// The job ended with success.
    JobSucceeded { job_id: JobId },
    /// The job ended with failure.
    JobFailed { job_id: JobId, message: String },
    /// The job will not run (a dependency failed, a condition did not hold…); `message` says
    /// why. Schema version 2: version 1 called the field `reason` (see `upcast` below).
    JobSkipped { job_id: JobId, message: String },
    /// The job was canceled before it could end by itself.
    JobCanceled { job_id: JobId },
    /// Somebody asked to cancel the running build; the runner stops it.
    BuildCancelRequested,
    /// The build ended.
    BuildFinished {
        outcome: BuildOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A new build was started as a retry of this one.
    BuildRetried { new_build_id: BuildId },
    /// A running job saved files as an artifact, for later jobs of the build and for download.
    ArtifactSaved {
        job_id: JobId,
        artifact_id: ArtifactId,
        blob: BlobRef,
    },
    /// An ended job's output was archived to blob storage.
    JobLogArchived { job_id: JobId, blob: BlobRef, lines: u64 },
}

impl DomainEvent for BuildEvent {
    fn schema_version(event_type: &str) -> i32 {
        match event_type {
            "JobSkipped" => 2,
            _ => 1,
        }
    }

    fn upcast(event_type: &str, version: i32, mut data: Value) -> Value {
        // JobSkipped v1 → v2: `reason` became `message`, as in JobFailed.
        if let ("JobSkipped", 1, Value::Object(fields)) = (event_type, version, &mut data) {
            if let Some(reason) = fields.remove("reason") {
                fields.insert("message".into(), reason);
            }
        }
        data
    }
}

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildStatus {
    /// No such build.
    #[default]
    Unknown,
    /// Waiting for a runner.
    Queued,
    /// A runner is running it.
    Running,
    /// It ended.
    Finished(BuildOutcome),
}

impl BuildStatus {
    /// A word for error messages and read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished(outcome) => outcome.as_str(),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Blocked,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Canceled,
}

impl JobStatus {
    /// The lower-case name used in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Blocked => "blocked",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped | Self::Canceled)
    }
}

/// A job transition a runner or user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobTransition {
    Block,
    Unblock,
    Start,
    Succeed,
    Fail { message: String },
    Skip { reason: String },
    Cancel,
}

impl JobTransition {
    fn action(&self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::Start => "start",
            Self::Succeed => "succeed",
            Self::Fail { .. } => "fail",
            Self::Skip { .. } => "skip",
            Self::Cancel => "cancel",
        }
    }

    /// The states a job must be in for this transition.
    fn allowed_from(&self) -> &'static [JobStatus] {
        use JobStatus::*;
        match self {
            Self::Block => &[Queued],
            Self::Unblock => &[Blocked],
            Self::Start => &[Queued],
            Self::Succeed | Self::Fail { .. } => &[Running],
            Self::Skip { .. } => &[Queued, Blocked],
            Self::Cancel => &[Queued, Blocked, Running],
        }
    }

    fn into_event(self, job_id: JobId) -> BuildEvent {
        match self {
            Self::Block => BuildEvent::JobBlocked { job_id },
            Self::Unblock => BuildEvent::JobUnblocked { job_id },
            Self::Start => BuildEvent::JobStarted { job_id },
            Self::Succeed => BuildEvent::JobSucceeded { job_id },
            Self::Fail { message } => BuildEvent::JobFailed { job_id, message },
            Self::Skip { reason } => BuildEvent::JobSkipped {
                job_id,
                message: reason,
            },
            Self::Cancel => BuildEvent::JobCanceled { job_id },
        }
    }
}

/// A build's state, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Build {
    pub status: BuildStatus,
    pub org_id: Option<OrgId>,
    pub repo_id: Option<RepoId>,
    pub trigger: Option<Trigger>,
    /// The commit the runner checked out, once it has.
    pub checked_out: Option<CommitSha>,
    pub cancel_requested: bool,
    pub jobs: BTreeMap<JobId, JobStatus>,
    /// Saved artifacts and the job that saved each.
    pub artifacts: BTreeMap<ArtifactId, JobId>,
    /// Jobs whose log has been archived.
    pub archived_logs: BTreeSet<JobId>,
}

impl Aggregate for Build {
    type Event = BuildEvent;
    const CATEGORY: &'static str = "build";

    fn apply(&mut self, event: &BuildEvent) {
        match event {
            BuildEvent::BuildQueued {
                org_id,
                repo_id,
                trigger,
                ..
            } => {
                self.status = BuildStatus::Queued;
                self.org_id = Some(*org_id);
                self.repo_id = Some(*repo_id);
                self.trigger = Some(trigger.clone());
            }
            BuildEvent::BuildStarted { .. } => self.status = BuildStatus::Running,
            BuildEvent::SourceCheckedOut { commit, .. } => self.checked_out = Some(commit.clone()),
            BuildEvent::JobQueued { job_id, .. } | BuildEvent::JobUnblocked { job_id } => {
                self.jobs.insert(job_id.clone(), JobStatus::Queued);
            }
            BuildEvent::JobBlocked { job_id } => self.set_job(job_id, JobStatus::Blocked),
            BuildEvent::JobStarted { job_id } => self.set_job(job_id, JobStatus::Running),
            BuildEvent::JobSucceeded { job_id } => self.set_job(job_id, JobStatus::Succeeded),
            BuildEvent::JobFailed { job_id, .. } => self.set_job(job_id, JobStatus::Failed),
            BuildEvent::JobSkipped { job_id, .. } => self.set_job(job_id, JobStatus::Skipped),
            BuildEvent::JobCanceled { job_id } => self.set_job(job_id, JobStatus::Canceled),
            BuildEvent::BuildCancelRequested => self.cancel_requested = true,
            BuildEvent::BuildFinished { outcome, .. } => self.status = BuildStatus::Finished(*outcome),
            BuildEvent::BuildRetried { .. } => {}
            BuildEvent::ArtifactSaved {
                job_id, artifact_id, ..
            } => {
                self.artifacts.insert(artifact_id.clone(), job_id.clone());
            }
            BuildEvent::JobLogArchived { job_id, .. } => {
                self.archived_logs.insert(job_id.clone());
            }
        }
    }
}

impl Build {
    fn set_job(&mut self, job_id: &JobId, status: JobStatus) {
        self.jobs.insert(job_id.clone(), status);
    }

    fn not_found(id: BuildId) -> DomainError {
        DomainError::NotFound {
            kind: "build",
            id: id.to_string(),
        }
    }

    fn ensure_exists(&self, id: BuildId) -> Result<(), DomainError> {
        if self.status == BuildStatus::Unknown {
            return Err(Self::not_found(id));
        }
        Ok(())
    }

    fn ensure_not_finished(&self, id: BuildId) -> Result<(), DomainError> {
        self.ensure_exists(id)?;
        if let BuildStatus::Finished(_) = self.status {
            return Err(DomainError::BuildFinished {
                build_id: id.to_string(),
            });
        }
        Ok(())
    }

    fn ensure_running(&self, id: BuildId, action: &'static str) -> Result<(), DomainError> {
        self.ensure_not_finished(id)?;
        if self.status != BuildStatus::Running {
            return Err(DomainError::IllegalBuildTransition {
                build_id: id.to_string(),
                state: self.status.as_str(),
                action,
            });
        }
        Ok(())
    }

    /// Queues a new build of `repo`, which must exist, not be archived and belong to an active org.
    pub fn trigger(
        &self,
        id: BuildId,
        repo_id: RepoId,
        repo: &Repo,
        org: &Org,
        request: TriggerRequest,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.queue(
            id,
            repo_id,
            repo,
            org,
            request_into_trigger(repo, repo_id, request)?,
            None,
        )
    }

    fn queue(
        &self,
        id: BuildId,
        repo_id: RepoId,
        repo: &Repo,
        org: &Org,
        trigger: Trigger,
        retry_of: Option<BuildId>,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        repo.ensure_buildable(repo_id, org)?;
        if self.status != BuildStatus::Unknown {
            return Err(DomainError::AlreadyExists {
                kind: "build",
                id: id.to_string(),
            });
        }
        let org_id = repo.org_id.ok_or_else(|| DomainError::NotFound {
            kind: "repo",
            id: repo_id.to_string(),
        })?;
        Ok(vec![BuildEvent::BuildQueued {
            org_id,
            repo_id,
            trigger,
            retry_of,
        }])
    }

    /// Retries this finished build as the new build `new_id`, with the same trigger.
    ///
    /// Returns the events of this build's stream and those of the new build's stream.
    pub fn retry(
        &self,
        id: BuildId,
        new_id: BuildId,
        new_build: &Build,
        repo: &Repo,
        org: &Org,
    ) -> Result<(Vec<BuildEvent>, Vec<BuildEvent>), DomainError> {
        self.ensure_exists(id)?;
        if !matches!(self.status, BuildStatus::Finished(_)) {
            return Err(DomainError::BuildNotFinished {
                build_id: id.to_string(),
            });
        }
        let (Some(repo_id), Some(trigger)) = (self.repo_id, self.trigger.clone()) else {
            return Err(Self::not_found(id));
        };
        let queued = new_build.queue(new_id, repo_id, repo, org, trigger, Some(id))?;
        Ok((vec![BuildEvent::BuildRetried { new_build_id: new_id }], queued))
    }

    /// A runner takes the queued build.
    pub fn start(&self, id: BuildId, runner: String) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_not_finished(id)?;
        if self.status != BuildStatus::Queued {
            return Err(DomainError::IllegalBuildTransition {
                build_id: id.to_string(),
                state: self.status.as_str(),
                action: "start",
            });
        }
        Ok(vec![BuildEvent::BuildStarted { runner }])
    }

    /// Records the commit the runner checked out for the running build; once per build, and
    /// only the trigger's commit when the trigger named one.
    pub fn record_checkout(&self, id: BuildId, commit: CommitSha) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_running(id, "record its checkout")?;
        if self.checked_out.is_some() {
            return Err(DomainError::IllegalBuildTransition {
                build_id: id.to_string(),
                state: "checked out",
                action: "record its checkout",
            });
        }
        let Some(trigger) = &self.trigger else {
            return Err(Self::not_found(id));
        };
        if let Some(asked) = &trigger.commit {
            if !commit.as_str().starts_with(asked.as_str()) {
                return Err(ValidationError::new(
                    "commit",
                    format!("the trigger asked for commit {asked}, not {commit}"),
                )
                .into());
            }
        }
        Ok(vec![BuildEvent::SourceCheckedOut {
            git_ref: trigger.git_ref.clone(),
            commit,
        }])
    }

    /// Adds a job of the pipeline to the running build; its dependencies must already be queued.
    pub fn queue_job(
        &self,
        id: BuildId,
        job_id: JobId,
        dependencies: Vec<JobId>,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_running(id, "queue a job")?;
        if self.jobs.contains_key(&job_id) {
            return Err(DomainError::AlreadyExists {
                kind: "job",
                id: job_id.to_string(),
            });
        }
        if let Some(missing) = dependencies.iter().find(|d| !self.jobs.contains_key(*d)) {
            return Err(DomainError::NotFound {
                kind: "job",
                id: missing.to_string(),
            });
        }
        Ok(vec![BuildEvent::JobQueued { job_id, dependencies }])
    }

    /// Moves a job of the running build on, if its current state allows it.
    pub fn transition_job(
        &self,
        id: BuildId,
        job_id: JobId,
        transition: JobTransition,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_running(id, transition.action())?;
        let current = *self.jobs.get(&job_id).ok_or_else(|| DomainError::NotFound {
            kind: "job",
            id: job_id.to_string(),
        })?;
        if !transition.allowed_from().contains(&current) {
            return Err(DomainError::IllegalJobTransition {
                job_id: job_id.to_string(),
                state: current.as_str(),
                action: transition.action(),
            });
        }
        Ok(vec![transition.into_event(job_id)])
    }

    /// Records an artifact saved by a running job. Artifact ids are unique within a build.
    pub fn save_artifact(
        &self,
        id: BuildId,
        job_id: JobId,
        artifact_id: ArtifactId,
        blob: BlobRef,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_running(id, "save an artifact")?;
        blob.validate()?;
        let status = self.job_status(&job_id)?;
        if status != JobStatus::Running {
            return Err(DomainError::IllegalJobTransition {
                job_id: job_id.to_string(),
                state: status.as_str(),
                action: "save an artifact",
            });
        }
        if self.artifacts.contains_key(&artifact_id) {
            return Err(DomainError::AlreadyExists {
                kind: "artifact",
                id: artifact_id.to_string(),
            });
        }
        Ok(vec![BuildEvent::ArtifactSaved {
            job_id,
            artifact_id,
            blob,
        }])
    }

    /// Records where an ended job's log was archived; once per job, also after the build ended.
    pub fn archive_job_log(
        &self,
        id: BuildId,
        job_id: JobId,
        blob: BlobRef,
        lines: u64,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_exists(id)?;
        blob.validate()?;
        let status = self.job_status(&job_id)?;
        if !status.is_terminal() {
            return Err(DomainError::IllegalJobTransition {
                job_id: job_id.to_string(),
                state: status.as_str(),
                action: "archive its log",
            });
        }
        if self.archived_logs.contains(&job_id) {
            return Err(DomainError::AlreadyExists {
                kind: "job log",
                id: job_id.to_string(),
            });
        }
        Ok(vec![BuildEvent::JobLogArchived { job_id, blob, lines }])
    }

    fn job_status(&self, job_id: &JobId) -> Result<JobStatus, DomainError> {
        self.jobs.get(job_id).copied().ok_or_else(|| DomainError::NotFound {
            kind: "job",
            id: job_id.to_string(),
        })
    }

    /// Asks to cancel the build. A queued build ends at once; a running one is stopped by its
    /// runner; asking twice changes nothing; a finished build cannot be canceled.
    pub fn cancel(&self, id: BuildId) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_not_finished(id)?;
        match self.status {
            BuildStatus::Queued => Ok(vec![BuildEvent::BuildFinished {
                outcome: BuildOutcome::Canceled,
                message: Some("canceled before it started".into()),
            }]),
            _ if self.cancel_requested => Ok(vec![]),
            _ => Ok(vec![BuildEvent::BuildCancelRequested]),
        }
    }

    /// Ends the build.
    ///
    /// `Succeeded` and `Failed` need a running build whose jobs have all ended. `Errored` and
    /// `Canceled` may end a queued or running build at any point; jobs still open are canceled.
    pub fn finish(
        &self,
        id: BuildId,
        outcome: BuildOutcome,
        message: Option<String>,
    ) -> Result<Vec<BuildEvent>, DomainError> {
        self.ensure_not_finished(id)?;
        let open: Vec<&JobId> = self
            .jobs
            .iter()
            .filter(|(_, status)| !status.is_terminal())
            .map(|(job_id, _)| job_id)
            .collect();
        let mut events = Vec::new();
        match outcome {
            BuildOutcome::Succeeded | BuildOutcome::Failed => {
                self.ensure_running(id, "finish")?;
                if !open.is_empty() {
                    return Err(DomainError::JobsUnfinished {
                        build_id: id.to_string(),
                        jobs: open.iter().map(|j| j.as_str()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
            BuildOutcome::Errored | BuildOutcome::Canceled => {
                events.extend(
                    open.into_iter()
                        .map(|job_id| BuildEvent::JobCanceled { job_id: job_id.clone() }),
                );
            }
        }
        events.push(BuildEvent::BuildFinished { outcome, message });
        Ok(events)
    }
}

fn request_into_trigger(repo: &Repo, repo_id: RepoId, request: TriggerRequest) -> Result<Trigger, DomainError> {
    let git_ref = match request.git_ref {
        Some(git_ref) => git_ref,
        None => GitRef::Branch(repo.existing(repo_id)?.main_branch.clone()),
    };
    Ok(Trigger {
        source: request.source,
        git_ref,
        commit: request.commit,
        params: request.params,
        push: request.push,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::org::OrgEvent;
    use crate::repo::{RepoEvent, RepoSettings};
    use crate::testing::given;
    use crate::values::{GitUrl, Labels, Name, OrgSlug, RefName};

    fn org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(1))
    }

    fn repo_id() -> RepoId {
        RepoId::from_uuid(Uuid::from_u128(10))
    }

    fn build_id() -> BuildId {
        BuildId::from_uuid(Uuid::from_u128(100))
    }

    fn new_build_id() -> BuildId {
        BuildId::from_uuid(Uuid::from_u128(101))
    }

    fn job(raw: &str) -> JobId {
        JobId::parse(raw).expect("valid job id")
    }

    fn branch(raw: &str) -> GitRef {
        GitRef::Branch(RefName::parse(raw).expect("valid ref"))
    }

    fn created_org() -> OrgEvent {
        OrgEvent::OrgCreated {
            name: Name::parse("Acme").expect("valid name"),
            slug: OrgSlug::parse("acme").expect("valid slug"),
        }
    }

    fn active_org() -> Org {
        Org::fold(&[created_org()])
    }

    fn deleted_org() -> Org {
        Org::fold(&[created_org(), OrgEvent::OrgDeleted])
    }

    fn added_repo() -> RepoEvent {
        RepoEvent::RepoAdded {
            org_id: org_id(),
            settings: RepoSettings {
                name: Name::parse("App").expect("valid name"),
                git_url: GitUrl::parse("https://github.com/acme/app.git").expect("valid url"),
                main_branch: RefName::parse("main").expect("valid ref"),
                labels: Labels::default(),
            },
        }
    }

    fn repo() -> Repo {
        Repo::fold(&[added_repo()])
    }

    fn archived_repo() -> Repo {
        Repo::fold(&[added_repo(), RepoEvent::RepoArchived])
    }

    fn request() -> TriggerRequest {
        TriggerRequest {
            source: TriggerSource::Api,
            git_ref: None,
            commit: None,
            params: Params::default(),
            push: None,
        }
    }

    fn trigger() -> Trigger {
        Trigger {
            source: TriggerSource::Api,
            git_ref: branch("main"),
            commit: None,
            params: Params::default(),
            push: None,
        }
    }

    fn queued() -> BuildEvent {
        BuildEvent::BuildQueued {
            org_id: org_id(),
            repo_id: repo_id(),
            trigger: trigger(),
            retry_of: None,
        }
    }

    fn started() -> BuildEvent {
        BuildEvent::BuildStarted { runner: "r1".into() }
    }

    fn finished(outcome: BuildOutcome) -> BuildEvent {
        BuildEvent::BuildFinished { outcome, message: None }
    }

    fn job_queued(raw: &str) -> BuildEvent {
        BuildEvent::JobQueued {
            job_id: job(raw),
            dependencies: vec![],
        }
    }

    /// A queued, then started build, followed by `more`.
    fn running(more: impl IntoIterator<Item = BuildEvent>) -> Vec<BuildEvent> {
        [queued(), started()].into_iter().chain(more).collect()
    }

    /// A running build with job `a` queued, followed by `more`.
    fn with_job_a(more: impl IntoIterator<Item = BuildEvent>) -> Vec<BuildEvent> {
        running([job_queued("a")].into_iter().chain(more))
    }

    fn build_not_found() -> DomainError {
        DomainError::NotFound {
            kind: "build",
            id: build_id().to_string(),
        }
    }

    fn build_finished_error() -> DomainError {
        DomainError::BuildFinished {
            build_id: build_id().to_string(),
        }
    }

    fn illegal_build(state: &'static str, action: &'static str) -> DomainError {
        DomainError::IllegalBuildTransition {
            build_id: build_id().to_string(),
            state,
            action,
        }
    }

    fn illegal_job(state: &'static str, action: &'static str) -> DomainError {
        DomainError::IllegalJobTransition {
            job_id: "a".into(),
            state,
            action,
        }
    }

    fn job_not_found(raw: &str) -> DomainError {
        DomainError::NotFound {
            kind: "job",
            id: raw.into(),
        }
    }

    fn fail() -> JobTransition {
        JobTransition::Fail {
            message: "exit 1".into(),
        }
    }

    fn skip() -> JobTransition {
        JobTransition::Skip {
            reason: "dependency failed".into(),
        }
    }

    // Triggering

    #[test]
    fn a_trigger_without_a_ref_builds_the_repos_main_branch() {
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &repo(), &active_org(), request()))
            .then(vec![queued()]);
    }

    #[test]
    fn a_trigger_carries_its_tag_commit_and_params() {
        let tag = GitRef::Tag(RefName::parse("v1.2.0").expect("valid ref"));
        let commit = CommitSha::parse("ABCDEF1234").expect("valid sha");
        let params = Params::parse([("DEPLOY".into(), "yes".into())]).expect("valid params");
        let request = TriggerRequest {
            source: TriggerSource::Webhook,
            git_ref: Some(tag.clone()),
            commit: Some(commit.clone()),
            params: params.clone(),
            push: None,
        };
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &repo(), &active_org(), request))
            .then(vec![BuildEvent::BuildQueued {
                org_id: org_id(),
                repo_id: repo_id(),
                trigger: Trigger {
                    source: TriggerSource::Webhook,
                    git_ref: tag,
                    commit: Some(commit),
                    params,
                    push: None,
                },
                retry_of: None,
            }]);
    }

    #[test]
    fn a_trigger_with_a_branch_builds_that_branch() {
        let request = TriggerRequest {
            git_ref: Some(branch("feature/x")),
            ..request()
        };
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &repo(), &active_org(), request))
            .then(vec![BuildEvent::BuildQueued {
                org_id: org_id(),
                repo_id: repo_id(),
                trigger: Trigger {
                    git_ref: branch("feature/x"),
                    ..trigger()
                },
                retry_of: None,
            }]);
    }

    #[test]
    fn an_archived_repo_cannot_be_built() {
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &archived_repo(), &active_org(), request()))
            .then_err(DomainError::RepoArchived {
                repo_id: repo_id().to_string(),
            });
    }

    #[test]
    fn a_repo_of_a_deleted_org_cannot_be_built() {
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &repo(), &deleted_org(), request()))
            .then_err(DomainError::NotFound {
                kind: "org",
                id: org_id().to_string(),
            });
    }

    #[test]
    fn an_unknown_repo_cannot_be_built() {
        let repo_not_found = DomainError::NotFound {
            kind: "repo",
            id: repo_id().to_string(),
        };
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &Repo::default(), &active_org(), request()))
            .then_err(repo_not_found.clone());
        let with_ref = TriggerRequest {
            git_ref: Some(branch("main")),
            ..request()
        };
        given::<Build>([])
            .when(|b| b.trigger(build_id(), repo_id(), &Repo::default(), &active_org(), with_ref))
            .then_err(repo_not_found);
    }

    #[test]
    fn a_build_cannot_be_triggered_twice_with_the_same_id() {
        given::<Build>([queued()])
            .when(|b| b.trigger(build_id(), repo_id(), &repo(), &active_org(), request()))
            .then_err(DomainError::AlreadyExists {
                kind: "build",
                id: build_id().to_string(),
            });
    }

    // Starting

    #[test]
    fn a_runner_starts_a_queued_build() {
        given::<Build>([queued()])
            .when(|b| b.start(build_id(), "r1".into()))
            .then(vec![started()]);
    }

    #[test]
    fn a_running_build_cannot_be_started_again() {
        given::<Build>(running([]))
            .when(|b| b.start(build_id(), "r2".into()))
            .then_err(illegal_build("running", "start"));
    }

    #[test]
    fn a_finished_build_cannot_be_started() {
        given::<Build>([queued(), finished(BuildOutcome::Canceled)])
            .when(|b| b.start(build_id(), "r1".into()))
            .then_err(build_finished_error());
    }

    #[test]
    fn an_unknown_build_cannot_be_started() {
        given::<Build>([])
            .when(|b| b.start(build_id(), "r1".into()))
            .then_err(build_not_found());
    }

    // Queueing jobs

    #[test]
    fn a_job_is_queued_on_a_running_build() {
        given::<Build>(running([]))
            .when(|b| b.queue_job(build_id(), job("a"), vec![]))
            .then(vec![job_queued("a")]);
    }

    #[test]
    fn a_job_is_queued_after_its_dependencies() {
        given::<Build>(with_job_a([job_queued("b")]))
            .when(|b| b.queue_job(build_id(), job("c"), vec![job("a"), job("b")]))
            .then(vec![BuildEvent::JobQueued {
                job_id: job("c"),
                dependencies: vec![job("a"), job("b")],
            }]);
    }

    #[test]
    fn a_job_with_an_unknown_dependency_cannot_be_queued() {
        given::<Build>(with_job_a([]))
            .when(|b| b.queue_job(build_id(), job("c"), vec![job("a"), job("missing")]))
            .then_err(job_not_found("missing"));
    }

    #[test]
    fn a_job_cannot_depend_on_itself() {
        given::<Build>(running([]))
            .when(|b| b.queue_job(build_id(), job("a"), vec![job("a")]))
            .then_err(job_not_found("a"));
    }

    #[test]
    fn a_job_cannot_be_queued_twice() {
        given::<Build>(with_job_a([]))
            .when(|b| b.queue_job(build_id(), job("a"), vec![]))
            .then_err(DomainError::AlreadyExists {
                kind: "job",
                id: "a".into(),
            });
    }

    #[test]
    fn jobs_cannot_be_queued_before_the_build_starts() {
        given::<Build>([queued()])
            .when(|b| b.queue_job(build_id(), job("a"), vec![]))
            .then_err(illegal_build("queued", "queue a job"));
    }

    // Checkout

    fn sha(raw: &str) -> CommitSha {
        CommitSha::parse(raw).expect("valid sha")
    }

    #[test]
    fn a_running_build_records_the_commit_it_checked_out_with_its_ref() {
        let full = "0123456789abcdef0123456789abcdef01234567";
        given::<Build>(running([]))
            .when(|b| b.record_checkout(build_id(), sha(full)))
            .then(vec![BuildEvent::SourceCheckedOut {
                git_ref: branch("main"),
                commit: sha(full),
            }]);
    }

    #[test]
    fn a_checkout_is_recorded_once_and_only_for_a_running_build() {
        let commit = sha("0123456789abcdef0123456789abcdef01234567");
        let checked_out = BuildEvent::SourceCheckedOut {
            git_ref: branch("main"),
            commit: commit.clone(),
        };
        given::<Build>(running([checked_out]))
            .when(|b| b.record_checkout(build_id(), commit.clone()))
            .then_err(illegal_build("checked out", "record its checkout"));
        given::<Build>([queued()])
            .when(|b| b.record_checkout(build_id(), commit.clone()))
            .then_err(illegal_build("queued", "record its checkout"));
        given::<Build>(running([finished(BuildOutcome::Canceled)]))
            .when(|b| b.record_checkout(build_id(), commit.clone()))
            .then_err(build_finished_error());
    }

    #[test]
    fn a_checkout_must_be_the_commit_the_trigger_asked_for() {
        let asked = BuildEvent::BuildQueued {
            org_id: org_id(),
            repo_id: repo_id(),
            trigger: Trigger {
                commit: Some(sha("abcdef1")),
                ..trigger()
            },
            retry_of: None,
        };
        let full = sha("abcdef1234567890abcdef1234567890abcdef12");
        given::<Build>([asked.clone(), started()])
            .when(|b| b.record_checkout(build_id(), full.clone()))
            .then(vec![BuildEvent::SourceCheckedOut {
                git_ref: branch("main"),
                commit: full,
            }]);
        let error = given::<Build>([asked, started()])
            .when(|b| b.record_checkout(build_id(), sha("1234567890abcdef1234567890abcdef12345678")));
        error.then_err(
            ValidationError::new(
                "commit",
                "the trigger asked for commit abcdef1, not 1234567890abcdef1234567890abcdef12345678",
            )
            .into(),
        );
    }

    #[test]
    fn jobs_cannot_be_queued_on_a_finished_build() {
        given::<Build>(running([finished(BuildOutcome::Errored)]))
            .when(|b| b.queue_job(build_id(), job("a"), vec![]))
            .then_err(build_finished_error());
    }

    #[test]
    fn jobs_cannot_be_queued_on_an_unknown_build() {
        given::<Build>([])
            .when(|b| b.queue_job(build_id(), job("a"), vec![]))
            .then_err(build_not_found());
    }

    // Job transitions

    #[test]
    fn a_job_goes_from_queued_to_started_to_succeeded() {
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
            .then(vec![BuildEvent::JobStarted { job_id: job("a") }]);
        given::<Build>(with_job_a([BuildEvent::JobStarted { job_id: job("a") }]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Succeed))
            .then(vec![BuildEvent::JobSucceeded { job_id: job("a") }]);
    }

    #[test]
    fn a_job_goes_from_queued_to_blocked_to_unblocked_to_started_to_failed() {
        let a = job("a");
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), a.clone(), JobTransition::Block))
            .then(vec![BuildEvent::JobBlocked { job_id: a.clone() }]);
        given::<Build>(with_job_a([BuildEvent::JobBlocked { job_id: a.clone() }]))
            .when(|b| b.transition_job(build_id(), a.clone(), JobTransition::Unblock))
            .then(vec![BuildEvent::JobUnblocked { job_id: a.clone() }]);
        given::<Build>(with_job_a([
            BuildEvent::JobBlocked { job_id: a.clone() },
            BuildEvent::JobUnblocked { job_id: a.clone() },
        ]))
        .when(|b| b.transition_job(build_id(), a.clone(), JobTransition::Start))
        .then(vec![BuildEvent::JobStarted { job_id: a.clone() }]);
        given::<Build>(with_job_a([
            BuildEvent::JobBlocked { job_id: a.clone() },
            BuildEvent::JobUnblocked { job_id: a.clone() },
            BuildEvent::JobStarted { job_id: a.clone() },
        ]))
        .when(|b| b.transition_job(build_id(), a.clone(), fail()))
        .then(vec![BuildEvent::JobFailed {
            job_id: a,
            message: "exit 1".into(),
        }]);
    }

    #[test]
    fn a_queued_or_blocked_job_can_be_skipped() {
        let skipped = vec![BuildEvent::JobSkipped {
            job_id: job("a"),
            message: "dependency failed".into(),
        }];
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("a"), skip()))
            .then(skipped.clone());
        given::<Build>(with_job_a([BuildEvent::JobBlocked { job_id: job("a") }]))
            .when(|b| b.transition_job(build_id(), job("a"), skip()))
            .then(skipped);
    }

    #[test]
    fn a_queued_blocked_or_running_job_can_be_canceled() {
        for state in [
            vec![],
            vec![BuildEvent::JobBlocked { job_id: job("a") }],
            vec![BuildEvent::JobStarted { job_id: job("a") }],
        ] {
            given::<Build>(with_job_a(state))
                .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Cancel))
                .then(vec![BuildEvent::JobCanceled { job_id: job("a") }]);
        }
    }

    #[test]
    fn a_running_job_cannot_be_started_again() {
        given::<Build>(with_job_a([BuildEvent::JobStarted { job_id: job("a") }]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
            .then_err(illegal_job("running", "start"));
    }

    #[test]
    fn a_queued_job_cannot_succeed_or_fail_before_it_starts() {
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Succeed))
            .then_err(illegal_job("queued", "succeed"));
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("a"), fail()))
            .then_err(illegal_job("queued", "fail"));
    }

    #[test]
    fn a_queued_job_cannot_be_unblocked() {
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Unblock))
            .then_err(illegal_job("queued", "unblock"));
    }

    #[test]
    fn a_blocked_job_cannot_start_before_it_is_unblocked() {
        given::<Build>(with_job_a([BuildEvent::JobBlocked { job_id: job("a") }]))
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
            .then_err(illegal_job("blocked", "start"));
    }

    #[test]
    fn a_running_job_cannot_be_skipped() {
        given::<Build>(with_job_a([BuildEvent::JobStarted { job_id: job("a") }]))
            .when(|b| b.transition_job(build_id(), job("a"), skip()))
            .then_err(illegal_job("running", "skip"));
    }

    #[test]
    fn a_terminal_job_accepts_no_transition() {
        let a = job("a");
        let terminal = [
            (
                "succeeded",
                vec![
                    BuildEvent::JobStarted { job_id: a.clone() },
                    BuildEvent::JobSucceeded { job_id: a.clone() },
                ],
            ),
            (
                "failed",
                vec![
                    BuildEvent::JobStarted { job_id: a.clone() },
                    BuildEvent::JobFailed {
                        job_id: a.clone(),
                        message: "exit 1".into(),
                    },
                ],
            ),
            (
                "skipped",
                vec![BuildEvent::JobSkipped {
                    job_id: a.clone(),
                    message: "not needed".into(),
                }],
            ),
            ("canceled", vec![BuildEvent::JobCanceled { job_id: a.clone() }]),
        ];
        let transitions = [
            JobTransition::Block,
            JobTransition::Unblock,
            JobTransition::Start,
            JobTransition::Succeed,
            fail(),
            skip(),
            JobTransition::Cancel,
        ];
        for (state, events) in terminal {
            for transition in transitions.clone() {
                let action = transition.action();
                given::<Build>(with_job_a(events.clone()))
                    .when(|b| b.transition_job(build_id(), a.clone(), transition))
                    .then_err(illegal_job(state, action));
            }
        }
    }

    #[test]
    fn every_job_transition_is_allowed_from_exactly_its_legal_states() {
        use JobStatus::*;
        let a = job("a");
        let states = [
            (Queued, vec![]),
            (Blocked, vec![BuildEvent::JobBlocked { job_id: a.clone() }]),
            (Running, vec![BuildEvent::JobStarted { job_id: a.clone() }]),
        ];
        let legal: [(JobTransition, &[JobStatus]); 7] = [
            (JobTransition::Block, &[Queued]),
            (JobTransition::Unblock, &[Blocked]),
            (JobTransition::Start, &[Queued]),
            (JobTransition::Succeed, &[Running]),
            (fail(), &[Running]),
            (skip(), &[Queued, Blocked]),
            (JobTransition::Cancel, &[Queued, Blocked, Running]),
        ];
        for (state, events) in &states {
            for (transition, from) in &legal {
                let build = Build::fold(&with_job_a(events.clone()));
                assert_eq!(build.jobs.get(&a), Some(state));
                let outcome = build.transition_job(build_id(), a.clone(), transition.clone());
                if from.contains(state) {
                    assert_eq!(outcome, Ok(vec![transition.clone().into_event(a.clone())]));
                } else {
                    assert_eq!(outcome, Err(illegal_job(state.as_str(), transition.action())));
                }
            }
        }
    }

    #[test]
    fn an_unknown_job_cannot_be_moved_on() {
        given::<Build>(with_job_a([]))
            .when(|b| b.transition_job(build_id(), job("b"), JobTransition::Start))
            .then_err(job_not_found("b"));
    }

    #[test]
    fn jobs_cannot_move_on_before_the_build_starts() {
        given::<Build>([queued()])
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
            .then_err(illegal_build("queued", "start"));
    }

    #[test]
    fn jobs_of_a_finished_build_cannot_move_on() {
        given::<Build>(with_job_a([
            BuildEvent::JobCanceled { job_id: job("a") },
            finished(BuildOutcome::Canceled),
        ]))
        .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
        .then_err(build_finished_error());
    }

    #[test]
    fn jobs_of_an_unknown_build_cannot_move_on() {
        given::<Build>([])
            .when(|b| b.transition_job(build_id(), job("a"), JobTransition::Start))
            .then_err(build_not_found());
    }

    // Canceling

    #[test]
    fn canceling_a_queued_build_ends_it_at_once() {
        given::<Build>([queued()])
            .when(|b| b.cancel(build_id()))
            .then(vec![BuildEvent::BuildFinished {
                outcome: BuildOutcome::Canceled,
                message: Some("canceled before it started".into()),
            }]);
    }

    #[test]
    fn canceling_a_running_build_asks_its_runner_to_stop() {
        given::<Build>(running([]))
            .when(|b| b.cancel(build_id()))
            .then(vec![BuildEvent::BuildCancelRequested]);
    }

    #[test]
    fn canceling_a_running_build_twice_changes_nothing() {
        given::<Build>(running([BuildEvent::BuildCancelRequested]))
            .when(|b| b.cancel(build_id()))
            .then(vec![]);
    }

    #[test]
    fn a_finished_build_cannot_be_canceled() {
        for outcome in [
            BuildOutcome::Succeeded,
            BuildOutcome::Failed,
            BuildOutcome::Errored,
            BuildOutcome::Canceled,
        ] {
            given::<Build>(running([finished(outcome)]))
                .when(|b| b.cancel(build_id()))
                .then_err(build_finished_error());
        }
    }

    #[test]
    fn an_unknown_build_cannot_be_canceled() {
        given::<Build>([])
            .when(|b| b.cancel(build_id()))
            .then_err(build_not_found());
    }

    // Finishing

    #[test]
    fn a_build_succeeds_when_all_its_jobs_have_ended() {
        given::<Build>(running([
            job_queued("a"),
            job_queued("b"),
            job_queued("c"),
            BuildEvent::JobStarted { job_id: job("a") },
            BuildEvent::JobSucceeded { job_id: job("a") },
            BuildEvent::JobSkipped {
                job_id: job("b"),
                message: "condition".into(),
            },
            BuildEvent::JobCanceled { job_id: job("c") },
        ]))
        .when(|b| b.finish(build_id(), BuildOutcome::Succeeded, None))
        .then(vec![finished(BuildOutcome::Succeeded)]);
    }

    #[test]
    fn a_build_without_jobs_can_succeed() {
        given::<Build>(running([]))
            .when(|b| b.finish(build_id(), BuildOutcome::Succeeded, None))
            .then(vec![finished(BuildOutcome::Succeeded)]);
    }

    #[test]
    fn a_build_fails_when_all_its_jobs_have_ended() {
        given::<Build>(with_job_a([
            BuildEvent::JobStarted { job_id: job("a") },
            BuildEvent::JobFailed {
                job_id: job("a"),
                message: "exit 1".into(),
            },
        ]))
        .when(|b| b.finish(build_id(), BuildOutcome::Failed, Some("job a failed".into())))
        .then(vec![BuildEvent::BuildFinished {
            outcome: BuildOutcome::Failed,
            message: Some("job a failed".into()),
        }]);
    }

    #[test]
    fn a_build_with_unfinished_jobs_cannot_succeed_or_fail() {
        let events = running([
            job_queued("a"),
            job_queued("b"),
            job_queued("c"),
            BuildEvent::JobStarted { job_id: job("b") },
            BuildEvent::JobCanceled { job_id: job("c") },
        ]);
        for outcome in [BuildOutcome::Succeeded, BuildOutcome::Failed] {
            given::<Build>(events.clone())
                .when(|b| b.finish(build_id(), outcome, None))
                .then_err(DomainError::JobsUnfinished {
                    build_id: build_id().to_string(),
                    jobs: "a, b".into(),
                });
        }
    }

    #[test]
    fn an_errored_or_canceled_build_cancels_its_open_jobs() {
        let events = running([
            job_queued("a"),
            job_queued("b"),
            job_queued("c"),
            job_queued("d"),
            BuildEvent::JobStarted { job_id: job("a") },
            BuildEvent::JobBlocked { job_id: job("b") },
            BuildEvent::JobStarted { job_id: job("d") },
            BuildEvent::JobSucceeded { job_id: job("d") },
        ]);
        for outcome in [BuildOutcome::Errored, BuildOutcome::Canceled] {
            given::<Build>(events.clone())
                .when(|b| b.finish(build_id(), outcome, Some("runner lost".into())))
                .then(vec![
                    BuildEvent::JobCanceled { job_id: job("a") },
                    BuildEvent::JobCanceled { job_id: job("b") },
                    BuildEvent::JobCanceled { job_id: job("c") },
                    BuildEvent::BuildFinished {
                        outcome,
                        message: Some("runner lost".into()),
                    },
                ]);
        }
    }

    #[test]
    fn a_queued_build_can_error_or_be_canceled() {
        for outcome in [BuildOutcome::Errored, BuildOutcome::Canceled] {
            given::<Build>([queued()])
                .when(|b| b.finish(build_id(), outcome, None))
                .then(vec![finished(outcome)]);
        }
    }

    #[test]
    fn a_queued_build_cannot_succeed_or_fail() {
        for outcome in [BuildOutcome::Succeeded, BuildOutcome::Failed] {
            given::<Build>([queued()])
                .when(|b| b.finish(build_id(), outcome, None))
                .then_err(illegal_build("queued", "finish"));
        }
    }

    #[test]
    fn a_finished_build_cannot_finish_again() {
        given::<Build>(running([finished(BuildOutcome::Succeeded)]))
            .when(|b| b.finish(build_id(), BuildOutcome::Errored, None))
            .then_err(build_finished_error());
    }

    #[test]
    fn an_unknown_build_cannot_finish() {
        given::<Build>([])
            .when(|b| b.finish(build_id(), BuildOutcome::Errored, None))
            .then_err(build_not_found());
    }

    // Retrying

    #[test]
    fn a_finished_build_is_retried_as_a_new_build_with_the_same_trigger() {
        let tagged = Trigger {
            source: TriggerSource::Cli,
            git_ref: GitRef::Tag(RefName::parse("v1").expect("valid ref")),
            commit: Some(CommitSha::parse("abcdef1").expect("valid sha")),
            params: Params::parse([("X".into(), "1".into())]).expect("valid params"),
            push: None,
        };
        let queued_with_tag = BuildEvent::BuildQueued {
            org_id: org_id(),
            repo_id: repo_id(),
            trigger: tagged.clone(),
            retry_of: None,
        };
        given::<Build>([queued_with_tag, started(), finished(BuildOutcome::Failed)])
            .when(|b| b.retry(build_id(), new_build_id(), &Build::default(), &repo(), &active_org()))
            .then((
                vec![BuildEvent::BuildRetried {
                    new_build_id: new_build_id(),
                }],
                vec![BuildEvent::BuildQueued {
                    org_id: org_id(),
                    repo_id: repo_id(),
                    trigger: tagged,
                    retry_of: Some(build_id()),
                }],
            ));
    }

    #[test]
    fn a_build_canceled_before_it_started_can_be_retried() {
        given::<Build>([queued(), finished(BuildOutcome::Canceled)])
            .when(|b| b.retry(build_id(), new_build_id(), &Build::default(), &repo(), &active_org()))
            .then((
                vec![BuildEvent::BuildRetried {
                    new_build_id: new_build_id(),
                }],
                vec![BuildEvent::BuildQueued {
                    org_id: org_id(),
                    repo_id: repo_id(),
                    trigger: trigger(),
                    retry_of: Some(build_id()),
                }],
            ));
    }

    #[test]
    fn an_unfinished_build_cannot_be_retried() {
        for events in [vec![queued()], running([])] {
            given::<Build>(events)
                .when(|b| b.retry(build_id(), new_build_id(), &Build::default(), &repo(), &active_org()))
                .then_err(DomainError::BuildNotFinished {
                    build_id: build_id().to_string(),
                });
        }
    }

    #[test]
    fn an_unknown_build_cannot_be_retried() {
        given::<Build>([])
            .when(|b| b.retry(build_id(), new_build_id(), &Build::default(), &repo(), &active_org()))
            .then_err(build_not_found());
    }

    #[test]
    fn a_build_of_an_archived_repo_cannot_be_retried() {
        given::<Build>(running([finished(BuildOutcome::Failed)]))
            .when(|b| {
                b.retry(
                    build_id(),
                    new_build_id(),
                    &Build::default(),
                    &archived_repo(),
                    &active_org(),
                )
            })
            .then_err(DomainError::RepoArchived {
                repo_id: repo_id().to_string(),
            });
    }

    #[test]
    fn a_build_of_a_deleted_org_cannot_be_retried() {
        given::<Build>(running([finished(BuildOutcome::Failed)]))
            .when(|b| b.retry(build_id(), new_build_id(), &Build::default(), &repo(), &deleted_org()))
            .then_err(DomainError::NotFound {
                kind: "org",
                id: org_id().to_string(),
            });
    }

    #[test]
    fn a_retry_cannot_reuse_an_existing_build_id() {
        let existing = Build::fold(&[queued()]);
        given::<Build>(running([finished(BuildOutcome::Failed)]))
            .when(|b| b.retry(build_id(), new_build_id(), &existing, &repo(), &active_org()))
            .then_err(DomainError::AlreadyExists {
                kind: "build",
                id: new_build_id().to_string(),
            });
    }

    // Folding

    #[test]
    fn the_build_state_follows_its_events() {
        let build = Build::fold(&with_job_a([
            job_queued("b"),
            BuildEvent::JobBlocked { job_id: job("b") },
            BuildEvent::JobStarted { job_id: job("a") },
            BuildEvent::BuildCancelRequested,
        ]));
        assert_eq!(build.status, BuildStatus::Running);
        assert_eq!(build.org_id, Some(org_id()));
        assert_eq!(build.repo_id, Some(repo_id()));
        assert_eq!(build.trigger, Some(trigger()));
        assert!(build.cancel_requested);
        assert_eq!(
            build.jobs.into_iter().collect::<Vec<_>>(),
            vec![(job("a"), JobStatus::Running), (job("b"), JobStatus::Blocked)]
        );
        let done = Build::fold(&running([finished(BuildOutcome::Failed)]));
        assert_eq!(done.status, BuildStatus::Finished(BuildOutcome::Failed));
        assert_eq!(done.status.as_str(), "failed");
    }

    fn blob(key: &str) -> BlobRef {
        BlobRef {
            key: key.into(),
            size: 42,
            sha256: "ab".repeat(32),
        }
    }

    fn artifact(raw: &str) -> ArtifactId {
        ArtifactId::parse(raw).expect("valid artifact id")
    }

    fn job_a_started() -> BuildEvent {
        BuildEvent::JobStarted { job_id: job("a") }
    }

    #[test]
    fn a_running_job_saves_an_artifact_once_per_id() {
        let saved = BuildEvent::ArtifactSaved {
            job_id: job("a"),
            artifact_id: artifact("dist"),
            blob: blob("o/r/b/dist.tgz"),
        };
        given::<Build>(with_job_a([job_a_started()]))
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), blob("o/r/b/dist.tgz")))
            .then(vec![saved.clone()]);
        given::<Build>(with_job_a([job_a_started(), saved]))
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), blob("o/r/b/dist.tgz")))
            .then_err(DomainError::AlreadyExists {
                kind: "artifact",
                id: "dist".into(),
            });
    }

    #[test]
    fn only_a_running_job_of_a_running_build_saves_artifacts() {
        given::<Build>(with_job_a([]))
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), blob("k")))
            .then_err(illegal_job("queued", "save an artifact"));
        given::<Build>(with_job_a([job_a_started()]))
            .when(|b| b.save_artifact(build_id(), job("b"), artifact("dist"), blob("k")))
            .then_err(job_not_found("b"));
        given::<Build>(vec![queued()])
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), blob("k")))
            .then_err(DomainError::IllegalBuildTransition {
                build_id: build_id().to_string(),
                state: "queued",
                action: "save an artifact",
            });
    }

    #[test]
    fn a_blob_reference_needs_a_relative_key_and_a_sha256() {
        let mut bad_hash = blob("k");
        bad_hash.sha256 = "XYZ".into();
        given::<Build>(with_job_a([job_a_started()]))
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), bad_hash))
            .then_err(ValidationError::new("sha256", "must be 64 lower-case hexadecimal digits").into());
        given::<Build>(with_job_a([job_a_started()]))
            .when(|b| b.save_artifact(build_id(), job("a"), artifact("dist"), blob("/etc/passwd")))
            .then_err(ValidationError::new("key", "must be a relative object key of 1 to 1024 characters").into());
    }

    #[test]
    fn an_ended_jobs_log_is_archived_once_even_after_the_build_ended() {
        let archived = BuildEvent::JobLogArchived {
            job_id: job("a"),
            blob: blob("logs/a.log"),
            lines: 3,
        };
        let ended = [job_a_started(), BuildEvent::JobSucceeded { job_id: job("a") }];
        given::<Build>(with_job_a(ended.clone()))
            .when(|b| b.archive_job_log(build_id(), job("a"), blob("logs/a.log"), 3))
            .then(vec![archived.clone()]);
        given::<Build>(with_job_a(
            ended.clone().into_iter().chain([finished(BuildOutcome::Succeeded)]),
        ))
        .when(|b| b.archive_job_log(build_id(), job("a"), blob("logs/a.log"), 3))
        .then(vec![archived.clone()]);
        given::<Build>(with_job_a(ended.into_iter().chain([archived])))
            .when(|b| b.archive_job_log(build_id(), job("a"), blob("logs/a.log"), 3))
            .then_err(DomainError::AlreadyExists {
                kind: "job log",
                id: "a".into(),
            });
    }

    #[test]
    fn a_running_jobs_log_is_not_archived_yet() {
        given::<Build>(with_job_a([job_a_started()]))
            .when(|b| b.archive_job_log(build_id(), job("a"), blob("logs/a.log"), 1))
            .then_err(illegal_job("running", "archive its log"));
    }
}
