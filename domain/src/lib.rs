//! MonkeyCI's domain: the events, the rules that decide them and the validated values they carry.
//!
//! Every aggregate is a plain value folded from its events with [`Aggregate::apply`]; every
//! decision is a method taking `&self` (plus whatever other aggregate state the rule needs) and
//! returning the events to append or a [`DomainError`]. Nothing here does IO.

pub mod access;
mod aggregate;
pub mod build;
pub mod cron;
mod error;
mod event;
mod ids;
pub mod org;
pub mod pipeline;
pub mod repo;
pub mod secrets;
pub mod testing;
pub mod triggers;
mod values;

pub use aggregate::{Aggregate, StreamId};
pub use error::{DomainError, ValidationError};
pub use event::{DecodeError, DomainEvent};
pub use ids::{global_id, BuildId, OrgId, ParamSetId, RepoId, ScheduleId, SshKeyId, TokenId, UserId, WebhookId};
pub use values::{CommitSha, GitRef, GitUrl, JobId, Labels, Name, OrgSlug, Params, RefName};
