//! Pair operations on batches of `(K, V)`: the shuffle-based ones (combine_by_key and what is
//! built on it: reduce_by_key, group_by_key, count_by_value, distinct) and the co-group family
//! (cogroup, join and the outer joins). The shuffle itself is in `shuffle`.

use super::shuffle::{group_records, map_side, map_side_keyed, reduce_side};
use super::{Batch, Data, Key};
use crate::partitioner::{HashPartitioner, Partitioner};

/// A key with its values on each side of a cogroup.
pub type CoGrouped<K, V, W> = (K, (Vec<V>, Vec<W>));
/// A key with its values of a full outer join.
pub type FullOuterJoined<K, V, W> = (K, (Option<V>, Option<W>));

impl<K: Key, V: Data> Batch<(K, V)> {
    /// Spark's `combineByKey`: per key, `create` turns the first value into a combiner,
    /// `merge_value` folds further values in, `merge_combiners` merges combiners of different
    /// input partitions. Values are combined on the map side.
    ///
    /// ```
    /// use stream_core::{Batch, HashPartitioner};
    /// let b = Batch::from_vec(vec![("a", 1), ("b", 2), ("a", 3)], 2);
    /// let avg = b.combine_by_key(
    ///     |v| (v, 1),
    ///     |(s, n), v| (s + v, n + 1),
    ///     |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2),
    ///     HashPartitioner::new(2).unwrap(),
    /// );
    /// let mut out = avg.collect();
    /// out.sort();
    /// assert_eq!(out, vec![("a", (4, 2)), ("b", (2, 1))]);
    /// ```
    pub fn combine_by_key<C: Data, P: Partitioner<K>>(
        self,
        create: impl Fn(V) -> C + Send + Sync,
        merge_value: impl Fn(C, V) -> C + Send + Sync,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync,
        partitioner: P,
    ) -> Batch<(K, C)> {
        let n_out = partitioner.num_partitions().max(1);
        let outputs = map_side(self, &partitioner, &|t, hash, k, v| {
            t.upsert(hash, k, v, &create, &merge_value)
        });
        reduce_side(outputs, n_out, &merge_combiners)
    }

    /// Merges the values of each key with the associative function `f`, into `num_partitions`
    /// partitions.
    pub fn reduce_by_key(
        self,
        f: impl Fn(V, V) -> V + Send + Sync,
        num_partitions: usize,
    ) -> Batch<(K, V)> {
        self.reduce_by_key_with(f, HashPartitioner::at_least_one(num_partitions))
    }

    /// `reduce_by_key` with an explicit partitioner.
    pub fn reduce_by_key_with<P: Partitioner<K>>(
        self,
        f: impl Fn(V, V) -> V + Send + Sync,
        partitioner: P,
    ) -> Batch<(K, V)> {
        self.combine_by_key(|v| v, &f, &f, partitioner)
    }

    /// Groups the values of each key, in the order they arrive.
    pub fn group_by_key(self, num_partitions: usize) -> Batch<(K, Vec<V>)> {
        self.group_by_key_with(HashPartitioner::at_least_one(num_partitions))
    }

    /// `group_by_key` with an explicit partitioner.
    pub fn group_by_key_with<P: Partitioner<K>>(self, partitioner: P) -> Batch<(K, Vec<V>)> {
        group_records(self, &partitioner)
    }

    /// Applies `f` to every value, keeping keys (and partitioning).
    pub fn map_values<W: Data>(self, f: impl Fn(V) -> W + Send + Sync + 'static) -> Batch<(K, W)> {
        self.narrow(move |(k, v), out| out.push((k, f(v))))
    }

    /// Applies `f` to every value and pairs each result with the key.
    pub fn flat_map_values<W: Data, I: IntoIterator<Item = W>>(
        self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> Batch<(K, W)> {
        self.narrow(move |(k, v), out| {
            for w in f(v) {
                out.push((k.clone(), w))
            }
        })
    }

    /// The keys.
    pub fn keys(self) -> Batch<K> {
        self.map(|(k, _)| k)
    }

    /// The values.
    pub fn values(self) -> Batch<V> {
        self.map(|(_, v)| v)
    }

    /// Groups both batches by key: for every key of either, the values of each side.
    pub fn cogroup<W: Data, P: Partitioner<K>>(
        self,
        other: Batch<(K, W)>,
        partitioner: P,
    ) -> Batch<CoGrouped<K, V, W>> {
        let n_out = partitioner.num_partitions().max(1);
        let both = |vs: Vec<V>, ws: Vec<W>| (vs, ws);
        let mut outputs = map_side(self, &partitioner, &|t, hash, k, v| {
            t.upsert(
                hash,
                k,
                v,
                |v| both(vec![v], Vec::new()),
                |(mut vs, ws), v| {
                    vs.push(v);
                    (vs, ws)
                },
            )
        });
        outputs.extend(map_side(other, &partitioner, &|t, hash, k, w| {
            t.upsert(
                hash,
                k,
                w,
                |w| both(Vec::new(), vec![w]),
                |(vs, mut ws), w| {
                    ws.push(w);
                    (vs, ws)
                },
            )
        }));
        reduce_side(
            outputs,
            n_out,
            &|(mut v1, mut w1): (Vec<V>, Vec<W>), (mut v2, mut w2)| {
                v1.append(&mut v2);
                w1.append(&mut w2);
                (v1, w1)
            },
        )
    }

    /// Inner join: every pair of values of keys present on both sides.
    pub fn join<W: Data, P: Partitioner<K>>(
        self,
        other: Batch<(K, W)>,
        partitioner: P,
    ) -> Batch<(K, (V, W))> {
        self.cogroup(other, partitioner).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::with_capacity(vs.len() * ws.len());
            for v in &vs {
                for w in &ws {
                    out.push((k.clone(), (v.clone(), w.clone())));
                }
            }
            out
        })
    }

    /// Left outer join: every value of `self`, with each matching value of `other` or `None`.
    pub fn left_outer_join<W: Data, P: Partitioner<K>>(
        self,
        other: Batch<(K, W)>,
        partitioner: P,
    ) -> Batch<(K, (V, Option<W>))> {
        self.cogroup(other, partitioner).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            for v in &vs {
                if ws.is_empty() {
                    out.push((k.clone(), (v.clone(), None)));
                }
                for w in &ws {
                    out.push((k.clone(), (v.clone(), Some(w.clone()))));
                }
            }
            out
        })
    }

    /// Right outer join: every value of `other`, with each matching value of `self` or `None`.
    pub fn right_outer_join<W: Data, P: Partitioner<K>>(
        self,
        other: Batch<(K, W)>,
        partitioner: P,
    ) -> Batch<(K, (Option<V>, W))> {
        self.cogroup(other, partitioner).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            for w in &ws {
                if vs.is_empty() {
                    out.push((k.clone(), (None, w.clone())));
                }
                for v in &vs {
                    out.push((k.clone(), (Some(v.clone()), w.clone())));
                }
            }
            out
        })
    }

    /// Full outer join: every key of either side, with `None` where a side has no value.
    pub fn full_outer_join<W: Data, P: Partitioner<K>>(
        self,
        other: Batch<(K, W)>,
        partitioner: P,
    ) -> Batch<FullOuterJoined<K, V, W>> {
        self.cogroup(other, partitioner).flat_map(|(k, (vs, ws))| {
            let mut out = Vec::new();
            match (vs.is_empty(), ws.is_empty()) {
                (false, true) => vs
                    .iter()
                    .for_each(|v| out.push((k.clone(), (Some(v.clone()), None)))),
                (true, false) => ws
                    .iter()
                    .for_each(|w| out.push((k.clone(), (None, Some(w.clone()))))),
                _ => {
                    for v in &vs {
                        for w in &ws {
                            out.push((k.clone(), (Some(v.clone()), Some(w.clone()))));
                        }
                    }
                }
            }
            out
        })
    }

    /// Sorts by key into `num_partitions` contiguous ranges.
    pub fn sort_by_key(self, ascending: bool, num_partitions: usize) -> Batch<(K, V)>
    where
        K: Ord,
    {
        self.sort_by(|(k, _)| k.clone(), ascending, num_partitions)
    }
}

impl<T: Key> Batch<T> {
    /// How many times each distinct record occurs (Spark's `countByValue` as a batch of pairs).
    pub fn count_by_value(self, num_partitions: usize) -> Batch<(T, i64)> {
        // Counted straight into the shuffle's tables: no (x, 1) pairs are made.
        let p = HashPartitioner::at_least_one(num_partitions);
        let outputs = map_side_keyed(self, &p, &|x| (x, ()), &|t, hash, k, ()| {
            t.upsert(hash, k, (), |()| 1i64, |n, ()| n + 1)
        });
        reduce_side(outputs, Partitioner::<T>::num_partitions(&p), &|a, b| a + b)
    }

    /// Each distinct record once.
    pub fn distinct(self, num_partitions: usize) -> Batch<T> {
        let p = HashPartitioner::at_least_one(num_partitions);
        let outputs = map_side_keyed(self, &p, &|x| (x, ()), &|t, hash, k, ()| {
            t.upsert(hash, k, (), |()| (), |(), ()| ())
        });
        reduce_side(outputs, Partitioner::<T>::num_partitions(&p), &|(), ()| ()).keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn reduce_and_group_by_key() {
        let b = Batch::from_vec(vec![("a", 1), ("b", 1), ("a", 1), ("", 5)], 2);
        assert_eq!(
            sorted(b.clone().reduce_by_key(|x, y| x + y, 3).collect()),
            vec![("", 5), ("a", 2), ("b", 1)]
        );
        let g = b.group_by_key(2);
        assert_eq!(g.num_partitions(), 2);
        assert_eq!(
            sorted(g.collect()),
            vec![("", vec![5]), ("a", vec![1, 1]), ("b", vec![1])]
        );
    }

    #[test]
    fn joins_follow_spark() {
        let l = Batch::from_vec(vec![("a", 1), ("b", 2)], 2);
        let r = Batch::from_vec(vec![("b", "x"), ("c", "y")], 1);
        let p = || HashPartitioner::new(2).unwrap();
        assert_eq!(
            l.clone().join(r.clone(), p()).collect(),
            vec![("b", (2, "x"))]
        );
        assert_eq!(
            sorted(l.clone().left_outer_join(r.clone(), p()).collect()),
            vec![("a", (1, None)), ("b", (2, Some("x")))]
        );
        assert_eq!(
            sorted(l.clone().right_outer_join(r.clone(), p()).collect()),
            vec![("b", (Some(2), "x")), ("c", (None, "y"))]
        );
        assert_eq!(
            sorted(l.full_outer_join(r, p()).collect()),
            vec![
                ("a", (Some(1), None)),
                ("b", (Some(2), Some("x"))),
                ("c", (None, Some("y")))
            ]
        );
    }

    #[test]
    fn count_by_value_and_distinct() {
        let b = Batch::from_vec(vec![1, 1, 2, 3, 3, 3], 3);
        assert_eq!(
            sorted(b.clone().count_by_value(2).collect()),
            vec![(1, 2), (2, 1), (3, 3)]
        );
        assert_eq!(sorted(b.distinct(1).collect()), vec![1, 2, 3]);
    }
}
