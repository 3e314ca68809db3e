//! A small GraphQL-over-HTTP(S) client for MonkeyCI's API, shared by every resource.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
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
    /// TLS refused the connection (e.g. an untrusted certificate): sending again cannot help.
    Tls(String),
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
            Self::Transport(message) | Self::Tls(message) => diags.root_error(summary.to_owned(), message.clone()),
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
    /// A client for the API at `endpoint` (e.g. `http://127.0.0.1:8080` or `https://ci.example.com`)
    /// using `token`. An `https://` endpoint must present a certificate that the system's roots
    /// or one of `extra_roots` (see [`read_ca_file`]) vouch for.
    pub fn new(endpoint: &str, token: &str, extra_roots: Vec<reqwest::Certificate>) -> anyhow::Result<Self> {
        let http = extra_roots
            .into_iter()
            .fold(reqwest::Client::builder(), reqwest::ClientBuilder::add_root_certificate)
            .tls_built_in_native_certs(true)
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
            .map_err(|e| send_error(&self.url, &e))?;
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

/// The CA certificates of the PEM file at `path`, to trust besides the system's roots.
///
/// Each is checked here, so that a bad file is reported with its path rather than as a failure to
/// build the HTTP client.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let shown = path.display();
    let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {shown}"))?;
    let mut certificates = Vec::new();
    for (index, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.with_context(|| format!("the CA file {shown} is not valid PEM"))?;
        rustls::RootCertStore::empty().add(der.clone()).with_context(|| {
            format!(
                "certificate {} of the CA file {shown} is not a valid certificate",
                index + 1
            )
        })?;
        certificates.push(
            reqwest::Certificate::from_der(&der)
                .with_context(|| format!("certificate {} of the CA file {shown}", index + 1))?,
        );
    }
    if certificates.is_empty() {
        anyhow::bail!("the CA file {shown} holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)");
    }
    Ok(certificates)
}

/// Why sending to `url` failed, with every cause: reqwest's own message only names the URL, while
/// the causes say what went wrong (refused connection, untrusted certificate, timeout).
fn send_error(url: &str, error: &reqwest::Error) -> ApiError {
    let mut message = format!("sending the request to {url}: {error}");
    let mut tls = None;
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        tls = tls.or_else(|| rustls_error(current));
        cause = current.source();
    }
    match tls {
        Some(rustls::Error::InvalidCertificate(_)) => ApiError::Tls(format!(
            "{message}. The server's certificate was refused; if a private CA signed it, set `ca_file` in the provider block (or MONKEYCI_CA_FILE) to that CA's PEM file."
        )),
        Some(_) => ApiError::Tls(message),
        None => ApiError::Transport(message),
    }
}

/// The TLS error behind `cause`: the TLS stream wraps it in an I/O error, which hyper-rustls
/// wraps in another, and an I/O error's `source` skips the error it wraps.
fn rustls_error<'a>(mut cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
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
