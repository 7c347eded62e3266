//! Key-value operations (Spark's `PairDStreamFunctions`), each with the variants Spark has: the
//! context's default partition count, an explicit count, or an explicit partitioner.

use std::sync::Arc;

use super::DStream;
use crate::batch::{Data, Key};
use crate::partitioner::{HashPartitioner, Partitioner};

impl<K: Key, V: Data> DStream<(K, V)> {
    fn default_partitioner(&self) -> HashPartitioner {
        HashPartitioner::at_least_one(self.default_partitions())
    }

    /// Groups the values of each key in each batch (`groupByKey`).
    pub fn group_by_key(&self) -> DStream<(K, Vec<V>)> {
        self.group_by_key_with_partitioner(self.default_partitioner())
    }

    /// `group_by_key` into `num_partitions` partitions.
    pub fn group_by_key_with_partitions(&self, num_partitions: usize) -> DStream<(K, Vec<V>)> {
        self.group_by_key_with_partitioner(HashPartitioner::at_least_one(num_partitions))
    }

    /// `group_by_key` with an explicit partitioner.
    pub fn group_by_key_with_partitioner<P: Partitioner<K> + Clone>(
        &self,
        partitioner: P,
    ) -> DStream<(K, Vec<V>)> {
        self.lift("groupByKey", move |b, _| {
            Ok(b.group_by_key_with(partitioner.clone()))
        })
    }

    /// Merges the values of each key in each batch with the associative `f` (`reduceByKey`).
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![("a", 1), ("a", 2), ("b", 5)]]);
    /// let out = tc.collect(&s.reduce_by_key(|x, y| x + y)).unwrap();
    /// tc.run(1).unwrap();
    /// let mut got = out.batch(0);
    /// got.sort();
    /// assert_eq!(got, vec![("a", 3), ("b", 5)]);
    /// ```
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> DStream<(K, V)> {
        self.reduce_by_key_with_partitioner(f, self.default_partitioner())
    }

    /// `reduce_by_key` into `num_partitions` partitions.
    pub fn reduce_by_key_with_partitions(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        num_partitions: usize,
    ) -> DStream<(K, V)> {
        self.reduce_by_key_with_partitioner(f, HashPartitioner::at_least_one(num_partitions))
    }

    /// `reduce_by_key` with an explicit partitioner.
    pub fn reduce_by_key_with_partitioner<P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        partitioner: P,
    ) -> DStream<(K, V)> {
        self.lift("reduceByKey", move |b, _| {
            Ok(b.reduce_by_key_with(&f, partitioner.clone()))
        })
    }

    /// Spark's `combineByKey`: `create` makes a combiner of a key's first value, `merge_value`
    /// folds in more values, `merge_combiners` merges combiners across partitions; into the
    /// context's default number of partitions, as `reduce_by_key`.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![("a", 1), ("a", 3), ("b", 5)]]);
    /// // The mean of each key's values: (sum, count), then divided.
    /// let sums = s.combine_by_key(|v| (v, 1), |(s, n), v| (s + v, n + 1), |(s, n), (t, m)| (s + t, n + m));
    /// let out = tc.collect(&sums.map(|(k, (s, n))| (k, s / n))).unwrap();
    /// tc.run(1).unwrap();
    /// let mut got = out.batch(0);
    /// got.sort();
    /// assert_eq!(got, vec![("a", 2), ("b", 5)]);
    /// ```
    pub fn combine_by_key<C: Data>(
        &self,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
    ) -> DStream<(K, C)> {
        let p = self.default_partitioner();
        self.combine_by_key_with_partitioner(create, merge_value, merge_combiners, p)
    }

    /// `combine_by_key` into `num_partitions` partitions.
    pub fn combine_by_key_with_partitions<C: Data>(
        &self,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
        num_partitions: usize,
    ) -> DStream<(K, C)> {
        let p = HashPartitioner::at_least_one(num_partitions);
        self.combine_by_key_with_partitioner(create, merge_value, merge_combiners, p)
    }

    /// `combine_by_key` with an explicit partitioner (Spark's only form of it on a DStream).
    pub fn combine_by_key_with_partitioner<C: Data, P: Partitioner<K> + Clone>(
        &self,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
        partitioner: P,
    ) -> DStream<(K, C)> {
        self.lift("combineByKey", move |b, _| {
            Ok(b.combine_by_key(&create, &merge_value, &merge_combiners, partitioner.clone()))
        })
    }

    /// Applies `f` to every value, keeping the keys (`mapValues`).
    pub fn map_values<W: Data>(
        &self,
        f: impl Fn(V) -> W + Send + Sync + 'static,
    ) -> DStream<(K, W)> {
        let f = Arc::new(f);
        self.lift_guarded("mapValues", move |b, guarded| {
            let f = f.clone();
            Ok(match guarded {
                None => b.map_values(move |v| f(v)),
                // A dead letter holds the whole pair.
                Some(g) => b.flat_map(move |kv| g.call(kv, |(k, v)| (k, f(v)))),
            })
        })
    }

    /// Applies `f` to every value and pairs each result with the key (`flatMapValues`).
    pub fn flat_map_values<W: Data, I: IntoIterator<Item = W>>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> DStream<(K, W)> {
        let f = Arc::new(f);
        self.lift_guarded("flatMapValues", move |b, guarded| {
            let f = f.clone();
            Ok(match guarded {
                None => b.flat_map_values(move |v| f(v)),
                Some(g) => b.flat_map(move |kv| {
                    g.call(kv, |(k, v)| {
                        f(v).into_iter().map(|w| (k.clone(), w)).collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                }),
            })
        })
    }
}

/// Generates the four variants of a two-stream key operation: default partitions, a partition
/// count, and an explicit partitioner.
macro_rules! binary_pair_op {
    ($(#[$doc:meta])* $name:ident, $with_n:ident, $with_p:ident, $spark:literal, $batch_op:ident, $out:ty) => {
        impl<K: Key, V: Data> DStream<(K, V)> {
            $(#[$doc])*
            pub fn $name<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, $out)> {
                self.$with_p(other, self.default_partitioner())
            }

            #[doc = concat!("`", stringify!($name), "` into `num_partitions` partitions.")]
            pub fn $with_n<W: Data>(&self, other: &DStream<(K, W)>, num_partitions: usize) -> DStream<(K, $out)> {
                self.$with_p(other, HashPartitioner::at_least_one(num_partitions))
            }

            #[doc = concat!("`", stringify!($name), "` with an explicit partitioner.")]
            pub fn $with_p<W: Data, P: Partitioner<K> + Clone>(
                &self,
                other: &DStream<(K, W)>,
                partitioner: P,
            ) -> DStream<(K, $out)> {
                self.transform_with_named($spark, other, move |a, b, _| Ok(a.$batch_op(b, partitioner.clone())))
            }
        }
    };
}

binary_pair_op!(
    /// For each batch, the values of each key on both streams (`cogroup`).
    cogroup, cogroup_with_partitions, cogroup_with_partitioner, "cogroup", cogroup, (Vec<V>, Vec<W>)
);
binary_pair_op!(
    /// Inner join of the two streams' batches of the same time (`join`).
    join, join_with_partitions, join_with_partitioner, "join", join, (V, W)
);
binary_pair_op!(
    /// Left outer join of the batches of the same time (`leftOuterJoin`).
    left_outer_join, left_outer_join_with_partitions, left_outer_join_with_partitioner,
    "leftOuterJoin", left_outer_join, (V, Option<W>)
);
binary_pair_op!(
    /// Right outer join of the batches of the same time (`rightOuterJoin`).
    right_outer_join, right_outer_join_with_partitions, right_outer_join_with_partitioner,
    "rightOuterJoin", right_outer_join, (Option<V>, W)
);
binary_pair_op!(
    /// Full outer join of the batches of the same time (`fullOuterJoin`).
    full_outer_join, full_outer_join_with_partitions, full_outer_join_with_partitioner,
    "fullOuterJoin", full_outer_join, (Option<V>, Option<W>)
);
