//! Artifacts, caches and archived logs of one build in blob storage.
//!
//! Keys, by org, repo and build id (ids never change, names may):
//!
//! - artifacts: `<org>/<repo>/<build>/<artifact id>.tgz`, restorable by later jobs of the build;
//! - archived job logs: `<org>/<repo>/<build>/logs/<job id>.ndjson`, one stored line (number,
//!   time, stream, text) per line (builds from before kept plain text as `<job id>.log`);
//! - caches: `<org>/<repo>/caches/<cache id>.tgz`, shared by every build of the repo.
//!
//! Artifact and cache paths are relative to the checkout. Packing and unpacking refuse anything
//! that leads outside it (`..`, absolute paths, symlinks pointing out): see `storage::archive`.
//!
//! Other jobs of the build may run while an archive is packed or unpacked, and may swap a
//! checked path for a link between the check and the use. When jobs run as a user of their own
//! ([`BuildBlobs::with_owner`]), packing and unpacking therefore run with that user's file
//! rights: a link swapped in leads only where the job itself could read or write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use monkeyci_domain::{BuildId, JobId, OrgId, RepoId};
use monkeyci_storage::archive::{pack, unpack};
use monkeyci_storage::{BlobKey, BlobStore, ObjectInfo, PackSummary, StorageError, UnpackSummary};

use crate::host::{as_user, hand_over, JobUser};

/// Where one build keeps its artifacts, its logs and its repo's caches.
#[derive(Debug, Clone)]
pub struct BuildBlobs {
    store: Arc<dyn BlobStore>,
    /// Where the repo's caches are, if not in `store`.
    cache_store: Option<Arc<dyn BlobStore>>,
    build: BlobKey,
    caches: BlobKey,
    /// Archives are packed and downloaded here, outside the checkout.
    scratch: PathBuf,
    /// The user the checkout belongs to, if not the runner's.
    owner: Option<JobUser>,
}

impl BuildBlobs {
    /// The keys of build `build` of repo `repo` of org `org`; `scratch` is a directory of the
    /// build's own for archives on their way in or out.
    pub fn new(
        store: Arc<dyn BlobStore>,
        org: OrgId,
        repo: RepoId,
        build: BuildId,
        scratch: PathBuf,
    ) -> Result<Self, StorageError> {
        let repo = BlobKey::new(format!("{org}/{repo}"))?;
        Ok(Self {
            build: repo.join(&build.to_string())?,
            caches: repo.join("caches")?,
            store,
            cache_store: None,
            scratch,
            owner: None,
        })
    }

    /// Packs and unpacks with the file rights of `owner`, the user jobs run as, and hands it
    /// the checkout first (files a container job made as root included).
    pub fn with_owner(mut self, owner: Option<JobUser>) -> Self {
        self.owner = owner;
        self
    }

    /// Keeps the repo's caches in `store` rather than with the build's artifacts and logs: a
    /// local run keeps its caches from run to run, and its artifacts only for the run.
    pub fn with_cache_store(mut self, store: Arc<dyn BlobStore>) -> Self {
        self.cache_store = Some(store);
        self
    }

    /// The store that holds `key`: the cache store for the repo's caches, if there is one.
    fn store_of(&self, key: &BlobKey) -> &Arc<dyn BlobStore> {
        let of_a_cache = key
            .as_str()
            .strip_prefix(self.caches.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        match &self.cache_store {
            Some(caches) if of_a_cache => caches,
            _ => &self.store,
        }
    }

    /// Runs `work` on the blocking pool, as the owner if there is one (after handing it
    /// `checkout`).
    async fn as_owner<T: Send + 'static>(
        &self,
        checkout: &Path,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let owner = self.owner;
        let checkout = checkout.to_owned();
        tokio::task::spawn_blocking(move || match owner {
            None => work(),
            Some(user) => {
                hand_over(&checkout, user).map_err(|e| format!("cannot hand the checkout to its user: {e}"))?;
                as_user(user, work).map_err(|e| e.to_string())?
            }
        })
        .await
        .map_err(|e| format!("packing stopped: {e}"))?
    }

    /// The store of the build's artifacts and logs.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// The key of the build's artifact `id`.
    pub fn artifact_key(&self, id: &str) -> Result<BlobKey, StorageError> {
        self.build.join(&format!("{id}.tgz"))
    }

    /// The key of the repo's cache `id`.
    pub fn cache_key(&self, id: &str) -> Result<BlobKey, StorageError> {
        self.caches.join(&format!("{id}.tgz"))
    }

    /// The key of a job's archived log.
    pub fn log_key(&self, job: &JobId) -> Result<BlobKey, StorageError> {
        self.build
            .join(&format!("logs/{job}{}", monkeyci_projections::joblog::ARCHIVE_SUFFIX))
    }

    /// Packs `path` (relative to `root`) and stores it under `key`.
    pub async fn save(&self, key: &BlobKey, root: &Path, path: &str) -> Result<(ObjectInfo, PackSummary), String> {
        let archive = self.scratch_file().await?;
        let (from, paths, out) = (root.to_owned(), vec![path.to_owned()], archive.clone());
        let packed = self
            .as_owner(root, move || pack(&from, &paths, &out).map_err(|e| e.to_string()))
            .await;
        let stored = match packed {
            Ok(summary) => self
                .store_of(key)
                .put_file(key, &archive)
                .await
                .map(|info| (info, summary))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&archive).await;
        stored
    }

    /// Fetches `key` and unpacks it into `root`; `None` if there is no such object.
    pub async fn restore(&self, key: &BlobKey, root: &Path) -> Result<Option<UnpackSummary>, String> {
        let archive = self.scratch_file().await?;
        let restored = match self.store_of(key).get_to_file(key, &archive).await {
            Ok(Some(_)) => {
                let (from, into) = (archive.clone(), root.to_owned());
                self.as_owner(root, move || unpack(&from, &into).map(Some).map_err(|e| e.to_string()))
                    .await
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let _ = tokio::fs::remove_file(&archive).await;
        restored
    }

    async fn scratch_file(&self) -> Result<PathBuf, String> {
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(|e| format!("cannot create {}: {e}", self.scratch.display()))?;
        if let Some(owner) = self.owner {
            // The owner writes the archives it packs here; no job sees this directory.
            std::os::unix::fs::chown(&self.scratch, Some(owner.uid), Some(owner.gid))
                .map_err(|e| format!("cannot hand {} to the job user: {e}", self.scratch.display()))?;
        }
        Ok(self.scratch.join(format!("{}.tgz", uuid::Uuid::new_v4())))
    }
}
