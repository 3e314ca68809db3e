//! GraphQL over WebSocket, `graphql-transport-ws` protocol (the one of the graphql-ws library).
//!
//! The server enforces the protocol's rules with its close codes: no `connection_init` in time
//! (4408), an operation before the connection was acknowledged (4401), a second
//! `connection_init` (4429), an id already in use (4409), an unreadable message (4400). A
//! session whose access went away (token revoked or expired, its user's role changed, its org
//! deleted: `sessions.rs`) is closed with 4403, and so is an operation sent with such a token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::auth::Grant;
use crate::errors::{self, Code};
use crate::schema::{AppSchema, Caller, ReadBarrier};
use crate::sessions::Watch;

/// The sub-protocol name clients must ask for.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Per-connection rules.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// Operations one connection may run at once.
    pub max_subscriptions: usize,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    Complete {
        id: String,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
}

enum Outgoing {
    Message(Value),
    /// The operation `id` (of generation `generation`) ended by itself.
    Done(String, u64),
}

type Sink = SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, message: Value) -> bool {
    sink.send(Message::Text(message.to_string().into())).await.is_ok()
}

async fn close(mut sink: Sink, code: u16, reason: &str) {
    // A close frame's reason may hold at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

enum Read {
    Message(ClientMessage),
    Invalid(String),
    Closed,
}

async fn read(source: &mut SplitStream<WebSocket>) -> Read {
    loop {
        match source.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Read::Closed,
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ClientMessage>(text.as_str()) {
                    Ok(message) => Read::Message(message),
                    Err(error) => Read::Invalid(format!("Invalid message received: {error}")),
                }
            }
            Some(Ok(Message::Binary(_))) => return Read::Invalid("Invalid message received: binary".into()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }
}

/// Serves one WebSocket connection until either side closes it.
pub async fn serve(
    socket: WebSocket,
    schema: AppSchema,
    config: WsConfig,
    api: crate::schema::ApiContext,
    auth: crate::auth::AuthConfig,
) {
    let (mut sink, mut source) = socket.split();
    let deadline = tokio::time::Instant::now() + config.init_timeout;
    // Before authenticating: a change to the caller's access that lands meanwhile is not missed.
    let mut changes = api.access.subscribe();
    let (session, token, mut watch) = loop {
        match tokio::time::timeout_at(deadline, read(&mut source)).await {
            Err(_) => return close(sink, 4408, "Connection initialisation timeout").await,
            Ok(Read::Closed) => return,
            Ok(Read::Invalid(reason)) => return close(sink, 4400, &reason).await,
            Ok(Read::Message(ClientMessage::ConnectionInit { payload })) => {
                match session_data(&api, &auth, payload).await {
                    Ok(found) => break found,
                    Err(failure) => return close(sink, 4403, failure.message()).await,
                }
            }
            Ok(Read::Message(ClientMessage::Ping { payload })) => {
                if !send(&mut sink, pong(payload)).await {
                    return;
                }
            }
            Ok(Read::Message(ClientMessage::Pong { .. })) => {}
            Ok(Read::Message(ClientMessage::Subscribe { .. } | ClientMessage::Complete { .. })) => {
                return close(sink, 4401, "Unauthorized").await
            }
        }
    };
    if !send(&mut sink, json!({ "type": "connection_ack" })).await {
        return;
    }
    let session = Arc::new(session);
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(256);
    let mut active: HashMap<String, (u64, AbortHandle)> = HashMap::new();
    let mut generation = 0u64;
    let expiry = watch.expires_in();
    let expired = async move {
        match expiry {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    let mut expired = std::pin::pin!(expired);
    let closing = loop {
        tokio::select! {
            () = &mut expired => break Some((4403, "the token expired".into())),
            change = changes.recv() => match change {
                Ok(change) => {
                    if let Some(reason) = watch.ends(change) {
                        break Some((4403, reason.into()));
                    }
                }
                // Some changes were missed: whether they concern this session is unknown.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    break Some((4403, "access changes could not be followed; connect again".into()))
                }
                Err(broadcast::error::RecvError::Closed) => break Some((1011, "the server is stopping".into())),
            },
            incoming = read(&mut source) => match incoming {
                Read::Closed => break None,
                Read::Invalid(reason) => break Some((4400, reason)),
                Read::Message(ClientMessage::ConnectionInit { .. }) => {
                    break Some((4429, "Too many initialisation requests".into()))
                }
                Read::Message(ClientMessage::Ping { payload }) => {
                    if !send(&mut sink, pong(payload)).await {
                        break None;
                    }
                }
                Read::Message(ClientMessage::Pong { .. }) => {}
                Read::Message(ClientMessage::Complete { id }) => {
                    if let Some((_, handle)) = active.remove(&id) {
                        handle.abort();
                    }
                }
                Read::Message(ClientMessage::Subscribe { id, payload }) => {
                    // Every operation authenticates the token again: one revoked or expired
                    // since `connection_init` ends the session instead of acting.
                    if let Err(failure) = crate::auth::authenticate(&api, &auth, token.as_deref()).await {
                        break Some((4403, failure.message().into()));
                    }
                    if active.contains_key(&id) {
                        break Some((4409, format!("Subscriber for {id} already exists")));
                    }
                    if active.len() >= config.max_subscriptions {
                        let error = errors::client(
                            Code::BadUserInput,
                            format!("at most {} operations may run on one connection", config.max_subscriptions),
                        );
                        let payload = json!([error.into_server_error(async_graphql::Pos::default())]);
                        if !send(&mut sink, json!({ "type": "error", "id": id, "payload": payload })).await {
                            break None;
                        }
                        continue;
                    }
                    generation += 1;
                    let task = tokio::spawn(run_operation(
                        schema.clone(),
                        session.clone(),
                        id.clone(),
                        generation,
                        payload,
                        out_tx.clone(),
                    ));
                    active.insert(id, (generation, task.abort_handle()));
                }
            },
            outgoing = out_rx.recv() => match outgoing {
                Some(Outgoing::Message(message)) => {
                    if !send(&mut sink, message).await {
                        break None;
                    }
                }
                Some(Outgoing::Done(id, done)) => {
                    if active.get(&id).is_some_and(|(current, _)| *current == done) {
                        active.remove(&id);
                    }
                }
                None => break None,
            },
        }
    };
    for (_, (_, handle)) in active.drain() {
        handle.abort();
    }
    if let Some((code, reason)) = closing {
        close(sink, code, &reason).await;
    }
}

fn pong(payload: Option<Value>) -> Value {
    match payload {
        Some(payload) => json!({ "type": "pong", "payload": payload }),
        None => json!({ "type": "pong" }),
    }
}

/// The connection's caller, from the token in `connection_init`'s payload:
/// `{"Authorization": "Bearer <token>"}` (as an HTTP header would carry it) or `{"token": "<token>"}`;
/// the token, for authenticating each operation again; and what the session's access rests on.
async fn session_data(
    api: &crate::schema::ApiContext,
    auth: &crate::auth::AuthConfig,
    payload: Option<Value>,
) -> Result<(Data, Option<String>, Watch), crate::auth::AuthFailure> {
    let payload = payload.unwrap_or(Value::Null);
    let header = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str));
    let token = header
        .and_then(crate::auth::bearer)
        .or_else(|| payload.get("token").and_then(Value::as_str));
    let caller: Caller = crate::auth::authenticate(api, auth, token).await?;
    let orgs = match caller.grant {
        Grant::User(user) => monkeyci_projections::queries::member_org_ids(&api.read, user)
            .await
            .map_err(|_| crate::auth::AuthFailure::Unavailable)?,
        _ => Vec::new(),
    };
    let watch = Watch::new(caller.clone(), orgs);
    let mut data = Data::default();
    data.insert(caller);
    Ok((data, token.map(str::to_owned), watch))
}

async fn run_operation(
    schema: AppSchema,
    session: Arc<Data>,
    id: String,
    generation: u64,
    request: Box<async_graphql::Request>,
    out: mpsc::Sender<Outgoing>,
) {
    let request = (*request).data(ReadBarrier::default());
    let mut responses = schema.execute_stream_with_session_data(request, session);
    let mut first = true;
    while let Some(mut response) = responses.next().await {
        errors::normalize(&mut response);
        // Refused before it ran (syntax, validation): the protocol's `error` message, no `complete`.
        if first && response.data == async_graphql::Value::Null && !response.errors.is_empty() {
            let payload = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            let _ = out
                .send(Outgoing::Message(
                    json!({ "type": "error", "id": id, "payload": payload }),
                ))
                .await;
            let _ = out.send(Outgoing::Done(id, generation)).await;
            return;
        }
        first = false;
        let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
        if out
            .send(Outgoing::Message(
                json!({ "type": "next", "id": id, "payload": payload }),
            ))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = out
        .send(Outgoing::Message(json!({ "type": "complete", "id": id })))
        .await;
    let _ = out.send(Outgoing::Done(id, generation)).await;
}
