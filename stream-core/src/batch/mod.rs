//! `Batch<T>`: the data of one batch interval, a partitioned collection (Spark's RDD).
//!
//! A batch is a small graph of lazy nodes over materialized partitions. Consecutive narrow
//! operations (map, filter, flat_map, map_values, ...) are fused: when an action or a shuffle runs
//! partition `p`, the records of `p` flow through every narrow operator in one pass. Each operator
//! loops over its input with its closure statically dispatched and pushes into a reused buffer of
//! at most [`CHUNK`] records, which it hands on when full; dynamic dispatch happens once per chunk
//! and operator, never per record, and no operator builds a collection of the whole partition.
//!
//! Work is parallel below the partition: a partition in memory is held as segments of at most
//! [`SEGMENT`] records, and actions and shuffles run one task per segment of every partition on
//! rayon's pool, so a core that stalls has its work stolen instead of holding up the batch.
//! Partitions keep their meaning (key placement, `map_partitions`, `glom`). Shuffles (the pair operations in
//! [`pair`](self)) partition by key hash and combine on the map side.
//!
//! Transformations consume `self` (a `Batch` is an `Arc`, cloning is cheap). When the engine owns
//! the only reference to a chain over materialized data, the records are moved through the chain
//! instead of cloned; a clone anywhere (a cache, a user's copy) makes reads copy instead.

mod pair;

pub use pair::{CoGrouped, FullOuterJoined};
mod shuffle;

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

/// Records carried by a DStream: cloneable, and shareable between the worker threads.
pub trait Data: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Data for T {}

/// Keys of pair operations: data that can be hashed and compared.
pub trait Key: Data + std::hash::Hash + Eq {}
impl<T: Data + std::hash::Hash + Eq> Key for T {}

/// The largest number of records an operator buffers before handing them on.
pub const CHUNK: usize = 1024;

/// The largest number of records of one parallel task: partitions in memory are held as
/// segments of at most this size, and each segment of each partition is a task of its own.
pub const SEGMENT: usize = 1 << 16;

/// Receives the records of one partition, a chunk at a time. `push` consumes the chunk's records
/// (the caller clears whatever is left).
pub(crate) trait Sink<T> {
    fn push(&mut self, chunk: &mut Vec<T>);
}

pub(crate) struct FnSink<F>(pub F);

impl<T, F: FnMut(&mut Vec<T>)> Sink<T> for FnSink<F> {
    #[inline]
    fn push(&mut self, chunk: &mut Vec<T>) {
        (self.0)(chunk)
    }
}

/// A node of a batch: a partitioned source of records. A partition is a sequence of segments,
/// the unit of parallel work.
pub(crate) trait Partitions<T>: Send + Sync {
    fn num_partitions(&self) -> usize;
    /// How many segments partition `p` has; its records are those of its segments, in order.
    fn num_segments(&self, p: usize) -> usize;
    /// Streams segment `s` of partition `p` into `sink`. With `take`, materialized records are
    /// moved out; the caller passes `take` only when [`Batch::is_exclusive`] held for the whole
    /// chain.
    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>);
    /// Streams all of partition `p` into `sink`.
    fn push_partition(&self, p: usize, take: bool, sink: &mut dyn Sink<T>) {
        for s in 0..self.num_segments(p) {
            self.push_segment(p, s, take, sink);
        }
    }
    /// True when everything below this node is reachable only through it.
    fn exclusive(&self) -> bool;
    /// Records already in memory, when this node is materialized.
    fn materialized_len(&self) -> Option<usize> {
        None
    }
}

/// The data of one batch interval: a partitioned collection, like Spark's RDD.
///
/// ```
/// use stream_core::Batch;
/// let b = Batch::from_vec(vec![1, 2, 3, 4], 2);
/// assert_eq!(b.partitions(), vec![vec![1, 2], vec![3, 4]]);
/// let doubled = b.map(|x| x * 2).filter(|x| *x > 2);
/// assert_eq!(doubled.collect(), vec![4, 6, 8]);
/// ```
pub struct Batch<T> {
    pub(crate) inner: Arc<dyn Partitions<T>>,
}

impl<T> Clone for Batch<T> {
    fn clone(&self) -> Self {
        Batch {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("partitions", &self.inner.num_partitions())
            .finish()
    }
}

/// Partitions held in memory, each as a list of segments (at least one, maybe empty).
pub(crate) struct Materialized<T> {
    parts: Vec<Vec<RwLock<Vec<T>>>>,
    len: usize,
}

/// Splits `v` into segments of at most `SEGMENT` records, moving each record once (and not at
/// all when it fits in one).
fn segment<T>(v: Vec<T>) -> Vec<RwLock<Vec<T>>> {
    if v.len() <= SEGMENT {
        return vec![RwLock::new(v)];
    }
    let mut segments = Vec::with_capacity(v.len().div_ceil(SEGMENT));
    let mut it = v.into_iter();
    loop {
        let seg: Vec<T> = it.by_ref().take(SEGMENT).collect();
        if seg.is_empty() {
            return segments;
        }
        segments.push(RwLock::new(seg));
    }
}

impl<T: Data> Partitions<T> for Materialized<T> {
    fn num_partitions(&self) -> usize {
        self.parts.len()
    }

    fn num_segments(&self, p: usize) -> usize {
        self.parts[p].len()
    }

    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>) {
        let seg = &self.parts[p][s];
        if take {
            let mut v = std::mem::take(&mut *seg.write().unwrap_or_else(|e| e.into_inner()));
            if !v.is_empty() {
                sink.push(&mut v);
            }
            return;
        }
        let records = seg.read().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::with_capacity(records.len().min(CHUNK));
        for c in records.chunks(CHUNK) {
            buf.extend_from_slice(c);
            sink.push(&mut buf);
            buf.clear();
        }
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn materialized_len(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// A fused narrow operator: `f` turns one input record into zero or more outputs.
struct Narrow<U, T, F> {
    parent: Batch<U>,
    f: F,
    _types: PhantomData<fn(U) -> T>,
}

struct NarrowSink<'a, T, F> {
    f: &'a F,
    buf: Vec<T>,
    down: &'a mut dyn Sink<T>,
}

impl<U, T, F: Fn(U, &mut Vec<T>)> Sink<U> for NarrowSink<'_, T, F> {
    #[inline]
    fn push(&mut self, chunk: &mut Vec<U>) {
        for x in chunk.drain(..) {
            (self.f)(x, &mut self.buf);
            if self.buf.len() >= CHUNK {
                self.down.push(&mut self.buf);
                self.buf.clear();
            }
        }
    }
}

impl<U: Data, T: Data, F: Fn(U, &mut Vec<T>) + Send + Sync + 'static> Partitions<T>
    for Narrow<U, T, F>
{
    fn num_partitions(&self) -> usize {
        self.parent.inner.num_partitions()
    }

    fn num_segments(&self, p: usize) -> usize {
        self.parent.inner.num_segments(p)
    }

    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>) {
        let mut ns = NarrowSink {
            f: &self.f,
            buf: Vec::with_capacity(CHUNK),
            down: sink,
        };
        self.parent.inner.push_segment(p, s, take, &mut ns);
        if !ns.buf.is_empty() {
            ns.down.push(&mut ns.buf);
        }
    }

    fn exclusive(&self) -> bool {
        self.parent.is_exclusive()
    }
}

/// A fused filter: drops records from the incoming chunk in place and hands the same chunk on,
/// so surviving records are not copied.
struct Filtered<T, F> {
    parent: Batch<T>,
    f: F,
}

struct FilterSink<'a, T, F> {
    f: &'a F,
    down: &'a mut dyn Sink<T>,
}

impl<T, F: Fn(&T) -> bool> Sink<T> for FilterSink<'_, T, F> {
    #[inline]
    fn push(&mut self, chunk: &mut Vec<T>) {
        chunk.retain(|x| (self.f)(x));
        if !chunk.is_empty() {
            self.down.push(chunk);
        }
    }
}

impl<T: Data, F: Fn(&T) -> bool + Send + Sync + 'static> Partitions<T> for Filtered<T, F> {
    fn num_partitions(&self) -> usize {
        self.parent.inner.num_partitions()
    }

    fn num_segments(&self, p: usize) -> usize {
        self.parent.inner.num_segments(p)
    }

    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>) {
        let mut fs = FilterSink {
            f: &self.f,
            down: sink,
        };
        self.parent.inner.push_segment(p, s, take, &mut fs);
    }

    fn exclusive(&self) -> bool {
        self.parent.is_exclusive()
    }
}

/// An operator that needs a whole partition at once (map_partitions, glom): one segment.
struct WholePartition<U, T, F> {
    parent: Batch<U>,
    f: F,
    _types: PhantomData<fn(U) -> T>,
}

impl<U: Data, T: Data, F: Fn(usize, Vec<U>) -> Vec<T> + Send + Sync + 'static> Partitions<T>
    for WholePartition<U, T, F>
{
    fn num_partitions(&self) -> usize {
        self.parent.inner.num_partitions()
    }

    fn num_segments(&self, _: usize) -> usize {
        1
    }

    fn push_segment(&self, p: usize, _: usize, take: bool, sink: &mut dyn Sink<T>) {
        let mut input = Vec::new();
        self.parent
            .inner
            .push_partition(p, take, &mut FnSink(|c: &mut Vec<U>| input.append(c)));
        let mut out = (self.f)(p, input);
        if !out.is_empty() {
            sink.push(&mut out);
        }
    }

    fn exclusive(&self) -> bool {
        self.parent.is_exclusive()
    }
}

/// The partitions of several batches, one after another (Spark's UnionRDD).
struct Union<T> {
    parents: Vec<Batch<T>>,
}

impl<T: Data> Union<T> {
    /// The batch holding union partition `p`, and its index there.
    fn locate(&self, mut p: usize) -> Option<(&Batch<T>, usize)> {
        for b in &self.parents {
            let n = b.inner.num_partitions();
            if p < n {
                return Some((b, p));
            }
            p -= n;
        }
        None
    }
}

impl<T: Data> Partitions<T> for Union<T> {
    fn num_partitions(&self) -> usize {
        self.parents.iter().map(|b| b.inner.num_partitions()).sum()
    }

    fn num_segments(&self, p: usize) -> usize {
        self.locate(p).map_or(0, |(b, q)| b.inner.num_segments(q))
    }

    fn push_segment(&self, p: usize, s: usize, take: bool, sink: &mut dyn Sink<T>) {
        if let Some((b, q)) = self.locate(p) {
            b.inner.push_segment(q, s, take, sink);
        }
    }

    fn exclusive(&self) -> bool {
        self.parents.iter().all(Batch::is_exclusive)
    }
}

impl<T: Data> Batch<T> {
    /// A batch over partitions already in memory.
    pub fn from_partitions(parts: Vec<Vec<T>>) -> Self {
        let len = parts.iter().map(Vec::len).sum();
        Batch {
            inner: Arc::new(Materialized {
                parts: parts.into_iter().map(segment).collect(),
                len,
            }),
        }
    }

    /// Splits `data` into `num_partitions` contiguous ranges, as Spark's `parallelize` does:
    /// partition `i` holds positions `[i*n/p, (i+1)*n/p)`. Zero partitions is taken as one.
    pub fn from_vec(data: Vec<T>, num_partitions: usize) -> Self {
        Batch::from_partitions(split_contiguous(data, num_partitions.max(1)))
    }

    /// A batch with no partitions and no records (Spark's `emptyRDD`).
    pub fn empty() -> Self {
        Batch::from_partitions(Vec::new())
    }

    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.inner.num_partitions()
    }

    /// True when the engine may move records out of this batch: no one else holds it or any
    /// node below it.
    pub(crate) fn is_exclusive(&self) -> bool {
        Arc::strong_count(&self.inner) == 1 && self.inner.exclusive()
    }

    /// Every `(partition, segment)` of the batch: the parallel tasks of its folds.
    fn tasks(&self) -> Vec<(usize, usize)> {
        (0..self.num_partitions())
            .flat_map(|p| (0..self.inner.num_segments(p)).map(move |s| (p, s)))
            .collect()
    }

    /// Folds segment `s` of partition `p` into `acc`.
    fn fold_segment<A>(
        &self,
        (p, s): (usize, usize),
        take: bool,
        acc: &mut A,
        step: &impl Fn(&mut A, &mut Vec<T>),
    ) {
        let mut sink = FnSink(|c: &mut Vec<T>| step(acc, c));
        self.inner.push_segment(p, s, take, &mut sink);
    }

    /// Runs every segment of every partition as a parallel task: `init(p)` makes a task's
    /// accumulator, `step` folds chunks into it. Returns `(partition, accumulator)` per segment,
    /// in partition then segment order (empty partitions yield no task).
    pub(crate) fn par_fold<A, I, S>(&self, take: bool, init: I, step: S) -> Vec<(usize, A)>
    where
        A: Send,
        I: Fn(usize) -> A + Sync + Send,
        S: Fn(&mut A, &mut Vec<T>) + Sync + Send,
    {
        let tasks = self.tasks();
        let run = |&task: &(usize, usize)| {
            let mut acc = init(task.0);
            self.fold_segment(task, take, &mut acc, &step);
            (task.0, acc)
        };
        if tasks.len() <= 1 {
            tasks.iter().map(run).collect()
        } else {
            tasks.par_iter().map(run).collect()
        }
    }

    /// Like `par_fold`, but an accumulator may take in several consecutive segments (rayon's
    /// `fold` keeps one per contiguous run of tasks on a thread), so there are about as many
    /// accumulators as threads while stalled work is still stolen. The accumulators come in
    /// task order. For folds whose accumulators merge (the shuffle's map side).
    pub(crate) fn par_fold_runs<A, I, S>(&self, take: bool, init: I, step: S) -> Vec<A>
    where
        A: Send,
        I: Fn() -> A + Sync + Send,
        S: Fn(&mut A, &mut Vec<T>) + Sync + Send,
    {
        self.tasks()
            .par_iter()
            .fold(&init, |mut acc, &task| {
                self.fold_segment(task, take, &mut acc, &step);
                acc
            })
            .collect()
    }

    /// The records of every partition, computed in parallel; segments of a partition stay
    /// separate (they become the segments of a materialized batch).
    fn segments(&self, take: bool) -> Vec<Vec<Vec<T>>> {
        let mut parts: Vec<Vec<Vec<T>>> = (0..self.num_partitions()).map(|_| Vec::new()).collect();
        for (p, seg) in self.par_fold(take, |_| Vec::new(), |acc, c| acc.append(c)) {
            parts[p].push(seg);
        }
        parts
    }

    /// Materializes the batch: every partition computed once and kept in memory.
    pub(crate) fn materialize(self) -> Batch<T> {
        if self.inner.materialized_len().is_some() {
            return self;
        }
        let take = self.is_exclusive();
        let parts = self.segments(take);
        let len = parts.iter().flatten().map(Vec::len).sum();
        let parts = parts
            .into_iter()
            .map(|segs| match segs.is_empty() {
                true => vec![RwLock::new(Vec::new())],
                false => segs.into_iter().map(RwLock::new).collect(),
            })
            .collect();
        Batch {
            inner: Arc::new(Materialized { parts, len }),
        }
    }

    /// Records held in memory, when the batch is materialized (used for input-size metrics).
    pub(crate) fn known_len(&self) -> Option<usize> {
        self.inner.materialized_len()
    }

    fn narrow<U: Data>(self, f: impl Fn(T, &mut Vec<U>) + Send + Sync + 'static) -> Batch<U> {
        Batch {
            inner: Arc::new(Narrow {
                parent: self,
                f,
                _types: PhantomData,
            }),
        }
    }

    fn whole_partition<U: Data>(
        self,
        f: impl Fn(usize, Vec<T>) -> Vec<U> + Send + Sync + 'static,
    ) -> Batch<U> {
        Batch {
            inner: Arc::new(WholePartition {
                parent: self,
                f,
                _types: PhantomData,
            }),
        }
    }

    // ---- narrow transformations -------------------------------------------------------------

    /// Applies `f` to every record.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Batch<U> {
        self.narrow(move |x, out| out.push(f(x)))
    }

    /// Applies `f` to every record and flattens what it returns.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Batch<U> {
        self.narrow(move |x, out| out.extend(f(x)))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Batch<T> {
        Batch {
            inner: Arc::new(Filtered { parent: self, f }),
        }
    }

    /// Applies `f` to each partition as a whole.
    ///
    /// ```
    /// use stream_core::Batch;
    /// let sums = Batch::from_vec(vec![1, 2, 3, 4], 2).map_partitions(|it| [it.sum::<i32>()]);
    /// assert_eq!(sums.collect(), vec![3, 7]);
    /// ```
    pub fn map_partitions<U: Data, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(std::vec::IntoIter<T>) -> I + Send + Sync + 'static,
    ) -> Batch<U> {
        self.whole_partition(move |_, v| f(v.into_iter()).into_iter().collect())
    }

    /// Like `map_partitions`, with the partition's index.
    pub fn map_partitions_with_index<U: Data, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(usize, std::vec::IntoIter<T>) -> I + Send + Sync + 'static,
    ) -> Batch<U> {
        self.whole_partition(move |p, v| f(p, v.into_iter()).into_iter().collect())
    }

    /// Turns each partition into one record holding the partition's records.
    pub fn glom(self) -> Batch<Vec<T>> {
        self.whole_partition(|_, v| vec![v])
    }

    /// The partitions of `self` followed by those of `other`.
    pub fn union(self, other: Batch<T>) -> Batch<T> {
        Batch::union_all(vec![self, other])
    }

    /// The partitions of every batch, in order.
    pub fn union_all(batches: Vec<Batch<T>>) -> Batch<T> {
        Batch {
            inner: Arc::new(Union { parents: batches }),
        }
    }

    // ---- wide transformations ---------------------------------------------------------------

    /// Redistributes the records over `num_partitions` partitions (round robin, a shuffle).
    pub fn repartition(self, num_partitions: usize) -> Batch<T> {
        let n = num_partitions.max(1);
        let take = self.is_exclusive();
        let outputs = self.par_fold(
            take,
            |p| {
                (
                    p,
                    0usize,
                    (0..n).map(|_| Vec::new()).collect::<Vec<Vec<T>>>(),
                )
            },
            |(p, i, outs), c| {
                for x in c.drain(..) {
                    outs[(*p + *i) % n].push(x);
                    *i += 1;
                }
            },
        );
        let mut parts: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
        for (_, (_, _, outs)) in outputs {
            for (r, mut v) in outs.into_iter().enumerate() {
                parts[r].append(&mut v);
            }
        }
        Batch::from_partitions(parts)
    }

    /// Sorts by `key` (stable), into `num_partitions` contiguous ranges.
    pub fn sort_by<K: Ord>(
        self,
        key: impl Fn(&T) -> K,
        ascending: bool,
        num_partitions: usize,
    ) -> Batch<T> {
        let mut all = self.into_vec();
        if ascending {
            all.sort_by_key(|x| key(x));
        } else {
            all.sort_by_key(|x| std::cmp::Reverse(key(x)));
        }
        Batch::from_vec(all, num_partitions)
    }

    // ---- actions ----------------------------------------------------------------------------

    /// All records, in partition order.
    pub fn collect(&self) -> Vec<T> {
        self.partitions().into_iter().flatten().collect()
    }

    /// All records, moved out when no one else holds this batch.
    pub fn into_vec(self) -> Vec<T> {
        let take = self.is_exclusive();
        let segments = self.par_fold(take, |_| Vec::new(), |acc, c| acc.append(c));
        let mut all = Vec::with_capacity(segments.iter().map(|(_, s)| s.len()).sum());
        for (_, mut s) in segments {
            all.append(&mut s);
        }
        all
    }

    /// The records of each partition (Spark's `glom().collect()`).
    pub fn partitions(&self) -> Vec<Vec<T>> {
        Self::join_segments(self.segments(false))
    }

    /// The records of each partition, moved out when no one else holds this batch.
    pub fn into_partitions(self) -> Vec<Vec<T>> {
        let take = self.is_exclusive();
        Self::join_segments(self.segments(take))
    }

    fn join_segments(parts: Vec<Vec<Vec<T>>>) -> Vec<Vec<T>> {
        parts
            .into_iter()
            .map(|segs| segs.into_iter().flatten().collect())
            .collect()
    }

    /// The number of records.
    pub fn count(&self) -> usize {
        if let Some(n) = self.inner.materialized_len() {
            return n;
        }
        self.par_fold(
            false,
            |_| 0usize,
            |n, c| {
                *n += c.len();
                c.clear();
            },
        )
        .into_iter()
        .map(|(_, n)| n)
        .sum()
    }

    /// True when the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.take(1).is_empty()
    }

    /// The first `n` records in partition order, computing partitions one at a time until it has
    /// them (Spark's `take`).
    pub fn take(&self, n: usize) -> Vec<T> {
        let mut out = Vec::new();
        for p in 0..self.num_partitions() {
            if out.len() >= n {
                break;
            }
            self.inner.push_partition(
                p,
                false,
                &mut FnSink(|c: &mut Vec<T>| {
                    let room = n.saturating_sub(out.len());
                    out.extend(c.drain(..).take(room));
                }),
            );
        }
        out
    }

    /// The first record, if any.
    pub fn first(&self) -> Option<T> {
        self.take(1).pop()
    }

    /// Reduces all records with the associative function `f`; `None` for an empty batch.
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync) -> Option<T> {
        let partials = self.par_fold(
            false,
            |_| None::<T>,
            |acc, c| {
                for x in c.drain(..) {
                    *acc = Some(match acc.take() {
                        Some(a) => f(a, x),
                        None => x,
                    });
                }
            },
        );
        partials.into_iter().filter_map(|(_, r)| r).reduce(&f)
    }

    /// Calls `f` on every record, in parallel.
    pub fn foreach(&self, f: impl Fn(T) + Send + Sync) {
        self.par_fold(
            false,
            |_| (),
            |_, c| {
                for x in c.drain(..) {
                    f(x)
                }
            },
        );
    }

    /// The `n` largest records by `key`, largest first.
    pub fn top_by<K: Ord>(&self, n: usize, key: impl Fn(&T) -> K + Send + Sync) -> Vec<T> {
        let mut all = self.collect();
        all.sort_by_key(|x| std::cmp::Reverse(key(x)));
        all.truncate(n);
        all
    }
}

impl<T: Data> From<Vec<T>> for Batch<T> {
    /// A one-partition batch.
    fn from(v: Vec<T>) -> Self {
        Batch::from_partitions(vec![v])
    }
}

/// Spark's `parallelize` slicing: partition `i` holds positions `[i*n/p, (i+1)*n/p)`.
pub(crate) fn split_contiguous<T>(data: Vec<T>, p: usize) -> Vec<Vec<T>> {
    let n = data.len();
    let mut out: Vec<Vec<T>> = Vec::with_capacity(p);
    let mut it = data.into_iter();
    for i in 0..p {
        let (start, end) = (i * n / p, (i + 1) * n / p);
        out.push(it.by_ref().take(end - start).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn contiguous_split_matches_spark_parallelize() {
        assert_eq!(
            split_contiguous(vec![1, 2, 3, 4, 5], 2),
            vec![vec![1, 2], vec![3, 4, 5]]
        );
        assert_eq!(
            split_contiguous(Vec::<i32>::new(), 2),
            vec![Vec::<i32>::new(), vec![]]
        );
        assert_eq!(split_contiguous(vec![1], 3), vec![vec![], vec![], vec![1]]);
    }

    #[test]
    fn fused_chain_buffers_at_most_a_chunk() {
        let seen_max = Arc::new(AtomicUsize::new(0));
        let data: Vec<u64> = (0..10 * CHUNK as u64).collect();
        let m = seen_max.clone();
        let b = Batch::from_vec(data, 1)
            .map(|x| x + 1)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| [x, x]);
        b.par_fold(
            false,
            |_| (),
            move |_, c| {
                m.fetch_max(c.len(), Ordering::Relaxed);
                c.clear();
            },
        );
        assert_eq!(seen_max.load(Ordering::Relaxed), CHUNK);
    }

    #[test]
    fn exclusive_chains_move_shared_ones_copy() {
        let src = Batch::from_vec(vec!["a".to_string(), "b".to_string()], 1);
        let shared = src.clone();
        let out = src.map(|s| s + "!").into_vec();
        assert_eq!(out, vec!["a!", "b!"]);
        // `shared` still sees its records: the chain copied because the source was shared.
        assert_eq!(shared.collect(), vec!["a", "b"]);
        let lone = Batch::from_vec(vec![1, 2, 3], 2);
        assert!(lone.is_exclusive());
        let mapped = lone.map(|x| x * 10);
        assert!(mapped.is_exclusive());
        assert_eq!(mapped.into_vec(), vec![10, 20, 30]);
    }

    #[test]
    fn partitions_larger_than_a_segment_keep_order_and_meaning() {
        let n = 3 * SEGMENT + 123;
        let data: Vec<u64> = (0..n as u64).collect();
        let model: Vec<u64> = data.iter().map(|x| x * 2).filter(|x| x % 3 != 0).collect();
        for shared in [false, true] {
            let src = Batch::from_vec(data.clone(), 2);
            assert_eq!(src.inner.num_segments(0), 2);
            assert_eq!(src.inner.num_segments(1), 2);
            let keep = shared.then(|| src.clone());
            let chain = src.map(|x| x * 2).filter(|x| x % 3 != 0);
            assert_eq!(chain.count(), model.len());
            let m = chain.clone().materialize();
            assert_eq!(m.collect(), model);
            assert_eq!(chain.into_vec(), model, "shared = {shared}");
            if let Some(k) = keep {
                assert_eq!(k.count(), n);
            }
        }
        // Whole-partition operators still see each partition whole, in order.
        let lens = Batch::from_vec(data.clone(), 2)
            .map_partitions(|it| [it.count()])
            .collect();
        assert_eq!(lens, vec![n / 2, n - n / 2]);
        let sums = Batch::from_vec(data, 2).reduce(|a, b| a + b);
        assert_eq!(sums, Some((n as u64 - 1) * n as u64 / 2));
    }

    #[test]
    fn take_reduce_union_repartition() {
        let b = Batch::from_vec((1..=10).collect::<Vec<i32>>(), 3);
        assert_eq!(b.take(4), vec![1, 2, 3, 4]);
        assert_eq!(b.reduce(|a, b| a + b), Some(55));
        assert_eq!(Batch::<i32>::empty().reduce(|a, b| a + b), None);
        let u = b.clone().union(Batch::from_vec(vec![11, 12], 2));
        assert_eq!(u.num_partitions(), 5);
        assert_eq!(u.collect(), (1..=12).collect::<Vec<_>>());
        let r = b.repartition(4);
        assert_eq!(r.num_partitions(), 4);
        let mut all = r.collect();
        all.sort();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
    }
}
