//! Routes: `POST /graphql`, WebSocket and GraphiQL on `GET /graphql`, `/health`, `/ready`,
//! `/metrics`.

use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{MatchedPath, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::errors::{self, Code};
use crate::schema::{Caller, ReadBarrier};
use crate::ws;
use crate::AppState;

/// Runs one GraphQL request sent as JSON.
pub async fn graphql_post(State(state): State<AppState>, body: Bytes) -> Response {
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
    let request = request.data(ReadBarrier::default()).data(Caller::default());
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
                .on_upgrade(move |socket| ws::serve(socket, schema, config))
        }
        Err(_) => Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("MonkeyCI GraphQL")
                .finish(),
        )
        .into_response(),
    }
}

/// A job's whole output as plain text, one line per line of output.
pub async fn job_log(
    State(state): State<AppState>,
    axum::extract::Path((build_id, job_id)): axum::extract::Path<(String, String)>,
) -> Response {
    let Ok(build) = crate::ids::decode_as(&async_graphql::ID(build_id), crate::ids::Kind::Build) else {
        return (StatusCode::BAD_REQUEST, "not a build id\n").into_response();
    };
    if state.context.consistency.read_your_writes().await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the read models are behind; try again\n",
        )
            .into_response();
    }
    match monkeyci_projections::queries::job(&state.context.pool, build, &job_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, "no such job\n").into_response(),
        Err(error) => {
            let _ = errors::internal(&error);
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
        }
    }
    let build = monkeyci_domain::BuildId::from_uuid(build);
    let mut body = String::new();
    let mut after = 0;
    loop {
        match monkeyci_runner::read_job_log(&state.context.pool, build, &job_id, after, 5000).await {
            Ok(lines) if lines.is_empty() => break,
            Ok(lines) => {
                for line in lines {
                    after = line.seq;
                    body.push_str(&line.text);
                    body.push('\n');
                }
            }
            Err(error) => {
                let _ = errors::internal(&error);
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// Alive: the process answers.
pub async fn health() -> &'static str {
    "ok"
}

/// Ready: the database answers and every projection is within `ready_max_lag` of the log head.
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = sqlx::query("SELECT 1")
        .execute(state.context.store.pool())
        .await
        .is_ok();
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
    let status = if database && caught_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "database": database, "projectionsCaughtUp": caught_up, "projections": projections });
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let projections = monkeyci_projections::status(&state.context.store)
        .await
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.context.metrics.render(&projections),
    )
        .into_response()
}

/// Records every request's latency by route.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .context
        .metrics
        .http(&method, &path, response.status().as_u16(), started.elapsed());
    response
}
