//! Wakes readers of live job output when the runner stores new lines.

use std::time::Duration;

use monkeyci_projections::{ProjectionError, ReadModels, JOB_LOG_CHANNEL};
use tokio::sync::broadcast;

/// Announces `<build id> <job id>` whenever lines of that job were stored.
#[derive(Debug, Clone)]
pub struct JobLogWatch {
    sender: broadcast::Sender<String>,
}

impl JobLogWatch {
    /// Starts listening.
    pub async fn start(read: &ReadModels) -> Result<Self, ProjectionError> {
        let mut listener = read.listen(JOB_LOG_CHANNEL).await?;
        let (sender, _) = broadcast::channel(1024);
        let announce = sender.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(payload) => {
                        // Nobody listening is fine.
                        let _ = announce.send(payload);
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
