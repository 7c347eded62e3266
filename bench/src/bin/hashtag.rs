//! The hashtag job of the Spark comparison: tweet lines (10 words, one in ten a `#tag` over
//! 1,000 Zipf-skewed tags) -> words (`dstream::text::split(line, ' ')`, the pieces of
//! `line.split(' ')`, as Spark's job takes `_.split(" ")`) -> hashtags -> (tag, 1) ->
//! incremental 30 s window sliding every batch (reduce `+`, inverse `-`, keys at 0 dropped) ->
//! top 10 by count, input from pre-built in-memory batches. Finds the maximum sustained rate as
//! `stateless` does; each probe first runs 35 s of batches, for the window to fill and keys to
//! leave it.
//!
//! ```text
//! cargo run --release -p dstream-bench --bin hashtag -- [--reps 3] [--start N] [--max N]
//!     [--batch-ms 1000] [--judge throughput|latency] [--warmup N] [--batches N]
//! cargo run --release -p dstream-bench --bin hashtag -- --rate 2000000       # one probe
//! cargo run --release -p dstream-bench --bin hashtag -- --rate 20000 --check 35
//!     # the top 10 after batch 35, to compare with the Spark job's
//! cargo run --release -p dstream-bench --bin hashtag -- --print-lines 3
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::text;
use dstream_bench::{
    Opts, Probe, replay_batches, replay_pool_len, report, run_probe, searches, tweet_line,
    tweet_pool,
};

/// The window; it slides every batch.
const WINDOW_SECS: u64 = 30;

/// Warm-up before measuring, in seconds: the window fills, then 5 s of keys leave it.
const WARMUP_SECS: u64 = WINDOW_SECS + 5;

/// The job up to the windowed counts.
fn windowed_counts(lines: &DStream<&'static str>, o: &Opts) -> DStream<(String, i64)> {
    lines
        .flat_map(|line: &'static str| text::split(line, ' '))
        .filter(|w| w.starts_with('#'))
        .map(|tag| (tag.to_string(), 1i64))
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            Seconds(WINDOW_SECS as i64),
            o.batch(),
            HashPartitioner::new(o.parallelism).expect("parallelism > 0"),
            |kv| kv.1 > 0,
        )
}

/// The 10 largest counts, ties by tag (Spark's `top(10)` with the same ordering).
fn top10(counts: &Batch<(String, i64)>) -> Vec<(String, i64)> {
    counts.top_by(10, |kv| (kv.1, kv.0.clone()))
}

fn show(top: &[(String, i64)]) -> String {
    top.iter()
        .map(|(t, c)| format!("{t}:{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn probe(pool: &[&'static str], rate: u64, batches: (usize, usize), o: &Opts) -> Probe {
    let input = replay_batches(pool, o.per_batch(rate), o.parallelism, 2);
    run_probe(input, 1, rate, batches, o, |lines| {
        windowed_counts(lines, o).foreach_batch(|b, _| {
            std::hint::black_box(top10(&b));
        })
    })
}

/// Runs `n` batches at `rate` and prints the top 10 after batch `n`, and what it must be,
/// counted directly from the two replayed batches.
fn check(pool: &[&'static str], rate: u64, n: usize, o: &Opts) {
    let batches = replay_batches(pool, o.per_batch(rate), o.parallelism, 2);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = seen.clone();
    run_probe(batches.clone(), 1, rate, (0, n), o, |lines| {
        windowed_counts(lines, o).foreach_batch(move |b, _| {
            out.lock().unwrap().push(show(&top10(&b)));
        })
    });
    let seen = seen.lock().unwrap();
    println!("top10 after batch {n} at {rate} lines/s: {}", seen[n - 1]);
    // Batches 1, 3, 5, ... replay slot 0, the others slot 1; the window holds the last 30.
    let mut counts: HashMap<String, i64> = HashMap::new();
    for k in n.saturating_sub(o.batches_in(WINDOW_SECS))..n {
        for line in batches[k % 2].collect() {
            for w in line.split(' ').filter(|w| w.starts_with('#')) {
                *counts.entry(w.to_string()).or_default() += 1;
            }
        }
    }
    let direct = Batch::from_vec(counts.into_iter().collect(), 1);
    println!(
        "direct count of the same window:   {}",
        show(&top10(&direct))
    );
}

fn main() {
    let o = Opts::parse("hashtag", Opts::new(13_000_000, ""));
    if let Some(n) = o.print_lines {
        for i in (0..n).chain([3_999_999, 123_456_789_012]) {
            println!("{i}: {}", tweet_line(i));
        }
        return;
    }
    let pool = tweet_pool(replay_pool_len(o.per_batch(o.ceiling()), 2));
    if let (Some(n), Some(rate)) = (o.check, o.rate) {
        check(&pool, rate, n, &o);
        return;
    }
    let results = searches(&o, WARMUP_SECS, |r, batches| probe(&pool, r, batches, &o));
    report(
        "hashtag",
        "flatMap/filter/map -> reduceByKeyAndWindow(+, -, 30 s, every batch, drop zeros) -> top 10",
        "lines",
        &results,
        &o,
    );
}
