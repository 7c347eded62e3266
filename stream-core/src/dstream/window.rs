//! Window operations, with Spark's semantics: Spark's `WindowedDStream` (a window is the union of
//! the parent's batches in `(t - window, t]`), `ReducedWindowedDStream` (the "smart" window reduce:
//! the previous window's result, minus what left, plus what came in) and the operations Spark
//! builds on them.
//!
//! Windows are emitted at multiples of the slide. Before a window is full it holds the batches
//! that exist so far; after the input stops, windows keep draining. With an inverse function and
//! no filter, a key whose values all left the window stays, with the inverse's result (0 for
//! counts), as Spark's does; the filter removes such keys and its result is what the next window
//! starts from.
//!
//! The incremental reduces keep their state in the checkpoint (see `WindowOp`): the running
//! window value of each key, and each batch's reduced values (a *pane*, keyed by batch time so
//! that expiring a batch is one range delete). They need serde keys and values and a checkpoint
//! directory, as Spark's need `ssc.checkpoint`.
//!
//! The window and slide must be multiples of the parent's slide (Spark's messages); a violation
//! detaches the stream, and registering an output on it reports the error, before data flows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::checkpoint::CommitBatch;
use rayon::prelude::*;

use super::state::open_store;
use super::{DStream, Owner};
use crate::batch::{Batch, Data, Key};
use crate::checkpoint::keyed::{
    KeyedStore, StateKey, StateValue, TAG_STATE, check_decodes, decode, encode, time_bytes,
};
use crate::checkpoint::{Durable, Store};
use crate::error::{ContextError, Result};
use crate::partitioner::{FixedState, HashPartitioner, Partitioner, shuffle_state};
use crate::time::{Duration, Time};

type Filter<K, V> = Arc<dyn Fn(&(K, V)) -> bool + Send + Sync>;

impl<T: Data> DStream<T> {
    /// Checks a window over this stream; the problem, if any, detaches the window's stream.
    fn check_window(&self, window: Duration, slide: Duration) -> Option<ContextError> {
        window_problem(self.slide_duration(), window, slide)
    }

    /// Notes `made`, a window of length `window` over this stream, for batch jobs to drain
    /// (see `ContextInner::add_window`); returns it.
    fn note_window<U: Data>(&self, made: DStream<U>, window: Duration) -> DStream<U> {
        if let Some(ctx) = self.owner().ctx.upgrade() {
            ctx.add_window(made.any().as_ref(), self.any().as_ref(), window);
        }
        made
    }
}

fn window_problem(parent: Duration, window: Duration, slide: Duration) -> Option<ContextError> {
    if !window.is_multiple_of(parent) {
        return Some(ContextError::InvalidArgument(format!(
            "The window duration of windowed DStream ({window}) must be a multiple of the slide duration of parent DStream ({parent})"
        )));
    }
    if !slide.is_multiple_of(parent) {
        return Some(ContextError::InvalidArgument(format!(
            "The slide duration of windowed DStream ({slide}) must be a multiple of the slide duration of parent DStream ({parent})"
        )));
    }
    None
}

impl<T: Data> DStream<T> {
    /// The parent's batches of `[from, to]` that exist, oldest first (Spark's `slice`).
    fn slice(&self, from: Time, to: Time) -> Result<Vec<Batch<T>>> {
        let step = self.slide_duration();
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            if let Some(b) = self.get_or_compute(t)? {
                out.push(b);
            }
            t = t + step;
        }
        Ok(out)
    }

    /// Every `slide`, the records of the last `window` of batches (Spark's `window`).
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// use stream_core::Seconds;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![1], vec![2], vec![3]]);
    /// let out = tc.collect(&s.window(Seconds(2), Seconds(1))).unwrap();
    /// tc.run(4).unwrap();
    /// assert_eq!(out.batches(), vec![vec![1], vec![1, 2], vec![2, 3], vec![3]]);
    /// ```
    pub fn window(&self, window: Duration, slide: Duration) -> DStream<T> {
        let problem = self.check_window(window, slide);
        let parent = self.clone();
        parent.persist();
        parent.remember(window);
        let step = self.slide_duration();
        let made = DStream::new_node_checked(
            &self.owner(),
            "window",
            vec![self.any()],
            slide,
            problem,
            move |t| Ok(Some(Batch::union_all(parent.slice(t - window + step, t)?))),
        );
        made.set_reach(window);
        self.note_window(made, window)
    }

    /// `window` sliding by the parent's slide (every batch).
    pub fn window_of(&self, window: Duration) -> DStream<T> {
        self.window(window, self.slide_duration())
    }

    /// Every `slide`, the records of the last `window` reduced with `f` (Spark's
    /// `reduceByWindow`); empty windows give empty batches.
    pub fn reduce_by_window(
        &self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> DStream<T> {
        let f = Arc::new(f);
        let g = f.clone();
        self.reduce(move |a, b| f(a, b))
            .window(window, slide)
            .reduce(move |a, b| g(a, b))
    }
}

impl<T: Data> DStream<T> {
    /// Every `slide`, the number of records in the last `window` (Spark's `countByWindow`):
    /// `0` for an empty window once records have been seen.
    pub fn count_by_window(&self, window: Duration, slide: Duration) -> DStream<i64> {
        self.map(|_| 1i64)
            .reduce_by_window_inv(|a, b| a + b, |a, b| a - b, window, slide)
    }
}

impl<T: StateValue> DStream<T> {
    /// `reduce_by_window` computed incrementally: the previous window's value, `inv` of what
    /// left, `f` of what came in (Spark's `reduceByWindow` with `invReduceFunc`).
    pub fn reduce_by_window_inv(
        &self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
        inv: impl Fn(T, T) -> T + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> DStream<T> {
        self.map(|x| (0u8, x))
            .reduced_window(
                Arc::new(f),
                Arc::new(inv),
                window,
                slide,
                HashPartitioner::at_least_one(1),
                None,
            )
            .map(|(_, v)| v)
    }
}

impl<T: StateKey> DStream<T> {
    /// Every `slide`, how often each record occurs in the last `window` (Spark's
    /// `countByValueAndWindow`); records whose count fell to 0 are dropped.
    pub fn count_by_value_and_window(
        &self,
        window: Duration,
        slide: Duration,
    ) -> DStream<(T, i64)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        let filter: Filter<T, i64> = Arc::new(|(_, c)| *c != 0);
        self.map(|x| (x, 1i64)).reduced_window(
            Arc::new(|a, b| a + b),
            Arc::new(|a, b| a - b),
            window,
            slide,
            p,
            Some(filter),
        )
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Every `slide`, the values of each key in the last `window` (Spark's
    /// `groupByKeyAndWindow`).
    pub fn group_by_key_and_window(
        &self,
        window: Duration,
        slide: Duration,
    ) -> DStream<(K, Vec<V>)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        self.group_by_key_with_partitioner(p.clone())
            .window(window, slide)
            .combine_by_key_with_partitioner(
                |v: Vec<V>| v,
                |mut a: Vec<V>, v: Vec<V>| {
                    a.extend(v);
                    a
                },
                |mut a: Vec<V>, b: Vec<V>| {
                    a.extend(b);
                    a
                },
                p,
            )
    }

    /// Every `slide`, the values of each key in the last `window` merged with `f` (Spark's
    /// `reduceByKeyAndWindow` without an inverse): each window is reduced from its batches.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// use stream_core::Seconds;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![("a", 1)], vec![("a", 2), ("b", 1)], vec![]]);
    /// let w = s.reduce_by_key_and_window(|x, y| x + y, Seconds(2), Seconds(1));
    /// let out = tc.collect(&w).unwrap();
    /// tc.run(3).unwrap();
    /// let mut second = out.batch(1);
    /// second.sort();
    /// assert_eq!(second, vec![("a", 3), ("b", 1)]);
    /// ```
    pub fn reduce_by_key_and_window(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> DStream<(K, V)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        self.reduce_by_key_and_window_with_partitioner(f, window, slide, p)
    }

    /// `reduce_by_key_and_window` with an explicit partitioner.
    pub fn reduce_by_key_and_window_with_partitioner<P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
        partitioner: P,
    ) -> DStream<(K, V)> {
        let f = Arc::new(f);
        let g = f.clone();
        self.reduce_by_key_with_partitioner(move |a, b| f(a, b), partitioner.clone())
            .window(window, slide)
            .reduce_by_key_with_partitioner(move |a, b| g(a, b), partitioner)
    }
}

impl<K: StateKey, V: StateValue> DStream<(K, V)> {
    /// The "smart" window reduce (Spark's `reduceByKeyAndWindow` with `invReduceFunc`): each
    /// window is the previous one, `inv` of the batches that left it, `f` of those that came in.
    /// Keys whose values all left stay, with `inv`'s result (see the module docs).
    pub fn reduce_by_key_and_window_inv(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        inv: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> DStream<(K, V)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        self.reduced_window(Arc::new(f), Arc::new(inv), window, slide, p, None)
    }

    /// `reduce_by_key_and_window_inv` with an explicit partitioner and a filter: only pairs for
    /// which `filter` is true are kept, in the output and in what the next window starts from.
    pub fn reduce_by_key_and_window_inv_filtered<P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        inv: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
        partitioner: P,
        filter: impl Fn(&(K, V)) -> bool + Send + Sync + 'static,
    ) -> DStream<(K, V)> {
        self.reduced_window(
            Arc::new(f),
            Arc::new(inv),
            window,
            slide,
            partitioner,
            Some(Arc::new(filter)),
        )
    }

    fn reduced_window<P: Partitioner<K> + Clone>(
        &self,
        f: Arc<dyn Fn(V, V) -> V + Send + Sync>,
        inv: Arc<dyn Fn(V, V) -> V + Send + Sync>,
        window: Duration,
        slide: Duration,
        partitioner: P,
        filter: Option<Filter<K, V>>,
    ) -> DStream<(K, V)> {
        let problem = self.check_window(window, slide);
        let g = f.clone();
        let reduced = self.reduce_by_key_with_partitioner(move |a, b| g(a, b), partitioner.clone());
        reduced.persist();
        // Older batches come back from the checkpoint's panes: only the current slide's batches
        // are needed in memory.
        reduced.remember(slide);
        let owner = self.owner();
        let n = partitioner.num_partitions().max(1);
        let op = match owner.ctx.upgrade() {
            Some(ctx) => {
                let cache = ctx.state_cache;
                ctx.register_durable(|id| WindowOp::new(id, n, cache, window, slide))
            }
            None => Arc::new(WindowOp::new(usize::MAX, n, 1, window, slide)),
        };
        let state = Arc::new(ReducedWindow {
            reduced: reduced.clone(),
            owner: owner.clone(),
            op,
            f,
            inv,
            filter,
            window,
            slide,
            partitioner,
            results: Mutex::new(BTreeMap::new()),
        });
        let made = DStream::new_node_checked(
            &owner,
            "reduceByKeyAndWindow",
            vec![reduced.any()],
            slide,
            problem,
            move |t| state.at(t).map(Some),
        );
        // It reads the batches of its slide from memory (older ones are panes in the checkpoint).
        made.set_reach(slide);
        reduced.note_window(made, window)
    }
}

/// The durable state of an incremental window reduce, in its column family:
/// - `s <partition> <key>` -> the key's value in the last window (a [`KeyedStore`]);
/// - `p <time> <partition> <key>` -> the key's reduced value in the batch of `time` (a pane):
///   the window subtracts a pane when its batch leaves, and a range delete drops it.
struct WindowOp<K, V> {
    id: usize,
    agg: KeyedStore<K, V>,
    window: Duration,
    slide: Duration,
    /// The panes of the batch being processed and where expiry starts, committed with it.
    staged: Mutex<Staged<K, V>>,
}

struct Staged<K, V> {
    panes: Vec<(Time, Vec<(K, V)>)>,
    expire_through: Option<Time>,
}

const TAG_PANE: u8 = b'p';

fn pane_prefix(t: Time) -> Vec<u8> {
    let mut k = vec![TAG_PANE];
    k.extend_from_slice(&time_bytes(t.millis()));
    k
}

impl<K: StateKey, V: StateValue> WindowOp<K, V> {
    fn new(id: usize, partitions: usize, cache: usize, window: Duration, slide: Duration) -> Self {
        WindowOp {
            id,
            agg: KeyedStore::new(id, TAG_STATE, partitions, cache, false),
            window,
            slide,
            staged: Mutex::new(Staged {
                panes: Vec::new(),
                expire_through: None,
            }),
        }
    }

    /// The pane of the batch at `t`: staged by this batch (a window computed lazily, for an
    /// operation downstream that slides slower, computes several of its times in one batch,
    /// and the earlier ones' panes are not committed yet), or from the checkpoint.
    fn read_pane(&self, store: &Store, t: Time) -> Result<Vec<(K, V)>> {
        {
            let staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, pane)) = staged.panes.iter().find(|(at, _)| *at == t) {
                return Ok(pane.clone());
            }
        }
        let prefix = pane_prefix(t);
        let mut it = store.db().raw_iterator_cf(store.cf(self.id)?);
        it.seek(&prefix);
        let mut out = Vec::new();
        let what = "a window pane";
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((decode(what, &k[prefix.len() + 2..])?, decode(what, v)?));
            it.next();
        }
        it.status().map_err(|e| store.error(e))?;
        Ok(out)
    }
}

impl<K: StateKey, V: StateValue> Durable for WindowOp<K, V> {
    fn describe(&self) -> String {
        format!(
            "reduceByKeyAndWindow (window {}, slide {}, partitions {}, key {}, value {})",
            self.window,
            self.slide,
            self.agg.partitions(),
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        )
    }

    fn commit(&self, store: &Store, _: Time, wb: &mut CommitBatch<'_>) -> Result<()> {
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        let what = "a window pane";
        for (t, pane) in staged.panes.drain(..) {
            let prefix = pane_prefix(t);
            for (k, v) in pane {
                let mut key = prefix.clone();
                // Partition bytes are unused by reads; kept for a layout like the state's.
                key.extend_from_slice(&[0, 0]);
                key.extend(encode(what, &k)?);
                wb.put(self.id, &key, &encode(what, &v)?)?;
            }
        }
        if let Some(through) = staged.expire_through.take() {
            wb.delete_range(
                self.id,
                &pane_prefix(Time::from_millis(i64::MIN)),
                &pane_prefix(through + Duration::from_millis(1)),
            )?;
        }
        drop(staged);
        self.agg.commit(store, wb)
    }

    fn size(&self, store: &Store) -> Option<crate::metrics::StateInfo> {
        self.agg.size(
            store,
            format!(
                "#{} reduceByKeyAndWindow (window {}, slide {})",
                self.id, self.window, self.slide
            ),
        )
    }

    fn abort(&self, _: Time) {
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        staged.panes.clear();
        staged.expire_through = None;
        drop(staged);
        self.agg.abort();
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String> {
        if key.first() != Some(&TAG_PANE) {
            return self.agg.check(key, value);
        }
        // A pane's entry: `p <time> <0 0> <key>` -> the key's reduced value in the pane.
        let k = key.get(11..).ok_or("the pane key is cut short")?;
        check_decodes::<K>(k).map_err(|e| format!("the pane's key is {e}"))?;
        match value {
            Some(v) => check_decodes::<V>(v).map_err(|e| format!("the pane's value is {e}")),
            None => Ok(()),
        }
    }
}

/// An incremental window reduce: the window's value per key is in the checkpoint, updated by
/// the panes that leave and come in.
struct ReducedWindow<K, V, P> {
    reduced: DStream<(K, V)>,
    owner: Owner,
    op: Arc<WindowOp<K, V>>,
    f: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    inv: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    filter: Option<Filter<K, V>>,
    window: Duration,
    slide: Duration,
    partitioner: P,
    results: Mutex<BTreeMap<Time, Batch<(K, V)>>>,
}

/// A key's change in a window step: what left, what came in (each reduced with `f`).
type Delta<V> = (Option<V>, Option<V>);

impl<K: StateKey, V: StateValue, P: Partitioner<K> + Clone> ReducedWindow<K, V, P> {
    fn at(&self, t: Time) -> Result<Batch<(K, V)>> {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = results.get(&t) {
            return Ok(b.clone());
        }
        let store = open_store(&self.owner)?;
        let zero = self.owner.zero_time();
        let step = self.reduced.slide_duration();
        let prev_time = t - self.slide;
        // What came in: this slide's batches (in memory); they become panes with the commit.
        let mut new_panes = Vec::new();
        let mut at = prev_time + step;
        while at <= t {
            if let Some(b) = self.reduced.get_or_compute(at)? {
                new_panes.push((at, b.collect()));
            }
            at = at + step;
        }
        // What left: the panes of the batches that left the window, from the checkpoint.
        let mut old = Vec::new();
        let mut at = prev_time - self.window + step;
        while at <= t - self.window {
            if at > zero {
                old.extend(self.op.read_pane(&store, at)?);
            }
            at = at + step;
        }
        let n = self.op.agg.partitions();
        // Fixed seeds: the order in which the deltas are applied shapes the state cache's
        // order, which its scans (this window's output) follow; it must be the same in every run.
        let mut deltas: Vec<std::collections::HashMap<K, Delta<V>, FixedState>> = (0..n)
            .map(|_| std::collections::HashMap::with_hasher(shuffle_state()))
            .collect();
        let f = &self.f;
        let add = |slot: &mut Option<V>, v: V| {
            *slot = Some(match slot.take() {
                Some(a) => f(a, v),
                None => v,
            });
        };
        for (k, v) in old {
            let p = self.partitioner.partition(&k);
            add(&mut deltas[p].entry(k).or_insert((None, None)).0, v);
        }
        for (_, pane) in &new_panes {
            for (k, v) in pane.iter().cloned() {
                let p = self.partitioner.partition(&k);
                add(&mut deltas[p].entry(k).or_insert((None, None)).1, v);
            }
        }
        let (inv, filter, now) = (&self.inv, &self.filter, t.millis());
        let parts: Vec<Result<Vec<(K, V)>>> = deltas
            .into_par_iter()
            .enumerate()
            .map(|(p, deltas)| {
                let mut part = self.op.agg.part(&store, p)?;
                for (k, (left, came)) in deltas {
                    let prev = part.get(&k)?.map(|(v, _)| v.clone());
                    let value = match prev {
                        // Spark fails the job here; it means keys do not hash consistently.
                        None if came.is_none() => {
                            tracing::error!(
                                "Neither previous window has value for key, nor new values found. Are you sure your key class hashes consistently?"
                            );
                            None
                        }
                        None => came,
                        Some(mut v) => {
                            if let Some(o) = left {
                                v = inv(v, o);
                            }
                            if let Some(c) = came {
                                v = f(v, c);
                            }
                            Some(v)
                        }
                    };
                    let kv = value
                        .map(|v| (k.clone(), v))
                        .filter(|kv| filter.as_ref().is_none_or(|keep| keep(kv)));
                    match kv {
                        Some((k, v)) => part.put(k, v, now)?,
                        None => {
                            part.remove(&k)?;
                        }
                    }
                }
                Ok(part.scan()?.into_iter().map(|(k, v, _)| (k, v)).collect())
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for p in parts {
            out.push(p?);
        }
        {
            let mut staged = self.op.staged.lock().unwrap_or_else(|e| e.into_inner());
            staged.panes.extend(new_panes);
            staged.expire_through = Some(t - self.window);
        }
        let merged = Batch::from_partitions(out);
        results.clear();
        results.insert(t, merged.clone());
        Ok(merged)
    }
}
