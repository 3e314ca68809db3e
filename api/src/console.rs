//! The GraphQL console served at `GET /graphql` to browsers: GraphiQL with a token field, every
//! file of it compiled into the binary, so that the page requests nothing from another host.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

macro_rules! installed {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/web/node_modules/", $file))
    };
}

/// Only this server's own scripts, styles and WebSocket; inline styles for GraphiQL's editor,
/// `data:` fonts and images from its stylesheet.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    font-src 'self' data:; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's page.
pub(crate) fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        include_str!("../../web/graphiql/index.html"),
    )
        .into_response()
}

/// `GET /graphiql/<file>`: one of the page's scripts and stylesheets.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (installed!("graphiql/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (installed!("graphiql/graphiql.min.css"), "text/css"),
        "react.production.min.js" => (installed!("react/umd/react.production.min.js"), "text/javascript"),
        "react-dom.production.min.js" => (
            installed!("react-dom/umd/react-dom.production.min.js"),
            "text/javascript",
        ),
        "console.js" => (include_bytes!("../../web/graphiql/console.js"), "text/javascript"),
        "console.css" => (include_bytes!("../../web/graphiql/console.css"), "text/css"),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "public, max-age=3600".to_owned()),
        ],
        body,
    )
        .into_response()
}
