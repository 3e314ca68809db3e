use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use monkeyci_commands::{
    AddMember, AddRepo, ArchiveRepo, CancelBuild, ChangeMemberRole, CommandContext, CommandError, CreateOrg,
    CreateToken, CreateUser, DeleteOrg, JobTransitionInput, RemoveMember, RenameOrg, RetryBuild, RevokeToken,
    TransitionJob, TriggerBuild, UpdateRepo,
};
use monkeyci_crypto::Token;
use monkeyci_domain::access::{Role, TokenSubject};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::{BuildId, OrgId, RepoId, TokenId, UserId};
use monkeyci_projections::queries;

use super::{api, caller, consistent, projection_error};
use crate::auth::{require, require_admin, Grant};
use crate::errors::{self, Code};
use crate::ids::{self, Kind};

/// Writes. Each returns only the id of what it created or changed; its effects are visible to
/// every query sent after it returned, and arrive on subscriptions.
#[derive(Debug, Default)]
pub struct CoreMutation;

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

pub(crate) fn context(ctx: &Context<'_>, idempotency_key: Option<String>) -> Result<CommandContext> {
    let mut command = CommandContext::new(caller(ctx)?.actor);
    command.idempotency_key = idempotency_key;
    Ok(command)
}

/// Counts the command and maps its outcome to the returned id or a client error.
pub(crate) fn finish<T>(
    ctx: &Context<'_>,
    name: &str,
    result: Result<T, CommandError>,
    id: impl FnOnce(T) -> ID,
) -> Result<ID> {
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

/// Says why a repo's source and labels need the owner role when a smaller role is refused.
fn decides_secrets(mut error: async_graphql::Error) -> async_graphql::Error {
    let forbidden = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some_and(|code| *code == async_graphql::Value::from("FORBIDDEN"));
    if forbidden {
        error
            .message
            .push_str(": a repo's git URL, main branch and labels decide which of the org's secrets its builds get");
    }
    error
}

/// What a mutation changes, to find the org whose role it needs.
pub(crate) enum Target {
    Org(uuid::Uuid),
    Repo(uuid::Uuid),
    Build(uuid::Uuid),
}

/// Fails unless the caller has at least `needed` in the org of `target`: `NOT_FOUND` without
/// a role there (as if it did not exist), `FORBIDDEN` with too small a role. The admin skips
/// the lookup.
pub(crate) async fn allow(ctx: &Context<'_>, target: Target, needed: Role) -> Result<()> {
    let who = caller(ctx)?;
    match (&who.grant, &target) {
        (Grant::Admin, _) => return Ok(()),
        // An org token's role in an org needs no read model.
        (Grant::Org { .. }, Target::Org(id)) => return require(ctx, *id, needed, "org").await,
        _ => {}
    }
    // The target may have been created by a mutation that just returned.
    let api = consistent(ctx).await?;
    let (org, what) = match target {
        Target::Org(id) => (Some(id), "org"),
        Target::Repo(id) => (
            queries::repo(&api.read, id)
                .await
                .map_err(projection_error)?
                .map(|r| r.org_id),
            "repo",
        ),
        Target::Build(id) => (
            queries::build(&api.read, id)
                .await
                .map_err(projection_error)?
                .map(|b| b.org_id),
            "build",
        ),
    };
    match org {
        Some(org) => require(ctx, org, needed, what).await,
        None => Err(errors::not_found(what)),
    }
}

#[derive(InputObject, Debug)]
pub struct CreateUserInput {
    pub name: String,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct MemberInput {
    pub org_id: ID,
    pub user_id: ID,
    /// `owner`, `member` or `viewer` (ignored by `removeMember`).
    pub role: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct CreateApiTokenInput {
    /// What the token is for, e.g. "terraform".
    pub name: String,
    /// An org token (for automation): acts in this org only, with `role`.
    pub org_id: Option<ID>,
    /// The org token's role: `owner`, `member` or `viewer`.
    pub role: Option<String>,
    /// A user token for this user (the admin only); without `orgId` and `userId`, a token of
    /// the calling user.
    pub user_id: Option<ID>,
    /// Days until the token expires, 1 to 3650; 90 if omitted.
    pub expires_in_days: Option<i32>,
}

#[derive(InputObject, Debug)]
pub struct RevokeApiTokenInput {
    pub id: ID,
    pub idempotency_key: Option<String>,
}

/// A new API token: the secret is shown here once and stored nowhere.
#[derive(SimpleObject, Debug)]
pub struct CreatedApiToken {
    pub id: ID,
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[Object]
impl CoreMutation {
    /// Creates an org; returns its id.
    async fn create_org(&self, ctx: &Context<'_>, input: CreateOrgInput) -> Result<ID> {
        let command = CreateOrg {
            name: input.name,
            slug: input.slug,
        };
        let commands = &api(ctx).commands;
        let command_ctx = context(ctx, input.idempotency_key)?;
        let result = match caller(ctx)?.grant {
            Grant::Admin => commands.create_org(&command_ctx, command).await,
            // The user who creates an org is its first owner.
            Grant::User(user) => {
                commands
                    .create_org_owned_by(&command_ctx, command, UserId::from_uuid(user))
                    .await
            }
            Grant::Org { .. } => return Err(errors::client(Code::Forbidden, "an org token cannot create orgs")),
        };
        finish(ctx, "createOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Renames an org.
    async fn rename_org(&self, ctx: &Context<'_>, input: RenameOrgInput) -> Result<ID> {
        let org_id = OrgId::from_uuid(ids::decode_as(&input.id, Kind::Org)?);
        allow(ctx, Target::Org(org_id.as_uuid()), Role::Owner).await?;
        let command = RenameOrg {
            org_id,
            name: input.name,
        };
        let result = api(ctx)
            .commands
            .rename_org(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "renameOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Deletes an org; its slug becomes free.
    async fn delete_org(&self, ctx: &Context<'_>, input: DeleteOrgInput) -> Result<ID> {
        let org_id = OrgId::from_uuid(ids::decode_as(&input.id, Kind::Org)?);
        allow(ctx, Target::Org(org_id.as_uuid()), Role::Owner).await?;
        let result = api(ctx)
            .commands
            .delete_org(&context(ctx, input.idempotency_key)?, DeleteOrg { org_id })
            .await;
        finish(ctx, "deleteOrg", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Adds a repo to an org; returns its id. Needs `owner`: where a repo's code comes from and
    /// its labels decide which of the org's secrets its builds get.
    async fn create_repo(&self, ctx: &Context<'_>, input: CreateRepoInput) -> Result<ID> {
        let org_id = ids::decode_as(&input.org_id, Kind::Org)?;
        allow(ctx, Target::Org(org_id), Role::Owner)
            .await
            .map_err(decides_secrets)?;
        let command = AddRepo {
            org_id: OrgId::from_uuid(org_id),
            name: input.name,
            git_url: input.git_url,
            main_branch: input.main_branch,
            labels: pairs(input.labels)?,
        };
        let result = api(ctx)
            .commands
            .add_repo(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "createRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Changes a repo's settings; omitted fields keep their values. Renaming needs `member`;
    /// the git URL, main branch and labels decide which secrets its builds get and need `owner`.
    async fn update_repo(&self, ctx: &Context<'_>, input: UpdateRepoInput) -> Result<ID> {
        let repo_id = ids::decode_as(&input.id, Kind::Repo)?;
        let decides = input.git_url.is_some() || input.main_branch.is_some() || input.labels.is_some();
        if decides {
            allow(ctx, Target::Repo(repo_id), Role::Owner)
                .await
                .map_err(decides_secrets)?;
        } else {
            allow(ctx, Target::Repo(repo_id), Role::Member).await?;
        }
        let command = UpdateRepo {
            repo_id: RepoId::from_uuid(repo_id),
            name: input.name,
            git_url: input.git_url,
            main_branch: input.main_branch,
            labels: input.labels.map(|l| pairs(Some(l))).transpose()?,
        };
        let result = api(ctx)
            .commands
            .update_repo(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "updateRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Archives a repo: it keeps its history and takes no more builds.
    async fn archive_repo(&self, ctx: &Context<'_>, input: ArchiveRepoInput) -> Result<ID> {
        let repo_id = RepoId::from_uuid(ids::decode_as(&input.id, Kind::Repo)?);
        allow(ctx, Target::Repo(repo_id.as_uuid()), Role::Member).await?;
        let result = api(ctx)
            .commands
            .archive_repo(&context(ctx, input.idempotency_key)?, ArchiveRepo { repo_id })
            .await;
        finish(ctx, "archiveRepo", result, |id| ids::encode(Kind::Repo, id.as_uuid()))
    }

    /// Queues a build; returns its id. Follow it with the `buildUpdated` subscription.
    async fn trigger_build(&self, ctx: &Context<'_>, input: TriggerBuildInput) -> Result<ID> {
        let repo_id = ids::decode_as(&input.repo_id, Kind::Repo)?;
        allow(ctx, Target::Repo(repo_id), Role::Member).await?;
        let command = TriggerBuild {
            repo_id: RepoId::from_uuid(repo_id),
            source: TriggerSource::Api,
            branch: input.branch,
            tag: input.tag,
            commit: input.commit,
            params: pairs(input.params)?,
            push: None,
        };
        let result = api(ctx)
            .commands
            .trigger_build(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "triggerBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Cancels a queued or running build.
    async fn cancel_build(&self, ctx: &Context<'_>, input: BuildInput) -> Result<ID> {
        let build_id = BuildId::from_uuid(ids::decode_as(&input.id, Kind::Build)?);
        allow(ctx, Target::Build(build_id.as_uuid()), Role::Member).await?;
        let result = api(ctx)
            .commands
            .cancel_build(&context(ctx, input.idempotency_key)?, CancelBuild { build_id })
            .await;
        finish(ctx, "cancelBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Queues a new build with the trigger of a finished one; returns the new build's id.
    async fn retry_build(&self, ctx: &Context<'_>, input: BuildInput) -> Result<ID> {
        let build_id = BuildId::from_uuid(ids::decode_as(&input.id, Kind::Build)?);
        allow(ctx, Target::Build(build_id.as_uuid()), Role::Member).await?;
        let result = api(ctx)
            .commands
            .retry_build(&context(ctx, input.idempotency_key)?, RetryBuild { build_id })
            .await;
        finish(ctx, "retryBuild", result, |id| ids::encode(Kind::Build, id.as_uuid()))
    }

    /// Approves a job that waits for manual approval; returns the job's id.
    async fn unblock_job(&self, ctx: &Context<'_>, input: UnblockJobInput) -> Result<ID> {
        let (build, job_id) = ids::decode_job(&input.id)?;
        allow(ctx, Target::Build(build), Role::Member).await?;
        let command = TransitionJob {
            build_id: BuildId::from_uuid(build),
            job_id: job_id.clone(),
            transition: JobTransitionInput::Unblocked,
        };
        let result = api(ctx)
            .commands
            .transition_job(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "unblockJob", result, |_| ids::encode_job(build, &job_id))
    }

    /// Creates a user (the admin only); returns its id.
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<ID> {
        require_admin(ctx)?;
        let result = api(ctx)
            .commands
            .create_user(&context(ctx, input.idempotency_key)?, CreateUser { name: input.name })
            .await;
        finish(ctx, "createUser", result, |id| ids::encode(Kind::User, id.as_uuid()))
    }

    /// Adds a user to an org with a role (owners only); returns the org's id.
    async fn add_member(&self, ctx: &Context<'_>, input: MemberInput) -> Result<ID> {
        let (org_id, user_id) = member_ids(&input)?;
        allow(ctx, Target::Org(org_id.as_uuid()), Role::Owner).await?;
        let command = AddMember {
            org_id,
            user_id,
            role: input
                .role
                .ok_or_else(|| errors::bad_input("give the member's `role`"))?,
        };
        let result = api(ctx)
            .commands
            .add_member(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "addMember", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Gives a member another role (owners only); an org keeps at least one owner.
    async fn change_member_role(&self, ctx: &Context<'_>, input: MemberInput) -> Result<ID> {
        let (org_id, user_id) = member_ids(&input)?;
        allow(ctx, Target::Org(org_id.as_uuid()), Role::Owner).await?;
        let command = ChangeMemberRole {
            org_id,
            user_id,
            role: input
                .role
                .ok_or_else(|| errors::bad_input("give the member's new `role`"))?,
        };
        let result = api(ctx)
            .commands
            .change_member_role(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "changeMemberRole", result, |id| {
            ids::encode(Kind::Org, id.as_uuid())
        })
    }

    /// Removes a user from an org (owners only); an org keeps at least one owner.
    async fn remove_member(&self, ctx: &Context<'_>, input: MemberInput) -> Result<ID> {
        let (org_id, user_id) = member_ids(&input)?;
        allow(ctx, Target::Org(org_id.as_uuid()), Role::Owner).await?;
        let result = api(ctx)
            .commands
            .remove_member(&context(ctx, input.idempotency_key)?, RemoveMember { org_id, user_id })
            .await;
        finish(ctx, "removeMember", result, |id| ids::encode(Kind::Org, id.as_uuid()))
    }

    /// Issues an API token. The secret is in the answer and nowhere else: only its SHA-256 is
    /// stored, so it cannot be shown again. Org tokens need the org's owner; user tokens are for
    /// the calling user (the admin may issue one for any user).
    async fn create_api_token(&self, ctx: &Context<'_>, input: CreateApiTokenInput) -> Result<CreatedApiToken> {
        let days = input.expires_in_days.unwrap_or(90);
        if !(1..=3650).contains(&days) {
            return Err(errors::bad_input("`expiresInDays` must be between 1 and 3650"));
        }
        let who = caller(ctx)?;
        let subject = match (&input.org_id, &input.user_id) {
            (Some(org), None) => {
                let org_id = ids::decode_as(org, Kind::Org)?;
                allow(ctx, Target::Org(org_id), Role::Owner).await?;
                let role = input
                    .role
                    .as_deref()
                    .ok_or_else(|| errors::bad_input("give the org token's `role`"))?;
                TokenSubject::Org {
                    org_id: OrgId::from_uuid(org_id),
                    role: Role::parse(role).map_err(|e| errors::bad_input(e.to_string()))?,
                }
            }
            (None, Some(user)) => {
                require_admin(ctx)?;
                TokenSubject::User {
                    user_id: UserId::from_uuid(ids::decode_as(user, Kind::User)?),
                }
            }
            (None, None) => match who.grant {
                Grant::User(user) => TokenSubject::User {
                    user_id: UserId::from_uuid(user),
                },
                _ => {
                    return Err(errors::bad_input(
                        "only a user has user tokens: give `orgId` (an org token) or, as the admin, `userId`",
                    ))
                }
            },
            (Some(_), Some(_)) => return Err(errors::bad_input("give `orgId` or `userId`, not both")),
        };
        let token_id = TokenId::from_uuid(uuid::Uuid::now_v7());
        let (token, hash) = Token::generate_with_id(crate::auth::TOKEN_PREFIX, token_id.as_uuid().into_bytes())
            .map_err(|e| errors::internal(&e))?;
        let expires_at = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
        let command = CreateToken {
            token_id: Some(token_id),
            name: input.name,
            subject,
            hash: hash.as_str().to_owned(),
            expires_at,
        };
        let result = api(ctx).commands.create_token(&context(ctx, None)?, command).await;
        let id = finish(ctx, "createApiToken", result, |id| {
            ids::encode(Kind::Token, id.as_uuid())
        })?;
        Ok(CreatedApiToken {
            id,
            token: token.expose().to_owned(),
            expires_at,
        })
    }

    /// Revokes an API token: org tokens by the org's owners, user tokens by their user (and the
    /// admin); returns its id.
    async fn revoke_api_token(&self, ctx: &Context<'_>, input: RevokeApiTokenInput) -> Result<ID> {
        let token_id = ids::decode_as(&input.id, Kind::Token)?;
        let who = caller(ctx)?;
        if who.grant != Grant::Admin {
            let api = consistent(ctx).await?;
            let row = queries::api_token(&api.read, token_id)
                .await
                .map_err(|e| errors::internal(&e))?
                .map(|t| (t.user_id, t.org_id));
            match (row, &who.grant) {
                (Some((_, Some(org))), _) => require(ctx, org, Role::Owner, "token").await?,
                (Some((Some(user), _)), Grant::User(me)) if user == *me => {}
                _ => return Err(errors::not_found("token")),
            }
        }
        let command = RevokeToken {
            token_id: TokenId::from_uuid(token_id),
        };
        let result = api(ctx)
            .commands
            .revoke_token(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "revokeApiToken", result, |id| {
            ids::encode(Kind::Token, id.as_uuid())
        })
    }
}

fn member_ids(input: &MemberInput) -> Result<(OrgId, UserId)> {
    Ok((
        OrgId::from_uuid(ids::decode_as(&input.org_id, Kind::Org)?),
        UserId::from_uuid(ids::decode_as(&input.user_id, Kind::User)?),
    ))
}
