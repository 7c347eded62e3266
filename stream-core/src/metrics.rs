//! What the scheduler reports about each batch (Spark's `BatchInfo`), and the listener API
//! through which it reports it (Spark's `StreamingListener`).

use crate::time::{Duration, Time};

/// The life of one batch: when it was due, how long it waited, how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInfo {
    /// The batch time.
    pub batch_time: Time,
    /// Records read by all inputs for this batch (those whose size is known when captured).
    pub num_records: u64,
    /// When the batch was handed to the executor (clock time).
    pub submission_time: Time,
    /// When processing started (clock time), once started.
    pub processing_start: Option<Time>,
    /// When processing ended (clock time), once done.
    pub processing_end: Option<Time>,
    /// Wall time spent processing, measured with a monotonic timer.
    pub processing_time: Option<std::time::Duration>,
    /// The first error of the batch, if it failed.
    pub failure: Option<String>,
}

impl BatchInfo {
    /// Time from the batch's due time until processing started (Spark's scheduling delay).
    pub fn scheduling_delay(&self) -> Option<Duration> {
        self.processing_start.map(|s| s - self.batch_time)
    }

    /// Scheduling delay plus processing time (Spark's total delay).
    pub fn total_delay(&self) -> Option<Duration> {
        self.processing_end.map(|e| e - self.batch_time)
    }
}

/// Receives batch events from a running context (Spark's `StreamingListener`). Called on the
/// scheduler's threads: keep the handlers short.
pub trait StreamingListener: Send + Sync + 'static {
    /// A batch was captured and queued for processing.
    fn on_batch_submitted(&self, _info: &BatchInfo) {}
    /// A batch started processing.
    fn on_batch_started(&self, _info: &BatchInfo) {}
    /// A batch finished, successfully or not (see `failure`).
    fn on_batch_completed(&self, _info: &BatchInfo) {}
}
