//! Pair operations on batches of `(K, V)`: the shuffle (combine_by_key and everything built on
//! it: reduce_by_key, group_by_key, count_by_value, distinct) and the co-group family (cogroup,
//! join and the outer joins).
//!
//! A shuffle runs in two parallel phases. Map side: each input partition streams through its
//! fused narrow chain straight into one hash map per output partition, combining values of equal
//! keys as they arrive. Reduce side: each output partition merges the maps addressed to it, in
//! input-partition order (so grouped values keep the order Spark gives them).

use std::collections::hash_map::Entry;

use rayon::prelude::*;

use super::{Batch, Data, Key};
use crate::partitioner::{FastMap, HashPartitioner, Partitioner, map_state};

fn new_maps<K, C>(n: usize) -> Vec<FastMap<K, C>> {
    (0..n).map(|_| FastMap::with_hasher(map_state())).collect()
}

/// Merges the per-map-task outputs addressed to each reducer, then lays them out as partitions.
fn reduce_side<K: Key, C: Data>(
    map_outputs: Vec<Vec<FastMap<K, Option<C>>>>,
    n_out: usize,
    merge: &(impl Fn(C, C) -> C + Sync),
) -> Vec<Vec<(K, C)>> {
    let mut by_reducer: Vec<Vec<FastMap<K, Option<C>>>> = (0..n_out).map(|_| Vec::new()).collect();
    for maps in map_outputs {
        for (r, m) in maps.into_iter().enumerate() {
            by_reducer[r].push(m);
        }
    }
    by_reducer
        .into_par_iter()
        .map(|maps| {
            let mut it = maps.into_iter();
            let mut acc = it
                .next()
                .unwrap_or_else(|| FastMap::with_hasher(map_state()));
            for m in it {
                for (k, c) in m {
                    match acc.entry(k) {
                        Entry::Occupied(mut e) => {
                            let slot = e.get_mut();
                            *slot = match (slot.take(), c) {
                                (Some(a), Some(b)) => Some(merge(a, b)),
                                (a, b) => a.or(b),
                            };
                        }
                        Entry::Vacant(e) => {
                            e.insert(c);
                        }
                    }
                }
            }
            acc.into_iter()
                .filter_map(|(k, c)| c.map(|c| (k, c)))
                .collect()
        })
        .collect()
}

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
        let take = self.is_exclusive();
        let map_outputs = self.par_fold(
            take,
            |_| new_maps::<K, Option<C>>(n_out),
            |maps, chunk| {
                for (k, v) in chunk.drain(..) {
                    let r = partitioner.partition(&k);
                    match maps[r].entry(k) {
                        Entry::Occupied(mut e) => {
                            let slot = e.get_mut();
                            *slot = Some(match slot.take() {
                                Some(c) => merge_value(c, v),
                                None => create(v),
                            });
                        }
                        Entry::Vacant(e) => {
                            e.insert(Some(create(v)));
                        }
                    }
                }
            },
        );
        Batch::from_partitions(reduce_side(map_outputs, n_out, &merge_combiners))
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
        self.combine_by_key(
            |v| vec![v],
            |mut c, v| {
                c.push(v);
                c
            },
            |mut a, mut b| {
                a.append(&mut b);
                a
            },
            partitioner,
        )
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
    ) -> Batch<(K, (Vec<V>, Vec<W>))> {
        let n_out = partitioner.num_partitions().max(1);
        type Groups<V, W> = Option<(Vec<V>, Vec<W>)>;
        let add = |maps: &mut Vec<FastMap<K, Groups<V, W>>>, k: K, side: Result<V, W>| {
            let r = partitioner.partition(&k);
            let slot = maps[r]
                .entry(k)
                .or_insert_with(|| Some((Vec::new(), Vec::new())));
            if let Some((vs, ws)) = slot {
                match side {
                    Ok(v) => vs.push(v),
                    Err(w) => ws.push(w),
                }
            }
        };
        let take_left = self.is_exclusive();
        let mut map_outputs = self.par_fold(
            take_left,
            |_| new_maps(n_out),
            |maps, chunk| {
                for (k, v) in chunk.drain(..) {
                    add(maps, k, Ok(v));
                }
            },
        );
        let take_right = other.is_exclusive();
        map_outputs.extend(other.par_fold(
            take_right,
            |_| new_maps(n_out),
            |maps, chunk| {
                for (k, w) in chunk.drain(..) {
                    add(maps, k, Err(w));
                }
            },
        ));
        let parts = reduce_side(map_outputs, n_out, &|(mut v1, mut w1), (mut v2, mut w2)| {
            v1.append(&mut v2);
            w1.append(&mut w2);
            (v1, w1)
        });
        Batch::from_partitions(parts)
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
    ) -> Batch<(K, (Option<V>, Option<W>))> {
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
        self.map(|x| (x, 1i64))
            .reduce_by_key(|a, b| a + b, num_partitions)
    }

    /// Each distinct record once.
    pub fn distinct(self, num_partitions: usize) -> Batch<T> {
        self.map(|x| (x, ()))
            .reduce_by_key(|a, _| a, num_partitions)
            .keys()
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
