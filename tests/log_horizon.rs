//! The log's readable horizon depends only on transactions that append to it: a write
//! transaction left open elsewhere in the cluster stalls nothing, and an appender left open is
//! ended by its timeout and reported while it lasts; a prepared append holds the log back across
//! a restart until it commits; the store's appends call no PL/pgSQL on the way in.

use std::time::{Duration, Instant};

use monkeyci_eventstore::{Cursor, EventStore, ExpectedVersion, IdempotencyClaim, StreamAppend};
use monkeyci_tests::{database_url, monkeyci_binary, read_whole_log, PrivateCluster, TestApp};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// What the API is given to answer within; the unrelated transaction stays open for longer.
const READ_YOUR_WRITES: Duration = Duration::from_secs(2);

/// A connection whose transaction has written a row (so it has a transaction id) and stays open.
async fn open_write_transaction(options: PgConnectOptions, table: &str) -> PgConnection {
    let mut conn = PgConnection::connect_with(&options.application_name("unrelated writer"))
        .await
        .expect("connect");
    sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
    sqlx::query(&format!("INSERT INTO {table} VALUES (1)"))
        .execute(&mut conn)
        .await
        .expect("insert");
    let xid: Option<String> = sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text")
        .fetch_one(&mut conn)
        .await
        .expect("xid");
    assert!(xid.is_some(), "the unrelated transaction has an id");
    conn
}

/// Creates an org and a repo, triggers a build, watches it with `buildUpdated`, cancels it and
/// reads everything back, each step answering as if no other transaction were open.
async fn work_through_the_api(app: &TestApp) {
    let org = app.create_org("acme").await.expect("createOrg");
    let read = app
        .graphql("query($id: ID!) { org(id: $id) { slug } }", json!({ "id": org }))
        .await
        .expect("query");
    assert_eq!(read["data"]["org"]["slug"], json!("acme"), "{read}");
    let repo = app.create_repo(&org, "app").await.expect("createRepo");
    let build = app.trigger_build(&repo).await.expect("triggerBuild");

    let mut ws = app.websocket().await.expect("ws");
    ws.init().await.expect("init");
    ws.subscribe(
        "b",
        "subscription($id: ID!) { buildUpdated(buildId: $id) { status } }",
        json!({ "id": build }),
    )
    .await
    .expect("subscribe");
    let first = ws.next_data("b").await.expect("the build's state");
    assert_eq!(first["data"]["buildUpdated"]["status"], json!("QUEUED"), "{first}");

    app.mutate_id("cancelBuild", "BuildInput", json!({ "id": build }))
        .await
        .expect("cancelBuild");
    let sent = Instant::now();
    let update = tokio::time::timeout(Duration::from_secs(1), ws.next_data("b"))
        .await
        .expect("buildUpdated delivers the cancel within 1 s")
        .expect("update");
    assert_eq!(update["data"]["buildUpdated"]["status"], json!("CANCELED"), "{update}");
    assert!(sent.elapsed() < Duration::from_secs(1));

    let read = app
        .graphql(
            "query($id: ID!) { build(id: $id) { status repo { name } } }",
            json!({ "id": build }),
        )
        .await
        .expect("query");
    assert_eq!(
        read["data"]["build"],
        json!({ "status": "CANCELED", "repo": { "name": "app" } }),
        "{read}"
    );
}

/// Runs the API work while `unrelated` stays open, then shows it was open all along.
async fn unaffected_by(app: TestApp, mut unrelated: PgConnection) {
    let opened = Instant::now();
    work_through_the_api(&app).await;
    // Longer than any read-your-writes wait, so a query now would have waited for it before.
    let open_for = READ_YOUR_WRITES + Duration::from_millis(500);
    if let Some(left) = open_for.checked_sub(opened.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let read = app
        .graphql("{ orgs { edges { node { slug } } } }", json!({}))
        .await
        .expect("query");
    assert_eq!(
        read["data"]["orgs"]["edges"][0]["node"]["slug"],
        json!("acme"),
        "{read}"
    );
    sqlx::query("COMMIT")
        .execute(&mut unrelated)
        .await
        .expect("the unrelated transaction was open all along");
    app.stop().await;
}

async fn app(pool: PgPool) -> TestApp {
    TestApp::spawn_with(pool, |c| c.read_your_writes_timeout = READ_YOUR_WRITES)
        .await
        .expect("app")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_write_transaction_open_in_another_database_of_the_cluster_stalls_nothing(pool: PgPool) {
    let other = format!("monkeyci_other_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{other}\""))
        .execute(&pool)
        .await
        .expect("create database");
    let options = pool.connect_options().as_ref().clone().database(&other);
    let mut setup = PgConnection::connect_with(&options).await.expect("connect");
    sqlx::query("CREATE TABLE batch_job (n int)")
        .execute(&mut setup)
        .await
        .expect("table");
    let unrelated = open_write_transaction(options, "batch_job").await;

    unaffected_by(app(pool.clone()).await, unrelated).await;
    setup.close().await.expect("close");
    sqlx::query(&format!("DROP DATABASE \"{other}\" WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop database");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_write_transaction_open_on_another_table_of_the_log_database_stalls_nothing(pool: PgPool) {
    sqlx::query("CREATE TABLE batch_job (n int)")
        .execute(&pool)
        .await
        .expect("table");
    let unrelated = open_write_transaction(pool.connect_options().as_ref().clone(), "batch_job").await;
    unaffected_by(app(pool).await, unrelated).await;
}

/// An event as a raw INSERT would write it, outside MonkeyCI.
const RAW_APPEND: &str = "INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata) \
     VALUES ('stuck-1', 1, 'Counted', 1, '{\"n\": 1}', '{\"actor\": \"test\", \"correlation_id\": \
     \"00000000-0000-0000-0000-000000000000\", \"command_id\": \"00000000-0000-0000-0000-000000000000\"}')";

#[sqlx::test(migrations = "../migrations")]
async fn a_stuck_appender_is_reported_while_it_lasts_then_ended_by_its_timeout(pool: PgPool) {
    let monkeyci = monkeyci_binary().expect("binary");
    let app = app(pool.clone()).await;
    let url = database_url(&pool);
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name("stuck appender");
    let mut stuck = PgConnection::connect_with(&options).await.expect("connect");
    sqlx::query("SET monkeyci.append_timeout = '6s'")
        .execute(&mut stuck)
        .await
        .expect("set");
    // As the store's transactional appends do: begin appending, append, (here) stay open.
    sqlx::query("BEGIN").execute(&mut stuck).await.expect("begin");
    sqlx::query("SELECT events_begin_append()")
        .execute(&mut stuck)
        .await
        .expect("begin appending");
    sqlx::query(RAW_APPEND).execute(&mut stuck).await.expect("append");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut stuck)
        .await
        .expect("pid");
    let began = Instant::now();

    // While it lasts: /ready says who holds the log back (once it has for a second), and is not
    // ready once that is as long as a read-your-writes wait; /metrics and `projections status`
    // say it too.
    let mut ready = get_ready(&app).await;
    while ready.1["logHeldBack"].is_null() {
        assert!(began.elapsed() < Duration::from_secs(3), "not reported: {}", ready.1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = get_ready(&app).await;
    }
    let held = &ready.1["logHeldBack"];
    assert_eq!(held["pid"], json!(pid), "{}", ready.1);
    assert_eq!(held["applicationName"], json!("stuck appender"), "{}", ready.1);
    assert_eq!(held["state"], json!("idle in transaction"), "{}", ready.1);
    assert!(held["seconds"].as_f64().is_some_and(|s| s >= 1.0), "{}", ready.1);
    while began.elapsed() < READ_YOUR_WRITES + Duration::from_millis(100) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = get_ready(&app).await;
    assert_eq!(code, 503, "held back longer than a read-your-writes wait: {body}");
    assert_eq!(body["logHeldBack"]["pid"], json!(pid), "{body}");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let held_for: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("monkeyci_log_held_back_seconds "))
        .unwrap_or_else(|| panic!("no held-back gauge in {metrics}"))
        .parse()
        .expect("a number");
    assert!(held_for >= 2.0, "{held_for}");
    let status = tokio::process::Command::new(&monkeyci)
        .args(["projections", "status", "--sample-ms", "0"])
        .env("MONKEYCI_DATABASE_URL", &url)
        .output()
        .await
        .expect("run monkeyci");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(
        stdout.contains(&format!("held back by pid {pid} (stuck appender)")),
        "{stdout}"
    );

    // The timeout ends it: the connection is closed by the server and its event never appears.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(&pool)
            .await
            .expect("activity");
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the stuck appender is still open after 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        began.elapsed() >= Duration::from_secs(5),
        "ended by the timeout, not before"
    );
    assert!(
        sqlx::query("COMMIT").execute(&mut stuck).await.is_err(),
        "its session is gone"
    );

    // The log moves on.
    work_through_the_api(&app).await;
    let log = read_whole_log(&app.core.store).await.expect("log");
    assert!(
        log.iter().all(|e| e.stream_id != "stuck-1"),
        "the stuck append was rolled back"
    );
    app.core.caught_up().await.expect("caught up");
    let (code, body) = get_ready(&app).await;
    assert_eq!((code, &body["logHeldBack"]), (200, &Value::Null), "{body}");
    app.stop().await;
}

async fn get_ready(app: &TestApp) -> (u16, Value) {
    let response = app.http.get(app.url("/ready")).send().await.expect("ready");
    let code = response.status().as_u16();
    (code, response.json().await.expect("json"))
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

#[sqlx::test(migrations = "../migrations")]
async fn an_appender_that_wrote_elsewhere_first_is_refused_unless_it_began_appending(pool: PgPool) {
    sqlx::query("CREATE TABLE side (n int)")
        .execute(&pool)
        .await
        .expect("table");

    // Wrote another table first, so it had an id before it locked the log: refused. A savepoint
    // rolled back releases the lock, so appending again after another write is refused too.
    // Having begun appending first, a transaction may write elsewhere and append.
    let cases: [(&[&str], Option<&str>); 3] = [
        (&["INSERT INTO side VALUES (1)"], Some("MC002")),
        (
            &[
                "SAVEPOINT s",
                RAW_APPEND,
                "ROLLBACK TO SAVEPOINT s",
                "INSERT INTO side VALUES (2)",
            ],
            Some("MC002"),
        ),
        (&["SELECT events_begin_append()", "INSERT INTO side VALUES (3)"], None),
    ];
    for (before, refused) in cases {
        let mut tx = pool.begin().await.expect("begin");
        for statement in before {
            sqlx::query(statement).execute(&mut *tx).await.expect(statement);
        }
        match (sqlx::query(RAW_APPEND).execute(&mut *tx).await, refused) {
            (Ok(_), None) => tx.commit().await.expect("commit"),
            (Err(error), Some(code)) => assert_eq!(sqlstate(&error).as_deref(), Some(code), "{before:?}: {error}"),
            (outcome, _) => panic!("{before:?}: {outcome:?}"),
        }
    }

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = 'stuck-1'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);

    // The log is read in order only in READ COMMITTED.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .expect("isolation");
    let error = sqlx::query("SELECT * FROM events_after('0', 0, 10)")
        .fetch_all(&mut *tx)
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&error).as_deref(), Some("MC003"), "{error}");
}

/// An append to stream `stream` at `version`, as raw SQL.
fn raw_append(stream: &str, version: i64) -> String {
    RAW_APPEND.replace("'stuck-1', 1,", &format!("'{stream}', {version},"))
}

/// The session's `idle_in_transaction_session_timeout` and `statement_timeout`.
async fn append_bounds(conn: &mut PgConnection) -> [String; 2] {
    sqlx::query_as(
        "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('statement_timeout')",
    )
    .fetch_one(conn)
    .await
    .map(|(idle, statement): (String, String)| [idle, statement])
    .expect("settings")
}

#[sqlx::test(migrations = "../migrations")]
async fn the_check_runs_only_where_it_is_needed_and_bounds_appenders_that_can_idle(pool: PgPool) {
    let mut conn = pool.acquire().await.expect("connection");
    // An autocommitted append: nothing to check, nothing to bound (it ends with its statement).
    sqlx::query(&raw_append("auto-1", 1))
        .execute(&mut *conn)
        .await
        .expect("append");
    assert_eq!(
        append_bounds(&mut conn).await,
        ["0", "0"],
        "an autocommitted append leaves the session's settings alone"
    );

    // A transaction that begins appending first: bounded for the rest of the transaction, and
    // its appends run no check.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT events_begin_append()")
        .execute(&mut *tx)
        .await
        .expect("begin appending");
    assert_eq!(append_bounds(&mut tx).await, ["5s", "5s"]);
    for version in [1, 2] {
        sqlx::query(&raw_append("tx-1", version))
            .execute(&mut *tx)
            .await
            .expect("append");
    }
    tx.commit().await.expect("commit");

    // A transaction that appends by hand after `BEGIN`: its first append keeps the rule by itself
    // (no id before it) and is not bounded yet; its second append has an id, finds the
    // transaction's own events and bounds it from then on.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&raw_append("by-hand", 1))
        .execute(&mut *tx)
        .await
        .expect("append");
    assert_eq!(append_bounds(&mut tx).await, ["0", "0"]);
    sqlx::query(&raw_append("by-hand", 2))
        .execute(&mut *tx)
        .await
        .expect("a second append");
    assert_eq!(append_bounds(&mut tx).await, ["5s", "5s"]);
    tx.commit().await.expect("commit");

    // The same sent as one query string (the simple protocol); a write to another table before
    // the first append is refused all the same.
    sqlx::raw_sql(&format!(
        "BEGIN; {}; {}; COMMIT",
        raw_append("one-string", 1),
        raw_append("one-string", 2)
    ))
    .execute(&mut *conn)
    .await
    .expect("two appends in one query string");
    sqlx::query("CREATE TABLE side (n int)")
        .execute(&mut *conn)
        .await
        .expect("table");
    let error = sqlx::raw_sql(&format!(
        "BEGIN; INSERT INTO side VALUES (1); {}; COMMIT",
        raw_append("one-string-side", 1)
    ))
    .execute(&mut *conn)
    .await
    .expect_err("refused");
    assert_eq!(sqlstate(&error).as_deref(), Some("MC002"), "{error}");
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;

    let streams: Vec<(String, i64)> =
        sqlx::query_as("SELECT stream_id, count(*) FROM events GROUP BY stream_id ORDER BY stream_id")
            .fetch_all(&mut *conn)
            .await
            .expect("events");
    assert_eq!(
        streams,
        [
            ("auto-1".into(), 1),
            ("by-hand".into(), 2),
            ("one-string".into(), 2),
            ("tx-1".into(), 2)
        ]
    );
}

/// How often each of the log's PL/pgSQL functions has been called by the backends of `pool`'s
/// database, once `counted` (the counting connection) has flushed its statistics: it does so
/// before it answers `pg_stat_force_next_flush()`.
async fn plpgsql_calls(counted: &PgPool, pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(counted)
        .await
        .expect("flush");
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .expect("clear");
    sqlx::query_as("SELECT funcname::text, calls FROM pg_stat_user_functions ORDER BY funcname")
        .fetch_all(&mut *conn)
        .await
        .expect("function statistics")
}

#[sqlx::test(migrations = "../migrations")]
async fn the_stores_autocommitted_appends_call_no_plpgsql_and_its_transactions_begin_appending(pool: PgPool) {
    // One connection, counting the PL/pgSQL functions it calls (`track_functions`), used by the
    // store over the extended query protocol, as in production.
    let counted = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            pool.connect_options()
                .as_ref()
                .clone()
                .options([("track_functions", "pl")]),
        )
        .await
        .expect("pool");
    let store = EventStore::new(counted.clone());
    let one = |stream: &str, expected| {
        vec![StreamAppend {
            stream_id: stream.into(),
            expected,
            events: vec![crate::log_order::event(1), crate::log_order::event(2)],
        }]
    };
    // New streams (no version lookup), then appends that look up the version.
    for n in 0..3 {
        store
            .append(&one(&format!("new-{n}"), ExpectedVersion::NoStream), None)
            .await
            .expect("append");
        store
            .append(&one(&format!("new-{n}"), ExpectedVersion::Any), None)
            .await
            .expect("append");
        store
            .append(&one(&format!("new-{n}"), ExpectedVersion::Exact(4)), None)
            .await
            .expect("append");
    }
    assert_eq!(
        plpgsql_calls(&counted, &pool).await,
        [],
        "an autocommitted append keeps the appender rule by itself and cannot idle: nothing to check"
    );

    // Appends of several streams, or with an idempotency key, take a transaction: it begins
    // appending first (and gets the append timeouts), so the trigger's check never runs either.
    let mut two = one("multi-a", ExpectedVersion::NoStream);
    two.extend(one("multi-b", ExpectedVersion::NoStream));
    store.append(&two, None).await.expect("append");
    let claim = IdempotencyClaim {
        scope: "test".into(),
        key: "k-1".into(),
        command: "Count".into(),
        fingerprint: "f".into(),
        result_id: "r".into(),
    };
    store
        .append(&one("keyed", ExpectedVersion::NoStream), Some(&claim))
        .await
        .expect("append");
    assert_eq!(
        plpgsql_calls(&counted, &pool).await,
        [
            ("events_begin_append".to_owned(), 2),
            ("events_bound_appender".to_owned(), 2)
        ]
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 3 * 6 + 4 + 2);
}

/// The streams of the events read after `after`, and the cursor after the last one.
async fn streams_after(store: &EventStore, after: Cursor) -> (Vec<String>, Cursor) {
    let events = store.read_all(after, 100).await.expect("read");
    let last = events.last().map_or(after, |e| e.cursor);
    (events.into_iter().map(|e| e.stream_id).collect(), last)
}

#[tokio::test]
async fn a_prepared_append_holds_the_horizon_across_a_restart_until_it_commits() {
    let cluster = PrivateCluster::start(&["max_prepared_transactions=2"]).expect("a cluster of its own");
    let connect = || async {
        let pool = PgPool::connect(&cluster.url()).await.expect("connect");
        (EventStore::new(pool.clone()), pool)
    };
    let (store, pool) = connect().await;
    monkeyci_eventstore::migrate(&pool).await.expect("migrate");
    store.append(&[single("before-1")], None).await.expect("append");

    // An append prepared for two-phase commit: it has no session any more, and stays open.
    let mut prepared = PgConnection::connect(&cluster.url()).await.expect("connect");
    for statement in [
        "BEGIN",
        "SELECT events_begin_append()",
        &raw_append("prepared-1", 1),
        "PREPARE TRANSACTION 'monkeyci-test'",
    ] {
        sqlx::query(statement).execute(&mut prepared).await.expect(statement);
    }
    drop(prepared);
    store.append(&[single("after-1")], None).await.expect("append");

    // Readers stop below it, and it is named as what holds them back.
    let (seen, cursor) = streams_after(&store, Cursor::START).await;
    assert_eq!(seen, ["before-1"]);
    let open = store.open_appenders().await.expect("appenders");
    let named: Vec<_> = open.iter().map(|a| (a.pid, a.prepared.as_deref())).collect();
    assert_eq!(named, [(None, Some("monkeyci-test"))]);

    // A restart keeps the prepared transaction, and with it the horizon; ids keep growing.
    pool.close().await;
    cluster.restart().expect("restart");
    let (store, pool) = connect().await;
    store.append(&[single("after-restart-1")], None).await.expect("append");
    assert_eq!(streams_after(&store, cursor).await.0, Vec::<String>::new());
    let open = store.open_appenders().await.expect("appenders");
    let named: Vec<_> = open.iter().map(|a| (a.pid, a.prepared.as_deref())).collect();
    assert_eq!(named, [(None, Some("monkeyci-test"))]);

    // Committed: the reader that went on from its cursor gets every event once, in order.
    sqlx::query("COMMIT PREPARED 'monkeyci-test'")
        .execute(&pool)
        .await
        .expect("commit prepared");
    let (seen, _) = streams_after(&store, cursor).await;
    assert_eq!(seen, ["prepared-1", "after-1", "after-restart-1"]);
    assert!(store.open_appenders().await.expect("appenders").is_empty());
    pool.close().await;
}

fn single(stream: &str) -> StreamAppend {
    StreamAppend {
        stream_id: stream.into(),
        expected: ExpectedVersion::NoStream,
        events: vec![crate::log_order::event(1)],
    }
}
