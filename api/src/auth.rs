//! Who is calling, and what they may do.
//!
//! A request carries `Authorization: Bearer <token>` (HTTP) or `{"Authorization": "Bearer
//! <token>"}` / `{"token": "<token>"}` in `connection_init` (WebSocket). The token is the admin
//! token from the server's configuration, or an API token: one that carries its id is checked
//! against its stream in the log (its SHA-256, not revoked, not expired) without waiting for any
//! read model; an older one is found by its SHA-256 in `api_tokens`. A user token acts with the user's role in each org (`orgs.members`);
//! an org token acts in its one org with its one role.
//!
//! Authorisation is by org: reading needs any role, changing builds and repos needs `member`,
//! managing the org needs `owner`. Something in an org the caller has no role in is reported as
//! `NOT_FOUND`, exactly like something that does not exist, so ids do not leak across orgs; a
//! role that is too small is `FORBIDDEN`.

use std::fmt;

use async_graphql::{Context, Error};
use chrono::{DateTime, Utc};
use monkeyci_crypto::{Token, TokenHash};
use monkeyci_domain::access::{ApiToken, Role, TokenSubject};
use monkeyci_domain::org::Org;
use monkeyci_domain::{OrgId, TokenId};
use monkeyci_projections::queries;
use monkeyci_projections::TokenRow;
use uuid::Uuid;

use crate::errors::{client, not_found, Code};
use crate::schema::{api, ApiContext};
use crate::tickets::{admin_fingerprint, Holder};

/// What every API token starts with (tokens carry their id after it; see
/// `Token::generate_with_id`).
pub const TOKEN_PREFIX: &str = "mci_";

/// How requests are authenticated.
#[derive(Clone)]
pub enum AuthConfig {
    /// Every caller acts as the admin: for tests and benchmarks embedding the API, never for a
    /// server others can reach (`monkeyci server` always requires tokens).
    Disabled,
    /// Every request needs a valid token; `admin` is the SHA-256 of the configured admin token.
    Required { admin: Option<TokenHash> },
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("Disabled"),
            Self::Required { admin } => write!(f, "Required {{ admin token: {} }}", admin.is_some()),
        }
    }
}

/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Everything, in every org.
    Admin,
    /// What the user's roles allow.
    User(Uuid),
    /// `role` in one org.
    Org { org_id: Uuid, role: Role },
}

/// Who sends a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Recorded on every event the request causes.
    pub actor: String,
    pub grant: Grant,
    /// The API token it was authenticated with, if any (not the admin token): a WebSocket
    /// session ends when it is revoked or expires.
    pub token: Option<TokenLease>,
    /// For the admin: [`admin_fingerprint`] of the admin token used (the configured one or the
    /// one kept in the database), which its download tickets record.
    pub admin_fingerprint: Option<String>,
}

/// The API token of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLease {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
}

impl Caller {
    /// Every caller when authentication is [`AuthConfig::Disabled`].
    fn anonymous_admin() -> Self {
        Self {
            actor: "anonymous".into(),
            grant: Grant::Admin,
            token: None,
            admin_fingerprint: None,
        }
    }

    /// The admin, authenticated with the admin token whose hash is `hash`.
    fn admin(hash: &TokenHash) -> Self {
        Self {
            actor: "admin".into(),
            grant: Grant::Admin,
            token: None,
            admin_fingerprint: Some(admin_fingerprint(hash.as_str())),
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Unavailable,
}

impl AuthFailure {
    /// For the client: never says whether a token exists.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "send a token: Authorization: Bearer <token>",
            Self::Invalid => "the token is not valid (unknown, revoked or expired)",
            Self::Unavailable => "cannot check the token right now; try again",
        }
    }
}

/// The token of an `Authorization: Bearer …` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Finds who `token` is.
pub async fn authenticate(api: &ApiContext, config: &AuthConfig, token: Option<&str>) -> Result<Caller, AuthFailure> {
    let AuthConfig::Required { admin } = config else {
        return Ok(Caller::anonymous_admin());
    };
    let token = token.ok_or(AuthFailure::Missing)?;
    if let Some(hash) = admin.as_ref().filter(|hash| hash.matches(token)) {
        return Ok(Caller::admin(hash));
    }
    if token.starts_with(monkeyci_commands::ADMIN_TOKEN_PREFIX) {
        // The admin token kept in the database (`monkeyci admin-token` may have replaced it
        // since this server started, so it is read each time).
        return match stored_admin(api).await? {
            Some(hash) if hash.matches(token) => Ok(Caller::admin(&hash)),
            _ => Err(AuthFailure::Invalid),
        };
    }
    match Token::embedded_id(token, TOKEN_PREFIX) {
        Some(id) => from_log(api, token, TokenId::from_uuid(Uuid::from_bytes(id))).await,
        None => from_read_model(api, token).await,
    }
}

/// The hash of the admin token kept in the database, if one is.
async fn stored_admin(api: &ApiContext) -> Result<Option<TokenHash>, AuthFailure> {
    monkeyci_commands::stored_admin_token(api.store.pool())
        .await
        .map(|stored| stored.map(|(hash, _)| hash))
        .map_err(|_| AuthFailure::Unavailable)
}

/// A token that carries its id, checked against its own stream in the log: what a request
/// that has returned created or revoked is seen at once, an unknown id costs one lookup, and no
/// request waits for the read models to authenticate.
async fn from_log(api: &ApiContext, token: &str, id: TokenId) -> Result<Caller, AuthFailure> {
    token_caller(api, id, Some(token)).await
}

/// Whom the active token `id` acts for, if `secret` (when given) is that token. A download
/// ticket names its token without its secret: the ticket itself is the proof.
async fn token_caller(api: &ApiContext, id: TokenId, secret: Option<&str>) -> Result<Caller, AuthFailure> {
    let state = api
        .commands
        .current::<ApiToken>(id)
        .await
        .map_err(|_| AuthFailure::Unavailable)?;
    let (subject, hash, expires_at) = state.active(Utc::now()).ok_or(AuthFailure::Invalid)?;
    let hash = TokenHash::parse(hash).map_err(|_| AuthFailure::Invalid)?;
    if secret.is_some_and(|token| !hash.matches(token)) {
        return Err(AuthFailure::Invalid);
    }
    let (grant, actor) = match subject {
        TokenSubject::User { user_id } => (Grant::User(user_id.as_uuid()), format!("user:{user_id}")),
        TokenSubject::Org { org_id, role } => {
            refuse_if_org_deleted(api, org_id.as_uuid()).await?;
            (
                Grant::Org {
                    org_id: org_id.as_uuid(),
                    role,
                },
                format!("token:{id}"),
            )
        }
    };
    Ok(Caller {
        actor,
        grant,
        token: Some(TokenLease {
            id: id.as_uuid(),
            expires_at,
        }),
        admin_fingerprint: None,
    })
}

/// Whom a download ticket acts for (see [`crate::tickets`]): its token, if still active, or the
/// admin, if the admin token is still the one it was made with.
pub async fn ticket_holder(api: &ApiContext, config: &AuthConfig, holder: &Holder) -> Result<Caller, AuthFailure> {
    match (holder, config) {
        (Holder::Anonymous, AuthConfig::Disabled) => Ok(Caller::anonymous_admin()),
        (Holder::Admin(fingerprint), AuthConfig::Required { admin: Some(hash) })
            if admin_fingerprint(hash.as_str()) == *fingerprint =>
        {
            Ok(Caller::admin(hash))
        }
        (Holder::Admin(fingerprint), AuthConfig::Required { .. }) => match stored_admin(api).await? {
            Some(hash) if admin_fingerprint(hash.as_str()) == *fingerprint => Ok(Caller::admin(&hash)),
            _ => Err(AuthFailure::Invalid),
        },
        (Holder::Token(id), AuthConfig::Required { .. }) => token_caller(api, TokenId::from_uuid(*id), None).await,
        _ => Err(AuthFailure::Invalid),
    }
}

/// A token from before tokens carried their id, found by its hash in the read model. No such
/// token is made any more, so one the read model does not know is refused without waiting; a
/// known one waits for read-your-writes, so that a revoke that has returned is seen.
async fn from_read_model(api: &ApiContext, token: &str) -> Result<Caller, AuthFailure> {
    let hash = TokenHash::of(token);
    let lookup = || async {
        queries::active_token(&api.read, hash.as_str())
            .await
            .map_err(|_| AuthFailure::Unavailable)
    };
    if lookup().await?.is_none() {
        return Err(AuthFailure::Invalid);
    }
    api.consistency
        .read_your_writes()
        .await
        .map_err(|_| AuthFailure::Unavailable)?;
    let caller = lookup().await?.and_then(caller_of).ok_or(AuthFailure::Invalid)?;
    if let Grant::Org { org_id, .. } = caller.grant {
        refuse_if_org_deleted(api, org_id).await?;
    }
    Ok(caller)
}

/// An org's token acts for its org only: once the org is deleted (seen in the org's own stream,
/// so at once) the token authenticates nothing, as if it were revoked.
async fn refuse_if_org_deleted(api: &ApiContext, org_id: Uuid) -> Result<(), AuthFailure> {
    let org = api
        .commands
        .current::<Org>(OrgId::from_uuid(org_id))
        .await
        .map_err(|_| AuthFailure::Unavailable)?;
    if org.is_active() {
        Ok(())
    } else {
        Err(AuthFailure::Invalid)
    }
}

/// Whom a token row acts for; `None` for a row that names no one (never written so).
fn caller_of(row: TokenRow) -> Option<Caller> {
    let grant = match (row.kind.as_str(), row.user_id, row.org_id, row.role.as_deref()) {
        ("user", Some(user_id), _, _) => Grant::User(user_id),
        ("org", _, Some(org_id), Some(role)) => Grant::Org {
            org_id,
            role: Role::parse(role).ok()?,
        },
        _ => return None,
    };
    let actor = match &grant {
        Grant::User(user_id) => format!("user:{user_id}"),
        _ => format!("token:{}", row.id),
    };
    Some(Caller {
        actor,
        grant,
        token: Some(TokenLease {
            id: row.id,
            expires_at: row.expires_at,
        }),
        admin_fingerprint: None,
    })
}

/// The caller of the request. Every route attaches one after authenticating; a request without
/// one is a bug, and it is refused as `UNAUTHENTICATED` rather than given any default.
pub(crate) fn caller(ctx: &Context<'_>) -> Result<Caller, Error> {
    ctx.data_opt::<Caller>().cloned().ok_or_else(|| {
        tracing::error!("a GraphQL request reached a resolver without an authenticated caller");
        client(Code::Unauthenticated, AuthFailure::Missing.message())
    })
}

/// The caller's role in `org_id`; `None` if it has none (or the org does not exist).
pub(crate) async fn role_in(api: &ApiContext, caller: &Caller, org_id: Uuid) -> Result<Option<Role>, Error> {
    match &caller.grant {
        Grant::Admin => Ok(Some(Role::Owner)),
        Grant::Org { org_id: own, role } => Ok((*own == org_id).then_some(*role)),
        Grant::User(user_id) => {
            let role = queries::member_role(&api.read, org_id, *user_id)
                .await
                .map_err(|e| crate::errors::internal(&e))?;
            Ok(role.and_then(|r| Role::parse(&r).ok()))
        }
    }
}

/// Whether the caller may read `org_id`.
pub(crate) async fn can_read(ctx: &Context<'_>, org_id: Uuid) -> Result<bool, Error> {
    Ok(role_in(api(ctx), &caller(ctx)?, org_id).await?.is_some())
}

/// Fails unless the caller has at least `needed` in `org_id`: `NOT_FOUND` (named `what`) without
/// any role, `FORBIDDEN` with too small a role.
pub(crate) async fn require(ctx: &Context<'_>, org_id: Uuid, needed: Role, what: &str) -> Result<(), Error> {
    require_as(api(ctx), &caller(ctx)?, org_id, needed, what).await
}

/// [`require`] outside a GraphQL context.
pub(crate) async fn require_as(
    api: &ApiContext,
    caller: &Caller,
    org_id: Uuid,
    needed: Role,
    what: &str,
) -> Result<(), Error> {
    match role_in(api, caller, org_id).await? {
        None => Err(not_found(what)),
        Some(role) if role.allows(needed) => Ok(()),
        Some(role) => Err(client(
            Code::Forbidden,
            format!(
                "a {} cannot do this; it needs the {} role",
                role.as_str(),
                needed.as_str()
            ),
        )),
    }
}

/// Fails unless the caller is the admin.
pub(crate) fn require_admin(ctx: &Context<'_>) -> Result<(), Error> {
    match caller(ctx)?.grant {
        Grant::Admin => Ok(()),
        _ => Err(client(Code::Forbidden, "only the admin can do this")),
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn actor(&self, ctx: &Context<'_>) -> Result<String, Error> {
            Ok(caller(ctx)?.actor)
        }
    }

    #[tokio::test]
    async fn a_request_without_a_caller_is_unauthenticated_never_a_default_one() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);

        let refused = schema.execute(Request::new("{ actor }")).await;
        let given = schema
            .execute(Request::new("{ actor }").data(Caller {
                actor: "user:1".into(),
                grant: Grant::User(Uuid::nil()),
                token: None,
                admin_fingerprint: None,
            }))
            .await;

        assert_eq!(refused.data, async_graphql::Value::Null);
        let extensions = refused.errors[0].extensions.as_ref().expect("extensions");
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("UNAUTHENTICATED"))
        );
        assert_eq!(given.data.to_string(), r#"{actor: "user:1"}"#);
    }
}
