//! The end of a WebSocket session whose access went away.
//!
//! A session is authenticated once, at `connection_init`, but lives for hours. Every operation
//! it starts authenticates its token again (`ws.rs`); and the log's events that take access
//! away reach every session as [`AccessChange`]s, from one follower of the event feed: a
//! session whose token was revoked, whose user lost or changed a role, or whose org (or an org
//! its user is a member of) was deleted, is closed with 4403 as soon as the event is in the
//! log. A token's expiry ends its sessions by a timer.

use std::collections::HashSet;

use monkeyci_domain::access::TokenEvent;
use monkeyci_domain::org::OrgEvent;
use monkeyci_domain::DomainEvent;
use monkeyci_eventstore::RecordedEvent;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::auth::{Caller, Grant};

/// An event that may take access away from a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessChange {
    TokenRevoked(Uuid),
    /// A user became a member of an org: a later deletion of the org concerns them.
    MemberAdded {
        org: Uuid,
        user: Uuid,
    },
    /// A member's role changed, or the member left.
    MemberChanged {
        org: Uuid,
        user: Uuid,
    },
    OrgDeleted(Uuid),
}

impl AccessChange {
    /// The change `event` makes, if any; decoded as the domain's typed events.
    pub(crate) fn of(event: &RecordedEvent) -> Option<Self> {
        let (category, id) = event.stream_id.split_once('-')?;
        let id = Uuid::parse_str(id).ok()?;
        match category {
            "token" => match TokenEvent::decode(&event.event_type, event.schema_version, &event.data).ok()? {
                TokenEvent::TokenRevoked => Some(Self::TokenRevoked(id)),
                TokenEvent::TokenCreated { .. } => None,
            },
            "org" => match OrgEvent::decode(&event.event_type, event.schema_version, &event.data).ok()? {
                OrgEvent::OrgDeleted => Some(Self::OrgDeleted(id)),
                OrgEvent::MemberAdded { user_id, .. } => Some(Self::MemberAdded {
                    org: id,
                    user: user_id.as_uuid(),
                }),
                OrgEvent::MemberRoleChanged { user_id, .. } | OrgEvent::MemberRemoved { user_id } => {
                    Some(Self::MemberChanged {
                        org: id,
                        user: user_id.as_uuid(),
                    })
                }
                OrgEvent::OrgCreated { .. } | OrgEvent::OrgRenamed { .. } => None,
            },
            _ => None,
        }
    }
}

/// Where [`AccessChange`]s are published to every session.
#[derive(Debug, Clone)]
pub(crate) struct AccessChanges(broadcast::Sender<AccessChange>);

impl AccessChanges {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(1024).0)
    }

    pub(crate) fn publish(&self, change: AccessChange) {
        // No session listening is fine.
        let _ = self.0.send(change);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AccessChange> {
        self.0.subscribe()
    }
}

/// What one session's access rests on.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    caller: Caller,
    /// For a user's session: the orgs the user has a role in.
    orgs: HashSet<Uuid>,
}

impl Watch {
    pub(crate) fn new(caller: Caller, orgs: impl IntoIterator<Item = Uuid>) -> Self {
        Self {
            caller,
            orgs: orgs.into_iter().collect(),
        }
    }

    /// How long until the session's token expires; `None` without a token of its own.
    pub(crate) fn expires_in(&self) -> Option<std::time::Duration> {
        let lease = self.caller.token?;
        Some((lease.expires_at - chrono::Utc::now()).to_std().unwrap_or_default())
    }

    /// Why `change` ends the session, if it does. A user's new membership is remembered.
    pub(crate) fn ends(&mut self, change: AccessChange) -> Option<&'static str> {
        let token = self.caller.token.map(|t| t.id);
        match (change, &self.caller.grant) {
            (AccessChange::TokenRevoked(id), _) if Some(id) == token => Some("the token was revoked"),
            (AccessChange::OrgDeleted(org), Grant::Org { org_id, .. }) if org == *org_id => {
                Some("the token's org was deleted")
            }
            (AccessChange::OrgDeleted(org), Grant::User(_)) if self.orgs.contains(&org) => {
                Some("an org of this user was deleted; connect again")
            }
            (AccessChange::MemberChanged { user, .. }, Grant::User(me)) if user == *me => {
                Some("this user's role in an org changed; connect again")
            }
            (AccessChange::MemberAdded { org, user }, Grant::User(me)) if user == *me => {
                self.orgs.insert(org);
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use monkeyci_domain::access::Role;

    use super::*;
    use crate::auth::TokenLease;

    fn caller(grant: Grant, token: Uuid) -> Caller {
        Caller {
            actor: "t".into(),
            grant,
            token: Some(TokenLease {
                id: token,
                expires_at: Utc::now(),
            }),
            admin_fingerprint: None,
        }
    }

    #[test]
    fn only_changes_to_the_sessions_own_access_end_it() {
        let (me, other, token, org, other_org) = (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            Uuid::from_u128(4),
            Uuid::from_u128(5),
        );
        let mut user = Watch::new(caller(Grant::User(me), token), [org]);
        let mut org_token = Watch::new(
            caller(
                Grant::Org {
                    org_id: org,
                    role: Role::Owner,
                },
                token,
            ),
            [],
        );

        // The abuse first: nothing that concerns someone else ends a session...
        for change in [
            AccessChange::TokenRevoked(other),
            AccessChange::MemberChanged { org, user: other },
            AccessChange::OrgDeleted(other_org),
        ] {
            assert_eq!(user.ends(change), None, "{change:?}");
            assert_eq!(org_token.ends(change), None, "{change:?}");
        }
        assert_eq!(org_token.ends(AccessChange::MemberChanged { org, user: me }), None);
        // ...and everything that concerns the session does.
        assert!(user.ends(AccessChange::TokenRevoked(token)).is_some());
        assert!(user
            .ends(AccessChange::MemberChanged {
                org: other_org,
                user: me
            })
            .is_some());
        assert!(user.ends(AccessChange::OrgDeleted(org)).is_some());
        assert!(org_token.ends(AccessChange::TokenRevoked(token)).is_some());
        assert!(org_token.ends(AccessChange::OrgDeleted(org)).is_some());
        // A user added to an org after connecting loses the session when that org goes.
        assert_eq!(
            user.ends(AccessChange::MemberAdded {
                org: other_org,
                user: me
            }),
            None
        );
        assert!(user.ends(AccessChange::OrgDeleted(other_org)).is_some());
    }
}
