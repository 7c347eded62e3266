//! Shared pieces of dstream's benchmarks: the click-line generator, a source that replays
//! pre-built in-memory batches (so the source is not what is measured, as on the Spark side),
//! and the search for the maximum sustained rate.

use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::{BatchInfo, Source, SourceContext, StreamingListener};

/// A fixed, well-mixed hash: the generator is a pure function of the record index.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Click line `i`: `"<userId> /p/<page>"`, users drifting through a window of 20,000 active
/// ones out of 100,000, pages uniform over 1,000.
pub fn click_line(i: u64) -> String {
    let h = mix(i);
    let user = (i / 1000 + h % 20_000) % 100_000;
    let page = (h >> 20) % 1000;
    format!("u{user} /p/{page}")
}

/// `n` distinct click lines in one leaked buffer, as `&'static str` views (zero-copy records,
/// the way a consumer hands out views of a fetched buffer).
pub fn click_pool(n: usize) -> Vec<&'static str> {
    let mut text = String::with_capacity(n * 16);
    let mut ends = Vec::with_capacity(n);
    for i in 0..n as u64 {
        text.push_str(&click_line(i));
        ends.push(text.len());
    }
    let text: &'static str = Box::leak(text.into_boxed_str());
    let mut start = 0;
    ends.into_iter()
        .map(|e| {
            let s = &text[start..e];
            start = e;
            s
        })
        .collect()
}

/// Replays pre-built batches round robin.
pub struct Replay<T> {
    pub batches: Vec<Batch<T>>,
    pub next: usize,
}

impl<T: dstream::Data> Source<T> for Replay<T> {
    fn name(&self) -> String {
        "replay".into()
    }

    fn capture(&mut self, _: Time, _: &SourceContext) -> Result<Option<Batch<T>>, Error> {
        let b = self.batches[self.next % self.batches.len()].clone();
        self.next += 1;
        Ok(Some(b))
    }
}

/// Builds `count` batches of `records` records each from `pool`, in `parts` partitions.
pub fn replay_batches<T: dstream::Data>(
    pool: &[T],
    records: usize,
    parts: usize,
    count: usize,
) -> Vec<Batch<T>> {
    (0..count)
        .map(|b| {
            let offset = b * 7919 % pool.len().max(1);
            let v: Vec<T> = (0..records)
                .map(|i| pool[(offset + i) % pool.len()].clone())
                .collect();
            Batch::from_vec(v, parts)
        })
        .collect()
}

/// Collects batch infos.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<BatchInfo>>);

impl StreamingListener for Recorder {
    fn on_batch_completed(&self, info: &BatchInfo) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.clone());
    }
}

/// The outcome of running a job at one rate.
#[derive(Debug, Clone)]
pub struct Probe {
    pub rate: u64,
    pub sustained: bool,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_delay_ms: i64,
    pub last_delay_ms: i64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Judges measured batches as Spark's figures were judged: every processing time under the
/// batch interval and the scheduling delay not growing.
pub fn judge(rate: u64, infos: &[BatchInfo], batch: Duration) -> Probe {
    let mut times: Vec<f64> = infos
        .iter()
        .filter_map(|i| i.processing_time)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let delays: Vec<i64> = infos
        .iter()
        .filter_map(|i| i.scheduling_delay())
        .map(|d| d.millis())
        .collect();
    let first = delays.first().copied().unwrap_or(0);
    let last = delays.last().copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(f64::NAN);
    let failed = infos.iter().any(|i| i.failure.is_some());
    Probe {
        rate,
        sustained: !failed && max < batch.millis() as f64 && last <= first + batch.millis() / 10,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: max,
        first_delay_ms: first,
        last_delay_ms: last,
    }
}

/// Peak resident set size of this process, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Shared handle to a recorder.
pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}
