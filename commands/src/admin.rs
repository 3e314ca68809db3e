//! The admin token kept in the database (table `installation`): only its SHA-256 is stored, so a
//! restart keeps the token people have pasted into the web UI, the CLI or Terraform, and
//! `monkeyci admin-token` can replace it without restarting any server.

use chrono::{DateTime, Utc};
use monkeyci_crypto::{Token, TokenHash};
use sqlx::PgPool;

/// What every admin token starts with.
pub const ADMIN_TOKEN_PREFIX: &str = "mci_admin_";

/// The stored admin token's hash and when it was made, if one was made.
pub async fn stored_admin_token(pool: &PgPool) -> Result<Option<(TokenHash, DateTime<Utc>)>, sqlx::Error> {
    let row: Option<(Option<String>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT admin_token_hash, admin_token_made_at FROM installation")
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((Some(hash), Some(made_at))) => TokenHash::parse(&hash).ok().map(|hash| (hash, made_at)),
        _ => None,
    })
}

/// Makes an admin token and stores its hash. With `replace`, the new token replaces the stored
/// one (which stops working at once on every server); without, a token is made only if none is
/// stored, and `None` says one was. The token itself is returned and kept nowhere.
pub async fn make_admin_token(pool: &PgPool, replace: bool) -> Result<Option<Token>, sqlx::Error> {
    let (token, hash) =
        Token::generate(ADMIN_TOKEN_PREFIX).map_err(|e| sqlx::Error::Protocol(format!("making a token: {e}")))?;
    let stored = sqlx::query(
        "UPDATE installation SET admin_token_hash = $1, admin_token_made_at = now() \
         WHERE $2 OR admin_token_hash IS NULL",
    )
    .bind(hash.as_str())
    .bind(replace)
    .execute(pool)
    .await?;
    Ok((stored.rows_affected() == 1).then_some(token))
}
