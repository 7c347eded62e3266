//! Micro-benchmarks of the engine's hot paths (criterion; run by hand, figures in BENCHMARKS.md):
//!
//! - `narrow_chain`: a fused chain of narrow operators over one batch (map -> filter -> map).
//! - `shuffle`: hash partitioning with map-side combining (`count_by_value` over 1,000 urls,
//!   `reduce_by_key` over 100,000 integer keys) and without (`group_by_key`).
//! - `state_rmw`: a batch of per-key read-modify-writes of state in RocksDB, committed (the
//!   whole streaming batch: `map_with_state` and `update_state_by_key`).
//! - `window_pane`: a batch of an incremental window (`reduce_by_key_and_window` with its
//!   inverse), which adds the new pane and removes the one that leaves.
//! - `text_split`: the hashtag job's words of tweet lines, `str::split(' ')` against
//!   `dstream::text::split`, one thread, no engine.
//!
//! ```text
//! cargo bench -p dstream-bench --bench hot_paths               # all, about 3 minutes
//! cargo bench -p dstream-bench --bench hot_paths -- state_rmw  # one group
//! ```
//!
//! The streaming ones run a real context on a manual clock: an iteration moves the clock one
//! batch and waits for the batch to complete, so they include the scheduler's per-batch cost.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dstream::prelude::*;
use dstream::{ManualClock, Source, SourceContext, State, StateSpec};
use dstream_bench::{click_pool, mix, replay_batches, tweet_pool};

/// Records per batch in every benchmark.
const RECORDS: usize = 1_000_000;
/// Worker threads (the machine has 2 cores).
const PARALLELISM: usize = 2;

fn url(line: &'static str) -> &'static str {
    line.split_once(' ').map_or("", |(_, u)| u)
}

fn lines() -> Batch<&'static str> {
    let pool = click_pool(RECORDS);
    replay_batches(&pool, RECORDS, PARALLELISM, 1)
        .pop()
        .expect("a batch")
}

fn narrow_chain(c: &mut Criterion) {
    let input = lines();
    let mut g = c.benchmark_group("narrow_chain");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("map_filter_map_count", |b| {
        b.iter_batched(
            || input.clone(),
            |batch| {
                batch
                    .map(url)
                    .filter(|u| !u.ends_with('0'))
                    .map(|u| u.len())
                    .count()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn shuffle(c: &mut Criterion) {
    let input = lines();
    let keyed = Batch::from_vec(
        (0..RECORDS as u64)
            .map(|i| (mix(i) % 100_000, 1i64))
            .collect(),
        PARALLELISM,
    );
    let mut g = c.benchmark_group("shuffle");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("count_by_value_1k_str_keys", |b| {
        b.iter_batched(
            || input.clone(),
            |batch| batch.map(url).count_by_value(PARALLELISM).count(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("reduce_by_key_100k_u64_keys", |b| {
        b.iter_batched(
            || keyed.clone(),
            |batch| batch.reduce_by_key(|a, b| a + b, PARALLELISM).count(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("group_by_key_100k_u64_keys", |b| {
        b.iter_batched(
            || keyed.clone(),
            |batch| batch.group_by_key(PARALLELISM).count(),
            BatchSize::LargeInput,
        )
    });
    // The events of the sessions job: a `String` user per click line, grouped.
    g.bench_function("group_by_key_click_users_string_keys", |b| {
        b.iter_batched(
            || input.clone(),
            |batch| {
                batch
                    .map(|l| (l.split_once(' ').map_or(l, |(u, _)| u).to_string(), 1i64))
                    .group_by_key(PARALLELISM)
                    .count()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Batch `n` holds `RECORDS` pairs `(key, 1)` over `keys` distinct keys, drawn anew each batch.
struct Keys {
    keys: u64,
    n: u64,
}

impl Source<(u64, i64)> for Keys {
    fn name(&self) -> String {
        "keys".into()
    }

    fn capture(
        &mut self,
        _: Time,
        ctx: &SourceContext,
    ) -> Result<Option<Batch<(u64, i64)>>, Error> {
        let base = self.n * RECORDS as u64;
        self.n += 1;
        let v = (base..base + RECORDS as u64)
            .map(|i| (mix(i) % self.keys, 1))
            .collect();
        Ok(Some(Batch::from_vec(v, ctx.parallelism)))
    }
}

/// A started context on a manual clock with `job` on a [`Keys`] input; `warmup` batches run
/// before it is returned.
struct Running {
    ssc: StreamingContext,
    clock: ManualClock,
}

impl Running {
    fn start(
        keys: u64,
        warmup: u64,
        job: impl FnOnce(&DStream<(u64, i64)>) -> Result<(), Error>,
    ) -> Running {
        let clock = ManualClock::new();
        let ssc = StreamingContext::builder(Seconds(1))
            .parallelism(PARALLELISM)
            .clock(clock.clone())
            .stop_gracefully_on_signal(false)
            .temporary_checkpoint()
            .build()
            .expect("a context");
        job(&ssc.input_stream(Keys { keys, n: 0 })).expect("the job");
        ssc.start().expect("it starts");
        let r = Running { ssc, clock };
        r.batches(warmup);
        r
    }

    /// Runs `n` more batches and returns how long they took.
    fn batches(&self, n: u64) -> StdDuration {
        let target = self.ssc.completed_batches() + n;
        let t = Instant::now();
        self.clock.advance(Seconds(n as i64));
        assert!(
            self.ssc.await_batches(target, Seconds(600)),
            "batches did not complete"
        );
        let failures = self.ssc.failures();
        assert!(failures.is_empty(), "a batch failed: {:?}", failures[0]);
        t.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ssc.stop();
    }
}

fn streaming_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    g.measurement_time(StdDuration::from_secs(5));
    g
}

fn state_rmw(c: &mut Criterion) {
    let mut g = streaming_group(c, "state_rmw");
    // 100,000 keys: after the first batch every record reads and rewrites existing state.
    let mapws = Running::start(100_000, 3, |s| {
        let spec = StateSpec::function(|_: Time, _: &u64, v: Option<i64>, st: &mut State<i64>| {
            let sum = st.get().copied().unwrap_or(0) + v.unwrap_or(0);
            st.update(sum);
            Some(sum)
        });
        s.map_with_state(spec).foreach_batch(|b, _| {
            black_box(b.count());
        })
    });
    g.bench_function("map_with_state_100k_keys", |b| {
        b.iter_custom(|n| mapws.batches(n))
    });
    drop(mapws);
    let update = Running::start(100_000, 3, |s| {
        s.update_state_by_key(|vs: Vec<i64>, st: Option<i64>| {
            Some(st.unwrap_or(0) + vs.iter().sum::<i64>())
        })
        .foreach_batch(|b, _| {
            black_box(b.count());
        })
    });
    g.bench_function("update_state_by_key_100k_keys", |b| {
        b.iter_custom(|n| update.batches(n))
    });
    g.finish();
}

fn window_pane(c: &mut Criterion) {
    let mut g = streaming_group(c, "window_pane");
    // A 30 s window sliding every 1 s batch: after 35 batches each batch adds a pane and
    // subtracts the one leaving.
    let window = Running::start(10_000, 35, |s| {
        s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, Seconds(30), Seconds(1))
            .foreach_batch(|b, _| {
                black_box(b.count());
            })
    });
    g.bench_function("reduce_by_key_and_window_inv_30_panes_10k_keys", |b| {
        b.iter_custom(|n| window.batches(n))
    });
    g.finish();
}

/// The hashtag job's text step alone: every word of 1M tweet lines, the tags counted.
fn text_split(c: &mut Criterion) {
    let pool = tweet_pool(RECORDS);
    let mut g = c.benchmark_group("text_split");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("tweet_tags_std_str_split", |b| {
        b.iter(|| {
            pool.iter()
                .flat_map(|line| line.split(' '))
                .filter(|w| w.starts_with('#'))
                .count()
        })
    });
    g.bench_function("tweet_tags_dstream_text_split", |b| {
        b.iter(|| {
            pool.iter()
                .flat_map(|line| dstream::text::split(line, ' '))
                .filter(|w| w.starts_with('#'))
                .count()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    narrow_chain,
    shuffle,
    state_rmw,
    window_pane,
    text_split
);
criterion_main!(benches);
