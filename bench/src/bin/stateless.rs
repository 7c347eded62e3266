//! The stateless job of the Spark comparison: click lines "userId /p/N" -> url -> filter (drops
//! the ~10% of pages whose number ends in 0) -> countByValue, input from pre-built in-memory
//! batches. Finds the maximum sustained rate (`dstream_bench::searches`): the highest input rate
//! at which, over the measured batches after warm-up, every batch is processed within the
//! interval and the scheduling delay does not grow (or, with `--judge latency`, the p99 total
//! delay stays under two intervals). Median of several repetitions.
//!
//! ```text
//! cargo run --release -p dstream-bench --bin stateless -- [--reps 3] [--start N] [--max N]
//!     [--batch-ms 1000] [--judge throughput|latency] [--warmup N] [--batches N]
//! cargo run --release -p dstream-bench --bin stateless -- --rate 50000000   # one probe
//! cargo run --release -p dstream-bench --bin stateless -- --rate 20000 --check 3
//! ```

use std::collections::HashMap;

use dstream::prelude::*;
use dstream_bench::{
    Opts, Probe, click_pool, replay_batches, replay_pool_len, report, run_probe, searches,
};

/// Warm-up before measuring, in seconds.
const WARMUP_SECS: u64 = 5;

/// The url of a `"userId url"` line (Spark's side: `line.split(" ")(1)`).
fn url(line: &'static str) -> &'static str {
    line.split_once(' ').map_or("", |(_, url)| url)
}

fn keep(url: &&'static str) -> bool {
    !url.ends_with('0')
}

/// The job, as a function of its input stream.
fn job(lines: &DStream<&'static str>) -> DStream<(&'static str, i64)> {
    lines.map(url).filter(keep).count_by_value()
}

/// The urls counted in a batch, and the 3 largest counts by (count, url).
fn summary(counts: &Batch<(&'static str, i64)>) -> String {
    let top = counts.top_by(3, |kv| (kv.1, kv.0));
    let top: Vec<String> = top.iter().map(|(u, c)| format!("{u}:{c}")).collect();
    format!("urls {} top3 {}", counts.count(), top.join(" "))
}

fn probe(pool: &[&'static str], rate: u64, batches: (usize, usize), o: &Opts) -> Probe {
    let input = replay_batches(pool, o.per_batch(rate), o.parallelism, 2);
    run_probe(input, 1, rate, batches, o, |lines| {
        job(lines).foreach_batch(|b, _| {
            std::hint::black_box(b.count());
        })
    })
}

/// Runs `n` batches at `rate` and prints the summary of batch `n`, and what it must be,
/// counted directly from the replayed batch.
fn check(pool: &[&'static str], rate: u64, n: usize, o: &Opts) {
    let input = replay_batches(pool, o.per_batch(rate), o.parallelism, 2);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    run_probe(input.clone(), 1, rate, (0, n), o, |lines| {
        job(lines).foreach_batch(move |b, _| out.lock().unwrap().push(summary(&b)))
    });
    println!(
        "stateless batch {n} at {rate} lines/s: {}",
        seen.lock().unwrap()[n - 1]
    );
    let mut counts: HashMap<&'static str, i64> = HashMap::new();
    for line in input[(n - 1) % 2].collect() {
        let u = url(line);
        if keep(&u) {
            *counts.entry(u).or_default() += 1;
        }
    }
    let direct = Batch::from_vec(counts.into_iter().collect(), 1);
    println!("direct count of the same batch:   {}", summary(&direct));
}

fn main() {
    let o = Opts::parse("stateless", Opts::new(80_000_000, ""));
    let pool = click_pool(replay_pool_len(o.per_batch(o.ceiling()), 2));
    if let (Some(n), Some(rate)) = (o.check, o.rate) {
        check(&pool, rate, n, &o);
        return;
    }
    let results = searches(&o, WARMUP_SECS, |r, batches| probe(&pool, r, batches, &o));
    report(
        "stateless",
        "map(url) -> filter -> countByValue",
        "lines",
        &results,
        &o,
    );
}
