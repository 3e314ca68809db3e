//! A real S3-compatible server for tests, in-process (feature `test-server`).
//!
//! [`S3TestServer`] serves [s3s-fs] (buckets as directories, objects as files) over HTTP on
//! `127.0.0.1` and a free port, on a thread of its own with its own tokio runtime, so it works
//! from any test (sync or async, any runtime flavour). Requests are authenticated with AWS
//! Signature V4 against one fixed key pair, so a client with a wrong secret is refused just as
//! S3 would refuse it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use monkeyci_storage::{testing::S3TestServer, BlobStore, S3Config, S3Store};
//! let dir = tempfile::tempdir()?;
//! let server = S3TestServer::start(dir.path())?;
//! let store = S3Store::new(S3Config { prefix: "ci/".into(), ..server.config() }).await?;
//! # Ok(()) }
//! ```
//!
//! [s3s-fs]: https://docs.rs/s3s-fs

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::sync::oneshot;

use crate::S3Config;

/// The access key id the server accepts.
pub const TEST_ACCESS_KEY_ID: &str = "MONKEYCITESTKEY";
/// The secret access key the server accepts.
pub const TEST_SECRET_ACCESS_KEY: &str = "monkeyci-test-secret-access-key";
/// The bucket the server starts with.
pub const TEST_BUCKET: &str = "monkeyci-test";
/// The region clients should sign for.
pub const TEST_REGION: &str = "us-east-1";

/// An S3-compatible server on `127.0.0.1`, storing its buckets as directories of `dir`. Stops
/// when dropped.
#[derive(Debug)]
pub struct S3TestServer {
    endpoint: String,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3TestServer {
    /// Creates the bucket [`TEST_BUCKET`] in `dir` and starts serving. The server is accepting
    /// connections when this returns.
    pub fn start(dir: &Path) -> io::Result<S3TestServer> {
        std::fs::create_dir_all(dir.join(TEST_BUCKET))?;
        let data_dir = std::fs::canonicalize(dir)?;
        let filesystem = s3s_fs::FileSystem::new(&data_dir).map_err(|e| io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(filesystem);
        builder.set_auth(SimpleAuth::from_single(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY));
        let service = builder.build();

        // Bound here, so the port is known and connections queue before the thread runs.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("s3-test-server".into())
            .spawn(move || runtime.block_on(serve(listener, service, stopped)))?;
        Ok(S3TestServer {
            endpoint,
            data_dir,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket that exists from the start.
    pub fn bucket(&self) -> &str {
        TEST_BUCKET
    }

    /// The directory that holds the buckets (each a subdirectory; objects are files in it).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A configuration for this server: its endpoint, the test bucket, path-style requests,
    /// the accepted credentials, no prefix.
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: TEST_REGION.into(),
            bucket: TEST_BUCKET.into(),
            prefix: String::new(),
            path_style: true,
            access_key_id: Some(TEST_ACCESS_KEY_ID.into()),
            secret_access_key: Some(TEST_SECRET_ACCESS_KEY.into()),
        }
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Leaving `serve` drops the runtime, which ends every open connection.
            let _ = thread.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, service: S3Service, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the S3 test server cannot listen");
            return;
        }
    };
    let connections = ConnectionBuilder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let connection = connections.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "S3 test server connection ended with an error");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "the S3 test server could not accept a connection"),
            },
        }
    }
}
