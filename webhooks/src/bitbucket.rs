//! Bitbucket's push payloads. Cloud (`repo:push`) describes each updated ref as
//! `push.changes[]` with an `old` and a `new` side (`type`, `name`, `target.hash`,
//! `target.message`, `target.author.raw`); Data Center (`repo:refs_changed`) as `changes[]` with
//! `refId`, `fromHash`, `toHash` and `type` (`ADD`, `UPDATE`, `DELETE`). Neither lists changed
//! files.

use serde::Deserialize;

use crate::event::{commit_id, from_json, ignored_ref, is_zero_id, message, missing, name};
use crate::{Event, ParseError, Push, PushRef};

const CLOUD_PUSH: &str = "repo:push";
const SERVER_PUSH: &str = "repo:refs_changed";
/// The "Test connection" button of Bitbucket Data Center.
const SERVER_PING: &str = "diagnostics:ping";

#[derive(Deserialize)]
struct CloudPayload {
    push: Option<CloudPush>,
}

#[derive(Deserialize)]
struct CloudPush {
    changes: Option<Vec<CloudChange>>,
}

#[derive(Deserialize)]
struct CloudChange {
    new: Option<CloudRefState>,
    old: Option<CloudRefState>,
}

#[derive(Deserialize)]
struct CloudRefState {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    target: Option<CloudTarget>,
}

#[derive(Deserialize)]
struct CloudTarget {
    hash: Option<String>,
    message: Option<String>,
    author: Option<CloudAuthor>,
}

#[derive(Deserialize)]
struct CloudAuthor {
    /// `Name <email>`, as git recorded it.
    raw: Option<String>,
    user: Option<CloudUser>,
}

#[derive(Deserialize)]
struct CloudUser {
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct ServerPayload {
    changes: Option<Vec<ServerChange>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerChange {
    ref_id: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<ServerRef>,
    to_hash: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ServerRef {
    id: Option<String>,
}

/// Reads a Bitbucket Cloud or Data Center delivery.
pub(crate) fn parse(kind: &str, body: &[u8]) -> Result<Event, ParseError> {
    match kind {
        CLOUD_PUSH => cloud_push(body),
        SERVER_PUSH => server_push(body),
        SERVER_PING => Ok(Event::Ping),
        other => Ok(Event::Ignored { kind: other.to_owned() }),
    }
}

/// One push can update several refs, and a build starts from one: the first change with a `new`
/// side (a ref created or moved) is taken. When every change deletes its ref, the first deletion is
/// reported, with `deleted` set and an all-zero commit.
fn cloud_push(body: &[u8]) -> Result<Event, ParseError> {
    const EVENT: &str = CLOUD_PUSH;
    let payload: CloudPayload = from_json(EVENT, body)?;
    let changes = payload
        .push
        .and_then(|push| push.changes)
        .ok_or_else(|| missing(EVENT, "push.changes"))?;
    let (state, deleted) = match changes.iter().find_map(|change| change.new.as_ref()) {
        Some(new) => (new, false),
        None => match changes.iter().find_map(|change| change.old.as_ref()) {
            Some(old) => (old, true),
            None => return Err(missing(EVENT, "push.changes[].new")),
        },
    };
    let (type_field, name_field, hash_field) = if deleted {
        (
            "push.changes[].old.type",
            "push.changes[].old.name",
            "push.changes[].old.target.hash",
        )
    } else {
        (
            "push.changes[].new.type",
            "push.changes[].new.name",
            "push.changes[].new.target.hash",
        )
    };

    let ref_name = state
        .name
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| missing(EVENT, name_field))?;
    let git_ref = match state.kind.as_deref().ok_or_else(|| missing(EVENT, type_field))? {
        "branch" => PushRef::Branch(ref_name),
        "tag" => PushRef::Tag(ref_name),
        other => {
            return Ok(Event::Ignored {
                kind: format!("{EVENT} of a {other}"),
            })
        }
    };
    let target = state.target.as_ref();
    let commit = if deleted {
        "0".repeat(40)
    } else {
        let hash = target
            .and_then(|t| t.hash.as_deref())
            .ok_or_else(|| missing(EVENT, hash_field))?;
        commit_id(EVENT, hash_field, hash)?
    };
    let (message, author) = match target.filter(|_| !deleted) {
        Some(target) => (
            message(target.message.as_deref()),
            target.author.as_ref().and_then(author_name),
        ),
        None => (None, None),
    };

    Ok(Event::Push(Push {
        git_ref,
        commit,
        message,
        author,
        changed_files: Vec::new(),
        changed_files_complete: false,
        deleted,
    }))
}

/// The name part of git's `Name <email>`, else the Bitbucket account's display name.
fn author_name(author: &CloudAuthor) -> Option<String> {
    let from_raw = author
        .raw
        .as_deref()
        .map(|raw| raw.split_once('<').map_or(raw, |(name, _)| name));
    name(from_raw).or_else(|| name(author.user.as_ref()?.display_name.as_deref()))
}

/// Data Center reports each updated ref; as for Cloud, the first one is taken.
fn server_push(body: &[u8]) -> Result<Event, ParseError> {
    const EVENT: &str = SERVER_PUSH;
    let payload: ServerPayload = from_json(EVENT, body)?;
    let change = payload
        .changes
        .and_then(|changes| changes.into_iter().next())
        .ok_or_else(|| missing(EVENT, "changes"))?;
    let full_ref = change
        .ref_id
        .or_else(|| change.git_ref.and_then(|r| r.id))
        .ok_or_else(|| missing(EVENT, "changes[].refId"))?;
    let to_hash = change.to_hash.ok_or_else(|| missing(EVENT, "changes[].toHash"))?;
    let commit = commit_id(EVENT, "changes[].toHash", &to_hash)?;
    let Some(git_ref) = PushRef::parse(&full_ref) else {
        return Ok(ignored_ref(EVENT, &full_ref));
    };
    let deleted = change.kind.as_deref() == Some("DELETE") || is_zero_id(&commit);

    Ok(Event::Push(Push {
        git_ref,
        commit,
        message: None,
        author: None,
        changed_files: Vec::new(),
        changed_files_complete: false,
        deleted,
    }))
}

#[cfg(test)]
mod tests {
    use crate::{parse_event, Event, Host, ParseError, Push, PushRef};

    const OLD: &str = "e1e2e3e4e5e6e7e8e9e0e1e2e3e4e5e6e7e8e9e0";
    const HEAD: &str = "f1f2f3f4f5f6f7f8f9f0f1f2f3f4f5f6f7f8f9f0";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn bitbucket(event: &str, body: &str) -> Result<Event, ParseError> {
        let headers = [
            ("x-event-key", event),
            ("x-request-uuid", "9d3c2b1a-0f9e-4d8c-b7a6-5e4d3c2b1a0f"),
            ("x-hook-uuid", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
            ("x-attempt-number", "1"),
        ];
        parse_event(Host::Bitbucket, &headers[..], body.as_bytes())
    }

    fn expect_push(event: Result<Event, ParseError>) -> Push {
        match event {
            Ok(Event::Push(push)) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    fn side(kind: &str, name: &str, hash: &str, message: &str) -> String {
        format!(
            r#"{{"type": "{kind}", "name": "{name}",
                "target": {{"type": "commit", "hash": "{hash}", "message": "{message}",
                  "author": {{"raw": "Ada Lovelace <ada@example.com>", "user": {{"display_name": "Ada L."}}}}}}}}"#
        )
    }

    /// A minimal `repo:push` in Bitbucket Cloud's documented shape.
    fn cloud_body(changes: &[(Option<String>, Option<String>)]) -> String {
        let changes: Vec<String> = changes
            .iter()
            .map(|(old, new)| {
                format!(
                    r#"{{"old": {}, "new": {}, "created": {}, "closed": {}, "forced": false, "commits": []}}"#,
                    old.as_deref().unwrap_or("null"),
                    new.as_deref().unwrap_or("null"),
                    old.is_none(),
                    new.is_none(),
                )
            })
            .collect();
        format!(
            r#"{{"actor": {{"display_name": "Ada L."}}, "repository": {{"full_name": "acme/app"}},
                "push": {{"changes": [{}]}}}}"#,
            changes.join(",")
        )
    }

    #[test]
    fn cloud_branch_push() {
        let body = cloud_body(&[(
            Some(side("branch", "main", OLD, "Old")),
            Some(side("branch", "main", HEAD, "Tidy up\\n")),
        )]);
        assert_eq!(
            expect_push(bitbucket("repo:push", &body)),
            Push {
                git_ref: PushRef::Branch("main".into()),
                commit: HEAD.into(),
                message: Some("Tidy up".into()),
                author: Some("Ada Lovelace".into()),
                changed_files: vec![],
                changed_files_complete: false,
                deleted: false,
            }
        );
    }

    #[test]
    fn cloud_tag_push() {
        let body = cloud_body(&[(None, Some(side("tag", "v2.1.0", HEAD, "Release")))]);
        let push = expect_push(bitbucket("repo:push", &body));
        assert_eq!(
            (push.git_ref, push.commit.as_str()),
            (PushRef::Tag("v2.1.0".into()), HEAD)
        );
    }

    #[test]
    fn cloud_takes_the_first_change_with_a_new_side() {
        let body = cloud_body(&[
            (Some(side("branch", "gone", OLD, "x")), None),
            (None, Some(side("branch", "first", HEAD, "x"))),
            (None, Some(side("branch", "second", OLD, "x"))),
        ]);
        assert_eq!(
            expect_push(bitbucket("repo:push", &body)).git_ref,
            PushRef::Branch("first".into())
        );
    }

    #[test]
    fn cloud_deletion_is_detected() {
        let body = cloud_body(&[(Some(side("branch", "old-topic", OLD, "x")), None)]);
        let push = expect_push(bitbucket("repo:push", &body));
        assert!(push.deleted);
        assert_eq!(push.git_ref, PushRef::Branch("old-topic".into()));
        assert_eq!((push.commit.as_str(), push.message, push.author), (ZERO, None, None));
    }

    #[test]
    fn cloud_author_falls_back_to_the_display_name() {
        let body = cloud_body(&[(None, Some(side("branch", "main", HEAD, "x")))]).replace("Ada Lovelace ", "");
        assert_eq!(
            expect_push(bitbucket("repo:push", &body)).author.as_deref(),
            Some("Ada L.")
        );
    }

    #[test]
    fn cloud_push_without_changes_or_hash_names_the_field() {
        let err = bitbucket("repo:push", r#"{"push": {}}"#).expect_err("should be refused");
        assert_eq!(err.to_string(), "the repo:push payload has no `push.changes`");
        let err = bitbucket("repo:push", r#"{"push": {"changes": []}}"#).expect_err("should be refused");
        assert!(
            matches!(
                err,
                ParseError::MissingField {
                    field: "push.changes[].new",
                    ..
                }
            ),
            "{err}"
        );
        let no_hash = cloud_body(&[(None, Some(r#"{"type": "branch", "name": "main", "target": {}}"#.into()))]);
        let err = bitbucket("repo:push", &no_hash).expect_err("should be refused");
        assert!(
            matches!(
                err,
                ParseError::MissingField {
                    field: "push.changes[].new.target.hash",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cloud_mercurial_style_refs_are_ignored() {
        let body = cloud_body(&[(None, Some(side("named_branch", "default", HEAD, "x")))]);
        let event = bitbucket("repo:push", &body).ok();
        assert_eq!(
            event,
            Some(Event::Ignored {
                kind: "repo:push of a named_branch".into()
            })
        );
    }

    /// A minimal `repo:refs_changed` in Bitbucket Data Center's documented shape.
    fn server_body(ref_id: &str, to_hash: &str, kind: &str) -> String {
        format!(
            r#"{{"eventKey": "repo:refs_changed", "date": "2024-05-01T10:00:00+0000",
                "actor": {{"name": "ada", "displayName": "Ada"}}, "repository": {{"slug": "app"}},
                "changes": [{{"ref": {{"id": "{ref_id}", "displayId": "x", "type": "BRANCH"}},
                  "refId": "{ref_id}", "fromHash": "{OLD}", "toHash": "{to_hash}", "type": "{kind}"}}]}}"#
        )
    }

    #[test]
    fn data_center_push_and_deletion() {
        let push = expect_push(bitbucket(
            "repo:refs_changed",
            &server_body("refs/heads/main", HEAD, "UPDATE"),
        ));
        assert_eq!(
            (push.git_ref, push.commit.as_str(), push.deleted),
            (PushRef::Branch("main".into()), HEAD, false)
        );

        let push = expect_push(bitbucket(
            "repo:refs_changed",
            &server_body("refs/tags/v3", ZERO, "DELETE"),
        ));
        assert_eq!((push.git_ref, push.deleted), (PushRef::Tag("v3".into()), true));
    }

    #[test]
    fn data_center_ping_is_a_ping_and_other_events_are_ignored() {
        assert_eq!(
            bitbucket("diagnostics:ping", r#"{"test": true}"#).ok(),
            Some(Event::Ping)
        );
        for kind in ["pullrequest:created", "repo:fork", "pr:opened"] {
            assert_eq!(bitbucket(kind, "{}").ok(), Some(Event::Ignored { kind: kind.into() }));
        }
    }
}
