use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use crate::headers::{first_present, Headers};
use crate::{bitbucket, github, gitlab, Host};

/// The most paths a [`Push`] lists in `changed_files`; beyond it the list is cut and
/// `changed_files_complete` is false, so a push that touches a huge tree stays a small event.
pub const MAX_CHANGED_FILES: usize = 5_000;

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The host checking that the endpoint answers; nothing to build.
    Ping,
    /// A branch or tag was pushed (or deleted).
    Push(Push),
    /// An event this crate does not act on. `kind` starts with the host's name for the event
    /// (`pull_request`, `Merge Request Hook`, `repo:fork`, …), followed by a reason when the event
    /// itself is known (`push to refs/notes/commits`).
    Ignored { kind: String },
}

/// A push to a branch or a tag, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub git_ref: PushRef,
    /// The commit the ref now points to: lower-case hex, 40 (SHA-1) or 64 (SHA-256) digits. For an
    /// annotated tag this is the tagged commit where the host names it (GitHub's, Gitea's and
    /// Forgejo's `head_commit`, GitLab's `checkout_sha`), otherwise the host's `after`. All zeros
    /// when the ref was deleted.
    pub commit: String,
    /// The head commit's message, when the host includes it.
    pub message: Option<String>,
    /// The name of the head commit's author, when the host includes it.
    pub author: Option<String>,
    /// Paths added, modified or removed by the commits the host lists, sorted and deduplicated,
    /// at most [`MAX_CHANGED_FILES`] of them. A new branch whose commits were all in the
    /// repository already lists none.
    pub changed_files: Vec<String>,
    /// False when `changed_files` may miss paths: the host lists no files (Bitbucket), lists fewer
    /// commits than were pushed (GitLab lists 20, GitHub 2048, Gitea and Forgejo say how many
    /// they left out), or the list reached [`MAX_CHANGED_FILES`]. A path filter should build when
    /// this is false.
    pub changed_files_complete: bool,
    /// The push deleted the branch or tag.
    pub deleted: bool,
}

/// The ref a push updated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PushRef {
    /// `refs/heads/<name>`.
    Branch(String),
    /// `refs/tags/<name>`.
    Tag(String),
}

impl PushRef {
    /// The branch or tag of a full ref name; `None` for other namespaces and empty names.
    pub fn parse(full: &str) -> Option<PushRef> {
        if let Some(name) = full.strip_prefix("refs/heads/") {
            (!name.is_empty()).then(|| PushRef::Branch(name.to_owned()))
        } else if let Some(name) = full.strip_prefix("refs/tags/") {
            (!name.is_empty()).then(|| PushRef::Tag(name.to_owned()))
        } else {
            None
        }
    }

    /// The short name: `main`, `v1.2.0`.
    pub fn name(&self) -> &str {
        match self {
            PushRef::Branch(name) | PushRef::Tag(name) => name,
        }
    }

    /// The full ref name: `refs/heads/main`, `refs/tags/v1.2.0`.
    pub fn full_name(&self) -> String {
        match self {
            PushRef::Branch(name) => format!("refs/heads/{name}"),
            PushRef::Tag(name) => format!("refs/tags/{name}"),
        }
    }
}

/// Why a delivery's body could not be read as the event its headers announce.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The header naming the event is absent or blank.
    #[error("the delivery has no {header} header")]
    MissingEventHeader { header: &'static str },
    /// The body is not JSON, or a field has the wrong type.
    #[error("the body is not a valid {event} payload: {error}")]
    Json { event: String, error: serde_json::Error },
    /// A field a push cannot do without is absent or null.
    #[error("the {event} payload has no `{field}`")]
    MissingField { event: String, field: &'static str },
    /// A field is present but unusable.
    #[error("the {event} payload has an invalid `{field}`: {reason}")]
    InvalidField {
        event: String,
        field: &'static str,
        reason: &'static str,
    },
}

/// Reads a delivery's event from its event header and body. Call [`crate::verify`] first.
///
/// Unknown fields are ignored and fields hosts leave out are optional; only what a push needs
/// (its ref and commit) is required. A push to a ref outside `refs/heads/` and `refs/tags/` is
/// [`Event::Ignored`].
pub fn parse_event<H: Headers + ?Sized>(host: Host, headers: &H, body: &[u8]) -> Result<Event, ParseError> {
    let (header, names): (&'static str, &[&str]) = match host {
        Host::GitHub => ("X-GitHub-Event", &["x-github-event"]),
        Host::GitLab => ("X-Gitlab-Event", &["x-gitlab-event"]),
        Host::Bitbucket => ("X-Event-Key", &["x-event-key"]),
        // Gitea leaves X-Gitea-Event empty for the event types it has no family name for.
        Host::Gitea => ("X-Gitea-Event", &["x-gitea-event", "x-gitea-event-type"]),
        Host::Forgejo => (
            "X-Forgejo-Event",
            &[
                "x-forgejo-event",
                "x-forgejo-event-type",
                "x-gitea-event",
                "x-gitea-event-type",
            ],
        ),
    };
    let kind = first_present(headers, names).ok_or(ParseError::MissingEventHeader { header })?;
    match host {
        Host::GitHub => github::parse(kind, body, false),
        Host::Gitea | Host::Forgejo => github::parse(kind, body, true),
        Host::GitLab => gitlab::parse(kind, body),
        Host::Bitbucket => bitbucket::parse(kind, body),
    }
}

/// Deserialises the body of an `event` delivery.
pub(crate) fn from_json<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|error| ParseError::Json {
        event: event.to_owned(),
        error,
    })
}

pub(crate) fn missing(event: &str, field: &'static str) -> ParseError {
    ParseError::MissingField {
        event: event.to_owned(),
        field,
    }
}

/// A commit id as hosts send it, checked and lower-cased.
pub(crate) fn commit_id(event: &str, field: &'static str, value: &str) -> Result<String, ParseError> {
    if matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ParseError::InvalidField {
            event: event.to_owned(),
            field,
            reason: "not a commit id of 40 or 64 hex digits",
        })
    }
}

/// Git's "no object": the `after` of a deleted ref, the `before` of a created one.
pub(crate) fn is_zero_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b == b'0')
}

/// A commit message, without the trailing newline some hosts keep; `None` when blank.
pub(crate) fn message(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim_end)
        .filter(|m| !m.trim_start().is_empty())
        .map(str::to_owned)
}

/// A person's name, trimmed; `None` when blank.
pub(crate) fn name(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned)
}

/// A push to a ref that is neither a branch nor a tag.
pub(crate) fn ignored_ref(event: &str, full: &str) -> Event {
    Event::Ignored {
        kind: format!("{event} to {full}"),
    }
}

/// Collects changed paths: sorted, deduplicated and capped at [`MAX_CHANGED_FILES`].
#[derive(Debug, Default)]
pub(crate) struct ChangedFiles {
    paths: BTreeSet<String>,
    cut: bool,
}

impl ChangedFiles {
    pub(crate) fn extend<'a>(&mut self, paths: impl IntoIterator<Item = &'a String>) {
        for path in paths {
            if self.paths.len() < MAX_CHANGED_FILES {
                self.paths.insert(path.clone());
            } else if !self.paths.contains(path) {
                self.cut = true;
            }
        }
    }

    /// The sorted paths, and whether none was cut.
    pub(crate) fn finish(self) -> (Vec<String>, bool) {
        (self.paths.into_iter().collect(), !self.cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_outside_heads_and_tags_or_without_a_name_are_not_push_refs() {
        assert_eq!(
            PushRef::parse("refs/heads/feature/x"),
            Some(PushRef::Branch("feature/x".into()))
        );
        assert_eq!(PushRef::parse("refs/tags/v1.0.0"), Some(PushRef::Tag("v1.0.0".into())));
        assert_eq!(PushRef::parse("refs/heads/"), None);
        assert_eq!(PushRef::parse("refs/notes/commits"), None);
        assert_eq!(PushRef::parse("main"), None);
        let tag = PushRef::Tag("v1".into());
        assert_eq!((tag.name(), tag.full_name().as_str()), ("v1", "refs/tags/v1"));
    }

    #[test]
    fn commit_ids_must_be_sha1_or_sha256_hex() {
        let sha1 = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(commit_id("push", "after", sha1).ok(), Some(sha1.to_ascii_lowercase()));
        assert!(commit_id("push", "after", &"a".repeat(64)).is_ok());
        assert!(commit_id("push", "after", "0123456").is_err());
        assert!(commit_id("push", "after", &"g".repeat(40)).is_err());
        assert!(is_zero_id(&"0".repeat(40)) && !is_zero_id("") && !is_zero_id(sha1));
    }

    #[test]
    fn changed_files_are_cut_at_the_cap_but_repeats_do_not_count() {
        let many: Vec<String> = (0..MAX_CHANGED_FILES + 10).map(|i| format!("f{i:05}")).collect();
        let mut files = ChangedFiles::default();
        files.extend(&many[..MAX_CHANGED_FILES]);
        files.extend(&many[..3]);
        let (paths, complete) = files.finish();
        assert_eq!((paths.len(), complete), (MAX_CHANGED_FILES, true));

        let mut files = ChangedFiles::default();
        files.extend(&many);
        let (paths, complete) = files.finish();
        assert_eq!((paths.len(), complete), (MAX_CHANGED_FILES, false));
    }

    #[test]
    fn a_missing_event_header_is_an_error_naming_it() {
        let err = parse_event(Host::GitLab, &[("x-github-event", "push")][..], b"{}").expect_err("should be refused");
        assert!(
            matches!(
                err,
                ParseError::MissingEventHeader {
                    header: "X-Gitlab-Event"
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_is_an_error_naming_the_event() {
        let err =
            parse_event(Host::GitHub, &[("x-github-event", "push")][..], b"{\"ref\":").expect_err("should be refused");
        assert!(matches!(err, ParseError::Json { .. }), "{err}");
        assert!(err.to_string().contains("push"), "{err}");
    }
}
