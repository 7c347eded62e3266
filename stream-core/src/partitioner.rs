//! How keys are spread over the partitions of a shuffle. Spark's `HashPartitioner` is the
//! default; the hash is seeded with fixed keys so that placement is the same in every run (a
//! recovered batch lands in the same partitions as the original).

use std::hash::Hash;

/// The hasher of shuffles and hash maps inside dstream: fast, and fixed across runs.
pub(crate) type FixedState = ahash::RandomState;

/// Hash maps used by the shuffle, with a seed different from the partitioner's (a map inside one
/// reducer would otherwise see keys whose low bits are all equal).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, FixedState>;

pub(crate) fn map_state() -> FixedState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

fn partition_state() -> FixedState {
    ahash::RandomState::with_seeds(
        0x4528_21e6_38d0_1377,
        0xbe54_66cf_34e9_0c6c,
        0xc0ac_29b7_c97c_50dd,
        0x3f84_d5b5_b547_0917,
    )
}

/// Decides the partition of each key in a shuffle (Spark's `Partitioner`).
pub trait Partitioner<K: ?Sized>: Send + Sync + 'static {
    /// How many partitions the shuffle produces.
    fn num_partitions(&self) -> usize;
    /// The partition of `key`, in `0..num_partitions()`.
    fn partition(&self, key: &K) -> usize;
}

/// Spark's default partitioner: a key goes to `hash(key) mod n`.
///
/// ```
/// use stream_core::{HashPartitioner, Partitioner};
/// let p = HashPartitioner::new(4).unwrap();
/// let part = p.partition(&"user-17");
/// assert!(part < 4);
/// assert_eq!(part, HashPartitioner::new(4).unwrap().partition(&"user-17"));
/// ```
#[derive(Clone, Debug)]
pub struct HashPartitioner {
    n: usize,
    state: FixedState,
}

impl HashPartitioner {
    /// A partitioner over `n` partitions; `n` must be positive (Spark's message otherwise).
    pub fn new(n: usize) -> crate::Result<Self> {
        if n == 0 {
            return Err(crate::Error::invalid(format!(
                "Number of partitions ({n}) cannot be negative or zero."
            )));
        }
        Ok(HashPartitioner {
            n,
            state: partition_state(),
        })
    }

    /// A partitioner over `n.max(1)` partitions, for internal defaults that are already checked.
    pub(crate) fn at_least_one(n: usize) -> Self {
        HashPartitioner {
            n: n.max(1),
            state: partition_state(),
        }
    }
}

impl PartialEq for HashPartitioner {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for HashPartitioner {
    fn num_partitions(&self) -> usize {
        self.n
    }

    #[inline]
    fn partition(&self, key: &K) -> usize {
        if self.n == 1 {
            return 0;
        }
        (self.state.hash_one(key) % self.n as u64) as usize
    }
}
