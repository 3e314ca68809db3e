use std::pin::pin;
use std::sync::Arc;

use async_graphql::{Context, Json, Result, SimpleObject, Subscription, ID};
use async_stream::stream;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use monkeyci_eventstore::{Cursor, RecordedEvent};
use monkeyci_projections::queries;
use uuid::Uuid;

use super::types::Build;
use super::{api, caller, ApiContext};
use crate::auth::{require, Grant};
use crate::errors::{bad_input, client, internal, not_found, Code};
use crate::fanout::BuildReadError;
use crate::ids::{self, Kind};
use crate::metrics::Metrics;
use monkeyci_domain::access::Role;

/// Live updates, on the event feed.
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

/// One event of the log, with the cursor to resume after it.
#[derive(SimpleObject, Debug, Clone)]
pub struct LogEvent {
    /// Pass as `after` to receive only what follows this event.
    pub cursor: String,
    pub stream_id: String,
    pub stream_version: i64,
    #[graphql(name = "type")]
    pub event_type: String,
    pub schema_version: i32,
    pub data: Json<serde_json::Value>,
    /// Who caused the event.
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub command_id: String,
    pub recorded_at: DateTime<Utc>,
}

impl From<&RecordedEvent> for LogEvent {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            cursor: e.cursor.to_string(),
            stream_id: e.stream_id.clone(),
            stream_version: i64::try_from(e.stream_version).unwrap_or(i64::MAX),
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            data: Json(e.data.clone()),
            actor: e.metadata.actor.clone(),
            correlation_id: e.metadata.correlation_id.to_string(),
            causation_id: e.metadata.causation_id.map(|c| c.to_string()),
            command_id: e.metadata.command_id.to_string(),
            recorded_at: e.recorded_at,
        }
    }
}

/// Counts an open subscription for as long as its stream lives.
struct Open(Arc<Metrics>);

impl Open {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.subscriptions(1);
        Self(metrics.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.subscriptions(-1);
    }
}

fn build_stream_id(id: Uuid) -> String {
    format!("build-{id}")
}

/// The build row once the builds projection has applied `cursor` (one read shared by all
/// subscribers that need it).
async fn build_at(api: &ApiContext, id: Uuid, cursor: Cursor) -> Result<Option<Build>> {
    match api.builds.at(&api.read, &api.consistency, id, cursor).await {
        Ok(row) => Ok(row.map(Build::new)),
        Err(BuildReadError::Behind(e)) => Err(client(Code::Unavailable, e.to_string())),
        Err(e) => Err(internal(&e)),
    }
}

#[Subscription]
impl SubscriptionRoot {
    /// The build's state now and after every change; completes once the build has finished.
    /// Changes that reach the read model together arrive as one state; no state repeats.
    async fn build_updated(&self, ctx: &Context<'_>, build_id: ID) -> Result<impl Stream<Item = Result<Build>>> {
        let id = ids::decode_as(&build_id, Kind::Build)?;
        let api = api(ctx).clone();
        let start = api.store.readable_head().await.map_err(|e| internal(&e))?;
        // The first state includes every write made before the subscription (read-your-writes);
        // changes after `start` that it already shows are skipped by their version below.
        api.consistency
            .read_your_writes()
            .await
            .map_err(|e| client(Code::Unavailable, e.to_string()))?;
        let first = queries::build(&api.read, id)
            .await
            .map_err(|e| internal(&e))?
            .map(Build::new)
            .ok_or_else(|| not_found("build"))?;
        require(ctx, first.0.org_id, Role::Viewer, "build").await?;
        let open = Open::new(&api.metrics);
        let first_version = first.0.version;
        Ok(stream! {
            let _open = open;
            let finished = first.status().is_terminal();
            yield Ok(first);
            if finished {
                return;
            }
            let stream_id = build_stream_id(id);
            let mut last_version = first_version;
            let mut events = pin!(api.feed.subscribe(start));
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) if event.stream_id == stream_id => event,
                    Ok(_) => continue,
                    Err(error) => {
                        yield Err(internal(&error));
                        return;
                    }
                };
                match build_at(&api, id, event.cursor).await {
                    // Changes applied in one projection batch arrive as one state, once.
                    Ok(Some(build)) if build.0.version > last_version => {
                        last_version = build.0.version;
                        let finished = build.status().is_terminal();
                        yield Ok(build);
                        if finished {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
        })
    }

    /// Every change of every build of an org or of a repo (give exactly one), as the build's
    /// new state.
    async fn builds_updated(
        &self,
        ctx: &Context<'_>,
        org_id: Option<ID>,
        repo_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<Build>>> {
        let api = api(ctx).clone();
        api.consistency
            .read_your_writes()
            .await
            .map_err(|e| client(Code::Unavailable, e.to_string()))?;
        let (org, repo) = match (org_id, repo_id) {
            (Some(org), None) => {
                let org = ids::decode_as(&org, Kind::Org)?;
                queries::org(&api.read, org)
                    .await
                    .map_err(|e| internal(&e))?
                    .ok_or_else(|| not_found("org"))?;
                require(ctx, org, Role::Viewer, "org").await?;
                (org, None)
            }
            (None, Some(repo)) => {
                let repo = ids::decode_as(&repo, Kind::Repo)?;
                let row = queries::repo(&api.read, repo)
                    .await
                    .map_err(|e| internal(&e))?
                    .ok_or_else(|| not_found("repo"))?;
                require(ctx, row.org_id, Role::Viewer, "repo").await?;
                (row.org_id, Some(repo))
            }
            _ => return Err(bad_input("give either `orgId` or `repoId`")),
        };
        let start = api.store.readable_head().await.map_err(|e| internal(&e))?;
        let open = Open::new(&api.metrics);
        Ok(stream! {
            let _open = open;
            let mut events = pin!(api.feed.subscribe(start));
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        yield Err(internal(&error));
                        return;
                    }
                };
                let Some(build_id) = event.stream_id.strip_prefix("build-").and_then(|id| Uuid::parse_str(id).ok()) else {
                    continue;
                };
                if event.metadata.org_id != Some(org) {
                    continue;
                }
                match build_at(&api, build_id, event.cursor).await {
                    Ok(Some(build)) if repo.is_none_or(|r| r == build.0.repo_id) => yield Ok(build),
                    Ok(_) => {}
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
        })
    }

    /// A job's output, line by line: the lines after line `after` (from the first if not given),
    /// then live ones as the job prints them; completes when the job has ended and every line
    /// was sent. Reconnecting with the last offset received misses and repeats nothing.
    async fn job_log(
        &self,
        ctx: &Context<'_>,
        job_id: ID,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = Result<super::types::JobLogLine>>> {
        let (build, job) = ids::decode_job(&job_id)?;
        let api = api(ctx).clone();
        api.consistency
            .read_your_writes()
            .await
            .map_err(|e| client(Code::Unavailable, e.to_string()))?;
        let owner = queries::build(&api.read, build)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| not_found("job"))?;
        require(ctx, owner.org_id, Role::Viewer, "job").await?;
        let row = queries::job(&api.read, build, &job)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| not_found("job"))?;
        api.job_logs
            .ensure_stored(&api.read, &row)
            .await
            .map_err(|e| client(Code::Unavailable, e))?;
        let open = Open::new(&api.metrics);
        let key = format!("{build} {job}");
        let mut wake = api.job_logs.subscribe();
        let mut offset = after.unwrap_or(0).max(0);
        Ok(stream! {
            let _open = open;
            loop {
                // Whether the job had ended before this read: then the read saw every line.
                let ended = match job_ended(&api, build, &job).await {
                    Ok(ended) => ended,
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                };
                let lines = match queries::job_log(&api.read, build, &job, offset, 1000).await {
                    Ok(lines) => lines,
                    Err(error) => {
                        yield Err(internal(&error));
                        return;
                    }
                };
                let full = lines.len() == 1000;
                for line in lines {
                    offset = line.seq;
                    yield Ok(super::types::JobLogLine::from(line));
                }
                if full {
                    continue;
                }
                if ended {
                    return;
                }
                // New lines are announced; the job's end is not, so look again now and then.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                    loop {
                        match wake.recv().await {
                            Ok(announced) if announced == key => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                })
                .await;
            }
        })
    }

    /// The raw events of an org or of one stream (give exactly one; `streamId` is a stream id
    /// such as `build-<uuid>`, or the global id of an org, repo or build), after the cursor
    /// `after` if given, else from now on: `after: "0.0"` reads from the start of the log.
    /// Reconnecting with the last cursor received delivers exactly the events missed, then
    /// live ones. The rule of `auditLog`: owners of the org only (an org's
    /// events include its API tokens' and secrets' events); streams of no org, the admin only.
    async fn events(
        &self,
        ctx: &Context<'_>,
        org_id: Option<ID>,
        stream_id: Option<String>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<LogEvent>>> {
        let api = api(ctx).clone();
        let filter = match (org_id, stream_id) {
            (Some(org), None) => Filter::Org(ids::decode_as(&org, Kind::Org)?),
            (None, Some(stream)) if !stream.is_empty() => {
                Filter::Stream(super::audit::stream_of_global_id(&stream).unwrap_or(stream))
            }
            _ => return Err(bad_input("give either `orgId` or `streamId`")),
        };
        match &filter {
            Filter::Org(org) => require(ctx, *org, Role::Owner, "org").await?,
            Filter::Stream(stream) if caller(ctx)?.grant != Grant::Admin => {
                let org = stream_org(&api, stream).await?.ok_or_else(|| not_found("stream"))?;
                require(ctx, org, Role::Owner, "stream").await?;
            }
            Filter::Stream(_) => {}
        }
        let start = match after {
            Some(cursor) => cursor.parse::<Cursor>().map_err(|e| bad_input(e.to_string()))?,
            None => api.store.readable_head().await.map_err(|e| internal(&e))?,
        };
        let open = Open::new(&api.metrics);
        Ok(stream! {
            let _open = open;
            let mut events = pin!(api.feed.subscribe(start));
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) if filter.matches(&event) => yield Ok(LogEvent::from(event.as_ref())),
                    Ok(_) => {}
                    Err(error) => {
                        yield Err(internal(&error));
                        return;
                    }
                }
            }
        })
    }
}

/// The org an org, repo or build stream belongs to; `None` for other streams (users, tokens,
/// slugs), which only the admin may follow.
async fn stream_org(api: &ApiContext, stream: &str) -> Result<Option<Uuid>> {
    let (category, id) = stream.split_once('-').unwrap_or((stream, ""));
    let Ok(id) = Uuid::parse_str(id) else { return Ok(None) };
    api.consistency
        .read_your_writes()
        .await
        .map_err(|e| client(Code::Unavailable, e.to_string()))?;
    Ok(match category {
        "org" => Some(id),
        "repo" => queries::repo(&api.read, id)
            .await
            .map_err(|e| internal(&e))?
            .map(|r| r.org_id),
        "build" => queries::build(&api.read, id)
            .await
            .map_err(|e| internal(&e))?
            .map(|b| b.org_id),
        _ => None,
    })
}

/// Whether the job has ended, according to the read model.
async fn job_ended(api: &ApiContext, build: Uuid, job: &str) -> Result<bool> {
    let row = queries::job(&api.read, build, job).await.map_err(|e| internal(&e))?;
    Ok(row.is_some_and(|j| matches!(j.status.as_str(), "succeeded" | "failed" | "skipped" | "canceled")))
}

enum Filter {
    Org(Uuid),
    Stream(String),
}

impl Filter {
    fn matches(&self, event: &RecordedEvent) -> bool {
        match self {
            Self::Org(org) => event.metadata.org_id == Some(*org),
            Self::Stream(stream) => event.stream_id == *stream,
        }
    }
}
