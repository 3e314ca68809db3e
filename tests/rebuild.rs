//! Online rebuilds: the new read model is built beside the live one while the server serves and
//! writes, then swapped in; no query fails or sees a half-built model, and no update is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use monkeyci_projections::{BuildsProjection, RebuildProgress};
use monkeyci_tests::{table_rows, TestApp};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};

/// The index names and definitions of `table`, as PostgreSQL reports them.
async fn indexes(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname")
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("indexes")
}

#[sqlx::test(migrations = "../migrations")]
async fn an_online_rebuild_swaps_in_a_complete_model_while_writes_and_queries_go_on(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await.expect("app"));
    let org = app.create_org("acme").await.expect("org");
    let repo = app.create_repo(&org, "app").await.expect("repo");
    let mut history = Vec::new();
    for _ in 0..30 {
        history.push(app.trigger_build(&repo).await.expect("build"));
    }
    let indexes_before = (indexes(&pool, "builds").await, indexes(&pool, "jobs").await);

    // One query asks for every build of the history at once: a half-built model would lack some.
    let fields: Vec<String> = history
        .iter()
        .enumerate()
        .map(|(i, id)| format!("b{i}: build(id: \"{id}\") {{ id status }}"))
        .collect();
    let query = format!("{{ {} }}", fields.join(" "));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (app, stop) = (app.clone(), stop.clone());
        async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let body = app.graphql(&query, json!({})).await.expect("query");
                assert!(body["errors"].is_null(), "a query failed during the rebuild: {body}");
                let data = body["data"].as_object().expect("data");
                assert!(
                    data.values().all(|b| b["id"].is_string()),
                    "a build was missing: {body}"
                );
                reads += 1;
            }
            reads
        }
    });
    let writer = tokio::spawn({
        let (app, stop, written, repo) = (app.clone(), stop.clone(), written.clone(), repo.clone());
        async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                ids.push(
                    app.trigger_build(&repo)
                        .await
                        .expect("a write failed during the rebuild"),
                );
                written.fetch_add(1, Ordering::SeqCst);
            }
            ids
        }
    });

    let conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("connection");
    let mut reports: Vec<RebuildProgress> = Vec::new();
    let written_before = written.load(Ordering::SeqCst);
    let outcome =
        monkeyci_projections::rebuild_online(&app.core.store, conn, &BuildsProjection, 5, |p| reports.push(p))
            .await
            .expect("online rebuild");
    let written_during = written.load(Ordering::SeqCst) - written_before;
    stop.store(true, Ordering::SeqCst);
    let reads = reader.await.expect("reader");
    let new_builds = writer.await.expect("writer");
    app.core.caught_up().await.expect("caught up");

    assert!(written_during > 0, "the writes did not overlap the rebuild");
    assert!(reads > 0);
    assert!(reports.len() > 2, "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].events <= w[1].events), "{reports:?}");
    assert!(reports.last().is_some_and(|r| r.swapping), "{reports:?}");
    assert!(outcome.events >= reports[0].total, "{outcome:?} {reports:?}");

    // No update lost: every build written before or during the rebuild is in the new model.
    let body = app
        .graphql(
            "query($id: ID!) { repo(id: $id) { builds(first: 100) { edges { node { id } } pageInfo { hasNextPage } } } }",
            json!({ "id": repo }),
        )
        .await
        .expect("builds");
    let listed: Vec<Value> = body["data"]["repo"]["builds"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM builds")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(usize::try_from(count).expect("count"), history.len() + new_builds.len());
    for id in history.iter().chain(&new_builds).rev().take(100) {
        assert!(listed.contains(&json!(id)), "{id} is missing: {body}");
    }

    // The swapped-in model equals a model rebuilt offline from the same log, row by row, with
    // the same indexes; nothing of the rebuild is left behind.
    let online = (
        table_rows(&pool, "builds", "id").await.expect("builds"),
        table_rows(&pool, "jobs", "build_id, job_id").await.expect("jobs"),
    );
    monkeyci_projections::rebuild(&app.core.store, &BuildsProjection)
        .await
        .expect("rebuild");
    app.core.caught_up().await.expect("caught up");
    let offline = (
        table_rows(&pool, "builds", "id").await.expect("builds"),
        table_rows(&pool, "jobs", "build_id, job_id").await.expect("jobs"),
    );
    assert_eq!(online, offline);
    assert_eq!(
        (indexes(&pool, "builds").await, indexes(&pool, "jobs").await),
        indexes_before
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'")
        .fetch_one(&pool)
        .await
        .expect("schemas");
    assert_eq!(left, 0);
    Arc::try_unwrap(app).expect("the tasks have ended").stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_second_online_rebuild_of_the_same_projection_is_refused_while_one_runs(pool: PgPool) {
    let store = monkeyci_eventstore::EventStore::new(pool.clone());
    // The first rebuild's connection holds the projection's rebuild lock.
    let mut first = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("connection");
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('monkeyci.rebuild.builds', 0))")
        .fetch_one(&mut first)
        .await
        .expect("lock");
    assert!(held);
    let second = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("connection");
    let refused = monkeyci_projections::rebuild_online(&store, second, &BuildsProjection, 100, |_| {}).await;
    assert!(
        matches!(&refused, Err(monkeyci_projections::ProjectionError::RebuildRunning(name)) if name == "builds"),
        "{refused:?}"
    );
    let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'")
        .fetch_one(&pool)
        .await
        .expect("schemas");
    assert_eq!(schemas, 0, "the refused rebuild made nothing");
    // Once the first is gone, a rebuild runs.
    first.close().await.expect("close");
    let third = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("connection");
    monkeyci_projections::rebuild_online(&store, third, &BuildsProjection, 100, |_| {})
        .await
        .expect("rebuild after the lock is free");
}
