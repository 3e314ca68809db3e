//! Artifacts, caches and archived logs of one build in blob storage.
//!
//! Keys, by org, repo and build id (ids never change, names may):
//!
//! - artifacts: `<org>/<repo>/<build>/<artifact id>.tgz`, restorable by later jobs of the build;
//! - archived job logs: `<org>/<repo>/<build>/logs/<job id>.log`;
//! - caches: `<org>/<repo>/caches/<cache id>.tgz`, shared by every build of the repo.
//!
//! Artifact and cache paths are relative to the checkout. Packing and unpacking refuse anything
//! that leads outside it (`..`, absolute paths, symlinks pointing out): see `storage::archive`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use monkeyci_domain::{BuildId, JobId, OrgId, RepoId};
use monkeyci_storage::archive::{pack_async, unpack_async};
use monkeyci_storage::{BlobKey, BlobStore, ObjectInfo, PackSummary, StorageError, UnpackSummary};

/// Where one build keeps its artifacts, its logs and its repo's caches.
#[derive(Debug, Clone)]
pub struct BuildBlobs {
    store: Arc<dyn BlobStore>,
    build: BlobKey,
    caches: BlobKey,
    /// Archives are packed and downloaded here, outside the checkout.
    scratch: PathBuf,
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
            scratch,
        })
    }

    /// The store itself.
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
        self.build.join(&format!("logs/{job}.log"))
    }

    /// Packs `path` (relative to `root`) and stores it under `key`.
    pub async fn save(&self, key: &BlobKey, root: &Path, path: &str) -> Result<(ObjectInfo, PackSummary), String> {
        let archive = self.scratch_file().await?;
        let packed = pack_async(root.to_owned(), vec![path.to_owned()], archive.clone())
            .await
            .map_err(|e| e.to_string());
        let stored = match packed {
            Ok(summary) => self
                .store
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
        let restored = match self.store.get_to_file(key, &archive).await {
            Ok(Some(_)) => unpack_async(archive.clone(), root.to_owned())
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
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
        Ok(self.scratch.join(format!("{}.tgz", uuid::Uuid::new_v4())))
    }
}
