//! A live feed of the whole log for in-process subscribers.
//!
//! One task per process follows the log (woken by `LISTEN monkeyci_events`, with a slow poll as
//! a safety net) and broadcasts each event once. A subscriber first catches up from the database
//! from its own cursor, then takes events from the broadcast, dropping the ones it already has:
//! since both sources deliver in log order, comparing cursors is enough to see nothing twice.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ReadError;
use crate::model::{Cursor, RecordedEvent};
use crate::signal::CHANNEL;
use crate::store::EventStore;

/// Tuning of the live feed.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Events read from the database per query.
    pub batch_size: u32,
    /// Events buffered for slow subscribers before they fall back to the database.
    pub broadcast_capacity: usize,
    /// How often the log is polled when no notification arrives.
    pub idle_poll: Duration,
    /// How soon to look again when committed events wait behind a transaction still running.
    pub held_back_poll: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            broadcast_capacity: 4096,
            idle_poll: Duration::from_secs(1),
            held_back_poll: Duration::from_millis(2),
        }
    }
}

/// The live feed of the whole log.
#[derive(Debug, Clone)]
pub struct EventFeed {
    store: EventStore,
    config: FeedConfig,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    /// The cursor of the last event broadcast.
    head: watch::Receiver<Cursor>,
}

impl EventFeed {
    /// Starts following the log from its current end. The task stops when every handle is dropped.
    pub async fn start(store: EventStore, config: FeedConfig) -> Result<Self, ReadError> {
        let mut listener = PgListener::connect_with(store.pool()).await?;
        listener.listen(CHANNEL).await?;
        let start = store.readable_head().await?;
        let (sender, _) = broadcast::channel(config.broadcast_capacity);
        let (head_tx, head) = watch::channel(start);
        let feed = Self {
            store: store.clone(),
            config: config.clone(),
            sender: sender.clone(),
            head,
        };
        tokio::spawn(follow(store, config, listener, sender, head_tx, start));
        Ok(feed)
    }

    /// The cursor of the last event the feed has broadcast.
    pub fn head(&self) -> Cursor {
        *self.head.borrow()
    }

    /// Waits until the feed has broadcast `cursor` or a later event.
    pub async fn wait_for(&self, cursor: Cursor) {
        let mut head = self.head.clone();
        // An error means the follower stopped; there is nothing more to wait for.
        let _ = head.wait_for(|h| *h >= cursor).await;
    }

    /// Every event after `after`, first from the database, then live, in log order, each once.
    ///
    /// The stream ends only if the database fails (the error is its last item) or the receiver
    /// is dropped.
    pub fn subscribe(
        &self,
        after: Cursor,
    ) -> impl Stream<Item = Result<Arc<RecordedEvent>, ReadError>> + Send + 'static {
        let (tx, rx) = mpsc::channel(self.config.batch_size as usize);
        tokio::spawn(deliver(self.clone(), after, tx));
        ReceiverStream::new(rx)
    }
}

async fn follow(
    store: EventStore,
    config: FeedConfig,
    mut listener: PgListener,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    head_tx: watch::Sender<Cursor>,
    mut cursor: Cursor,
) {
    let mut local = store.appended();
    loop {
        if sender.receiver_count() == 0 && head_tx.is_closed() {
            return;
        }
        let page = match store.read_all(cursor, config.batch_size).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "event feed could not read the log; retrying");
                tokio::time::sleep(config.idle_poll).await;
                continue;
            }
        };
        let full = page.len() == config.batch_size as usize;
        if let Some(last) = page.last() {
            cursor = last.cursor;
        }
        for event in page {
            // No receivers is fine: the feed keeps its place for later subscribers.
            let _ = sender.send(Arc::new(event));
        }
        head_tx.send_replace(cursor);
        if full {
            continue;
        }
        let held_back = match store.head().await {
            Ok(head) => head > cursor,
            Err(_) => false,
        };
        let wait = if held_back {
            config.held_back_poll
        } else {
            config.idle_poll
        };
        tokio::select! {
            received = listener.recv() => {
                if let Err(error) = received {
                    tracing::warn!(%error, "event feed lost its LISTEN connection; reconnecting");
                    tokio::time::sleep(config.held_back_poll).await;
                }
            }
            _ = local.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn deliver(feed: EventFeed, mut cursor: Cursor, tx: mpsc::Sender<Result<Arc<RecordedEvent>, ReadError>>) {
    'catch_up: loop {
        // Subscribe before reading the database so nothing broadcast meanwhile is missed.
        let mut live = feed.sender.subscribe();
        loop {
            let page = match feed.store.read_all(cursor, feed.config.batch_size).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            };
            let done = page.len() < feed.config.batch_size as usize;
            for event in page {
                cursor = event.cursor;
                if tx.send(Ok(Arc::new(event))).await.is_err() {
                    return;
                }
            }
            // The feed had broadcast at most what this read could see (the readable end of the
            // log only moves forward), and everything it broadcast since is in `live`.
            if done {
                break;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                // The subscriber went away while the log was quiet.
                () = tx.closed() => return,
            };
            match received {
                Ok(event) if event.cursor <= cursor => {}
                Ok(event) => {
                    cursor = event.cursor;
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
