//! Operator metrics: how many records each node of the graph produced for a batch, and how much
//! time the worker threads spent in it. Off unless asked for (the dashboard turns it on); when
//! on, each node's batch is wrapped in a pass-through operator that counts per chunk.
//!
//! Counting is per `(partition, segment)` task and overwrites, so a batch read again (a window's
//! past batch, a recomputed lazy batch) is not counted twice. Time is measured around the
//! wrapped node's push, minus the time spent downstream of it (inside the sink it pushes into)
//! and minus the time of the wrapped nodes upstream of it on the same thread (a thread-local
//! tally), so each operator of a fused chain gets its own share. A node's `compute` (a shuffle,
//! a state update) is timed too, minus what the observed nodes it ran claimed on any thread.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::batch::{Batch, Data, Partitions, Sink};
use crate::time::Time;

/// Nanoseconds claimed by all observed nodes, on any thread (see [`timed`]).
static TOTAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Nanoseconds claimed by observed nodes that ran on this thread inside the current one.
    static CLAIMED: Cell<u64> = const { Cell::new(0) };
}

/// The task key of a count of the whole batch.
const WHOLE: (usize, usize) = (usize::MAX, 0);

/// Records per `(partition, segment)` task of one batch.
type TaskCounts = HashMap<(usize, usize), u64>;

/// What one node did, batch by batch.
#[derive(Default)]
pub(crate) struct NodeStats {
    /// Records per batch time, per `(partition, segment)` task.
    records: Mutex<BTreeMap<Time, TaskCounts>>,
    /// Time spent in the node since the last batch was collected.
    nanos: AtomicU64,
}

impl NodeStats {
    /// The records produced for `t`, forgetting everything up to `t`, and the time spent since
    /// the last call.
    pub(crate) fn take(&self, t: Time) -> (u64, std::time::Duration) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        // A count read without pushing (`materialized_len`) is the whole batch; pushed tasks may
        // be all of it or a part.
        let n = records.get(&t).map_or(0, |m| {
            let whole = m.get(&WHOLE).copied().unwrap_or(0);
            let pushed: u64 = m.iter().filter(|(k, _)| **k != WHOLE).map(|(_, n)| n).sum();
            whole.max(pushed)
        });
        let later = records.split_off(&Time::from_millis(t.millis().saturating_add(1)));
        *records = later;
        let nanos = self.nanos.swap(0, Ordering::Relaxed);
        (n, std::time::Duration::from_nanos(nanos))
    }

    fn record(&self, t: Time, task: (usize, usize), n: u64) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(t)
            .or_default()
            .insert(task, n);
    }
}

/// Runs `f`, a node's `compute` (where shuffles and state updates run, often in parallel on
/// the worker threads while this thread waits), and counts its time into `stats`, minus what
/// observed nodes claimed meanwhile on any thread (their pushes run inside it).
pub(crate) fn timed<R>(stats: &NodeStats, f: impl FnOnce() -> R) -> R {
    let before = TOTAL.load(Ordering::Relaxed);
    let outer = CLAIMED.replace(0);
    let start = Instant::now();
    let r = f();
    let wall = start.elapsed().as_nanos() as u64;
    let others = TOTAL.load(Ordering::Relaxed).saturating_sub(before);
    let own = wall.saturating_sub(others);
    stats.nanos.fetch_add(own, Ordering::Relaxed);
    TOTAL.fetch_add(own, Ordering::Relaxed);
    CLAIMED.set(outer + wall);
    r
}

/// `batch`, counted into `stats` as the batch of time `t`.
pub(crate) fn observed<T: Data>(batch: Batch<T>, t: Time, stats: Arc<NodeStats>) -> Batch<T> {
    Batch {
        inner: Arc::new(Observed {
            parent: batch,
            t,
            stats,
        }),
    }
}

struct Observed<T> {
    parent: Batch<T>,
    t: Time,
    stats: Arc<NodeStats>,
}

struct CountingSink<'a, T> {
    down: &'a mut dyn Sink<T>,
    records: u64,
    /// Time spent downstream (in `down`).
    downstream: u64,
}

impl<T> Sink<T> for CountingSink<'_, T> {
    #[inline]
    fn push(&mut self, chunk: &mut Vec<T>) {
        self.records += chunk.len() as u64;
        let claimed = CLAIMED.get();
        let start = Instant::now();
        self.down.push(chunk);
        self.downstream += start.elapsed().as_nanos() as u64;
        // Whatever ran downstream is not this node's upstream.
        CLAIMED.set(claimed);
    }
}

impl<T: Data> Partitions<T> for Observed<T> {
    fn num_partitions(&self) -> usize {
        self.parent.inner.num_partitions()
    }

    fn num_segments(&self, p: usize) -> usize {
        self.parent.inner.num_segments(p)
    }

    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>) {
        let outer = CLAIMED.replace(0);
        let start = Instant::now();
        let mut counting = CountingSink {
            down: sink,
            records: 0,
            downstream: 0,
        };
        self.parent.inner.push_segment(p, s, take, &mut counting);
        let region = (start.elapsed().as_nanos() as u64).saturating_sub(counting.downstream);
        let upstream = CLAIMED.get();
        let own = region.saturating_sub(upstream);
        self.stats.nanos.fetch_add(own, Ordering::Relaxed);
        TOTAL.fetch_add(own, Ordering::Relaxed);
        self.stats.record(self.t, (p, s), counting.records);
        // The enclosing node does not count this node's region (nor what it contains) as its own.
        CLAIMED.set(outer + region);
    }

    fn exclusive(&self) -> bool {
        self.parent.is_exclusive()
    }

    fn materialized_len(&self) -> Option<usize> {
        let n = self.parent.inner.materialized_len()?;
        // Read without pushing (a count of materialized records): that is all of it.
        let mut records = self.stats.records.lock().unwrap_or_else(|e| e.into_inner());
        records.entry(self.t).or_default().insert(WHOLE, n as u64);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use crate::metrics::{BatchInfo, StreamingListener};
    use crate::testing::TestContext;
    use crate::time::Seconds;

    #[derive(Default)]
    struct Infos(Mutex<Vec<BatchInfo>>);

    impl StreamingListener for Infos {
        fn on_batch_completed(&self, info: &BatchInfo) {
            self.0.lock().unwrap().push(info.clone());
        }
    }

    fn run_observed(tc: &TestContext, batches: usize) -> Vec<BatchInfo> {
        let infos = std::sync::Arc::new(Infos::default());
        tc.context().add_streaming_listener(infos.clone());
        tc.run(batches).unwrap();
        infos.0.lock().unwrap().clone()
    }

    #[test]
    fn every_operator_reports_its_records_per_batch() {
        let tc = TestContext::configured(Seconds(1), 2, |b| b.operator_metrics(true));
        let lines = tc.input_stream(vec![vec!["a b", "b c c"], vec!["d"], vec![]]);
        let words = lines.flat_map(|l: &str| l.split(' ').collect::<Vec<_>>());
        let counts = words
            .filter(|w| *w != "d")
            .map(|w| (w, 1))
            .reduce_by_key(|a, b| a + b);
        // `words` is read twice: its batch is cached and counted once.
        tc.collect(&counts).unwrap();
        tc.collect(&words.count()).unwrap();
        let infos = run_observed(&tc, 3);
        assert_eq!(infos.len(), 3);
        let records = |i: usize, name: &str| -> Vec<u64> {
            infos[i]
                .operators
                .iter()
                .filter(|o| o.name == name)
                .map(|o| o.records)
                .collect()
        };
        assert_eq!(records(0, "testInputStream"), vec![2]);
        assert_eq!(records(0, "flatMap"), vec![5]);
        assert_eq!(records(0, "filter"), vec![5]);
        assert_eq!(records(0, "reduceByKey"), vec![3]);
        assert_eq!(records(0, "count"), vec![1]);
        assert_eq!(records(1, "flatMap"), vec![1]);
        assert_eq!(records(1, "filter"), vec![0]);
        assert_eq!(records(2, "flatMap"), vec![0]);
        let first = &infos[0];
        // Parents point at real operators, and ids follow creation order.
        let ids: Vec<usize> = first.operators.iter().map(|o| o.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for o in &first.operators {
            for p in &o.parents {
                assert!(ids.contains(p), "{o:?} reads an unknown operator");
            }
        }
        assert_eq!(first.output_operations.len(), 2);
        assert!(
            first.output_operations[0]
                .description
                .starts_with("foreach_batch of reduceByKey #"),
            "{:?}",
            first.output_operations
        );
    }

    #[test]
    fn state_size_counts_the_keys_holding_state() {
        let tc = TestContext::configured(Seconds(1), 2, |b| b.operator_metrics(true));
        let words = tc.input_stream(vec![vec!["a", "b", "a"], vec!["c"], vec!["a", "x"]]);
        let state = words.map(|w: &str| (w.to_string(), 1)).update_state_by_key(
            |vs: Vec<i32>, s: Option<i32>| {
                if vs.is_empty() {
                    s
                } else {
                    Some(s.unwrap_or(0) + vs.len() as i32)
                }
            },
        );
        tc.collect(&state).unwrap();
        let infos = run_observed(&tc, 3);
        let keys: Vec<u64> = infos
            .iter()
            .map(|i| {
                assert_eq!(i.state.len(), 1, "{:?}", i.state);
                assert!(
                    i.state[0].operator.contains("updateStateByKey"),
                    "{:?}",
                    i.state
                );
                i.state[0].keys
            })
            .collect();
        assert_eq!(keys, vec![2, 3, 4]);
    }

    #[test]
    fn metrics_are_off_by_default() {
        let tc = TestContext::new();
        let s = tc.input_stream(vec![vec![1, 2, 3]]);
        tc.collect(&s.map(|x| x + 1)).unwrap();
        let infos = run_observed(&tc, 1);
        assert!(infos[0].operators.is_empty());
        assert!(infos[0].state.is_empty());
        assert_eq!(infos[0].output_operations.len(), 1);
    }
}
