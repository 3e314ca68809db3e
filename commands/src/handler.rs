use std::fmt::Display;

use futures::future::BoxFuture;
use std::str::FromStr;

use monkeyci_domain::access::{ApiToken, Role, TokenSubject, User};
use monkeyci_domain::build::{Build, JobTransition, TriggerRequest};
use monkeyci_domain::org::{Org, SlugClaim};
use monkeyci_domain::pipeline::ArtifactId;
use monkeyci_domain::repo::{Repo, RepoChanges, RepoSettings};
use monkeyci_domain::{
    Aggregate, BuildId, CommitSha, DomainError, DomainEvent, GitRef, GitUrl, JobId, Labels, Name, OrgId, OrgSlug,
    Params, RefName, RepoId, StreamId, TokenId, UserId,
};
use monkeyci_eventstore::{
    AppendError, AppendResult, EventStore, ExpectedVersion, IdempotencyClaim, Metadata, NewEvent, ReadError,
    StreamAppend,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::context::CommandContext;
use crate::error::CommandError;
use crate::inputs::*;
use crate::keys::KeyStore;

/// How often a command is decided again after losing a race for one of its streams.
const MAX_ATTEMPTS: usize = 8;

/// The pause before deciding again after the `attempt`th lost race: random, so that writers
/// racing for one stream (the jobs of a busy build, say) do not collide again in step, and
/// growing, from under 1 ms to under 32 ms.
fn backoff(attempt: usize) -> std::time::Duration {
    let ceiling = 500u64 << attempt.clamp(1, 6);
    let random = Uuid::new_v4().as_u128() as u64;
    std::time::Duration::from_micros(random % ceiling)
}

/// Runs commands against the event log.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    store: EventStore,
    keys: Option<KeyStore>,
}

/// An aggregate as read, with the version its stream was at.
pub(crate) struct Loaded<A> {
    stream: StreamId,
    version: u64,
    pub(crate) state: A,
}

/// An event encoded for the log: type, schema version, payload.
type Encoded = (String, i32, serde_json::Value);

/// What a command decided: the id it returns and, per stream, the version read and new events.
pub(crate) struct Decision<T> {
    result: T,
    org_id: Option<OrgId>,
    writes: Vec<(StreamId, u64, Vec<Encoded>)>,
}

impl<T> Decision<T> {
    pub(crate) fn new(result: T, org_id: Option<OrgId>) -> Self {
        Self {
            result,
            org_id,
            writes: Vec::new(),
        }
    }

    pub(crate) fn with<A: Aggregate>(mut self, loaded: &Loaded<A>, events: Vec<A::Event>) -> Self {
        if !events.is_empty() {
            let encoded = events
                .iter()
                .map(|event| {
                    let (event_type, data) = event.encode();
                    let version = A::Event::schema_version(&event_type);
                    (event_type, version, data)
                })
                .collect();
            self.writes.push((loaded.stream.clone(), loaded.version, encoded));
        }
        self
    }
}

pub(crate) fn parse<T>(result: Result<T, monkeyci_domain::ValidationError>) -> Result<T, CommandError> {
    result.map_err(|e| CommandError::Domain(DomainError::Invalid(e)))
}

fn parse_opt<T>(
    raw: Option<&str>,
    f: impl Fn(&str) -> Result<T, monkeyci_domain::ValidationError>,
) -> Result<Option<T>, CommandError> {
    raw.map(|r| parse(f(r))).transpose()
}

impl CommandHandler {
    /// A handler appending to `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store, keys: None }
    }

    /// The same handler, able to store secrets with `keys`.
    pub fn with_keys(mut self, keys: KeyStore) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Where secrets' data keys are, if this server has a master key.
    pub fn keys(&self) -> Option<&KeyStore> {
        self.keys.as_ref()
    }

    /// The event store commands append to.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The current state of aggregate `A` with id `id`, folded from its stream: what a command
    /// would decide on, never behind the log as a read model can be (the default state if
    /// the stream does not exist).
    pub async fn current<A: Aggregate>(&self, id: impl Display) -> Result<A, CommandError> {
        Ok(self.load::<A>(id).await?.state)
    }

    pub(crate) async fn load<A: Aggregate>(&self, id: impl Display) -> Result<Loaded<A>, CommandError> {
        let stream = StreamId::new(A::CATEGORY, id);
        let events = match self.store.read_stream(stream.as_str(), 0).await {
            Ok(events) => events,
            Err(ReadError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut state = A::default();
        let mut version = 0;
        for recorded in &events {
            let event =
                A::Event::decode(&recorded.event_type, recorded.schema_version, &recorded.data).map_err(|source| {
                    CommandError::Corrupt {
                        stream_id: stream.to_string(),
                        source,
                    }
                })?;
            state.apply(&event);
            version = recorded.stream_version;
        }
        Ok(Loaded { stream, version, state })
    }

    /// Checks the idempotency key, decides (again after each lost race) and appends.
    pub(crate) async fn execute<'a, T>(
        &'a self,
        ctx: &CommandContext,
        command: &'static str,
        input: &impl Serialize,
        mut decide: impl FnMut() -> BoxFuture<'a, Result<Decision<T>, CommandError>>,
    ) -> Result<T, CommandError>
    where
        T: Display + FromStr,
    {
        let claim = match &ctx.idempotency_key {
            Some(key) => {
                if key.is_empty() || key.len() > 200 {
                    return Err(CommandError::InvalidIdempotencyKey);
                }
                let fingerprint = fingerprint(command, input);
                if let Some(found) = self.store.find_idempotency_key(&ctx.actor, key).await? {
                    return stored_result(found, command, &fingerprint);
                }
                Some((key.clone(), fingerprint))
            }
            None => None,
        };
        let command_id = Uuid::now_v7();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let decision = match decide().await {
                Ok(decision) => decision,
                // A concurrent first use of the same key may have changed the state this command
                // is refused on (e.g. it took the slug): the key decides, not the refusal.
                Err(error) => match &claim {
                    Some((key, fingerprint)) => match self.store.find_idempotency_key(&ctx.actor, key).await? {
                        Some(found) => return stored_result(found, command, fingerprint),
                        None => return Err(error),
                    },
                    None => return Err(error),
                },
            };
            let metadata = Metadata {
                actor: ctx.actor.clone(),
                correlation_id: ctx.correlation_id,
                causation_id: ctx.causation_id,
                command_id,
                idempotency_key: ctx.idempotency_key.clone(),
                org_id: decision.org_id.map(|o| o.as_uuid()),
            };
            let writes: Vec<StreamAppend> = decision
                .writes
                .into_iter()
                .map(|(stream, version, events)| StreamAppend {
                    stream_id: stream.to_string(),
                    expected: ExpectedVersion::from_version(version),
                    events: events
                        .into_iter()
                        .map(|(event_type, schema_version, data)| NewEvent {
                            event_type,
                            schema_version,
                            data,
                            metadata: metadata.clone(),
                        })
                        .collect(),
                })
                .collect();
            let claim = claim.as_ref().map(|(key, fingerprint)| IdempotencyClaim {
                scope: ctx.actor.clone(),
                key: key.clone(),
                command: command.to_owned(),
                fingerprint: fingerprint.clone(),
                result_id: decision.result.to_string(),
            });
            if writes.is_empty() && claim.is_none() {
                return Ok(decision.result);
            }
            match self.store.append(&writes, claim.as_ref()).await {
                Ok(AppendResult::Appended { .. }) => {
                    tracing::debug!(command, %command_id, result = %decision.result, "command appended");
                    return Ok(decision.result);
                }
                Ok(AppendResult::Duplicate { result_id }) => {
                    return parse_result(&result_id, command, claim.map(|c| c.key).unwrap_or_default());
                }
                Err(AppendError::WrongExpectedVersion { stream_id, .. }) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(command, %stream_id, attempt, "lost a race; deciding again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates an org; its slug must be free.
    pub async fn create_org(&self, ctx: &CommandContext, input: CreateOrg) -> Result<OrgId, CommandError> {
        let name = parse(Name::parse(&input.name))?;
        let slug = parse(OrgSlug::parse(&input.slug))?;
        let org_id = OrgId::from_uuid(Uuid::now_v7());
        let (name, slug) = (&name, &slug);
        self.execute(ctx, "createOrg", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let claim = self.load::<SlugClaim>(slug).await?;
                let claimed = claim.state.claim(slug, org_id)?;
                let created = org.state.create(org_id, name.clone(), slug.clone())?;
                Ok(Decision::new(org_id, Some(org_id))
                    .with(&claim, claimed)
                    .with(&org, created))
            })
        })
        .await
    }

    /// Creates an org whose first owner is `owner` (a user creating an org owns it).
    pub async fn create_org_owned_by(
        &self,
        ctx: &CommandContext,
        input: CreateOrg,
        owner: UserId,
    ) -> Result<OrgId, CommandError> {
        let name = parse(Name::parse(&input.name))?;
        let slug = parse(OrgSlug::parse(&input.slug))?;
        let org_id = OrgId::from_uuid(Uuid::now_v7());
        let (name, slug) = (&name, &slug);
        self.execute(ctx, "createOrg", &(&input, owner), move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let user = self.load::<User>(owner).await?;
                let claim = self.load::<SlugClaim>(slug).await?;
                let claimed = claim.state.claim(slug, org_id)?;
                let mut events = org.state.create(org_id, name.clone(), slug.clone())?;
                let mut created = org.state.clone();
                events.iter().for_each(|e| created.apply(e));
                events.extend(created.add_member(org_id, owner, &user.state, Role::Owner)?);
                Ok(Decision::new(org_id, Some(org_id))
                    .with(&claim, claimed)
                    .with(&org, events))
            })
        })
        .await
    }

    /// Creates a user.
    pub async fn create_user(&self, ctx: &CommandContext, input: CreateUser) -> Result<UserId, CommandError> {
        let name = &parse(Name::parse(&input.name))?;
        let user_id = UserId::from_uuid(Uuid::now_v7());
        self.execute(ctx, "createUser", &input, move || {
            Box::pin(async move {
                let user = self.load::<User>(user_id).await?;
                let events = user.state.create(user_id, name.clone())?;
                Ok(Decision::new(user_id, None).with(&user, events))
            })
        })
        .await
    }

    /// Adds a user to an org.
    pub async fn add_member(&self, ctx: &CommandContext, input: AddMember) -> Result<OrgId, CommandError> {
        let role = parse(Role::parse(&input.role))?;
        let (org_id, user_id) = (input.org_id, input.user_id);
        self.execute(ctx, "addMember", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let user = self.load::<User>(user_id).await?;
                let events = org.state.add_member(org_id, user_id, &user.state, role)?;
                Ok(Decision::new(org_id, Some(org_id)).with(&org, events))
            })
        })
        .await
    }

    /// Changes a member's role.
    pub async fn change_member_role(
        &self,
        ctx: &CommandContext,
        input: ChangeMemberRole,
    ) -> Result<OrgId, CommandError> {
        let role = parse(Role::parse(&input.role))?;
        let (org_id, user_id) = (input.org_id, input.user_id);
        self.execute(ctx, "changeMemberRole", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let events = org.state.change_role(org_id, user_id, role)?;
                Ok(Decision::new(org_id, Some(org_id)).with(&org, events))
            })
        })
        .await
    }

    /// Removes a member from an org.
    pub async fn remove_member(&self, ctx: &CommandContext, input: RemoveMember) -> Result<OrgId, CommandError> {
        let (org_id, user_id) = (input.org_id, input.user_id);
        self.execute(ctx, "removeMember", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let events = org.state.remove_member(org_id, user_id)?;
                Ok(Decision::new(org_id, Some(org_id)).with(&org, events))
            })
        })
        .await
    }

    /// Issues an API token for a user (who must exist) or an org (which must be active).
    pub async fn create_token(&self, ctx: &CommandContext, input: CreateToken) -> Result<TokenId, CommandError> {
        let name = &parse(Name::parse(&input.name))?;
        let token_id = input.token_id.unwrap_or_else(|| TokenId::from_uuid(Uuid::now_v7()));
        let now = chrono::Utc::now();
        let input_ref = &input;
        self.execute(ctx, "createToken", &input, move || {
            Box::pin(async move {
                let org_id = match input_ref.subject {
                    TokenSubject::User { user_id } => {
                        self.load::<User>(user_id).await?.state.ensure_exists(user_id)?;
                        None
                    }
                    TokenSubject::Org { org_id, .. } => {
                        self.load::<Org>(org_id).await?.state.ensure_active(org_id)?;
                        Some(org_id)
                    }
                };
                let token = self.load::<ApiToken>(token_id).await?;
                let events = token.state.create(
                    token_id,
                    input_ref.subject,
                    name.clone(),
                    input_ref.hash.clone(),
                    input_ref.expires_at,
                    now,
                )?;
                Ok(Decision::new(token_id, org_id).with(&token, events))
            })
        })
        .await
    }

    /// Revokes an API token.
    pub async fn revoke_token(&self, ctx: &CommandContext, input: RevokeToken) -> Result<TokenId, CommandError> {
        let token_id = input.token_id;
        self.execute(ctx, "revokeToken", &input, move || {
            Box::pin(async move {
                let token = self.load::<ApiToken>(token_id).await?;
                let org_id = match token.state.subject {
                    Some(TokenSubject::Org { org_id, .. }) => Some(org_id),
                    _ => None,
                };
                let events = token.state.revoke(token_id)?;
                Ok(Decision::new(token_id, org_id).with(&token, events))
            })
        })
        .await
    }

    /// Renames an org.
    pub async fn rename_org(&self, ctx: &CommandContext, input: RenameOrg) -> Result<OrgId, CommandError> {
        let name = parse(Name::parse(&input.name))?;
        let org_id = input.org_id;
        let name = &name;
        self.execute(ctx, "renameOrg", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let events = org.state.rename(org_id, name.clone())?;
                Ok(Decision::new(org_id, Some(org_id)).with(&org, events))
            })
        })
        .await
    }

    /// Deletes an org and frees its slug.
    pub async fn delete_org(&self, ctx: &CommandContext, input: DeleteOrg) -> Result<OrgId, CommandError> {
        let org_id = input.org_id;
        self.execute(ctx, "deleteOrg", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let deleted = org.state.delete(org_id)?;
                let mut decision = Decision::new(org_id, Some(org_id)).with(&org, deleted);
                if let Some(slug) = org.state.slug() {
                    let claim = self.load::<SlugClaim>(slug).await?;
                    let released = claim.state.release(org_id);
                    decision = decision.with(&claim, released);
                }
                Ok(decision)
            })
        })
        .await
    }

    /// Adds a repo to an org.
    pub async fn add_repo(&self, ctx: &CommandContext, input: AddRepo) -> Result<RepoId, CommandError> {
        let settings = RepoSettings {
            name: parse(Name::parse(&input.name))?,
            git_url: parse(GitUrl::parse(&input.git_url))?,
            main_branch: parse(RefName::parse(input.main_branch.as_deref().unwrap_or("main")))?,
            labels: parse(Labels::parse(input.labels.clone()))?,
        };
        let org_id = input.org_id;
        let repo_id = RepoId::from_uuid(Uuid::now_v7());
        let settings = &settings;
        self.execute(ctx, "addRepo", &input, move || {
            Box::pin(async move {
                let org = self.load::<Org>(org_id).await?;
                let repo = self.load::<Repo>(repo_id).await?;
                let events = repo.state.add(repo_id, org_id, &org.state, settings.clone())?;
                Ok(Decision::new(repo_id, Some(org_id)).with(&repo, events))
            })
        })
        .await
    }

    /// Changes a repo's settings.
    pub async fn update_repo(&self, ctx: &CommandContext, input: UpdateRepo) -> Result<RepoId, CommandError> {
        let changes = RepoChanges {
            name: parse_opt(input.name.as_deref(), Name::parse)?,
            git_url: parse_opt(input.git_url.as_deref(), GitUrl::parse)?,
            main_branch: parse_opt(input.main_branch.as_deref(), RefName::parse)?,
            labels: input
                .labels
                .clone()
                .map(Labels::parse)
                .transpose()
                .map_err(DomainError::from)?,
        };
        let repo_id = input.repo_id;
        let changes = &changes;
        self.execute(ctx, "updateRepo", &input, move || {
            Box::pin(async move {
                let (repo, org) = self.load_repo_and_org(repo_id).await?;
                let events = repo.state.update(repo_id, &org.state, changes.clone())?;
                Ok(Decision::new(repo_id, repo.state.org_id).with(&repo, events))
            })
        })
        .await
    }

    /// Archives a repo.
    pub async fn archive_repo(&self, ctx: &CommandContext, input: ArchiveRepo) -> Result<RepoId, CommandError> {
        let repo_id = input.repo_id;
        self.execute(ctx, "archiveRepo", &input, move || {
            Box::pin(async move {
                let repo = self.load::<Repo>(repo_id).await?;
                let events = repo.state.archive(repo_id)?;
                Ok(Decision::new(repo_id, repo.state.org_id).with(&repo, events))
            })
        })
        .await
    }

    pub(crate) async fn load_repo_and_org(&self, repo_id: RepoId) -> Result<(Loaded<Repo>, Loaded<Org>), CommandError> {
        let repo = self.load::<Repo>(repo_id).await?;
        let org_id = repo.state.org_id.ok_or_else(|| DomainError::NotFound {
            kind: "repo",
            id: repo_id.to_string(),
        })?;
        let org = self.load::<Org>(org_id).await?;
        Ok((repo, org))
    }

    /// Queues a build of a repo.
    pub async fn trigger_build(&self, ctx: &CommandContext, input: TriggerBuild) -> Result<BuildId, CommandError> {
        let git_ref = match (input.branch.as_deref(), input.tag.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(DomainError::Invalid(monkeyci_domain::ValidationError {
                    field: "ref",
                    reason: "give a branch or a tag, not both".into(),
                })
                .into())
            }
            (Some(branch), None) => Some(GitRef::Branch(parse(RefName::parse(branch))?)),
            (None, Some(tag)) => Some(GitRef::Tag(parse(RefName::parse(tag))?)),
            (None, None) => None,
        };
        let request = TriggerRequest {
            source: input.source,
            git_ref,
            commit: parse_opt(input.commit.as_deref(), CommitSha::parse)?,
            params: parse(Params::parse(input.params.clone()))?,
            push: input.push.clone(),
        };
        let repo_id = input.repo_id;
        let build_id = BuildId::from_uuid(Uuid::now_v7());
        let request = &request;
        self.execute(ctx, "triggerBuild", &input, move || {
            Box::pin(async move {
                let (repo, org) = self.load_repo_and_org(repo_id).await?;
                let build = self.load::<Build>(build_id).await?;
                let events = build
                    .state
                    .trigger(build_id, repo_id, &repo.state, &org.state, request.clone())?;
                Ok(Decision::new(build_id, repo.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Cancels a queued or running build.
    pub async fn cancel_build(&self, ctx: &CommandContext, input: CancelBuild) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        self.execute(ctx, "cancelBuild", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build.state.cancel(build_id)?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Queues a new build with the trigger of a finished one; returns the new build's id.
    pub async fn retry_build(&self, ctx: &CommandContext, input: RetryBuild) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let new_id = BuildId::from_uuid(Uuid::now_v7());
        self.execute(ctx, "retryBuild", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let repo_id = build.state.repo_id.ok_or_else(|| DomainError::NotFound {
                    kind: "build",
                    id: build_id.to_string(),
                })?;
                let (repo, org) = self.load_repo_and_org(repo_id).await?;
                let new_build = self.load::<Build>(new_id).await?;
                let (old_events, new_events) =
                    build
                        .state
                        .retry(build_id, new_id, &new_build.state, &repo.state, &org.state)?;
                Ok(Decision::new(new_id, build.state.org_id)
                    .with(&build, old_events)
                    .with(&new_build, new_events))
            })
        })
        .await
    }

    /// A runner takes a queued build.
    pub async fn start_build(&self, ctx: &CommandContext, input: StartBuild) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let runner = &input.runner;
        self.execute(ctx, "startBuild", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build.state.start(build_id, runner.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Records the commit a runner checked out for a running build.
    pub async fn record_checkout(&self, ctx: &CommandContext, input: RecordCheckout) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let commit = &parse(CommitSha::parse(&input.commit))?;
        self.execute(ctx, "recordCheckout", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build.state.record_checkout(build_id, commit.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Adds a pipeline job to a running build.
    pub async fn queue_job(&self, ctx: &CommandContext, input: QueueJob) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let job_id = parse(JobId::parse(&input.job_id))?;
        let dependencies = input
            .dependencies
            .iter()
            .map(|d| parse(JobId::parse(d)))
            .collect::<Result<Vec<_>, _>>()?;
        let (job_id, dependencies) = (&job_id, &dependencies);
        self.execute(ctx, "queueJob", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build.state.queue_job(build_id, job_id.clone(), dependencies.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Moves a job of a running build on (start, succeed, fail, skip, cancel, block, unblock).
    pub async fn transition_job(&self, ctx: &CommandContext, input: TransitionJob) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let job_id = parse(JobId::parse(&input.job_id))?;
        let transition = match &input.transition {
            JobTransitionInput::Blocked => JobTransition::Block,
            JobTransitionInput::Unblocked => JobTransition::Unblock,
            JobTransitionInput::Started => JobTransition::Start,
            JobTransitionInput::Succeeded => JobTransition::Succeed,
            JobTransitionInput::Failed { message } => JobTransition::Fail {
                message: message.clone(),
            },
            JobTransitionInput::Skipped { reason } => JobTransition::Skip { reason: reason.clone() },
            JobTransitionInput::Canceled => JobTransition::Cancel,
        };
        let (job_id, transition) = (&job_id, &transition);
        self.execute(ctx, "transitionJob", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build
                    .state
                    .transition_job(build_id, job_id.clone(), transition.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Records an artifact saved by a running job.
    pub async fn save_artifact(&self, ctx: &CommandContext, input: SaveArtifact) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let job_id = &parse(JobId::parse(&input.job_id))?;
        let artifact_id = &parse(ArtifactId::parse(&input.artifact_id))?;
        let blob = &input.blob;
        self.execute(ctx, "saveArtifact", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build
                    .state
                    .save_artifact(build_id, job_id.clone(), artifact_id.clone(), blob.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Records where an ended job's log was archived.
    pub async fn archive_job_log(&self, ctx: &CommandContext, input: ArchiveJobLog) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let job_id = &parse(JobId::parse(&input.job_id))?;
        let (blob, lines) = (&input.blob, input.lines);
        self.execute(ctx, "archiveJobLog", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build
                    .state
                    .archive_job_log(build_id, job_id.clone(), blob.clone(), lines)?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }

    /// Ends a build.
    pub async fn finish_build(&self, ctx: &CommandContext, input: FinishBuild) -> Result<BuildId, CommandError> {
        let build_id = input.build_id;
        let (outcome, message) = (input.outcome, &input.message);
        self.execute(ctx, "finishBuild", &input, move || {
            Box::pin(async move {
                let build = self.load::<Build>(build_id).await?;
                let events = build.state.finish(build_id, outcome, message.clone())?;
                Ok(Decision::new(build_id, build.state.org_id).with(&build, events))
            })
        })
        .await
    }
}

fn fingerprint(command: &str, input: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(command.as_bytes());
    hasher.update([0]);
    // Inputs are plain data with ordered maps, so their JSON form is canonical.
    hasher.update(serde_json::to_vec(input).unwrap_or_default());
    hex::encode(hasher.finalize())
}

fn stored_result<T: FromStr>(found: IdempotencyClaim, command: &str, fingerprint: &str) -> Result<T, CommandError> {
    if found.command != command || found.fingerprint != fingerprint {
        return Err(CommandError::IdempotencyKeyReused {
            key: found.key,
            command: found.command,
        });
    }
    parse_result(&found.result_id, command, found.key)
}

fn parse_result<T: FromStr>(result_id: &str, command: &str, key: String) -> Result<T, CommandError> {
    result_id.parse().map_err(|_| CommandError::IdempotencyKeyReused {
        key,
        command: command.to_owned(),
    })
}
