//! Overload (issue 24 point 2): a socket sender far faster than the pipeline cannot grow the
//! process's memory, because at most `max_queued_batches` batches wait for processing and a
//! full receiver buffer stops reading the socket (TCP pushes back on the sender); and
//! `stop_gracefully_within` stops within its deadline however far processing is behind.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;

/// Lines of 100 bytes.
const LINE: usize = 100;

#[test]
fn a_sender_far_faster_than_processing_is_held_back_by_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (s, d) = (sent.clone(), done.clone());
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_write_timeout(Some(StdDuration::from_millis(200)))
            .unwrap();
        let line = format!("{}\n", "x".repeat(LINE - 1));
        let chunk = line.repeat(1000);
        while !d.load(Ordering::SeqCst) {
            match conn.write(chunk.as_bytes()) {
                Ok(n) => {
                    s.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    });

    let ssc = StreamingContext::builder(Milliseconds(100))
        .parallelism(2)
        .stop_gracefully_on_signal(false)
        .max_queued_batches(2)
        .build()
        .unwrap();
    let processed = Arc::new(AtomicU64::new(0));
    let p = processed.clone();
    // Each batch takes 300 ms, three intervals: processing sustains a third of the batches.
    ssc.socket_text_stream("127.0.0.1", port)
        .foreach_batch(move |b, _| {
            std::thread::sleep(StdDuration::from_millis(300));
            p.fetch_add(b.count() as u64, Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    let started = Instant::now();
    let mut worst = 0u64;
    while started.elapsed() < StdDuration::from_secs(6) {
        std::thread::sleep(StdDuration::from_millis(100));
        let ahead = sent.load(Ordering::SeqCst) / LINE as u64 - processed.load(Ordering::SeqCst);
        worst = worst.max(ahead);
    }
    let stopped = Instant::now();
    let graceful = ssc.stop_gracefully_within(StdDuration::from_millis(500));
    let stop_took = stopped.elapsed();
    done.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let (lines_sent, lines_processed) = (
        sent.load(Ordering::SeqCst) / LINE as u64,
        processed.load(Ordering::SeqCst),
    );
    eprintln!(
        "in 6 s: {lines_sent} lines sent, {lines_processed} processed, at most {worst} sent and not processed; stop within 500 ms took {stop_took:?} (graceful throughout: {graceful})"
    );
    // What is sent and not processed: at most the receiver's buffer (100,000 lines, 64 MiB),
    // the batches captured (the one running, 2 queued, 1 the generator holds) and the kernel's
    // socket buffers (a few MiB each way).
    let bound = 5 * 100_000 + (16 << 20) / LINE as u64;
    assert!(
        worst <= bound,
        "{worst} lines sent and not processed, more than {bound}"
    );
    assert!(lines_processed > 0);
    assert!(
        stop_took < StdDuration::from_millis(500 + 300 + 500),
        "the stop took {stop_took:?}"
    );
}

#[test]
fn a_graceful_stop_with_a_deadline_drops_what_it_cannot_finish() {
    let ssc = StreamingContext::builder(Milliseconds(50))
        .parallelism(1)
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let q = Queue::new();
    ssc.queue_stream(&q, true)
        .foreach_batch(move |_: Batch<i32>, _| {
            std::thread::sleep(StdDuration::from_millis(200));
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    ssc.start().unwrap();
    // Batches pile up: one every 50 ms, each 200 ms long.
    std::thread::sleep(StdDuration::from_millis(600));
    let started = Instant::now();
    let graceful = ssc.stop_gracefully_within(StdDuration::from_millis(100));
    let took = started.elapsed();
    assert!(!graceful, "batches were queued");
    assert!(took < StdDuration::from_millis(100 + 200 + 300), "{took:?}");
    assert!(ran.load(Ordering::SeqCst) >= 2);
    assert_eq!(ssc.state(), dstream::StreamingContextState::Stopped);
}

/// The socket's buffer is settable: with 1,000 lines at most, a batch gets at most 1,000.
#[test]
fn a_smaller_socket_buffer_caps_each_batch() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let _ = conn.write_all("x\n".repeat(20_000).as_bytes());
    });
    let ssc = StreamingContext::builder(Milliseconds(100))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = sizes.clone();
    ssc.socket_text_stream_bounded("127.0.0.1", port, 1000, 64 << 20)
        .foreach_batch(move |b, _| s.lock().unwrap().push(b.count()))
        .unwrap();
    ssc.start().unwrap();
    let started = Instant::now();
    while sizes.lock().unwrap().iter().sum::<usize>() < 20_000 {
        assert!(
            started.elapsed() < StdDuration::from_secs(20),
            "{:?}",
            sizes.lock().unwrap()
        );
        std::thread::sleep(StdDuration::from_millis(20));
    }
    ssc.stop();
    sender.join().unwrap();
    let sizes = sizes.lock().unwrap();
    assert!(sizes.iter().all(|n| *n <= 1000), "{sizes:?}");
}
