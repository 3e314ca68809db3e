//! Throw-away benchmark databases on the server named by `--database-url`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The server: where databases are created and dropped.
#[derive(Debug, Clone)]
pub struct Server {
    admin: PgConnectOptions,
    /// Databases created so far, dropped by [`Server::drop_all`].
    created: Vec<String>,
    run_id: String,
}

/// What the server is and how it is configured, for the report.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub max_connections: i64,
    pub in_use: i64,
    pub synchronous_commit: String,
    pub fsync: String,
    pub shared_buffers: String,
    pub wal_sync_method: String,
    pub commit_delay: String,
}

impl Server {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let admin = PgConnectOptions::from_str(url)
            .with_context(|| format!("--database-url {url:?} is not a PostgreSQL URL"))?
            .disable_statement_logging();
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Ok(Self {
            admin,
            created: Vec::new(),
            run_id,
        })
    }

    async fn admin_connection(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect_with(&self.admin)
            .await
            .context("could not connect to the PostgreSQL server (see --database-url)")
    }

    pub async fn info(&self) -> anyhow::Result<ServerInfo> {
        let mut conn = self.admin_connection().await?;
        let setting = |name: &'static str| format!("SELECT current_setting('{name}')");
        let mut get = async |name: &'static str| -> anyhow::Result<String> {
            Ok(sqlx::query_scalar(&setting(name)).fetch_one(&mut conn).await?)
        };
        let version = get("server_version").await?;
        let max_connections: i64 = get("max_connections").await?.parse().unwrap_or(100);
        let synchronous_commit = get("synchronous_commit").await?;
        let fsync = get("fsync").await?;
        let shared_buffers = get("shared_buffers").await?;
        let wal_sync_method = get("wal_sync_method").await?;
        let commit_delay = get("commit_delay").await?;
        let in_use: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                .fetch_one(&mut conn)
                .await?;
        let _ = conn.close().await;
        Ok(ServerInfo {
            version,
            max_connections,
            in_use,
            synchronous_commit,
            fsync,
            shared_buffers,
            wal_sync_method,
            commit_delay,
        })
    }

    /// Creates a fresh, migrated database and a pool of `pool_size` connections to it.
    pub async fn fresh_database(&mut self, purpose: &str, pool_size: u32) -> anyhow::Result<PgPool> {
        let options = self.empty_database(purpose).await?;
        let pool = connect(&options, pool_size).await?;
        monkeyci_eventstore::migrate(&pool)
            .await
            .with_context(|| format!("could not migrate {}", options.get_database().unwrap_or("?")))?;
        Ok(pool)
    }

    /// Creates an empty database (dropped at the end like the others) for another process to
    /// migrate; its connect options.
    pub async fn empty_database(&mut self, purpose: &str) -> anyhow::Result<PgConnectOptions> {
        let name = format!("monkeyci_bench_{}_{purpose}", self.run_id);
        let mut conn = self.admin_connection().await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("could not create database {name}"))?;
        let _ = conn.close().await;
        self.created.push(name.clone());
        Ok(self.admin.clone().database(&name))
    }

    /// Opens `n` connections of the pool at once, so that connecting is not measured.
    pub async fn warm_pool(pool: &PgPool, n: u32) -> anyhow::Result<()> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(pool.acquire().await?);
        }
        drop(held);
        Ok(())
    }

    /// Drops every database this run created.
    pub async fn drop_all(&mut self) -> anyhow::Result<()> {
        let mut conn = self.admin_connection().await?;
        for name in self.created.drain(..) {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("could not drop database {name}"))?;
            eprintln!("dropped database {name}");
        }
        let _ = conn.close().await;
        Ok(())
    }

    pub fn created(&self) -> &[String] {
        &self.created
    }
}

/// A pool of `pool_size` connections.
pub async fn connect(options: &PgConnectOptions, pool_size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.clone())
        .await
        .with_context(|| format!("could not connect to {}", options.get_database().unwrap_or("?")))
}

/// A URL of a database for another process (no password: trust or `PGPASSWORD`).
pub fn url_of(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}
