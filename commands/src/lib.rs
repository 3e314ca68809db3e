//! Command handling: load the aggregates a command needs, let the domain decide, append the
//! events with the versions that were read, and return only an id.
//!
//! A concurrent append to one of the streams makes the append fail with a version conflict; the
//! command is then decided again on fresh state (always safe: nothing was written), a bounded
//! number of times. Idempotency keys make a repeated command return the first one's id.

mod admin;
mod context;
mod error;
mod handler;
mod inputs;
mod keys;
mod secrets;
mod triggers;

pub use admin::{make_admin_token, stored_admin_token, ADMIN_TOKEN_PREFIX};
pub use context::CommandContext;
pub use error::CommandError;
pub use handler::CommandHandler;
pub use inputs::{
    AddMember, AddRepo, ArchiveJobLog, ArchiveRepo, CancelBuild, ChangeMemberRole, CreateOrg, CreateToken, CreateUser,
    DeleteOrg, FinishBuild, JobTransitionInput, QueueJob, RecordCheckout, RemoveMember, RenameOrg, RetryBuild,
    RevokeToken, SaveArtifact, StartBuild, TransitionJob, TriggerBuild, UpdateRepo,
};
pub use keys::{KeyError, KeyStore};
pub use monkeyci_domain::build::PushDetails;
pub use secrets::{
    AddSshKey, CreateParamSet, DeleteParamSet, DeleteSshKey, ParamSetContent, ReplaceParamSet, SSH_PRIVATE_KEY,
};
pub use triggers::{
    ChangeSchedule, CreateSchedule, CreateWebhook, DeleteSchedule, DeleteWebhook, RotateWebhookSecret, SecretText,
    WEBHOOK_SECRET,
};
