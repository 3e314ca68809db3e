//! The GraphQL schema: queries on the read models, id-returning mutations, and subscriptions
//! on the live event feed.

mod audit;
pub(crate) mod cost;
mod mutation;
mod query;
pub mod secrets;
mod subscription;
mod triggers;
mod types;

use std::sync::Arc;

use async_graphql::{Context, Error, Schema};
use monkeyci_commands::CommandHandler;
use monkeyci_eventstore::{EventFeed, EventStore};
use monkeyci_projections::{ProjectionError, ReadModels};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use mutation::CoreMutation;
pub use query::CoreQuery;
pub use subscription::SubscriptionRoot;

use crate::consistency::Consistency;
use crate::errors::{bad_input, client, internal, Code};
use crate::fanout::BuildReads;
use crate::joblogs::JobLogs;
use crate::metrics::Metrics;

/// Every query: reads of the read models, and of the log's history.
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct QueryRoot(CoreQuery, audit::AuditQuery);

/// The schema type served by the API.
/// Every mutation: the core ones, those of webhooks and schedules, and those of secrets.
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct MutationRoot(CoreMutation, triggers::TriggerMutation, secrets::SecretsMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Everything resolvers need, shared by all requests.
#[derive(Debug, Clone)]
pub struct ApiContext {
    pub store: EventStore,
    /// The read models; the API has no other way to them (it does not depend on `sqlx`).
    pub read: ReadModels,
    pub commands: CommandHandler,
    pub feed: EventFeed,
    pub consistency: Consistency,
    pub metrics: Arc<Metrics>,
    pub builds: Arc<BuildReads>,
    pub job_logs: JobLogs,
    /// Makes and opens download links.
    pub tickets: crate::tickets::Tickets,
    pub(crate) access: crate::sessions::AccessChanges,
}

pub use crate::auth::Caller;

/// Makes the first query field of a request wait for read-your-writes, once per request.
#[derive(Debug, Default)]
pub struct ReadBarrier(OnceCell<Result<(), String>>);

pub use cost::QueryLimits;

/// Builds the schema with its limits (checked by [`cost::QueryCost`], which says the numbers
/// when it refuses, rather than by async-graphql's own limits).
pub fn build(context: ApiContext, limits: QueryLimits) -> AppSchema {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .data(context)
        .extension(cost::QueryCost(limits))
        .finish()
}

/// The schema in GraphQL's schema definition language, as `monkeyci schema` prints it.
pub fn sdl() -> String {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .finish()
        .sdl()
}

pub(crate) fn api<'a>(ctx: &Context<'a>) -> &'a ApiContext {
    ctx.data_unchecked::<ApiContext>()
}

pub(crate) use crate::auth::caller;

/// The shared context, after waiting until the read models include every write committed
/// before this request arrived.
pub(crate) async fn consistent<'a>(ctx: &Context<'a>) -> Result<&'a ApiContext, Error> {
    let api = api(ctx);
    if let Some(barrier) = ctx.data_opt::<ReadBarrier>() {
        barrier
            .0
            .get_or_init(|| async { api.consistency.read_your_writes().await.map_err(|e| e.to_string()) })
            .await
            .clone()
            .map_err(|message| client(Code::Unavailable, message))?;
    }
    Ok(api)
}

/// The org or repo `id` (a `kind`, called `what` in errors) belongs to, for authorisation;
/// `NOT_FOUND` if it does not exist or was deleted.
pub(crate) async fn owner_of(
    ctx: &Context<'_>,
    kind: monkeyci_projections::queries::Owned,
    id: Uuid,
    what: &str,
) -> Result<Uuid, Error> {
    let api = consistent(ctx).await?;
    monkeyci_projections::queries::owner_of(&api.read, kind, id)
        .await
        .map_err(projection_error)?
        .ok_or_else(|| crate::errors::not_found(what))
}

pub(crate) fn projection_error(error: ProjectionError) -> Error {
    internal(&error)
}

/// Default and largest page size.
pub(crate) const DEFAULT_PAGE: usize = 20;
pub(crate) const MAX_PAGE: usize = 100;

/// Validates `first` and `after` of a connection.
pub(crate) fn page_args(first: Option<i32>, after: Option<&str>) -> Result<(usize, Option<Uuid>), Error> {
    let limit = page_limit(first)?;
    let after = after
        .map(|c| Uuid::parse_str(c).map_err(|_| bad_input(format!("{c:?} is not a cursor of this list"))))
        .transpose()?;
    Ok((limit, after))
}

/// Validates `first` of a connection: the page size.
pub(crate) fn page_limit(first: Option<i32>) -> Result<usize, Error> {
    let limit = match first {
        None => DEFAULT_PAGE,
        Some(n) if n < 0 => return Err(bad_input("`first` must not be negative")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    if limit > MAX_PAGE {
        return Err(bad_input(format!("`first` must be at most {MAX_PAGE}")));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repository_schema_file_is_the_schema_of_the_code() {
        let committed = include_str!("../../../schema.graphql");
        assert!(
            committed == super::sdl(),
            "schema.graphql differs from the schema the code serves; write it again with \
             `cargo run -p monkeyci -- schema > schema.graphql` and review the difference"
        );
    }
}
