use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Object, Result, ID};
use monkeyci_commands::{
    AddRepo, ArchiveRepo, CancelBuild, CommandContext, CommandError, CreateOrg, DeleteOrg, JobTransitionInput,
    RenameOrg, RetryBuild, TransitionJob, TriggerBuild, UpdateRepo,
};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::{BuildId, OrgId, RepoId};

use super::{api, caller};
use crate::errors;
use crate::ids::{self, Kind};

/// Writes. Each returns only the id of what it created or changed; its effects are visible to
/// every query sent after it returned, and arrive on subscriptions.
#[derive(Debug, Default)]
pub struct MutationRoot;

/// A `name = value` pair.
#[derive(InputObject, Debug, Clone)]
pub struct PairInput {
    pub name: String,
    pub value: String,
}

fn pairs(input: Option<Vec<PairInput>>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in input.unwrap_or_default() {
        if map.insert(pair.name.clone(), pair.value).is_some() {
            return Err(errors::bad_input(format!("{:?} is given twice", pair.name)));
        }
    }
    Ok(map)
}

#[derive(InputObject, Debug)]
pub struct CreateOrgInput {
    pub name: String,
    /// Lower-case letters, digits and '-', 2 to 63 characters; unique among orgs.
    pub slug: String,
    /// Sending the same key and input again returns the same id and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct RenameOrgInput {
    pub id: ID,
    pub name: String,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct DeleteOrgInput {
    pub id: ID,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct CreateRepoInput {
    pub org_id: ID,
    pub name: String,
    pub git_url: String,
    /// Defaults to `main`.
    pub main_branch: Option<String>,
    pub labels: Option<Vec<PairInput>>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct UpdateRepoInput {
    pub id: ID,
    pub name: Option<String>,
    pub git_url: Option<String>,
    pub main_branch: Option<String>,
    /// Replaces all labels when given.
    pub labels: Option<Vec<PairInput>>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct ArchiveRepoInput {
    pub id: ID,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct TriggerBuildInput {
    pub repo_id: ID,
    /// Build this branch. Give at most one of `branch` and `tag`; neither means the main branch.
    pub branch: Option<String>,
    /// Build this tag.
    pub tag: Option<String>,
    /// Build this commit (of the branch or tag).
    pub commit: Option<String>,
    /// Build parameters; they become environment variables of the jobs.
    pub params: Option<Vec<PairInput>>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct BuildInput {
    pub id: ID,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct UnblockJobInput {
    /// The job's global id.
    pub id: ID,
    pub idempotency_key: Option<String>,
}

fn context(ctx: &Context<'_>, idempotency_key: Option<String>) -> CommandContext {
    let mut command = CommandContext::new(caller(ctx).actor);
    command.idempotency_key = idempotency_key;
    command
}

/// Counts the command and maps its outcome to the returned id or a client error.
fn finish<T>(ctx: &Context<'_>, name: &str, result: Result<T, CommandError>, id: impl FnOnce(T) -> ID) -> Result<ID> {
    let metrics = &api(ctx).metrics;
    match result {
        Ok(value) => {
            metrics.command(name, "ok");
            Ok(id(value))
        }
        Err(error) => {
            metrics.command(name, errors::command_code(&error).label());
            Err(errors::command(error))
        }
    }
}

#[Object]
impl MutationRoot {
    /// Creates an org; returns its id.
    async fn create_org(&self, ctx: &Context<'_>, input: CreateOrgInput) -> Result<ID> {
        let command = CreateOrg {
            name: input.name,
            slug: input.slug,
        };
        let result = api(ctx)
            .commands
            .create_org(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "createOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Renames an org.
    async fn rename_org(&self, ctx: &Context<'_>, input: RenameOrgInput) -> Result<ID> {
        let org_id = OrgId::from_uuid(ids::decode_as(&input.id, Kind::Org)?);
        let command = RenameOrg {
            org_id,
            name: input.name,
        };
        let result = api(ctx)
            .commands
            .rename_org(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "renameOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Deletes an org; its slug becomes free.
    async fn delete_org(&self, ctx: &Context<'_>, input: DeleteOrgInput) -> Result<ID> {
        let org_id = OrgId::from_uuid(ids::decode_as(&input.id, Kind::Org)?);
        let result = api(ctx)
            .commands
            .delete_org(&context(ctx, input.idempotency_key), DeleteOrg { org_id })
            .await;
        finish(ctx, "deleteOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Adds a repo to an org; returns its id.
    async fn create_repo(&self, ctx: &Context<'_>, input: CreateRepoInput) -> Result<ID> {
        let command = AddRepo {
            org_id: OrgId::from_uuid(ids::decode_as(&input.org_id, Kind::Org)?),
            name: input.name,
            git_url: input.git_url,
            main_branch: input.main_branch,
            labels: pairs(input.labels)?,
        };
        let result = api(ctx)
            .commands
            .add_repo(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "createRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Changes a repo's settings; omitted fields keep their values.
    async fn update_repo(&self, ctx: &Context<'_>, input: UpdateRepoInput) -> Result<ID> {
        let command = UpdateRepo {
            repo_id: RepoId::from_uuid(ids::decode_as(&input.id, Kind::Repo)?),
            name: input.name,
            git_url: input.git_url,
            main_branch: input.main_branch,
            labels: input.labels.map(|l| pairs(Some(l))).transpose()?,
        };
        let result = api(ctx)
            .commands
            .update_repo(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "updateRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Archives a repo: it keeps its history and takes no more builds.
    async fn archive_repo(&self, ctx: &Context<'_>, input: ArchiveRepoInput) -> Result<ID> {
        let repo_id = RepoId::from_uuid(ids::decode_as(&input.id, Kind::Repo)?);
        let result = api(ctx)
            .commands
            .archive_repo(&context(ctx, input.idempotency_key), ArchiveRepo { repo_id })
            .await;
        finish(ctx, "archiveRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Queues a build; returns its id. Follow it with the `buildUpdated` subscription.
    async fn trigger_build(&self, ctx: &Context<'_>, input: TriggerBuildInput) -> Result<ID> {
        let command = TriggerBuild {
            repo_id: RepoId::from_uuid(ids::decode_as(&input.repo_id, Kind::Repo)?),
            source: TriggerSource::Api,
            branch: input.branch,
            tag: input.tag,
            commit: input.commit,
            params: pairs(input.params)?,
        };
        let result = api(ctx)
            .commands
            .trigger_build(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "triggerBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Cancels a queued or running build.
    async fn cancel_build(&self, ctx: &Context<'_>, input: BuildInput) -> Result<ID> {
        let build_id = BuildId::from_uuid(ids::decode_as(&input.id, Kind::Build)?);
        let result = api(ctx)
            .commands
            .cancel_build(&context(ctx, input.idempotency_key), CancelBuild { build_id })
            .await;
        finish(ctx, "cancelBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Queues a new build with the trigger of a finished one; returns the new build's id.
    async fn retry_build(&self, ctx: &Context<'_>, input: BuildInput) -> Result<ID> {
        let build_id = BuildId::from_uuid(ids::decode_as(&input.id, Kind::Build)?);
        let result = api(ctx)
            .commands
            .retry_build(&context(ctx, input.idempotency_key), RetryBuild { build_id })
            .await;
        finish(ctx, "retryBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Approves a job that waits for manual approval; returns the job's id.
    async fn unblock_job(&self, ctx: &Context<'_>, input: UnblockJobInput) -> Result<ID> {
        let (build, job_id) = ids::decode_job(&input.id)?;
        let command = TransitionJob {
            build_id: BuildId::from_uuid(build),
            job_id: job_id.clone(),
            transition: JobTransitionInput::Unblocked,
        };
        let result = api(ctx)
            .commands
            .transition_job(&context(ctx, input.idempotency_key), command)
            .await;
        finish(ctx, "unblockJob", result, |_| ids::encode_job(build, &job_id))
    }
}
