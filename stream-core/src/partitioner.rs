//! How keys are spread over the partitions of a shuffle. Spark's `HashPartitioner` is the
//! default; the hash is seeded with fixed keys so that placement is the same in every run (a
//! recovered batch lands in the same partitions as the original).
//!
//! A shuffle hashes each key once: the same 64-bit hash picks the partition (from bits 32..56)
//! and places the key in the reducer's hash table, whose bucket index uses the low bits and
//! whose control byte the top seven, so keys that share a partition still spread evenly.

use std::hash::Hash;

/// The hasher of shuffles and hash maps inside dstream: fast, and fixed across runs.
pub(crate) type FixedState = ahash::RandomState;

/// The hash of every key in a shuffle, fixed across runs and processes.
pub(crate) fn shuffle_state() -> FixedState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

/// Decides the partition of each key in a shuffle (Spark's `Partitioner`).
pub trait Partitioner<K: ?Sized>: Send + Sync + 'static {
    /// How many partitions the shuffle produces.
    fn num_partitions(&self) -> usize;
    /// The partition of `key`, in `0..num_partitions()`.
    fn partition(&self, key: &K) -> usize;

    /// The partition of `key` when the shuffle has already hashed it to `hash`; a partitioner
    /// that hashes keys itself can use `hash` instead. Must agree with `partition`.
    fn partition_hashed(&self, key: &K, hash: u64) -> usize {
        let _ = hash;
        self.partition(key)
    }
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
            state: shuffle_state(),
        })
    }

    /// A partitioner over `n.max(1)` partitions, for internal defaults that are already checked.
    pub(crate) fn at_least_one(n: usize) -> Self {
        HashPartitioner {
            n: n.max(1),
            state: shuffle_state(),
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
        self.partition_hashed(key, self.state.hash_one(key))
    }

    #[inline]
    fn partition_hashed(&self, _key: &K, hash: u64) -> usize {
        // Bits 32..56, scaled to 0..n without a division.
        ((((hash >> 32) & 0xff_ffff) * self.n as u64) >> 24) as usize
    }
}
