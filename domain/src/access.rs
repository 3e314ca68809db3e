//! Who may do what: users, their roles in orgs, and API tokens.
//!
//! A user's role in an org is kept in the org's stream (`MemberAdded`, `MemberRoleChanged`,
//! `MemberRemoved`): changing members is deciding on the org, and "the last owner cannot leave"
//! is a rule of one aggregate. A token has a stream of its own and holds only the SHA-256 of its
//! secret; it acts either for a user (with that user's roles) or for one org with one role
//! (automation). Expiry times come from the caller: the domain has no clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ValidationError};
use crate::event::DomainEvent;
use crate::ids::{OrgId, TokenId, UserId};
use crate::values::Name;

/// A user's role in an org. Each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of the org.
    Viewer,
    /// Also triggers, cancels and retries builds and changes repos.
    Member,
    /// Also manages members, tokens, secrets and the org itself.
    Owner,
}

impl Role {
    /// The lower-case name used in read models and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Owner => "owner",
        }
    }

    /// Parses `viewer`, `member` or `owner`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "viewer" => Ok(Self::Viewer),
            "member" => Ok(Self::Member),
            "owner" => Ok(Self::Owner),
            _ => Err(ValidationError::new("role", "must be viewer, member or owner")),
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// What happened to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    /// The user was created.
    UserCreated { name: Name },
}

impl DomainEvent for UserEvent {}

/// A user, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: Option<Name>,
}

impl Aggregate for User {
    type Event = UserEvent;
    const CATEGORY: &'static str = "user";

    fn apply(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserCreated { name } => self.name = Some(name.clone()),
        }
    }
}

impl User {
    /// Whether the user exists.
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }

    /// Fails with `NotFound` unless the user exists.
    pub fn ensure_exists(&self, id: UserId) -> Result<(), DomainError> {
        if self.exists() {
            Ok(())
        } else {
            Err(DomainError::NotFound {
                kind: "user",
                id: id.to_string(),
            })
        }
    }

    /// Creates the user.
    pub fn create(&self, id: UserId, name: Name) -> Result<Vec<UserEvent>, DomainError> {
        if self.exists() {
            return Err(DomainError::AlreadyExists {
                kind: "user",
                id: id.to_string(),
            });
        }
        Ok(vec![UserEvent::UserCreated { name }])
    }
}

/// Whom a token acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TokenSubject {
    /// The user, with the user's roles in every org.
    User { user_id: UserId },
    /// One org, with one role there, for automation.
    Org { org_id: OrgId, role: Role },
}

/// What happened to an API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TokenEvent {
    /// The token was issued. Only the SHA-256 (hex) of its secret is kept.
    TokenCreated {
        subject: TokenSubject,
        name: Name,
        hash: String,
        expires_at: DateTime<Utc>,
    },
    /// The token no longer works.
    TokenRevoked,
}

impl DomainEvent for TokenEvent {}

/// An API token, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiToken {
    pub subject: Option<TokenSubject>,
    /// The SHA-256 (hex) of the token's text.
    pub hash: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl Aggregate for ApiToken {
    type Event = TokenEvent;
    const CATEGORY: &'static str = "token";

    fn apply(&mut self, event: &TokenEvent) {
        match event {
            TokenEvent::TokenCreated {
                subject,
                hash,
                expires_at,
                ..
            } => {
                self.subject = Some(*subject);
                self.hash = Some(hash.clone());
                self.expires_at = Some(*expires_at);
            }
            TokenEvent::TokenRevoked => self.revoked = true,
        }
    }
}

impl ApiToken {
    fn not_found(id: TokenId) -> DomainError {
        DomainError::NotFound {
            kind: "token",
            id: id.to_string(),
        }
    }

    /// Issues the token. `now` is the caller's clock; the expiry must lie after it.
    pub fn create(
        &self,
        id: TokenId,
        subject: TokenSubject,
        name: Name,
        hash: String,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TokenEvent>, DomainError> {
        if self.subject.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "token",
                id: id.to_string(),
            });
        }
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ValidationError::new("hash", "must be 64 lower-case hexadecimal digits").into());
        }
        if expires_at <= now {
            return Err(ValidationError::new("expiresAt", "must be in the future").into());
        }
        Ok(vec![TokenEvent::TokenCreated {
            subject,
            name,
            hash,
            expires_at,
        }])
    }

    /// The subject, hash and expiry of a token that works at `now`: issued, not revoked, not
    /// expired.
    pub fn active(&self, now: DateTime<Utc>) -> Option<(TokenSubject, &str, DateTime<Utc>)> {
        match (self.subject, &self.hash, self.expires_at) {
            (Some(subject), Some(hash), Some(expires_at)) if !self.revoked && expires_at > now => {
                Some((subject, hash, expires_at))
            }
            _ => None,
        }
    }

    /// Revokes the token; revoking twice changes nothing.
    pub fn revoke(&self, id: TokenId) -> Result<Vec<TokenEvent>, DomainError> {
        if self.subject.is_none() {
            return Err(Self::not_found(id));
        }
        if self.revoked {
            return Ok(vec![]);
        }
        Ok(vec![TokenEvent::TokenRevoked])
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::testing::given;

    fn user_id() -> UserId {
        UserId::from_uuid(Uuid::from_u128(7))
    }

    fn token_id() -> TokenId {
        TokenId::from_uuid(Uuid::from_u128(8))
    }

    fn name(raw: &str) -> Name {
        Name::parse(raw).expect("valid name")
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0)
            .single()
            .expect("valid time")
    }

    fn created() -> TokenEvent {
        TokenEvent::TokenCreated {
            subject: TokenSubject::User { user_id: user_id() },
            name: name("ci"),
            hash: "ab".repeat(32),
            expires_at: at(12),
        }
    }

    #[test]
    fn roles_are_ordered_viewer_member_owner() {
        assert!(Role::Owner.allows(Role::Member) && Role::Member.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Member) && !Role::Member.allows(Role::Owner));
        assert_eq!(Role::parse("member"), Ok(Role::Member));
        assert!(Role::parse("admin").is_err());
    }

    #[test]
    fn a_user_is_created_once() {
        given::<User>(vec![])
            .when(|u| u.create(user_id(), name("Ada")))
            .then(vec![UserEvent::UserCreated { name: name("Ada") }]);
        given::<User>(vec![UserEvent::UserCreated { name: name("Ada") }])
            .when(|u| u.create(user_id(), name("Ada")))
            .then_err(DomainError::AlreadyExists {
                kind: "user",
                id: user_id().to_string(),
            });
    }

    #[test]
    fn a_token_keeps_only_a_hash_and_must_expire_in_the_future() {
        let subject = TokenSubject::User { user_id: user_id() };
        given::<ApiToken>(vec![])
            .when(|t| t.create(token_id(), subject, name("ci"), "ab".repeat(32), at(12), at(10)))
            .then(vec![created()]);
        given::<ApiToken>(vec![])
            .when(|t| t.create(token_id(), subject, name("ci"), "ab".repeat(32), at(9), at(10)))
            .then_err(ValidationError::new("expiresAt", "must be in the future").into());
        given::<ApiToken>(vec![])
            .when(|t| t.create(token_id(), subject, name("ci"), "mci_plaintext".into(), at(12), at(10)))
            .then_err(ValidationError::new("hash", "must be 64 lower-case hexadecimal digits").into());
    }

    #[test]
    fn a_token_is_revoked_once_and_only_if_it_exists() {
        given::<ApiToken>(vec![created()])
            .when(|t| t.revoke(token_id()))
            .then(vec![TokenEvent::TokenRevoked]);
        given::<ApiToken>(vec![created(), TokenEvent::TokenRevoked])
            .when(|t| t.revoke(token_id()))
            .then(vec![]);
        given::<ApiToken>(vec![])
            .when(|t| t.revoke(token_id()))
            .then_err(DomainError::NotFound {
                kind: "token",
                id: token_id().to_string(),
            });
    }
}
