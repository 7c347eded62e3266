//! Spark's `socketTextStream`: lines of UTF-8 text read from a TCP server. The receiver
//! reconnects with exponential backoff when the connection fails or closes, and logs where and
//! why, so a restarted upstream server is picked up again.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration as StdDuration;

use super::receiver::ReceiverHandle;
use crate::context::StreamingContext;
use crate::dstream::DStream;

/// Default receiver buffer of socket streams, in lines.
const SOCKET_BUFFER_LINES: usize = 100_000;
const FIRST_BACKOFF: StdDuration = StdDuration::from_millis(100);
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(5);

fn sleep_unless_stopped(h: &ReceiverHandle<String>, d: StdDuration) {
    let end = std::time::Instant::now() + d;
    while !h.is_stopped() && std::time::Instant::now() < end {
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

fn receive(host: String, port: u16, h: ReceiverHandle<String>) {
    let addr = format!("{host}:{port}");
    let mut backoff = FIRST_BACKOFF;
    while !h.is_stopped() {
        let stream = addr.to_socket_addrs().and_then(|addrs| {
            // `localhost` may resolve to ::1 first while the server listens on 127.0.0.1 only.
            let mut last =
                std::io::Error::new(ErrorKind::NotFound, "the name resolves to no address");
            for a in addrs {
                match TcpStream::connect_timeout(&a, StdDuration::from_secs(5)) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = e,
                }
            }
            Err(last)
        });
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "socketTextStream: cannot connect to {addr}: {e}; retrying in {backoff:?}"
                );
                sleep_unless_stopped(&h, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        if let Err(e) = stream.set_read_timeout(Some(StdDuration::from_millis(100))) {
            log::warn!("socketTextStream: cannot set a read timeout on {addr}: {e}");
        }
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            if h.is_stopped() {
                return;
            }
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => {
                    if !line.is_empty() && !h.push(decode(&addr, &line)) {
                        return;
                    }
                    log::warn!("socketTextStream: {addr} closed the connection; reconnecting");
                    break;
                }
                Ok(_) if line.last() == Some(&b'\n') => {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if !h.push(decode(&addr, &line)) {
                        return;
                    }
                    line.clear();
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    log::warn!("socketTextStream: error reading from {addr}: {e}; reconnecting");
                    break;
                }
            }
        }
        sleep_unless_stopped(&h, backoff);
    }
}

fn decode(addr: &str, bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) => {
            log::warn!(
                "socketTextStream: a line from {addr} is not UTF-8 (at byte {}); invalid bytes replaced by U+FFFD",
                e.valid_up_to()
            );
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

impl StreamingContext {
    /// Lines of text from a TCP server at `host:port` (Spark's `socketTextStream`), one record
    /// per `\n`-terminated line. Reconnects with backoff (100 ms doubling to 5 s) when the
    /// server is down or closes the connection; holds at most 100,000 unread lines, after which
    /// reading pauses (TCP pushes back on the sender).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DStream<String> {
        let host = host.to_string();
        self.receiver_stream(
            &format!("socketTextStream({host}:{port})"),
            SOCKET_BUFFER_LINES,
            move |h| receive(host, port, h),
        )
    }
}
