//! Reading the whole log in order: never skipping, never repeating, even when transactions
//! commit out of order; and the live feed on top of it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use monkeyci_eventstore::{
    AppendError, Cursor, EventFeed, EventStore, ExpectedVersion, FeedConfig, IdempotencyClaim, Metadata, NewEvent,
    StreamAppend,
};
use monkeyci_tests::read_whole_log;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

pub(crate) fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Counted".into(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: Metadata {
            actor: "test".into(),
            correlation_id: Uuid::nil(),
            causation_id: None,
            command_id: Uuid::nil(),
            idempotency_key: None,
            org_id: None,
        },
    }
}

fn write(stream: &str, events: Vec<NewEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream_id: stream.into(),
        expected: ExpectedVersion::Any,
        events,
    }]
}

#[sqlx::test(migrations = "../migrations")]
async fn an_event_that_commits_late_with_a_smaller_position_is_not_skipped(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    // A transaction takes a position, then stays open while a later one commits.
    let mut slow = pool.acquire().await.expect("conn");
    let mut slow_tx = slow.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata) \
         VALUES ('slow-1', 1, 'Counted', 1, '{\"n\": 1}', '{\"actor\": \"test\", \"correlation_id\": \"00000000-0000-0000-0000-000000000000\", \"command_id\": \"00000000-0000-0000-0000-000000000000\"}')",
    )
    .execute(&mut *slow_tx)
    .await
    .expect("slow insert");
    store
        .append(&write("fast-1", vec![event(2)]), None)
        .await
        .expect("fast append");

    let before_commit = store.read_all(Cursor::START, 100).await.expect("read");
    slow_tx.commit().await.expect("commit");
    let after_commit = read_whole_log(&store).await.expect("read");

    assert!(
        before_commit.is_empty(),
        "the reader passed the open transaction: {before_commit:?}"
    );
    let streams: Vec<&str> = after_commit.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["slow-1", "fast-1"]);
    assert!(after_commit[0].cursor.position < after_commit[1].cursor.position);
}

/// What the concurrent reader saw, in the order it saw it: cursor, stream, version.
type Seen = Vec<(Cursor, String, u64)>;

/// How the writers of a stress round append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Without idempotency keys; every append must succeed at once.
    Plain,
    /// Each append with an idempotency key, retried with the same key after its connection was
    /// killed (it may or may not have committed): each append takes effect exactly once.
    KeyedAndRetried,
}

/// Appends from many writers (on `store`) while a reader follows the log (on `reader_store`);
/// checks the reader saw exactly the events appended, each once, and returns its final cursor and
/// what it saw.
async fn stress_round(
    store: &EventStore,
    reader_store: &EventStore,
    round: usize,
    writers: usize,
    appends_per_writer: usize,
    start: Cursor,
    mode: Writes,
) -> (Cursor, Seen) {
    let appended = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = reader_store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut seen = Vec::new();
            loop {
                // Once the writers are done, the head no longer moves: reaching it means done.
                let finished = done.load(Ordering::SeqCst) && cursor >= store.head().await.expect("head");
                if finished {
                    return (cursor, seen);
                }
                let page = store.read_all(cursor, 1000).await.expect("read");
                if let Some(last) = page.last() {
                    assert!(last.cursor > cursor);
                    cursor = last.cursor;
                    seen.extend(page.into_iter().map(|e| (e.cursor, e.stream_id, e.stream_version)));
                } else {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let appended = appended.clone();
            tokio::spawn(async move {
                for i in 0..appends_per_writer {
                    // Shared streams make writers race for versions; two-stream appends hold
                    // their transaction open across statements, so commits land out of order.
                    let size = 1 + (i % 3) as u64;
                    let events: Vec<NewEvent> = (0..size).map(event).collect();
                    let writes = if i % 5 == 0 {
                        vec![
                            StreamAppend {
                                stream_id: format!("pair-{round}-{w}-{i}"),
                                expected: ExpectedVersion::NoStream,
                                events: events.clone(),
                            },
                            StreamAppend {
                                stream_id: format!("shared-{}", (w + i) % 32),
                                expected: ExpectedVersion::Any,
                                events: vec![event(0)],
                            },
                        ]
                    } else {
                        write(&format!("shared-{}", (w * 7 + i) % 32), events)
                    };
                    let n: u64 = writes.iter().map(|w| w.events.len() as u64).sum();
                    let key = format!("{round}-{w}-{i}");
                    let claim = (mode == Writes::KeyedAndRetried).then(|| IdempotencyClaim {
                        scope: "stress".into(),
                        key: key.clone(),
                        command: "Stress".into(),
                        fingerprint: key.clone(),
                        result_id: key.clone(),
                    });
                    let mut failures = 0;
                    loop {
                        match store.append(&writes, claim.as_ref()).await {
                            Ok(_) => break,
                            Err(AppendError::Database(error)) if claim.is_some() && failures < 50 => {
                                failures += 1;
                                tracing::debug!(%error, "append failed; retrying with its key");
                            }
                            Err(error) => panic!("append {key} after {failures} failed tries: {error:?}"),
                        }
                    }
                    appended.fetch_add(n, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let (end, seen) = reader.await.expect("reader");

    assert_eq!(
        seen.len() as u64,
        appended.load(Ordering::SeqCst),
        "events read vs appended"
    );
    let distinct: HashSet<i64> = seen.iter().map(|(c, _, _)| c.position).collect();
    assert_eq!(distinct.len(), seen.len(), "an event was read twice");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)")
            .bind(start.tx.to_string())
            .bind(start.position)
            // Not on the writers' pool: the killer ends its connections.
            .fetch_one(reader_store.pool())
            .await
            .expect("count");
    assert_eq!(stored as usize, seen.len(), "events read vs stored");
    (end, seen)
}

/// Stress rounds of 16 writers and one reader until `MONKEYCI_STRESS_APPENDS` appends (or
/// `default_total`) have run; across all rounds the reader saw every stream in version order with
/// no gap. With [`Writes::KeyedAndRetried`] a killer ends a writer's backend every 20 ms, in
/// the middle of whatever it was doing; returns how many it ended. The backend is drawn at random:
/// taking the first one listed hit the same slot again and again (a reconnecting writer gets the
/// slot back), so one append met 50 kills in a row under a slow CI run. Nor is a writer killed
/// while fewer than four are busy: at the end of a round the last writer left was the only one to
/// draw, and under load one append could meet a kill at each of its 50 tries.
async fn stress(pool: PgPool, mode: Writes, default_total: usize) -> u64 {
    // Durability is not under test here; without a flush per commit the run is several times
    // longer in appends for the same time.
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .expect("db");
    sqlx::query(&format!("ALTER DATABASE \"{db}\" SET synchronous_commit = off"))
        .execute(&pool)
        .await
        .expect("alter");
    let options = (*pool.connect_options()).clone();
    let writers_pool = PgPoolOptions::new()
        .max_connections(24)
        .connect_with(options.clone().application_name("stress writer"))
        .await
        .expect("pool");
    let reader_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.application_name("stress reader"))
        .await
        .expect("pool");
    let store = EventStore::new(writers_pool);
    let reader_store = EventStore::new(reader_pool);
    let stop_killing = Arc::new(AtomicBool::new(false));
    let killer = (mode == Writes::KeyedAndRetried).then(|| {
        let (pool, stop) = (pool.clone(), stop_killing.clone());
        tokio::spawn(async move {
            let mut kills = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let killed: Option<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM ( \
                         SELECT pid, count(*) OVER () AS busy FROM pg_stat_activity \
                         WHERE application_name = 'stress writer' AND datname = current_database() \
                           AND xact_start IS NOT NULL) writers \
                     WHERE busy >= 4 ORDER BY random() LIMIT 1",
                )
                .fetch_optional(&pool)
                .await
                .expect("kill");
                kills += u64::from(killed == Some(true));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            kills
        })
    });
    let total: usize = std::env::var("MONKEYCI_STRESS_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_total);
    let writers = 16;
    let per_round = 20_000usize.min(total);
    let rounds = total.div_ceil(per_round);
    let mut cursor = Cursor::START;
    let mut last_version: HashMap<String, u64> = HashMap::new();
    let mut events = 0usize;
    for round in 0..rounds {
        let (end, seen) = stress_round(&store, &reader_store, round, writers, per_round / writers, cursor, mode).await;
        cursor = end;
        events += seen.len();
        for (_, stream, version) in seen {
            let previous = last_version.insert(stream.clone(), version).unwrap_or(0);
            assert_eq!(version, previous + 1, "stream {stream} out of order");
        }
    }
    stop_killing.store(true, Ordering::SeqCst);
    let kills = match killer {
        Some(killer) => killer.await.expect("killer"),
        None => 0,
    };
    let appends: u64 = (rounds * (per_round / writers) * writers) as u64;
    assert!(appends >= total as u64 * 9 / 10, "only {appends} appends ran");
    eprintln!("{appends} appends, {events} events read in order, {kills} writer backends killed");
    kills
}

#[sqlx::test(migrations = "../migrations")]
async fn many_writers_and_one_reader_the_reader_sees_every_event_once_and_streams_in_order(pool: PgPool) {
    stress(pool, Writes::Plain, 200_000).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn writers_with_idempotency_keys_killed_mid_append_lose_and_repeat_nothing(pool: PgPool) {
    let kills = stress(pool, Writes::KeyedAndRetried, 20_000).await;
    assert!(kills > 0, "no writer was killed: the test proved nothing");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_live_subscriber_gets_the_backlog_then_live_events_and_resumes_from_its_cursor(pool: PgPool) {
    let store = EventStore::new(pool);
    for n in 0..5 {
        store
            .append(&write("feed-1", vec![event(n)]), None)
            .await
            .expect("append");
    }
    let feed = EventFeed::start(store.clone(), FeedConfig::default())
        .await
        .expect("feed");

    let mut sub = Box::pin(feed.subscribe(Cursor::START));
    let mut got = Vec::new();
    for n in 5..10 {
        store
            .append(&write("feed-1", vec![event(n)]), None)
            .await
            .expect("append");
    }
    while got.len() < 10 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("an event within 10 s")
            .expect("open")
            .expect("ok");
        got.push(e);
    }
    let ns: Vec<u64> = got.iter().filter_map(|e| e.data["n"].as_u64()).collect();
    assert_eq!(ns, (0..10).collect::<Vec<_>>());

    // Reconnect after the 6th event: exactly the missed events, then live ones.
    let mut resumed = Box::pin(feed.subscribe(got[5].cursor));
    store
        .append(&write("feed-1", vec![event(10)]), None)
        .await
        .expect("append");
    let mut again = Vec::new();
    while again.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("an event within 10 s")
            .expect("open")
            .expect("ok");
        again.push(e.data["n"].as_u64().unwrap_or(u64::MAX));
    }
    assert_eq!(again, [6, 7, 8, 9, 10]);
}

#[sqlx::test(migrations = "../migrations")]
async fn live_subscribers_under_concurrent_appends_see_each_event_once_in_log_order(pool: PgPool) {
    let store = EventStore::new(pool);
    let feed = EventFeed::start(
        store.clone(),
        FeedConfig {
            broadcast_capacity: 16, // small, so subscribers lag and fall back to the database
            ..FeedConfig::default()
        },
    )
    .await
    .expect("feed");
    let subscribers: Vec<_> = (0..4).map(|_| Box::pin(feed.subscribe(Cursor::START))).collect();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    store
                        .append(&write(&format!("live-{}", (w + i) % 4), vec![event(i)]), None)
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let expected: Vec<Cursor> = read_whole_log(&store)
        .await
        .expect("read")
        .iter()
        .map(|e| e.cursor)
        .collect();
    assert_eq!(expected.len(), 800);
    for mut sub in subscribers {
        let mut got = Vec::with_capacity(800);
        while got.len() < 800 {
            let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
                .await
                .expect("an event within 20 s")
                .expect("open")
                .expect("ok");
            got.push(e.cursor);
        }
        assert_eq!(got, expected);
    }
}
