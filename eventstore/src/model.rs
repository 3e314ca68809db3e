use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

/// A position in the whole log, in reading order: the appending transaction, then the event's
/// global position. Reading "after" a cursor returns exactly the events that follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// The id of the transaction that appended the event.
    pub tx: i64,
    /// The event's global position.
    pub position: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor { tx: 0, position: 0 };
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx, self.position)
    }
}

/// A transaction appending to the log now: until it ends, readers of the log wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAppender {
    /// Its backend's process id; `None` for a prepared transaction.
    pub pid: Option<i32>,
    /// The `application_name` its client set (`None` if not visible to this role).
    pub application_name: Option<String>,
    /// The name (`gid`) of a prepared transaction.
    pub prepared: Option<String>,
    /// When its transaction began (or was prepared).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// How long it has been open, by the database's clock.
    pub open_for: std::time::Duration,
    /// What its backend does: `active`, `idle in transaction`, …
    pub state: Option<String>,
}

impl OpenAppender {
    /// Who it is, for people: `pid 123 (monkeyci server)` or `prepared transaction "x"`.
    pub fn describe(&self) -> String {
        match (&self.prepared, self.pid) {
            (Some(gid), _) => format!("prepared transaction {gid:?}"),
            (None, Some(pid)) => match &self.application_name {
                Some(name) if !name.is_empty() => format!("pid {pid} ({name})"),
                _ => format!("pid {pid}"),
            },
            (None, None) => "a transaction without a backend".to_owned(),
        }
    }
}

/// Appenders open for less than this are appends at work, not a log held back.
pub const HELD_BACK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A cursor string was not of the form `<tx>.<position>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid cursor {0:?}: expected <tx>.<position>")]
pub struct CursorParseError(pub String);

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CursorParseError(s.to_owned());
        let (tx, position) = s.split_once('.').ok_or_else(err)?;
        let tx: i64 = tx.parse().map_err(|_| err())?;
        let position: i64 = position.parse().map_err(|_| err())?;
        if tx < 0 || position < 0 {
            return Err(err());
        }
        Ok(Cursor { tx, position })
    }
}

/// The version a stream must be at for an append to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version (retried internally on a race).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// `NoStream` for 0, `Exact(v)` otherwise: the expectation of a stream read at version `v`.
    pub fn from_version(version: u64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }

    /// Whether a stream at `version` meets the expectation.
    pub fn accepts(self, version: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => version == 0,
            Self::Exact(v) => version == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who did it and why: stored with every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Who caused the event (`user:<id>`, `token:<id>`, `system:<component>`, …).
    pub actor: String,
    /// Ties together everything that one request caused.
    pub correlation_id: Uuid,
    /// The message (command or event) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The command that appended the event.
    pub command_id: Uuid,
    /// The idempotency key the command was sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The org the event belongs to, for per-org feeds and audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event type, e.g. `BuildQueued`.
    pub event_type: String,
    /// The schema version of `data`.
    pub schema_version: i32,
    /// The payload: a JSON object.
    pub data: Value,
    /// Actor, correlation and causation.
    pub metadata: Metadata,
}

/// Events for one stream, appended only if the stream is at `expected`.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Records that an idempotency key was used, in the same transaction as the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Whose key it is: keys of different actors never collide.
    pub scope: String,
    /// The key the client sent.
    pub key: String,
    /// The command's name.
    pub command: String,
    /// A hash of the command's input.
    pub fingerprint: String,
    /// The id the command returns.
    pub result_id: String,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendResult {
    /// The events were appended; `last` is the cursor of the last one (None if there were none).
    Appended { last: Option<Cursor> },
    /// The idempotency key was used before with the same input: nothing was appended and the
    /// first command's id is returned.
    Duplicate { result_id: String },
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Where it stands in the whole log.
    pub cursor: Cursor,
    pub stream_id: String,
    /// 1 for a stream's first event.
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: i32,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_their_text_form_and_order_by_tx_then_position() {
        let c = Cursor { tx: 42, position: 7 };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        assert!(Cursor { tx: 1, position: 99 } < Cursor { tx: 2, position: 1 });
        for bad in ["", "1", "a.b", "1.-2", "-1.2", "1.2.3"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?} was accepted");
        }
    }
}
