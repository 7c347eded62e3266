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
    /// Each output operation's job, in the order they ran (Spark's `outputOperationInfos`);
    /// filled when the batch completes.
    pub output_operations: Vec<OutputOperationInfo>,
    /// Records and time of every operator of the graph in this batch, when operator metrics are
    /// on ([`StreamingContextBuilder::operator_metrics`](crate::StreamingContextBuilder::operator_metrics),
    /// or the dashboard); empty otherwise.
    pub operators: Vec<OperatorInfo>,
    /// The size of each stateful operator's state after this batch, when operator metrics are
    /// on and the pipeline keeps state.
    pub state: Vec<StateInfo>,
}

/// One output operation's job of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputOperationInfo {
    /// The output operation's index, in the order the outputs were registered.
    pub id: usize,
    /// What it is: the kind of output and the operator it reads ("foreach_batch of window").
    pub description: String,
    /// Wall time of the job, including computing the batches it reads.
    pub duration: std::time::Duration,
    /// The job's error, if it failed.
    pub failure: Option<String>,
}

/// What one operator (a node of the DStream graph) did in a batch.
///
/// `records` is exact: the records the operator handed on for the batch (a batch read twice,
/// such as a window's past batch, is counted once). `task_time` is the time the worker threads
/// spent in the operator's own work, summed over threads like Spark's task time: the operators
/// before and after it in a fused chain have their own rows. Work that one operator waits for
/// on other threads (the map side of a shuffle running in parallel) is counted where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorInfo {
    /// The operator's id in its context (creation order).
    pub id: usize,
    /// Its operation ("map", "reduce_by_key_and_window", an input's name).
    pub name: String,
    /// The ids of the operators it reads.
    pub parents: Vec<usize>,
    /// Records it produced for this batch (0 when it had no batch then).
    pub records: u64,
    /// Time the worker threads spent in it during this batch.
    pub task_time: std::time::Duration,
}

/// The size of one stateful operator's state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInfo {
    /// The operator, as the checkpoint describes it.
    pub operator: String,
    /// Keys holding state.
    pub keys: u64,
    /// Bytes of its column family in RocksDB (on disk and in memtables, RocksDB's estimate).
    pub bytes: u64,
}

impl BatchInfo {
    /// Time from the batch's submission (its jobs queued for the executor) until processing
    /// started: Spark's `schedulingDelay` (`processingStartTime - submissionTime`). Never
    /// negative: a batch submitted ahead of its time (the last one of a graceful stop, cut at
    /// once) counts from its submission, not from its time.
    pub fn scheduling_delay(&self) -> Option<Duration> {
        self.processing_start
            .map(|s| (s - self.submission_time).max(Duration::from_millis(0)))
    }

    /// Scheduling delay plus processing time (Spark's `totalDelay`), from the submission too.
    pub fn total_delay(&self) -> Option<Duration> {
        self.processing_end
            .map(|e| (e - self.submission_time).max(Duration::from_millis(0)))
    }
}

/// One partition of an input as its source sees it now: where it is and how far behind (a
/// Kafka partition's next offset and lag). Sources report it through
/// [`StreamingContext::add_input_status`](crate::StreamingContext::add_input_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPartitionStatus {
    /// The input ("kafka tweets").
    pub input: String,
    /// The partition ("tweets-0").
    pub partition: String,
    /// The next position a batch takes (an offset).
    pub position: i64,
    /// Records available after `position`, when known.
    pub lag: Option<i64>,
}

/// What an input holds in memory, waiting for the next batch, and the warnings it did not log
/// (rate-limited repeats): for the dashboard and `/metrics`. Receivers (the socket source among
/// them) report theirs through
/// [`StreamingContext::add_input_buffer_status`](crate::StreamingContext::add_input_buffer_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputBufferStatus {
    /// The input (`socketTextStream(localhost:9999)`).
    pub input: String,
    /// Records waiting for the next batch.
    pub records: u64,
    /// Their bytes (as the source counts them; 0 when it does not).
    pub bytes: u64,
    /// Warnings not logged because one of their kind was logged shortly before.
    pub warnings_suppressed: u64,
}

/// A function reporting an input's buffer.
pub type InputBufferStatusFn = std::sync::Arc<dyn Fn() -> InputBufferStatus + Send + Sync>;

/// A function reporting the partitions of an input.
pub type InputStatusFn = std::sync::Arc<dyn Fn() -> Vec<InputPartitionStatus> + Send + Sync>;

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

/// The console status line (`StreamingContextBuilder::status_line`): after each completed batch,
/// at most once a second, one line on stderr with the batch time, its records, the input rate,
/// and the batch's processing time and delays. Also a plain listener:
/// `ssc.add_streaming_listener(Arc::new(StatusLine::new(batch)))`.
#[derive(Debug)]
pub struct StatusLine {
    batch: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl StatusLine {
    /// A status line for batches of `batch`.
    pub fn new(batch: Duration) -> Self {
        StatusLine {
            batch,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The line for a completed batch.
    pub fn line(&self, info: &BatchInfo) -> String {
        let secs = self.batch.millis().max(1) as f64 / 1000.0;
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.millis()));
        format!(
            "[dstream] batch {}: {} records ({:.0}/s), processing {}, scheduling delay {}, total delay {}{}",
            info.batch_time,
            info.num_records,
            info.num_records as f64 / secs,
            info.processing_time
                .map_or("-".to_string(), |d| format!("{} ms", d.as_millis())),
            ms(info.scheduling_delay()),
            ms(info.total_delay()),
            match &info.failure {
                Some(e) => format!(", FAILED: {e}"),
                None => String::new(),
            }
        )
    }
}

impl StreamingListener for StatusLine {
    fn on_batch_completed(&self, info: &BatchInfo) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if due || info.failure.is_some() {
            *last = Some(std::time::Instant::now());
            eprintln!("{}", self.line(info));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_records_rate_and_delays() {
        let s = StatusLine::new(Duration::from_millis(500));
        let info = BatchInfo {
            batch_time: Time::from_millis(10_000),
            num_records: 2_000,
            submission_time: Time::from_millis(10_001),
            processing_start: Some(Time::from_millis(10_004)),
            processing_end: Some(Time::from_millis(10_054)),
            processing_time: Some(std::time::Duration::from_millis(50)),
            failure: None,
            output_operations: Vec::new(),
            operators: Vec::new(),
            state: Vec::new(),
        };
        assert_eq!(
            s.line(&info),
            "[dstream] batch 10000 ms: 2000 records (4000/s), processing 50 ms, scheduling delay 3 ms, total delay 53 ms"
        );
    }

    /// Issue 21: the last batch of a graceful stop is cut ahead of its time, and its delays
    /// printed as -562 ms. They count from the submission, as Spark's do.
    #[test]
    fn delays_are_never_negative() {
        let info = BatchInfo {
            batch_time: Time::from_millis(20_000),
            num_records: 1,
            submission_time: Time::from_millis(19_300),
            processing_start: Some(Time::from_millis(19_301)),
            processing_end: Some(Time::from_millis(19_310)),
            processing_time: Some(std::time::Duration::from_millis(9)),
            failure: None,
            output_operations: Vec::new(),
            operators: Vec::new(),
            state: Vec::new(),
        };
        assert_eq!(info.scheduling_delay(), Some(Duration::from_millis(1)));
        assert_eq!(info.total_delay(), Some(Duration::from_millis(10)));
    }
}
