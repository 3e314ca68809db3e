//! The commands, as sent by callers: raw values, validated by the handler.
//!
//! Each is serialisable so that an idempotency key can be tied to the exact input it was first
//! sent with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use monkeyci_domain::access::TokenSubject;
use monkeyci_domain::build::{BlobRef, BuildOutcome, PushDetails, TriggerSource};
use monkeyci_domain::{BuildId, OrgId, RepoId, TokenId, UserId};
use serde::{Deserialize, Serialize};

/// Creates an org with a unique slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrg {
    pub name: String,
    pub slug: String,
}

/// Changes an org's display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameOrg {
    pub org_id: OrgId,
    pub name: String,
}

/// Deletes an org and frees its slug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOrg {
    pub org_id: OrgId,
}

/// Adds a repo to an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRepo {
    pub org_id: OrgId,
    pub name: String,
    pub git_url: String,
    /// Defaults to `main`.
    pub main_branch: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Changes some of a repo's settings; `None` keeps a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRepo {
    pub repo_id: RepoId,
    pub name: Option<String>,
    pub git_url: Option<String>,
    pub main_branch: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// Archives a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRepo {
    pub repo_id: RepoId,
}

/// Queues a build of a branch, a tag or a commit (the main branch if none is named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerBuild {
    pub repo_id: RepoId,
    pub source: TriggerSource,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub commit: Option<String>,
    pub params: BTreeMap<String, String>,
    /// What the git host said about the push (webhook builds).
    #[serde(default)]
    pub push: Option<PushDetails>,
}

/// Cancels a queued or running build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelBuild {
    pub build_id: BuildId,
}

/// Queues a new build with the trigger of a finished one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBuild {
    pub build_id: BuildId,
}

/// A runner takes a queued build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartBuild {
    pub build_id: BuildId,
    pub runner: String,
}

/// The runner checked out a running build's source at `commit` (its full hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheckout {
    pub build_id: BuildId,
    pub commit: String,
}

/// Adds a pipeline job to a running build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueJob {
    pub build_id: BuildId,
    pub job_id: String,
    pub dependencies: Vec<String>,
}

/// The job transitions a caller can ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "lowercase")]
pub enum JobTransitionInput {
    Blocked,
    Unblocked,
    Started,
    Succeeded,
    Failed { message: String },
    Skipped { reason: String },
    Canceled,
}

/// Moves a job of a running build on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionJob {
    pub build_id: BuildId,
    pub job_id: String,
    pub transition: JobTransitionInput,
}

/// Records an artifact a running job saved to blob storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveArtifact {
    pub build_id: BuildId,
    pub job_id: String,
    pub artifact_id: String,
    pub blob: BlobRef,
}

/// Records where an ended job's log was archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveJobLog {
    pub build_id: BuildId,
    pub job_id: String,
    pub blob: BlobRef,
    pub lines: u64,
}

/// Ends a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishBuild {
    pub build_id: BuildId,
    pub outcome: BuildOutcome,
    pub message: Option<String>,
}

/// Creates a user (an admin's command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUser {
    pub name: String,
}

/// Adds a user to an org with a role (`owner`, `member`, `viewer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub role: String,
}

/// Gives a member of an org another role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMemberRole {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub role: String,
}

/// Removes a user from an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMember {
    pub org_id: OrgId,
    pub user_id: UserId,
}

/// Issues an API token. The caller generated the secret and sends only its SHA-256 (hex); the
/// secret itself never reaches a command, an event or a read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateToken {
    /// The id the token's text carries (see `Token::generate_with_id`); a fresh one when `None`.
    #[serde(default)]
    pub token_id: Option<TokenId>,
    pub name: String,
    pub subject: TokenSubject,
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}

/// Revokes an API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeToken {
    pub token_id: TokenId,
}
