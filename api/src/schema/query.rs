use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result, ID};
use monkeyci_projections::queries;

use super::types::{connection, Build, Job, Node, Org, Repo};
use super::{consistent, page_args, projection_error};
use crate::errors::bad_input;
use crate::ids::{self, Decoded, Kind};

/// Reads. Every query sees the effect of every mutation that returned before it was sent.
#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Any object by its global id.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let api = consistent(ctx).await?;
        let pool = &api.pool;
        Ok(match ids::decode(&id)? {
            Decoded::Org(u) => queries::org(pool, u)
                .await
                .map_err(projection_error)?
                .map(|r| Node::Org(Org(r))),
            Decoded::Repo(u) => queries::repo(pool, u)
                .await
                .map_err(projection_error)?
                .map(|r| Node::Repo(Repo(r))),
            Decoded::Build(u) => queries::build(pool, u)
                .await
                .map_err(projection_error)?
                .map(|r| Node::Build(Build(r))),
            Decoded::Job(b, j) => queries::job(pool, b, &j)
                .await
                .map_err(projection_error)?
                .map(|r| Node::Job(Job(r))),
        })
    }

    /// Orgs, oldest first.
    async fn orgs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Org>> {
        let (limit, after_id) = page_args(first, after.as_deref())?;
        let api = consistent(ctx).await?;
        let page = queries::orgs(&api.pool, after_id, limit)
            .await
            .map_err(projection_error)?;
        Ok(connection(page, after_id.is_some(), |o| o.id, Org))
    }

    /// One org, by id or by slug (give exactly one).
    async fn org(&self, ctx: &Context<'_>, id: Option<ID>, slug: Option<String>) -> Result<Option<Org>> {
        let api = consistent(ctx).await?;
        let row = match (id, slug) {
            (Some(id), None) => queries::org(&api.pool, ids::decode_as(&id, Kind::Org)?).await,
            (None, Some(slug)) => queries::org_by_slug(&api.pool, &slug).await,
            _ => return Err(bad_input("give either `id` or `slug`")),
        };
        Ok(row.map_err(projection_error)?.map(Org))
    }

    /// One repo.
    async fn repo(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Repo>> {
        let uuid = ids::decode_as(&id, Kind::Repo)?;
        let api = consistent(ctx).await?;
        Ok(queries::repo(&api.pool, uuid)
            .await
            .map_err(projection_error)?
            .map(Repo))
    }

    /// One build, with its jobs.
    async fn build(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Build>> {
        let uuid = ids::decode_as(&id, Kind::Build)?;
        let api = consistent(ctx).await?;
        Ok(queries::build(&api.pool, uuid)
            .await
            .map_err(projection_error)?
            .map(Build))
    }

    /// One job.
    async fn job(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Job>> {
        let (build, job) = ids::decode_job(&id)?;
        let api = consistent(ctx).await?;
        Ok(queries::job(&api.pool, build, &job)
            .await
            .map_err(projection_error)?
            .map(Job))
    }
}
