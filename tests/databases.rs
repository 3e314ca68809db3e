//! Which commands may create or migrate a database: `server`, `runner` and `migrate` only. Every
//! other command refuses a database that does not exist, is not migrated or is not PostgreSQL,
//! names it, exits non-zero and changes nothing (a mistyped URL must not yield an empty backup
//! that looks fine).

use std::process::{Output, Stdio};

use monkeyci_tests::monkeyci_binary;
use sqlx::PgPool;
use tokio::process::Command;

use crate::cli::fresh_database;

/// Runs `monkeyci ARGS` against `url`, with an empty stdin.
async fn monkeyci(url: &str, args: &[&str]) -> Output {
    Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env("MONKEYCI_DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run monkeyci")
}

async fn exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("pg_database")
}

async fn drop_database(pool: &PgPool, name: &str) {
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(pool)
        .await
        .expect("drop");
}

/// The commands that only read or fill an existing MonkeyCI database.
const USERS_OF_A_DATABASE: [&[&str]; 5] = [
    &["events", "export"],
    &["events", "import"],
    &["projections", "status", "--sample-ms", "0"],
    &["projections", "rebuild", "builds"],
    &["projections", "rebuild", "orgs", "--online"],
];

#[sqlx::test(migrations = false)]
async fn a_database_that_does_not_exist_is_refused_and_not_created(pool: PgPool) {
    let (name, url) = fresh_database(&pool);
    for args in USERS_OF_A_DATABASE {
        let out = monkeyci(&url, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("database \"{name}\" on "))
                && stderr.contains("does not exist")
                && stderr.contains("monkeyci migrate"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout: no empty export");
        assert!(!exists(&pool, &name).await, "{args:?} created the database");
    }

    // The commands that own a database make it.
    let migrated = monkeyci(&url, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(exists(&pool, &name).await);
    let export = monkeyci(&url, &["events", "export"]).await;
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    drop_database(&pool, &name).await;
}

#[sqlx::test(migrations = false)]
async fn a_database_that_is_not_migrated_or_is_behind_is_refused_and_left_as_it_was(pool: PgPool) {
    let (name, url) = fresh_database(&pool);
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&pool)
        .await
        .expect("create");
    let target = PgPool::connect(&url).await.expect("connect");
    let tables = |target: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        )
        .fetch_one(&target)
        .await
        .expect("tables")
    };
    for args in USERS_OF_A_DATABASE {
        let out = monkeyci(&url, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("database \"{name}\" on ")) && stderr.contains("is not a MonkeyCI database"),
            "{args:?}: {stderr}"
        );
        assert_eq!(tables(target.clone()).await, 0, "{args:?} migrated the database");
    }

    // Migrated by an older MonkeyCI: one migration short.
    let migrated = monkeyci(&url, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let last: i64 = sqlx::query_scalar(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations) RETURNING version",
    )
    .fetch_one(&target)
    .await
    .expect("forget the last migration");
    let out = monkeyci(&url, &["events", "export"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the first missing is {last}_")) && stderr.contains("run `monkeyci migrate`"),
        "{stderr}"
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = $1")
        .bind(last)
        .fetch_one(&target)
        .await
        .expect("migrations");
    assert_eq!(applied, 0, "export did not migrate");

    // Migrated by a newer MonkeyCI: a migration this one does not know.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         SELECT 99991231000001, 'from the future', true, checksum, 0 FROM _sqlx_migrations LIMIT 1",
    )
    .execute(&target)
    .await
    .expect("a future migration");
    let out = monkeyci(&url, &["projections", "status", "--sample-ms", "0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("was migrated by a newer MonkeyCI") && stderr.contains("99991231000001"),
        "{stderr}"
    );
    target.close().await;
    drop_database(&pool, &name).await;
}

#[sqlx::test(migrations = false)]
async fn urls_of_other_databases_are_refused_by_every_command_without_echoing_the_password(pool: PgPool) {
    let (name, _) = fresh_database(&pool);
    // MariaDB runs on this machine: a PostgreSQL driver that took this URL would reach it or
    // make a PostgreSQL database of that name.
    let url = format!("mysql://root:not-to-be-echoed@127.0.0.1:3306/{name}");
    let mut commands: Vec<&[&str]> = USERS_OF_A_DATABASE.to_vec();
    commands.extend([
        &["migrate"][..],
        &["server", "--listen", "127.0.0.1:0"][..],
        &["runner"][..],
    ]);
    for args in commands {
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), monkeyci(&url, args))
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not exit within 60 s"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("the database URL is a mysql:// URL; MonkeyCI needs PostgreSQL"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("not-to-be-echoed"),
            "{args:?} echoed the password: {stderr}"
        );
        assert!(!exists(&pool, &name).await, "{args:?} created a database");
    }
}
