//! The live dashboard (Spark's Streaming tab) and the WebSocket output feeds, on a small HTTP
//! server of the context's own (threads, no async runtime), bound to 127.0.0.1 unless told.
//!
//! - `GET /`: the page (assets embedded in the binary, no build step, no network): charts of
//!   input rate, scheduling delay, processing time and total delay over the recent batches,
//!   per-operator records and time, state sizes, input lag per partition, feeds, and the table
//!   of completed batches, updated live over `/ws`.
//! - `GET /ws`: a WebSocket sending the status (the JSON of `/api/status`) after every batch.
//! - `GET /api/status`: the status now, as JSON.
//! - `GET /metrics`: the same figures in Prometheus' text format.
//! - `GET /feeds/NAME`: a WebSocket streaming the batches of the DStream saved to feed `NAME`
//!   ([`DStream::save_to_websocket`](crate::DStream::save_to_websocket)) as JSON.
//!
//! Each WebSocket client has a bounded queue: a client that does not keep up misses messages
//! (counted, and the next message it gets says how many) and never slows the pipeline.

mod feed;
mod http;
mod status;

pub use feed::{AsDashboard, FeedStats};
pub use status::{prometheus_labels, prometheus_metric};

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::context::{ContextInner, StreamingContext};
use crate::error::{Error, Result};
use crate::metrics::{BatchInfo, StreamingListener};

use feed::Feeds;
use status::History;

/// The most connections served at once; more are answered 503.
const MAX_CONNECTIONS: usize = 64;

/// Messages a WebSocket client may have queued before it misses some.
pub(crate) const CLIENT_QUEUE: usize = 64;

/// A running dashboard of one context. It serves until [`stop`](Self::stop) is called or the
/// last clone of it is dropped.
///
/// ```no_run
/// use stream_core::prelude::*;
/// let ssc = StreamingContext::new(Seconds(1))?;
/// let dashboard = ssc.serve_dashboard("127.0.0.1:4040")?;
/// println!("dashboard at {}", dashboard.url());
/// # Ok::<(), stream_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Dashboard {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.handle.addr)
            .finish()
    }
}

/// Stops the server when the last `Dashboard` goes.
struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop(self.addr);
    }
}

/// What the server's threads and the contexts' listeners share.
pub(crate) struct Shared {
    /// The contexts it shows, each with the number its batches carry in the history: one for
    /// a context's dashboard; the running tasks for a scaled-out instance's.
    contexts: Mutex<Vec<(usize, Weak<ContextInner>)>>,
    next_source: AtomicUsize,
    history: Mutex<History>,
    /// Sections of the status beyond the batches (a scaled-out instance's tasks and group).
    sections: Mutex<Vec<Arc<dyn DashboardSection>>>,
    feeds: Feeds,
    /// The dashboard's own WebSocket clients (`/ws`).
    watchers: Mutex<Vec<feed::Client>>,
    stopped: AtomicBool,
    connections: AtomicUsize,
}

impl Shared {
    fn stop(&self, addr: SocketAddr) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            // Wake the accept loop so that it sees the flag.
            let _ = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500));
            self.feeds.close_all();
            for c in lock(&self.watchers).drain(..) {
                c.close();
            }
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn contexts(&self) -> Vec<StreamingContext> {
        lock(&self.contexts)
            .iter()
            .filter_map(|(_, c)| c.upgrade())
            .map(|inner| StreamingContext { inner })
            .collect()
    }

    /// The state shown: the context's; for several, `Active` if one runs.
    fn state(&self, contexts: &[StreamingContext]) -> String {
        let states: Vec<String> = contexts
            .iter()
            .map(|c| format!("{:?}", c.state()))
            .collect();
        if states.is_empty() {
            if lock(&self.sections).is_empty() {
                "Stopped".to_string()
            } else {
                "No tasks".to_string()
            }
        } else if states.iter().any(|s| s == "Active") {
            "Active".to_string()
        } else {
            states[0].clone()
        }
    }

    /// The status now, as JSON.
    fn status_json(&self) -> String {
        let contexts = self.contexts();
        let inputs: Vec<_> = contexts.iter().flat_map(|c| c.input_status()).collect();
        let errors: Vec<_> = contexts.iter().flat_map(|c| c.record_errors()).collect();
        let state = self.state(&contexts);
        let feeds = self.feeds.stats();
        let sections: Vec<(String, serde_json::Value)> = lock(&self.sections)
            .clone()
            .iter()
            .map(|s| (s.key().to_string(), s.json()))
            .collect();
        lock(&self.history).json(&state, &inputs, &errors, &feeds, sections)
    }

    /// The figures in Prometheus' text format.
    fn prometheus(&self) -> String {
        let contexts = self.contexts();
        let inputs: Vec<_> = contexts.iter().flat_map(|c| c.input_status()).collect();
        let errors: Vec<_> = contexts.iter().flat_map(|c| c.record_errors()).collect();
        let feeds = self.feeds.stats();
        let mut out = lock(&self.history).prometheus(&inputs, &errors, &feeds);
        for s in lock(&self.sections).clone() {
            s.prometheus(&mut out);
        }
        out
    }
}

/// A part of the dashboard's status beyond the batches of its contexts: a scaled-out
/// instance's tasks and group (`stream-kafka`'s `Instance::serve_dashboard`), or your own.
/// The page shows a section it knows; `/api/status` has every section under its key, and
/// `/metrics` has the lines the section writes.
pub trait DashboardSection: Send + Sync {
    /// Its key in the status JSON (`"scale"` for a scaled-out instance).
    fn key(&self) -> &str;
    /// Its content now.
    fn json(&self) -> serde_json::Value;
    /// Its metrics in Prometheus' text format (`# HELP`, `# TYPE` and samples), appended to
    /// `out`.
    fn prometheus(&self, out: &mut String);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds the history and pushes the status to `/ws` clients after every batch of a context.
struct Listener {
    shared: Weak<Shared>,
    source: usize,
}

impl StreamingListener for Listener {
    fn on_batch_completed(&self, info: &BatchInfo) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if shared.is_stopped() {
            return;
        }
        lock(&shared.history).add(self.source, info);
        let mut watchers = lock(&shared.watchers);
        if watchers.is_empty() {
            return;
        }
        drop(watchers);
        // One copy of the status, shared by every client's queue.
        let json: Arc<str> = Arc::from(shared.status_json());
        watchers = lock(&shared.watchers);
        watchers.retain(|c| c.offer_shared(json.clone()).is_some());
    }
}

impl StreamingContext {
    /// Serves the dashboard of this context on `addr` (e.g. `"127.0.0.1:4040"`; port 0 picks a
    /// free one) and turns operator metrics on. Call it before or after `start`; batches
    /// completed before it are not shown.
    pub fn serve_dashboard(&self, addr: impl ToSocketAddrs) -> Result<Dashboard> {
        Dashboard::start(self, addr)
    }
}

impl Dashboard {
    /// Serves the dashboard of `ssc` on `addr` (see [`StreamingContext::serve_dashboard`]).
    pub fn start(ssc: &StreamingContext, addr: impl ToSocketAddrs) -> Result<Dashboard> {
        let dashboard = Dashboard::serve(addr, ssc.batch_duration())?;
        dashboard.watch(ssc);
        Ok(dashboard)
    }

    /// Serves a dashboard of no context yet, for contexts of batch interval `batch` that
    /// [`watch`](Self::watch) adds: the batches of several contexts at the same batch time
    /// (the tasks of a scaled-out instance) make one row, their records summed and their
    /// times the slowest's.
    pub fn serve(addr: impl ToSocketAddrs, batch: crate::time::Duration) -> Result<Dashboard> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::invalid(format!("the dashboard cannot listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("the dashboard cannot listen: {e}")))?;
        let shared = Arc::new(Shared {
            contexts: Mutex::new(Vec::new()),
            next_source: AtomicUsize::new(0),
            history: Mutex::new(History::new(batch)),
            sections: Mutex::new(Vec::new()),
            feeds: Feeds::default(),
            watchers: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let server = shared.clone();
        std::thread::Builder::new()
            .name("dstream-dashboard".into())
            .spawn(move || accept_loop(listener, server))
            .map_err(|e| Error::invalid(format!("the dashboard cannot start a thread: {e}")))?;
        log::info!("dashboard on http://{addr}/");
        Ok(Dashboard {
            handle: Arc::new(Handle { addr, shared }),
        })
    }

    /// Shows `ssc` too: its batches from now on, its inputs and its state (and turns its
    /// operator metrics on).
    pub fn watch(&self, ssc: &StreamingContext) {
        let shared = &self.handle.shared;
        ssc.set_operator_metrics(true);
        let source = shared.next_source.fetch_add(1, Ordering::SeqCst);
        let mut contexts = lock(&shared.contexts);
        contexts.retain(|(_, c)| c.strong_count() > 0);
        contexts.push((source, Arc::downgrade(&ssc.inner)));
        drop(contexts);
        ssc.add_streaming_listener(Arc::new(Listener {
            shared: Arc::downgrade(shared),
            source,
        }));
    }

    /// Stops showing `ssc` (a task that left this instance): its inputs and state go; the
    /// batches it completed stay in the history.
    pub fn unwatch(&self, ssc: &StreamingContext) {
        let shared = &self.handle.shared;
        let target = Arc::downgrade(&ssc.inner);
        let mut gone = Vec::new();
        lock(&shared.contexts).retain(|(source, c)| {
            let keep = !c.ptr_eq(&target) && c.strong_count() > 0;
            if !keep {
                gone.push(*source);
            }
            keep
        });
        let mut history = lock(&shared.history);
        for source in gone {
            history.forget(source);
        }
    }

    /// Adds a section to the status, the page and `/metrics` (see [`DashboardSection`]).
    pub fn add_section(&self, section: Arc<dyn DashboardSection>) {
        lock(&self.handle.shared.sections).push(section);
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Its page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.handle.addr)
    }

    /// The URL of the WebSocket of feed `name`.
    pub fn feed_url(&self, name: &str) -> String {
        format!(
            "ws://{}/feeds/{}",
            self.handle.addr,
            http::encode_path(name)
        )
    }

    /// Each feed's clients, messages and drops so far.
    pub fn feeds(&self) -> Vec<FeedStats> {
        self.handle.shared.feeds.stats()
    }

    /// Stops serving: closes the listener and every WebSocket.
    pub fn stop(&self) {
        self.handle.shared.stop(self.handle.addr);
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.is_stopped() {
            return;
        }
        let Ok(stream) = conn else {
            continue;
        };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            http::respond(stream, 503, "text/plain", b"too many connections\n");
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("dstream-dashboard-conn".into())
            .spawn(move || {
                http::serve(stream, &s);
                s.connections.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
