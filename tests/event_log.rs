//! The event log: appends, expected versions, reads, bad input and immutability.

use monkeyci_eventstore::{
    AppendError, AppendResult, Cursor, EventStore, ExpectedVersion, IdempotencyClaim, Metadata, NewEvent, ReadError,
    StreamAppend,
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn meta() -> Metadata {
    Metadata {
        actor: "user:test".into(),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        command_id: Uuid::now_v7(),
        idempotency_key: None,
        org_id: None,
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Counted".into(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: meta(),
    }
}

fn append(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream_id: stream.into(),
        expected,
        events,
    }]
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_batch_is_appended_in_version_order_with_its_metadata(pool: PgPool) {
    let store = EventStore::new(pool);
    let metadata = Metadata {
        causation_id: Some(Uuid::now_v7()),
        idempotency_key: Some("k1".into()),
        org_id: Some(Uuid::now_v7()),
        ..meta()
    };
    let events: Vec<NewEvent> = (1..=3)
        .map(|n| NewEvent {
            metadata: metadata.clone(),
            ..event(n)
        })
        .collect();

    let result = store
        .append(&append("counter-1", ExpectedVersion::NoStream, events), None)
        .await
        .expect("append");

    let read = store.read_stream("counter-1", 0).await.expect("read");
    assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        read.iter().map(|e| e.data["n"].as_u64()).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert!(read.iter().all(|e| e.metadata == metadata && e.schema_version == 1));
    assert_eq!(
        result,
        AppendResult::Appended {
            last: Some(read[2].cursor)
        }
    );
    assert_eq!(store.read_stream("counter-1", 2).await.expect("read tail").len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn appending_at_an_exact_version_checks_the_version(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(
            &append("s-1", ExpectedVersion::NoStream, vec![event(1), event(2)]),
            None,
        )
        .await
        .expect("first");

    store
        .append(&append("s-1", ExpectedVersion::Exact(2), vec![event(3)]), None)
        .await
        .expect("at version 2");
    let stale = store
        .append(&append("s-1", ExpectedVersion::Exact(2), vec![event(4)]), None)
        .await;
    let again = store
        .append(&append("s-1", ExpectedVersion::NoStream, vec![event(4)]), None)
        .await;

    assert!(
        matches!(stale, Err(AppendError::WrongExpectedVersion { actual: 3, .. })),
        "{stale:?}"
    );
    assert!(
        matches!(again, Err(AppendError::WrongExpectedVersion { actual: 3, .. })),
        "{again:?}"
    );
    assert_eq!(count(&pool).await, 3);
}

#[sqlx::test(migrations = "../migrations")]
async fn two_writers_at_the_same_expected_version_exactly_one_wins(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(&append("race-1", ExpectedVersion::NoStream, vec![event(0)]), None)
        .await
        .expect("seed");

    for round in 1..=50u64 {
        let first = append("race-1", ExpectedVersion::Exact(round), vec![event(round)]);
        let second = first.clone();
        let (a, b) = tokio::join!(store.append(&first, None), store.append(&second, None));
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        let loser = if a.is_err() { a } else { b };
        assert!(
            matches!(loser, Err(AppendError::WrongExpectedVersion { ref stream_id, .. }) if stream_id == "race-1"),
            "round {round}: {loser:?}"
        );
    }
    assert_eq!(store.stream_version("race-1").await.expect("version"), 51);
}

#[sqlx::test(migrations = "../migrations")]
async fn any_version_appends_never_conflict(pool: PgPool) {
    let store = EventStore::new(pool);
    let appends = (0..40).map(|n| {
        let store = store.clone();
        async move {
            store
                .append(&append("any-1", ExpectedVersion::Any, vec![event(n)]), None)
                .await
        }
    });
    let results = futures::future::join_all(appends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let versions: Vec<u64> = store
        .read_stream("any-1", 0)
        .await
        .expect("read")
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=40).collect::<Vec<_>>());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_multi_stream_append_is_all_or_nothing(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(&append("b-1", ExpectedVersion::NoStream, vec![event(1)]), None)
        .await
        .expect("seed");
    let writes = vec![
        StreamAppend {
            stream_id: "a-1".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event(1)],
        },
        StreamAppend {
            stream_id: "b-1".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event(2)],
        },
    ];

    let result = store.append(&writes, None).await;

    assert!(matches!(result, Err(AppendError::WrongExpectedVersion { ref stream_id, .. }) if stream_id == "b-1"));
    assert!(matches!(
        store.read_stream("a-1", 0).await,
        Err(ReadError::StreamNotFound(_))
    ));
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_input_gets_a_typed_error_and_writes_nothing(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let malformed = [
        NewEvent {
            data: json!([1, 2]),
            ..event(1)
        },
        NewEvent {
            data: json!("text"),
            ..event(1)
        },
        NewEvent {
            event_type: String::new(),
            ..event(1)
        },
        NewEvent {
            event_type: "Has Space".into(),
            ..event(1)
        },
        NewEvent {
            schema_version: 0,
            ..event(1)
        },
        NewEvent {
            metadata: Metadata {
                actor: String::new(),
                ..meta()
            },
            ..event(1)
        },
    ];
    for bad in malformed {
        let result = store
            .append(
                &append("bad-1", ExpectedVersion::Any, vec![event(0), bad.clone()]),
                None,
            )
            .await;
        assert!(
            matches!(result, Err(AppendError::Malformed(_))),
            "{bad:?} gave {result:?}"
        );
    }
    let empty_stream = store
        .append(&append("", ExpectedVersion::Any, vec![event(1)]), None)
        .await;
    assert!(matches!(empty_stream, Err(AppendError::Malformed(_))));
    let twice = vec![
        StreamAppend {
            stream_id: "x-1".into(),
            expected: ExpectedVersion::Any,
            events: vec![event(1)],
        };
        2
    ];
    assert!(matches!(
        store.append(&twice, None).await,
        Err(AppendError::Malformed(_))
    ));
    let unknown_exact = store
        .append(&append("nothing-1", ExpectedVersion::Exact(3), vec![event(1)]), None)
        .await;
    assert!(matches!(
        unknown_exact,
        Err(AppendError::WrongExpectedVersion { actual: 0, .. })
    ));
    assert!(matches!(
        store.read_stream("nothing-1", 0).await,
        Err(ReadError::StreamNotFound(ref s)) if s == "nothing-1"
    ));
    assert_eq!(count(&pool).await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_database_refuses_to_update_delete_or_truncate_events(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(&append("fixed-1", ExpectedVersion::NoStream, vec![event(1)]), None)
        .await
        .expect("append");

    for sql in [
        "UPDATE events SET data = '{\"n\": 2}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        let db = error.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("MC001"), "{sql}: {db}");
        assert!(db.message().contains("append-only"), "{sql}: {db}");
    }
    assert_eq!(
        store.read_stream("fixed-1", 0).await.expect("read")[0].data,
        json!({ "n": 1 })
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idempotency_key_appends_once_and_refuses_other_input(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let claim = |fingerprint: &str| IdempotencyClaim {
        scope: "user:test".into(),
        key: "key-1".into(),
        command: "count".into(),
        fingerprint: fingerprint.into(),
        result_id: "r-1".into(),
    };

    let first = store
        .append(
            &append("idem-1", ExpectedVersion::Any, vec![event(1)]),
            Some(&claim("f1")),
        )
        .await
        .expect("first");
    let repeat = store
        .append(
            &append("idem-1", ExpectedVersion::Any, vec![event(1)]),
            Some(&claim("f1")),
        )
        .await
        .expect("repeat");
    let other = store
        .append(
            &append("idem-1", ExpectedVersion::Any, vec![event(2)]),
            Some(&claim("f2")),
        )
        .await;

    assert!(matches!(first, AppendResult::Appended { .. }));
    assert_eq!(
        repeat,
        AppendResult::Duplicate {
            result_id: "r-1".into()
        }
    );
    assert!(
        matches!(other, Err(AppendError::IdempotencyKeyReused { .. })),
        "{other:?}"
    );
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_head_and_the_count_after_a_cursor_follow_appends(pool: PgPool) {
    let store = EventStore::new(pool);
    assert_eq!(store.head().await.expect("head"), Cursor::START);
    store
        .append(&append("h-1", ExpectedVersion::Any, vec![event(1), event(2)]), None)
        .await
        .expect("append");
    let all = monkeyci_tests::read_whole_log(&store).await.expect("read");
    assert_eq!(store.head().await.expect("head"), all[1].cursor);
    assert_eq!(store.count_after(Cursor::START).await.expect("count"), 2);
    assert_eq!(store.count_after(all[0].cursor).await.expect("count"), 1);
}
