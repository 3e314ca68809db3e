//! The GraphQL object types, each a view of one read-model row.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{ComplexObject, Context, Enum, Interface, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use monkeyci_domain::access::Role;
use monkeyci_projections::queries::{self, BuildFilter, Page};
use monkeyci_projections::{BuildRow, JobRow, OrgRow, RepoRow, TokenRow};
use uuid::Uuid;

use super::secrets::{ParamSet, SshKey};
use super::triggers::{Schedule, Webhook};
use super::{api, page_args, projection_error, ApiContext};
use crate::auth::{caller, require, role_in};
use crate::ids::{self, Kind};

/// An object with a global id (Relay).
// One value per `node` query, never stored: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Interface, Debug)]
#[graphql(field(name = "id", ty = "ID", desc = "The global id."))]
pub enum Node {
    Org(Org),
    Repo(Repo),
    Build(Build),
    Job(Job),
    Webhook(Webhook),
    Schedule(Schedule),
    ParamSet(ParamSet),
    SshKey(SshKey),
    ApiToken(ApiToken),
}

/// A `name = value` pair (labels, build parameters).
#[derive(SimpleObject, Debug, Clone)]
pub struct Pair {
    pub name: String,
    pub value: String,
}

fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<Pair> {
    map.iter()
        .map(|(name, value)| Pair {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Turns a page of rows into a Relay connection whose cursors are the rows' ids.
pub fn connection<R, N: async_graphql::OutputType>(
    page: Page<R>,
    had_cursor: bool,
    id: impl Fn(&R) -> Uuid,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let mut conn = Connection::new(had_cursor, page.has_more);
    conn.edges
        .extend(page.rows.into_iter().map(|r| Edge::new(id(&r).to_string(), node(r))));
    conn
}

/// An organisation: owns repos, parameters and members.
#[derive(Debug, Clone)]
pub struct Org(pub OrgRow);

#[Object]
impl Org {
    /// The global id.
    async fn id(&self) -> ID {
        ids::encode(Kind::Org, self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The org's unique handle.
    async fn slug(&self) -> &str {
        &self.0.slug
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The org's repos, oldest first.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn repos(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Repo>> {
        let (limit, after_id) = page_args(first, after.as_deref())?;
        let page = queries::repos_of_org(&api(ctx).read, self.0.id, after_id, limit)
            .await
            .map_err(projection_error)?;
        Ok(connection(page, after_id.is_some(), |r| r.id, Repo))
    }

    /// The org's parameter sets (names and filters; values are never shown).
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn param_sets(&self, ctx: &Context<'_>) -> Result<Vec<ParamSet>> {
        super::secrets::param_sets_of(ctx, self.0.id).await
    }

    /// The org's ssh keys (public halves only).
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn ssh_keys(&self, ctx: &Context<'_>) -> Result<Vec<SshKey>> {
        super::secrets::ssh_keys_of(ctx, self.0.id).await
    }

    /// The org's org tokens that are not revoked (expired ones included), oldest first; never
    /// their secrets. Owners only: `FORBIDDEN` for members and viewers.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        require(ctx, self.0.id, Role::Owner, "org").await?;
        let rows = queries::org_tokens(&api(ctx).read, self.0.id)
            .await
            .map_err(projection_error)?;
        Ok(rows.into_iter().map(ApiToken).collect())
    }

    /// The org's members with their roles, by name. Owners only: `FORBIDDEN` for members and
    /// viewers.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Member>> {
        require(ctx, self.0.id, Role::Owner, "org").await?;
        let rows = queries::org_members(&api(ctx).read, self.0.id)
            .await
            .map_err(projection_error)?;
        Ok(rows.into_iter().map(Member).collect())
    }

    /// The caller's role in this org: `owner`, `member` or `viewer` (the admin is an owner of
    /// every org). For offering only what the caller may do; every mutation is checked anyway.
    async fn my_role(&self, ctx: &Context<'_>) -> Result<String> {
        let role = role_in(api(ctx), &caller(ctx)?, self.0.id).await?;
        // An org is only read by callers with a role in it.
        Ok(role.map_or("none", Role::as_str).to_owned())
    }
}

/// A user's membership of an org.
#[derive(Clone)]
pub struct Member(pub queries::MemberRow);

#[Object]
impl Member {
    /// The user's global id (as `addMember` takes it).
    async fn user_id(&self) -> ID {
        ids::encode(Kind::User, self.0.user_id)
    }

    /// The user's name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// `owner`, `member` or `viewer`.
    async fn role(&self) -> &str {
        &self.0.role
    }
}

/// An API token: whom it acts for and until when. Its secret is shown once, by
/// `createApiToken`, and never again; not even its hash is readable.
#[derive(Clone)]
pub struct ApiToken(pub TokenRow);

impl std::fmt::Debug for ApiToken {
    // Without the hash, so that it reaches no log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.0.id)
            .field("name", &self.0.name)
            .field("kind", &self.0.kind)
            .field("revoked", &self.0.revoked)
            .finish_non_exhaustive()
    }
}

#[Object]
impl ApiToken {
    /// The global id.
    async fn id(&self) -> ID {
        ids::encode(Kind::Token, self.0.id)
    }

    /// What the token is for, as given when it was created.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// `user` (acts as its user, with the user's roles) or `org` (acts in one org with one role).
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The role of an org token in its org (`owner`, `member` or `viewer`); `null` for a user
    /// token.
    async fn role(&self) -> Option<&str> {
        self.0.role.as_deref()
    }

    /// The org an org token acts in; `null` for a user token.
    async fn org(&self, ctx: &Context<'_>) -> Result<Option<Org>> {
        let Some(org_id) = self.0.org_id else {
            return Ok(None);
        };
        let row = queries::org(&api(ctx).read, org_id).await.map_err(projection_error)?;
        Ok(row.map(Org))
    }

    /// When the token stops working.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    /// Whether the token was revoked (it then works no more).
    async fn revoked(&self) -> bool {
        self.0.revoked
    }

    /// When the token was issued.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A repository that MonkeyCI builds.
#[derive(Debug, Clone)]
pub struct Repo(pub RepoRow);

/// Build states.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Errored,
    Canceled,
}

impl BuildStatus {
    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "errored" => Self::Errored,
            "canceled" => Self::Canceled,
            _ => Self::Queued,
        }
    }

    /// The read-model word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Errored => "errored",
            Self::Canceled => "canceled",
        }
    }

    /// Whether the build has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[Object]
impl Repo {
    /// The global id.
    async fn id(&self) -> ID {
        ids::encode(Kind::Repo, self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn git_url(&self) -> &str {
        &self.0.git_url
    }

    /// The branch built when a trigger names no ref.
    async fn main_branch(&self) -> &str {
        &self.0.main_branch
    }

    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn labels(&self) -> Vec<Pair> {
        pairs(&self.0.labels)
    }

    /// An archived repo keeps its history and takes no more builds.
    async fn archived(&self) -> bool {
        self.0.archived
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    async fn org(&self, ctx: &Context<'_>) -> Result<Option<Org>> {
        let row = queries::org(&api(ctx).read, self.0.org_id)
            .await
            .map_err(projection_error)?;
        Ok(row.map(Org))
    }

    /// The repo's builds, newest first, optionally only of one status or branch.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn builds(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<BuildStatus>,
        branch: Option<String>,
    ) -> Result<Connection<String, Build>> {
        let (limit, after_id) = page_args(first, after.as_deref())?;
        let filter = BuildFilter {
            status: status.map(|s| s.as_str().to_owned()),
            branch,
        };
        let page = queries::builds_of_repo(&api(ctx).read, self.0.id, &filter, after_id, limit)
            .await
            .map_err(projection_error)?;
        Ok(connection(page, after_id.is_some(), |b| b.id, Build::new))
    }

    /// The repo's webhooks: one per git host that sends it pushes.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn webhooks(&self, ctx: &Context<'_>) -> Result<Vec<super::triggers::Webhook>> {
        super::triggers::webhooks_of(ctx, self.0.id).await
    }

    /// The repo's cron schedules.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn schedules(&self, ctx: &Context<'_>) -> Result<Vec<super::triggers::Schedule>> {
        super::triggers::schedules_of(ctx, self.0.id).await
    }
}

/// Who or what started a build.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerSource {
    Api,
    Cli,
    Webhook,
    Schedule,
}

/// How many of a build's jobs are in each state.
#[derive(SimpleObject, Debug, Clone)]
pub struct JobCounts {
    pub total: i32,
    pub queued: i32,
    pub blocked: i32,
    pub running: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub skipped: i32,
    pub canceled: i32,
}

/// One run of a repo's pipeline.
#[derive(Debug, Clone)]
pub struct Build(pub BuildRow, Option<Vec<JobRow>>);

impl Build {
    /// The build as the read model has it now.
    pub fn new(row: BuildRow) -> Self {
        Self(row, None)
    }

    /// The build and its jobs as they were at some moment (not the read model's).
    pub fn as_of(row: BuildRow, jobs: Vec<JobRow>) -> Self {
        Self(row, Some(jobs))
    }

    /// The build's status.
    pub fn status(&self) -> BuildStatus {
        BuildStatus::parse(&self.0.status)
    }
}

#[Object]
impl Build {
    /// The global id.
    async fn id(&self) -> ID {
        ids::encode(Kind::Build, self.0.id)
    }

    #[graphql(name = "status")]
    async fn status_field(&self) -> BuildStatus {
        self.status()
    }

    async fn source(&self) -> TriggerSource {
        match self.0.source.as_str() {
            "cli" => TriggerSource::Cli,
            "webhook" => TriggerSource::Webhook,
            "schedule" => TriggerSource::Schedule,
            _ => TriggerSource::Api,
        }
    }

    /// The branch built, if the build is of a branch.
    async fn branch(&self) -> Option<&str> {
        (self.0.ref_kind == "branch").then_some(self.0.ref_name.as_str())
    }

    /// The tag built, if the build is of a tag.
    async fn tag(&self) -> Option<&str> {
        (self.0.ref_kind == "tag").then_some(self.0.ref_name.as_str())
    }

    /// The commit built: the full hash the runner checked out once it has, before that the
    /// commit the trigger asked for (if it named one).
    async fn commit(&self) -> Option<&str> {
        self.0.commit_sha.as_deref()
    }

    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn params(&self) -> Vec<Pair> {
        pairs(&self.0.params)
    }

    /// Why the build ended as it did, when there is more to say than the status.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    /// The runner that took the build.
    async fn runner(&self) -> Option<&str> {
        self.0.runner.as_deref()
    }

    /// Whether somebody asked to cancel the running build.
    async fn cancel_requested(&self) -> bool {
        self.0.cancel_requested
    }

    async fn queued_at(&self) -> DateTime<Utc> {
        self.0.queued_at
    }

    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }

    async fn job_counts(&self) -> JobCounts {
        let b = &self.0;
        JobCounts {
            total: b.jobs_total,
            queued: b.jobs_queued,
            blocked: b.jobs_blocked,
            running: b.jobs_running,
            succeeded: b.jobs_succeeded,
            failed: b.jobs_failed,
            skipped: b.jobs_skipped,
            canceled: b.jobs_canceled,
        }
    }

    /// The build's jobs, by job id.
    #[graphql(complexity = "super::cost::list(super::cost::JOBS, child_complexity)")]
    async fn jobs(&self, ctx: &Context<'_>) -> Result<Vec<Job>> {
        let rows = match &self.1 {
            Some(jobs) => jobs.clone(),
            None => queries::jobs_of_build(&api(ctx).read, self.0.id)
                .await
                .map_err(projection_error)?,
        };
        Ok(rows.into_iter().map(Job).collect())
    }

    async fn repo(&self, ctx: &Context<'_>) -> Result<Option<Repo>> {
        let row = queries::repo(&api(ctx).read, self.0.repo_id)
            .await
            .map_err(projection_error)?;
        Ok(row.map(Repo))
    }

    /// The artifacts the build's jobs saved, in the order they were saved.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn artifacts(&self) -> Vec<Artifact> {
        let build_id = ids::encode(Kind::Build, self.0.id);
        self.0
            .artifacts
            .iter()
            .map(|a| Artifact {
                id: a.id.clone(),
                job_id: a.job_id.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
                saved_at: a.saved_at,
                download_path: format!("/builds/{}/artifacts/{}", build_id.as_str(), a.id),
            })
            .collect()
    }

    /// The build this one retries.
    async fn retry_of(&self, ctx: &Context<'_>) -> Result<Option<Build>> {
        linked_build(ctx, self.0.retry_of).await
    }

    /// The build that retried this one.
    async fn retried_by(&self, ctx: &Context<'_>) -> Result<Option<Build>> {
        linked_build(ctx, self.0.retried_by).await
    }
}

async fn linked_build(ctx: &Context<'_>, id: Option<Uuid>) -> Result<Option<Build>> {
    let Some(id) = id else { return Ok(None) };
    let row = queries::build(&api(ctx).read, id).await.map_err(projection_error)?;
    Ok(row.map(Build::new))
}

/// Files a job saved for later jobs of its build and for download (a tar.gz).
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct Artifact {
    /// The artifact's id in the pipeline (`save-artifacts`).
    pub id: String,
    /// The job that saved it.
    pub job_id: String,
    /// Size of the tar.gz in bytes.
    pub size: u64,
    /// SHA-256 of the tar.gz, lower-case hex.
    pub sha256: String,
    pub saved_at: DateTime<Utc>,
    /// Where to download it on this server: `GET` this path.
    pub download_path: String,
}

#[ComplexObject]
impl Artifact {
    /// `downloadPath` with a ticket in place of the `Authorization` header, for a plain link
    /// (`<a href download>`): it works for 5 minutes, for this path only, and only while the
    /// caller's token is active and may read the build (checked again at each use).
    async fn download_link(&self, ctx: &Context<'_>) -> Result<String> {
        download_link(ctx, &self.download_path).await
    }
}

/// `path` with a ticket of the caller's (see [`crate::tickets`]).
async fn download_link(ctx: &Context<'_>, path: &str) -> Result<String> {
    let caller = caller(ctx)?;
    match api(ctx).tickets.make(&caller, path, Utc::now()).await {
        Ok(ticket) => Ok(format!("{path}?ticket={ticket}")),
        Err(crate::tickets::TicketError::Unavailable(message)) => {
            Err(crate::errors::client(crate::errors::Code::Unavailable, message))
        }
        Err(error) => Err(crate::errors::bad_input(error.to_string())),
    }
}

/// A job's output as archived to blob storage when the job ended.
#[derive(SimpleObject, Debug, Clone)]
pub struct LogArchive {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the archived text, lower-case hex.
    pub sha256: String,
    /// Lines of output.
    pub lines: u64,
}

/// Job states.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Blocked,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Canceled,
}

/// One job of a build's pipeline.
#[derive(Debug, Clone)]
pub struct Job(pub JobRow);

impl Job {
    /// Where the job's whole output is served.
    fn path(&self) -> String {
        let build_id = ids::encode(Kind::Build, self.0.build_id);
        format!("/builds/{}/jobs/{}/log", build_id.as_str(), self.0.job_id)
    }

    /// The API, once the job's lines are stored (restored from their archive if need be).
    async fn stored_log<'a>(&self, ctx: &Context<'a>) -> Result<&'a ApiContext> {
        let api = api(ctx);
        api.job_logs
            .ensure_stored(&api.read, &self.0)
            .await
            .map_err(|e| crate::errors::client(crate::errors::Code::Unavailable, e))?;
        Ok(api)
    }
}

#[Object]
impl Job {
    /// The global id.
    async fn id(&self) -> ID {
        ids::encode_job(self.0.build_id, &self.0.job_id)
    }

    /// The job's id in the pipeline.
    async fn job_id(&self) -> &str {
        &self.0.job_id
    }

    async fn status(&self) -> JobStatus {
        match self.0.status.as_str() {
            "blocked" => JobStatus::Blocked,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "skipped" => JobStatus::Skipped,
            "canceled" => JobStatus::Canceled,
            _ => JobStatus::Queued,
        }
    }

    /// The ids of the jobs this one waits for.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn dependencies(&self) -> &[String] {
        &self.0.dependencies
    }

    /// Why the job failed or was skipped.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    async fn queued_at(&self) -> DateTime<Utc> {
        self.0.queued_at
    }

    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }

    async fn build(&self, ctx: &Context<'_>) -> Result<Option<Build>> {
        linked_build(ctx, Some(self.0.build_id)).await
    }

    /// Where the job's output was archived, once it has ended and the archive is stored.
    async fn log_archive(&self) -> Option<LogArchive> {
        self.0.log_archive.as_ref().map(|a| LogArchive {
            size: a.size,
            sha256: a.sha256.clone(),
            lines: a.lines,
        })
    }

    /// Where to download the job's whole output as text: `GET` this path.
    async fn log_path(&self) -> String {
        self.path()
    }

    /// `logPath` with a ticket in place of the `Authorization` header, for a plain link: it
    /// works for 5 minutes, for this path only, and only while the caller's token is active and
    /// may read the build (checked again at each use).
    async fn log_download_link(&self, ctx: &Context<'_>) -> Result<String> {
        download_link(ctx, &self.path()).await
    }

    /// How many lines of output the job has written so far (lines are numbered from 1 without
    /// gaps, so this is also the number of the last one).
    async fn log_lines(&self, ctx: &Context<'_>) -> Result<i64> {
        let api = self.stored_log(ctx).await?;
        queries::job_log_count(&api.read, self.0.build_id, &self.0.job_id)
            .await
            .map_err(projection_error)
    }

    /// The lines of the job's output that contain `text` (literally, ignoring case; escape
    /// codes in the output are part of its text): the first `first` after line `after` (from the
    /// start if not given), or the last `last` before line `before` (from the end if not given),
    /// in line order either way. Give `first` or `last` (at most 1,000). A search reads the whole
    /// log in the worst case: it costs 5,000 plus its lines, and stops after 5 seconds.
    #[graphql(complexity = "super::cost::log_search(first, last, child_complexity)")]
    async fn log_search(
        &self,
        ctx: &Context<'_>,
        text: String,
        after: Option<i64>,
        first: Option<i32>,
        before: Option<i64>,
        last: Option<i32>,
    ) -> Result<Vec<JobLogLine>> {
        let length = text.chars().count();
        if !(1..=super::cost::MAX_LOG_SEARCH_TEXT).contains(&length) {
            return Err(crate::errors::bad_input(format!(
                "`text` must have 1 to {} characters",
                super::cost::MAX_LOG_SEARCH_TEXT
            )));
        }
        let (direction, from, limit) = match (first, last, after, before) {
            (Some(first), None, after, None) => (queries::SearchDirection::Forward, after.unwrap_or(0), first),
            (None, Some(last), None, before) => (queries::SearchDirection::Backward, before.unwrap_or(i64::MAX), last),
            _ => {
                return Err(crate::errors::bad_input(
                    "give `first` (with `after` if you like) or `last` (with `before`), not both",
                ))
            }
        };
        if !(0..=super::cost::MAX_LOG_SEARCH_LINES).contains(&limit) {
            return Err(crate::errors::bad_input(format!(
                "`first` and `last` must be between 0 and {}",
                super::cost::MAX_LOG_SEARCH_LINES
            )));
        }
        let api = self.stored_log(ctx).await?;
        let lines = queries::search_job_log(
            &api.read,
            self.0.build_id,
            &self.0.job_id,
            &text,
            from,
            direction,
            i64::from(limit),
        )
        .await
        .map_err(projection_error)?;
        Ok(lines.into_iter().map(JobLogLine::from).collect())
    }

    /// The job's output so far: up to `first` lines (at most 5,000) after line `after`.
    #[graphql(complexity = "super::cost::log_lines(first, child_complexity)")]
    async fn log(&self, ctx: &Context<'_>, after: Option<i64>, first: Option<i32>) -> Result<Vec<JobLogLine>> {
        let limit = first.unwrap_or(super::cost::DEFAULT_LOG_LINES);
        if !(0..=super::cost::MAX_LOG_LINES).contains(&limit) {
            return Err(crate::errors::bad_input(format!(
                "`first` must be between 0 and {}",
                super::cost::MAX_LOG_LINES
            )));
        }
        let api = self.stored_log(ctx).await?;
        let lines = queries::job_log(
            &api.read,
            self.0.build_id,
            &self.0.job_id,
            after.unwrap_or(0),
            i64::from(limit),
        )
        .await
        .map_err(projection_error)?;
        Ok(lines.into_iter().map(JobLogLine::from).collect())
    }
}

/// One line of a job's output. A line costs 1 in a query's cost, whichever of its fields are
/// asked for (`Job.log` counts it).
#[derive(SimpleObject, Debug, Clone)]
pub struct JobLogLine {
    /// The line's number, from 1; pass it as `after` to continue after it.
    #[graphql(complexity = 0)]
    pub offset: i64,
    #[graphql(complexity = 0)]
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr` or `system` (written by MonkeyCI).
    #[graphql(complexity = 0)]
    pub stream: String,
    #[graphql(complexity = 0)]
    pub text: String,
}

impl From<queries::StoredLine> for JobLogLine {
    fn from(line: queries::StoredLine) -> Self {
        Self {
            offset: line.seq,
            at: line.at,
            stream: line.stream,
            text: line.text,
        }
    }
}
