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
//! The window and slide must be multiples of the parent's slide (Spark's messages); a violation
//! detaches the stream, and registering an output on it reports the error, before data flows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{DStream, Owner};
use crate::batch::{Batch, Data, Key};
use crate::error::{ContextError, Result};
use crate::partitioner::{HashPartitioner, Partitioner};
use crate::time::{Duration, Time};

type Filter<K, V> = Arc<dyn Fn(&(K, V)) -> bool + Send + Sync>;

impl<T: Data> DStream<T> {
    /// Checks a window over this stream and notes its length for batch jobs to drain; the
    /// problem, if any, detaches the window's stream.
    fn check_window(&self, window: Duration, slide: Duration) -> Option<ContextError> {
        if let Some(ctx) = self.owner().ctx.upgrade() {
            ctx.add_window(window);
        }
        window_problem(self.slide_duration(), window, slide)
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
        DStream::new_node_checked(
            &self.owner(),
            "window",
            vec![self.any()],
            slide,
            problem,
            move |t| Ok(Some(Batch::union_all(parent.slice(t - window + step, t)?))),
        )
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

    /// Every `slide`, the number of records in the last `window` (Spark's `countByWindow`):
    /// `0` for an empty window once records have been seen.
    pub fn count_by_window(&self, window: Duration, slide: Duration) -> DStream<i64> {
        self.map(|_| 1i64)
            .reduce_by_window_inv(|a, b| a + b, |a, b| a - b, window, slide)
    }
}

impl<T: Key> DStream<T> {
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
            .combine_by_key(
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
        // The previous window's start is `window + slide` back.
        reduced.remember(window + slide);
        let state = Arc::new(ReducedWindow {
            reduced: reduced.clone(),
            owner: self.owner(),
            f,
            inv,
            filter,
            window,
            slide,
            partitioner,
            results: Mutex::new(BTreeMap::new()),
        });
        DStream::new_node_checked(
            &self.owner(),
            "reduceByKeyAndWindow",
            vec![reduced.any()],
            slide,
            problem,
            move |t| state.at(t).map(Some),
        )
    }
}

/// The state of an incremental window reduce: the results of the windows computed so far
/// (only the last is kept, as the next window starts from it).
struct ReducedWindow<K, V, P> {
    reduced: DStream<(K, V)>,
    owner: Owner,
    f: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    inv: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    filter: Option<Filter<K, V>>,
    window: Duration,
    slide: Duration,
    partitioner: P,
    results: Mutex<BTreeMap<Time, Batch<(K, V)>>>,
}

/// A key's parts in a window step: the previous window's value, what left, what came in.
type Parts<V> = (Option<V>, Option<V>, Option<V>);

impl<K: Key, V: Data, P: Partitioner<K> + Clone> ReducedWindow<K, V, P> {
    fn at(&self, t: Time) -> Result<Batch<(K, V)>> {
        if let Some(b) = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&t)
        {
            return Ok(b.clone());
        }
        let zero = self.owner.zero_time();
        let step = self.reduced.slide_duration();
        let prev_time = t - self.slide;
        // The first window has no previous one; otherwise it is this stream's own batch (after a
        // missed one, computed again from its batches).
        let previous = if prev_time > zero {
            self.at(prev_time)?
        } else {
            Batch::empty()
        };
        let old = self
            .reduced
            .slice(prev_time - self.window + step, t - self.window)?;
        let new = self.reduced.slice(prev_time + step, t)?;

        let mut tagged: Vec<Batch<(K, (u8, V))>> = vec![previous.map(|(k, v)| (k, (0u8, v)))];
        tagged.extend(old.into_iter().map(|b| b.map(|(k, v)| (k, (1u8, v)))));
        tagged.extend(new.into_iter().map(|b| b.map(|(k, v)| (k, (2u8, v)))));
        let (f1, f2, f3) = (self.f.clone(), self.f.clone(), self.f.clone());
        let put = move |parts: &mut Parts<V>, (tag, v): (u8, V)| {
            let slot = match tag {
                0 => &mut parts.0,
                1 => &mut parts.1,
                _ => &mut parts.2,
            };
            *slot = Some(match slot.take() {
                Some(a) => f1(a, v),
                None => v,
            });
        };
        let put2 = put.clone();
        let merge = move |a: Option<V>, b: Option<V>| match (a, b) {
            (Some(a), Some(b)) => Some(f2(a, b)),
            (a, b) => a.or(b),
        };
        let parts = Batch::union_all(tagged).combine_by_key(
            move |tv| {
                let mut p = (None, None, None);
                put(&mut p, tv);
                p
            },
            move |mut p, tv| {
                put2(&mut p, tv);
                p
            },
            move |a: Parts<V>, b: Parts<V>| (merge(a.0, b.0), merge(a.1, b.1), merge(a.2, b.2)),
            self.partitioner.clone(),
        );
        let (inv, filter) = (self.inv.clone(), self.filter.clone());
        let merged = parts.flat_map(move |(k, (prev, old, new))| {
            let value = match prev {
                // Spark fails the job here; it means keys do not hash consistently.
                None if new.is_none() => {
                    log::error!(
                        "Neither previous window has value for key, nor new values found. Are you sure your key class hashes consistently?"
                    );
                    None
                }
                None => new,
                Some(mut v) => {
                    if let Some(o) = old {
                        v = inv(v, o);
                    }
                    if let Some(n) = new {
                        v = f3(v, n);
                    }
                    Some(v)
                }
            };
            let kv = value.map(|v| (k, v));
            kv.filter(|kv| filter.as_ref().is_none_or(|keep| keep(kv)))
        });
        let merged = merged.materialize();
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.retain(|k, _| *k >= prev_time);
        results.insert(t, merged.clone());
        Ok(merged)
    }
}
