//! One behaviour suite that every `BlobStore` passes, run against `FsStore` and (with the
//! feature `test-server`) against `S3Store` talking to a real S3-compatible server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use crate::store::hash_file;
use crate::{BlobKey, BlobStore, FsStore, StorageError};

/// A store under test, plus a second store on the same backend under a sibling root or prefix.
struct Harness {
    store: Arc<dyn BlobStore>,
    sibling: Arc<dyn BlobStore>,
    dir: TempDir,
    #[cfg(feature = "test-server")]
    server: Option<crate::testing::S3TestServer>,
}

impl Harness {
    fn scratch(&self) -> PathBuf {
        let scratch = self.dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).expect("create scratch dir");
        scratch
    }
}

async fn fs_harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    Harness {
        store: Arc::new(FsStore::new(dir.path().join("blobs/a"))),
        sibling: Arc::new(FsStore::new(dir.path().join("blobs/b"))),
        dir,
        #[cfg(feature = "test-server")]
        server: None,
    }
}

fn key(key: &str) -> BlobKey {
    BlobKey::new(key).expect("valid key")
}

/// `len` bytes that do not repeat in any short period (so a misplaced chunk changes the hash).
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn sha256_of(path: &Path) -> String {
    hex::encode(hash_file(path).expect("hash file").1)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn listed(entries: &[(BlobKey, u64)]) -> Vec<(&str, u64)> {
    entries.iter().map(|(key, size)| (key.as_str(), *size)).collect()
}

// --- the suite --------------------------------------------------------------------------------

async fn put_file_and_get_to_file_round_trip(h: &Harness, size: usize) {
    let scratch = h.scratch();
    let source = scratch.join("dist.bin");
    std::fs::write(&source, pseudo_random_bytes(size)).expect("write source");
    let expected_sha = sha256_of(&source);
    let k = key("artifacts/build-1/dist.bin");

    let info = h.store.put_file(&k, &source).await.expect("put_file");
    assert_eq!(info.key, k);
    assert_eq!(info.size, size as u64);
    assert_eq!(info.sha256, expected_sha);
    assert_eq!(h.store.head(&k).await.expect("head"), Some(size as u64));

    let dest = scratch.join("restored/nested/dist.bin");
    let got = h.store.get_to_file(&k, &dest).await.expect("get_to_file");
    assert_eq!(got, Some(size as u64));
    assert_eq!(sha256_of(&dest), expected_sha);
    // Only the file itself: the temporary file was renamed, not left behind.
    assert_eq!(names_in(&scratch.join("restored/nested")), ["dist.bin"]);
}

async fn put_bytes_and_get_bytes_round_trip(h: &Harness) {
    let k = key("logs/build-1/test.log");
    let info = h
        .store
        .put_bytes(&k, b"line 1\nline 2\n".to_vec())
        .await
        .expect("put_bytes");
    assert_eq!(info.size, 14);
    assert_eq!(info.sha256, crate::store::sha256_hex(b"line 1\nline 2\n"));
    assert_eq!(
        h.store.get_bytes(&k).await.expect("get"),
        Some(b"line 1\nline 2\n".to_vec())
    );

    // A second put replaces the object.
    h.store.put_bytes(&k, b"replaced".to_vec()).await.expect("put again");
    assert_eq!(h.store.get_bytes(&k).await.expect("get"), Some(b"replaced".to_vec()));

    // An empty object is an object.
    let empty = key("logs/build-1/empty.log");
    let info = h.store.put_bytes(&empty, Vec::new()).await.expect("put empty");
    assert_eq!(info.size, 0);
    assert_eq!(h.store.get_bytes(&empty).await.expect("get empty"), Some(Vec::new()));
    assert_eq!(h.store.head(&empty).await.expect("head empty"), Some(0));
}

async fn missing_objects_are_none_not_errors(h: &Harness) {
    let missing = key("nothing/here.txt");
    assert_eq!(h.store.get_bytes(&missing).await.expect("get_bytes"), None);
    assert_eq!(h.store.head(&missing).await.expect("head"), None);
    assert!(!h.store.exists(&missing).await.expect("exists"));
    let dest = h.scratch().join("never-written");
    assert_eq!(h.store.get_to_file(&missing, &dest).await.expect("get_to_file"), None);
    assert!(!dest.exists(), "a missing object must not create the destination");
    assert!(
        names_in(&h.scratch()).is_empty(),
        "nothing may be left in the destination directory"
    );
    h.store
        .delete(&missing)
        .await
        .expect("deleting a missing object succeeds");
}

async fn list_returns_keys_by_prefix_sorted(h: &Harness) {
    for (name, content) in [
        ("c", "ccc"),
        ("a/2/x", "x"),
        ("ab", "abab"),
        ("a/10", "ten......."),
        ("a/1", "1"),
    ] {
        h.store
            .put_bytes(&key(name), content.as_bytes().to_vec())
            .await
            .expect("put");
    }
    let under_a = h.store.list("a/").await.expect("list a/");
    assert_eq!(listed(&under_a), [("a/1", 1), ("a/10", 10), ("a/2/x", 1)]);
    let starting_with_a = h.store.list("a").await.expect("list a");
    assert_eq!(
        listed(&starting_with_a),
        [("a/1", 1), ("a/10", 10), ("a/2/x", 1), ("ab", 4)]
    );
    let partial_segment = h.store.list("a/1").await.expect("list a/1");
    assert_eq!(listed(&partial_segment), [("a/1", 1), ("a/10", 10)]);
    let all = h.store.list("").await.expect("list all");
    assert_eq!(
        listed(&all),
        [("a/1", 1), ("a/10", 10), ("a/2/x", 1), ("ab", 4), ("c", 3)]
    );
    assert!(h.store.list("zzz/").await.expect("list zzz/").is_empty());
}

async fn delete_removes_the_object(h: &Harness) {
    let doomed = key("caches/deps.tar.gz");
    let kept = key("caches/tools.tar.gz");
    h.store.put_bytes(&doomed, b"1".to_vec()).await.expect("put");
    h.store.put_bytes(&kept, b"2".to_vec()).await.expect("put");
    h.store.delete(&doomed).await.expect("delete");
    assert_eq!(h.store.head(&doomed).await.expect("head"), None);
    assert_eq!(h.store.get_bytes(&doomed).await.expect("get"), None);
    assert_eq!(
        listed(&h.store.list("caches/").await.expect("list")),
        [("caches/tools.tar.gz", 1)]
    );
    h.store.delete(&doomed).await.expect("deleting again succeeds");
}

async fn stores_under_different_prefixes_do_not_see_each_other(h: &Harness) {
    let k = key("shared/name.txt");
    h.store.put_bytes(&k, b"from a".to_vec()).await.expect("put a");
    h.sibling.put_bytes(&k, b"from b".to_vec()).await.expect("put b");
    h.sibling.put_bytes(&key("only-b"), b"b".to_vec()).await.expect("put b");
    assert_eq!(h.store.get_bytes(&k).await.expect("get a"), Some(b"from a".to_vec()));
    assert_eq!(h.sibling.get_bytes(&k).await.expect("get b"), Some(b"from b".to_vec()));
    assert_eq!(
        listed(&h.store.list("").await.expect("list a")),
        [("shared/name.txt", 6)]
    );
    assert_eq!(
        listed(&h.sibling.list("").await.expect("list b")),
        [("only-b", 1), ("shared/name.txt", 6)]
    );
    assert_eq!(h.store.head(&key("only-b")).await.expect("head"), None);
    h.store.delete(&k).await.expect("delete a");
    assert_eq!(h.sibling.get_bytes(&k).await.expect("get b"), Some(b"from b".to_vec()));
}

async fn invalid_keys_and_prefixes_are_refused(h: &Harness) {
    for bad in ["../etc/passwd", "/abs", "a//b", "a/./b", "a\\b", "a\nb", ""] {
        assert!(
            matches!(BlobKey::new(bad), Err(StorageError::InvalidKey { .. })),
            "{bad:?} must not be a key"
        );
    }
    for bad in ["../", "/etc", "a/../b/", "a\\b/"] {
        assert!(
            matches!(h.store.list(bad).await, Err(StorageError::InvalidKey { .. })),
            "{bad:?} must not be a list prefix"
        );
    }
}

async fn open_streams_the_object_and_never_leaves_a_file(h: &Harness) {
    use std::task::Poll;
    use tokio::io::AsyncReadExt;

    let scratch = h.scratch();
    let bytes = pseudo_random_bytes(3 * 1024 * 1024 + 17);
    h.store.put_bytes(&key("big/a"), bytes.clone()).await.expect("put");
    let mut file = h
        .store
        .open(&key("big/a"), &scratch)
        .await
        .expect("open")
        .expect("found");
    let mut read = Vec::new();
    file.read_to_end(&mut read).await.expect("read");
    assert!(read == bytes, "the object as it was stored");
    assert_eq!(names_in(&scratch), Vec::<String>::new(), "an open copy has no name");
    let missing = h.store.open(&key("big/missing"), &scratch).await.expect("open");
    assert!(missing.is_none());

    // Dropped while it copies (a client that went away): the copy goes with it.
    let big = key("big/a");
    let mut opening = h.store.open(&big, &scratch);
    let mut copying = false;
    while !copying {
        match futures::poll!(opening.as_mut()) {
            Poll::Ready(result) => {
                result.expect("open");
                break;
            }
            Poll::Pending => {
                copying = !names_in(&scratch).is_empty();
                tokio::task::yield_now().await;
            }
        }
    }
    drop(opening);
    assert_eq!(names_in(&scratch), Vec::<String>::new(), "copying: {copying}");
}

macro_rules! behaviour_suite {
    ($module:ident, $harness:path, $big_file:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn put_file_and_get_to_file_round_trip_with_size_and_sha256() {
                put_file_and_get_to_file_round_trip(&$harness().await, $big_file).await;
            }

            #[tokio::test]
            async fn put_bytes_and_get_bytes_round_trip() {
                super::put_bytes_and_get_bytes_round_trip(&$harness().await).await;
            }

            #[tokio::test]
            async fn missing_objects_are_none_not_errors() {
                super::missing_objects_are_none_not_errors(&$harness().await).await;
            }

            #[tokio::test]
            async fn list_returns_keys_by_prefix_sorted() {
                super::list_returns_keys_by_prefix_sorted(&$harness().await).await;
            }

            #[tokio::test]
            async fn delete_removes_the_object() {
                super::delete_removes_the_object(&$harness().await).await;
            }

            #[tokio::test]
            async fn stores_under_different_prefixes_do_not_see_each_other() {
                super::stores_under_different_prefixes_do_not_see_each_other(&$harness().await).await;
            }

            #[tokio::test]
            async fn open_streams_the_object_and_never_leaves_a_file() {
                super::open_streams_the_object_and_never_leaves_a_file(&$harness().await).await;
            }

            #[tokio::test]
            async fn invalid_keys_and_prefixes_are_refused() {
                super::invalid_keys_and_prefixes_are_refused(&$harness().await).await;
            }
        }
    };
}

behaviour_suite!(fs_store, fs_harness, 3 * 1024 * 1024 + 17);

// --- FsStore specifics ------------------------------------------------------------------------

#[tokio::test]
async fn fs_store_keeps_objects_as_files_below_its_root() {
    let h = fs_harness().await;
    h.store
        .put_bytes(&key("logs/1/a.log"), b"hi".to_vec())
        .await
        .expect("put");
    let root = h.dir.path().join("blobs/a");
    assert_eq!(
        std::fs::read(root.join("logs/1/a.log")).expect("read object file"),
        b"hi"
    );
    assert_eq!(names_in(&root.join("logs/1")), ["a.log"], "no temporary file is left");
    assert_eq!(h.store.describe(), format!("filesystem {}", root.display()));
}

#[tokio::test]
async fn fs_store_list_skips_temporary_files_and_symlinks() {
    let h = fs_harness().await;
    h.store.put_bytes(&key("x/real"), b"1".to_vec()).await.expect("put");
    let root = h.dir.path().join("blobs/a");
    std::fs::write(root.join("x/.0123.monkeyci-tmp"), b"half-written").expect("write temp");
    std::os::unix::fs::symlink("/etc/passwd", root.join("x/link")).expect("symlink");
    assert_eq!(listed(&h.store.list("").await.expect("list")), [("x/real", 1)]);
}

#[tokio::test]
async fn fs_store_lists_nothing_before_the_first_write() {
    let h = fs_harness().await;
    assert!(h.store.list("").await.expect("list").is_empty());
    assert!(h.store.list("a/b/").await.expect("list").is_empty());
}

#[tokio::test]
async fn fs_store_put_file_of_a_missing_file_is_an_io_error_and_stores_nothing() {
    let h = fs_harness().await;
    let k = key("artifacts/x");
    let error = h
        .store
        .put_file(&k, &h.scratch().join("no-such-file"))
        .await
        .expect_err("missing source");
    assert!(matches!(error, StorageError::Io { .. }), "{error:?}");
    assert_eq!(h.store.head(&k).await.expect("head"), None);
}

// --- S3Store against the in-process S3 server -------------------------------------------------

#[cfg(feature = "test-server")]
mod s3 {
    use super::*;
    use crate::testing::{S3TestServer, TEST_BUCKET};
    use crate::{S3Config, S3Store};

    async fn s3_store(server: &S3TestServer, prefix: &str) -> S3Store {
        S3Store::new(S3Config {
            prefix: prefix.into(),
            ..server.config()
        })
        .await
        .expect("S3 store")
    }

    pub(super) async fn s3_harness() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = S3TestServer::start(&dir.path().join("s3")).expect("start S3 test server");
        let store = s3_store(&server, "a/").await;
        let sibling = s3_store(&server, "b/").await;
        Harness {
            store: Arc::new(store),
            sibling: Arc::new(sibling),
            dir,
            server: Some(server),
        }
    }

    fn server(h: &Harness) -> &S3TestServer {
        h.server.as_ref().expect("S3 harness has a server")
    }

    /// Every file below the bucket's directory (the server's own bookkeeping files live beside
    /// it, not in it).
    fn object_files(server: &S3TestServer) -> Vec<String> {
        let bucket = server.data_dir().join(TEST_BUCKET);
        let mut found = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(&bucket).expect("below bucket");
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    // More than 8 MiB: several SDK buffers and HTTP chunks.
    behaviour_suite!(suite, s3_harness, 9 * 1024 * 1024 + 123);

    #[tokio::test]
    async fn objects_are_stored_at_prefix_plus_key() {
        let h = s3_harness().await;
        h.store
            .put_bytes(&key("logs/1/a.log"), b"hi".to_vec())
            .await
            .expect("put");
        assert_eq!(object_files(server(&h)), ["a/logs/1/a.log"]);
        let unprefixed = s3_store(server(&h), "").await;
        assert_eq!(
            listed(&unprefixed.list("").await.expect("list")),
            [("a/logs/1/a.log", 2)]
        );
    }

    #[tokio::test]
    async fn a_wrong_secret_key_is_a_signature_error_and_writes_nothing() {
        let h = s3_harness().await;
        let wrong = S3Store::new(S3Config {
            secret_access_key: Some("not-the-secret".into()),
            ..server(&h).config()
        })
        .await
        .expect("S3 store");
        let k = key("logs/x.log");

        let error = wrong.put_bytes(&k, b"sneaky".to_vec()).await.expect_err("refused");
        let StorageError::S3 { operation, message, .. } = &error else {
            panic!("expected StorageError::S3, got {error:?}");
        };
        assert_eq!(*operation, "PutObject");
        assert!(message.contains("SignatureDoesNotMatch"), "{message}");
        assert!(!error.to_string().contains("not-the-secret"), "{error}");

        // Reads fail too (a refusal is not "missing").
        assert!(matches!(wrong.get_bytes(&k).await, Err(StorageError::S3 { .. })));
        match wrong.head(&k).await {
            Err(StorageError::S3 { message, .. }) => assert!(message.starts_with("access denied"), "{message}"),
            other => panic!("expected StorageError::S3, got {other:?}"),
        }
        assert!(matches!(wrong.list("").await, Err(StorageError::S3 { .. })));

        assert!(object_files(server(&h)).is_empty());
        assert_eq!(h.store.head(&k).await.expect("head"), None);
    }

    #[tokio::test]
    async fn list_follows_continuation_tokens() {
        let h = s3_harness().await;
        let store = s3_store(server(&h), "paged/").await.with_list_page_size(2);
        for name in ["e", "c", "a", "d", "b"] {
            store
                .put_bytes(&key(name), name.as_bytes().to_vec())
                .await
                .expect("put");
        }
        let all = store.list("").await.expect("list");
        assert_eq!(listed(&all), [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]);
    }

    #[tokio::test]
    async fn check_reports_a_missing_bucket() {
        let h = s3_harness().await;
        let good = s3_store(server(&h), "").await;
        good.check().await.expect("the test bucket exists");
        let missing = S3Store::new(S3Config {
            bucket: "no-such-bucket".into(),
            ..server(&h).config()
        })
        .await
        .expect("S3 store");
        let error = missing.check().await.expect_err("no such bucket");
        assert!(
            matches!(
                &error,
                StorageError::S3 {
                    operation: "HeadBucket",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn describe_names_endpoint_bucket_and_prefix() {
        let h = s3_harness().await;
        let store = s3_store(server(&h), "/ci").await;
        assert_eq!(
            store.describe(),
            format!(
                "s3 {} bucket {TEST_BUCKET} prefix ci/ region us-east-1",
                server(&h).endpoint()
            )
        );
    }

    #[tokio::test]
    async fn bad_configurations_are_refused_before_any_request() {
        let h = s3_harness().await;
        let config = server(&h).config();
        let half_credentials = S3Config {
            secret_access_key: None,
            ..config.clone()
        };
        let climbing_prefix = S3Config {
            prefix: "ci/../other".into(),
            ..config.clone()
        };
        let no_bucket = S3Config {
            bucket: String::new(),
            ..config.clone()
        };
        for bad in [half_credentials, climbing_prefix, no_bucket] {
            let result = S3Store::new(bad.clone()).await;
            assert!(
                matches!(result, Err(StorageError::InvalidConfig(_))),
                "{bad:?} should be refused"
            );
        }
        let shown = format!("{config:?}");
        assert!(!shown.contains(crate::testing::TEST_SECRET_ACCESS_KEY), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
