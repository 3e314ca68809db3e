//! Repositories: what gets built.

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::event::DomainEvent;
use crate::ids::{OrgId, RepoId};
use crate::org::Org;
use crate::values::{GitUrl, Labels, Name, RefName};

/// What happened to a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RepoEvent {
    /// The repo was added to an org.
    RepoAdded {
        org_id: OrgId,
        #[serde(flatten)]
        settings: RepoSettings,
    },
    /// Some settings changed; the event holds all settings after the change.
    RepoUpdated {
        #[serde(flatten)]
        settings: RepoSettings,
    },
    /// The repo was archived: it keeps its history and takes no more builds.
    RepoArchived,
}

impl DomainEvent for RepoEvent {}

/// The settings of a repo a user can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSettings {
    /// Display name.
    pub name: Name,
    /// Where the code is cloned from.
    pub git_url: GitUrl,
    /// The branch built when a trigger names no ref.
    pub main_branch: RefName,
    /// Labels selecting org parameters and keys.
    #[serde(default)]
    pub labels: Labels,
}

/// A partial change of a repo's settings; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoChanges {
    pub name: Option<Name>,
    pub git_url: Option<GitUrl>,
    pub main_branch: Option<RefName>,
    pub labels: Option<Labels>,
}

/// A repo's state, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repo {
    /// The owning org, once added.
    pub org_id: Option<OrgId>,
    /// Current settings, once added.
    pub settings: Option<RepoSettings>,
    /// Whether the repo was archived.
    pub archived: bool,
}

impl Aggregate for Repo {
    type Event = RepoEvent;
    const CATEGORY: &'static str = "repo";

    fn apply(&mut self, event: &RepoEvent) {
        match event {
            RepoEvent::RepoAdded { org_id, settings } => {
                self.org_id = Some(*org_id);
                self.settings = Some(settings.clone());
            }
            RepoEvent::RepoUpdated { settings } => self.settings = Some(settings.clone()),
            RepoEvent::RepoArchived => self.archived = true,
        }
    }
}

impl Repo {
    fn not_found(id: RepoId) -> DomainError {
        DomainError::NotFound {
            kind: "repo",
            id: id.to_string(),
        }
    }

    /// The current settings, or `NotFound` if the repo was never added.
    pub fn existing(&self, id: RepoId) -> Result<&RepoSettings, DomainError> {
        self.settings.as_ref().ok_or_else(|| Self::not_found(id))
    }

    /// Fails unless the repo exists, is not archived and its org is active.
    pub fn ensure_buildable(&self, id: RepoId, org: &Org) -> Result<&RepoSettings, DomainError> {
        let settings = self.existing(id)?;
        if let Some(org_id) = self.org_id {
            org.ensure_active(org_id)?;
        }
        if self.archived {
            return Err(DomainError::RepoArchived {
                repo_id: id.to_string(),
            });
        }
        Ok(settings)
    }

    /// Adds the repo to `org`, which must exist and not be deleted.
    pub fn add(
        &self,
        id: RepoId,
        org_id: OrgId,
        org: &Org,
        settings: RepoSettings,
    ) -> Result<Vec<RepoEvent>, DomainError> {
        org.ensure_active(org_id)?;
        if self.settings.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "repo",
                id: id.to_string(),
            });
        }
        Ok(vec![RepoEvent::RepoAdded { org_id, settings }])
    }

    /// Changes settings; a change that changes nothing appends nothing.
    pub fn update(&self, id: RepoId, org: &Org, changes: RepoChanges) -> Result<Vec<RepoEvent>, DomainError> {
        let current = self.ensure_buildable(id, org)?;
        let next = RepoSettings {
            name: changes.name.unwrap_or_else(|| current.name.clone()),
            git_url: changes.git_url.unwrap_or_else(|| current.git_url.clone()),
            main_branch: changes.main_branch.unwrap_or_else(|| current.main_branch.clone()),
            labels: changes.labels.unwrap_or_else(|| current.labels.clone()),
        };
        if next == *current {
            return Ok(vec![]);
        }
        Ok(vec![RepoEvent::RepoUpdated { settings: next }])
    }

    /// Archives the repo; archiving an archived repo changes nothing.
    pub fn archive(&self, id: RepoId) -> Result<Vec<RepoEvent>, DomainError> {
        self.existing(id)?;
        if self.archived {
            return Ok(vec![]);
        }
        Ok(vec![RepoEvent::RepoArchived])
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::org::OrgEvent;
    use crate::testing::given;
    use crate::values::OrgSlug;

    fn org_id() -> OrgId {
        OrgId::from_uuid(Uuid::from_u128(1))
    }

    fn repo_id() -> RepoId {
        RepoId::from_uuid(Uuid::from_u128(10))
    }

    fn created_org() -> OrgEvent {
        OrgEvent::OrgCreated {
            name: Name::parse("Acme").expect("valid name"),
            slug: OrgSlug::parse("acme").expect("valid slug"),
        }
    }

    fn active_org() -> Org {
        Org::fold(&[created_org()])
    }

    fn deleted_org() -> Org {
        Org::fold(&[created_org(), OrgEvent::OrgDeleted])
    }

    fn settings() -> RepoSettings {
        RepoSettings {
            name: Name::parse("App").expect("valid name"),
            git_url: GitUrl::parse("https://github.com/acme/app.git").expect("valid url"),
            main_branch: RefName::parse("main").expect("valid ref"),
            labels: Labels::default(),
        }
    }

    fn added() -> RepoEvent {
        RepoEvent::RepoAdded {
            org_id: org_id(),
            settings: settings(),
        }
    }

    fn repo_not_found() -> DomainError {
        DomainError::NotFound {
            kind: "repo",
            id: repo_id().to_string(),
        }
    }

    fn org_not_found() -> DomainError {
        DomainError::NotFound {
            kind: "org",
            id: org_id().to_string(),
        }
    }

    #[test]
    fn a_repo_is_added_to_an_active_org() {
        given::<Repo>([])
            .when(|r| r.add(repo_id(), org_id(), &active_org(), settings()))
            .then(vec![added()]);
    }

    #[test]
    fn a_repo_cannot_be_added_to_an_unknown_org() {
        given::<Repo>([])
            .when(|r| r.add(repo_id(), org_id(), &Org::default(), settings()))
            .then_err(org_not_found());
    }

    #[test]
    fn a_repo_cannot_be_added_to_a_deleted_org() {
        given::<Repo>([])
            .when(|r| r.add(repo_id(), org_id(), &deleted_org(), settings()))
            .then_err(org_not_found());
    }

    #[test]
    fn a_repo_cannot_be_added_twice() {
        given::<Repo>([added()])
            .when(|r| r.add(repo_id(), org_id(), &active_org(), settings()))
            .then_err(DomainError::AlreadyExists {
                kind: "repo",
                id: repo_id().to_string(),
            });
    }

    #[test]
    fn an_update_records_all_settings_after_the_change() {
        let changes = RepoChanges {
            main_branch: Some(RefName::parse("develop").expect("valid ref")),
            labels: Some(Labels::parse([("team".into(), "core".into())]).expect("valid labels")),
            ..RepoChanges::default()
        };
        given::<Repo>([added()])
            .when(|r| r.update(repo_id(), &active_org(), changes))
            .then(vec![RepoEvent::RepoUpdated {
                settings: RepoSettings {
                    main_branch: RefName::parse("develop").expect("valid ref"),
                    labels: Labels::parse([("team".into(), "core".into())]).expect("valid labels"),
                    ..settings()
                },
            }]);
    }

    #[test]
    fn an_update_builds_on_the_latest_settings() {
        let renamed = RepoSettings {
            name: Name::parse("Renamed").expect("valid name"),
            ..settings()
        };
        let changes = RepoChanges {
            git_url: Some(GitUrl::parse("git@github.com:acme/app.git").expect("valid url")),
            ..RepoChanges::default()
        };
        given::<Repo>([
            added(),
            RepoEvent::RepoUpdated {
                settings: renamed.clone(),
            },
        ])
        .when(|r| r.update(repo_id(), &active_org(), changes))
        .then(vec![RepoEvent::RepoUpdated {
            settings: RepoSettings {
                git_url: GitUrl::parse("git@github.com:acme/app.git").expect("valid url"),
                ..renamed
            },
        }]);
    }

    #[test]
    fn an_update_that_changes_nothing_appends_nothing() {
        given::<Repo>([added()])
            .when(|r| r.update(repo_id(), &active_org(), RepoChanges::default()))
            .then(vec![]);
        let same = RepoChanges {
            name: Some(settings().name),
            git_url: Some(settings().git_url),
            main_branch: Some(settings().main_branch),
            labels: Some(settings().labels),
        };
        given::<Repo>([added()])
            .when(|r| r.update(repo_id(), &active_org(), same))
            .then(vec![]);
    }

    #[test]
    fn an_unknown_repo_cannot_be_updated() {
        given::<Repo>([])
            .when(|r| r.update(repo_id(), &active_org(), RepoChanges::default()))
            .then_err(repo_not_found());
    }

    #[test]
    fn an_archived_repo_cannot_be_updated() {
        let changes = RepoChanges {
            name: Some(Name::parse("New").expect("valid name")),
            ..RepoChanges::default()
        };
        given::<Repo>([added(), RepoEvent::RepoArchived])
            .when(|r| r.update(repo_id(), &active_org(), changes))
            .then_err(DomainError::RepoArchived {
                repo_id: repo_id().to_string(),
            });
    }

    #[test]
    fn a_repo_of_a_deleted_org_cannot_be_updated() {
        let changes = RepoChanges {
            name: Some(Name::parse("New").expect("valid name")),
            ..RepoChanges::default()
        };
        given::<Repo>([added()])
            .when(|r| r.update(repo_id(), &deleted_org(), changes))
            .then_err(org_not_found());
    }

    #[test]
    fn a_repo_is_archived() {
        given::<Repo>([added()])
            .when(|r| r.archive(repo_id()))
            .then(vec![RepoEvent::RepoArchived]);
    }

    #[test]
    fn archiving_an_archived_repo_changes_nothing() {
        given::<Repo>([added(), RepoEvent::RepoArchived])
            .when(|r| r.archive(repo_id()))
            .then(vec![]);
    }

    #[test]
    fn an_unknown_repo_cannot_be_archived() {
        given::<Repo>([])
            .when(|r| r.archive(repo_id()))
            .then_err(repo_not_found());
    }

    #[test]
    fn a_repo_is_buildable_only_while_it_and_its_org_are_active() {
        let repo = Repo::fold(&[added()]);
        assert_eq!(repo.ensure_buildable(repo_id(), &active_org()), Ok(&settings()));
        assert_eq!(repo.ensure_buildable(repo_id(), &deleted_org()), Err(org_not_found()));
        assert_eq!(
            Repo::default().ensure_buildable(repo_id(), &active_org()),
            Err(repo_not_found())
        );
        assert_eq!(
            Repo::fold(&[added(), RepoEvent::RepoArchived]).ensure_buildable(repo_id(), &active_org()),
            Err(DomainError::RepoArchived {
                repo_id: repo_id().to_string()
            })
        );
    }
}
