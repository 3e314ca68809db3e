//! The web UI: one page at `GET /` and its scripts and stylesheet at `GET /ui/<file>`, all
//! compiled into the binary from `ui/`. Plain ES modules, no build step: what is in `ui/` is what
//! the browser runs. The UI is a client of the public GraphQL API and nothing else.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One file the UI is made of.
struct Asset {
    name: &'static str,
    kind: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $kind:expr) => {
        Asset {
            name: $name,
            kind: $kind,
            body: include_str!(concat!("../../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/ui/`; anything else there is 404.
const ASSETS: [Asset; 12] = [
    asset!("app.js", JS),
    asset!("ansi.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("pages.js", JS),
    asset!("build.js", JS),
    asset!("graph.js", JS),
    asset!("logview.js", JS),
    asset!("owners.js", JS),
    asset!("ws.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

const PAGE: &str = include_str!("../../ui/index.html");

/// Validators of the page and of each asset: a digest of the content, so a new binary with
/// changed files is fetched again while an unchanged one answers `304`.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(PAGE)
        .chain(ASSETS.iter().map(|a| a.body))
        .map(|body| format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..32]))
        .collect()
});

/// Only this server's own files, and its GraphQL endpoint over HTTP and WebSocket.
fn policy(headers: &HeaderMap) -> String {
    // Chromium lets `'self'` cover the same host's `ws:` since CSP level 3, older browsers do
    // not: name the WebSocket origin too, if the Host header is a plain host[:port].
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    let sockets = host.map_or_else(String::new, |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The same headers on every answer: the policy (also on files, which a browser can open as
/// documents), no sniffing, revalidated before use, no referrer.
fn respond(headers: &HeaderMap, tag: &str, kind: &'static str, body: &'static str) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    };
    let out = response.headers_mut();
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(tag) = HeaderValue::from_str(tag) {
        out.insert(header::ETAG, tag);
    }
    if let Ok(policy) = HeaderValue::from_str(&policy(headers)) {
        out.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// `GET /`: the UI's page.
pub(crate) async fn page(headers: HeaderMap) -> Response {
    respond(&headers, &TAGS[0], "text/html; charset=utf-8", PAGE)
}

/// `GET /ui/<file>`: one of the UI's scripts or its stylesheet.
pub(crate) async fn asset(headers: HeaderMap, axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(n) => respond(&headers, &TAGS[n + 1], ASSETS[n].kind, ASSETS[n].body),
        None => (
            StatusCode::NOT_FOUND,
            [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
            "no such file\n",
        )
            .into_response(),
    }
}
