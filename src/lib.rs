//! # dstream
//!
//! Spark Streaming's discretized streams as an embedded Rust library: the same model
//! (`StreamingContext`, `DStream`, per-batch RDD-like [`Batch`]es, Spark's operations and
//! semantics), typed at compile time, in one small binary.
//!
//! ```
//! use dstream::prelude::*;
//!
//! let ssc = StreamingContext::new(Seconds(1)).unwrap();
//! let lines = ssc.iterator_stream(vec!["to be #or not", "#or to #be"].into_iter(), 100);
//! let tags = lines
//!     .flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
//!     .filter(|w| w.starts_with('#'));
//! let counts = tags.map(|t| (t, 1)).reduce_by_key(|a, b| a + b);
//! counts.print().unwrap();
//! ssc.run_to_completion().unwrap();
//! ```
//!
//! The same pipeline in the `stream!` DSL, as the Scala of a Spark Streaming talk reads:
//!
//! ```
//! use dstream::prelude::*;
//!
//! let ssc = StreamingContext::new(Seconds(1)).unwrap();
//! let lines = ssc.iterator_stream(vec!["to be #or not", "#or to #be"].into_iter(), 100);
//! stream! {
//!     using lines
//!     val tags = lines.flatMap(_.split(' ').map(str::to_string).collect::<Vec<_>>())
//!         .filter(_.starts_with('#'))
//!     tags.map(t => (t, 1)).reduceByKey(_ + _).print()
//! }
//! .unwrap();
//! ssc.run_to_completion().unwrap();
//! ```
//!
//! This crate is the facade users depend on: it re-exports the runtime (`stream-core`), the
//! `stream!` macro (`stream-macros`; grammar in `docs/dsl.md`) and, with the default `kafka`
//! feature, the Kafka connector as [`kafka`] (`stream-kafka`; see `docs/kafka.md`).

#![warn(missing_docs)]

pub use stream_core::*;

/// With the `mimalloc` feature, mimalloc allocates for the whole binary: its small
/// allocations are cheaper than glibc's when one thread frees what another allocated, which
/// shuffles of `String` records do all the time (BENCHMARKS.md has figures with both). Its
/// options come from the environment (`MIMALLOC_PURGE_DELAY=-1` keeps freed memory for the
/// next batch instead of returning it to the OS after 10 ms).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub use stream_macros::stream;

/// Kafka: the direct source (offsets in the checkpoint) and the exactly-once sink
/// (`stream-kafka`; see `docs/kafka.md`).
#[cfg(feature = "kafka")]
pub use stream_kafka as kafka;

/// Everything a pipeline usually needs: `use dstream::prelude::*;`.
pub mod prelude {
    pub use stream_core::prelude::*;
    pub use stream_macros::stream;
}

// The README's example is compiled as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
