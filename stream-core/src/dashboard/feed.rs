//! WebSocket clients with bounded queues, and the named feeds that DStreams publish to.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{Receiver, Sender, error::TrySendError};

use super::{CLIENT_QUEUE, Dashboard, lock};
use crate::batch::Data;
use crate::dstream::DStream;
use crate::error::{Error, OutputError, Result};
use crate::time::Time;

pub(crate) enum Outgoing {
    Text(Arc<str>),
    Close,
}

/// The publishing side of one WebSocket client.
pub(crate) struct Client {
    tx: Sender<Outgoing>,
    /// Messages it missed since the last one it was sent.
    missed: Arc<AtomicU64>,
    alive: Arc<AtomicBool>,
}

impl Client {
    /// A client and the receiving side its connection's task runs.
    pub(crate) fn new() -> (Client, Writer) {
        let (tx, rx) = tokio::sync::mpsc::channel(CLIENT_QUEUE);
        let missed = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(AtomicBool::new(true));
        (
            Client {
                tx,
                missed: missed.clone(),
                alive: alive.clone(),
            },
            Writer { rx, missed, alive },
        )
    }

    /// Queues `msg` for the client. Returns false when the client is gone; a full queue drops
    /// the message (counted) and keeps the client.
    pub(crate) fn offer(&self, msg: &str) -> bool {
        self.offer_shared(Arc::from(msg)).is_some()
    }

    /// `offer` of a shared message: `Some(delivered)` while the client is there.
    pub(crate) fn offer_shared(&self, msg: Arc<str>) -> Option<bool> {
        if !self.alive.load(Ordering::Relaxed) {
            return None;
        }
        match self.tx.try_send(Outgoing::Text(msg)) {
            Ok(()) => Some(true),
            Err(TrySendError::Full(_)) => {
                self.missed.fetch_add(1, Ordering::Relaxed);
                Some(false)
            }
            Err(TrySendError::Closed(_)) => None,
        }
    }

    pub(crate) fn close(&self) {
        let _ = self.tx.try_send(Outgoing::Close);
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// The connection's side of a client: what it sends, and whether it is still there.
pub(crate) struct Writer {
    pub(crate) rx: Receiver<Outgoing>,
    pub(crate) missed: Arc<AtomicU64>,
    pub(crate) alive: Arc<AtomicBool>,
}

/// `json` (an object) with `"missed": n` added when the client missed messages before it.
pub(crate) fn with_missed(json: &str, missed: u64) -> String {
    match (missed, json.strip_suffix('}')) {
        (0, _) | (_, None) => json.to_string(),
        (n, Some(head)) => format!("{head},\"missed\":{n}}}"),
    }
}

/// What a feed has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStats {
    /// The feed's name.
    pub name: String,
    /// Clients connected now.
    pub clients: usize,
    /// Batches published.
    pub messages: u64,
    /// Messages not delivered because a client's queue was full, over all clients.
    pub dropped: u64,
}

#[derive(Default)]
struct Feed {
    clients: Vec<Client>,
    messages: u64,
    dropped: u64,
}

/// The named feeds of a dashboard.
#[derive(Default)]
pub(crate) struct Feeds {
    feeds: Mutex<BTreeMap<String, Feed>>,
}

impl Feeds {
    /// Makes feed `name` known (before it has clients or messages).
    pub(crate) fn declare(&self, name: &str) {
        lock(&self.feeds).entry(name.to_string()).or_default();
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        lock(&self.feeds).contains_key(name)
    }

    pub(crate) fn subscribe(&self, name: &str, client: Client) {
        lock(&self.feeds)
            .entry(name.to_string())
            .or_default()
            .clients
            .push(client);
    }

    /// Sends `json` to every client of `name`.
    pub(crate) fn publish(&self, name: &str, json: String) {
        let msg: Arc<str> = Arc::from(json);
        let mut feeds = lock(&self.feeds);
        let feed = feeds.entry(name.to_string()).or_default();
        feed.messages += 1;
        let mut dropped = 0;
        feed.clients.retain(|c| match c.offer_shared(msg.clone()) {
            Some(true) => true,
            Some(false) => {
                dropped += 1;
                true
            }
            None => false,
        });
        feed.dropped += dropped;
    }

    pub(crate) fn stats(&self) -> Vec<FeedStats> {
        let mut feeds = lock(&self.feeds);
        feeds
            .iter_mut()
            .map(|(name, f)| {
                f.clients.retain(|c| c.alive.load(Ordering::Relaxed));
                FeedStats {
                    name: name.clone(),
                    clients: f.clients.len(),
                    messages: f.messages,
                    dropped: f.dropped,
                }
            })
            .collect()
    }

    pub(crate) fn close_all(&self) {
        for f in lock(&self.feeds).values_mut() {
            for c in f.clients.drain(..) {
                c.close();
            }
        }
    }
}

impl<T: Data + serde::Serialize> DStream<T> {
    /// Streams every batch of this stream as JSON to the WebSocket clients of feed `name` of
    /// `dashboard` (`ws://HOST:PORT/feeds/NAME`, see [`Dashboard::feed_url`]): one message per
    /// batch, `{"feed": NAME, "time": MS, "count": N, "records": [...]}` with the records in
    /// partition order. A client whose queue is full misses messages (counted in
    /// [`Dashboard::feeds`]; its next message carries `"missed": n`) and never slows the
    /// pipeline. Delivery is at most once: clients connected when the batch runs get it.
    ///
    /// `dashboard` may be an `Option<Dashboard>` (a dashboard served only on request, as the
    /// examples' `--serve`): with `None` nothing is registered.
    pub fn save_to_websocket(&self, dashboard: &impl AsDashboard, name: &str) -> Result<()> {
        let Some(dashboard) = dashboard.as_dashboard() else {
            return Ok(());
        };
        if name.is_empty() || name.contains(['/', '?', '#']) {
            return Err(Error::invalid(format!(
                "a feed name is a path segment: {name:?} is empty or holds '/', '?' or '#'"
            )));
        }
        let shared = Arc::downgrade(dashboard.shared());
        dashboard.shared().feeds.declare(name);
        let name = name.to_string();
        self.output("save_to_websocket", move |batch, t: Time| -> Result<()> {
            let Some(shared) = shared.upgrade() else {
                return Ok(());
            };
            let records = batch.collect();
            let json = serde_json::to_string(&FeedMessage {
                feed: &name,
                time: t.millis(),
                count: records.len(),
                records: &records,
            })
            .map_err(|e| OutputError::Custom {
                name: format!("websocket feed {name}"),
                message: format!("a record cannot be written as JSON: {e}"),
            })?;
            shared.feeds.publish(&name, json);
            Ok(())
        })
    }
}

/// A dashboard, or maybe one: what [`DStream::save_to_websocket`] publishes to.
pub trait AsDashboard {
    /// The dashboard, if there is one.
    fn as_dashboard(&self) -> Option<&Dashboard>;
}

impl AsDashboard for Dashboard {
    fn as_dashboard(&self) -> Option<&Dashboard> {
        Some(self)
    }
}

impl AsDashboard for Option<Dashboard> {
    fn as_dashboard(&self) -> Option<&Dashboard> {
        self.as_ref()
    }
}

/// One feed message.
#[derive(serde::Serialize)]
struct FeedMessage<'a, T> {
    feed: &'a str,
    time: i64,
    count: usize,
    records: &'a [T],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let feeds = Feeds::default();
        let (client, writer) = Client::new();
        feeds.subscribe("f", client);
        for i in 0..CLIENT_QUEUE + 5 {
            feeds.publish("f", format!("{{\"i\":{i}}}"));
        }
        let stats = feeds.stats();
        assert_eq!(stats[0].messages, (CLIENT_QUEUE + 5) as u64);
        assert_eq!(stats[0].dropped, 5);
        assert_eq!(stats[0].clients, 1);
        assert_eq!(writer.missed.load(Ordering::Relaxed), 5);
        drop(writer);
        feeds.publish("f", "{}".into());
        assert_eq!(feeds.stats()[0].clients, 0, "a gone client is removed");
    }

    #[test]
    fn missed_counts_are_added_to_the_next_message() {
        assert_eq!(with_missed("{\"a\":1}", 0), "{\"a\":1}");
        assert_eq!(with_missed("{\"a\":1}", 3), "{\"a\":1,\"missed\":3}");
    }
}
