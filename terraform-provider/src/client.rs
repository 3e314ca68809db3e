//! A small GraphQL-over-HTTP client for MonkeyCI's API, shared by every resource.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tf_provider::Diagnostics;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    url: String,
    token: String,
}

/// Why a GraphQL request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The request did not get a GraphQL answer (connection, HTTP status, bad JSON).
    Transport(String),
    /// The API answered with errors: `(extensions.code, message)` of each.
    Graphql(Vec<(Option<String>, String)>),
}

impl ApiError {
    /// Whether sending the same request again might succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transport(_))
    }

    /// Whether the API said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Graphql(errors) if errors.iter().any(|(code, _)| code.as_deref() == Some("NOT_FOUND")))
    }

    /// Whether the API refused the input (e.g. an id of the wrong kind).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Graphql(errors) if errors.iter().any(|(code, _)| code.as_deref() == Some("BAD_USER_INPUT")))
    }

    /// Records the error as Terraform diagnostics, one per GraphQL error.
    pub fn report(&self, diags: &mut Diagnostics, summary: &str) {
        match self {
            Self::Transport(message) => diags.root_error(summary.to_owned(), message.clone()),
            Self::Graphql(errors) => {
                for (code, message) in errors {
                    let detail = match code {
                        Some(code) => format!("{message} ({code})"),
                        None => message.clone(),
                    };
                    diags.root_error(summary.to_owned(), detail);
                }
            }
        }
    }
}

impl Client {
    /// A client for the API at `endpoint` (e.g. `http://127.0.0.1:8080`) using `token`.
    pub fn new(endpoint: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            url: format!("{}/graphql", endpoint.trim_end_matches('/')),
            token: token.to_owned(),
        })
    }

    /// The server's base URL, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one request and returns its `data`, or the errors of the answer.
    pub async fn request<T: DeserializeOwned>(&self, query: &str, variables: Value) -> Result<T, ApiError> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| ApiError::Transport(format!("sending the request to {}: {e}", self.url)))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| ApiError::Transport(format!("{} answered {status} without JSON: {e}", self.url)))?;
        if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            return Err(ApiError::Graphql(
                errors
                    .iter()
                    .map(|e| {
                        let code = e.pointer("/extensions/code").and_then(Value::as_str).map(str::to_owned);
                        let message = e.get("message").and_then(Value::as_str).unwrap_or("unknown error");
                        (code, message.to_owned())
                    })
                    .collect(),
            ));
        }
        if !status.is_success() {
            return Err(ApiError::Transport(format!("{} answered {status}: {body}", self.url)));
        }
        serde_json::from_value(body.get("data").cloned().unwrap_or(Value::Null))
            .map_err(|e| ApiError::Transport(format!("unexpected answer from {}: {e}: {body}", self.url)))
    }

    /// Like [`Client::request`], but sends the request again (up to three times in all) when it
    /// got no answer. Only for mutations carrying an idempotency key, which the API applies once.
    pub async fn request_idempotent<T: DeserializeOwned>(&self, query: &str, variables: Value) -> Result<T, ApiError> {
        let mut attempt = 1;
        loop {
            match self.request(query, variables.clone()).await {
                Err(e) if e.is_transient() && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                result => return result,
            }
        }
    }
}

/// The client, once the provider is configured. Resources are created before Terraform
/// configures the provider, so they share this slot.
#[derive(Debug, Clone, Default)]
pub struct SharedClient(Arc<RwLock<Option<Client>>>);

impl SharedClient {
    pub fn set(&self, client: Client) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(client);
    }

    /// The client, or an error diagnostic when the provider is not configured.
    pub fn get(&self, diags: &mut Diagnostics) -> Option<Client> {
        let client = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        if client.is_none() {
            diags.root_error_short("The monkeyci provider is not configured");
        }
        client
    }
}

/// A fresh random idempotency key.
pub fn new_idempotency_key() -> String {
    format!("terraform-{}", uuid::Uuid::new_v4())
}
