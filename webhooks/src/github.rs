//! GitHub's push payload, which Gitea and Forgejo copy: `ref`, `before`, `after`, `commits[]` with
//! `added`/`removed`/`modified`, and `head_commit`.

use serde::Deserialize;

use crate::event::{commit_id, from_json, ignored_ref, is_zero_id, message, missing, name, ChangedFiles};
use crate::{Event, ParseError, Push, PushRef};

/// GitHub lists at most this many commits in a push payload.
const GITHUB_MAX_COMMITS: usize = 2048;

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    /// GitHub only.
    deleted: Option<bool>,
    commits: Option<Vec<Commit>>,
    /// The commit the ref points to after the push; null when it was deleted.
    head_commit: Option<Commit>,
    /// Gitea and Forgejo: how many commits were pushed, of which `commits` may list fewer.
    total_commits: Option<u64>,
}

#[derive(Deserialize)]
struct Commit {
    id: Option<String>,
    message: Option<String>,
    author: Option<Author>,
    added: Option<Vec<String>>,
    removed: Option<Vec<String>>,
    modified: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Author {
    name: Option<String>,
}

/// Reads a GitHub delivery, or (`gitea`) a Gitea or Forgejo one.
pub(crate) fn parse(kind: &str, body: &[u8], gitea: bool) -> Result<Event, ParseError> {
    match kind {
        "ping" if !gitea => Ok(Event::Ping),
        "push" => push(body, gitea),
        other => Ok(Event::Ignored { kind: other.to_owned() }),
    }
}

fn push(body: &[u8], gitea: bool) -> Result<Event, ParseError> {
    const EVENT: &str = "push";
    let payload: PushPayload = from_json(EVENT, body)?;
    let full_ref = payload.git_ref.ok_or_else(|| missing(EVENT, "ref"))?;
    let after = commit_id(
        EVENT,
        "after",
        payload.after.as_deref().ok_or_else(|| missing(EVENT, "after"))?,
    )?;
    // Gitea's and Forgejo's "Test delivery" button sends the branch head as a push from a commit to
    // itself; git never reports such an update, so it can only be the test.
    if gitea && payload.before.is_some_and(|before| before.eq_ignore_ascii_case(&after)) {
        return Ok(Event::Ping);
    }
    let Some(git_ref) = PushRef::parse(&full_ref) else {
        return Ok(ignored_ref(EVENT, &full_ref));
    };
    let deleted = payload.deleted.unwrap_or(false) || is_zero_id(&after);
    let head_commit = payload.head_commit.filter(|_| !deleted);
    let commit = match head_commit.as_ref().and_then(|head| head.id.as_deref()) {
        Some(id) => commit_id(EVENT, "head_commit.id", id)?,
        None => after,
    };

    let commits = payload.commits.unwrap_or_default();
    let head = head_commit.as_ref().or_else(|| {
        commits
            .iter()
            .find(|c| c.id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(&commit)))
    });
    let message = message(head.and_then(|head| head.message.as_deref()));
    let author = name(head.and_then(|head| head.author.as_ref()?.name.as_deref()));

    let mut files = ChangedFiles::default();
    for c in &commits {
        files.extend(c.added.iter().chain(&c.modified).chain(&c.removed).flatten());
    }
    let (changed_files, all_files) = files.finish();
    let all_commits = if gitea {
        payload.total_commits.is_none_or(|total| total <= commits.len() as u64)
    } else {
        commits.len() < GITHUB_MAX_COMMITS
    };

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

    const BEFORE: &str = "1111111111111111111111111111111111111111";
    const FIRST: &str = "2222222222222222222222222222222222222222";
    const HEAD: &str = "3333333333333333333333333333333333333333";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    /// A minimal push in GitHub's documented shape: two commits, the second the head.
    fn push_body(git_ref: &str) -> String {
        format!(
            r#"{{
              "ref": "{git_ref}", "before": "{BEFORE}", "after": "{HEAD}",
              "created": false, "deleted": false, "forced": false,
              "commits": [
                {{"id": "{FIRST}", "message": "Add parser", "author": {{"name": "Ada", "email": "ada@example.com"}},
                  "added": ["src/parser.rs"], "removed": [], "modified": ["Cargo.toml", "README.md"]}},
                {{"id": "{HEAD}", "message": "Fix parser\n\nDetails.", "author": {{"name": "Grace", "email": "g@example.com"}},
                  "added": [], "removed": ["old.txt"], "modified": ["src/parser.rs", "Cargo.toml"]}}
              ],
              "head_commit": {{"id": "{HEAD}", "message": "Fix parser\n\nDetails.",
                "author": {{"name": "Grace", "email": "g@example.com"}},
                "added": [], "removed": ["old.txt"], "modified": ["src/parser.rs", "Cargo.toml"]}},
              "repository": {{"full_name": "acme/app"}}, "pusher": {{"name": "grace"}}
            }}"#
        )
    }

    fn github(event: &str, body: &str) -> Result<Event, ParseError> {
        parse_event(Host::GitHub, &[("x-github-event", event)][..], body.as_bytes())
    }

    fn expect_push(event: Result<Event, ParseError>) -> Push {
        match event {
            Ok(Event::Push(push)) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    #[test]
    fn github_branch_push_merges_files_across_commits() {
        let push = expect_push(github("push", &push_body("refs/heads/main")));
        assert_eq!(
            push,
            Push {
                git_ref: PushRef::Branch("main".into()),
                commit: HEAD.into(),
                message: Some("Fix parser\n\nDetails.".into()),
                author: Some("Grace".into()),
                changed_files: vec![
                    "Cargo.toml".into(),
                    "README.md".into(),
                    "old.txt".into(),
                    "src/parser.rs".into()
                ],
                changed_files_complete: true,
                deleted: false,
            }
        );
    }

    #[test]
    fn github_tag_push_names_the_tag() {
        let push = expect_push(github("push", &push_body("refs/tags/v1.4.0")));
        assert_eq!(push.git_ref, PushRef::Tag("v1.4.0".into()));
        assert_eq!(push.commit, HEAD);
    }

    #[test]
    fn an_annotated_tag_builds_the_tagged_commit_not_the_tag_object() {
        let tag_object = "4444444444444444444444444444444444444444";
        let body = format!(
            r#"{{"ref": "refs/tags/v2", "before": "{ZERO}", "after": "{tag_object}", "created": true,
                "commits": [], "head_commit": {{"id": "{HEAD}", "message": "Release", "author": {{"name": "Ada"}}}}}}"#
        );
        let push = expect_push(github("push", &body));
        assert_eq!((push.commit.as_str(), push.message.as_deref()), (HEAD, Some("Release")));
        assert!(push.changed_files.is_empty());
    }

    #[test]
    fn github_branch_deletion_is_detected() {
        let body = format!(
            r#"{{"ref": "refs/heads/old", "before": "{BEFORE}", "after": "{ZERO}", "deleted": true,
                "commits": [], "head_commit": null}}"#
        );
        let push = expect_push(github("push", &body));
        assert!(push.deleted);
        assert_eq!(push.git_ref, PushRef::Branch("old".into()));
        assert_eq!((push.commit.as_str(), push.message, push.author), (ZERO, None, None));
    }

    #[test]
    fn github_ping_is_a_ping_and_other_events_are_ignored() {
        let ping = r#"{"zen": "Design for failure.", "hook_id": 42, "hook": {"type": "Repository"}}"#;
        assert_eq!(github("ping", ping).ok(), Some(Event::Ping));
        for kind in ["pull_request", "create", "delete", "issues"] {
            assert_eq!(github(kind, "{}").ok(), Some(Event::Ignored { kind: kind.into() }));
        }
    }

    #[test]
    fn a_push_to_another_ref_namespace_is_ignored() {
        let event = github("push", &push_body("refs/notes/commits")).ok();
        assert_eq!(
            event,
            Some(Event::Ignored {
                kind: "push to refs/notes/commits".into()
            })
        );
    }

    #[test]
    fn a_push_without_ref_or_after_names_the_missing_field() {
        let no_ref = format!(r#"{{"after": "{HEAD}"}}"#);
        let err = github("push", &no_ref).expect_err("should be refused");
        assert!(matches!(err, ParseError::MissingField { field: "ref", .. }), "{err}");
        assert_eq!(err.to_string(), "the push payload has no `ref`");

        let err = github("push", r#"{"ref": "refs/heads/main", "after": null}"#).expect_err("should be refused");
        assert!(matches!(err, ParseError::MissingField { field: "after", .. }), "{err}");

        let err = github("push", r#"{"ref": "refs/heads/main", "after": "HEAD"}"#).expect_err("should be refused");
        assert!(matches!(err, ParseError::InvalidField { field: "after", .. }), "{err}");
    }

    #[test]
    fn github_lists_at_most_2048_commits_so_a_full_list_may_be_incomplete() {
        let commit = format!(r#"{{"id": "{FIRST}", "added": ["a"]}}"#);
        let commits = vec![commit; 2048].join(",");
        let body = format!(r#"{{"ref": "refs/heads/main", "after": "{HEAD}", "commits": [{commits}]}}"#);
        let push = expect_push(github("push", &body));
        assert_eq!(push.changed_files, vec!["a".to_owned()]);
        assert!(!push.changed_files_complete);
    }

    #[test]
    fn without_head_commit_the_listed_commit_named_by_after_is_the_head() {
        let body = format!(
            r#"{{"ref": "refs/heads/main", "after": "{HEAD}", "commits": [
                {{"id": "{HEAD}", "message": "Newest", "author": {{"name": "Lin"}}}},
                {{"id": "{FIRST}", "message": "Oldest", "author": {{"name": "Kay"}}}}]}}"#
        );
        let push = expect_push(github("push", &body));
        assert_eq!(
            (push.message.as_deref(), push.author.as_deref()),
            (Some("Newest"), Some("Lin"))
        );
    }

    fn gitea_headers(prefix: &str, event: &str) -> Vec<(String, String)> {
        vec![
            (format!("x-{prefix}-event"), event.to_owned()),
            (format!("x-{prefix}-event-type"), event.to_owned()),
            (
                format!("x-{prefix}-delivery"),
                "0b5b7e8e-9b55-4d8a-a7b0-0c1e3c7d6a11".to_owned(),
            ),
        ]
    }

    /// A minimal push in Gitea's documented shape: commits newest first, `total_commits`, messages
    /// ending in a newline.
    fn gitea_body(before: &str, total: u64) -> String {
        format!(
            r#"{{
              "ref": "refs/heads/develop", "before": "{before}", "after": "{HEAD}",
              "compare_url": "https://git.example.com/acme/app/compare/x...y",
              "commits": [
                {{"id": "{HEAD}", "message": "Second\n", "author": {{"name": "Grace", "email": "g@example.com", "username": "grace"}},
                  "added": ["b.txt"], "removed": null, "modified": ["a.txt"]}},
                {{"id": "{FIRST}", "message": "First\n", "author": {{"name": "Ada", "email": "a@example.com", "username": "ada"}},
                  "added": ["a.txt"], "removed": [], "modified": []}}
              ],
              "total_commits": {total},
              "head_commit": {{"id": "{HEAD}", "message": "Second\n", "author": {{"name": "Grace"}},
                "added": ["b.txt"], "removed": [], "modified": ["a.txt"]}},
              "repository": {{"full_name": "acme/app"}}, "pusher": {{"login": "grace"}}
            }}"#
        )
    }

    #[test]
    fn gitea_and_forgejo_pushes_read_like_githubs() {
        for (host, prefix) in [
            (Host::Gitea, "gitea"),
            (Host::Forgejo, "forgejo"),
            (Host::Forgejo, "gitea"),
        ] {
            let event = parse_event(host, &gitea_headers(prefix, "push"), gitea_body(BEFORE, 2).as_bytes());
            let push = expect_push(event);
            assert_eq!(push.git_ref, PushRef::Branch("develop".into()), "{host} {prefix}");
            assert_eq!(push.commit, HEAD);
            assert_eq!(
                (push.message.as_deref(), push.author.as_deref()),
                (Some("Second"), Some("Grace"))
            );
            assert_eq!(push.changed_files, vec!["a.txt".to_owned(), "b.txt".to_owned()]);
            assert!(push.changed_files_complete && !push.deleted);
        }
    }

    #[test]
    fn gitea_says_when_it_listed_fewer_commits_than_were_pushed() {
        let push = expect_push(parse_event(
            Host::Gitea,
            &gitea_headers("gitea", "push"),
            gitea_body(BEFORE, 40).as_bytes(),
        ));
        assert!(!push.changed_files_complete);
    }

    #[test]
    fn gitea_test_delivery_is_a_ping() {
        for host in [Host::Gitea, Host::Forgejo] {
            let event = parse_event(host, &gitea_headers("gitea", "push"), gitea_body(HEAD, 1).as_bytes());
            assert_eq!(event.ok(), Some(Event::Ping), "{host}");
        }
        let empty_repo =
            format!(r#"{{"ref": "refs/heads/main", "before": "{ZERO}", "after": "{ZERO}", "commits": []}}"#);
        let event = parse_event(Host::Gitea, &gitea_headers("gitea", "push"), empty_repo.as_bytes());
        assert_eq!(event.ok(), Some(Event::Ping));
    }

    #[test]
    fn a_github_push_from_a_commit_to_itself_is_still_a_push() {
        let body = format!(r#"{{"ref": "refs/heads/main", "before": "{HEAD}", "after": "{HEAD}"}}"#);
        assert!(matches!(github("push", &body), Ok(Event::Push(_))));
    }

    #[test]
    fn gitea_tag_push_and_deletion() {
        let tag = format!(r#"{{"ref": "refs/tags/v0.3.0", "before": "{ZERO}", "after": "{HEAD}", "commits": []}}"#);
        let push = expect_push(parse_event(
            Host::Gitea,
            &gitea_headers("gitea", "push"),
            tag.as_bytes(),
        ));
        assert_eq!((push.git_ref, push.deleted), (PushRef::Tag("v0.3.0".into()), false));

        let deleted =
            format!(r#"{{"ref": "refs/heads/topic", "before": "{BEFORE}", "after": "{ZERO}", "commits": []}}"#);
        let push = expect_push(parse_event(
            Host::Forgejo,
            &gitea_headers("forgejo", "push"),
            deleted.as_bytes(),
        ));
        assert!(push.deleted);
        assert_eq!(push.commit, ZERO);
    }

    #[test]
    fn gitea_other_events_are_ignored_and_the_event_type_header_is_a_fallback() {
        let event = parse_event(Host::Gitea, &gitea_headers("gitea", "pull_request"), b"{}");
        assert_eq!(
            event.ok(),
            Some(Event::Ignored {
                kind: "pull_request".into()
            })
        );
        let headers = [("x-gitea-event", ""), ("x-gitea-event-type", "package")];
        assert_eq!(
            parse_event(Host::Gitea, &headers[..], b"{}").ok(),
            Some(Event::Ignored { kind: "package".into() })
        );
        // Gitea has no ping event; the name means nothing special there.
        assert_eq!(
            parse_event(Host::Gitea, &gitea_headers("gitea", "ping"), b"{}").ok(),
            Some(Event::Ignored { kind: "ping".into() })
        );
    }

    #[test]
    fn forgejo_prefers_its_own_event_header() {
        let headers = [("x-gitea-event", "issues"), ("x-forgejo-event", "push")];
        let body = gitea_body(BEFORE, 2);
        assert!(matches!(
            parse_event(Host::Forgejo, &headers[..], body.as_bytes()),
            Ok(Event::Push(_))
        ));
    }
}
