//! Wakes readers of live job output when the runner stores new lines.

use std::time::Duration;

use monkeyci_eventstore::{EventStore, ReadError};
use monkeyci_runner::JOB_LOG_CHANNEL;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

/// Announces `<build id> <job id>` whenever lines of that job were stored.
#[derive(Debug, Clone)]
pub struct JobLogWatch {
    sender: broadcast::Sender<String>,
}

impl JobLogWatch {
    /// Starts listening.
    pub async fn start(store: &EventStore) -> Result<Self, ReadError> {
        let mut listener = PgListener::connect_with(store.pool()).await?;
        listener.listen(JOB_LOG_CHANNEL).await?;
        let (sender, _) = broadcast::channel(1024);
        let announce = sender.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        // Nobody listening is fine.
                        let _ = announce.send(notification.payload().to_owned());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "job log listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self { sender })
    }

    /// A receiver of announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}
