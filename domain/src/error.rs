use thiserror::Error;

/// A value from outside failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The name of the field, as a user would see it (`slug`, `gitUrl`, …).
    pub field: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl ValidationError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A command was refused by a rule of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// Input failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The aggregate does not exist (or no longer exists).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// An aggregate with this id already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// Another org already uses the slug.
    #[error("the slug {slug:?} is already taken")]
    SlugTaken { slug: String },
    /// The repo is archived and accepts no builds or changes.
    #[error("repo {repo_id} is archived")]
    RepoArchived { repo_id: String },
    /// The build has finished; it cannot change any more.
    #[error("build {build_id} has already finished")]
    BuildFinished { build_id: String },
    /// The operation needs a finished build.
    #[error("build {build_id} has not finished yet")]
    BuildNotFinished { build_id: String },
    /// The build is not in a state that allows the operation.
    #[error("build {build_id} is {state}; cannot {action}")]
    IllegalBuildTransition {
        build_id: String,
        state: &'static str,
        action: &'static str,
    },
    /// The job is not in a state that allows the transition.
    #[error("job {job_id} is {state}; cannot {action}")]
    IllegalJobTransition {
        job_id: String,
        state: &'static str,
        action: &'static str,
    },
    /// The change would leave the org without an owner.
    #[error("org {org_id} must keep at least one owner")]
    LastOwner { org_id: String },
    /// Jobs of the build are still unfinished.
    #[error("build {build_id} still has unfinished jobs: {jobs}")]
    JobsUnfinished { build_id: String, jobs: String },
}
