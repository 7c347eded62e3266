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
use dstream_bench::{Probe, Replay, click_pool, judge, peak_rss_mib, recorder, replay_batches};

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
    let batch = Seconds(1);
    let ssc = StreamingContext::builder(batch)
        .parallelism(o.parallelism)
        .build()
        .unwrap();
    let rec = recorder();
    ssc.add_streaming_listener(rec.clone());
    let batches = replay_batches(pool, rate as usize, o.parallelism, 2);
    let lines = ssc.input_stream(Replay {
        batches,
        next: 0,
        run: 1,
    });
    job(&lines)
        .foreach_batch(|b, _| {
            std::hint::black_box(b.count());
        })
        .unwrap();
    ssc.start().unwrap();
    let total = (o.warmup + o.batches) as u64;
    while ssc.completed_batches() < total {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ssc.stop();
    let infos = rec.0.lock().unwrap().clone();
    let p = judge(rate, &infos[o.warmup..total as usize], batch);
    p.log();
    p
}

/// Binary search for the highest sustained rate, to within 3%.
fn max_sustained(pool: &[&'static str], est: f64, o: &Opts) -> Probe {
    let mut lo = (est * 0.5) as u64;
    let mut hi = (est * 1.1) as u64;
    let mut best = probe(pool, lo, o);
    while !best.sustained && lo > 1000 {
        hi = lo;
        lo /= 2;
        best = probe(pool, lo, o);
    }
    while (hi - lo) as f64 > lo as f64 * 0.03 {
        let mid = lo + (hi - lo) / 2;
        let p = probe(pool, mid, o);
        if p.sustained {
            lo = mid;
            best = p;
        } else {
            hi = mid;
        }
    }
    best
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
                max_sustained(&pool, est, &o)
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
