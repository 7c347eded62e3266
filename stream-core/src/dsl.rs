//! What the `stream!` DSL's expansion calls besides the builder API: Spark's overloads that
//! take either a partition count or a partitioner, and the default partitioner of a stream.
//! Ordinary Rust code can use them too.

use crate::batch::{Data, Key};
use crate::dstream::DStream;
use crate::error::Result;
use crate::partitioner::HashPartitioner;

/// An argument that is a partition count or a partitioner (Spark overloads its operations
/// on `numPartitions: Int` and `partitioner: Partitioner`): an integer, a [`HashPartitioner`],
/// or any partitioner wrapped in [`Custom`].
pub trait PartitionArg {
    /// The partitioner it stands for.
    type Partitioner: Clone;
    /// The partitioner: a count `n` is a hash partitioner over `max(n, 1)` partitions.
    fn into_partitioner(self) -> Self::Partitioner;
    /// The partitioner, or Spark's error for a count of 0 or below (what the DSL calls).
    fn try_into_partitioner(self) -> Result<Self::Partitioner>
    where
        Self: Sized,
    {
        Ok(self.into_partitioner())
    }
}

macro_rules! counts {
    ($($t:ty),*) => {$(
        impl PartitionArg for $t {
            type Partitioner = HashPartitioner;
            fn into_partitioner(self) -> HashPartitioner {
                HashPartitioner::at_least_one(usize::try_from(self).unwrap_or(1))
            }
            fn try_into_partitioner(self) -> Result<HashPartitioner> {
                partition_count(self).map(HashPartitioner::at_least_one)
            }
        }
    )*};
}
counts!(i32, i64, u32, u64, usize);

/// A partition count (`repartition(n)`, `countByValue(n)`), or Spark's error when it is 0 or
/// below, as Spark's `require(numPartitions > 0)`.
///
/// ```
/// use stream_core::dsl::partition_count;
/// assert_eq!(partition_count(4).unwrap(), 4);
/// assert_eq!(
///     partition_count(0).unwrap_err().to_string(),
///     "Number of partitions (0) must be positive."
/// );
/// ```
pub fn partition_count<N: TryInto<usize> + std::fmt::Display + Copy>(n: N) -> Result<usize> {
    n.try_into().ok().filter(|count| *count > 0).ok_or_else(|| {
        crate::Error::invalid(format!("Number of partitions ({n}) must be positive."))
    })
}

/// [`partitioner`], with Spark's error for a partition count of 0 or below.
///
/// ```
/// use stream_core::dsl::try_partitioner;
/// assert!(try_partitioner(-1).is_err());
/// ```
pub fn try_partitioner<A: PartitionArg>(arg: A) -> Result<A::Partitioner> {
    arg.try_into_partitioner()
}

impl PartitionArg for HashPartitioner {
    type Partitioner = HashPartitioner;
    fn into_partitioner(self) -> HashPartitioner {
        self
    }
}

/// A partitioner of the user's own, as a DSL argument: `reduceByKey(_ + _, Custom(p))`.
#[derive(Debug, Clone)]
pub struct Custom<P>(pub P);

impl<P: Clone> PartitionArg for Custom<P> {
    type Partitioner = P;
    fn into_partitioner(self) -> P {
        self.0
    }
}

/// The partitioner of a partition count or partitioner argument.
///
/// ```
/// use stream_core::dsl::partitioner;
/// use stream_core::Partitioner;
/// let p = partitioner(4);
/// assert_eq!(Partitioner::<&str>::num_partitions(&p), 4);
/// ```
pub fn partitioner<A: PartitionArg>(arg: A) -> A::Partitioner {
    arg.into_partitioner()
}

/// The partitioner a shuffle of `stream` uses by default: a hash partitioner over the
/// context's parallelism.
pub fn default_partitioner<K: Key, V: Data>(stream: &DStream<(K, V)>) -> HashPartitioner {
    HashPartitioner::at_least_one(stream.default_partitions())
}

/// A timeout as Spark's `awaitTerminationOrTimeout` takes it (milliseconds) or as a
/// [`Duration`](crate::Duration).
pub trait TimeoutArg {
    /// The timeout.
    fn timeout(self) -> crate::Duration;
}

impl TimeoutArg for crate::Duration {
    fn timeout(self) -> crate::Duration {
        self
    }
}

macro_rules! millis {
    ($($t:ty),*) => {$(
        impl TimeoutArg for $t {
            fn timeout(self) -> crate::Duration {
                crate::Duration::from_millis(i64::try_from(self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
millis!(i32, i64, u32, u64, usize);

/// `awaitTerminationOrTimeout(5000)` (Spark: milliseconds) or `(Seconds(5))`.
///
/// ```
/// use stream_core::{dsl::timeout, Seconds};
/// assert_eq!(timeout(5000), Seconds(5));
/// assert_eq!(timeout(Seconds(5)), Seconds(5));
/// ```
pub fn timeout<A: TimeoutArg>(arg: A) -> crate::Duration {
    arg.timeout()
}

/// The parallelism of shuffles in a lambda body where Spark uses its default (the batch's own
/// partition count, at least one).
fn partitions_of<T: Data>(b: &crate::batch::Batch<T>) -> usize {
    b.num_partitions().max(1)
}

/// Spark's default partitioner of a join or cogroup: as many partitions as the larger side.
fn joined<A: Data, B: Data>(
    a: &crate::batch::Batch<A>,
    b: &crate::batch::Batch<B>,
) -> HashPartitioner {
    HashPartitioner::at_least_one(partitions_of(a).max(partitions_of(b)))
}

/// How many times each item occurs (Spark's `countByKey`, `countByValue` actions).
fn occurrences<K: Key>(items: impl IntoIterator<Item = K>) -> std::collections::HashMap<K, i64> {
    let mut m = std::collections::HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// Spark's RDD methods under their Scala names and with Spark's defaults, for the bodies of
/// `transform` and `foreachRDD` in the `stream!` DSL (the macro brings it into scope): a Scala
/// user's `rdd.sortBy(_._2, false).take(10)` or `rdd.countByKey()` compiles as written.
/// Shuffles without a partition count keep the batch's partition count, as Spark's default
/// partitioner does. Rust code calls the snake_case methods of [`Batch`](crate::Batch).
///
/// ```
/// use stream_core::Batch;
/// use stream_core::dsl::{SparkPairRdd, SparkRdd};
///
/// let b = Batch::from_vec(vec![("a", 3), ("b", 1), ("a", 2)], 2);
/// assert_eq!(b.clone().sortBy(|p| p.1, false).first(), Some(("a", 3)));
/// assert_eq!(b.countByKey()["a"], 2);
/// assert_eq!(b.lookup(&"a"), vec![3, 2]);
/// assert!(!b.isEmpty());
/// ```
#[allow(non_snake_case)]
pub trait SparkRdd<T: Data>: Sized {
    /// `sortBy(f, ascending)`.
    fn sortBy<S: Ord>(self, key: impl Fn(&T) -> S, ascending: bool) -> crate::batch::Batch<T>;
    /// `isEmpty()`.
    fn isEmpty(&self) -> bool;
    /// `nonEmpty` (Scala collections').
    fn nonEmpty(&self) -> bool {
        !self.isEmpty()
    }
    /// `top(n)`: the `n` largest records, largest first.
    fn top(&self, n: usize) -> Vec<T>
    where
        T: Ord;
    /// `distinct()`: each record once (the macro's name for Spark's `distinct()`).
    fn spark_distinct(self) -> crate::batch::Batch<T>
    where
        T: Key;
    /// `countByValue()`: how many times each record occurs (an action, as on Spark's RDD).
    fn countByValue(&self) -> std::collections::HashMap<T, i64>
    where
        T: Key;
}

impl<T: Data> SparkRdd<T> for crate::batch::Batch<T> {
    fn sortBy<S: Ord>(self, key: impl Fn(&T) -> S, ascending: bool) -> crate::batch::Batch<T> {
        let n = partitions_of(&self);
        self.sort_by(key, ascending, n)
    }

    fn isEmpty(&self) -> bool {
        self.is_empty()
    }

    fn top(&self, n: usize) -> Vec<T>
    where
        T: Ord,
    {
        self.top_by(n, T::clone)
    }

    fn spark_distinct(self) -> crate::batch::Batch<T>
    where
        T: Key,
    {
        let n = partitions_of(&self);
        self.distinct(n)
    }

    fn countByValue(&self) -> std::collections::HashMap<T, i64>
    where
        T: Key,
    {
        occurrences(self.collect())
    }
}

/// Spark's pair-RDD methods under their Scala names (see [`SparkRdd`]).
#[allow(non_snake_case)]
pub trait SparkPairRdd<K: Key, V: Data>: Sized {
    /// `reduceByKey(f)`, into the batch's partition count.
    fn reduceByKey(self, f: impl Fn(V, V) -> V + Send + Sync) -> crate::batch::Batch<(K, V)>;
    /// `groupByKey()`.
    fn groupByKey(self) -> crate::batch::Batch<(K, Vec<V>)>;
    /// `sortByKey(ascending)`.
    fn sortByKey(self, ascending: bool) -> crate::batch::Batch<(K, V)>
    where
        K: Ord;
    /// `countByKey()`: records per key (an action).
    fn countByKey(&self) -> std::collections::HashMap<K, i64>;
    /// `lookup(key)`: the values of `key`.
    fn lookup(&self, key: &K) -> Vec<V>;
    /// `leftOuterJoin(other)`.
    fn leftOuterJoin<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<(K, (V, Option<W>))>;
    /// `rightOuterJoin(other)`.
    fn rightOuterJoin<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<(K, (Option<V>, W))>;
    /// `cogroup(other)` (the macro's name for it).
    fn spark_cogroup<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<crate::batch::CoGrouped<K, V, W>>;
}

impl<K: Key, V: Data> SparkPairRdd<K, V> for crate::batch::Batch<(K, V)> {
    fn reduceByKey(self, f: impl Fn(V, V) -> V + Send + Sync) -> crate::batch::Batch<(K, V)> {
        let n = partitions_of(&self);
        self.reduce_by_key(f, n)
    }

    fn groupByKey(self) -> crate::batch::Batch<(K, Vec<V>)> {
        let n = partitions_of(&self);
        self.group_by_key(n)
    }

    fn sortByKey(self, ascending: bool) -> crate::batch::Batch<(K, V)>
    where
        K: Ord,
    {
        let n = partitions_of(&self);
        self.sort_by_key(ascending, n)
    }

    fn countByKey(&self) -> std::collections::HashMap<K, i64> {
        occurrences(self.collect().into_iter().map(|(k, _)| k))
    }

    fn lookup(&self, key: &K) -> Vec<V> {
        self.collect()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }

    fn leftOuterJoin<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<(K, (V, Option<W>))> {
        let p = joined(&self, &other);
        self.left_outer_join(other, p)
    }

    fn rightOuterJoin<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<(K, (Option<V>, W))> {
        let p = joined(&self, &other);
        self.right_outer_join(other, p)
    }

    fn spark_cogroup<W: Data>(
        self,
        other: crate::batch::Batch<(K, W)>,
    ) -> crate::batch::Batch<crate::batch::CoGrouped<K, V, W>> {
        let p = joined(&self, &other);
        self.cogroup(other, p)
    }
}

/// Scala collections' names on a `Vec` (`sum`, `foreach`, `mkString`; `size`, `isEmpty` and
/// `nonEmpty` are [`ScalaSized`]'s), for lambda bodies in the `stream!` DSL.
#[allow(non_snake_case)]
pub trait ScalaSeq<T> {
    /// `sum`.
    fn sum(&self) -> T
    where
        T: Clone + std::iter::Sum<T>;
    /// `foreach(f)`.
    fn foreach(&self, f: impl FnMut(T))
    where
        T: Clone;
    /// `mkString(sep)`.
    fn mkString(&self, sep: &str) -> String
    where
        T: std::fmt::Display;
}

impl<T> ScalaSeq<T> for Vec<T> {
    fn sum(&self) -> T
    where
        T: Clone + std::iter::Sum<T>,
    {
        self.iter().cloned().sum()
    }
    fn foreach(&self, f: impl FnMut(T))
    where
        T: Clone,
    {
        self.iter().cloned().for_each(f);
    }
    fn mkString(&self, sep: &str) -> String
    where
        T: std::fmt::Display,
    {
        self.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    }
}

/// `size`, `isEmpty` and `nonEmpty` of Scala's sequences, strings, options, maps and sets,
/// for lambda bodies.
#[allow(non_snake_case)]
pub trait ScalaSized {
    /// `size` / `length`.
    fn size(&self) -> usize;
    /// `isEmpty`.
    fn isEmpty(&self) -> bool {
        self.size() == 0
    }
    /// `nonEmpty`.
    fn nonEmpty(&self) -> bool {
        self.size() != 0
    }
}

impl<T> ScalaSized for Vec<T> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl ScalaSized for str {
    fn size(&self) -> usize {
        self.chars().count()
    }
}

impl ScalaSized for String {
    fn size(&self) -> usize {
        self.chars().count()
    }
}

impl<K, V, H> ScalaSized for std::collections::HashMap<K, V, H> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl<T, H> ScalaSized for std::collections::HashSet<T, H> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl<K, V> ScalaSized for std::collections::BTreeMap<K, V> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl<T> ScalaSized for std::collections::BTreeSet<T> {
    fn size(&self) -> usize {
        self.len()
    }
}

impl<T> ScalaSized for Option<T> {
    fn size(&self) -> usize {
        usize::from(self.is_some())
    }
}

/// Prints a record as Spark's `println` does with an RDD's elements (tuples as `(a,1)`), for
/// `foreach(println)` in lambda bodies.
pub fn println<T: crate::Show>(x: T) {
    println!("{}", x.show());
}

/// Spark's `State.getOption`, for mapping functions written as in Spark.
#[allow(non_snake_case)]
pub trait ScalaState<S> {
    /// The state, if it exists (a copy).
    fn getOption(&self) -> Option<S>;
}

impl<S: Clone> ScalaState<S> for crate::State<S> {
    fn getOption(&self) -> Option<S> {
        self.get().cloned()
    }
}

/// `x.join(y)` in a lambda body, as the macro writes it: Spark's `rdd.join(other)` on a batch
/// of pairs (with Spark's default partitioner), or Rust's `words.join(" ")` on a slice of
/// strings.
pub trait SparkJoin<A> {
    /// What the join gives.
    type Output;
    /// The join.
    fn spark_join(self, other: A) -> Self::Output;
}

impl<K: Key, V: Data, W: Data> SparkJoin<crate::batch::Batch<(K, W)>>
    for crate::batch::Batch<(K, V)>
{
    type Output = crate::batch::Batch<(K, (V, W))>;
    fn spark_join(self, other: crate::batch::Batch<(K, W)>) -> Self::Output {
        let p = joined(&self, &other);
        self.join(other, p)
    }
}

impl<S: AsRef<str>> SparkJoin<&str> for &[S] {
    type Output = String;
    fn spark_join(self, sep: &str) -> String {
        self.iter()
            .map(AsRef::as_ref)
            .collect::<Vec<&str>>()
            .join(sep)
    }
}
