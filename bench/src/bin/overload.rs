//! Overload (issue 24 point 2): a socket sender faster than the pipeline, and what it does to
//! the process's memory and the batches' delay, then how soon the delay recovers once the
//! sender slows down. The pipeline is the hashtags job's (tags of tweet lines counted over a
//! 30 s window sliding every batch, inverse reduce, top 10), fed by `socket_text_stream`, the
//! public source, from a sender thread in this process pacing tweet lines over loopback TCP.
//!
//! With `--work-us N`, each line also costs N µs of CPU, standing for a heavier pipeline: the
//! socket source takes at most 100,000 lines a batch, so without it the source, not the
//! pipeline, is what an unpaced sender overloads.
//!
//! 1. Capacity: the sender runs unpaced for `--probe` seconds; the lines processed per second
//!    are what the pipeline sustains (`C`).
//! 2. For each factor of `--factors` (default 2 and 10): `--seconds` (120) at factor x `C`,
//!    sampling RSS and the last batch's scheduling delay every second, then the sender at half
//!    of `C` until the scheduling delay is back under one batch interval (the recovery time).
//!
//! ```text
//! cargo run --release -p dstream-bench --bin overload -- [--seconds 120] [--factors 2,10] [--work-us 100]
//! ```

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;
use dstream::{BatchInfo, StreamingListener};
use dstream_bench::tweet_line;

/// Overload figures of the socket source (results in BENCHMARKS.md).
#[derive(clap::Parser, Debug)]
#[command(name = "overload")]
struct Args {
    /// Seconds of each overload phase
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds of the unpaced run that measures what the pipeline sustains
    #[arg(long, default_value_t = 20)]
    probe: u64,
    /// Overload factors, times what the pipeline sustains
    #[arg(long, value_delimiter = ',', default_value = "2,10")]
    factors: Vec<f64>,
    /// Batches generated and waiting for processing, at most (the context's default is 4)
    #[arg(long = "max-queued-batches")]
    max_queued_batches: Option<usize>,
    /// CPU work per line, in microseconds, standing for a heavier pipeline (parsing, lookups):
    /// the socket source takes at most 100,000 lines a batch, so without it the source, not
    /// the pipeline, is what is overloaded
    #[arg(long = "work-us", default_value_t = 0)]
    work_us: u64,
}

/// Spins for `us` microseconds (the `--work-us` of one line).
fn work(us: u64) {
    if us == 0 {
        return;
    }
    let end = Instant::now() + StdDuration::from_micros(us);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split(' ').nth(1).and_then(|p| p.parse::<f64>().ok()))
        .map_or(f64::NAN, |pages| pages * 4096.0 / (1 << 20) as f64)
}

/// The sender: tweet lines to the first client, at `rate` lines a second (0: unpaced).
struct Sender {
    rate: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    fn start(listener: TcpListener) -> Sender {
        let rate = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (rate.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("the pipeline connects");
            conn.set_write_timeout(Some(StdDuration::from_millis(100)))
                .expect("a write timeout");
            let lines: Vec<String> = (0..100_000).map(|i| tweet_line(i) + "\n").collect();
            let (mut i, mut budget, mut last) = (0usize, 0.0f64, Instant::now());
            while !st.load(Ordering::SeqCst) {
                let rate = r.load(Ordering::SeqCst);
                let n = if rate == 0 {
                    1000
                } else {
                    let now = Instant::now();
                    budget = (budget + now.duration_since(last).as_secs_f64() * rate as f64)
                        .min(rate as f64);
                    last = now;
                    if budget < 1.0 {
                        std::thread::sleep(StdDuration::from_millis(1));
                        continue;
                    }
                    (budget as usize).min(1000)
                };
                let mut chunk = String::new();
                for _ in 0..n {
                    chunk.push_str(&lines[i % lines.len()]);
                    i += 1;
                }
                // Blocks while the pipeline does not read (TCP's backpressure).
                let mut rest = chunk.as_bytes();
                while !rest.is_empty() && !st.load(Ordering::SeqCst) {
                    match conn.write(rest) {
                        Ok(w) => rest = &rest[w..],
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
                budget -= n as f64;
                s.fetch_add(n as u64, Ordering::SeqCst);
            }
        });
        Sender { rate, sent, stop }
    }
}

/// The last completed batch's time and scheduling delay (ms).
#[derive(Default)]
struct Delay(Mutex<(i64, i64)>);

impl StreamingListener for Delay {
    fn on_batch_completed(&self, info: &BatchInfo) {
        if let Some(d) = info.scheduling_delay() {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
                (info.batch_time.millis(), d.millis());
        }
    }
}

impl Delay {
    fn now_ms(&self) -> i64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

fn main() -> Result<(), Error> {
    let args = <Args as clap::Parser>::parse();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let sender = Sender::start(listener);
    let mut b = StreamingContext::builder(Seconds(1))
        .temporary_checkpoint()
        .stop_gracefully_on_signal(false);
    if let Some(n) = args.max_queued_batches {
        b = b.max_queued_batches(n);
    }
    let ssc = b.build()?;
    let delay = Arc::new(Delay::default());
    ssc.add_streaming_listener(delay.clone());
    let processed = Arc::new(AtomicU64::new(0));
    let p = processed.clone();
    let lines = ssc.socket_text_stream("127.0.0.1", port);
    lines.count().foreach_batch(move |b, _| {
        p.fetch_add(
            b.collect().first().copied().unwrap_or(0) as u64,
            Ordering::SeqCst,
        );
    })?;
    let work_us = args.work_us;
    lines
        .flat_map(move |l: String| {
            work(work_us);
            l.split(' ')
                .filter(|w| w.starts_with('#'))
                .map(|w| (w.to_string(), 1i64))
                .collect::<Vec<_>>()
        })
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            Seconds(30),
            Seconds(1),
            HashPartitioner::new(2)?,
            |kv| kv.1 > 0,
        )
        .foreach_batch(|b, _| {
            let mut top = b.collect();
            top.sort_by_key(|x| std::cmp::Reverse(x.1));
            top.truncate(10);
        })?;
    ssc.start()?;
    let rss_start = rss_mib();

    // 1. What the pipeline sustains: the sender unpaced, the lines processed from 5 s on.
    sender.rate.store(0, Ordering::SeqCst);
    std::thread::sleep(StdDuration::from_secs(5));
    let (from, at) = (processed.load(Ordering::SeqCst), Instant::now());
    std::thread::sleep(StdDuration::from_secs(args.probe.max(6) - 5));
    let capacity = (processed.load(Ordering::SeqCst) - from) as f64 / at.elapsed().as_secs_f64();
    println!(
        "capacity: {capacity:.0} lines/s (processed with the sender unpaced, {} s, {} us of work a line); RSS at start {rss_start:.0} MiB, after the probe {:.0} MiB",
        args.probe,
        args.work_us,
        rss_mib()
    );
    let recover = |what: &str| -> f64 {
        sender.rate.store((capacity / 2.0) as u64, Ordering::SeqCst);
        let started = Instant::now();
        while delay.now_ms() >= 1000 && started.elapsed() < StdDuration::from_secs(600) {
            std::thread::sleep(StdDuration::from_millis(100));
        }
        let took = started.elapsed().as_secs_f64();
        println!(
            "  {what}: the sender at half the capacity, the scheduling delay under one interval after {took:.1} s"
        );
        took
    };
    recover("after the probe");

    // 2. Each overload factor, then the recovery.
    for f in &args.factors {
        let rate = (capacity * f) as u64;
        sender.rate.store(rate, Ordering::SeqCst);
        let (sent0, done0) = (
            sender.sent.load(Ordering::SeqCst),
            processed.load(Ordering::SeqCst),
        );
        let started = Instant::now();
        let (mut max_rss, mut max_delay) = (0.0f64, 0i64);
        let mut samples = Vec::new();
        while started.elapsed() < StdDuration::from_secs(args.seconds) {
            std::thread::sleep(StdDuration::from_secs(1));
            let (rss, d) = (rss_mib(), delay.now_ms());
            max_rss = max_rss.max(rss);
            max_delay = max_delay.max(d);
            samples.push((started.elapsed().as_secs(), rss, d));
        }
        let secs = started.elapsed().as_secs_f64();
        let sent = sender.sent.load(Ordering::SeqCst) - sent0;
        let done = processed.load(Ordering::SeqCst) - done0;
        println!(
            "{f}x overload, the sender asked for {rate} lines/s for {} s: it got {:.0} lines/s through, {:.0} processed; RSS max {max_rss:.0} MiB (at 10 s {:.0}, 60 s {:.0}, end {:.0}); scheduling delay max {:.1} s, at the end {:.1} s",
            args.seconds,
            sent as f64 / secs,
            done as f64 / secs,
            samples.get(9).map_or(f64::NAN, |s| s.1),
            samples.get(59).map_or(f64::NAN, |s| s.1),
            samples.last().map_or(f64::NAN, |s| s.1),
            max_delay as f64 / 1000.0,
            samples.last().map_or(0, |s| s.2) as f64 / 1000.0,
        );
        recover(&format!("after {f}x"));
    }
    sender.stop.store(true, Ordering::SeqCst);
    let stopped = Instant::now();
    let graceful = ssc.stop_gracefully_within(StdDuration::from_secs(10));
    println!(
        "stopped in {:.1} s (graceful throughout: {graceful})",
        stopped.elapsed().as_secs_f64()
    );
    Ok(())
}
