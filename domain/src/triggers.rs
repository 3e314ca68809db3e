//! What starts builds by itself: a repo's webhooks (one per git host it is pushed to) and its cron
//! schedules.
//!
//! A webhook's secret is needed in the clear to check HMAC signatures, so its events carry it
//! sealed (AES-256-GCM) under a data key of the webhook's own that lives outside the log;
//! deleting the webhook destroys that key. The domain only carries the ciphertext.

use monkeyci_crypto::Sealed;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::cron::Cron;
use crate::error::{DomainError, ValidationError};
use crate::event::DomainEvent;
use crate::ids::{OrgId, RepoId, ScheduleId, WebhookId};
use crate::org::Org;
use crate::repo::Repo;

/// The git hosts whose webhooks MonkeyCI understands, by their URL segment.
pub const WEBHOOK_HOSTS: [&str; 5] = ["github", "gitlab", "bitbucket", "gitea", "forgejo"];

/// What happened to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WebhookEvent {
    /// The webhook was created for `repo_id`, receiving deliveries from `host`.
    WebhookCreated {
        org_id: OrgId,
        repo_id: RepoId,
        host: String,
        secret: Sealed,
    },
    /// Its secret was replaced; deliveries signed with the old one are refused from now on.
    WebhookSecretRotated { secret: Sealed },
    /// The webhook was deleted; its data key is destroyed with it.
    WebhookDeleted,
}

impl DomainEvent for WebhookEvent {}

/// A webhook, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhook {
    pub org_id: Option<OrgId>,
    pub repo_id: Option<RepoId>,
    pub host: Option<String>,
    pub deleted: bool,
}

impl Aggregate for Webhook {
    type Event = WebhookEvent;
    const CATEGORY: &'static str = "webhook";

    fn apply(&mut self, event: &WebhookEvent) {
        match event {
            WebhookEvent::WebhookCreated {
                org_id, repo_id, host, ..
            } => {
                self.org_id = Some(*org_id);
                self.repo_id = Some(*repo_id);
                self.host = Some(host.clone());
            }
            WebhookEvent::WebhookSecretRotated { .. } => {}
            WebhookEvent::WebhookDeleted => self.deleted = true,
        }
    }
}

impl Webhook {
    fn not_found(id: WebhookId) -> DomainError {
        DomainError::NotFound {
            kind: "webhook",
            id: id.to_string(),
        }
    }

    /// Fails unless the webhook exists and was not deleted.
    pub fn existing(&self, id: WebhookId) -> Result<(OrgId, RepoId), DomainError> {
        match (self.org_id, self.repo_id, self.deleted) {
            (Some(org_id), Some(repo_id), false) => Ok((org_id, repo_id)),
            _ => Err(Self::not_found(id)),
        }
    }

    /// Creates the webhook for a repo that accepts builds; `host` is one of [`WEBHOOK_HOSTS`].
    pub fn create(
        &self,
        id: WebhookId,
        (repo_id, repo): (RepoId, &Repo),
        org: &Org,
        host: &str,
        secret: Sealed,
    ) -> Result<Vec<WebhookEvent>, DomainError> {
        if self.org_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "webhook",
                id: id.to_string(),
            });
        }
        if !WEBHOOK_HOSTS.contains(&host) {
            let reason = format!("must be one of {}", WEBHOOK_HOSTS.join(", "));
            return Err(ValidationError::new("host", reason).into());
        }
        repo.ensure_buildable(repo_id, org)?;
        let org_id = repo.org_id.ok_or(DomainError::NotFound {
            kind: "repo",
            id: repo_id.to_string(),
        })?;
        Ok(vec![WebhookEvent::WebhookCreated {
            org_id,
            repo_id,
            host: host.to_owned(),
            secret,
        }])
    }

    /// Replaces the secret.
    pub fn rotate_secret(&self, id: WebhookId, secret: Sealed) -> Result<Vec<WebhookEvent>, DomainError> {
        self.existing(id)?;
        Ok(vec![WebhookEvent::WebhookSecretRotated { secret }])
    }

    /// Deletes the webhook; deleting it again finds nothing.
    pub fn delete(&self, id: WebhookId) -> Result<Vec<WebhookEvent>, DomainError> {
        self.existing(id)?;
        Ok(vec![WebhookEvent::WebhookDeleted])
    }
}

/// What happened to a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ScheduleEvent {
    /// The schedule was created: builds of the repo's main branch at every tick of `cron`.
    ScheduleCreated { org_id: OrgId, repo_id: RepoId, cron: Cron },
    /// Its cron expression changed; ticks before the change are not fired.
    ScheduleChanged { cron: Cron },
    /// The schedule was deleted.
    ScheduleDeleted,
}

impl DomainEvent for ScheduleEvent {}

/// A schedule, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub org_id: Option<OrgId>,
    pub repo_id: Option<RepoId>,
    pub cron: Option<Cron>,
    pub deleted: bool,
}

impl Aggregate for Schedule {
    type Event = ScheduleEvent;
    const CATEGORY: &'static str = "schedule";

    fn apply(&mut self, event: &ScheduleEvent) {
        match event {
            ScheduleEvent::ScheduleCreated { org_id, repo_id, cron } => {
                self.org_id = Some(*org_id);
                self.repo_id = Some(*repo_id);
                self.cron = Some(cron.clone());
            }
            ScheduleEvent::ScheduleChanged { cron } => self.cron = Some(cron.clone()),
            ScheduleEvent::ScheduleDeleted => self.deleted = true,
        }
    }
}

impl Schedule {
    /// Fails unless the schedule exists and was not deleted.
    pub fn existing(&self, id: ScheduleId) -> Result<(OrgId, RepoId), DomainError> {
        match (self.org_id, self.repo_id, self.deleted) {
            (Some(org_id), Some(repo_id), false) => Ok((org_id, repo_id)),
            _ => Err(DomainError::NotFound {
                kind: "schedule",
                id: id.to_string(),
            }),
        }
    }

    /// Creates the schedule for a repo that accepts builds.
    pub fn create(
        &self,
        id: ScheduleId,
        (repo_id, repo): (RepoId, &Repo),
        org: &Org,
        cron: Cron,
    ) -> Result<Vec<ScheduleEvent>, DomainError> {
        if self.org_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "schedule",
                id: id.to_string(),
            });
        }
        repo.ensure_buildable(repo_id, org)?;
        let org_id = repo.org_id.ok_or(DomainError::NotFound {
            kind: "repo",
            id: repo_id.to_string(),
        })?;
        Ok(vec![ScheduleEvent::ScheduleCreated { org_id, repo_id, cron }])
    }

    /// Changes the cron expression; the same expression changes nothing.
    pub fn change(&self, id: ScheduleId, cron: Cron) -> Result<Vec<ScheduleEvent>, DomainError> {
        self.existing(id)?;
        if self.cron.as_ref() == Some(&cron) {
            return Ok(vec![]);
        }
        Ok(vec![ScheduleEvent::ScheduleChanged { cron }])
    }

    /// Deletes the schedule; deleting it again finds nothing.
    pub fn delete(&self, id: ScheduleId) -> Result<Vec<ScheduleEvent>, DomainError> {
        self.existing(id)?;
        Ok(vec![ScheduleEvent::ScheduleDeleted])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::OrgEvent;
    use crate::repo::{RepoEvent, RepoSettings};
    use crate::testing::given;
    use crate::{GitUrl, Labels, Name, OrgSlug, RefName};
    use uuid::Uuid;

    fn org() -> (OrgId, Org) {
        let id = OrgId::from_uuid(Uuid::now_v7());
        let mut org = Org::default();
        org.apply(&OrgEvent::OrgCreated {
            name: Name::parse("Acme").expect("test setup"),
            slug: OrgSlug::parse("acme").expect("test setup"),
        });
        (id, org)
    }

    fn repo(org_id: OrgId, archived: bool) -> (RepoId, Repo) {
        let mut repo = Repo::default();
        repo.apply(&RepoEvent::RepoAdded {
            org_id,
            settings: RepoSettings {
                name: Name::parse("app").expect("test setup"),
                git_url: GitUrl::parse("https://git.example.com/acme/app.git").expect("test setup"),
                main_branch: RefName::parse("main").expect("test setup"),
                labels: Labels::default(),
            },
        });
        if archived {
            repo.apply(&RepoEvent::RepoArchived);
        }
        (RepoId::from_uuid(Uuid::now_v7()), repo)
    }

    fn sealed() -> Sealed {
        Sealed {
            nonce: [7; 12],
            ciphertext: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_webhook_is_created_for_a_buildable_repo_of_a_known_host() {
        let (org_id, org) = org();
        let (repo_id, repo) = repo(org_id, false);
        let id = WebhookId::from_uuid(Uuid::now_v7());
        given::<Webhook>([])
            .when(|w| w.create(id, (repo_id, &repo), &org, "github", sealed()))
            .then(vec![WebhookEvent::WebhookCreated {
                org_id,
                repo_id,
                host: "github".into(),
                secret: sealed(),
            }]);
        let error = Webhook::default()
            .create(id, (repo_id, &repo), &org, "sourceforge", sealed())
            .expect_err("must be refused");
        assert!(error.to_string().contains("github, gitlab"), "{error}");
    }

    #[test]
    fn an_archived_repo_gets_no_webhook_and_no_schedule() {
        let (org_id, org) = org();
        let (repo_id, repo) = repo(org_id, true);
        let archived = DomainError::RepoArchived {
            repo_id: repo_id.to_string(),
        };
        given::<Webhook>([])
            .when(|w| {
                w.create(
                    WebhookId::from_uuid(Uuid::now_v7()),
                    (repo_id, &repo),
                    &org,
                    "gitlab",
                    sealed(),
                )
            })
            .then_err(archived.clone());
        let cron = Cron::parse("@daily").expect("test setup");
        given::<Schedule>([])
            .when(|s| s.create(ScheduleId::from_uuid(Uuid::now_v7()), (repo_id, &repo), &org, cron))
            .then_err(archived);
    }

    #[test]
    fn a_deleted_webhook_can_neither_rotate_nor_be_deleted_again() {
        let id = WebhookId::from_uuid(Uuid::now_v7());
        let created = WebhookEvent::WebhookCreated {
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            repo_id: RepoId::from_uuid(Uuid::now_v7()),
            host: "gitea".into(),
            secret: sealed(),
        };
        given::<Webhook>([created.clone()])
            .when(|w| w.rotate_secret(id, sealed()))
            .then(vec![WebhookEvent::WebhookSecretRotated { secret: sealed() }]);
        let missing = DomainError::NotFound {
            kind: "webhook",
            id: id.to_string(),
        };
        given::<Webhook>([created.clone(), WebhookEvent::WebhookDeleted])
            .when(|w| w.rotate_secret(id, sealed()))
            .then_err(missing.clone());
        given::<Webhook>([created, WebhookEvent::WebhookDeleted])
            .when(|w| w.delete(id))
            .then_err(missing);
    }

    #[test]
    fn a_schedule_changes_only_when_its_cron_does() {
        let id = ScheduleId::from_uuid(Uuid::now_v7());
        let daily = Cron::parse("@daily").expect("test setup");
        let created = ScheduleEvent::ScheduleCreated {
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            repo_id: RepoId::from_uuid(Uuid::now_v7()),
            cron: daily.clone(),
        };
        given::<Schedule>([created.clone()])
            .when(|s| s.change(id, daily))
            .then(vec![]);
        let hourly = Cron::parse("@hourly").expect("test setup");
        given::<Schedule>([created.clone()])
            .when(|s| s.change(id, hourly.clone()))
            .then(vec![ScheduleEvent::ScheduleChanged { cron: hourly.clone() }]);
        given::<Schedule>([created, ScheduleEvent::ScheduleDeleted])
            .when(|s| s.change(id, hourly))
            .then_err(DomainError::NotFound {
                kind: "schedule",
                id: id.to_string(),
            });
    }
}
