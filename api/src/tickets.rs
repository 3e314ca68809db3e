//! Download links: a path of this server with a `ticket` that stands in for the `Authorization`
//! header, so that a plain link (`<a href download>`) can fetch a job's log or an artifact and
//! the browser saves it to disk as it arrives, instead of a page holding it in memory.
//!
//! A ticket is sealed (AES-256-GCM) with a data key of its own in `data_keys`, so every server
//! process of an installation opens the tickets of the others, and nobody can make or alter one.
//! It holds the one path it opens, its expiry ([`LIFETIME`] after it was made) and who asked:
//! their API token's id, or the admin (with the first bytes of the admin token's hash, so a new
//! admin token ends the old one's tickets). It grants nothing by itself: when it is used, the
//! token must still be active and its holder is authorised for the build as a request with the
//! header would be, so a revoked token or a lowered role takes effect at once.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use monkeyci_commands::KeyStore;
use monkeyci_crypto::{DataKey, Sealed};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::auth::{AuthConfig, Caller, Grant};

/// How long a download link works.
pub const LIFETIME: Duration = Duration::minutes(5);

/// The owner of the tickets' data key in `data_keys` (not an aggregate: nothing deletes it).
const OWNER: Uuid = Uuid::from_u128(0x6d6f_6e6b_6579_6369_7469_636b_6574_7331);
/// The sealed value's field (its associated data with [`OWNER`]).
const FIELD: &str = "download-ticket";
const NONCE_LEN: usize = 12;

/// Who asked for a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    /// An API token, by id.
    Token(Uuid),
    /// The admin token, by the first 16 hex digits of its hash.
    Admin(String),
    /// Anyone, on a server without authentication.
    Anonymous,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ticket {
    path: String,
    expires: DateTime<Utc>,
    holder: Holder,
}

/// Why a download link was not made, or does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error(
        "this server has no master key, so it cannot make download links; send the token in the Authorization header"
    )]
    NoKeys,
    #[error("a caller without a token of its own cannot have download links")]
    NoHolder,
    #[error("the download link is not valid")]
    Invalid,
    #[error("the download link has expired; ask for a new one")]
    Expired,
    #[error("the download link is for another path")]
    OtherPath,
    #[error("download links are unavailable: {0}")]
    Unavailable(String),
}

/// Makes and opens tickets.
#[derive(Clone)]
pub struct Tickets {
    keys: Option<KeyStore>,
    key: Arc<OnceCell<DataKey>>,
    /// [`admin_fingerprint`] of the admin token's hash, if there is an admin token.
    admin: Option<String>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("keys", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// Tickets sealed with a data key from `keys`; `auth` tells who may hold one.
    pub fn new(keys: Option<KeyStore>, auth: &AuthConfig) -> Self {
        let admin = match auth {
            AuthConfig::Required { admin } => admin.as_ref().map(|hash| admin_fingerprint(hash.as_str())),
            AuthConfig::Disabled => None,
        };
        Self {
            keys,
            key: Arc::new(OnceCell::new()),
            admin,
        }
    }

    async fn key(&self) -> Result<&DataKey, TicketError> {
        let keys = self.keys.as_ref().ok_or(TicketError::NoKeys)?;
        self.key
            .get_or_try_init(|| async {
                keys.get_or_create(OWNER)
                    .await
                    .map_err(|e| TicketError::Unavailable(e.to_string()))
            })
            .await
    }

    /// A ticket that opens `path` for `caller` until [`LIFETIME`] from `now`.
    pub async fn make(&self, caller: &Caller, path: &str, now: DateTime<Utc>) -> Result<String, TicketError> {
        let holder = match (&caller.token, &caller.grant) {
            (Some(lease), _) => Holder::Token(lease.id),
            (None, Grant::Admin) if caller.actor == "admin" => {
                let fingerprint = caller.admin_fingerprint.clone().or_else(|| self.admin.clone());
                Holder::Admin(fingerprint.ok_or(TicketError::NoHolder)?)
            }
            (None, Grant::Admin) if caller.actor == "anonymous" => Holder::Anonymous,
            _ => return Err(TicketError::NoHolder),
        };
        let ticket = Ticket {
            path: path.to_owned(),
            expires: now + LIFETIME,
            holder,
        };
        let json = serde_json::to_string(&ticket).map_err(|e| TicketError::Unavailable(e.to_string()))?;
        let sealed = KeyStore::seal(self.key().await?, OWNER, FIELD, &json)
            .map_err(|e| TicketError::Unavailable(e.to_string()))?;
        let mut bytes = sealed.nonce.to_vec();
        bytes.extend_from_slice(&sealed.ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Who `ticket` was made for, if it is genuine, unexpired at `now` and made for `path`.
    pub async fn open(&self, ticket: &str, path: &str, now: DateTime<Utc>) -> Result<Holder, TicketError> {
        // Longer than any ticket this server makes: refused before any work.
        if ticket.len() > 1024 {
            return Err(TicketError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD.decode(ticket).map_err(|_| TicketError::Invalid)?;
        if bytes.len() <= NONCE_LEN {
            return Err(TicketError::Invalid);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let sealed = Sealed {
            nonce: nonce.try_into().map_err(|_| TicketError::Invalid)?,
            ciphertext: ciphertext.to_vec(),
        };
        let json = KeyStore::open_with(self.key().await?, OWNER, FIELD, &sealed).map_err(|_| TicketError::Invalid)?;
        let ticket: Ticket = serde_json::from_str(&json).map_err(|_| TicketError::Invalid)?;
        if ticket.expires <= now {
            return Err(TicketError::Expired);
        }
        if ticket.path != path {
            return Err(TicketError::OtherPath);
        }
        Ok(ticket.holder)
    }
}

/// The part of the admin token's hash a ticket records.
pub fn admin_fingerprint(hash: &str) -> String {
    hash.chars().take(16).collect()
}
