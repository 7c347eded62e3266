//! What the `stream!` DSL's expansion calls besides the builder API: Spark's overloads that
//! take either a partition count or a partitioner, and the default partitioner of a stream.
//! Ordinary Rust code can use them too.

use crate::batch::{Data, Key};
use crate::dstream::DStream;
use crate::partitioner::HashPartitioner;

/// An argument that is a partition count or a partitioner (Spark overloads its operations
/// on `numPartitions: Int` and `partitioner: Partitioner`): an integer, a [`HashPartitioner`],
/// or any partitioner wrapped in [`Custom`].
pub trait PartitionArg {
    /// The partitioner it stands for.
    type Partitioner: Clone;
    /// The partitioner: a count `n` is a hash partitioner over `max(n, 1)` partitions.
    fn into_partitioner(self) -> Self::Partitioner;
}

macro_rules! counts {
    ($($t:ty),*) => {$(
        impl PartitionArg for $t {
            type Partitioner = HashPartitioner;
            fn into_partitioner(self) -> HashPartitioner {
                HashPartitioner::at_least_one(usize::try_from(self).unwrap_or(1))
            }
        }
    )*};
}
counts!(i32, i64, u32, u64, usize);

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
