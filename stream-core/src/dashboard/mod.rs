//! The live dashboard (Spark's Streaming tab) and the WebSocket output feeds, served by axum
//! on hyper (a tokio runtime of one thread, its own), bound to 127.0.0.1 unless told.
//!
//! - `GET /`: the page (assets embedded in the binary, no build step, no network): charts of
//!   input rate, scheduling delay, processing time and total delay over the recent batches,
//!   per-operator records and time, state sizes, input lag per partition, records dropped,
//!   feeds, and the table of completed batches, updated live over `/ws`.
//! - `GET /ws`: a WebSocket sending the status (the JSON of `/api/status`) after every batch.
//! - `GET /api/status`: the status now, as JSON.
//! - `GET /metrics`: the same figures in Prometheus' text format.
//! - `GET /feeds/NAME`: a WebSocket streaming the batches of the DStream saved to feed `NAME`
//!   ([`DStream::save_to_websocket`](crate::DStream::save_to_websocket)) as JSON.
//!
//! Each WebSocket client has a bounded queue: a client that does not keep up misses messages
//! (counted, and the next message it gets says how many) and never slows the pipeline. What
//! protects the server from other local processes and from web pages is in
//! [`DashboardOptions`].

mod feed;
mod http;
mod status;

pub use feed::{AsDashboard, FeedStats};
pub use status::{prometheus_labels, prometheus_metric};

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::context::{ContextInner, StreamingContext};
use crate::error::{Error, Result};
use crate::metrics::{BatchInfo, StreamingListener};

use feed::Feeds;
use status::{History, Live};

/// The most WebSocket clients (of `/ws` and the feeds together) at once; more are answered
/// 503. Plain requests (`/api/status`, `/metrics`, the page) have their own, larger cap.
pub(crate) const MAX_WEBSOCKETS: usize = 64;

/// How the dashboard's server protects itself and its readers.
///
/// - **Host.** Bound to loopback (the default `127.0.0.1`), it answers only requests whose
///   `Host` names loopback (`localhost`, `127.0.0.1`, `[::1]`) or a host you allow: a web page
///   whose domain was made to resolve to 127.0.0.1 (DNS rebinding) gets 403.
/// - **Origin.** A request with an `Origin` (a browser's WebSocket, a cross-site fetch) must come
///   from the dashboard's own origin or one you allow, else 403.
/// - **Token.** With [`token`](Self::token), every request needs `Authorization: Bearer TOKEN`
///   or `?token=TOKEN` (the page passes its own on to `/ws`), else 401. Use one when binding
///   beyond loopback; a dashboard bound so without one logs a warning.
/// - **Limits.** A request's head must arrive within [`head_timeout`](Self::head_timeout)
///   (default 5 s) and fit 16 KiB; one request per connection; at most 1,024 connections and,
///   among them, 64 WebSocket clients (so that feeds never starve `/api/status` and
///   `/metrics`); a WebSocket client may send messages of 4 KiB at most (it only needs control
///   frames), and a larger one closes it.
///
/// ```no_run
/// use stream_core::prelude::*;
/// use stream_core::DashboardOptions;
/// let ssc = StreamingContext::new(Seconds(1))?;
/// let options = DashboardOptions::new().token("s3cret").allow_host("dashboards.example.com");
/// let dashboard = ssc.serve_dashboard_with("0.0.0.0:4040", options)?;
/// # Ok::<(), stream_core::Error>(())
/// ```
#[derive(Clone)]
pub struct DashboardOptions {
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    token: Option<String>,
    head_timeout: std::time::Duration,
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("head_timeout", &self.head_timeout)
            .finish()
    }
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            token: None,
            head_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl DashboardOptions {
    /// The defaults: loopback hosts, the dashboard's own origin, no token, 5 s for a head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also answers requests whose `Host` is `host` (a name or an address, without the port).
    /// Once one is allowed, the `Host` is checked whatever address the dashboard binds.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Also lets pages of `origin` (`"https://grafana.example.com"`) use the dashboard.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Requires `token` of every request (`Authorization: Bearer TOKEN` or `?token=TOKEN`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long a client has to send a request's head (default 5 s); a slower one is closed.
    pub fn head_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.head_timeout = timeout;
        self
    }
}

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
        self.shared.stop();
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
    /// Turns true when the server stops: its accept loop and WebSocket tasks end.
    stop_tx: tokio::sync::watch::Sender<bool>,
    connections: AtomicUsize,
    websockets: AtomicUsize,
}

impl Shared {
    fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.stop_tx.send_replace(true);
            self.feeds.close_all();
            for c in lock(&self.watchers).drain(..) {
                c.close();
            }
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop_tx.subscribe()
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
        let state = self.state(&contexts);
        let live = self.live(&contexts);
        let sections: Vec<(String, serde_json::Value)> = lock(&self.sections)
            .clone()
            .iter()
            .map(|s| (s.key().to_string(), s.json()))
            .collect();
        lock(&self.history).json(&state, &live, sections)
    }

    /// What the contexts' inputs and operators and the feeds report now.
    fn live(&self, contexts: &[StreamingContext]) -> Live {
        Live {
            inputs: contexts.iter().flat_map(|c| c.input_status()).collect(),
            buffers: contexts.iter().flat_map(|c| c.input_buffers()).collect(),
            errors: contexts.iter().flat_map(|c| c.record_errors()).collect(),
            feeds: self.feeds.stats(),
        }
    }

    /// The figures in Prometheus' text format.
    fn prometheus(&self) -> String {
        let live = self.live(&self.contexts());
        let mut out = lock(&self.history).prometheus(&live);
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

    /// `serve_dashboard` with [`DashboardOptions`] (allowed hosts and origins, a token).
    pub fn serve_dashboard_with(
        &self,
        addr: impl ToSocketAddrs,
        options: DashboardOptions,
    ) -> Result<Dashboard> {
        let dashboard = Dashboard::serve_with(addr, self.batch_duration(), options)?;
        dashboard.watch(self);
        Ok(dashboard)
    }
}

impl Dashboard {
    /// Serves the dashboard of `ssc` on `addr` (see [`StreamingContext::serve_dashboard`]).
    pub fn start(ssc: &StreamingContext, addr: impl ToSocketAddrs) -> Result<Dashboard> {
        ssc.serve_dashboard_with(addr, DashboardOptions::default())
    }

    /// Serves a dashboard of no context yet, for contexts of batch interval `batch` that
    /// [`watch`](Self::watch) adds: the batches of several contexts at the same batch time
    /// (the tasks of a scaled-out instance) make one row, their records summed and their
    /// times the slowest's.
    pub fn serve(addr: impl ToSocketAddrs, batch: crate::time::Duration) -> Result<Dashboard> {
        Self::serve_with(addr, batch, DashboardOptions::default())
    }

    /// `serve` with [`DashboardOptions`].
    pub fn serve_with(
        addr: impl ToSocketAddrs,
        batch: crate::time::Duration,
        options: DashboardOptions,
    ) -> Result<Dashboard> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::invalid(format!("the dashboard cannot listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("the dashboard cannot listen: {e}")))?;
        if !addr.ip().is_loopback() && options.token.is_none() {
            tracing::warn!(
                "the dashboard on {addr} is reachable beyond this machine without a token; see DashboardOptions::token"
            );
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            contexts: Mutex::new(Vec::new()),
            next_source: AtomicUsize::new(0),
            history: Mutex::new(History::new(batch)),
            sections: Mutex::new(Vec::new()),
            feeds: Feeds::default(),
            watchers: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            stop_tx,
            connections: AtomicUsize::new(0),
            websockets: AtomicUsize::new(0),
        });
        let server = shared.clone();
        std::thread::Builder::new()
            .name("dstream-dashboard".into())
            .spawn(move || {
                if let Err(e) = http::run(listener, server, options, stop_rx) {
                    tracing::error!("the dashboard on {addr} stopped: {e}");
                }
            })
            .map_err(|e| Error::invalid(format!("the dashboard cannot start a thread: {e}")))?;
        tracing::info!("dashboard on http://{addr}/");
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
        self.handle.shared.stop();
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}
