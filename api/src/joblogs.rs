//! Job output for readers: wakes them when the runner stores new lines, and restores a finished
//! job's lines from its archive when they are not stored (after an import of the event log, or
//! when `job_log_lines` was lost), so every way of reading a log serves it whole.

use std::sync::Arc;
use std::time::Duration;

use monkeyci_projections::joblog::{decode_archive, has_stored_lines, restore_job_log};
use monkeyci_projections::{JobRow, ProjectionError, ReadModels, JOB_LOG_CHANNEL};
use monkeyci_storage::{BlobKey, BlobStore};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

/// Announcements of new lines, and the blob storage archives are restored from.
#[derive(Clone)]
pub struct JobLogs {
    sender: broadcast::Sender<String>,
    blobs: Option<Arc<dyn BlobStore>>,
}

impl std::fmt::Debug for JobLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLogs")
            .field("blobs", &self.blobs.as_ref().map(|b| b.describe()))
            .finish_non_exhaustive()
    }
}

impl JobLogs {
    /// Starts listening for `<build id> <job id>` announcements of stored lines.
    pub async fn start(read: &ReadModels, blobs: Option<Arc<dyn BlobStore>>) -> Result<Self, ProjectionError> {
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
        Ok(Self { sender, blobs })
    }

    /// A receiver of announcements.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }

    /// Makes sure the lines of `job` are stored if it has an archive: restores them from blob
    /// storage (checking the archive's size and SHA-256 against its event) when none are.
    /// Cheap when nothing is missing: one indexed lookup, for archived jobs only.
    pub async fn ensure_stored(&self, read: &ReadModels, job: &JobRow) -> Result<(), String> {
        let Some(archive) = job.log_archive.as_ref().filter(|a| a.lines > 0) else {
            return Ok(());
        };
        let (build, job_id) = (job.build_id, job.job_id.as_str());
        if has_stored_lines(read, build, job_id).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let Some(blobs) = &self.blobs else {
            return Err(format!(
                "the log of job {job_id} is archived in blob storage ({}), which this server has no access to",
                archive.key
            ));
        };
        let key = BlobKey::new(&archive.key).map_err(|e| e.to_string())?;
        let bytes = blobs
            .get_bytes(&key)
            .await
            .map_err(|e| format!("reading the archived log {}: {e}", archive.key))?
            .ok_or_else(|| format!("the archived log {} is no longer in blob storage", archive.key))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != archive.size || sha256 != archive.sha256 {
            return Err(format!(
                "the archived log {} is not the one recorded (size {} and SHA-256 {sha256}, recorded {} and {})",
                archive.key,
                bytes.len(),
                archive.size,
                archive.sha256
            ));
        }
        let at = job.finished_at.unwrap_or(job.updated_at);
        let lines = decode_archive(&archive.key, &bytes, at).map_err(|e| format!("{}: {e}", archive.key))?;
        let written = restore_job_log(read, build, job_id, &lines)
            .await
            .map_err(|e| e.to_string())?;
        if written > 0 {
            tracing::info!(build = %build, job = job_id, lines = written, key = %archive.key, "restored a job's log from its archive");
        }
        Ok(())
    }
}
