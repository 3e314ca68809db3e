use std::fmt;

use crate::event::DomainEvent;

/// The id of one stream in the event log: `<category>-<id>`, e.g. `build-0190…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    /// Builds the stream id of an aggregate of category `category` with id `id`.
    pub fn new(category: &str, id: impl fmt::Display) -> Self {
        Self(format!("{category}-{id}"))
    }

    /// Wraps a stream id read back from the log.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The stream id as stored in the log.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: the part before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(c, _)| c)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A consistency boundary whose state is folded from its own stream of events.
pub trait Aggregate: Default + fmt::Debug {
    /// The events of this aggregate's streams.
    type Event: DomainEvent;

    /// The stream-id prefix of this aggregate's streams.
    const CATEGORY: &'static str;

    /// Folds one event into the state. Must accept every event `decide` methods ever produced:
    /// events are facts, so `apply` never fails.
    fn apply(&mut self, event: &Self::Event);

    /// Folds a sequence of events into a fresh state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::ids::BuildId;

    #[test]
    fn a_stream_id_is_the_category_and_the_id_joined_by_a_dash() {
        let id = BuildId::from_uuid(Uuid::from_u128(1));
        let stream = StreamId::new("build", id);
        assert_eq!(stream.as_str(), format!("build-{id}"));
        assert_eq!(stream.category(), "build");
        assert_eq!(StreamId::from_stored(stream.to_string()), stream);
        assert_eq!(StreamId::from_stored("orphan".into()).category(), "orphan");
    }
}
