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

/// Kafka's default partitioner: the partition of a record whose key is `key` (bytes) in a topic
/// of `partitions` partitions, `(murmur2(key) & 0x7fffffff) % partitions`, as Kafka's Java
/// producer places keyed records. Scale-out exchanges place records by this function of their
/// key's postcard encoding, so a producer that writes the same encoded keys to a topic of the
/// same partition count places them where the exchange would.
///
/// ```
/// assert_eq!(stream_core::kafka_partition(b"foobar", 1), 0);
/// assert!(stream_core::kafka_partition(b"user-17", 6) < 6);
/// ```
pub fn kafka_partition(key: &[u8], partitions: usize) -> usize {
    (murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)
}

/// Kafka's `Utils.murmur2` (MurmurHash2, 32 bits, seed `0x9747b28c`).
pub(crate) fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`: keyed records land in the partition
    /// where Kafka's Java producer puts them.
    #[test]
    fn murmur2_is_kafkas() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key) as i32, *want, "{:?}", std::str::from_utf8(key));
        }
        assert_eq!(
            kafka_partition(b"foobar", 7),
            (-790332482i32 & 0x7fff_ffff) as usize % 7
        );
    }
}
