//! The history of everything: an org's audit log, one stream's history, and a build as it was at
//! any moment, all read from the event log itself.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, InputObject, Object, OneofObject, Result, ID};
use chrono::{DateTime, Utc};
use monkeyci_eventstore::{Cursor, ReadError, RecordedEvent};
use monkeyci_projections::queries;

use super::subscription::LogEvent;
use super::types::Build;
use super::{api, caller, consistent, page_limit, projection_error};
use monkeyci_domain::access::Role;

use crate::auth::{can_read, require, Grant};
use crate::errors::{bad_input, internal, not_found};
use crate::ids::{self, Kind};

/// Which of an org's events to list; every field narrows the list.
#[derive(InputObject, Debug, Default)]
pub struct AuditFilter {
    /// Only events caused by this actor, as events record it (`user:<id>`, `token:<id>`,
    /// `webhook:<id>`, `schedule:<id>`, `runner:<name>`, `admin`…).
    pub actor: Option<String>,
    /// Only events of these types (e.g. `BuildQueued`, `RepoArchived`).
    pub event_types: Option<Vec<String>>,
    /// Only events recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A moment in the log: a time, or the cursor of an event (its state includes that event).
#[derive(OneofObject, Debug, Clone)]
pub enum AsOf {
    Time(DateTime<Utc>),
    Cursor(String),
}

/// Reads of the log's history.
#[derive(Debug, Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Every event of an org, oldest first, with who caused it, when, by which command and in
    /// which correlation. Owners only. Page with `first` and the `after` cursor of an edge.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        org_id: ID,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, LogEvent>> {
        let org = ids::decode_as(&org_id, Kind::Org)?;
        let limit = page_limit(first)?;
        let after = after.as_deref().map(parse_cursor).transpose()?;
        let filter = filter.unwrap_or_default();
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from >= to {
                return Err(bad_input("`from` must be before `to`"));
            }
        }
        if filter
            .event_types
            .as_ref()
            .is_some_and(|t| t.iter().any(String::is_empty))
        {
            return Err(bad_input("`eventTypes` must not contain an empty name"));
        }
        if filter.actor.as_ref().is_some_and(String::is_empty) {
            return Err(bad_input("`actor` must not be empty"));
        }
        let api = consistent(ctx).await?;
        require(ctx, org, Role::Owner, "org").await?;
        let page = queries::audit_log(
            &api.read,
            org,
            &queries::AuditFilter {
                actor: filter.actor,
                event_types: filter.event_types.unwrap_or_default(),
                from: filter.from,
                to: filter.to,
            },
            after.unwrap_or(Cursor::START),
            limit,
        )
        .await
        .map_err(projection_error)?;
        let mut connection = Connection::new(after.is_some(), page.has_more);
        connection.edges.extend(
            page.rows
                .iter()
                .map(|event| Edge::new(event.cursor.to_string(), LogEvent::from(event))),
        );
        Ok(connection)
    }

    /// The events of one org, repo or build, in version order. `streamId` is the object's
    /// global id (as `Org.id`, `Repo.id`, `Build.id` return it) or its stream id (`org-<uuid>`,
    /// `repo-<uuid>`, `build-<uuid>`). The edges' cursors are the events' log cursors (as
    /// `LogEvent.cursor`): `after` takes one (or a stream version), and `build(asOf: {cursor})`
    /// and `events(after:)` take them too. Readable by anyone who can read the org.
    #[graphql(complexity = "super::cost::page(first, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, LogEvent>> {
        let limit = page_limit(first)?;
        let stream_id = history_stream(&stream_id)?;
        let after = after.as_deref().map(HistoryAfter::parse).transpose()?;
        consistent(ctx).await?;
        let events = readable_stream(ctx, &stream_id)
            .await?
            .ok_or_else(|| not_found("stream"))?;
        let mut rows: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| match after {
                None => true,
                Some(HistoryAfter::Version(version)) => e.stream_version > version,
                Some(HistoryAfter::Cursor(cursor)) => e.cursor > cursor,
            })
            .collect();
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let mut connection = Connection::new(after.is_some(), has_more);
        connection.edges.extend(
            rows.into_iter()
                .map(|event| Edge::new(event.cursor.to_string(), LogEvent::from(event))),
        );
        Ok(connection)
    }
}

/// Where a page of `history` starts: after an event's log cursor, or after a stream version
/// (the edge cursors of earlier versions of the API).
#[derive(Debug, Clone, Copy)]
enum HistoryAfter {
    Cursor(Cursor),
    Version(u64),
}

impl HistoryAfter {
    fn parse(raw: &str) -> Result<Self> {
        if let Ok(version) = raw.parse::<u64>() {
            return Ok(Self::Version(version));
        }
        raw.parse::<Cursor>().map(Self::Cursor).map_err(|_| {
            bad_input(format!(
                "{raw:?} is not a cursor of this list (`<tx>.<position>`, as its edges carry them)"
            ))
        })
    }
}

/// The stream of `raw`: an org's, repo's or build's global id, or such a stream id.
fn history_stream(raw: &str) -> Result<String> {
    let stream_form = raw
        .split_once('-')
        .filter(|(category, id)| matches!(*category, "org" | "repo" | "build") && uuid::Uuid::parse_str(id).is_ok());
    if stream_form.is_some() {
        return Ok(raw.to_owned());
    }
    let refused = || {
        bad_input(format!(
            "{raw:?} names no org, repo or build: pass its id (as `Build.id` returns it) or its stream id \
             (`org-<uuid>`, `repo-<uuid>`, `build-<uuid>`)"
        ))
    };
    stream_of_global_id(raw).ok_or_else(refused)
}

/// The stream of an org, repo or build named by its global id; `None` for anything else.
pub(super) fn stream_of_global_id(raw: &str) -> Option<String> {
    match crate::ids::decode(&async_graphql::ID(raw.to_owned())).ok()? {
        crate::ids::Decoded::Org(id) => Some(format!("org-{id}")),
        crate::ids::Decoded::Repo(id) => Some(format!("repo-{id}")),
        crate::ids::Decoded::Build(id) => Some(format!("build-{id}")),
        _ => None,
    }
}

/// The events of an org, repo or build stream, if the caller may read them: `None` for an
/// unknown stream or one of an org the caller cannot read (so ids do not leak).
async fn readable_stream(ctx: &Context<'_>, stream_id: &str) -> Result<Option<Vec<RecordedEvent>>> {
    let events = match api(ctx).store.read_stream(stream_id, 0).await {
        Ok(events) => events,
        Err(ReadError::StreamNotFound(_)) => return Ok(None),
        Err(error) => return Err(internal(&error)),
    };
    let readable = match events.first().and_then(|e| e.metadata.org_id) {
        _ if caller(ctx)?.grant == Grant::Admin => true,
        Some(org) => can_read(ctx, org).await?,
        None => false,
    };
    Ok(readable.then_some(events))
}

/// The build as it was at `as_of`: its events up to then, folded as the builds projection folds
/// them; `None` if the build did not exist yet.
pub(super) async fn build_as_of(ctx: &Context<'_>, id: uuid::Uuid, as_of: AsOf) -> Result<Option<Build>> {
    // The cursor is checked before anything is read.
    let included: Box<dyn Fn(&RecordedEvent) -> bool + Send> = match as_of {
        AsOf::Time(time) => Box::new(move |e| e.recorded_at <= time),
        AsOf::Cursor(cursor) => {
            let cursor = parse_cursor(&cursor)?;
            Box::new(move |e| e.cursor <= cursor)
        }
    };
    consistent(ctx).await?;
    let Some(events) = readable_stream(ctx, &format!("build-{id}")).await? else {
        return Ok(None);
    };
    let upto: Vec<RecordedEvent> = events.into_iter().filter(|e| included(e)).collect();
    let folded = monkeyci_projections::fold_build(id, &upto).map_err(projection_error)?;
    Ok(folded.map(|(row, jobs)| Build::as_of(row, jobs)))
}

fn parse_cursor(raw: &str) -> Result<Cursor> {
    raw.parse::<Cursor>().map_err(|_| {
        bad_input(format!(
            "{raw:?} is not a cursor (`<tx>.<position>`, as events carry them)"
        ))
    })
}
