//! GitLab's push and tag push payloads: `ref`, `before`, `after`, `checkout_sha`, `commits[]`
//! (at most 20) and `total_commits_count`.

use serde::Deserialize;

use crate::event::{commit_id, from_json, ignored_ref, is_zero_id, message, missing, name, ChangedFiles};
use crate::{Event, ParseError, Push, PushRef};

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    /// The commit to check out: for an annotated tag the tagged commit, where `after` is the tag
    /// object. Null when the ref was deleted.
    checkout_sha: Option<String>,
    commits: Option<Vec<Commit>>,
    total_commits_count: Option<u64>,
}

#[derive(Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    author: Option<Author>,
    added: Option<Vec<String>>,
    modified: Option<Vec<String>>,
    removed: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Author {
    name: Option<String>,
}

/// Reads a GitLab delivery. GitLab has no ping: "Test" in its webhook settings sends an ordinary
/// push built from the project's latest commits, and that becomes an ordinary [`Event::Push`].
pub(crate) fn parse(kind: &str, body: &[u8]) -> Result<Event, ParseError> {
    match kind {
        "Push Hook" | "Tag Push Hook" => push(kind, body),
        other => Ok(Event::Ignored { kind: other.to_owned() }),
    }
}

fn push(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    let payload: PushPayload = from_json(event, body)?;
    let full_ref = payload.git_ref.ok_or_else(|| missing(event, "ref"))?;
    let after = commit_id(
        event,
        "after",
        payload.after.as_deref().ok_or_else(|| missing(event, "after"))?,
    )?;
    let Some(git_ref) = PushRef::parse(&full_ref) else {
        return Ok(ignored_ref(event, &full_ref));
    };
    let deleted = is_zero_id(&after);
    let commit = match payload
        .checkout_sha
        .as_deref()
        .filter(|sha| !deleted && !sha.is_empty())
    {
        Some(sha) => commit_id(event, "checkout_sha", sha)?,
        None => after,
    };

    let commits = payload.commits.unwrap_or_default();
    let head = commits
        .iter()
        .find(|c| c.id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(&commit)));
    let message = message(head.and_then(|head| head.message.as_deref()));
    let author = name(head.and_then(|head| head.author.as_ref()?.name.as_deref()));

    let mut files = ChangedFiles::default();
    for c in &commits {
        files.extend(c.added.iter().chain(&c.modified).chain(&c.removed).flatten());
    }
    let (changed_files, all_files) = files.finish();
    let all_commits = payload
        .total_commits_count
        .is_none_or(|total| total <= commits.len() as u64);

    Ok(Event::Push(Push {
        git_ref,
        commit,
        message,
        author,
        changed_files,
        changed_files_complete: all_files && all_commits,
        deleted,
    }))
}

#[cfg(test)]
mod tests {
    use crate::{parse_event, Event, Host, ParseError, Push, PushRef};

    const BEFORE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9011121314";
    const FIRST: &str = "b2c3d4e5f60718293a4b5c6d7e8f901112131415";
    const HEAD: &str = "c3d4e5f60718293a4b5c6d7e8f90111213141516";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn gitlab(event: &str, body: &str) -> Result<Event, ParseError> {
        let headers = [
            ("x-gitlab-event", event),
            ("x-gitlab-event-uuid", "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
            ("x-gitlab-token", "unused here"),
        ];
        parse_event(Host::GitLab, &headers[..], body.as_bytes())
    }

    fn expect_push(event: Result<Event, ParseError>) -> Push {
        match event {
            Ok(Event::Push(push)) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    /// A minimal push in GitLab's documented shape: commits oldest first.
    fn push_body(total: u64) -> String {
        format!(
            r#"{{
              "object_kind": "push", "event_name": "push",
              "before": "{BEFORE}", "after": "{HEAD}", "ref": "refs/heads/feature/login", "checkout_sha": "{HEAD}",
              "user_name": "Pusher", "project": {{"path_with_namespace": "acme/app"}},
              "commits": [
                {{"id": "{FIRST}", "message": "Add login form\n", "title": "Add login form",
                  "author": {{"name": "Ada", "email": "ada@example.com"}},
                  "added": ["web/login.html"], "modified": ["web/app.js"], "removed": []}},
                {{"id": "{HEAD}", "message": "Validate input\n", "title": "Validate input",
                  "author": {{"name": "Grace", "email": "grace@example.com"}},
                  "added": [], "modified": ["web/app.js", "web/login.html"], "removed": ["web/old.js"]}}
              ],
              "total_commits_count": {total}
            }}"#
        )
    }

    #[test]
    fn gitlab_branch_push_merges_files_across_commits() {
        assert_eq!(
            expect_push(gitlab("Push Hook", &push_body(2))),
            Push {
                git_ref: PushRef::Branch("feature/login".into()),
                commit: HEAD.into(),
                message: Some("Validate input".into()),
                author: Some("Grace".into()),
                changed_files: vec!["web/app.js".into(), "web/login.html".into(), "web/old.js".into()],
                changed_files_complete: true,
                deleted: false,
            }
        );
    }

    #[test]
    fn gitlab_lists_only_20_commits_and_says_how_many_there_were() {
        assert!(!expect_push(gitlab("Push Hook", &push_body(35))).changed_files_complete);
    }

    #[test]
    fn gitlab_tag_push_builds_the_checkout_sha() {
        let tag_object = "d4e5f60718293a4b5c6d7e8f9011121314151617";
        let body = format!(
            r#"{{"object_kind": "tag_push", "before": "{ZERO}", "after": "{tag_object}", "ref": "refs/tags/v1.0.0",
                "checkout_sha": "{HEAD}", "message": "Release 1.0", "commits": [], "total_commits_count": 0}}"#
        );
        let push = expect_push(gitlab("Tag Push Hook", &body));
        assert_eq!(push.git_ref, PushRef::Tag("v1.0.0".into()));
        assert_eq!(push.commit, HEAD);
        assert_eq!((push.message, push.author, push.deleted), (None, None, false));
    }

    #[test]
    fn gitlab_deletion_is_detected() {
        let body = format!(
            r#"{{"object_kind": "tag_push", "before": "{BEFORE}", "after": "{ZERO}", "ref": "refs/tags/v0.9",
                "checkout_sha": null, "commits": [], "total_commits_count": 0}}"#
        );
        let push = expect_push(gitlab("Tag Push Hook", &body));
        assert!(push.deleted);
        assert_eq!(push.commit, ZERO);
    }

    #[test]
    fn gitlab_other_events_are_ignored() {
        for kind in ["Merge Request Hook", "Pipeline Hook", "System Hook"] {
            assert_eq!(gitlab(kind, "{}").ok(), Some(Event::Ignored { kind: kind.into() }));
        }
    }

    #[test]
    fn gitlab_push_without_ref_is_an_error() {
        let body = format!(r#"{{"object_kind": "push", "after": "{HEAD}"}}"#);
        let err = gitlab("Push Hook", &body).expect_err("should be refused");
        assert_eq!(err.to_string(), "the Push Hook payload has no `ref`");
    }
}
