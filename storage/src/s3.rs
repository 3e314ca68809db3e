//! `S3Store`: objects in an S3 (or S3-compatible) bucket, through aws-sdk-s3.

use std::fmt;
use std::path::Path;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::key::check_segment;
use crate::store::{check_prefix, hash_file};
use crate::temp::{blocking, parent_dir, PendingFile};
use crate::{BlobKey, BlobStore, ObjectInfo, StorageError};

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for MinIO or a test server; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key (a `/` is added when missing), so that several installations or
    /// purposes can share a bucket. May be empty.
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Static credentials. Without them the default AWS credential chain is used (environment,
    /// profile files, web identity, container and instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Config {
    /// The prefix as it is put before keys: empty, or relative and ending with `/`.
    fn normalized_prefix(&self) -> Result<String, StorageError> {
        let trimmed = self.prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(String::new());
        }
        for segment in trimmed.split('/') {
            check_segment(segment)
                .map_err(|reason| StorageError::InvalidConfig(format!("S3 prefix {:?}: {reason}", self.prefix)))?;
        }
        Ok(format!("{trimmed}/"))
    }
}

/// Keeps the object `k` at `prefix + k` in one bucket.
///
/// Uploads stream from the file and carry their SHA-256, which the service checks; downloads
/// stream into a temporary file beside the destination and ask the service for its checksum, so
/// the SDK verifies what arrived. Objects larger than 5 GiB would need multipart uploads, which
/// this store does not do.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    description: String,
    list_page_size: Option<i32>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client. Nothing is sent to the service (see [`S3Store::check`]).
    pub async fn new(config: S3Config) -> Result<S3Store, StorageError> {
        if config.bucket.trim().is_empty() {
            return Err(StorageError::InvalidConfig("the S3 bucket name is empty".into()));
        }
        if config.region.trim().is_empty() {
            return Err(StorageError::InvalidConfig("the S3 region is empty".into()));
        }
        let prefix = config.normalized_prefix()?;
        let region = Region::new(config.region.clone());
        let mut builder = match (&config.access_key_id, &config.secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => aws_sdk_s3::config::Builder::new()
                .region(region)
                .credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key,
                    None,
                    None,
                    "monkeyci-config",
                )),
            (None, None) => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(region)
                    .load()
                    .await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
            _ => {
                return Err(StorageError::InvalidConfig(
                    "give both the S3 access key id and the secret access key, or neither".into(),
                ))
            }
        };
        builder = builder.behavior_version_latest().force_path_style(config.path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let description = format!(
            "s3 {} bucket {} prefix {} region {}",
            config.endpoint.as_deref().unwrap_or("(AWS)"),
            config.bucket,
            if prefix.is_empty() { "(none)" } else { &prefix },
            config.region,
        );
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            prefix,
            description,
            list_page_size: None,
        })
    }

    /// Asks for at most `size` keys per `ListObjectsV2` page (the service's default is 1000).
    pub fn with_list_page_size(mut self, size: i32) -> S3Store {
        self.list_page_size = Some(size);
        self
    }

    /// Checks that the bucket exists and the credentials may use it (`HeadBucket`).
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| s3_failure("HeadBucket", &self.bucket, e))?;
        Ok(())
    }

    fn object_key(&self, key: &BlobKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    async fn put(&self, key: &BlobKey, body: ByteStream, size: u64, digest: &[u8]) -> Result<(), StorageError> {
        let object_key = self.object_key(key);
        let length = i64::try_from(size)
            .map_err(|_| StorageError::InvalidConfig(format!("object {key} is too large ({size} bytes)")))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .content_length(length)
            .checksum_sha256(aws_smithy_types::base64::encode(digest))
            .body(body)
            .send()
            .await
            .map_err(|e| s3_failure("PutObject", &object_key, e))?;
        Ok(())
    }

    /// Starts a download; `None` when there is no such object.
    async fn get(&self, key: &BlobKey) -> Result<Option<(String, ByteStream)>, StorageError> {
        let object_key = self.object_key(key);
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some((object_key, output.body))),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_failure("GetObject", &object_key, e)),
        }
    }
}

/// Streams an object's body into the new file `pending` (opened for reading and writing);
/// the file and its size.
async fn write_body(
    object_key: &str,
    body: &mut ByteStream,
    pending: &PendingFile,
) -> Result<(tokio::fs::File, u64), StorageError> {
    let context = || format!("cannot write {}", pending.path().display());
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(pending.path())
        .await
        .map_err(|e| StorageError::io(context(), e))?;
    let mut size = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| s3_stream_failure("GetObject", object_key, e))?
    {
        file.write_all(&chunk)
            .await
            .map_err(|e| StorageError::io(context(), e))?;
        size += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| StorageError::io(context(), e))?;
    Ok((file, size))
}

impl BlobStore for S3Store {
    fn put_file<'a>(&'a self, key: &'a BlobKey, path: &'a Path) -> BoxFuture<'a, Result<ObjectInfo, StorageError>> {
        Box::pin(async move {
            // One pass to hash, a second to send: S3 needs the checksum before the body.
            let to_hash = path.to_path_buf();
            let (size, digest) = blocking(move || hash_file(&to_hash))
                .await
                .map_err(|e| StorageError::io("storage task failed", e))??;
            let body = ByteStream::read_from()
                .path(path)
                .length(Length::Exact(size))
                .build()
                .await
                .map_err(|e| StorageError::io(format!("cannot read {}", path.display()), std::io::Error::other(e)))?;
            self.put(key, body, size, &digest).await?;
            Ok(ObjectInfo {
                key: key.clone(),
                size,
                sha256: hex::encode(digest),
            })
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a BlobKey, bytes: Vec<u8>) -> BoxFuture<'a, Result<ObjectInfo, StorageError>> {
        Box::pin(async move {
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            let size = bytes.len() as u64;
            self.put(key, ByteStream::from(bytes), size, &digest).await?;
            Ok(ObjectInfo {
                key: key.clone(),
                size,
                sha256: hex::encode(digest),
            })
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a BlobKey, dest: &'a Path) -> BoxFuture<'a, Result<Option<u64>, StorageError>> {
        Box::pin(async move {
            let Some((object_key, mut body)) = self.get(key).await? else {
                return Ok(None);
            };
            let dir = parent_dir(dest);
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StorageError::io(format!("cannot create directory {}", dir.display()), e))?;
            let pending = PendingFile::beside(dest);
            let (file, size) = write_body(&object_key, &mut body, &pending).await?;
            drop(file);
            pending
                .commit(dest)
                .map_err(|e| StorageError::io(format!("cannot write {}", dest.display()), e))?;
            Ok(Some(size))
        })
    }

    fn open<'a>(
        &'a self,
        key: &'a BlobKey,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Option<tokio::fs::File>, StorageError>> {
        Box::pin(async move {
            let Some((object_key, mut body)) = self.get(key).await? else {
                return Ok(None);
            };
            // Removed by its drop wherever this future stops, until it is open for reading.
            let pending = PendingFile::in_dir(scratch);
            let (mut file, _) = write_body(&object_key, &mut body, &pending).await?;
            file.rewind()
                .await
                .map_err(|e| StorageError::io(format!("cannot read {}", pending.path().display()), e))?;
            drop(pending);
            Ok(Some(file))
        })
    }

    fn get_bytes<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(async move {
            let Some((object_key, body)) = self.get(key).await? else {
                return Ok(None);
            };
            let bytes = body
                .collect()
                .await
                .map_err(|e| s3_stream_failure("GetObject", &object_key, e))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    fn head<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<Option<u64>, StorageError>> {
        Box::pin(async move {
            let object_key = self.object_key(key);
            let result = self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&object_key)
                .send()
                .await;
            match result {
                Ok(output) => Ok(Some(
                    output.content_length().map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                )),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
                Err(e) => Err(s3_failure("HeadObject", &object_key, e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<(BlobKey, u64)>, StorageError>> {
        Box::pin(async move {
            check_prefix(prefix)?;
            let full_prefix = format!("{}{prefix}", self.prefix);
            let mut found = Vec::new();
            let mut continuation_token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .set_max_keys(self.list_page_size)
                    .set_continuation_token(continuation_token.take())
                    .send()
                    .await
                    .map_err(|e| s3_failure("ListObjectsV2", &full_prefix, e))?;
                for object in page.contents() {
                    let Some(name) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                        continue;
                    };
                    match BlobKey::new(name) {
                        Ok(key) => found.push((key, object.size().map_or(0, |n| u64::try_from(n).unwrap_or(0)))),
                        Err(error) => {
                            tracing::warn!(%error, "skipping an S3 object whose name is not a valid blob key")
                        }
                    }
                }
                match page.next_continuation_token() {
                    Some(token) if page.is_truncated().unwrap_or(false) => continuation_token = Some(token.to_owned()),
                    _ => break,
                }
            }
            found.sort();
            Ok(found)
        })
    }

    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let object_key = self.object_key(key);
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&object_key)
                .send()
                .await
                .map_err(|e| s3_failure("DeleteObject", &object_key, e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// A readable `StorageError::S3`: the service's error code and message and the HTTP status when
/// there are any, else the SDK's whole error chain.
fn s3_failure<E>(operation: &'static str, key: &str, error: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|response| response.status().as_u16());
    let mut message = match (error.code(), error.message(), status) {
        (Some(code), Some(text), _) => format!("{code}: {text}"),
        (Some(code), None, _) => code.to_owned(),
        // Answers to HEAD requests have no body, so no error code: say what the status means.
        (None, _, Some(status)) if matches!(error, SdkError::ServiceError(_)) => match status {
            403 => "access denied (wrong credentials or signature, or no permission)".to_owned(),
            404 => "not found (no such bucket?)".to_owned(),
            _ => "the service refused the request without an error code".to_owned(),
        },
        _ => DisplayErrorContext(&error).to_string(),
    };
    if let Some(status) = status {
        message.push_str(&format!(" (HTTP {status})"));
    }
    StorageError::S3 {
        operation,
        key: key.to_owned(),
        message,
    }
}

fn s3_stream_failure(
    operation: &'static str,
    key: &str,
    error: aws_sdk_s3::primitives::ByteStreamError,
) -> StorageError {
    StorageError::S3 {
        operation,
        key: key.to_owned(),
        message: format!("reading the response body: {}", DisplayErrorContext(&error)),
    }
}

#[cfg(all(test, feature = "test-server"))]
mod tests {
    use super::*;
    use crate::testing::{S3TestServer, TEST_BUCKET};

    async fn store(server: &S3TestServer) -> S3Store {
        S3Store::new(S3Config {
            prefix: "ci".into(),
            ..server.config()
        })
        .await
        .expect("S3 store")
    }

    #[tokio::test]
    async fn the_service_refuses_a_body_that_does_not_match_its_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = S3TestServer::start(dir.path()).expect("server");
        let store = store(&server).await;
        let key = BlobKey::new("changed-while-uploading").expect("key");
        let digest_of_other_content: [u8; 32] = Sha256::digest(b"what was hashed").into();

        let error = store
            .put(
                &key,
                ByteStream::from(b"what was sent".to_vec()),
                13,
                &digest_of_other_content,
            )
            .await
            .expect_err("checksum mismatch");
        let StorageError::S3 { operation, message, .. } = &error else {
            panic!("expected StorageError::S3, got {error:?}");
        };
        assert_eq!(*operation, "PutObject");
        assert!(message.starts_with("BadDigest"), "{message}");
        // S3 itself then stores nothing; s3s-fs 0.14 checks after writing and keeps the object,
        // so that part is not asserted here.
    }

    #[tokio::test]
    async fn a_download_that_does_not_match_the_stored_checksum_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = S3TestServer::start(dir.path()).expect("server");
        let store = store(&server).await;
        let key = BlobKey::new("logs/a.log").expect("key");
        store.put_bytes(&key, b"original".to_vec()).await.expect("put");
        // Damage the object behind the server's back (same length).
        std::fs::write(server.data_dir().join(TEST_BUCKET).join("ci/logs/a.log"), b"damaged!").expect("damage");

        let error = store.get_bytes(&key).await.expect_err("checksum mismatch");
        let StorageError::S3 { operation, message, .. } = &error else {
            panic!("expected StorageError::S3, got {error:?}");
        };
        assert_eq!(*operation, "GetObject");
        assert!(message.contains("checksum mismatch"), "{message}");
        let dest = dir.path().join("restored.log");
        assert!(store.get_to_file(&key, &dest).await.is_err());
        assert!(!dest.exists(), "a damaged download must not reach its destination");
    }
}
