use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result, ID};
use monkeyci_domain::access::Role;
use monkeyci_projections::queries;

use super::audit::AsOf;
use super::secrets::{ParamSet, SshKey};
use super::triggers::{Schedule, Webhook};
use super::types::{connection, ApiToken, Build, Job, Node, Org, Repo};
use super::{caller, consistent, page_args, projection_error};
use crate::auth::{can_read, role_in, Grant};
use crate::errors::bad_input;
use crate::ids::{self, Decoded, Kind};

/// Reads. Every query sees the effect of every mutation that returned before it was sent.
#[derive(Debug, Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// Any object by its global id: an org, repo, build, job, webhook, schedule, parameter set or
    /// ssh key (any role in its org reads it), or an API token (the admin, the owners of an org
    /// token's org, or a user token's own user). `null` if it does not exist, was deleted, or the
    /// caller may not read it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let api = consistent(ctx).await?;
        let read = &api.read;
        let found = match ids::decode(&id)? {
            Decoded::Org(u) => queries::org(read, u)
                .await
                .map_err(projection_error)?
                .map(|r| (r.id, Node::Org(Org(r)))),
            Decoded::Repo(u) => queries::repo(read, u)
                .await
                .map_err(projection_error)?
                .map(|r| (r.org_id, Node::Repo(Repo(r)))),
            Decoded::Build(u) => queries::build(read, u)
                .await
                .map_err(projection_error)?
                .map(|r| (r.org_id, Node::Build(Build::new(r)))),
            Decoded::Webhook(u) => queries::webhook(read, u)
                .await
                .map_err(projection_error)?
                .filter(|w| !w.deleted)
                .map(|w| (w.org_id, Node::Webhook(Webhook(w)))),
            Decoded::Schedule(u) => queries::schedule(read, u)
                .await
                .map_err(projection_error)?
                .filter(|s| !s.deleted)
                .map(|s| (s.org_id, Node::Schedule(Schedule(s)))),
            Decoded::ParamSet(u) => queries::param_set(read, u)
                .await
                .map_err(projection_error)?
                .filter(|p| !p.deleted)
                .map(|p| (p.org_id, Node::ParamSet(ParamSet(p)))),
            Decoded::SshKey(u) => queries::ssh_key(read, u)
                .await
                .map_err(projection_error)?
                .filter(|k| !k.deleted)
                .map(|k| (k.org_id, Node::SshKey(SshKey(k)))),
            // Tokens are not visible to everyone in their org: see `token_node`.
            Decoded::Token(u) => return token_node(ctx, u).await,
            // Users are not nodes one can read.
            Decoded::User(_) => None,
            Decoded::Job(b, j) => match build_org(ctx, b).await? {
                Some(org) => queries::job(read, b, &j)
                    .await
                    .map_err(projection_error)?
                    .map(|r| (org, Node::Job(Job(r)))),
                None => None,
            },
        };
        visible(ctx, found).await
    }

    /// Orgs, oldest first.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn orgs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Org>> {
        let (limit, after_id) = page_args(first, after.as_deref())?;
        let api = consistent(ctx).await?;
        let page = match caller(ctx)?.grant {
            Grant::Admin => queries::orgs(&api.read, after_id, limit).await,
            Grant::User(user) => queries::orgs_of_member(&api.read, user, after_id, limit).await,
            Grant::Org { org_id, .. } => match after_id {
                Some(after) if after >= org_id => Ok(monkeyci_projections::queries::Page::of(Vec::new(), limit)),
                _ => queries::org(&api.read, org_id)
                    .await
                    .map(|o| monkeyci_projections::queries::Page::of(o.into_iter().collect(), limit)),
            },
        }
        .map_err(projection_error)?;
        Ok(connection(page, after_id.is_some(), |o| o.id, Org))
    }

    /// One org, by id or by slug (give exactly one).
    async fn org(&self, ctx: &Context<'_>, id: Option<ID>, slug: Option<String>) -> Result<Option<Org>> {
        let api = consistent(ctx).await?;
        let row = match (id, slug) {
            (Some(id), None) => queries::org(&api.read, ids::decode_as(&id, Kind::Org)?).await,
            (None, Some(slug)) => queries::org_by_slug(&api.read, &slug).await,
            _ => return Err(bad_input("give either `id` or `slug`")),
        };
        let row = row.map_err(projection_error)?;
        visible(ctx, row.map(|r| (r.id, Org(r)))).await
    }

    /// One repo.
    async fn repo(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Repo>> {
        let uuid = ids::decode_as(&id, Kind::Repo)?;
        let api = consistent(ctx).await?;
        let row = queries::repo(&api.read, uuid).await.map_err(projection_error)?;
        visible(ctx, row.map(|r| (r.org_id, Repo(r)))).await
    }

    /// One build, with its jobs; with `asOf`, as it was at that moment (folded from its events
    /// up to then; `null` if it did not exist yet).
    async fn build(&self, ctx: &Context<'_>, id: ID, as_of: Option<AsOf>) -> Result<Option<Build>> {
        let uuid = ids::decode_as(&id, Kind::Build)?;
        if let Some(as_of) = as_of {
            return super::audit::build_as_of(ctx, uuid, as_of).await;
        }
        let api = consistent(ctx).await?;
        let row = queries::build(&api.read, uuid).await.map_err(projection_error)?;
        visible(ctx, row.map(|r| (r.org_id, Build::new(r)))).await
    }

    /// One job.
    async fn job(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Job>> {
        let (build, job) = ids::decode_job(&id)?;
        let api = consistent(ctx).await?;
        let Some(org) = build_org(ctx, build).await? else {
            return Ok(None);
        };
        let row = queries::job(&api.read, build, &job).await.map_err(projection_error)?;
        visible(ctx, row.map(|r| (org, Job(r)))).await
    }
}

/// `found` if the caller may read its org; `None` (as if it did not exist) otherwise.
async fn visible<T>(ctx: &Context<'_>, found: Option<(uuid::Uuid, T)>) -> Result<Option<T>> {
    match found {
        Some((org, value)) if can_read(ctx, org).await? => Ok(Some(value)),
        _ => Ok(None),
    }
}

/// An API token, revoked or not, for the admin, the owners of an org token's org and the user of
/// a user token; `None` (as if it did not exist) for everyone else.
async fn token_node(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Option<Node>> {
    let api = super::api(ctx);
    let Some(row) = queries::api_token(&api.read, id).await.map_err(projection_error)? else {
        return Ok(None);
    };
    let who = caller(ctx)?;
    let allowed = match (&who.grant, row.kind.as_str(), row.org_id, row.user_id) {
        (Grant::Admin, _, _, _) => true,
        (_, "org", Some(org), _) => role_in(api, &who, org)
            .await?
            .is_some_and(|role| role.allows(Role::Owner)),
        (Grant::User(me), "user", _, Some(user)) => *me == user,
        _ => false,
    };
    Ok(allowed.then_some(Node::ApiToken(ApiToken(row))))
}

/// The org of a build, if the build exists.
async fn build_org(ctx: &Context<'_>, build: uuid::Uuid) -> Result<Option<uuid::Uuid>> {
    let row = queries::build(&super::api(ctx).read, build)
        .await
        .map_err(projection_error)?;
    Ok(row.map(|b| b.org_id))
}
