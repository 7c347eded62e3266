//! The dashboard's HTTP server: axum's router on hyper's HTTP/1.1, on a tokio runtime of its
//! own (one worker thread), with the limits a server on a shared machine needs: a deadline for
//! each request's head, one request per connection, a cap on connections and a separate one on
//! WebSocket clients (so that feeds never starve `/api/status` and `/metrics`), a small cap on
//! what a WebSocket client may send, Host and Origin checks against DNS rebinding and other
//! sites' pages, and an optional bearer token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use super::feed::{Client, Outgoing, Writer, with_missed};
use super::{DashboardOptions, Shared};

/// The page, its script and its style: embedded, no build step, nothing fetched.
const PAGE: &str = include_str!("page.html");

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// Connections open at once (idle ones close after the head deadline); more are closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// The largest message or frame a WebSocket client may send: clients only need control
/// frames (a close, a ping), so anything larger closes the connection.
pub(crate) const MAX_INBOUND: usize = 4096;

/// A message to a WebSocket client not written within this time closes it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server on `listener` until `stop` turns true.
pub(super) fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    options: DashboardOptions,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dstream-dashboard")
        .enable_all()
        .build()?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let guard = Arc::new(Guard::new(&options, local));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let router = router(shared.clone(), guard);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                conn = listener.accept() => {
                    let Ok((tcp, _)) = conn else { continue };
                    if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let service = TowerToHyperService::new(router.clone());
                    let (shared, head_timeout) = (shared.clone(), options.head_timeout);
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(head_timeout)
                            .max_buf_size(MAX_HEAD)
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await;
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    // Dropping the runtime ends the connections still open (their tasks are cancelled).
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

type App = (Arc<Shared>, Arc<Guard>);

fn router(shared: Arc<Shared>, guard: Arc<Guard>) -> Router {
    let app: App = (shared, guard.clone());
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .route("/ws", get(status_socket))
        .route("/feeds/{name}", get(feed_socket))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(guard, check))
        .with_state(app)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into(),
    )
        .into_response()
}

fn body(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    body("text/html; charset=utf-8", PAGE.to_string())
}

async fn status(State((shared, _)): State<App>) -> Response {
    body("application/json", shared.status_json())
}

async fn metrics(State((shared, _)): State<App>) -> Response {
    body(
        "text/plain; version=0.0.4; charset=utf-8",
        shared.prometheus(),
    )
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

async fn status_socket(State((shared, guard)): State<App>, ws: Upgrade) -> Response {
    let Ok(ws) = ws else {
        return text(StatusCode::UPGRADE_REQUIRED, "a WebSocket endpoint\n");
    };
    let Some(slot) = guard.websocket_slot(&shared) else {
        return too_many_websockets();
    };
    // Subscribed before the handshake completes, so that a client sees every message sent
    // after its connection is accepted: the status now first, then after every batch.
    let (client, writer) = Client::new();
    client.offer(&shared.status_json());
    super::lock(&shared.watchers).push(client);
    upgrade(ws, writer, shared, slot)
}

async fn feed_socket(
    State((shared, guard)): State<App>,
    Path(name): Path<String>,
    ws: Upgrade,
) -> Response {
    let Ok(ws) = ws else {
        return text(StatusCode::UPGRADE_REQUIRED, "a WebSocket endpoint\n");
    };
    if !shared.feeds.exists(&name) {
        let known: Vec<String> = shared.feeds.stats().into_iter().map(|f| f.name).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!("no feed {name:?}; feeds: {}\n", known.join(", ")),
        );
    }
    let Some(slot) = guard.websocket_slot(&shared) else {
        return too_many_websockets();
    };
    let (client, writer) = Client::new();
    shared.feeds.subscribe(&name, client);
    upgrade(ws, writer, shared, slot)
}

fn too_many_websockets() -> Response {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "too many WebSocket clients (at most {})\n",
            super::MAX_WEBSOCKETS
        ),
    )
}

fn upgrade(ws: WebSocketUpgrade, writer: Writer, shared: Arc<Shared>, slot: Slot) -> Response {
    ws.max_message_size(MAX_INBOUND)
        .max_frame_size(MAX_INBOUND)
        .on_upgrade(move |socket| async move {
            pump(socket, writer, &shared).await;
            drop(slot);
        })
}

/// Sends the client's queued messages until either side closes or the server stops; reads
/// what the client sends in between (pings are answered; a close or an over-long message
/// ends it).
async fn pump(mut socket: WebSocket, mut writer: Writer, shared: &Shared) {
    let mut stop = shared.stop_signal();
    while !*stop.borrow_and_update() {
        tokio::select! {
            out = writer.rx.recv() => match out {
                Some(Outgoing::Text(msg)) => {
                    let missed = writer.missed.swap(0, Ordering::Relaxed);
                    let msg = Message::text(with_missed(&msg, missed));
                    match tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
                Some(Outgoing::Close) | None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => {}
        }
    }
    writer.alive.store(false, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
}

/// A WebSocket client's place under the cap; freed when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The checks every request passes: Host, Origin, token.
pub(super) struct Guard {
    /// Hosts (names or addresses, without the port) requests may name; empty: any.
    hosts: Vec<String>,
    /// Origins besides the dashboard's own that may open its WebSockets and read it.
    origins: Vec<String>,
    token: Option<String>,
}

impl Guard {
    fn new(options: &DashboardOptions, local: SocketAddr) -> Guard {
        let mut hosts: Vec<String> = options
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        // Bound to loopback: only loopback names, whatever a DNS answer says.
        if local.ip().is_loopback() || !hosts.is_empty() {
            hosts.extend(["localhost".to_string(), "127.0.0.1".into(), "::1".into()]);
            hosts.push(local.ip().to_string());
        }
        Guard {
            hosts,
            origins: options
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            token: options.token.clone(),
        }
    }

    fn websocket_slot(&self, shared: &Arc<Shared>) -> Option<Slot> {
        if shared.websockets.fetch_add(1, Ordering::SeqCst) >= super::MAX_WEBSOCKETS {
            shared.websockets.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(shared.clone()))
    }

    /// Why `headers` and `query` may not be served, if they may not.
    fn refuse(&self, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = host_name(host);
        if !self.hosts.is_empty() && !self.hosts.contains(&name) {
            return Some(text(
                StatusCode::FORBIDDEN,
                format!(
                    "host {host:?} is not this dashboard's (DNS rebinding?); allow it with DashboardOptions::allow_host\n"
                ),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            let own = [
                format!("http://{}", host.to_ascii_lowercase()),
                format!("https://{}", host.to_ascii_lowercase()),
            ];
            if !own.contains(&origin) && !self.origins.contains(&origin) {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "origin {origin:?} may not use this dashboard; allow it with DashboardOptions::allow_origin\n"
                    ),
                ));
            }
        }
        if let Some(token) = &self.token {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|a| a.to_str().ok())
                .and_then(|a| a.strip_prefix("Bearer "));
            let in_query = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|kv| kv.strip_prefix("token="));
            let given = bearer.or(in_query).unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return Some(r);
            }
        }
        None
    }
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.refuse(request.headers(), request.uri().query()) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// The host of a `Host` header, without its port or an IPv6 address's brackets.
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Percent-encodes a path segment.
pub(super) fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_ports() {
        assert_eq!(host_name("LocalHost:4040"), "localhost");
        assert_eq!(host_name("[::1]:4040"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode_path("top pages/x"), "top%20pages%2Fx");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
