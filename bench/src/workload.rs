//! Realistic build events, encoded as the command handler would encode them.

use monkeyci_domain::build::{BuildEvent, BuildOutcome, Trigger, TriggerSource};
use monkeyci_domain::{Aggregate, BuildId, CommitSha, DomainEvent, GitRef, JobId, OrgId, Params, RefName, RepoId};
use monkeyci_eventstore::{ExpectedVersion, Metadata, NewEvent, StreamAppend};
use uuid::Uuid;

/// The events of one build's life: queued, started, three jobs queued, each started and
/// succeeded, finished.
pub const LIFECYCLE_LEN: usize = 12;

/// Pre-validated values every generated build shares.
#[derive(Debug, Clone)]
pub struct Generator {
    branch: RefName,
    jobs: [JobId; 3],
    params: Params,
}

/// A build being generated: its stream and the events of its life.
#[derive(Debug, Clone)]
pub struct BuildScript {
    pub stream_id: String,
    pub org_id: OrgId,
    pub events: Vec<BuildEvent>,
}

impl Generator {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            branch: RefName::parse("main")?,
            jobs: [JobId::parse("compile")?, JobId::parse("test")?, JobId::parse("deploy")?],
            params: Params::parse([("N".to_owned(), "1".to_owned())])?,
        })
    }

    /// The whole life of a new build of `repo_id`.
    pub fn build(&self, org_id: OrgId, repo_id: RepoId, seq: u64) -> anyhow::Result<BuildScript> {
        let id = BuildId::from_uuid(Uuid::now_v7());
        let commit = CommitSha::parse(&format!("{:040x}", seq.wrapping_add(1)))?;
        let mut events = vec![
            BuildEvent::BuildQueued {
                org_id,
                repo_id,
                trigger: Trigger {
                    source: TriggerSource::Webhook,
                    git_ref: GitRef::Branch(self.branch.clone()),
                    commit: Some(commit),
                    params: self.params.clone(),
                    push: None,
                },
                retry_of: None,
            },
            BuildEvent::BuildStarted {
                runner: "runner-1".into(),
            },
        ];
        let mut deps: Vec<JobId> = Vec::new();
        for job in &self.jobs {
            events.push(BuildEvent::JobQueued {
                job_id: job.clone(),
                dependencies: deps.clone(),
            });
            deps = vec![job.clone()];
        }
        for job in &self.jobs {
            events.push(BuildEvent::JobStarted { job_id: job.clone() });
            events.push(BuildEvent::JobSucceeded { job_id: job.clone() });
        }
        events.push(BuildEvent::BuildFinished {
            outcome: BuildOutcome::Succeeded,
            message: None,
        });
        debug_assert_eq!(events.len(), LIFECYCLE_LEN);
        Ok(BuildScript {
            stream_id: format!("{}-{id}", monkeyci_domain::build::Build::CATEGORY),
            org_id,
            events,
        })
    }
}

/// The metadata of one command, as the command handler writes it.
pub fn metadata(org_id: OrgId) -> Metadata {
    Metadata {
        actor: "user:bench".into(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        command_id: Uuid::now_v7(),
        idempotency_key: None,
        org_id: Some(org_id.as_uuid()),
    }
}

/// Encodes `events` as one command's events.
pub fn encode(events: &[BuildEvent], metadata: &Metadata) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| {
            let (event_type, data) = event.encode();
            NewEvent {
                schema_version: BuildEvent::schema_version(&event_type),
                event_type,
                data,
                metadata: metadata.clone(),
            }
        })
        .collect()
}

/// Events `from..from + n` of `script` as one append with the expected version they follow.
pub fn append_of(script: &BuildScript, from: usize, n: usize) -> StreamAppend {
    let meta = metadata(script.org_id);
    let end = (from + n).min(script.events.len());
    StreamAppend {
        stream_id: script.stream_id.clone(),
        expected: ExpectedVersion::from_version(from as u64),
        events: encode(&script.events[from..end], &meta),
    }
}

/// A random org and repo for builds that need no existing org.
pub fn random_owner() -> (OrgId, RepoId) {
    (OrgId::from_uuid(Uuid::now_v7()), RepoId::from_uuid(Uuid::now_v7()))
}
