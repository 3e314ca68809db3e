//! The server's public API as the CLI uses it: GraphQL over HTTP, plain-text log downloads,
//! and subscriptions over WebSocket (`graphql-transport-ws`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::Failure;

/// A server and the token to call it with.
#[derive(Clone)]
pub struct Api {
    /// `http(s)://host:port`, without a trailing slash.
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(server: &str, token: &str) -> Result<Self, Failure> {
        let base = normalise_server(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("monkeyci-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::unreachable(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// Runs a query or mutation and returns its `data`; GraphQL errors become failures with the
    /// exit status their code calls for.
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, Failure> {
        let url = format!("{}/graphql", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(_) if status.is_success() => {
                return Err(Failure::unreachable(format!(
                    "{url} did not answer with JSON: is it a MonkeyCI server?"
                )))
            }
            Err(_) => Value::Null,
        };
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Failure::auth(format!(
                "{} refused the token: {}",
                self.base,
                first_message(&body).unwrap_or("not valid")
            )));
        }
        if let Some(error) = body["errors"].as_array().and_then(|e| e.first()) {
            return Err(Failure::from_graphql_error(error));
        }
        if !status.is_success() {
            return Err(Failure::unreachable(format!("{url} answered {status}")));
        }
        Ok(body["data"].clone())
    }

    /// Streams `path` (a log download) to `write`, line by line.
    pub async fn download_lines(&self, path: &str, mut write: impl FnMut(&str)) -> Result<(), Failure> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        match response.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::UNAUTHORIZED => return Err(Failure::auth(format!("{} refused the token", self.base))),
            reqwest::StatusCode::NOT_FOUND => return Err(Failure::refused(format!("{url}: not found"))),
            s => return Err(Failure::unreachable(format!("{url} answered {s}"))),
        }
        let mut body = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure::unreachable(format!("the download of {url} broke off: {e}")))?;
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                write(&String::from_utf8_lossy(&line[..line.len() - 1]));
            }
        }
        if !pending.is_empty() {
            write(&String::from_utf8_lossy(&pending));
        }
        Ok(())
    }

    /// Opens a WebSocket and completes the `graphql-transport-ws` handshake with the token.
    pub async fn subscriptions(&self) -> Result<Subscriptions, Failure> {
        let ws = match self.base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}/graphql"),
            Some((_, rest)) => format!("ws://{rest}/graphql"),
            None => format!("ws://{}/graphql", self.base),
        };
        let mut request = ws
            .as_str()
            .into_client_request()
            .map_err(|e| Failure::usage(format!("cannot make a WebSocket request to {ws}: {e}")))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let connect = tokio_tungstenite::connect_async(request);
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| Failure::unreachable(format!("{ws} did not answer within 10 s")))?
            .map_err(|e| Failure::unreachable(format!("cannot open {ws}: {e}")))?;
        let mut subscriptions = Subscriptions { stream };
        subscriptions
            .send(json!({ "type": "connection_init", "payload": { "token": self.token } }))
            .await?;
        match subscriptions.next().await? {
            Incoming::Ack => Ok(subscriptions),
            Incoming::Closed(4401 | 4403, reason) => {
                Err(Failure::auth(format!("{} refused the token: {reason}", self.base)))
            }
            other => Err(Failure::unreachable(format!(
                "{ws} did not accept the connection: {other:?}"
            ))),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> Failure {
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            cause = format!("{cause}: {inner}");
            source = inner.source();
        }
        Failure::unreachable(format!("cannot reach {}: {cause}", self.base))
    }
}

/// `URL` without a trailing slash; a URL without a scheme is refused.
pub fn normalise_server(server: &str) -> Result<String, Failure> {
    let trimmed = server.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/graphql").unwrap_or(trimmed);
    match trimmed.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(trimmed.to_owned()),
        _ => Err(Failure::usage(format!(
            "{server:?} is not a server URL: give http://HOST:PORT or https://HOST"
        ))),
    }
}

fn first_message(body: &Value) -> Option<&str> {
    body["errors"][0]["message"].as_str()
}

/// What arrives on a subscription connection.
#[derive(Debug)]
pub enum Incoming {
    Ack,
    /// `next` of operation `id`.
    Next(String, Value),
    /// `error` of an operation: its GraphQL errors.
    Error(Value),
    /// `complete` of operation `id`.
    Complete(String),
    Closed(u16, String),
}

/// One WebSocket speaking `graphql-transport-ws`.
pub struct Subscriptions {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Subscriptions {
    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) -> Result<(), Failure> {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await
    }

    /// The next message, answering pings on the way; a dropped connection is `Closed`.
    pub async fn next(&mut self) -> Result<Incoming, Failure> {
        loop {
            let message = match self.stream.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) =
                        frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                    return Ok(Incoming::Closed(code, reason));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Ok(Incoming::Closed(1006, e.to_string())),
                None => return Ok(Incoming::Closed(1006, "the connection ended".into())),
            };
            let value: Value = serde_json::from_str(message.as_str())
                .map_err(|e| Failure::unreachable(format!("the server sent something that is not JSON: {e}")))?;
            let id = value["id"].as_str().unwrap_or_default().to_owned();
            match value["type"].as_str() {
                Some("connection_ack") => return Ok(Incoming::Ack),
                Some("ping") => self.send(json!({ "type": "pong" })).await?,
                Some("next") => return Ok(Incoming::Next(id, value["payload"].clone())),
                Some("error") => return Ok(Incoming::Error(value["payload"].clone())),
                Some("complete") => return Ok(Incoming::Complete(id)),
                _ => {}
            }
        }
    }

    async fn send(&mut self, message: Value) -> Result<(), Failure> {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| Failure::unreachable(format!("the WebSocket broke: {e}")))
    }
}
