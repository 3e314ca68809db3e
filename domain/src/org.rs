//! Organisations, and the claims that keep their slugs unique.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::access::{Role, User};
use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::ids::{OrgId, UserId};
use crate::values::{Name, OrgSlug};

/// What happened to an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrgEvent {
    /// The org was created.
    OrgCreated { name: Name, slug: OrgSlug },
    /// The org's display name changed.
    OrgRenamed { name: Name },
    /// The org was deleted; its slug is free again.
    OrgDeleted,
    /// A user joined the org with a role.
    MemberAdded { user_id: UserId, role: Role },
    /// A member's role changed.
    MemberRoleChanged { user_id: UserId, role: Role },
    /// A user left the org.
    MemberRemoved { user_id: UserId },
}

impl DomainEvent for OrgEvent {}

/// An org's state, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Org {
    /// Name and slug, once created.
    pub created: Option<(Name, OrgSlug)>,
    /// Whether the org was deleted.
    pub deleted: bool,
    /// Members and their roles.
    pub members: BTreeMap<UserId, Role>,
}

impl Aggregate for Org {
    type Event = OrgEvent;
    const CATEGORY: &'static str = "org";

    fn apply(&mut self, event: &OrgEvent) {
        match event {
            OrgEvent::OrgCreated { name, slug } => self.created = Some((name.clone(), slug.clone())),
            OrgEvent::OrgRenamed { name } => {
                if let Some((current, _)) = &mut self.created {
                    *current = name.clone();
                }
            }
            OrgEvent::OrgDeleted => self.deleted = true,
            OrgEvent::MemberAdded { user_id, role } | OrgEvent::MemberRoleChanged { user_id, role } => {
                self.members.insert(*user_id, *role);
            }
            OrgEvent::MemberRemoved { user_id } => {
                self.members.remove(user_id);
            }
        }
    }
}

impl Org {
    /// Whether the org exists and is not deleted.
    pub fn is_active(&self) -> bool {
        self.created.is_some() && !self.deleted
    }

    /// The org's slug, if it was ever created.
    pub fn slug(&self) -> Option<&OrgSlug> {
        self.created.as_ref().map(|(_, slug)| slug)
    }

    /// Fails with `NotFound` unless the org exists and is not deleted.
    pub fn ensure_active(&self, id: OrgId) -> Result<(), DomainError> {
        if self.is_active() {
            Ok(())
        } else {
            Err(DomainError::NotFound {
                kind: "org",
                id: id.to_string(),
            })
        }
    }

    /// Creates the org. The slug's uniqueness is decided by [`SlugClaim::claim`].
    pub fn create(&self, id: OrgId, name: Name, slug: OrgSlug) -> Result<Vec<OrgEvent>, DomainError> {
        if self.created.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "org",
                id: id.to_string(),
            });
        }
        Ok(vec![OrgEvent::OrgCreated { name, slug }])
    }

    /// Renames the org; renaming to the current name changes nothing.
    pub fn rename(&self, id: OrgId, name: Name) -> Result<Vec<OrgEvent>, DomainError> {
        self.ensure_active(id)?;
        match &self.created {
            Some((current, _)) if *current == name => Ok(vec![]),
            _ => Ok(vec![OrgEvent::OrgRenamed { name }]),
        }
    }

    /// Adds `user` (who must exist) to the org with `role`.
    pub fn add_member(
        &self,
        id: OrgId,
        user_id: UserId,
        user: &User,
        role: Role,
    ) -> Result<Vec<OrgEvent>, DomainError> {
        self.ensure_active(id)?;
        user.ensure_exists(user_id)?;
        if self.members.contains_key(&user_id) {
            return Err(DomainError::AlreadyExists {
                kind: "member",
                id: user_id.to_string(),
            });
        }
        Ok(vec![OrgEvent::MemberAdded { user_id, role }])
    }

    /// Gives a member another role; the org keeps at least one owner.
    pub fn change_role(&self, id: OrgId, user_id: UserId, role: Role) -> Result<Vec<OrgEvent>, DomainError> {
        let current = self.member(id, user_id)?;
        if current == role {
            return Ok(vec![]);
        }
        self.ensure_another_owner(id, user_id, current)?;
        Ok(vec![OrgEvent::MemberRoleChanged { user_id, role }])
    }

    /// Removes a member; the org keeps at least one owner.
    pub fn remove_member(&self, id: OrgId, user_id: UserId) -> Result<Vec<OrgEvent>, DomainError> {
        let current = self.member(id, user_id)?;
        self.ensure_another_owner(id, user_id, current)?;
        Ok(vec![OrgEvent::MemberRemoved { user_id }])
    }

    fn member(&self, id: OrgId, user_id: UserId) -> Result<Role, DomainError> {
        self.ensure_active(id)?;
        self.members
            .get(&user_id)
            .copied()
            .ok_or_else(|| DomainError::NotFound {
                kind: "member",
                id: user_id.to_string(),
            })
    }

    fn ensure_another_owner(&self, id: OrgId, user_id: UserId, current: Role) -> Result<(), DomainError> {
        let others = self
            .members
            .iter()
            .any(|(other, role)| *other != user_id && *role == Role::Owner);
        if current == Role::Owner && !others {
            return Err(DomainError::LastOwner { org_id: id.to_string() });
        }
        Ok(())
    }

    /// Deletes the org. Its slug must be released with [`SlugClaim::release`] in the same append.
    pub fn delete(&self, id: OrgId) -> Result<Vec<OrgEvent>, DomainError> {
        self.ensure_active(id)?;
        Ok(vec![OrgEvent::OrgDeleted])
    }
}

/// What happened to a slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SlugEvent {
    /// An org took the slug.
    SlugClaimed { org_id: OrgId },
    /// The org that held the slug let it go.
    SlugReleased { org_id: OrgId },
}

impl DomainEvent for SlugEvent {}

/// Who holds one slug. Each slug has its own stream, so two orgs created at once with the same
/// slug race on the same stream version and only one append can win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlugClaim {
    /// The org holding the slug, if any.
    pub holder: Option<OrgId>,
}

impl Aggregate for SlugClaim {
    type Event = SlugEvent;
    const CATEGORY: &'static str = "orgslug";

    fn apply(&mut self, event: &SlugEvent) {
        self.holder = match event {
            SlugEvent::SlugClaimed { org_id } => Some(*org_id),
            SlugEvent::SlugReleased { .. } => None,
        };
    }
}

impl SlugClaim {
    /// Claims the slug for `org_id`; refused while another org holds it.
    pub fn claim(&self, slug: &OrgSlug, org_id: OrgId) -> Result<Vec<SlugEvent>, DomainError> {
        match self.holder {
            None => Ok(vec![SlugEvent::SlugClaimed { org_id }]),
            Some(holder) if holder == org_id => Ok(vec![]),
            Some(_) => Err(DomainError::SlugTaken { slug: slug.to_string() }),
        }
    }

    /// Releases the slug if `org_id` holds it.
    pub fn release(&self, org_id: OrgId) -> Vec<SlugEvent> {
        if self.holder == Some(org_id) {
            vec![SlugEvent::SlugReleased { org_id }]
        } else {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::testing::given;

    fn org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(1))
    }

    fn other_org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(2))
    }

    fn name(raw: &str) -> Name {
        Name::parse(raw).expect("valid name")
    }

    fn slug(raw: &str) -> OrgSlug {
        OrgSlug::parse(raw).expect("valid slug")
    }

    fn created() -> OrgEvent {
        OrgEvent::OrgCreated {
            name: name("Acme"),
            slug: slug("acme"),
        }
    }

    fn not_found() -> DomainError {
        DomainError::NotFound {
            kind: "org",
            id: org_id().to_string(),
        }
    }

    // Org

    #[test]
    fn an_org_is_created_with_its_name_and_slug() {
        given::<Org>([])
            .when(|o| o.create(org_id(), name("Acme"), slug("acme")))
            .then(vec![created()]);
    }

    #[test]
    fn an_org_cannot_be_created_twice() {
        given::<Org>([created()])
            .when(|o| o.create(org_id(), name("Other"), slug("other")))
            .then_err(DomainError::AlreadyExists {
                kind: "org",
                id: org_id().to_string(),
            });
    }

    #[test]
    fn a_deleted_org_cannot_be_created_again_under_the_same_id() {
        given::<Org>([created(), OrgEvent::OrgDeleted])
            .when(|o| o.create(org_id(), name("Acme"), slug("acme")))
            .then_err(DomainError::AlreadyExists {
                kind: "org",
                id: org_id().to_string(),
            });
    }

    #[test]
    fn an_org_is_renamed() {
        given::<Org>([created()])
            .when(|o| o.rename(org_id(), name("Acme Corp")))
            .then(vec![OrgEvent::OrgRenamed {
                name: name("Acme Corp"),
            }]);
    }

    #[test]
    fn renaming_an_org_to_its_current_name_changes_nothing() {
        given::<Org>([created()])
            .when(|o| o.rename(org_id(), name("Acme")))
            .then(vec![]);
    }

    #[test]
    fn renaming_compares_with_the_latest_name() {
        given::<Org>([
            created(),
            OrgEvent::OrgRenamed {
                name: name("Acme Corp"),
            },
        ])
        .when(|o| o.rename(org_id(), name("Acme Corp")))
        .then(vec![]);
        given::<Org>([
            created(),
            OrgEvent::OrgRenamed {
                name: name("Acme Corp"),
            },
        ])
        .when(|o| o.rename(org_id(), name("Acme")))
        .then(vec![OrgEvent::OrgRenamed { name: name("Acme") }]);
    }

    #[test]
    fn an_unknown_org_cannot_be_renamed() {
        given::<Org>([])
            .when(|o| o.rename(org_id(), name("Acme")))
            .then_err(not_found());
    }

    #[test]
    fn a_deleted_org_cannot_be_renamed() {
        given::<Org>([created(), OrgEvent::OrgDeleted])
            .when(|o| o.rename(org_id(), name("New")))
            .then_err(not_found());
    }

    #[test]
    fn an_org_is_deleted() {
        given::<Org>([created()])
            .when(|o| o.delete(org_id()))
            .then(vec![OrgEvent::OrgDeleted]);
    }

    #[test]
    fn an_unknown_org_cannot_be_deleted() {
        given::<Org>([]).when(|o| o.delete(org_id())).then_err(not_found());
    }

    #[test]
    fn a_deleted_org_cannot_be_deleted_again() {
        given::<Org>([created(), OrgEvent::OrgDeleted])
            .when(|o| o.delete(org_id()))
            .then_err(not_found());
    }

    #[test]
    fn an_org_is_active_only_between_creation_and_deletion() {
        assert!(!Org::fold(&[]).is_active());
        assert!(Org::fold(&[created()]).is_active());
        assert!(!Org::fold(&[created(), OrgEvent::OrgDeleted]).is_active());
    }

    #[test]
    fn a_renamed_org_keeps_its_slug() {
        let org = Org::fold(&[
            created(),
            OrgEvent::OrgRenamed {
                name: name("Acme Corp"),
            },
        ]);
        assert_eq!(org.slug(), Some(&slug("acme")));
        assert_eq!(org.created, Some((name("Acme Corp"), slug("acme"))));
    }

    // SlugClaim

    #[test]
    fn a_free_slug_is_claimed() {
        given::<SlugClaim>([])
            .when(|c| c.claim(&slug("acme"), org_id()))
            .then(vec![SlugEvent::SlugClaimed { org_id: org_id() }]);
    }

    #[test]
    fn a_slug_held_by_another_org_cannot_be_claimed() {
        given::<SlugClaim>([SlugEvent::SlugClaimed { org_id: org_id() }])
            .when(|c| c.claim(&slug("acme"), other_org_id()))
            .then_err(DomainError::SlugTaken { slug: "acme".into() });
    }

    #[test]
    fn reclaiming_a_slug_by_its_holder_changes_nothing() {
        given::<SlugClaim>([SlugEvent::SlugClaimed { org_id: org_id() }])
            .when(|c| c.claim(&slug("acme"), org_id()))
            .then(vec![]);
    }

    #[test]
    fn a_released_slug_can_be_claimed_by_another_org() {
        given::<SlugClaim>([
            SlugEvent::SlugClaimed { org_id: org_id() },
            SlugEvent::SlugReleased { org_id: org_id() },
        ])
        .when(|c| c.claim(&slug("acme"), other_org_id()))
        .then(vec![SlugEvent::SlugClaimed { org_id: other_org_id() }]);
    }

    #[test]
    fn a_slug_is_released_by_its_holder() {
        given::<SlugClaim>([SlugEvent::SlugClaimed { org_id: org_id() }])
            .when(|c| Ok(c.release(org_id())))
            .then(vec![SlugEvent::SlugReleased { org_id: org_id() }]);
    }

    #[test]
    fn releasing_a_slug_held_by_another_org_changes_nothing() {
        given::<SlugClaim>([SlugEvent::SlugClaimed { org_id: org_id() }])
            .when(|c| Ok(c.release(other_org_id())))
            .then(vec![]);
    }

    #[test]
    fn releasing_a_free_slug_changes_nothing() {
        given::<SlugClaim>([]).when(|c| Ok(c.release(org_id()))).then(vec![]);
        given::<SlugClaim>([
            SlugEvent::SlugClaimed { org_id: org_id() },
            SlugEvent::SlugReleased { org_id: org_id() },
        ])
        .when(|c| Ok(c.release(org_id())))
        .then(vec![]);
    }

    fn ada() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(70))
    }

    fn bob() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(71))
    }

    fn existing_user() -> User {
        use crate::access::UserEvent;
        User::fold(&[UserEvent::UserCreated {
            name: Name::parse("Someone").expect("valid name"),
        }])
    }

    fn org_with_owner() -> Vec<OrgEvent> {
        vec![
            OrgEvent::OrgCreated {
                name: Name::parse("Acme").expect("valid name"),
                slug: OrgSlug::parse("acme").expect("valid slug"),
            },
            OrgEvent::MemberAdded {
                user_id: ada(),
                role: Role::Owner,
            },
        ]
    }

    fn org_id_for_members() -> OrgId {
        OrgId::from_uuid(uuid::Uuid::from_u128(1))
    }

    #[test]
    fn an_existing_user_joins_once_with_a_role() {
        given::<Org>(org_with_owner())
            .when(|o| o.add_member(org_id_for_members(), bob(), &existing_user(), Role::Viewer))
            .then(vec![OrgEvent::MemberAdded {
                user_id: bob(),
                role: Role::Viewer,
            }]);
        given::<Org>(org_with_owner())
            .when(|o| o.add_member(org_id_for_members(), ada(), &existing_user(), Role::Viewer))
            .then_err(DomainError::AlreadyExists {
                kind: "member",
                id: ada().to_string(),
            });
        given::<Org>(org_with_owner())
            .when(|o| o.add_member(org_id_for_members(), bob(), &User::default(), Role::Viewer))
            .then_err(DomainError::NotFound {
                kind: "user",
                id: bob().to_string(),
            });
    }

    #[test]
    fn the_last_owner_can_neither_leave_nor_be_demoted() {
        let last_owner = DomainError::LastOwner {
            org_id: org_id_for_members().to_string(),
        };
        given::<Org>(org_with_owner())
            .when(|o| o.remove_member(org_id_for_members(), ada()))
            .then_err(last_owner.clone());
        given::<Org>(org_with_owner())
            .when(|o| o.change_role(org_id_for_members(), ada(), Role::Member))
            .then_err(last_owner);
        let two_owners = org_with_owner()
            .into_iter()
            .chain([OrgEvent::MemberAdded {
                user_id: bob(),
                role: Role::Owner,
            }])
            .collect::<Vec<_>>();
        given::<Org>(two_owners)
            .when(|o| o.remove_member(org_id_for_members(), ada()))
            .then(vec![OrgEvent::MemberRemoved { user_id: ada() }]);
    }

    #[test]
    fn changing_a_role_to_the_same_role_changes_nothing_and_strangers_are_not_found() {
        given::<Org>(org_with_owner())
            .when(|o| o.change_role(org_id_for_members(), ada(), Role::Owner))
            .then(vec![]);
        given::<Org>(org_with_owner())
            .when(|o| o.change_role(org_id_for_members(), bob(), Role::Owner))
            .then_err(DomainError::NotFound {
                kind: "member",
                id: bob().to_string(),
            });
    }
}
