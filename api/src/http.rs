//! Routes: `POST /graphql`, WebSocket and the GraphQL console on `GET /graphql` (its files under
//! `/graphiql/`), `/health`, `/ready`, `/metrics`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{MatchedPath, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth;
use crate::errors::{self, Code};
use crate::schema::{Caller, ReadBarrier};
use crate::ws;
use crate::AppState;
use monkeyci_domain::access::Role;

/// The caller of an HTTP request, or the 401 response that says why there is none.
async fn authenticated(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    auth::authenticate(&state.context, &state.auth, token)
        .await
        .map_err(|failure| {
            let (status, code) = match failure {
                auth::AuthFailure::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
                _ => (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
            };
            let body = json!({ "errors": [{
                "message": failure.message(),
                "extensions": { "code": code.as_str() },
            }]});
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
        })
}

/// The `?ticket=` of a download link (see [`crate::tickets`]).
#[derive(Debug, serde::Deserialize)]
pub struct TicketQuery {
    ticket: Option<String>,
}

/// The caller of a download: the holder of the request's ticket if it has one (valid for this
/// path only), else the caller of its `Authorization` header.
async fn downloader(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    ticket: Option<&str>,
) -> Result<Caller, Response> {
    let Some(ticket) = ticket else {
        return authenticated(state, headers).await;
    };
    let refuse = |message: String| {
        let body = json!({ "errors": [{
            "message": message,
            "extensions": { "code": Code::Unauthenticated.as_str() },
        }]});
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    };
    let holder = match state.context.tickets.open(ticket, path, chrono::Utc::now()).await {
        Ok(holder) => holder,
        Err(crate::tickets::TicketError::Unavailable(message)) => {
            return Err((StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")).into_response())
        }
        Err(error) => return Err(refuse(error.to_string())),
    };
    auth::ticket_holder(&state.context, &state.auth, &holder)
        .await
        .map_err(|failure| match failure {
            auth::AuthFailure::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the link right now; try again\n",
            )
                .into_response(),
            _ => refuse("the download link's token is no longer valid".into()),
        })
}

/// The build named in a path, once the caller is authenticated and may read its org: a build of
/// another org is as missing (404) as one that does not exist.
async fn readable_build(
    state: &AppState,
    caller: Result<Caller, Response>,
    build_id: String,
) -> Result<monkeyci_projections::BuildRow, Response> {
    let caller = caller?;
    let Some(build) = crate::ids::decode_path(&build_id, crate::ids::Kind::Build) else {
        return Err((StatusCode::BAD_REQUEST, "not a build id (its id or UUID)\n").into_response());
    };
    if state.context.consistency.read_your_writes().await.is_err() {
        let behind = "the read models are behind; try again\n";
        return Err((StatusCode::SERVICE_UNAVAILABLE, behind).into_response());
    }
    let missing = || (StatusCode::NOT_FOUND, "no such build\n").into_response();
    let row = monkeyci_projections::queries::build(&state.context.read, build)
        .await
        .map_err(internal_error)?
        .ok_or_else(missing)?;
    match auth::require_as(&state.context, &caller, row.org_id, Role::Viewer, "build").await {
        Ok(()) => Ok(row),
        Err(_) => Err(missing()),
    }
}

/// Logs `error` and answers 500 without its details.
fn internal_error(error: impl std::error::Error + 'static) -> Response {
    let _ = errors::internal(&error);
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

/// Runs one GraphQL request sent as JSON.
pub async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match authenticated(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let body = json!({ "errors": [{
                "message": format!("the body is not a GraphQL request: {error}"),
                "extensions": { "code": Code::BadUserInput.as_str() },
            }]});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let request = request.data(ReadBarrier::default()).data(caller);
    let mut response = state.schema.execute(request).await;
    errors::normalize(&mut response);
    Json(response).into_response()
}

/// A WebSocket upgrade for subscriptions, or GraphiQL for a browser.
pub async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let offered = headers
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !offered.split(',').any(|p| p.trim() == ws::PROTOCOL) {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("ask for the WebSocket sub-protocol {}", ws::PROTOCOL),
                )
                    .into_response();
            }
            let schema = state.schema.clone();
            let config = state.ws;
            upgrade
                .protocols([ws::PROTOCOL])
                .max_message_size(state.body_limit)
                // The default 128 KiB read buffer per connection would cost 1.3 GiB for 10,000
                // subscribers; GraphQL messages from clients are small.
                .read_buffer_size(8 * 1024)
                .on_upgrade(move |socket| ws::serve(socket, schema, config, state.context, state.auth))
        }
        Err(_) => crate::console::page(),
    }
}

/// A job's whole output as plain text, one line per line of output.
pub async fn job_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    axum::extract::Query(query): axum::extract::Query<TicketQuery>,
    axum::extract::Path((build_id, job_id)): axum::extract::Path<(String, String)>,
) -> Response {
    let caller = downloader(&state, &headers, uri.path(), query.ticket.as_deref()).await;
    let build = match readable_build(&state, caller, build_id).await {
        Ok(build) => build,
        Err(response) => return response,
    };
    let job = match monkeyci_projections::queries::job(&state.context.read, build.id, &job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such job\n").into_response(),
        Err(error) => return internal_error(error),
    };
    if let Err(message) = state.context.job_logs.ensure_stored(&state.context.read, &job).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")).into_response();
    }
    // Streamed a page of lines at a time: a log of any size costs the server one page of memory.
    // A failure after the first page can only cut the body short (logged), which the client
    // sees as a broken transfer.
    let read = state.context.read.clone();
    let pages = futures::stream::try_unfold(Some(0_i64), move |after| {
        let (read, job_id) = (read.clone(), job_id.clone());
        async move {
            let Some(after) = after else { return Ok(None) };
            let lines = monkeyci_projections::queries::job_log(&read, build.id, &job_id, after, LOG_PAGE)
                .await
                .inspect_err(|error| tracing::warn!(%error, "a log download stopped"))?;
            let Some(last) = lines.last().map(|l| l.seq) else {
                return Ok(None);
            };
            let mut page = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
            for line in &lines {
                page.push_str(&line.text);
                page.push('\n');
            }
            let more = (lines.len() as i64 == LOG_PAGE).then_some(last);
            Ok::<_, monkeyci_projections::ProjectionError>(Some((Bytes::from(page), more)))
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(pages),
    )
        .into_response()
}

/// Lines per page of a log download.
const LOG_PAGE: i64 = 5000;

/// An artifact of a build, as the tar.gz its job saved.
pub async fn artifact(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    axum::extract::Query(query): axum::extract::Query<TicketQuery>,
    axum::extract::Path((build_id, artifact_id)): axum::extract::Path<(String, String)>,
) -> Response {
    let caller = downloader(&state, &headers, uri.path(), query.ticket.as_deref()).await;
    let build = match readable_build(&state, caller, build_id).await {
        Ok(build) => build,
        Err(response) => return response,
    };
    let Some(blobs) = state.blobs.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "this server has no blob storage\n").into_response();
    };
    let Some(found) = build.artifacts.into_iter().find(|a| a.id == artifact_id) else {
        return (StatusCode::NOT_FOUND, "no such artifact\n").into_response();
    };
    // A store that needs a local copy makes an unnamed one: nothing stays behind when the
    // client goes away, whenever it does.
    let opened = match monkeyci_storage::BlobKey::new(&found.key) {
        Ok(key) => blobs.open(&key, &std::env::temp_dir()).await,
        Err(error) => Err(error),
    };
    match opened {
        Ok(Some(file)) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
            let disposition = format!("attachment; filename=\"{}.tgz\"", found.id);
            (
                [
                    (header::CONTENT_TYPE, "application/gzip".to_owned()),
                    (header::CONTENT_LENGTH, found.size.to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "the artifact is no longer in storage\n").into_response(),
        Err(error) => internal_error(error),
    }
}

/// Alive: the process answers.
pub async fn health() -> &'static str {
    "ok"
}

/// Ready: the database answers, every projection is within `ready_max_lag` of the log head, and
/// no transaction has held the readable end of the log back for as long as a read-your-writes
/// wait (queries would fail then). `logHeldBack` says who holds it back for a second or more.
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = state.context.read.ping().await.is_ok();
    let held_back = if database {
        state.context.store.held_back_by().await.ok().flatten()
    } else {
        None
    };
    let log_stalled = held_back
        .as_ref()
        .is_some_and(|a| a.open_for >= state.read_your_writes_timeout);
    let log_held_back = held_back.map(|a| {
        json!({
            "pid": a.pid,
            "applicationName": a.application_name,
            "prepared": a.prepared,
            "state": a.state,
            "since": a.since,
            "seconds": a.open_for.as_secs_f64(),
        })
    });
    let statuses = if database {
        monkeyci_projections::status(&state.context.store).await.ok()
    } else {
        None
    };
    let projections: Vec<_> = statuses
        .iter()
        .flatten()
        .map(|s| json!({ "name": s.name, "lag": s.lag_events }))
        .collect();
    let caught_up = statuses.as_ref().is_some_and(|all| {
        let names = monkeyci_projections::all();
        names.iter().all(|p| {
            all.iter()
                .any(|s| s.name == p.name() && s.lag_events <= state.ready_max_lag)
        })
    });
    let status = if database && caught_up && !log_stalled {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "database": database,
        "projectionsCaughtUp": caught_up,
        "projections": projections,
        "logHeldBack": log_held_back,
    });
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let projections = monkeyci_projections::status(&state.context.store)
        .await
        .unwrap_or_default();
    let held_back = match state.context.store.open_appenders().await {
        Ok(appenders) => appenders.first().map(|a| a.open_for).unwrap_or_default(),
        Err(error) => {
            tracing::warn!(%error, "could not list the log's appenders");
            std::time::Duration::ZERO
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.context.metrics.render(&projections, held_back),
    )
        .into_response()
}

/// Records every request's latency by route.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A label of every method a client invents would grow the metrics without bound.
    let method = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|known| *known == request.method().as_str())
        .unwrap_or("other");
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .context
        .metrics
        .http(method, &path, response.status().as_u16(), started.elapsed());
    response
}
