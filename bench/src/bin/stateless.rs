//! The stateless job of the Spark comparison: click lines "userId /p/N" -> url -> filter (drops
//! the ~10% of pages whose number ends in 0) -> countByValue, 1 s batches, input from pre-built
//! in-memory batches. Finds the maximum sustained rate: the highest input rate at which, over
//! the measured batches after warm-up, every batch is processed within the interval and the
//! scheduling delay does not grow. Median of several repetitions.
//!
//! ```text
//! cargo run --release -p dstream-bench --bin stateless -- [--reps 3] [--batches 30] [--warmup 5]
//! cargo run --release -p dstream-bench --bin stateless -- --rate 50000000   # one probe
//! ```

use std::time::Instant;

use dstream::prelude::*;
use dstream_bench::{Probe, click_pool, max_sustained, peak_rss_mib, replay_batches, run_probe};

struct Opts {
    rate: Option<u64>,
    reps: usize,
    batches: usize,
    warmup: usize,
    parallelism: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        rate: None,
        reps: 3,
        batches: 30,
        warmup: 5,
        parallelism: 2,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        let Some(v) = v else {
            eprintln!("stateless: {} needs a whole number", args[i]);
            std::process::exit(2);
        };
        match args[i].as_str() {
            "--rate" => o.rate = Some(v),
            "--reps" => o.reps = v as usize,
            "--batches" => o.batches = v as usize,
            "--warmup" => o.warmup = v as usize,
            "--parallelism" => o.parallelism = v as usize,
            other => {
                eprintln!("stateless: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

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

/// Processing time of one batch of `n` records outside the scheduler, to aim the search.
fn estimate(pool: &[&'static str], n: usize, parallelism: usize) -> f64 {
    let b = replay_batches(pool, n, parallelism, 1).pop().unwrap();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let input = b.clone();
        let t = Instant::now();
        let out = input.map(url).filter(keep).count_by_value(parallelism);
        let _ = out.count();
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best
}

fn probe(pool: &[&'static str], rate: u64, o: &Opts) -> Probe {
    let batches = replay_batches(pool, rate as usize, o.parallelism, 2);
    run_probe(
        batches,
        1,
        rate,
        o.warmup,
        o.batches,
        o.parallelism,
        |lines| {
            job(lines).foreach_batch(|b, _| {
                std::hint::black_box(b.count());
            })
        },
    )
}

/// The shared search (`dstream_bench::max_sustained`), between half and 1.1 times the rate
/// estimated from one batch.
fn search(pool: &[&'static str], est: f64, o: &Opts) -> Probe {
    max_sustained((est * 0.5) as u64, (est * 1.1) as u64, |r| {
        probe(pool, r, o)
    })
}

fn main() {
    let o = opts();
    let pool = click_pool(4_000_000);
    let est = estimate(&pool, 20_000_000, o.parallelism);
    eprintln!(
        "stateless: one-batch estimate {:.1}M records/s at parallelism {}",
        est / 1e6,
        o.parallelism
    );
    let results: Vec<Probe> = match o.rate {
        Some(r) => vec![probe(&pool, r, &o)],
        None => (0..o.reps)
            .map(|i| {
                eprintln!("repetition {}/{}", i + 1, o.reps);
                search(&pool, est, &o)
            })
            .collect(),
    };
    let mut rates: Vec<u64> = results.iter().map(|p| p.rate).collect();
    rates.sort();
    let median = rates[rates.len() / 2];
    let at = results.iter().find(|p| p.rate == median).unwrap();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "job: stateless (url -> filter -> countByValue), 1 s batches, parallelism {}",
        o.parallelism
    );
    println!("max sustained rate per repetition: {:?}", rates);
    println!(
        "median max sustained rate: {:.2}M records/s ({:.2}M records/s per core, {} cores)",
        median as f64 / 1e6,
        median as f64 / 1e6 / cores as f64,
        cores
    );
    println!(
        "batch processing time at that rate: p50 {:.0} ms, p99 {:.0} ms",
        at.p50_ms, at.p99_ms
    );
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
}
