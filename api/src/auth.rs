//! Who is calling, and what they may do.
//!
//! A request carries `Authorization: Bearer <token>` (HTTP) or `{"Authorization": "Bearer
//! <token>"}` / `{"token": "<token>"}` in `connection_init` (WebSocket). The token is the admin
//! token from the server's configuration, or an API token found by its SHA-256 in `api_tokens`
//! (not revoked, not expired). A user token acts with the user's role in each org (`orgs.members`);
//! an org token acts in its one org with its one role.
//!
//! Authorisation is by org: reading needs any role, changing builds and repos needs `member`,
//! managing the org needs `owner`. Something in an org the caller has no role in is reported as
//! `NOT_FOUND`, exactly like something that does not exist, so ids do not leak across orgs; a
//! role that is too small is `FORBIDDEN`.

use std::fmt;

use async_graphql::{Context, Error};
use monkeyci_crypto::TokenHash;
use monkeyci_domain::access::Role;
use sqlx::PgPool;
use uuid::Uuid;

use crate::errors::{client, not_found, Code};
use crate::schema::{api, ApiContext};

/// How requests are authenticated.
#[derive(Clone, Default)]
pub enum AuthConfig {
    /// Every caller acts as the admin: for tests and benchmarks embedding the API, never for a
    /// server others can reach.
    #[default]
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
}

impl Default for Caller {
    fn default() -> Self {
        Self {
            actor: "anonymous".into(),
            grant: Grant::Admin,
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
        return Ok(Caller::default());
    };
    let token = token.ok_or(AuthFailure::Missing)?;
    if admin.as_ref().is_some_and(|hash| hash.matches(token)) {
        return Ok(Caller {
            actor: "admin".into(),
            grant: Grant::Admin,
        });
    }
    // Read-your-writes for tokens too: a token created, or revoked, by a request that has
    // returned is seen as such by every later request.
    api.consistency
        .read_your_writes()
        .await
        .map_err(|_| AuthFailure::Unavailable)?;
    let found = lookup(&api.pool, TokenHash::of(token).as_str())
        .await
        .map_err(|_| AuthFailure::Unavailable)?;
    found.ok_or(AuthFailure::Invalid)
}

/// A row of `api_tokens`: id, kind, user, org, role.
type TokenGrantRow = (Uuid, String, Option<Uuid>, Option<Uuid>, Option<String>);

async fn lookup(pool: &PgPool, hash: &str) -> Result<Option<Caller>, sqlx::Error> {
    let row: Option<TokenGrantRow> = sqlx::query_as(
        "SELECT id, kind, user_id, org_id, role FROM api_tokens \
         WHERE hash = $1 AND NOT revoked AND expires_at > now()",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(id, kind, user_id, org_id, role)| {
        let grant = match (kind.as_str(), user_id, org_id, role) {
            ("user", Some(user_id), _, _) => Grant::User(user_id),
            ("org", _, Some(org_id), Some(role)) => Grant::Org {
                org_id,
                role: Role::parse(&role).ok()?,
            },
            _ => return None,
        };
        let actor = match &grant {
            Grant::User(user_id) => format!("user:{user_id}"),
            _ => format!("token:{id}"),
        };
        Some(Caller { actor, grant })
    }))
}

pub(crate) fn caller(ctx: &Context<'_>) -> Caller {
    ctx.data_opt::<Caller>().cloned().unwrap_or_default()
}

/// The caller's role in `org_id`; `None` if it has none (or the org does not exist).
pub(crate) async fn role_in(api: &ApiContext, caller: &Caller, org_id: Uuid) -> Result<Option<Role>, Error> {
    match &caller.grant {
        Grant::Admin => Ok(Some(Role::Owner)),
        Grant::Org { org_id: own, role } => Ok((*own == org_id).then_some(*role)),
        Grant::User(user_id) => {
            let role: Option<Option<String>> =
                sqlx::query_scalar("SELECT members ->> $2 FROM orgs WHERE id = $1 AND NOT deleted")
                    .bind(org_id)
                    .bind(user_id.to_string())
                    .fetch_optional(&api.pool)
                    .await
                    .map_err(|e| crate::errors::internal(&e))?;
            Ok(role.flatten().and_then(|r| Role::parse(&r).ok()))
        }
    }
}

/// Whether the caller may read `org_id`.
pub(crate) async fn can_read(ctx: &Context<'_>, org_id: Uuid) -> Result<bool, Error> {
    Ok(role_in(api(ctx), &caller(ctx), org_id).await?.is_some())
}

/// Fails unless the caller has at least `needed` in `org_id`: `NOT_FOUND` (named `what`) without
/// any role, `FORBIDDEN` with too small a role.
pub(crate) async fn require(ctx: &Context<'_>, org_id: Uuid, needed: Role, what: &str) -> Result<(), Error> {
    require_as(api(ctx), &caller(ctx), org_id, needed, what).await
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
    match caller(ctx).grant {
        Grant::Admin => Ok(()),
        _ => Err(client(Code::Forbidden, "only the admin can do this")),
    }
}
