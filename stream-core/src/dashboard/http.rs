//! Just enough HTTP/1.1 for the dashboard: one GET per connection, and the WebSocket upgrade.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::WebSocket;
use tungstenite::protocol::Role;

use super::Shared;
use super::feed::Client;

/// The page, its script and its style: embedded, no build step, nothing fetched.
const PAGE: &str = include_str!("page.html");

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// Bytes read past the head (a WebSocket client's first frames).
    rest: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request head; `Err` carries the status to answer.
fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| 400u16)?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = match (first.next(), first.next()) {
        (Some(m), Some(t)) if !m.is_empty() && t.starts_with('/') => (m, t),
        _ => return Err(400),
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let path = target.split(['?', '#']).next().unwrap_or("/");
    Ok(Request {
        method: method.to_string(),
        path: decode_path(path),
        headers,
        rest: buf[end + 4..].to_vec(),
    })
}

/// Answers one connection.
pub(super) fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err(status) => return respond(stream, status, "text/plain", b"bad request\n"),
    };
    if shared.is_stopped() {
        return respond(stream, 503, "text/plain", b"the dashboard is stopping\n");
    }
    if req.method != "GET" {
        return respond(stream, 405, "text/plain", b"only GET\n");
    }
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    match req.path.as_str() {
        "/" | "/index.html" => respond(stream, 200, "text/html; charset=utf-8", PAGE.as_bytes()),
        "/api/status" => respond(
            stream,
            200,
            "application/json",
            shared.status_json().as_bytes(),
        ),
        "/metrics" => respond(
            stream,
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.prometheus().as_bytes(),
        ),
        "/ws" if upgrade => {
            // Subscribed before the handshake completes, so that a client sees every message
            // sent after its connection is accepted (a failed handshake's client is dropped at
            // the next message).
            let (client, writer) = Client::new();
            // The status now first, then after every batch.
            client.offer(&shared.status_json());
            super::lock(&shared.watchers).push(client);
            if let Some(ws) = accept_websocket(stream, &req) {
                writer.run(ws, shared);
            }
        }
        path if path.starts_with("/feeds/") && upgrade => {
            let name = &path["/feeds/".len()..];
            if !shared.feeds.exists(name) {
                let known: Vec<String> = shared.feeds.stats().into_iter().map(|f| f.name).collect();
                let msg = format!("no feed {name:?}; feeds: {}\n", known.join(", "));
                return respond(stream, 404, "text/plain", msg.as_bytes());
            }
            let (client, writer) = Client::new();
            shared.feeds.subscribe(name, client);
            if let Some(ws) = accept_websocket(stream, &req) {
                writer.run(ws, shared);
            }
        }
        path if path == "/ws" || path.starts_with("/feeds/") => {
            respond(stream, 426, "text/plain", b"a WebSocket endpoint\n")
        }
        _ => respond(stream, 404, "text/plain", b"not found\n"),
    }
}

/// Completes the WebSocket handshake (RFC 6455) on `stream`.
fn accept_websocket(mut stream: TcpStream, req: &Request) -> Option<WebSocket<TcpStream>> {
    let Some(key) = req.header("sec-websocket-key") else {
        respond(stream, 400, "text/plain", b"no Sec-WebSocket-Key\n");
        return None;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).ok()?;
    Some(WebSocket::from_partially_read(
        stream,
        req.rest.clone(),
        Role::Server,
        None,
    ))
}

/// Writes a whole response and closes the connection.
pub(super) fn respond(mut stream: TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .and_then(|_| stream.flush());
}

/// Percent-decodes a path (invalid escapes are kept as they are).
fn decode_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn paths_round_trip() {
        assert_eq!(encode_path("top pages/x"), "top%20pages%2Fx");
        assert_eq!(decode_path("/feeds/top%20pages"), "/feeds/top pages");
        assert_eq!(decode_path("/a%zz"), "/a%zz");
    }
}
