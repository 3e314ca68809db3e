//! The GraphQL schema: queries on the read models, id-returning mutations, and subscriptions
//! on the live event feed.

mod audit;
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
use monkeyci_projections::ProjectionError;
use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use mutation::CoreMutation;
pub use query::CoreQuery;
pub use subscription::SubscriptionRoot;

use crate::consistency::Consistency;
use crate::errors::{bad_input, client, internal, Code};
use crate::fanout::BuildReads;
use crate::joblogs::JobLogWatch;
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
    pub pool: PgPool,
    pub commands: CommandHandler,
    pub feed: EventFeed,
    pub consistency: Consistency,
    pub metrics: Arc<Metrics>,
    pub builds: Arc<BuildReads>,
    pub job_logs: JobLogWatch,
}

pub use crate::auth::Caller;

/// Makes the first query field of a request wait for read-your-writes, once per request.
#[derive(Debug, Default)]
pub struct ReadBarrier(OnceCell<Result<(), String>>);

/// Limits on what one query may ask for.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

/// Builds the schema with its limits.
pub fn build(context: ApiContext, limits: QueryLimits) -> AppSchema {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .data(context)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
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

pub(crate) fn projection_error(error: ProjectionError) -> Error {
    internal(&error)
}

/// Default and largest page size.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

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
