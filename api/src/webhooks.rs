//! `POST /webhooks/{host}/{id}`: deliveries from git hosts.
//!
//! The body is read only once the webhook is found (an unknown id is 404 before a byte of a
//! body of any size is read) and only up to the limit (413 beyond it). The delivery is checked
//! against the webhook's secret before anything else is read from it; a bad or missing
//! signature is 401 and appends nothing. A push triggers a build as the actor
//! `webhook:<id>`, with the delivery id as idempotency key, so a redelivery answers with the first
//! build's id and starts nothing.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use monkeyci_commands::{CommandContext, CommandError, KeyError, PushDetails, TriggerBuild};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::RepoId;
use monkeyci_webhooks::{delivery_id, parse_event, verify, Event, Host, PushRef};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::errors;
use crate::ids::{encode, Kind};
use crate::AppState;

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    answer(status, json!({ "error": message.to_string() }))
}

/// Receives one delivery.
pub async fn receive(
    State(state): State<AppState>,
    Path((host, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(host) = Host::parse(&host) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("unknown git host {host:?}: use github, gitlab, bitbucket, gitea or forgejo"),
        );
    };
    let missing = || refuse(StatusCode::NOT_FOUND, "no such webhook");
    // The webhook's id as `createWebhook` returns it, or its UUID as `deliveryUrl` shows it.
    let Some(id) = crate::ids::decode_path(&id, crate::ids::Kind::Webhook) else {
        return missing();
    };
    if state.context.consistency.read_your_writes().await.is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the read models are behind; try again");
    }
    let webhook = match monkeyci_projections::queries::webhook(&state.context.read, id).await {
        Ok(Some(webhook)) if !webhook.deleted && webhook.host == host.as_str() => webhook,
        Ok(_) => return missing(),
        Err(error) => return internal(error),
    };
    let Some(keys) = state.context.commands.keys() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, KeyError::NoMasterKey);
    };
    let secret = match keys.open(id, monkeyci_commands::WEBHOOK_SECRET, &webhook.secret).await {
        Ok(secret) => secret,
        Err(KeyError::Destroyed(_)) => return missing(),
        Err(error) => return internal(error),
    };
    let body = match axum::body::to_bytes(body, state.webhook_body_limit).await {
        Ok(body) => body,
        Err(_) => {
            let limit = state.webhook_body_limit;
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the delivery is larger than {limit} bytes, or it was not received whole"),
            );
        }
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    if let Err(error) = verify(host, &pairs, &body, secret.as_bytes()) {
        tracing::info!(webhook = %id, host = host.as_str(), %error, "refused a webhook delivery");
        return refuse(StatusCode::UNAUTHORIZED, error);
    }
    let push = match parse_event(host, &pairs, &body) {
        Ok(Event::Ping) => return answer(StatusCode::OK, json!({ "ok": true, "event": "ping" })),
        Ok(Event::Ignored { kind }) => return answer(StatusCode::ACCEPTED, json!({ "ignored": kind })),
        Ok(Event::Push(push)) if push.deleted => {
            let ignored = format!("deletion of {}", push.git_ref.full_name());
            return answer(StatusCode::ACCEPTED, json!({ "ignored": ignored }));
        }
        Ok(Event::Push(push)) => push,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, error),
    };
    let (branch, tag) = match &push.git_ref {
        PushRef::Branch(name) => (Some(name.clone()), None),
        PushRef::Tag(name) => (None, Some(name.clone())),
    };
    let mut ctx = CommandContext::new(format!("webhook:{id}"));
    ctx.idempotency_key = delivery_id(host, &pairs).map(|delivery| delivery_key(host, &delivery));
    let input = TriggerBuild {
        repo_id: RepoId::from_uuid(webhook.repo_id),
        source: TriggerSource::Webhook,
        branch,
        tag,
        commit: Some(push.commit),
        params: Default::default(),
        push: Some(PushDetails {
            message: push.message,
            author: push.author,
            changed_files: push.changed_files_complete.then_some(push.changed_files),
        }),
    };
    let result = state.context.commands.trigger_build(&ctx, input).await;
    let outcome = result
        .as_ref()
        .map_or_else(|e| errors::command_code(e).label(), |_| "ok");
    state.context.metrics.command("triggerBuild", outcome);
    match result {
        Ok(build) => {
            let build_id = encode(Kind::Build, build.as_uuid());
            answer(StatusCode::ACCEPTED, json!({ "buildId": build_id }))
        }
        // An archived repo, a deleted org: the host should not retry.
        Err(CommandError::Domain(error)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, error),
        Err(error) => internal(error),
    }
}

/// The idempotency key of a delivery: its id, hashed when it is longer than keys may be.
fn delivery_key(host: Host, delivery: &str) -> String {
    let key = format!("{}:{delivery}", host.as_str());
    if key.len() <= 200 {
        key
    } else {
        format!(
            "{}:sha256:{}",
            host.as_str(),
            hex::encode(Sha256::digest(delivery.as_bytes()))
        )
    }
}

fn internal(error: impl std::error::Error + 'static) -> Response {
    let _ = errors::internal(&error);
    refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}
