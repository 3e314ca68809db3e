//! Git-host webhooks: check that a delivery came from the host, and turn a push into a build
//! trigger. Pure: no IO, no clock, no randomness. The HTTP layer hands over the host (from the URL
//! segment), the request headers, the raw body and the webhook's secret.
//!
//! | host | signature header | algorithm | event header | delivery header |
//! |---|---|---|---|---|
//! | GitHub | `X-Hub-Signature-256` | `sha256=` + hex HMAC-SHA256 of the body | `X-GitHub-Event` | `X-GitHub-Delivery` |
//! | GitLab | `X-Gitlab-Token` | the secret itself (compared as SHA-256 digests) | `X-Gitlab-Event` | `Idempotency-Key`, else `X-Gitlab-Event-UUID`, else `X-Gitlab-Webhook-UUID` |
//! | Bitbucket (Cloud and Data Center) | `X-Hub-Signature` | `sha256=` + hex HMAC-SHA256 of the body | `X-Event-Key` | `X-Request-UUID` (Cloud), else `X-Request-Id` (Data Center) |
//! | Gitea | `X-Gitea-Signature` | hex HMAC-SHA256 of the body, no prefix | `X-Gitea-Event`, else `X-Gitea-Event-Type` | `X-Gitea-Delivery` |
//! | Forgejo | `X-Forgejo-Signature`, else `X-Gitea-Signature` | hex HMAC-SHA256 of the body, no prefix | `X-Forgejo-Event`, else `X-Forgejo-Event-Type`, else the Gitea names | `X-Forgejo-Delivery`, else `X-Gitea-Delivery` |
//!
//! Events that become something other than [`Event::Ignored`]:
//!
//! | host | ping | push |
//! |---|---|---|
//! | GitHub | `ping` | `push` |
//! | GitLab | none: a test delivery is an ordinary push | `Push Hook`, `Tag Push Hook` |
//! | Bitbucket | `diagnostics:ping` (Data Center) | `repo:push` (Cloud), `repo:refs_changed` (Data Center) |
//! | Gitea, Forgejo | a `push` whose `before` equals `after` (the "Test delivery" button) | `push` |
//!
//! Order of use: [`verify`] first, over the exact bytes received, then [`parse_event`], which reads
//! JSON only: configure the host to send `application/json`. (Gitea and Forgejo sign the JSON even
//! when they post it form-encoded, so there a form body would not even verify.)
//!
//! [`delivery_id`] names the delivery so the caller can drop a redelivered one; scope it by host
//! and webhook before using it as a key. This crate does not limit the body's size: the HTTP layer
//! must.

mod bitbucket;
mod delivery;
mod event;
mod github;
mod gitlab;
mod headers;
mod host;
mod verify;

pub use delivery::delivery_id;
pub use event::{parse_event, Event, ParseError, Push, PushRef, MAX_CHANGED_FILES};
pub use headers::Headers;
pub use host::{Host, UnknownHost};
pub use verify::{sign, verify, VerifyError};
