//! The one place where failures become client-visible GraphQL errors.
//!
//! Every error carries `extensions.code`: `BAD_USER_INPUT`, `NOT_FOUND`, `CONFLICT`, `FORBIDDEN`,
//! `UNAUTHENTICATED`, `UNAVAILABLE` or `INTERNAL`. Internal failures are logged with their cause chain and reach the
//! client only as "internal error".

use std::error::Error as StdError;

use async_graphql::{Error, ErrorExtensions};
use monkeyci_commands::CommandError;
use monkeyci_domain::DomainError;

/// A client-visible error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadUserInput,
    NotFound,
    Conflict,
    Forbidden,
    Unauthenticated,
    Unavailable,
    Internal,
}

impl Code {
    /// The metric label: the code in lower case.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadUserInput => "bad_user_input",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Forbidden => "forbidden",
            Self::Unauthenticated => "unauthenticated",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The value of `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::Forbidden => "FORBIDDEN",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

/// An error with a code and a message meant for the client.
pub fn client(code: Code, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

/// A bad argument.
pub fn bad_input(message: impl Into<String>) -> Error {
    client(Code::BadUserInput, message)
}

/// Something the caller named does not exist (or is not theirs to see).
pub fn not_found(what: &str) -> Error {
    client(Code::NotFound, format!("{what} not found"))
}

/// Logs an internal failure with its causes and returns an error that reveals nothing of it.
pub fn internal(error: &(dyn StdError + 'static)) -> Error {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error while serving a request");
    client(Code::Internal, "internal error")
}

/// The code of a refused or failed command.
pub fn command_code(error: &CommandError) -> Code {
    match error {
        CommandError::Domain(DomainError::Invalid(_)) => Code::BadUserInput,
        CommandError::Domain(DomainError::NotFound { .. }) => Code::NotFound,
        CommandError::Domain(
            DomainError::AlreadyExists { .. }
            | DomainError::SlugTaken { .. }
            | DomainError::RepoArchived { .. }
            | DomainError::BuildFinished { .. }
            | DomainError::BuildNotFinished { .. }
            | DomainError::IllegalBuildTransition { .. }
            | DomainError::IllegalJobTransition { .. }
            | DomainError::JobsUnfinished { .. }
            | DomainError::LastOwner { .. },
        ) => Code::Conflict,
        CommandError::IdempotencyKeyReused { .. } | CommandError::InvalidIdempotencyKey => Code::BadUserInput,
        CommandError::Conflict { .. } => Code::Conflict,
        CommandError::Keys(monkeyci_commands::KeyError::NoMasterKey) => Code::Unavailable,
        CommandError::Corrupt { .. } | CommandError::Store(_) | CommandError::Keys(_) => Code::Internal,
    }
}

/// Maps a refused or failed command.
pub fn command(error: CommandError) -> Error {
    match command_code(&error) {
        Code::Internal => internal(&error),
        code => client(code, error.to_string()),
    }
}

/// Gives every error of a response a code: errors raised by the GraphQL layer itself (syntax,
/// validation, limits, argument coercion) are the client's and get `BAD_USER_INPUT`.
pub fn normalize(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
        if !has_code {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", Code::BadUserInput.as_str());
        }
    }
}
