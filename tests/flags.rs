//! How the `monkeyci` binary reads its settings and writes its logs: boolean environment
//! variables take `1/0/true/false` (and yes/no, on/off), and logs that do not go to a terminal
//! carry no colour codes.

use std::process::Stdio;
use std::time::Duration;

use monkeyci_tests::{database_url, monkeyci_binary};
use sqlx::PgPool;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// `monkeyci server` on the test's database with `env`, its stderr in a file: its first stdout
/// line (where it listens) and its stderr so far, then it is stopped.
async fn start_server(pool: &PgPool, env: &[(&str, &str)]) -> (Option<String>, String) {
    let data = tempfile::tempdir().expect("data dir");
    let log = data.path().join("server.log");
    let mut child = Command::new(monkeyci_binary().expect("binary"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .env("MONKEYCI_DATABASE_URL", database_url(pool))
        .env("MONKEYCI_DATA_DIR", data.path())
        .env("MONKEYCI_ADMIN_TOKEN", "an-admin-token-for-the-test")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server answers or exits within 60 s")
        .expect("stdout");
    if first.is_some() {
        child.start_kill().expect("kill");
    }
    let _ = child.wait().await;
    (first, std::fs::read_to_string(&log).expect("log"))
}

#[sqlx::test(migrations = false)]
async fn boolean_environment_variables_take_1_0_true_false_and_refuse_other_words(pool: PgPool) {
    let (listening, log) = start_server(
        &pool,
        &[
            ("MONKEYCI_NO_RUNNER", "1"),
            ("MONKEYCI_NO_SCHEDULES", "0"),
            ("MONKEYCI_S3_PATH_STYLE", "false"),
        ],
    )
    .await;
    assert!(
        listening.as_deref().is_some_and(|l| l.contains("listening on http://")),
        "{listening:?}\n{log}"
    );
    assert!(
        log.contains("not running builds (--no-runner)"),
        "MONKEYCI_NO_RUNNER=1:\n{log}"
    );

    let (listening, log) = start_server(&pool, &[("MONKEYCI_NO_RUNNER", "0")]).await;
    assert!(listening.is_some(), "{log}");
    assert!(
        log.contains("running builds in this server"),
        "MONKEYCI_NO_RUNNER=0:\n{log}"
    );

    let (listening, log) = start_server(&pool, &[("MONKEYCI_NO_RUNNER", "maybe")]).await;
    assert_eq!(listening, None, "a word that is not a boolean is refused");
    assert!(log.contains("maybe") && log.contains("--no-runner"), "{log}");
}

#[sqlx::test(migrations = false)]
async fn logs_written_to_a_file_carry_no_colour_codes(pool: PgPool) {
    let (listening, log) = start_server(&pool, &[("RUST_LOG", "debug,sqlx=warn")]).await;
    assert!(listening.is_some(), "{log}");
    assert!(log.lines().count() > 3, "the server logged: {log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log file:\n{log}");
}
