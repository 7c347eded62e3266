//! The dashboard's server against other local processes and web pages (issue 24 point 6): idle
//! WebSocket clients and slow-loris connections cannot starve `/api/status` and `/metrics`, a
//! slow head is cut off, a WebSocket client cannot make the server buffer a large message,
//! requests naming another host (DNS rebinding) or coming from another site's page are
//! refused, and a token, when set, is required.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use stream_core::testing::TestContext;
use stream_core::{Dashboard, DashboardOptions};

/// Sends `head` (a request head without its final blank line) and returns the status code and
/// body of the answer.
fn request(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{head}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (status, body)
}

fn get(d: &Dashboard, path: &str) -> (u16, String) {
    request(d.addr(), &format!("GET {path} HTTP/1.1\r\nHost: localhost"))
}

/// A WebSocket upgrade request with `extra` headers; the status of the answer.
fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        addr.port()
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn dashboard(options: DashboardOptions) -> (TestContext, Dashboard) {
    let tc = TestContext::new();
    let d = tc
        .context()
        .serve_dashboard_with("127.0.0.1:0", options)
        .unwrap();
    (tc, d)
}

#[test]
fn idle_websockets_and_slow_loris_connections_do_not_starve_status_and_metrics() {
    let (_tc, d) = dashboard(DashboardOptions::new());
    // 64 WebSocket clients that never read, and 64 connections that send half a head.
    let idle: Vec<_> = (0..64)
        .map(|_| tungstenite::connect(format!("ws://{}/ws", d.addr())).unwrap())
        .collect();
    let loris: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr()).unwrap();
            s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    for path in ["/api/status", "/metrics", "/"] {
        let started = Instant::now();
        let (code, _) = get(&d, path);
        assert_eq!(code, 200, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // The 65th WebSocket client is refused, with a reason; plain requests still go.
    assert_eq!(upgrade(d.addr(), "/ws", ""), 503);
    assert_eq!(get(&d, "/api/status").0, 200);
    eprintln!(
        "with {} idle WebSocket clients and {} slow-loris connections: /api/status, /metrics and / answered 200 each",
        idle.len(),
        loris.len()
    );
}

#[test]
fn a_slow_head_is_cut_off_at_the_head_timeout() {
    let (_tc, d) = dashboard(DashboardOptions::new().head_timeout(Duration::from_secs(1)));
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    eprintln!(
        "a head unfinished after the 1 s head timeout: closed after {took:?}, answer {:?}",
        String::from_utf8_lossy(&rest).lines().next()
    );
}

#[test]
fn a_websocket_client_cannot_make_the_server_buffer_a_large_message() {
    let (_tc, d) = dashboard(DashboardOptions::new());
    let before = rss_bytes();
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (ws, _) = tungstenite::connect(format!("ws://{}/ws", d.addr())).unwrap();
        let tungstenite::stream::MaybeTlsStream::Plain(mut s) = ws.into_inner() else {
            unreachable!("plain TCP")
        };
        // A masked binary frame announcing 64 MiB, then 1 MiB of it.
        let mut frame = vec![0x82u8, 0x80 | 127];
        frame.extend_from_slice(&(64u64 << 20).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        s.write_all(&frame).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        for _ in 0..16 {
            if s.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        clients.push((s, sent));
    }
    // Each connection is closed by the server.
    for (s, _) in &mut clients {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break true,
                // The status message and the close frame come first.
                Ok(_) => continue,
            }
        };
        assert!(closed);
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "32 WebSocket clients each sending a frame of 64 MiB ({} KiB of it written before the server closed them): RSS grew {} KiB",
        clients.iter().map(|c| c.1).sum::<usize>() / 1024,
        grown / 1024
    );
    assert!(grown < 32 << 20, "RSS grew {} MiB", grown >> 20);
    assert_eq!(get(&d, "/api/status").0, 200);
}

#[test]
fn other_hosts_and_other_sites_pages_are_refused() {
    let (_tc, d) = dashboard(DashboardOptions::new().allow_origin("https://grafana.example.com"));
    let a = d.addr();
    // DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
    let (code, body) = request(a, "GET /api/status HTTP/1.1\r\nHost: evil.example:4040");
    assert_eq!(code, 403);
    assert!(body.contains("is not this dashboard's"), "{body}");
    for host in ["localhost", "127.0.0.1:4040", "[::1]:4040", "LOCALHOST:1"] {
        let (code, _) = request(a, &format!("GET /metrics HTTP/1.1\r\nHost: {host}"));
        assert_eq!(code, 200, "{host}");
    }
    // Another site's page opening a feed or the status WebSocket.
    assert_eq!(upgrade(a, "/ws", "Origin: http://evil.example\r\n"), 403);
    let own = format!("Origin: http://127.0.0.1:{}\r\n", a.port());
    assert_eq!(upgrade(a, "/ws", &own), 101);
    assert_eq!(
        upgrade(a, "/ws", "Origin: https://grafana.example.com\r\n"),
        101
    );
    let (code, _) = request(
        a,
        "GET /api/status HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example",
    );
    assert_eq!(code, 403);
}

#[test]
fn a_token_when_set_is_required_of_every_request() {
    let (_tc, d) = dashboard(DashboardOptions::new().token("s3cret"));
    let a = d.addr();
    let (code, body) = get(&d, "/api/status");
    assert_eq!(code, 401);
    assert!(body.contains("needs its token"), "{body}");
    assert_eq!(get(&d, "/?token=wrong").0, 401);
    assert_eq!(
        request(
            a,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret"
        )
        .0,
        200
    );
    // The page is opened with the token in its URL, and passes it on to its WebSocket.
    let (code, page) = get(&d, "/?token=s3cret");
    assert_eq!(code, 200);
    assert!(
        page.contains("/ws${location.search}"),
        "the page passes its query on"
    );
    assert_eq!(upgrade(a, "/ws?token=s3cret", ""), 101);
    assert_eq!(upgrade(a, "/ws", ""), 401);
}
