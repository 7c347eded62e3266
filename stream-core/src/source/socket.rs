//! Spark's `socketTextStream`: lines of UTF-8 text read from a TCP server. The receiver
//! reconnects with exponential backoff when the connection fails or closes, and logs where and
//! why, so a restarted upstream server is picked up again.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use super::TextRecord;
use super::receiver::ReceiverHandle;
use crate::context::StreamingContext;
use crate::dstream::DStream;

/// Default receiver buffer of socket streams, in lines.
const SOCKET_BUFFER_LINES: usize = 100_000;
/// Default receiver buffer of socket streams, in bytes of lines (64 MiB).
const SOCKET_BUFFER_BYTES: usize = 64 << 20;
const FIRST_BACKOFF: StdDuration = StdDuration::from_millis(100);
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(5);
/// The longest line read, in bytes (1 MiB): a longer one is dropped, counted and warned of,
/// never held whole (a sender without newlines cannot grow the receiver's memory).
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;
/// Repeated warnings of one kind (lines not UTF-8, lines too long) at most this often.
const WARN_EVERY: StdDuration = StdDuration::from_secs(10);

fn sleep_unless_stopped<L: TextRecord>(h: &ReceiverHandle<L>, d: StdDuration) {
    let end = std::time::Instant::now() + d;
    while !h.is_stopped() && std::time::Instant::now() < end {
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

/// Hands on a line (its bytes counted against the buffer's byte limit), or gathers it with
/// the others of the same read; false once stopping.
fn push_line<L: TextRecord>(
    h: &ReceiverHandle<L>,
    gathered: &mut L::Gathered,
    addr: &str,
    line: &[u8],
    warn: &mut Warnings,
) -> bool {
    match L::gather(gathered, decode(addr, line, warn)) {
        Some(record) => h.push_sized(record, line.len()),
        None => true,
    }
}

/// Hands on the lines gathered; false once stopping.
fn push_gathered<L: TextRecord>(h: &ReceiverHandle<L>, gathered: &mut L::Gathered) -> bool {
    L::drain(gathered).into_iter().all(|line| {
        let len = line_len(&line);
        h.push_sized(line, len)
    })
}

/// A record's bytes, for the receiver's byte limit.
fn line_len<L: TextRecord>(line: &L) -> usize {
    line.text().len()
}

/// What a socket source counts, read by `/metrics`: warnings of each kind (a line over 1 MiB
/// is dropped with its warning), and those not logged (rate-limited repeats).
#[derive(Default)]
struct SocketCounts {
    total: [AtomicU64; 2],
    suppressed: Arc<AtomicU64>,
}

fn receive<L: TextRecord>(
    host: String,
    port: u16,
    h: ReceiverHandle<L>,
    counts: Arc<SocketCounts>,
) {
    let addr = format!("{host}:{port}");
    // The lines of one read, handed on together (when `L` gathers them) once it is used up.
    let mut gathered = L::Gathered::default();
    let mut warn = Warnings::new(counts);
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
                tracing::warn!(
                    "socketTextStream: cannot connect to {addr}: {e}; retrying in {backoff:?}"
                );
                sleep_unless_stopped(&h, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        if let Err(e) = stream.set_read_timeout(Some(StdDuration::from_millis(100))) {
            tracing::warn!("socketTextStream: cannot set a read timeout on {addr}: {e}");
        }
        let mut reader = BufReader::with_capacity(64 << 10, stream);
        let mut line = Vec::new();
        // Skipping the rest of a line longer than `MAX_LINE_BYTES`.
        let mut skipping = false;
        loop {
            if h.is_stopped() {
                let _ = push_gathered(&h, &mut gathered);
                return;
            }
            let (used, ended) = match reader.fill_buf() {
                Ok([]) => {
                    // A clean close: a last line without its `\n` is a record, as Spark's
                    // `readLine` gives it.
                    if !line.is_empty()
                        && !skipping
                        && !push_line(&h, &mut gathered, &addr, &line, &mut warn)
                    {
                        return;
                    }
                    if !push_gathered(&h, &mut gathered) {
                        return;
                    }
                    tracing::warn!("socketTextStream: {addr} closed the connection; reconnecting");
                    break;
                }
                Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        take(&mut line, &buf[..i], &mut skipping);
                        (i + 1, true)
                    }
                    None => {
                        take(&mut line, buf, &mut skipping);
                        (buf.len(), false)
                    }
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // A reset or another failure: an unfinished line is dropped (Spark's
                    // receiver loses it the same way), and said.
                    let fragment = if line.is_empty() {
                        String::new()
                    } else {
                        format!(" (an unfinished line of {} bytes dropped)", line.len())
                    };
                    tracing::warn!(
                        "socketTextStream: error reading from {addr}: {e}{fragment}; reconnecting"
                    );
                    if !push_gathered(&h, &mut gathered) {
                        return;
                    }
                    break;
                }
            };
            reader.consume(used);
            if line.len() > MAX_LINE_BYTES && !skipping {
                skipping = true;
                line.clear();
            }
            if ended {
                if skipping {
                    warn.note(
                        Warning::TooLong,
                        &format!(
                            "socketTextStream: a line from {addr} is longer than {MAX_LINE_BYTES} bytes; dropped"
                        ),
                    );
                    skipping = false;
                } else {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if !push_line(&h, &mut gathered, &addr, &line, &mut warn) {
                        return;
                    }
                }
                line.clear();
            }
            // The read is used up: what it gathered goes on before the next read waits.
            if reader.buffer().is_empty() && !push_gathered(&h, &mut gathered) {
                return;
            }
        }
        sleep_unless_stopped(&h, backoff);
    }
}

/// Appends `bytes` to the line being read, unless its rest is being skipped; never beyond one
/// byte over `MAX_LINE_BYTES` (that byte marks it too long).
fn take(line: &mut Vec<u8>, bytes: &[u8], skipping: &mut bool) {
    if *skipping {
        return;
    }
    let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The kinds of repeated warnings, each rate-limited on its own.
#[derive(Clone, Copy)]
enum Warning {
    NotUtf8 = 0,
    TooLong = 1,
}

/// Repeated warnings at most once per `WARN_EVERY` per kind, each with how many like it were
/// not logged since, so 1 MiB of garbage is a line or two of log, not thousands, and nothing
/// goes uncounted.
struct Warnings {
    last: [Option<std::time::Instant>; 2],
    /// Of each kind, the ones not logged since the last logged.
    suppressed: [u64; 2],
    /// The totals, shared with the source's metrics.
    counts: Arc<SocketCounts>,
}

impl Warnings {
    fn new(counts: Arc<SocketCounts>) -> Self {
        Warnings {
            last: [None; 2],
            suppressed: [0; 2],
            counts,
        }
    }

    /// Counts one warning of `kind`; logs `message` unless one of its kind was logged less
    /// than `WARN_EVERY` ago. Returns whether it logged.
    fn note(&mut self, kind: Warning, message: &str) -> bool {
        self.note_at(kind, message, std::time::Instant::now())
    }

    fn note_at(&mut self, kind: Warning, message: &str, now: std::time::Instant) -> bool {
        let k = kind as usize;
        let total = self.counts.total[k].fetch_add(1, Ordering::Relaxed) + 1;
        if self.last[k].is_some_and(|l| now.duration_since(l) < WARN_EVERY) {
            self.suppressed[k] += 1;
            self.counts.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let more = std::mem::take(&mut self.suppressed[k]);
        if more > 0 {
            tracing::warn!(
                "{message} ({more} more like it in the last {WARN_EVERY:?}, {total} in all)"
            );
        } else {
            tracing::warn!("{message}");
        }
        self.last[k] = Some(now);
        true
    }
}

fn decode<'a>(addr: &str, bytes: &'a [u8], warn: &mut Warnings) -> std::borrow::Cow<'a, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(e) => {
            warn.note(
                Warning::NotUtf8,
                &format!(
                    "socketTextStream: a line from {addr} is not UTF-8 (at byte {}); invalid bytes replaced by U+FFFD",
                    e.valid_up_to()
                ),
            );
            String::from_utf8_lossy(bytes)
        }
    }
}

impl StreamingContext {
    /// Lines of text from a TCP server at `host:port` (Spark's `socketTextStream`), one record
    /// per `\n`-terminated line (a `\r` before it is dropped). Reconnects with backoff (100 ms
    /// doubling to 5 s) when the server is down or closes the connection; holds at most 100,000
    /// unread lines or 64 MiB of them, after which reading pauses (TCP pushes back on the
    /// sender) until a batch takes them; under overload no batch takes them while
    /// `max_queued_batches` wait, so memory stays bounded.
    ///
    /// As Spark's `readLine`: a last line without its `\n` when the server closes the
    /// connection is a record; one cut by a reset is dropped, with a warning. A line longer
    /// than 1 MiB is dropped and counted, never held; bytes that are not UTF-8 are replaced by
    /// U+FFFD. Warnings of those repeat at most every 10 s, with a count of the ones not
    /// logged.
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DStream<String> {
        self.socket_text_stream_bounded(host, port, SOCKET_BUFFER_LINES, SOCKET_BUFFER_BYTES)
    }

    /// `socket_text_stream` whose unread lines are at most `max_lines` and `max_bytes` (the
    /// defaults are 100,000 and 64 MiB). A batch takes at most what the buffer holds, so
    /// `max_lines` also caps the lines a batch gets from the socket.
    pub fn socket_text_stream_bounded(
        &self,
        host: &str,
        port: u16,
        max_lines: usize,
        max_bytes: usize,
    ) -> DStream<String> {
        self.socket_text_stream_of(host, port, max_lines, max_bytes)
    }

    /// `socket_text_stream_bounded` whose lines are `L`: `String`, or
    /// [`Text`](crate::text::Text): the lines of one read from the socket (up to 64 KiB) share
    /// one buffer, with no allocation per line (see `Text` for when that is the better
    /// choice).
    pub fn socket_text_stream_of<L: TextRecord>(
        &self,
        host: &str,
        port: u16,
        max_lines: usize,
        max_bytes: usize,
    ) -> DStream<L> {
        let host = host.to_string();
        let name = format!("socketTextStream({host}:{port})");
        let counts = Arc::new(SocketCounts::default());
        let c = counts.clone();
        self.add_record_error_status({
            let name = name.clone();
            move || {
                vec![crate::poison::RecordErrorCount {
                    operator: format!("{name} lines over 1 MiB"),
                    skipped: c.total[Warning::TooLong as usize].load(Ordering::Relaxed),
                    dead_lettered: 0,
                }]
            }
        });
        let suppressed = counts.suppressed.clone();
        self.receiver_with(
            &name,
            max_lines,
            max_bytes,
            Some(suppressed),
            Box::new(move |h| receive(host, port, h, counts)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_warnings_are_logged_once_per_period_and_counted() {
        let mut w = Warnings::new(Arc::default());
        let t0 = std::time::Instant::now();
        assert!(w.note_at(Warning::NotUtf8, "bad", t0));
        for i in 1..1000 {
            assert!(!w.note_at(Warning::NotUtf8, "bad", t0 + StdDuration::from_millis(i)));
        }
        // Another kind is limited on its own.
        assert!(w.note_at(Warning::TooLong, "long", t0));
        assert!(w.note_at(Warning::NotUtf8, "bad", t0 + WARN_EVERY));
        let totals = w.counts.total.each_ref().map(|t| t.load(Ordering::Relaxed));
        assert_eq!(totals, [1001, 1]);
        assert_eq!(w.suppressed, [0, 0]);
        assert_eq!(w.counts.suppressed.load(Ordering::Relaxed), 999);
    }

    #[test]
    fn a_line_is_never_held_beyond_the_cap() {
        let mut line = Vec::new();
        let mut skipping = false;
        for _ in 0..3 {
            take(
                &mut line,
                &vec![b'x'; MAX_LINE_BYTES / 2 + 7],
                &mut skipping,
            );
        }
        assert_eq!(line.len(), MAX_LINE_BYTES + 1);
        skipping = true;
        line.clear();
        take(&mut line, b"more", &mut skipping);
        assert!(line.is_empty());
    }
}
