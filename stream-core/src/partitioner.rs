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

impl HashPartitioner {
    /// A partitioner that places keys where Spark's `HashPartitioner(n)` does, by the JVM's
    /// hash codes (see [`SparkHashPartitioner`]); `n` must be positive.
    pub fn spark(n: usize) -> crate::Result<SparkHashPartitioner> {
        SparkHashPartitioner::new(n)
    }
}

/// Spark's `HashPartitioner` exactly: a key goes to `nonNegativeMod(key.hashCode, n)`, with the
/// JVM's `hashCode` of the key ([`JvmHash`]): `String.hashCode` (over UTF-16 code units),
/// `Integer`'s and `Long`'s, and Scala's `MurmurHash3.productHash` for tuples. For a user
/// moving tests from Spark: keys land in the partitions Spark puts them in, so the order of
/// the partitions of a collected batch is Spark's. Within a partition the order is dstream's
/// (the order records arrived), which for a reduce of one record per key is Spark's too.
/// Slower than [`HashPartitioner`] (a hash over UTF-16 code units per string key); use it
/// where the placement must be Spark's.
///
/// ```
/// use stream_core::{HashPartitioner, Partitioner};
/// let p = HashPartitioner::spark(2).unwrap();
/// // As Spark: "california".hashCode() is -534640968, "new york".hashCode() is 1319303759.
/// assert_eq!(p.partition(&"california".to_string()), 0);
/// assert_eq!(p.partition(&"new york"), 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SparkHashPartitioner {
    n: usize,
}

impl SparkHashPartitioner {
    /// Over `n` partitions; `n` must be positive (Spark's message otherwise).
    pub fn new(n: usize) -> crate::Result<Self> {
        if n == 0 {
            return Err(crate::Error::invalid(format!(
                "Number of partitions ({n}) cannot be negative or zero."
            )));
        }
        Ok(SparkHashPartitioner { n })
    }
}

impl<K: JvmHash + ?Sized> Partitioner<K> for SparkHashPartitioner {
    fn num_partitions(&self) -> usize {
        self.n
    }

    fn partition(&self, key: &K) -> usize {
        // Spark's `Utils.nonNegativeMod`.
        let n = self.n as i64;
        (key.jvm_hash_code() as i64).rem_euclid(n) as usize
    }
}

/// A key's hash codes on the JVM, as Spark computes them: `hashCode` (what `HashPartitioner`
/// uses for the key) and Scala's `##` (what a tuple's hash uses for its fields; it differs
/// from `hashCode` for numbers, which Scala hashes by value: `3L.##` is `3.##`).
pub trait JvmHash {
    /// Java's `hashCode` of the boxed value.
    fn jvm_hash_code(&self) -> i32;
    /// Scala's `##`.
    fn scala_hash(&self) -> i32 {
        self.jvm_hash_code()
    }
}

impl<T: JvmHash + ?Sized> JvmHash for &T {
    fn jvm_hash_code(&self) -> i32 {
        (**self).jvm_hash_code()
    }
    fn scala_hash(&self) -> i32 {
        (**self).scala_hash()
    }
}

impl JvmHash for str {
    /// `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units.
    fn jvm_hash_code(&self) -> i32 {
        self.encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
    }
}

impl JvmHash for String {
    fn jvm_hash_code(&self) -> i32 {
        self.as_str().jvm_hash_code()
    }
}

impl JvmHash for crate::text::Text {
    fn jvm_hash_code(&self) -> i32 {
        self.as_str().jvm_hash_code()
    }
}

impl JvmHash for std::sync::Arc<str> {
    fn jvm_hash_code(&self) -> i32 {
        self.as_ref().jvm_hash_code()
    }
}

macro_rules! jvm_int {
    ($($t:ty),*) => {$(
        impl JvmHash for $t {
            /// `Integer.hashCode` (and `Short`'s, `Byte`'s): the value.
            fn jvm_hash_code(&self) -> i32 {
                *self as i32
            }
        }
    )*};
}
jvm_int!(i32, i16, i8);

impl JvmHash for i64 {
    /// `Long.hashCode`: the two halves xor-ed.
    fn jvm_hash_code(&self) -> i32 {
        (*self ^ ((*self as u64) >> 32) as i64) as i32
    }
    /// Scala's `##` of a `Long`: the `Int` hash when the value fits an `Int`.
    fn scala_hash(&self) -> i32 {
        if *self as i32 as i64 == *self {
            *self as i32
        } else {
            self.jvm_hash_code()
        }
    }
}

impl JvmHash for bool {
    /// `Boolean.hashCode`: 1231 or 1237.
    fn jvm_hash_code(&self) -> i32 {
        if *self { 1231 } else { 1237 }
    }
}

impl JvmHash for char {
    /// `Character.hashCode` of a character in the Basic Multilingual Plane: its code unit.
    fn jvm_hash_code(&self) -> i32 {
        let mut units = [0u16; 2];
        self.encode_utf16(&mut units)[0] as i32
    }
}

/// Scala's `MurmurHash3` (scala.util.hashing), as 2.12 hashes a tuple: `productHash` with the
/// seed `0xcafebabe`, the fields' `##` mixed in order, finalized with the arity.
fn product_hash(fields: &[i32]) -> i32 {
    fn mix_last(hash: i32, data: i32) -> i32 {
        let mut k = data.wrapping_mul(0xcc9e_2d51_u32 as i32);
        k = k.rotate_left(15);
        k = k.wrapping_mul(0x1b87_3593);
        hash ^ k
    }
    fn mix(hash: i32, data: i32) -> i32 {
        let h = mix_last(hash, data).rotate_left(13);
        h.wrapping_mul(5).wrapping_add(0xe654_6b64_u32 as i32)
    }
    let mut h = 0xcafe_babe_u32 as i32;
    for f in fields {
        h = mix(h, *f);
    }
    // finalizeHash: avalanche(h ^ arity).
    let mut h = (h ^ fields.len() as i32) as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h as i32
}

impl<A: JvmHash, B: JvmHash> JvmHash for (A, B) {
    /// `Tuple2.hashCode`: `MurmurHash3.productHash`.
    fn jvm_hash_code(&self) -> i32 {
        product_hash(&[self.0.scala_hash(), self.1.scala_hash()])
    }
}

impl<A: JvmHash, B: JvmHash, C: JvmHash> JvmHash for (A, B, C) {
    /// `Tuple3.hashCode`: `MurmurHash3.productHash`.
    fn jvm_hash_code(&self) -> i32 {
        product_hash(&[
            self.0.scala_hash(),
            self.1.scala_hash(),
            self.2.scala_hash(),
        ])
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

    /// Hash codes and partitions printed by the JVM: Spark 3.5.9's `HashPartitioner(7)` and
    /// `(2)` (pyspark's jars, Scala 2.12.18) on the same keys, by `bench/spark/HashCodes.java`.
    #[test]
    fn spark_places_keys_as_spark_does() {
        let p7 = HashPartitioner::spark(7).unwrap();
        let p2 = HashPartitioner::spark(2).unwrap();
        let strings = [
            ("california", -534640968, 6, 0),
            ("new york", 1319303759, 4, 1),
            ("", 0, 0, 0),
            ("a", 97, 6, 1),
            ("héllo", 103094734, 1, 0),
            ("😀x", 54959989, 0, 1),
            ("user-17", -147182744, 5, 0),
        ];
        for (s, hash, in7, in2) in strings {
            assert_eq!(s.jvm_hash_code(), hash, "{s}");
            assert_eq!((p7.partition(s), p2.partition(s)), (in7, in2), "{s}");
        }
        for (i, in7) in [
            (0i32, 0),
            (1, 1),
            (-1, 6),
            (17, 3),
            (i32::MIN, 5),
            (123456789, 1),
        ] {
            assert_eq!((i.jvm_hash_code(), p7.partition(&i)), (i, in7), "{i}");
        }
        let longs = [
            (0i64, 0, 0),
            (3, 3, 3),
            (-1, 0, 0),
            (5_000_000_000, 705032705, 6),
            (-5_000_000_000, 705032702, 3),
            (2_147_483_648, -2147483648, 5),
        ];
        for (l, hash, in7) in longs {
            assert_eq!((l.jvm_hash_code(), p7.partition(&l)), (hash, in7), "{l}");
        }
        assert_eq!((true.jvm_hash_code(), false.jvm_hash_code()), (1231, 1237));
        assert_eq!('é'.jvm_hash_code(), 233);
        assert_eq!(("a", 1).jvm_hash_code(), 128003929);
        assert_eq!(p7.partition(&("a", 1)), 4);
        assert_eq!(("california", 4i64).jvm_hash_code(), -72890571);
        assert_eq!(p7.partition(&("california", 4i64)), 2);
        assert_eq!((5_000_000_000i64, "x").jvm_hash_code(), -2077304954);
        assert_eq!((true, 'c').jvm_hash_code(), -2087346127);
        assert_eq!(("a", 1, 2i64).jvm_hash_code(), 944502939);
        assert_eq!((("k", 1), "v").jvm_hash_code(), 163023718);
        assert_eq!(p7.partition(&(("k", 1), "v")), 4);
        assert!(HashPartitioner::spark(0).is_err());
    }
}
