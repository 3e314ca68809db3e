//! The real `monkeyci` binary: creates and migrates its database, runs the projections, stops
//! cleanly on SIGTERM, and explains bad input.

use std::process::Stdio;
use std::time::Duration;

use monkeyci_commands::{CommandHandler, CreateOrg};
use monkeyci_eventstore::EventStore;
use monkeyci_tests::{monkeyci_binary, user, wait_for_checkpoints};
use sqlx::PgPool;
use tokio::process::Command;

/// A database URL on the test server for a database that does not exist yet.
fn fresh_database(pool: &PgPool) -> (String, String) {
    let options = pool.connect_options();
    let name = format!("monkeyci_cli_{}", uuid::Uuid::now_v7().simple());
    let url = format!(
        "postgres://{}@{}:{}/{name}",
        options.get_username(),
        options.get_host(),
        options.get_port()
    );
    (name, url)
}

async fn monkeyci(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env("MONKEYCI_DATABASE_URL", url)
        .output()
        .await
        .expect("run monkeyci")
}

#[sqlx::test(migrations = false)]
async fn server_creates_its_database_projects_events_and_stops_on_sigterm(pool: PgPool) {
    let (name, url) = fresh_database(&pool);

    let migrated = monkeyci(&url, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut server = Command::new(monkeyci_binary().expect("binary"))
        .args(["server", "--lease-retry-ms", "100"])
        .env("MONKEYCI_DATABASE_URL", &url)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server");

    let app = PgPool::connect(&url).await.expect("connect");
    let store = EventStore::new(app.clone());
    CommandHandler::new(store.clone())
        .create_org(
            &user(),
            CreateOrg {
                name: "Acme".into(),
                slug: "acme".into(),
            },
        )
        .await
        .expect("create org");
    wait_for_checkpoints(&store, &["orgs", "repos", "builds"], Duration::from_secs(30))
        .await
        .expect("the server's projections catch up");
    let orgs: Vec<String> = sqlx::query_scalar("SELECT slug FROM orgs")
        .fetch_all(&app)
        .await
        .expect("orgs");
    assert_eq!(orgs, ["acme"]);

    let pid = server.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("the server stops within 30 s of SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");

    let status = monkeyci(&url, &["projections", "status"]).await;
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    for name in ["orgs", "repos", "builds"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"));
        let lag = line.split_whitespace().nth(3);
        assert_eq!(lag, Some("0"), "{line}");
    }

    app.close().await;
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
}

#[sqlx::test(migrations = false)]
async fn bad_input_is_explained_on_stderr_with_a_failing_exit_status(pool: PgPool) {
    let (name, url) = fresh_database(&pool);

    let unknown = monkeyci(&url, &["projections", "rebuild", "nope"]).await;
    let unreachable = monkeyci("postgres://postgres@127.0.0.1:1/x", &["migrate"]).await;
    let bad_url = monkeyci("not-a-url", &["migrate"]).await;

    for (what, out, expected) in [
        (
            "unknown projection",
            &unknown,
            "no projection is named \"nope\"; the projections are orgs, repos, builds",
        ),
        ("unreachable database", &unreachable, "cannot connect"),
        ("bad url", &bad_url, "invalid database URL"),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
}
