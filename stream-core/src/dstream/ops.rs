//! Single-stream operations: Spark's `DStream` methods other than windows and state.

use std::sync::Arc;

use super::DStream;
use crate::batch::{Batch, Data, Key};

impl<T: Data> DStream<T> {
    /// Applies `f` to every record (Spark's `map`).
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DStream<U> {
        let f = Arc::new(f);
        self.lift_guarded("map", move |b, guarded| {
            let f = f.clone();
            Ok(match guarded {
                None => b.map(move |x| f(x)),
                Some(g) => b.flat_map(move |x| g.call(x, |x| f(x))),
            })
        })
    }

    /// Applies `f` to every record and flattens the results (`flatMap`).
    pub fn flat_map<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> DStream<U> {
        let f = Arc::new(f);
        self.lift_guarded("flatMap", move |b, guarded| {
            let f = f.clone();
            Ok(match guarded {
                None => b.flat_map(move |x| f(x)),
                // The records are collected inside the guard: a lazy iterator may panic too.
                Some(g) => b.flat_map(move |x| {
                    g.call(x, |x| f(x).into_iter().collect::<Vec<U>>())
                        .unwrap_or_default()
                }),
            })
        })
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DStream<T> {
        let f = Arc::new(f);
        self.lift_guarded("filter", move |b, guarded| {
            let f = f.clone();
            Ok(match guarded {
                None => b.filter(move |x| f(x)),
                Some(g) => b.filter(move |x| g.call(x.clone(), |x| f(&x)).unwrap_or(false)),
            })
        })
    }

    /// Each partition of each batch becomes one record holding the partition's records.
    pub fn glom(&self) -> DStream<Vec<T>> {
        self.lift("glom", |b, _| Ok(b.glom()))
    }

    /// Applies `f` to each partition as a whole (`mapPartitions`).
    pub fn map_partitions<U: Data, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(std::vec::IntoIter<T>) -> I + Send + Sync + 'static,
    ) -> DStream<U> {
        let f = Arc::new(f);
        self.lift("mapPartitions", move |b, _| {
            let f = f.clone();
            Ok(b.map_partitions(move |it| f(it)))
        })
    }

    /// Redistributes every batch over `num_partitions` partitions.
    pub fn repartition(&self, num_partitions: usize) -> DStream<T> {
        self.lift("repartition", move |b, _| Ok(b.repartition(num_partitions)))
    }

    /// One record per batch: the number of records in it (`0` for an empty batch), as Spark's
    /// `count()` gives a `Long`.
    pub fn count(&self) -> DStream<i64> {
        self.lift("count", |b, _| {
            Ok(Batch::from_vec(vec![b.count() as i64], 1))
        })
    }

    /// One record per non-empty batch: its records reduced with the associative `f`; an empty
    /// batch gives an empty batch.
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DStream<T> {
        self.lift("reduce", move |b, _| {
            Ok(Batch::from_vec(b.reduce(&f).into_iter().collect(), 1))
        })
    }
}

impl<T: Key> DStream<T> {
    /// How often each distinct record occurs in each batch (`countByValue`), over the context's
    /// default number of partitions.
    pub fn count_by_value(&self) -> DStream<(T, i64)> {
        let n = self.default_partitions();
        self.count_by_value_with_partitions(n)
    }

    /// `count_by_value` into `num_partitions` partitions.
    pub fn count_by_value_with_partitions(&self, num_partitions: usize) -> DStream<(T, i64)> {
        self.lift("countByValue", move |b, _| {
            Ok(b.count_by_value(num_partitions))
        })
    }
}

impl<T: Data> DStream<T> {
    /// The context's parallelism: the default partition count of shuffles, as Spark uses
    /// `defaultParallelism`.
    pub(crate) fn default_partitions(&self) -> usize {
        self.context().map(|c| c.parallelism()).unwrap_or(1)
    }
}
