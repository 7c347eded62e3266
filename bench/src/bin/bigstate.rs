//! State far larger than memory: `map_with_state` over 50M keys (by default) with a checkpoint in
//! RocksDB, then a batch that revisits keys written long before (read back from RocksDB, not
//! the cache). Prints the time, the peak RSS, and checks every revisited key's state.
//!
//! ```text
//! cargo run --release -p dstream-bench --bin bigstate -- [--keys 50000000] [--per-batch 2000000]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dstream::prelude::*;
use dstream::{Source, SourceContext, State, StateSpec};
use dstream_bench::peak_rss_mib;

/// Batch `i` holds keys `i*per .. (i+1)*per`; after them, one batch revisits every 1000th key.
struct Keys {
    next: u64,
    total: u64,
    per: u64,
    revisited: bool,
}

impl Source<(u64, u64)> for Keys {
    fn name(&self) -> String {
        "keys".into()
    }

    fn capture(
        &mut self,
        _: Time,
        ctx: &SourceContext,
    ) -> Result<Option<Batch<(u64, u64)>>, Error> {
        if self.next < self.total {
            let end = (self.next + self.per).min(self.total);
            let v: Vec<(u64, u64)> = (self.next..end).map(|k| (k, 1)).collect();
            self.next = end;
            return Ok(Some(Batch::from_vec(v, ctx.parallelism)));
        }
        self.revisited = true;
        let v: Vec<(u64, u64)> = (0..self.total).step_by(1000).map(|k| (k, 1)).collect();
        Ok(Some(Batch::from_vec(v, ctx.parallelism)))
    }

    fn is_finished(&self) -> bool {
        self.revisited
    }
}

/// Keys of state far beyond memory: RSS and time per batch (issue 3; results in BENCHMARKS.md).
#[derive(clap::Parser, Debug)]
#[command(name = "bigstate")]
struct Args {
    /// Keys of state made, in batches of --per-batch
    #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// New keys per batch
    #[arg(long = "per-batch", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    per_batch: u64,
}

fn main() -> Result<(), Error> {
    let args = <Args as clap::Parser>::parse();
    let (total, per) = (args.keys, args.per_batch);
    let dir = std::env::temp_dir().join(format!("dstream-bigstate-{}", std::process::id()));
    let ssc = StreamingContext::builder(Seconds(1))
        .parallelism(2)
        .checkpoint(&dir)
        .build()?;
    let keys = ssc.input_stream(Keys {
        next: 0,
        total,
        per,
        revisited: false,
    });
    let seen_twice = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let (twice, bad) = (seen_twice.clone(), wrong.clone());
    let counts = keys.map_with_state(StateSpec::function(
        |_, _: &u64, v: Option<u64>, st: &mut State<u64>| {
            let n = st.get().copied().unwrap_or(0) + v.unwrap_or(0);
            st.update(n);
            (n > 1).then_some(n)
        },
    ));
    counts.foreach_batch(move |b, _| {
        for n in b.collect() {
            if n == 2 {
                twice.fetch_add(1, Ordering::Relaxed);
            } else {
                bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    })?;
    let started = Instant::now();
    ssc.run_to_completion()?;
    let secs = started.elapsed().as_secs_f64();
    let expected = total.div_ceil(1000);
    let db_mib = dir_size(&dir) as f64 / (1 << 20) as f64;
    println!(
        "keys {total}: {secs:.1} s ({:.2}M keys/s), peak RSS {} MiB, checkpoint {db_mib:.0} MiB on disk",
        total as f64 / secs / 1e6,
        peak_rss_mib()
    );
    println!(
        "revisited {} of {expected} old keys with their state read back from RocksDB ({} wrong)",
        seen_twice.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed)
    );
    drop(ssc);
    let _ = std::fs::remove_dir_all(&dir);
    if seen_twice.load(Ordering::Relaxed) != expected || wrong.load(Ordering::Relaxed) != 0 {
        eprintln!("bigstate: state read back wrong");
        std::process::exit(1);
    }
    Ok(())
}

fn dir_size(d: &std::path::Path) -> u64 {
    std::fs::read_dir(d).map_or(0, |it| {
        it.filter_map(|e| e.ok())
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    dir_size(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}
