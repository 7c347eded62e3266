//! What Spark's `TestSuiteBase` does, for testing pipelines: literal input batches, a manual
//! clock whose first batch is at 1000 ms, and the output of every batch collected.
//!
//! Input batch `i` (1-based) is `input[i-1]` split into contiguous partitions (two by default,
//! as Spark's suites use); past the end of the input a batch is empty; a `None` batch means the
//! stream has *no* batch at that time (Spark's `compute` returning `None`), which is not the same
//! as an empty batch. `run(n)` moves the clock over `n` batches in one jump, waits until the
//! scheduler has completed all of them (20 s at most), and stops the context.
//!
//! ```
//! use stream_core::testing::TestContext;
//! let tc = TestContext::new();
//! let s = tc.input_stream(vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
//! let out = tc.collect(&s.map(|x| x * 10).glom()).unwrap();
//! tc.run(2).unwrap();
//! assert_eq!(out.batches(), vec![vec![vec![10, 20], vec![30, 40]], vec![vec![50, 60], vec![70, 80]]]);
//! ```

use std::sync::{Arc, Mutex};

use crate::batch::{Batch, Data};
use crate::clock::ManualClock;
use crate::context::{StreamingContext, StreamingContextBuilder};
use crate::dstream::DStream;
use crate::error::{ContextError, Error, Result};
use crate::source::{Source, SourceContext};
use crate::time::{Duration, Seconds, Time};

/// A streaming context on a manual clock, for tests.
#[derive(Debug)]
pub struct TestContext {
    ssc: StreamingContext,
    clock: ManualClock,
    partitions: usize,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

/// What a test run saw.
#[derive(Debug)]
pub struct RunReport {
    /// Failed batches, with their times and errors, in order.
    pub failures: Vec<(Time, Error)>,
}

impl RunReport {
    /// The first failure, if any.
    pub fn first_failure(&self) -> Option<&(Time, Error)> {
        self.failures.first()
    }
}

/// Each collected batch: its time and its partitions.
type Recorded<T> = Arc<Mutex<Vec<(Time, Vec<Vec<T>>)>>>;

/// The output of one stream, batch by batch (only batches in which the stream had a batch).
pub struct Collected<T> {
    batches: Recorded<T>,
}

impl<T> std::fmt::Debug for Collected<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collected").finish_non_exhaustive()
    }
}

impl<T: Clone> Collected<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Time, Vec<Vec<T>>)>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records of every batch, partitions concatenated in order.
    pub fn batches(&self) -> Vec<Vec<T>> {
        self.lock()
            .iter()
            .map(|(_, p)| p.iter().flatten().cloned().collect())
            .collect()
    }

    /// The partitions of every batch.
    pub fn partitions(&self) -> Vec<Vec<Vec<T>>> {
        self.lock().iter().map(|(_, p)| p.clone()).collect()
    }

    /// The times of the collected batches.
    pub fn times(&self) -> Vec<Time> {
        self.lock().iter().map(|(t, _)| *t).collect()
    }

    /// The records of the `i`-th collected batch (0-based); empty if there is none.
    pub fn batch(&self, i: usize) -> Vec<T> {
        self.batches().get(i).cloned().unwrap_or_default()
    }

    /// How many batches were collected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no batch was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct TestInput<T> {
    batches: Vec<Option<Vec<T>>>,
    partitions: usize,
}

impl<T: Data> Source<T> for TestInput<T> {
    fn name(&self) -> String {
        "testInputStream".into()
    }

    fn capture(&mut self, time: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>> {
        let index = ((time - ctx.zero_time) / ctx.batch_duration - 1).max(0) as usize;
        match self.batches.get(index) {
            Some(None) => Ok(None),
            Some(Some(v)) => Ok(Some(Batch::from_vec(v.clone(), self.partitions))),
            None => Ok(Some(Batch::from_vec(Vec::new(), self.partitions))),
        }
    }
}

impl TestContext {
    /// Batches of 1 s, parallelism 2, as Spark's suites (`local[2]`).
    pub fn new() -> Self {
        Self::with(Seconds(1), 2)
    }

    /// A test context with the given batch interval and parallelism.
    ///
    /// # Panics
    ///
    /// If the batch interval is not positive or the parallelism is zero: a test's own mistake.
    pub fn with(batch: Duration, parallelism: usize) -> Self {
        Self::configured(batch, parallelism, |b| b)
    }

    /// A test context whose builder `configure` adjusts further (e.g. a small state cache).
    ///
    /// # Panics
    ///
    /// If the settings are invalid: a test's own mistake.
    pub fn configured(
        batch: Duration,
        parallelism: usize,
        configure: impl FnOnce(StreamingContextBuilder) -> StreamingContextBuilder,
    ) -> Self {
        let clock = ManualClock::new();
        let builder = StreamingContext::builder(batch)
            .parallelism(parallelism)
            .clock(clock.clone())
            .stop_gracefully_on_signal(false)
            .temporary_checkpoint();
        let ssc = configure(builder)
            .build()
            .unwrap_or_else(|e| panic!("invalid test context settings: {e}"));
        TestContext {
            ssc,
            clock,
            partitions: 2,
        }
    }

    /// The underlying context (for `union`, `transform` and the other context operations).
    pub fn context(&self) -> &StreamingContext {
        &self.ssc
    }

    /// The manual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// An input stream of literal batches, each split into two partitions.
    pub fn input_stream<T: Data>(&self, batches: Vec<Vec<T>>) -> DStream<T> {
        self.input_stream_with(batches.into_iter().map(Some).collect(), self.partitions)
    }

    /// An input stream of literal batches, each split into `partitions` contiguous ranges;
    /// `None` is a batch time at which the stream has no batch at all.
    pub fn input_stream_with<T: Data>(
        &self,
        batches: Vec<Option<Vec<T>>>,
        partitions: usize,
    ) -> DStream<T> {
        self.ssc.input_stream(TestInput {
            batches,
            partitions: partitions.max(1),
        })
    }

    /// Collects the output of `stream`, every batch with its partitions.
    pub fn collect<T: Data>(&self, stream: &DStream<T>) -> Result<Collected<T>> {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let sink = batches.clone();
        stream.foreach_batch(move |b: Batch<T>, t| {
            let parts = b.partitions();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((t, parts));
        })?;
        Ok(Collected { batches })
    }

    /// Starts, moves the clock over `num_batches` batches, waits for them all, and stops.
    pub fn run(&self, num_batches: usize) -> Result<RunReport> {
        self.ssc.start()?;
        let batch = self.ssc.batch_duration();
        self.clock.advance(batch * num_batches as i64);
        let done = self.ssc.await_batches(num_batches as u64, Seconds(20));
        self.ssc.stop();
        if !done {
            return Err(ContextError::TimedOut(format!(
                "waited 20 s for {num_batches} batches; {} completed",
                self.ssc.completed_batches()
            ))
            .into());
        }
        Ok(RunReport {
            failures: self.ssc.failures(),
        })
    }
}
