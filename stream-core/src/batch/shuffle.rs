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

/// Routes each record to its partition without combining: per partition, the records in
/// arrival order (map-task order, then each task's order), as Spark's `partitionBy` gives them.
pub(crate) fn partition_records<K: Key, V: Data, P: Partitioner<K>>(
    input: Batch<(K, V)>,
    partitioner: &P,
) -> Vec<Vec<(K, V)>> {
    let n_out = partitioner.num_partitions().max(1);
    let take = input.is_exclusive();
    let outputs = input.par_fold_runs(
        take,
        || (0..n_out).map(|_| Vec::new()).collect::<Vec<Vec<(K, V)>>>(),
        |out, chunk| {
            for (k, v) in chunk.drain(..) {
                let r = partitioner.partition(&k);
                out[r].push((k, v));
            }
        },
    );
    let mut parts: Vec<Vec<(K, V)>> = (0..n_out).map(|_| Vec::new()).collect();
    for out in outputs {
        for (r, mut records) in out.into_iter().enumerate() {
            if parts[r].is_empty() {
                parts[r] = records;
            } else {
                parts[r].append(&mut records);
            }
        }
    }
    parts
}

/// Groups the values of each key (`group_by_key`): the map side routes each record with its
/// hash to its output partition without combining (as Spark's `groupByKey` does); each reducer
/// then counts the values of every key and allocates each key's group once, at its size, before
/// moving the values in. Values keep the order Spark gives them (map-task order, then each
/// task's order); keys come in the order they first arrive.
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
                .map(|_| Vec::new())
                .collect::<Vec<Vec<(u64, K, V)>>>()
        },
        |out, chunk| {
            for (k, v) in chunk.drain(..) {
                let hash = state.hash_one(&k);
                let r = partitioner.partition_hashed(&k, hash);
                out[r].push((hash, k, v));
            }
        },
    );
    let mut by_reducer: Vec<Vec<Vec<(u64, K, V)>>> = (0..n_out).map(|_| Vec::new()).collect();
    for out in outputs {
        for (r, records) in out.into_iter().enumerate() {
            by_reducer[r].push(records);
        }
    }
    let parts = by_reducer
        .into_par_iter()
        .map(|runs| {
            let n: usize = runs.iter().map(Vec::len).sum();
            // Pass 1: a group id per record, the keys and the size of every group.
            let mut index: HashTable<(u64, u32)> = HashTable::new();
            let mut keys: Vec<K> = Vec::new();
            let mut sizes: Vec<u32> = Vec::new();
            let mut ids: Vec<u32> = Vec::with_capacity(n);
            let mut values: Vec<V> = Vec::with_capacity(n);
            for (hash, k, v) in runs.into_iter().flatten() {
                let id = match index.entry(
                    hash,
                    |&(h, g)| h == hash && keys[g as usize] == k,
                    |e| e.0,
                ) {
                    Entry::Occupied(o) => o.get().1,
                    Entry::Vacant(e) => {
                        let g = keys.len() as u32;
                        e.insert((hash, g));
                        keys.push(k);
                        sizes.push(0);
                        g
                    }
                };
                sizes[id as usize] += 1;
                ids.push(id);
                values.push(v);
            }
            // Pass 2: every group allocated at its size, the values moved in.
            let mut groups: Vec<Vec<V>> = sizes
                .iter()
                .map(|&n| Vec::with_capacity(n as usize))
                .collect();
            for (id, v) in ids.into_iter().zip(values) {
                groups[id as usize].push(v);
            }
            keys.into_iter().zip(groups).collect()
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
