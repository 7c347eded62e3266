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

        impl PartitionCount for $t {
            fn count(self) -> Option<usize> {
                usize::try_from(self).ok().filter(|n| *n > 0)
            }
            fn shown(self) -> String {
                self.to_string()
            }
        }
    )*};
}
counts!(i32, i64, u32, u64, usize);

/// A partition count as the DSL takes it: any integer type.
pub trait PartitionCount: Copy {
    /// The count, if it is positive.
    fn count(self) -> Option<usize>;
    /// The count as written, for the error.
    fn shown(self) -> String;
}

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
pub fn partition_count<N: PartitionCount>(n: N) -> Result<usize> {
    n.count().ok_or_else(|| {
        crate::Error::invalid(format!(
            "Number of partitions ({}) must be positive.",
            n.shown()
        ))
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
