//! MonkeyCI's HTTP API: GraphQL (queries on read models, id-returning mutations, subscriptions
//! over WebSocket), the web UI, health, readiness and metrics.

mod auth;
mod consistency;
mod console;
pub mod errors;
mod fanout;
mod http;
pub mod ids;
mod joblogs;
mod metrics;
pub mod schema;
mod sessions;
pub mod tickets;
mod ui;
mod webhooks;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures::StreamExt;
use monkeyci_commands::CommandHandler;
use monkeyci_eventstore::{EventFeed, EventStore, ReadError};
use tokio::net::TcpListener;

pub use auth::{AuthConfig, Caller, Grant};
pub use consistency::{Consistency, ConsistencyError};
pub use metrics::Metrics;
pub use schema::{AppSchema, QueryLimits};
pub use ws::WsConfig;

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The largest request body (and WebSocket message), in bytes.
    pub body_limit: usize,
    /// Query depth and complexity limits.
    pub limits: QueryLimits,
    /// WebSocket rules.
    pub ws: WsConfig,
    /// How long a query waits for the read models to include earlier writes.
    pub read_your_writes_timeout: Duration,
    /// `/ready` fails while a projection is more than this many events behind.
    pub ready_max_lag: u64,
    /// Where artifacts are downloaded from; without it, downloads answer 503.
    pub blobs: Option<Arc<dyn monkeyci_storage::BlobStore>>,
    /// Whether requests need a token.
    pub auth: AuthConfig,
    /// Where the data keys of secrets are; without it, webhooks and secrets cannot be created.
    pub keys: Option<monkeyci_commands::KeyStore>,
    /// The largest webhook delivery, in bytes (GitHub sends at most 25 MiB).
    pub webhook_body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 1024 * 1024,
            limits: QueryLimits {
                max_depth: 12,
                max_complexity: 50_000,
                max_root_fields: 50,
            },
            ws: WsConfig {
                init_timeout: Duration::from_secs(10),
                max_subscriptions: 100,
            },
            read_your_writes_timeout: Duration::from_secs(5),
            ready_max_lag: 1000,
            blobs: None,
            auth: AuthConfig::Disabled,
            keys: None,
            webhook_body_limit: 25 * 1024 * 1024,
        }
    }
}

/// Shared by every route.
#[derive(Clone)]
pub(crate) struct AppState {
    schema: AppSchema,
    context: schema::ApiContext,
    ws: WsConfig,
    body_limit: usize,
    webhook_body_limit: usize,
    ready_max_lag: u64,
    read_your_writes_timeout: Duration,
    blobs: Option<Arc<dyn monkeyci_storage::BlobStore>>,
    auth: AuthConfig,
}

/// A bound, not yet serving API server.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    router: Router,
}

impl ApiServer {
    /// Binds the listener and wires the schema to the store, feed and read models.
    pub async fn bind(store: EventStore, feed: EventFeed, config: ApiConfig) -> Result<Self, ApiError> {
        let names = monkeyci_projections::all().iter().map(|p| p.name()).collect();
        let read = monkeyci_projections::ReadModels::of(&store);
        let consistency =
            Consistency::start(store.clone(), read.clone(), names, config.read_your_writes_timeout).await?;
        let metrics = Arc::new(Metrics::default());
        let access = sessions::AccessChanges::new();
        spawn_log_follower(&feed, &store, metrics.clone(), access.clone()).await?;
        let tickets = tickets::Tickets::new(config.keys.clone(), &config.auth);
        let context = schema::ApiContext {
            read: read.clone(),
            commands: match config.keys {
                Some(keys) => CommandHandler::new(store.clone()).with_keys(keys),
                None => CommandHandler::new(store.clone()),
            },
            tickets,
            store,
            feed,
            consistency,
            metrics,
            builds: Arc::new(fanout::BuildReads::default()),
            access,
            job_logs: joblogs::JobLogs::start(&read, config.blobs.clone()).await?,
        };
        let state = AppState {
            schema: schema::build(context.clone(), config.limits),
            context,
            ws: config.ws,
            body_limit: config.body_limit,
            webhook_body_limit: config.webhook_body_limit,
            ready_max_lag: config.ready_max_lag,
            read_your_writes_timeout: config.read_your_writes_timeout,
            blobs: config.blobs,
            auth: config.auth,
        };
        let router = Router::new()
            .route("/", get(ui::page))
            .route("/ui/{file}", get(ui::asset))
            .route("/graphql", post(http::graphql_post).get(http::graphql_get))
            .route("/graphiql/{file}", get(console::asset))
            .route("/builds/{build_id}/jobs/{job_id}/log", get(http::job_log))
            .route("/builds/{build_id}/artifacts/{artifact_id}", get(http::artifact))
            // The handler reads the body itself, after finding the webhook, up to its own limit.
            .route(
                "/webhooks/{host}/{id}",
                post(webhooks::receive).layer(DefaultBodyLimit::disable()),
            )
            .route("/health", get(http::health))
            .route("/ready", get(http::ready))
            .route("/metrics", get(http::metrics))
            .layer(axum::middleware::from_fn_with_state(state.clone(), http::record))
            .layer(DefaultBodyLimit::max(config.body_limit))
            .with_state(state);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ApiError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self { listener, router })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        // Without TCP_NODELAY a message that follows another within ~40 ms on one WebSocket
        // waits for the client's delayed ACK.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Follows the log from now on: counts its events and publishes those that take access away.
async fn spawn_log_follower(
    feed: &EventFeed,
    store: &EventStore,
    metrics: Arc<Metrics>,
    access: sessions::AccessChanges,
) -> Result<(), ReadError> {
    let mut cursor = store.readable_head().await?;
    let feed = feed.clone();
    tokio::spawn(async move {
        // Sessions rely on it to end: it resumes where it stopped if reading the log fails.
        loop {
            let mut events = pin!(feed.subscribe(cursor));
            while let Some(next) = events.next().await {
                match next {
                    Ok(event) => {
                        cursor = event.cursor;
                        metrics.events(1);
                        if let Some(change) = sessions::AccessChange::of(&event) {
                            access.publish(change);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "following the event log failed; resuming in 1 s");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(())
}

/// The API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the event log")]
    Read(#[from] ReadError),
    #[error("cannot read the read models")]
    ReadModels(#[from] monkeyci_projections::ProjectionError),
}
