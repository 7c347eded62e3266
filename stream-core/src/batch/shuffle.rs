//! The hash shuffle shared by every wide operation.
//!
//! Map side: each input partition streams through its fused chain straight into one table per
//! output partition, combining values of equal keys as they arrive. Each key is hashed once; the
//! hash picks the output partition and is stored with the entry, so growing a table and merging
//! tables on the reduce side never hash again, and probes compare hashes before keys. Reduce
//! side: each output partition merges the tables addressed to it, in input-partition order (so
//! grouped values keep the order Spark gives them).

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rayon::prelude::*;

use super::{Batch, Data, Key};
use crate::partitioner::{FixedState, Partitioner, shuffle_state};

/// One reducer's share of one map task: `(hash, key, combiner)`. The combiner is an `Option`
/// only so that it can be moved out, combined and put back in place.
pub(crate) struct Table<K, C> {
    entries: HashTable<(u64, K, Option<C>)>,
}

impl<K: Key, C> Table<K, C> {
    fn new() -> Self {
        Table {
            entries: HashTable::new(),
        }
    }

    #[inline]
    pub(crate) fn upsert<V>(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        create: impl FnOnce(V) -> C,
        merge: impl FnOnce(C, V) -> C,
    ) {
        match self
            .entries
            .entry(hash, |e| e.0 == hash && e.1 == key, |e| e.0)
        {
            Entry::Occupied(mut o) => {
                let slot = &mut o.get_mut().2;
                *slot = Some(match slot.take() {
                    Some(c) => merge(c, value),
                    None => create(value),
                });
            }
            Entry::Vacant(v) => {
                v.insert((hash, key, Some(create(value))));
            }
        }
    }

    fn merge_from(&mut self, other: Table<K, C>, merge: &impl Fn(C, C) -> C) {
        if self.entries.is_empty() {
            *self = other;
            return;
        }
        for (hash, key, c) in other.entries {
            let Some(c) = c else { continue };
            self.upsert(hash, key, c, |c| c, merge);
        }
    }

    fn into_pairs(self) -> Vec<(K, C)> {
        self.entries
            .into_iter()
            .filter_map(|(_, k, c)| c.map(|c| (k, c)))
            .collect()
    }
}

/// The tables of one map task, one per output partition.
pub(crate) struct MapOutput<K, C> {
    tables: Vec<Table<K, C>>,
}

/// Runs the map side of a shuffle over `input`: `add(table, hash, key, value)` for every
/// record, where `table` is the task's table of the key's output partition.
pub(crate) fn map_side<K, V, C, P>(
    input: Batch<(K, V)>,
    partitioner: &P,
    add: &(impl Fn(&mut Table<K, C>, u64, K, V) + Sync + Send),
) -> Vec<MapOutput<K, C>>
where
    K: Key,
    V: Data,
    C: Send,
    P: Partitioner<K>,
{
    map_side_keyed(input, partitioner, &|kv| kv, add)
}

/// `map_side` over any records, `split` making each a key and a value: saves a narrow stage
/// where the pairs would only be made for the shuffle (count_by_value, distinct).
pub(crate) fn map_side_keyed<R, K, V, C, P>(
    input: Batch<R>,
    partitioner: &P,
    split: &(impl Fn(R) -> (K, V) + Sync + Send),
    add: &(impl Fn(&mut Table<K, C>, u64, K, V) + Sync + Send),
) -> Vec<MapOutput<K, C>>
where
    R: Data,
    K: Key,
    C: Send,
    P: Partitioner<K>,
{
    let n_out = partitioner.num_partitions().max(1);
    let state: FixedState = shuffle_state();
    let take = input.is_exclusive();
    input.par_fold_runs(
        take,
        || MapOutput {
            tables: (0..n_out).map(|_| Table::new()).collect(),
        },
        |out, chunk| {
            for r in chunk.drain(..) {
                let (k, v) = split(r);
                let hash = state.hash_one(&k);
                let r = partitioner.partition_hashed(&k, hash);
                add(&mut out.tables[r], hash, k, v);
            }
        },
    )
}

/// Records of a map task after which grouping stops if more than half had a new key.
const GROUPING_CHECK: usize = 1 << 16;

/// Keys in the order their groups were made, with their hashes and value counts, and an
/// index to find a key's group.
struct KeyGroups<K> {
    index: HashTable<(u64, u32)>,
    keys: Vec<(u64, K)>,
    sizes: Vec<u32>,
}

impl<K: Key> KeyGroups<K> {
    fn new() -> Self {
        KeyGroups {
            index: HashTable::new(),
            keys: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// The index of `key`'s group, which `count` more values join (a new group if it is new).
    #[inline]
    fn join(&mut self, hash: u64, key: K, count: u32) -> u32 {
        let keys = &mut self.keys;
        let g = match self.index.entry(
            hash,
            |&(h, g)| h == hash && keys[g as usize].1 == key,
            |e| e.0,
        ) {
            Entry::Occupied(o) => o.get().1,
            Entry::Vacant(e) => {
                let g = keys.len() as u32;
                e.insert((hash, g));
                keys.push((hash, key));
                self.sizes.push(0);
                g
            }
        };
        self.sizes[g as usize] += count;
        g
    }

    /// A new group of one value, without looking `key` up: equal keys are merged later.
    #[inline]
    fn append(&mut self, hash: u64, key: K) -> u32 {
        self.keys.push((hash, key));
        self.sizes.push(1);
        (self.keys.len() - 1) as u32
    }
}

/// One reducer's share of one map task's records: its key groups, and per record its group's
/// index and its value.
///
/// Keys that own memory (`String`s, `Vec`s) are grouped as they arrive: a repeated key is
/// compared and dropped by the thread that made it, while it is still in cache, and only one
/// copy per task crosses to the reducer. Other keys (integers, `&str`) are cheap to ship, and
/// each record is its own group, as it is if the first `GROUPING_CHECK` records of a task hold
/// mostly distinct keys. The reducer merges groups of equal keys either way.
struct Groups<K, V> {
    grouping: bool,
    groups: KeyGroups<K>,
    ids: Vec<u32>,
    values: Vec<V>,
}

impl<K: Key, V> Groups<K, V> {
    fn new() -> Self {
        Groups {
            grouping: std::mem::needs_drop::<K>(),
            groups: KeyGroups::new(),
            ids: Vec::new(),
            values: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, hash: u64, key: K, value: V) {
        let g = if self.grouping {
            self.groups.join(hash, key, 1)
        } else {
            self.groups.append(hash, key)
        };
        self.ids.push(g);
        self.values.push(value);
        if self.values.len() == GROUPING_CHECK && self.groups.keys.len() > GROUPING_CHECK / 2 {
            self.grouping = false;
        }
    }
}

/// Groups the values of each key (`group_by_key`). No values are combined (Spark's
/// `groupByKey` has no map-side combine), but each map task groups its records per key, so a
/// key repeated in a task is hashed, compared and dropped there and only its first copy is
/// shipped. Each reducer then merges the tasks' groups per distinct key, allocates every group
/// once, at its size, and moves the values in. Values keep the order Spark gives them
/// (map-task order, then each task's order); keys come in the order they first arrive.
pub(crate) fn group_records<K: Key, V: Data, P: Partitioner<K>>(
    input: Batch<(K, V)>,
    partitioner: &P,
) -> Batch<(K, Vec<V>)> {
    let n_out = partitioner.num_partitions().max(1);
    let state: FixedState = shuffle_state();
    let take = input.is_exclusive();
    let outputs = input.par_fold_runs(
        take,
        || {
            (0..n_out)
                .map(|_| Groups::new())
                .collect::<Vec<Groups<K, V>>>()
        },
        |out, chunk| {
            for (k, v) in chunk.drain(..) {
                let hash = state.hash_one(&k);
                let r = partitioner.partition_hashed(&k, hash);
                out[r].push(hash, k, v);
            }
        },
    );
    let mut by_reducer: Vec<Vec<Groups<K, V>>> = (0..n_out).map(|_| Vec::new()).collect();
    for out in outputs {
        for (r, groups) in out.into_iter().enumerate() {
            by_reducer[r].push(groups);
        }
    }
    let parts = by_reducer
        .into_par_iter()
        .map(|runs| {
            // Every task's keys into one set of groups, remembering where each went.
            let mut all: KeyGroups<K> = KeyGroups::new();
            let runs: Vec<(Vec<u32>, Vec<u32>, Vec<V>)> = runs
                .into_iter()
                .map(|run| {
                    let to: Vec<u32> = (run.groups.keys.into_iter().zip(run.groups.sizes))
                        .map(|((hash, k), n)| all.join(hash, k, n))
                        .collect();
                    (to, run.ids, run.values)
                })
                .collect();
            let mut groups: Vec<Vec<V>> = all
                .sizes
                .iter()
                .map(|&n| Vec::with_capacity(n as usize))
                .collect();
            for (to, ids, values) in runs {
                for (g, v) in ids.into_iter().zip(values) {
                    groups[to[g as usize] as usize].push(v);
                }
            }
            all.keys.into_iter().map(|(_, k)| k).zip(groups).collect()
        })
        .collect();
    Batch::from_partitions(parts)
}

/// Merges the map outputs addressed to each reducer, in map-task order, into partitions.
pub(crate) fn reduce_side<K: Key, C: Data>(
    map_outputs: Vec<MapOutput<K, C>>,
    n_out: usize,
    merge: &(impl Fn(C, C) -> C + Sync),
) -> Batch<(K, C)> {
    let mut by_reducer: Vec<Vec<Table<K, C>>> = (0..n_out).map(|_| Vec::new()).collect();
    for out in map_outputs {
        for (r, t) in out.tables.into_iter().enumerate() {
            by_reducer[r].push(t);
        }
    }
    let parts = by_reducer
        .into_par_iter()
        .map(|tables| {
            let mut acc = Table::new();
            for t in tables {
                acc.merge_from(t, merge);
            }
            acc.into_pairs()
        })
        .collect();
    Batch::from_partitions(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::HashPartitioner;

    /// Spark's groups, one record at a time: per output partition, keys in the order they first
    /// arrive and values in arrival order (input partitions in order, then each one's order).
    fn model<K: Key, V: Data>(input: &[Vec<(K, V)>], p: &HashPartitioner) -> Vec<Vec<(K, Vec<V>)>> {
        let n = Partitioner::<K>::num_partitions(p);
        let mut parts: Vec<Vec<(K, Vec<V>)>> = (0..n).map(|_| Vec::new()).collect();
        let mut at: Vec<std::collections::HashMap<K, usize>> =
            (0..n).map(|_| Default::default()).collect();
        for (k, v) in input.iter().flatten() {
            let r = p.partition(k);
            let g = *at[r].entry(k.clone()).or_insert_with(|| {
                parts[r].push((k.clone(), Vec::new()));
                parts[r].len() - 1
            });
            parts[r][g].1.push(v.clone());
        }
        parts
    }

    fn check<K: Key, V: Data + PartialEq + std::fmt::Debug>(input: Vec<Vec<(K, V)>>) {
        let p = HashPartitioner::new(3).unwrap();
        let want = model(&input, &p);
        let got = group_records(Batch::from_partitions(input), &p).partitions();
        assert!(got == want, "groups differ from the model");
    }

    /// Owned keys are grouped on the map side; the result is the model's, order included.
    #[test]
    fn repeated_string_keys_group_as_spark_does() {
        let part = |base: usize| -> Vec<(String, usize)> {
            (0..5_000)
                .map(|i| (format!("u{}", (i * 7 + base) % 300), base + i))
                .collect()
        };
        check(vec![part(0), Vec::new(), part(1), part(2)]);
    }

    /// A task whose keys are mostly new stops grouping after `GROUPING_CHECK` records; keys
    /// grouped before and keys shipped one by one after meet in the same groups.
    #[test]
    fn mostly_distinct_string_keys_stop_grouping_and_stay_correct() {
        let mut groups: Groups<String, usize> = Groups::new();
        assert!(groups.grouping);
        for i in 0..GROUPING_CHECK {
            groups.push(i as u64, format!("k{i}"), i);
        }
        assert!(!groups.grouping);
        let n = 8 * GROUPING_CHECK;
        let first: Vec<(String, usize)> =
            (0..n).map(|i| (format!("k{}", i % (n - 7)), i)).collect();
        let second: Vec<(String, usize)> =
            (0..1_000).map(|i| (format!("k{}", i * 13), i)).collect();
        check(vec![first, second]);
    }

    /// Keys without memory of their own are shipped one record at a time.
    #[test]
    fn plain_keys_group_as_spark_does() {
        assert!(!Groups::<i64, i64>::new().grouping);
        let part = |base: i64| -> Vec<(i64, i64)> {
            (0..2_000).map(|i| ((i * 31 + base) % 97, i)).collect()
        };
        check(vec![part(0), part(5), part(9)]);
    }
}
