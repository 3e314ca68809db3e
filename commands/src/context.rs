use uuid::Uuid;

/// Who sends a command, and how it relates to other messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// Recorded as the actor of every event (`user:<id>`, `system:runner`, …).
    pub actor: String,
    /// Ties together everything one request caused; a new one if the caller has none.
    pub correlation_id: Uuid,
    /// The message that caused this command, if any.
    pub causation_id: Option<Uuid>,
    /// With a key, sending the same command again returns the first one's id and appends nothing.
    pub idempotency_key: Option<String>,
}

impl CommandContext {
    /// A context for `actor` with a fresh correlation id and no idempotency key.
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            idempotency_key: None,
        }
    }

    /// The same context with an idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}
