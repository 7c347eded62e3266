//! The micro-batch runtime of dstream: Spark Streaming's discretized streams in Rust.
//!
//! A [`StreamingContext`] cuts input into batches at a fixed interval; a [`DStream`] is the
//! sequence of those batches, each a partitioned [`Batch`] (Spark's RDD); operations on a DStream
//! apply per batch, and output operations run a job per batch. Semantics follow Spark
//! Streaming's, checked against Spark's own test vectors (see `tests/conformance/`).
//!
//! The typed builder API here is complete on its own; the `stream!` DSL is sugar over it.

#![warn(missing_docs)]

mod batch;
mod checkpoint;
mod clock;
mod context;
#[cfg(feature = "dashboard")]
mod dashboard;
pub mod dsl;
mod dstream;
mod error;
mod metrics;
mod observe;
mod partitioner;
mod poison;
mod show;
mod signal;
mod sink;
mod source;
mod task;
pub mod testing;
pub mod text;
mod time;

pub use batch::{Batch, CHUNK, CoGrouped, Data, FullOuterJoined, Key, SEGMENT};
pub use checkpoint::keyed::{StateKey, StateValue};
pub use checkpoint::{CheckpointRestore, CommitRecord, Replicator, StateChange};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{StreamingContext, StreamingContextBuilder, StreamingContextState};
#[cfg(feature = "dashboard")]
pub use dashboard::{
    AsDashboard, Dashboard, DashboardOptions, DashboardSection, FeedStats, prometheus_labels,
    prometheus_metric,
};
pub use dstream::{
    DStream, MapWithStateStream, State, StateSpec, StreamTuple, TimeoutMode, TransformOutput,
    map_with_state_checkpoint_interval,
};
pub use error::{
    BoxError, CheckpointError, ContextError, Error, GraphError, OutputError, Result, ScaleError,
    SourceError,
};
pub use metrics::{
    BatchInfo, InputBufferStatus, InputBufferStatusFn, InputPartitionStatus, InputStatusFn,
    OperatorInfo, OutputOperationInfo, StateInfo, StatusLine, StreamingListener,
};
pub use partitioner::{
    HashPartitioner, JvmHash, Partitioner, SparkHashPartitioner, kafka_partition,
};
pub use poison::{DeadLetter, RecordErrorCount, RecordErrorStatusFn, RecordErrors};
pub use show::Show;
pub use sink::{OutputResult, Sink, SinkContext};
pub use source::{FileStreamOptions, Queue, ReceiverHandle, Source, SourceContext, TextRecord};
pub use task::{Exchange, Exchanges, Received, TaskScope};
pub use time::{Duration, Hours, Milliseconds, Minutes, Seconds, Time};

/// Everything a pipeline usually needs: `use stream_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Batch, DStream, Duration, Error, HashPartitioner, Hours, Milliseconds, Minutes, Queue,
        Seconds, Show, State, StateSpec, StreamingContext, Time,
    };
}
