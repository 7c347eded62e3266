//! `StreamingContext`: the pipeline's owner and its scheduler.
//!
//! Life cycle as Spark's: INITIALIZED (build the graph) -> ACTIVE (`start`) -> STOPPED (`stop`),
//! never back. While active, two threads run the graph:
//! - the generator wakes at every batch time, asks each input for the records of that batch
//!   (so a batch holds what arrived before its time, whatever the backlog) and queues the batch;
//! - the executor takes batches in order, generates every output's job (computing the graph for
//!   that time), runs the jobs, records a [`BatchInfo`] and reports failures.
//!
//! A failed batch does not stop the stream; its error is kept, logged, given to listeners and
//! re-raised by `await_termination`.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};

use crate::checkpoint::{CheckpointRestore, Durable, Replicator, Shape, Store};
use crate::clock::{Clock, SystemClock};
use crate::dstream::{AnyNode, DStream, clear_through, walk_graph};
use crate::error::{CheckpointError, ContextError, Error, Result, panic_message};
use crate::metrics::{
    BatchInfo, InputPartitionStatus, InputStatusFn, OperatorInfo, OutputOperationInfo, StateInfo,
    StreamingListener,
};
use crate::sink::{OutputOp, SinkControl};
use crate::source::InputControl;
use crate::task::TaskScope;
use crate::time::{Duration, Time};

static NEXT_CONTEXT_ID: AtomicUsize = AtomicUsize::new(1);
const RECENT_BATCHES: usize = 1000;

/// The life-cycle state of a context (Spark's `StreamingContextState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingContextState {
    /// Built, not started: inputs, transformations and outputs may be added.
    Initialized,
    /// Started and running.
    Active,
    /// Stopped; it cannot be started again.
    Stopped,
}

/// The entry point of a streaming pipeline (Spark's `StreamingContext`).
///
/// ```
/// use stream_core::prelude::*;
/// let ssc = StreamingContext::new(Seconds(1)).unwrap();
/// let lines = ssc.iterator_stream(vec!["a b", "b c"].into_iter(), 10);
/// let counts = lines.flat_map(|l| l.split(' ').collect::<Vec<_>>()).count_by_value();
/// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// counts.foreach_batch(move |b, _| sink.lock().unwrap().extend(b.collect())).unwrap();
/// ssc.run_to_completion().unwrap();
/// let mut got = seen.lock().unwrap().clone();
/// got.sort();
/// assert_eq!(got, vec![("a", 1), ("b", 2), ("c", 1)]);
/// ```
#[derive(Clone)]
pub struct StreamingContext {
    pub(crate) inner: Arc<ContextInner>,
}

impl std::fmt::Debug for StreamingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingContext")
            .field("batch_duration", &self.inner.batch)
            .field("state", &self.state())
            .finish()
    }
}

/// Settings of a new context; see [`StreamingContext::builder`].
///
/// ```
/// use stream_core::prelude::*;
/// use stream_core::RecordErrors;
///
/// let ssc = StreamingContext::builder(Seconds(1))
///     .parallelism(4)                      // partitions per batch, shuffles' default
///     .temporary_checkpoint()              // or .checkpoint("/var/lib/my-job") to recover
///     .state_cache_entries(100_000)        // keys of state kept in memory per operator
///     .status_line(true)                   // a line per batch on stderr
///     .on_record_error(RecordErrors::skip()) // poison records are skipped, not fatal
///     .stop_gracefully_on_signal(true)
///     .build()?;
/// assert_eq!(ssc.batch_duration(), Seconds(1));
/// # Ok::<(), stream_core::Error>(())
/// ```
pub struct StreamingContextBuilder {
    batch: Duration,
    parallelism: Option<usize>,
    clock: Arc<dyn Clock>,
    stop_on_signal: bool,
    checkpoint: CheckpointSettings,
    state_cache: usize,
    status_line: bool,
    operator_metrics: bool,
    task: Option<TaskScope>,
    record_errors: crate::poison::RecordErrors,
    max_queued_batches: usize,
}

/// Where and how state is checkpointed.
#[derive(Debug, Clone, Default)]
struct CheckpointSettings {
    dir: Option<PathBuf>,
    temporary: bool,
    sync: bool,
    accept_loss: bool,
}

/// Batches generated and waiting for processing, at most, by default.
const DEFAULT_QUEUED_BATCHES: usize = 4;

/// Keys of state cached in memory per stateful operator, by default.
const DEFAULT_STATE_CACHE: usize = 1 << 20;

impl std::fmt::Debug for StreamingContextBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingContextBuilder")
            .field("batch", &self.batch)
            .finish()
    }
}

impl StreamingContextBuilder {
    /// Partitions per batch and default partition count of shuffles (default: the cores).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = Some(n);
        self
    }

    /// The clock that drives batches (default: [`SystemClock`]; tests use a `ManualClock`).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Whether Ctrl-C / SIGTERM stop the running context gracefully (default: true).
    pub fn stop_gracefully_on_signal(mut self, yes: bool) -> Self {
        self.stop_on_signal = yes;
        self
    }

    /// The checkpoint directory (Spark's `ssc.checkpoint(dir)`): state, input positions and the
    /// last completed batch are kept there, and [`StreamingContext::get_or_create`] recovers
    /// from it. Required by stateful operations (windows with an inverse, `update_state_by_key`,
    /// `map_with_state`).
    pub fn checkpoint(mut self, dir: impl AsRef<Path>) -> Self {
        self.checkpoint.dir = Some(dir.as_ref().to_path_buf());
        self.checkpoint.temporary = false;
        self
    }

    /// Keeps state in a temporary directory removed when the context is dropped: stateful
    /// operations work, but nothing survives the process (for tests and demos).
    pub fn temporary_checkpoint(mut self) -> Self {
        self.checkpoint.dir = Some(crate::checkpoint::temporary_dir());
        self.checkpoint.temporary = true;
        self
    }

    /// Whether each batch's commit waits for the disk (fsync). Default: false, which survives a
    /// crash of the process (the write-ahead log is in the OS's page cache) but not of the
    /// machine; true survives power loss too, at the cost of an fsync per batch.
    pub fn checkpoint_sync(mut self, yes: bool) -> Self {
        self.checkpoint.sync = yes;
        self
    }

    /// Whether a checkpoint whose state database opens at a batch older than the last one
    /// committed (its write-ahead log damaged, cut short or deleted; after a power loss without
    /// [`checkpoint_sync`](Self::checkpoint_sync)) is accepted, resuming from that older batch
    /// with an error logged. Default: false, and opening it fails, naming the log and what was
    /// lost: the state the lost batches made from inputs that cannot be replayed (socket,
    /// queue, rate, receivers).
    pub fn accept_checkpoint_loss(mut self, yes: bool) -> Self {
        self.checkpoint.accept_loss = yes;
        self
    }

    /// How many keys of state each stateful operator keeps in memory (default 1,048,576); the
    /// rest stay in RocksDB only, so state may be far larger than memory.
    pub fn state_cache_entries(mut self, n: usize) -> Self {
        self.state_cache = n.max(1);
        self
    }

    /// Prints a status line on stderr after each completed batch, at most once a second: batch
    /// time, records, input rate, processing time and delays ([`StatusLine`](crate::StatusLine)).
    pub fn status_line(mut self, yes: bool) -> Self {
        self.status_line = yes;
        self
    }

    /// Collects each operator's records and time per batch, and each stateful operator's state
    /// size, into [`BatchInfo::operators`](crate::BatchInfo) and `state` (the dashboard turns
    /// this on). Costs a counter per chunk of records and operator.
    pub fn operator_metrics(mut self, yes: bool) -> Self {
        self.operator_metrics = yes;
        self
    }

    /// What happens to a record on which a user function panics, for every guarded operator
    /// that sets no policy of its own: the batch fails (the default, as Spark), or the record is
    /// skipped and counted, or also handed to a dead-letter function. See [`RecordErrors`](crate::RecordErrors).
    pub fn on_record_error(mut self, policy: crate::poison::RecordErrors) -> Self {
        self.record_errors = policy;
        self
    }

    /// How many generated batches may wait for processing (default 4). When processing falls
    /// that far behind, the generator waits before cutting the next batch: records stay with
    /// their sources (a receiver's buffer fills and its `push` blocks, so the socket source
    /// stops reading and TCP slows the sender), and memory stays bounded instead of a queue of
    /// batches growing for as long as the overload lasts. Batch times stay on the grid: the
    /// batches generated late carry their own times, and their delay shows it.
    pub fn max_queued_batches(mut self, n: usize) -> Self {
        self.max_queued_batches = n.max(1);
        self
    }

    /// Builds the context. The batch interval must be positive, parallelism at least one.
    pub fn build(self) -> Result<StreamingContext> {
        if self.batch.millis() <= 0 {
            return Err(Error::invalid(format!(
                "Batch duration must be positive, got {}",
                self.batch
            )));
        }
        let parallelism = match self.parallelism {
            Some(0) => {
                return Err(Error::invalid("parallelism must be at least 1".to_string()));
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        };
        Ok(StreamingContext {
            inner: Arc::new(ContextInner {
                id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
                batch: self.batch,
                parallelism,
                clock: self.clock,
                stop_on_signal: self.stop_on_signal,
                zero: AtomicI64::new(i64::MIN),
                run: Mutex::new(RunState::default()),
                graph: Mutex::new(Graph::default()),
                listeners: Mutex::new(if self.status_line {
                    vec![Arc::new(crate::metrics::StatusLine::new(self.batch))
                        as Arc<dyn StreamingListener>]
                } else {
                    Vec::new()
                }),
                progress: Mutex::new(Progress::default()),
                progress_cv: Condvar::new(),
                stopping: AtomicBool::new(false),
                exchanges: AtomicBool::new(false),
                stop_now: AtomicBool::new(false),
                drain: AtomicI64::new(0),
                reaches: Mutex::new(BTreeMap::new()),
                checkpoint: Mutex::new(self.checkpoint),
                store: OnceLock::new(),
                durables: Mutex::new(Vec::new()),
                state_cache: self.state_cache,
                observing: AtomicBool::new(self.operator_metrics),
                next_node: AtomicUsize::new(0),
                input_status: Mutex::new(Vec::new()),
                input_buffers: Mutex::new(Vec::new()),
                task: self.task,
                replicator: Mutex::new(None),
                record_errors: crate::poison::RecordErrorsCell::new(self.record_errors),
                max_queued_batches: self.max_queued_batches,
            }),
        })
    }
}

#[derive(Default)]
struct RunState {
    state: Option<StreamingContextState>,
    threads: Vec<JoinHandle<()>>,
    thread_ids: Vec<ThreadId>,
}

#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) inputs: Vec<Arc<dyn InputControl>>,
    pub(crate) outputs: Vec<Arc<dyn OutputOp>>,
    /// The outputs that are [`Sink`](crate::Sink)s, in the order they were added.
    pub(crate) sinks: Vec<Arc<dyn SinkControl>>,
}

#[derive(Default)]
struct Progress {
    completed: u64,
    stopped: bool,
    executor_done: bool,
    first_error: Option<Error>,
    failures: Vec<(Time, Error)>,
    recent: VecDeque<BatchInfo>,
}

pub(crate) struct ContextInner {
    pub(crate) id: usize,
    batch: Duration,
    pub(crate) parallelism: usize,
    clock: Arc<dyn Clock>,
    stop_on_signal: bool,
    zero: AtomicI64,
    run: Mutex<RunState>,
    pub(crate) graph: Mutex<Graph>,
    listeners: Mutex<Vec<Arc<dyn StreamingListener>>>,
    progress: Mutex<Progress>,
    progress_cv: Condvar,
    stopping: AtomicBool,
    /// Whether the pipeline exchanges records with the application's other tasks: a task that
    /// starts afresh then starts at the application's first batch, as the others did, so that
    /// every task sends every batch.
    pub(crate) exchanges: AtomicBool,
    stop_now: AtomicBool,
    /// The longest reach of the graph's windows, in ms: how long a batch job keeps generating
    /// batches after its inputs finish, so that every window holding their last records is
    /// emitted (see `add_window`).
    drain: AtomicI64,
    /// Each window node's reach, by node id.
    reaches: Mutex<BTreeMap<usize, i64>>,
    checkpoint: Mutex<CheckpointSettings>,
    /// The open checkpoint, once the pipeline is complete (at `get_or_create` or `start`).
    store: OnceLock<Arc<Store>>,
    /// The stateful operators, in creation order (their ids).
    durables: Mutex<Vec<Arc<dyn Durable>>>,
    pub(crate) state_cache: usize,
    /// Operator metrics on (`BatchInfo::operators`, `BatchInfo::state`).
    observing: AtomicBool,
    next_node: AtomicUsize,
    input_status: Mutex<Vec<InputStatusFn>>,
    input_buffers: Mutex<Vec<crate::metrics::InputBufferStatusFn>>,
    /// Set when the context runs one task of a scaled-out application.
    task: Option<TaskScope>,
    /// Sees every batch's state changes before the local commit (a changelog).
    replicator: Mutex<Option<Arc<dyn Replicator>>>,
    /// The pipeline's policy for poison records, and what each guarded operator did.
    pub(crate) record_errors: crate::poison::RecordErrorsCell,
    /// Batches generated and not yet processed, at most (streaming mode).
    max_queued_batches: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum JobMsg {
    Batch {
        time: Time,
        records: u64,
        submitted: Time,
        /// Set when the batch's input positions could not be written ahead: it fails.
        setup: Option<Error>,
    },
    End,
}

/// The generator's side of the job queue, bounded: while streaming, at
/// `max_queued_batches` (a generator ahead of processing by that much waits, and the inputs
/// hold their records: memory stays bounded under overload, where Spark's queue grows); in
/// batch-job mode at 2 (so a fast finite input does not run far ahead of processing).
struct JobSender(mpsc::SyncSender<JobMsg>);

impl JobSender {
    fn send(&self, m: JobMsg) -> bool {
        self.0.send(m).is_ok()
    }
}

impl ContextInner {
    pub(crate) fn input_status(&self) -> Vec<InputPartitionStatus> {
        let reports = lock(&self.input_status).clone();
        reports.iter().flat_map(|f| f()).collect()
    }

    /// Whether the context is stopping (a batch waiting on other tasks gives up).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether operator metrics are collected.
    pub(crate) fn observing(&self) -> bool {
        self.observing.load(Ordering::Relaxed)
    }

    /// The id of a new node of the graph.
    pub(crate) fn next_node_id(&self) -> usize {
        self.next_node.fetch_add(1, Ordering::Relaxed)
    }

    /// Each operator's records and time in batch `t`, and the size of each state.
    fn operator_metrics(
        &self,
        t: Time,
        outputs: &[Arc<dyn OutputOp>],
    ) -> (Vec<OperatorInfo>, Vec<StateInfo>) {
        let roots: Vec<_> = outputs.iter().map(|o| o.node()).collect();
        let refs: Vec<&dyn AnyNode> = roots.iter().map(|n| n.as_ref()).collect();
        let mut operators = Vec::new();
        walk_graph(&refs, &mut |n| {
            let base = n.base();
            let (records, task_time) = base.stats.take(t);
            operators.push(OperatorInfo {
                id: base.id,
                name: base.name.clone(),
                parents: base.parents.iter().map(|p| p.base().id).collect(),
                records,
                task_time,
            });
        });
        operators.sort_by_key(|o| o.id);
        let state = match self.store() {
            Some(store) => lock(&self.durables)
                .iter()
                .filter_map(|d| d.size(store))
                .collect(),
            None => Vec::new(),
        };
        (operators, state)
    }

    pub(crate) fn zero_time(&self) -> Option<Time> {
        match self.zero.load(Ordering::Acquire) {
            i64::MIN => None,
            z => Some(Time::from_millis(z)),
        }
    }

    /// The open checkpoint, if any.
    pub(crate) fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Registers a stateful operator made by `make` from its id.
    pub(crate) fn register_durable<D: Durable + 'static>(
        &self,
        make: impl FnOnce(usize) -> D,
    ) -> Arc<D> {
        let mut durables = lock(&self.durables);
        let d = Arc::new(make(durables.len()));
        if self.check_can_add().is_ok() {
            durables.push(d.clone());
        }
        d
    }

    /// Opens the checkpoint for the pipeline as built (once): required when the pipeline has
    /// stateful operations; refused if it was written by a pipeline of another shape.
    fn open_checkpoint(&self) -> Result<Option<Arc<Store>>> {
        if let Some(s) = self.store.get() {
            return Ok(Some(s.clone()));
        }
        let settings = lock(&self.checkpoint).clone();
        let operators: Vec<String> = lock(&self.durables).iter().map(|d| d.describe()).collect();
        if settings.temporary && operators.is_empty() {
            // Nothing to keep: a stateless pipeline needs no temporary state.
            return Ok(None);
        }
        let Some(dir) = settings.dir else {
            if operators.is_empty() {
                return Ok(None);
            }
            return Err(CheckpointError::NotSet.into());
        };
        let inputs = lock(&self.graph).inputs.iter().map(|i| i.name()).collect();
        let shape = Shape {
            batch_ms: self.batch.millis(),
            inputs,
            operators,
        };
        let store = Arc::new(Store::open(
            &dir,
            &shape,
            settings.temporary,
            settings.sync,
            settings.accept_loss,
        )?);
        Ok(Some(self.store.get_or_init(|| store).clone()))
    }

    /// The reach of `node`'s batches: how long after an input's batch time this node's
    /// outputs may still hold its records. 0 without a window upstream; the most of the
    /// windows among the node and its ancestors otherwise.
    pub(crate) fn reach_of(&self, node: &dyn crate::dstream::AnyNode) -> i64 {
        let reaches = lock(&self.reaches);
        let mut reach = 0;
        crate::dstream::walk_graph(&[node], &mut |n| {
            if let Some(r) = reaches.get(&n.base().id) {
                reach = reach.max(*r);
            }
        });
        reach
    }

    /// Notes window node `window` of length `length` over `parent`: its reach is the parent's
    /// plus `length - parent's slide` (its last output holding a parent's batch is that much
    /// later). A window of a window adds both: the batch job drains the whole chain.
    pub(crate) fn add_window(
        &self,
        window: &dyn crate::dstream::AnyNode,
        parent: &dyn crate::dstream::AnyNode,
        length: Duration,
    ) {
        let reach = self.reach_of(parent) + (length - parent.base().slide).millis();
        lock(&self.reaches).insert(window.base().id, reach);
        self.drain.fetch_max(reach, Ordering::Relaxed);
    }

    fn state(&self) -> StreamingContextState {
        lock(&self.run)
            .state
            .unwrap_or(StreamingContextState::Initialized)
    }

    /// Spark's rule: inputs, transformations and outputs are added only before `start()`.
    pub(crate) fn check_can_add(&self) -> Result<(), ContextError> {
        match self.state() {
            StreamingContextState::Initialized => Ok(()),
            StreamingContextState::Active => Err(ContextError::AddAfterStart),
            StreamingContextState::Stopped => Err(ContextError::AddAfterStop),
        }
    }

    fn listeners(&self) -> Vec<Arc<dyn StreamingListener>> {
        lock(&self.listeners).clone()
    }

    fn generator_loop(self: Arc<Self>, tx: JobSender, first: Time, fast: bool) {
        let inputs = lock(&self.graph).inputs.clone();
        let mut t = first;
        let mut drain_until = None;
        loop {
            if !fast {
                self.clock
                    .wait_until(t, &|| self.stopping.load(Ordering::SeqCst));
            }
            if self.stopping.load(Ordering::SeqCst) {
                // A graceful stop generates the batch due next at once, so that what the inputs
                // took in since the last batch (received records, new files) is processed too.
                if !self.stop_now.load(Ordering::SeqCst) {
                    self.submit(&tx, &inputs, t);
                }
                break;
            }
            if !self.submit(&tx, &inputs, t) {
                break;
            }
            if fast {
                match drain_until {
                    Some(end) if t >= end => break,
                    Some(_) => {}
                    None if inputs.iter().all(|i| i.is_finished()) => {
                        // Windows ending up to `drain` later still hold this batch.
                        let drain = Duration::from_millis(self.drain.load(Ordering::Relaxed));
                        if drain <= Duration::from_millis(0) {
                            break;
                        }
                        drain_until = Some(t + drain);
                    }
                    None => {}
                }
            }
            t = t + self.batch;
        }
        tx.send(JobMsg::End);
    }

    fn submit(&self, tx: &JobSender, inputs: &[Arc<dyn InputControl>], t: Time) -> bool {
        let records: u64 = inputs.iter().map(|i| i.capture(t) as u64).sum();
        let setup = self.write_ahead(inputs, t, None).err();
        let submitted = self.clock.now();
        let info = BatchInfo {
            batch_time: t,
            num_records: records,
            submission_time: submitted,
            processing_start: None,
            processing_end: None,
            processing_time: None,
            failure: None,
            output_operations: Vec::new(),
            operators: Vec::new(),
            state: Vec::new(),
        };
        self.notify(|l| l.on_batch_submitted(&info));
        tx.send(JobMsg::Batch {
            time: t,
            records,
            submitted,
            setup,
        })
    }

    fn executor_loop(self: Arc<Self>, rx: mpsc::Receiver<JobMsg>) {
        /// Marks the executor done however it ends, so `run_to_completion` never waits forever.
        struct Done<'a>(&'a ContextInner);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                lock(&self.0.progress).executor_done = true;
                self.0.progress_cv.notify_all();
            }
        }
        let _done = Done(&self);
        for msg in rx {
            match msg {
                JobMsg::End => break,
                JobMsg::Batch { .. } if self.stop_now.load(Ordering::SeqCst) => continue,
                JobMsg::Batch {
                    time,
                    records,
                    submitted,
                    setup,
                } => self.run_batch(time, records, submitted, setup),
            }
        }
    }

    /// Calls every listener; a panicking listener is logged and does not stop the scheduler.
    fn notify(&self, f: impl Fn(&dyn StreamingListener)) {
        for l in self.listeners() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(l.as_ref()))) {
                tracing::error!("a StreamingListener panicked: {}", panic_message(&*p));
            }
        }
    }

    /// Writes the inputs' positions after capturing `t` ahead of processing it, so that a
    /// recovery replays exactly this batch; `start` (the zero time) for the positions before a
    /// new checkpoint's first batch.
    fn write_ahead(
        &self,
        inputs: &[Arc<dyn InputControl>],
        t: Time,
        start: Option<Time>,
    ) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let positions: Vec<(usize, Vec<u8>)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, input)| input.position_at(t).map(|p| (i, p)))
            .collect();
        store.write_ahead(&positions, t, start)?;
        let replicator = lock(&self.replicator).clone();
        match replicator {
            Some(r) if !positions.is_empty() => r.write_ahead(t, &positions),
            _ => Ok(()),
        }
    }

    /// Commits the batch to the checkpoint if it succeeded (and every batch before it did);
    /// otherwise discards its state changes.
    fn checkpoint_batch(
        &self,
        time: Time,
        inputs: &[Arc<dyn InputControl>],
        sinks: &[Arc<dyn SinkControl>],
        ok: bool,
    ) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let durables = lock(&self.durables).clone();
        if ok && store.check_healthy().is_ok() {
            let zero = self.zero_time().unwrap_or(Time::from_millis(0));
            let remember = inputs
                .iter()
                .map(|i| i.remember())
                .max()
                .unwrap_or_default();
            let keep = crate::checkpoint::keep_from(time, remember, self.batch);
            let positions: Vec<(usize, Vec<u8>)> = sinks
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.position().map(|p| (i, p)))
                .collect();
            let replicator = lock(&self.replicator).clone();
            let input_positions: Vec<(usize, Vec<u8>)> = if replicator.is_some() {
                inputs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, input)| input.position_at(time).map(|p| (i, p)))
                    .collect()
            } else {
                Vec::new()
            };
            match store.commit(
                time,
                zero,
                &durables,
                &input_positions,
                inputs.len(),
                keep,
                &positions,
                replicator.as_deref(),
            ) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    store.abort(time, &durables);
                    return Err(e);
                }
            }
        }
        store.abort(time, &durables);
        Ok(())
    }

    fn run_batch(&self, time: Time, records: u64, submitted: Time, setup: Option<Error>) {
        let (inputs, outputs, sinks) = {
            let g = lock(&self.graph);
            (g.inputs.clone(), g.outputs.clone(), g.sinks.clone())
        };
        let mut info = BatchInfo {
            batch_time: time,
            num_records: records,
            submission_time: submitted,
            processing_start: Some(self.clock.now()),
            processing_end: None,
            processing_time: None,
            failure: None,
            output_operations: Vec::new(),
            operators: Vec::new(),
            state: Vec::new(),
        };
        self.notify(|l| l.on_batch_started(&info));
        // A span per batch, and inside it per output job, so that a tracing subscriber sees
        // where a batch's time goes (the worker threads' parallel work is counted where it
        // is waited for).
        let batch_span = tracing::info_span!("batch", time = %time, records);
        let _batch = batch_span.enter();
        let started = std::time::Instant::now();
        let guarded = |f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
            catch_unwind(AssertUnwindSafe(f))
                .unwrap_or_else(|p| Err(Error::user(time, panic_message(&*p))))
        };
        // Generate every output's job first, as Spark's JobGenerator: if any fails, none runs.
        // Each job's time counts its generation (stateful operators compute there) and its run.
        let mut jobs = Vec::with_capacity(outputs.len());
        let mut errors: Vec<Error> = setup.into_iter().collect();
        let generated = guarded(&mut || {
            for (id, o) in outputs.iter().enumerate() {
                let _generate = tracing::debug_span!("generate", output = id).entered();
                let started = std::time::Instant::now();
                if let Some(job) = o.generate(time)? {
                    jobs.push((id, job, started.elapsed()));
                }
            }
            Ok(())
        });
        match generated {
            Err(e) => errors.push(e),
            Ok(()) if !errors.is_empty() => {}
            Ok(()) => {
                for (id, job, generating) in jobs {
                    let description = outputs[id].describe();
                    let _output =
                        tracing::info_span!("output", id, operation = %description).entered();
                    let started = std::time::Instant::now();
                    let mut job = Some(job);
                    let r = guarded(&mut || job.take().map_or(Ok(()), |j| j()));
                    info.output_operations.push(OutputOperationInfo {
                        id,
                        description,
                        duration: generating + started.elapsed(),
                        failure: r.as_ref().err().map(|e| e.to_string()),
                    });
                    if let Err(e) = r {
                        errors.push(e);
                    }
                }
            }
        }
        let checkpointed = tracing::debug_span!("checkpoint")
            .in_scope(|| self.checkpoint_batch(time, &inputs, &sinks, errors.is_empty()));
        if let Err(e) = checkpointed {
            errors.push(e);
        }
        if errors.is_empty() && self.store().is_none_or(|s| s.check_healthy().is_ok()) {
            for i in &inputs {
                i.committed(time);
            }
            for s in &sinks {
                s.committed(time);
            }
        }
        for o in &outputs {
            clear_through(o.node().as_ref(), time);
        }
        for i in &inputs {
            i.clear_through(time);
        }
        if self.observing() {
            (info.operators, info.state) = self.operator_metrics(time, &outputs);
        }
        info.processing_time = Some(started.elapsed());
        info.processing_end = Some(self.clock.now());
        if let Some(e) = errors.first() {
            if self.is_stopping() && self.exchanges.load(Ordering::Relaxed) {
                // A task of a scaled-out application gave up waiting for the others because it
                // stops: its next owner processes the batch.
                tracing::info!("the batch at {time} stops unfinished: {e}");
            } else {
                tracing::error!("Error running job streaming job {time}: {e}");
            }
            info.failure = Some(e.to_string());
        }
        {
            let mut p = lock(&self.progress);
            p.completed += 1;
            for e in errors {
                p.first_error.get_or_insert_with(|| e.clone());
                if p.failures.len() == RECENT_BATCHES {
                    p.failures.remove(0);
                }
                p.failures.push((time, e));
            }
            if p.recent.len() == RECENT_BATCHES {
                p.recent.pop_front();
            }
            p.recent.push_back(info.clone());
        }
        self.progress_cv.notify_all();
        self.notify(|l| l.on_batch_completed(&info));
    }
}

impl StreamingContext {
    /// A context with batches every `batch_duration`, on the system clock, with the machine's
    /// cores as parallelism.
    pub fn new(batch_duration: Duration) -> Result<Self> {
        Self::builder(batch_duration).build()
    }

    /// Settings beyond the batch interval: parallelism, clock, signal handling.
    ///
    /// Inside a scale-out runner's [`TaskScope::enter`], the context belongs to that task
    /// ([`task`](Self::task)) and does not watch signals itself: the runner stops its tasks.
    pub fn builder(batch_duration: Duration) -> StreamingContextBuilder {
        let task = TaskScope::current();
        StreamingContextBuilder {
            batch: batch_duration,
            parallelism: None,
            clock: Arc::new(SystemClock),
            stop_on_signal: task.is_none(),
            checkpoint: CheckpointSettings::default(),
            state_cache: DEFAULT_STATE_CACHE,
            status_line: false,
            operator_metrics: false,
            task,
            record_errors: Default::default(),
            max_queued_batches: DEFAULT_QUEUED_BATCHES,
        }
    }

    /// The task this context runs, when a scale-out runner built it (see [`TaskScope`]).
    pub fn task(&self) -> Option<&TaskScope> {
        self.inner.task.as_ref()
    }

    /// Hands every batch's state changes, with the inputs' and sinks' positions after it, to
    /// `replicator` before the batch commits to the checkpoint (an error fails the batch). A
    /// scale-out runner writes them to changelog topics, so that a task's state can be
    /// restored on another machine. Only before `start`.
    pub fn set_replicator(&self, replicator: Arc<dyn Replicator>) -> Result<()> {
        self.inner.check_can_add()?;
        *lock(&self.inner.replicator) = Some(replicator);
        Ok(())
    }

    /// Opens the checkpoint (as `start` would) and lets `restore` write a replica's records
    /// into it: the context then resumes from the restored batch when started. Only before
    /// `start`; the pipeline must be complete.
    pub fn restore_checkpoint<R>(
        &self,
        restore: impl FnOnce(&mut CheckpointRestore<'_>) -> Result<R>,
    ) -> Result<R> {
        self.inner.check_can_add()?;
        let store = self
            .inner
            .open_checkpoint()?
            .ok_or_else(|| Error::from(crate::error::CheckpointError::NotSet))?;
        let operators = lock(&self.inner.durables).clone();
        let mut writer = store.restore(operators);
        let r = restore(&mut writer)?;
        writer.flush()?;
        Ok(r)
    }

    /// The checkpoint directory set so far, unless it is a temporary one.
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        let c = lock(&self.inner.checkpoint);
        c.dir.clone().filter(|_| !c.temporary)
    }

    /// The pipeline's shape as a checkpoint records it, a line per fact: each input by name
    /// and each stateful operator's kind, partitions and types (the batch interval aside). Two
    /// instances of a scaled-out application must agree on it.
    pub fn shape_lines(&self) -> Vec<String> {
        let inputs: Vec<String> = lock(&self.inner.graph)
            .inputs
            .iter()
            .map(|i| i.name())
            .collect();
        let operators: Vec<String> = lock(&self.inner.durables)
            .iter()
            .map(|d| d.describe())
            .collect();
        inputs
            .iter()
            .enumerate()
            .map(|(i, n)| format!("input #{i} ({n})"))
            .chain(
                operators
                    .iter()
                    .enumerate()
                    .map(|(i, d)| format!("stateful operator #{i} ({d})")),
            )
            .collect()
    }

    /// Sets the checkpoint directory (Spark's `ssc.checkpoint(dir)`); see
    /// [`StreamingContextBuilder::checkpoint`]. Only before the checkpoint is opened (by
    /// `start` or `get_or_create`).
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        if let Some(s) = self.inner.store() {
            if s.dir() == dir.as_ref() {
                return Ok(());
            }
            return Err(Error::invalid(format!(
                "the checkpoint in {} is already open; the checkpoint directory cannot change",
                s.dir().display()
            )));
        }
        let mut c = lock(&self.inner.checkpoint);
        c.dir = Some(dir.as_ref().to_path_buf());
        c.temporary = false;
        Ok(())
    }

    /// [`StreamingContextBuilder::accept_checkpoint_loss`], on a built context: only before the
    /// checkpoint is opened (by `start` or `get_or_create`).
    pub fn accept_checkpoint_loss(&self, yes: bool) -> Result<()> {
        if let Some(s) = self.inner.store() {
            return Err(Error::invalid(format!(
                "the checkpoint in {} is already open",
                s.dir().display()
            )));
        }
        lock(&self.inner.checkpoint).accept_loss = yes;
        Ok(())
    }

    /// Spark's `StreamingContext.getOrCreate`: `create` builds the context and its whole
    /// pipeline (closures are not serialised: the pipeline is always rebuilt by your code);
    /// the checkpoint in `dir` is then opened. If it holds a completed batch, the context
    /// resumes from it when started: state, input positions and the next batch time come back.
    /// A checkpoint written by a pipeline of another shape (stateful operators, inputs, batch
    /// interval) is refused with an error naming the difference; a damaged one with an error
    /// naming the file.
    ///
    /// ```
    /// use stream_core::prelude::*;
    /// let dir = std::env::temp_dir().join(format!("dstream-doc-{}", std::process::id()));
    /// let build = || {
    ///     let ssc = StreamingContext::new(Seconds(1))?;
    ///     let q = Queue::new();
    ///     ssc.queue_stream(&q, true).map(|w: String| (w, 1)).update_state_by_key(|vs: Vec<i32>, s: Option<i32>| {
    ///         Some(s.unwrap_or(0) + vs.len() as i32)
    ///     }).print()?;
    ///     Ok(ssc)
    /// };
    /// let ssc = StreamingContext::get_or_create(&dir, build).unwrap();
    /// assert_eq!(ssc.recovered_batch(), None); // a new checkpoint
    /// # drop(ssc);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn get_or_create(
        dir: impl AsRef<Path>,
        create: impl FnOnce() -> Result<StreamingContext>,
    ) -> Result<StreamingContext> {
        let ssc = create()?;
        // One look, the guard dropped at once: in a `let` chain, a guard taken in the first
        // condition lives through the others (locking it again there deadlocked).
        let (own, temporary) = {
            let c = lock(&ssc.inner.checkpoint);
            (c.dir.clone(), c.temporary)
        };
        if let Some(own) = own
            && own != dir.as_ref()
            && !temporary
        {
            return Err(Error::invalid(format!(
                "get_or_create({}) got a context checkpointing to {}",
                dir.as_ref().display(),
                own.display()
            )));
        }
        ssc.checkpoint(&dir)?;
        if lock(&ssc.inner.graph).outputs.is_empty() {
            return Err(ContextError::NoOutputOperations.into());
        }
        ssc.inner.open_checkpoint()?;
        Ok(ssc)
    }

    /// The last batch completed before the checkpoint was recovered (`None` for a new one).
    pub fn recovered_batch(&self) -> Option<Time> {
        self.inner
            .store()
            .and_then(|s| s.recovery())
            .filter(|r| r.completed)
            .map(|r| r.last)
    }

    /// The batch interval.
    pub fn batch_duration(&self) -> Duration {
        self.inner.batch
    }

    /// Partitions per input batch and default partitions of shuffles.
    pub fn parallelism(&self) -> usize {
        self.inner.parallelism
    }

    /// The context's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// The life-cycle state.
    pub fn state(&self) -> StreamingContextState {
        self.inner.state()
    }

    /// The time before the first batch, once started (first batch = zero + batch interval).
    pub fn zero_time(&self) -> Option<Time> {
        self.inner.zero_time()
    }

    /// Turns operator metrics on or off from the next batch (see
    /// [`StreamingContextBuilder::operator_metrics`]).
    pub fn set_operator_metrics(&self, yes: bool) {
        self.inner.observing.store(yes, Ordering::Relaxed);
    }

    /// Registers a report of an input's partitions (positions and lag), shown by the dashboard
    /// and `/metrics`. The Kafka source registers its own.
    pub fn add_input_status(
        &self,
        f: impl Fn() -> Vec<InputPartitionStatus> + Send + Sync + 'static,
    ) {
        lock(&self.inner.input_status).push(Arc::new(f));
    }

    /// Registers a report of what an input holds in memory for the next batch (records,
    /// bytes) and the warnings it did not log, shown by the dashboard and `/metrics`.
    /// Receivers register their own.
    pub fn add_input_buffer_status(
        &self,
        f: impl Fn() -> crate::metrics::InputBufferStatus + Send + Sync + 'static,
    ) {
        lock(&self.inner.input_buffers).push(Arc::new(f));
    }

    /// Every input's buffer now (see [`add_input_buffer_status`](Self::add_input_buffer_status)).
    pub fn input_buffers(&self) -> Vec<crate::metrics::InputBufferStatus> {
        let reports = lock(&self.inner.input_buffers).clone();
        reports.iter().map(|f| f()).collect()
    }

    /// Every input's partitions now, from the reports registered with
    /// [`add_input_status`](Self::add_input_status).
    pub fn input_status(&self) -> Vec<InputPartitionStatus> {
        self.inner.input_status()
    }

    /// What the sources that report dropped records, and each operator under a `skip` or
    /// `dead_letter` policy, did with poison records so far (records skipped and dead-lettered
    /// under [`RecordErrors`](crate::RecordErrors)), operators in creation order.
    pub fn record_errors(&self) -> Vec<crate::poison::RecordErrorCount> {
        self.inner.record_errors.counts()
    }

    /// Registers a report of records a source dropped (records that failed to decode, and
    /// which of those went to a dead-letter output), listed with the operators' by
    /// [`record_errors`](Self::record_errors), on the dashboard and on `/metrics`. The Kafka
    /// source registers its own.
    pub fn add_record_error_status(
        &self,
        f: impl Fn() -> Vec<crate::poison::RecordErrorCount> + Send + Sync + 'static,
    ) {
        self.inner.record_errors.add_report(Arc::new(f));
    }

    /// Registers a listener of batch events.
    pub fn add_streaming_listener(&self, listener: Arc<dyn StreamingListener>) {
        lock(&self.inner.listeners).push(listener);
    }

    /// Batches completed so far (failed ones included).
    pub fn completed_batches(&self) -> u64 {
        lock(&self.inner.progress).completed
    }

    /// The most recent batches (up to 1000), oldest first.
    pub fn recent_batches(&self) -> Vec<BatchInfo> {
        lock(&self.inner.progress).recent.iter().cloned().collect()
    }

    /// Every batch failure so far, with its batch time.
    pub fn failures(&self) -> Vec<(Time, Error)> {
        lock(&self.inner.progress).failures.clone()
    }

    pub(crate) fn register_sink(&self, sink: Arc<dyn SinkControl>) {
        lock(&self.inner.graph).sinks.push(sink);
    }

    pub(crate) fn register_input(&self, input: Arc<dyn InputControl>) {
        if self.inner.check_can_add().is_ok() {
            lock(&self.inner.graph).inputs.push(input);
        }
    }

    /// Adds an output operation reading `stream`, with Spark's checks.
    pub(crate) fn register_output<T: crate::batch::Data>(
        &self,
        stream: &DStream<T>,
        op: Arc<dyn OutputOp>,
    ) -> Result<()> {
        // Checked and added under the run lock, so that no output slips in while starting.
        let run = lock(&self.inner.run);
        match run.state.unwrap_or(StreamingContextState::Initialized) {
            StreamingContextState::Initialized => {}
            StreamingContextState::Active => return Err(ContextError::AddAfterStart.into()),
            StreamingContextState::Stopped => return Err(ContextError::AddAfterStop.into()),
        }
        if let Some(p) = stream.problem(Some(self.inner.id)) {
            return Err(p.into());
        }
        stream.add_consumer();
        lock(&self.inner.graph).outputs.push(op);
        drop(run);
        Ok(())
    }

    /// Starts the pipeline: inputs start receiving and the first batch is due at the next
    /// multiple of the batch interval. Fails without outputs, and on a stopped context.
    pub fn start(&self) -> Result<()> {
        self.start_mode(false)
    }

    fn start_mode(&self, fast: bool) -> Result<()> {
        let mut run = lock(&self.inner.run);
        match run.state.unwrap_or(StreamingContextState::Initialized) {
            StreamingContextState::Active if fast => {
                return Err(Error::invalid(
                    "run_to_completion() runs a context from its start; this one is already running",
                ));
            }
            StreamingContextState::Active => {
                tracing::warn!("StreamingContext has already been started");
                return Ok(());
            }
            StreamingContextState::Stopped => return Err(ContextError::AlreadyStopped.into()),
            StreamingContextState::Initialized => {}
        }
        match self.launch(&mut run, fast) {
            Ok(first) => {
                run.state = Some(StreamingContextState::Active);
                if self.inner.stop_on_signal {
                    crate::signal::watch(&self.inner);
                }
                drop(run);
                tracing::info!("StreamingContext started, first batch at {first}");
                Ok(())
            }
            Err(e) => {
                // As Spark: a context that failed to start is marked stopped.
                tracing::error!("Error starting the context, marking it as stopped: {e}");
                run.state = Some(StreamingContextState::Stopped);
                drop(run);
                self.mark_stopped();
                Err(e)
            }
        }
    }

    /// Starts the inputs and the scheduler threads; on failure stops what it started.
    fn launch(&self, run: &mut RunState, fast: bool) -> Result<Time> {
        let (inputs, sinks) = {
            let g = lock(&self.inner.graph);
            if g.outputs.is_empty() {
                return Err(ContextError::NoOutputOperations.into());
            }
            (g.inputs.clone(), g.sinks.clone())
        };
        let store = self.inner.open_checkpoint()?;
        let recovery = store.as_ref().and_then(|s| s.recovery());
        let agreed = self.inner.task.as_ref().and_then(|t| t.zero);
        let (zero, first) = match recovery {
            Some(r) if agreed.is_some_and(|z| z != r.zero) => {
                return Err(Error::invalid(format!(
                    "the checkpoint of task {} has the zero time {}, and the application's agreed zero time is {}: it belongs to another run of the application (remove it to start the task afresh)",
                    self.inner.task.as_ref().map_or("?", |t| t.task.as_str()),
                    r.zero,
                    agreed.map_or(r.zero, |z| z)
                )));
            }
            // Resume after the last completed batch; batches missed while down come at once.
            Some(r) => (r.zero, r.last + self.inner.batch),
            None => {
                let batch = self.inner.batch.millis();
                let now = self.inner.clock.now().millis();
                match agreed {
                    // A task of a scaled-out application: the next time on the application's
                    // grid, so that every task cuts the same batch times.
                    Some(zero) => {
                        let k = if self.inner.exchanges.load(Ordering::Relaxed) {
                            // The application's first batch: the other tasks wait for this
                            // task's part of every batch since.
                            1
                        } else {
                            (now - zero.millis()).div_euclid(batch).max(0) + 1
                        };
                        (zero, Time::from_millis(zero.millis() + k * batch))
                    }
                    None => {
                        let first = Time::from_millis((now.div_euclid(batch) + 1) * batch);
                        (first - self.inner.batch, first)
                    }
                }
            }
        };
        let source_ctx = crate::source::SourceContext {
            parallelism: self.inner.parallelism,
            batch_duration: self.inner.batch,
            zero_time: zero,
        };
        // Sinks open first: an exactly-once sink's open fences the previous owner of its
        // transactional id and aborts its open transaction, whose pending offset commit would
        // otherwise hold up the inputs' reads of the group's committed offsets (a task taking
        // over from an instance that was killed mid-batch).
        let own_dir = {
            let c = lock(&self.inner.checkpoint);
            c.dir.clone().filter(|_| !c.temporary && store.is_some())
        };
        for (i, sink) in sinks.iter().enumerate() {
            let opened = match &store {
                Some(s) => s.sink_position(i),
                None => Ok(None),
            }
            .and_then(|position| {
                sink.open(&crate::sink::SinkContext {
                    batch_duration: self.inner.batch,
                    checkpoint_dir: own_dir.clone(),
                    index: i,
                    last_committed: recovery.map(|r| r.last),
                    position,
                    task: self.inner.task.clone(),
                })
            });
            if let Err(e) = opened {
                sinks[..i].iter().for_each(|s| s.close());
                return Err(e);
            }
        }
        for (i, input) in inputs.iter().enumerate() {
            let started = input
                .start(&source_ctx, first - self.inner.batch)
                .and_then(|()| match (&store, recovery) {
                    (Some(store), Some(r)) => input.restore(&store.positions(i)?, r.last),
                    _ => Ok(()),
                });
            if let Err(e) = started {
                inputs[..=i].iter().for_each(|started| started.stop());
                sinks.iter().for_each(|s| s.close());
                return Err(e);
            }
        }
        if let (Some(_), None) = (&store, recovery) {
            // A new checkpoint: the zero time and the inputs' positions before the first batch,
            // so that a run that completes no batch is still replayed at the same batch times.
            // They are the positions after the batch before the first: the zero time's in one
            // process, a later one for a task that joins an application on its grid.
            if let Err(e) = self
                .inner
                .write_ahead(&inputs, first - self.inner.batch, Some(zero))
            {
                sinks.iter().for_each(|s| s.close());
                inputs.iter().for_each(|i| i.stop());
                return Err(e);
            }
        }
        self.inner.zero.store(zero.millis(), Ordering::Release);
        let (tx, rx) = mpsc::sync_channel(if fast {
            2
        } else {
            self.inner.max_queued_batches
        });
        let tx = JobSender(tx);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(f)
                .map_err(|e| Error::invalid(format!("cannot start the {name} thread: {e}")))
        };
        let (gen_inner, exec_inner) = (self.inner.clone(), self.inner.clone());
        // If the generator cannot start, dropping `tx` ends the executor.
        let threads = spawn(
            "dstream-executor",
            Box::new(move || exec_inner.executor_loop(rx)),
        )
        .and_then(|executor| {
            let generator = spawn(
                "dstream-generator",
                Box::new(move || gen_inner.generator_loop(tx, first, fast)),
            )?;
            Ok((executor, generator))
        });
        let (executor, generator) = match threads {
            Ok(t) => t,
            Err(e) => {
                sinks.iter().for_each(|s| s.close());
                inputs.iter().for_each(|i| i.stop());
                return Err(e);
            }
        };
        run.thread_ids = vec![executor.thread().id(), generator.thread().id()];
        run.threads = vec![generator, executor];
        Ok(first)
    }

    /// Stops at once: the batch being processed finishes, queued batches are dropped.
    pub fn stop(&self) {
        self.stop_inner(false)
    }

    /// Stops gracefully: no new batch is generated (but what receivers had buffered), and every
    /// batch generated so far is processed before this returns.
    pub fn stop_gracefully(&self) {
        self.stop_inner(true)
    }

    /// Stops gracefully, but for at most `deadline` (Spark's `gracefulStopTimeout`): when the
    /// batches generated so far are not all processed by then, the one running finishes and
    /// the others are dropped, as [`stop`](Self::stop) does (inputs that replay from the
    /// checkpoint, Kafka and files, process them after a restart). Returns whether the stop
    /// was graceful throughout.
    pub fn stop_gracefully_within(&self, deadline: std::time::Duration) -> bool {
        self.stop_inner_within(true, Some(deadline))
    }

    fn stop_inner(&self, graceful: bool) {
        self.stop_inner_within(graceful, None);
    }

    fn stop_inner_within(&self, graceful: bool, deadline: Option<std::time::Duration>) -> bool {
        let threads = {
            let mut run = lock(&self.inner.run);
            match run.state.unwrap_or(StreamingContextState::Initialized) {
                StreamingContextState::Stopped => return true,
                StreamingContextState::Initialized => {
                    run.state = Some(StreamingContextState::Stopped);
                    drop(run);
                    self.mark_stopped();
                    return true;
                }
                StreamingContextState::Active => {}
            }
            let in_batch = run.thread_ids.contains(&std::thread::current().id())
                || rayon::current_thread_index().is_some();
            if in_batch {
                // Called from a batch (a foreach_batch function, or code it runs on the worker
                // pool): stop from another thread so that the scheduler can finish the batch.
                let ctx = self.clone();
                drop(run);
                std::thread::spawn(move || ctx.stop_inner_within(graceful, deadline));
                return graceful;
            }
            std::mem::take(&mut run.threads)
        };
        if threads.is_empty() {
            // Another thread is stopping it; wait for that to finish.
            let _ = self.await_termination_inner(None, false);
            return graceful;
        }
        let inputs = lock(&self.inner.graph).inputs.clone();
        for i in &inputs {
            i.stop_receiving();
        }
        if !graceful {
            self.inner.stop_now.store(true, Ordering::SeqCst);
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        let mut graceful_throughout = graceful;
        if let Some(deadline) = deadline {
            let end = std::time::Instant::now() + deadline;
            while !threads.iter().all(|t| t.is_finished()) && std::time::Instant::now() < end {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if !threads.iter().all(|t| t.is_finished()) {
                tracing::warn!(
                    "the graceful stop did not finish within {deadline:?}: the batch running finishes, the queued ones are dropped"
                );
                self.inner.stop_now.store(true, Ordering::SeqCst);
                graceful_throughout = false;
            }
        }
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a dstream scheduler thread panicked while stopping");
            }
        }
        for i in &inputs {
            i.stop();
        }
        for s in lock(&self.inner.graph).sinks.clone() {
            s.close();
        }
        if let Some(store) = self.inner.store() {
            store.close();
        }
        lock(&self.inner.run).state = Some(StreamingContextState::Stopped);
        if self.inner.stop_on_signal {
            crate::signal::unwatch(self.inner.id);
        }
        self.mark_stopped();
        tracing::info!(
            "StreamingContext stopped{}",
            if graceful_throughout {
                " gracefully"
            } else {
                ""
            }
        );
        graceful_throughout
    }

    fn mark_stopped(&self) {
        lock(&self.inner.progress).stopped = true;
        self.inner.progress_cv.notify_all();
    }

    /// Waits until the context stops; returns the first batch error as soon as one is
    /// reported (Spark's `awaitTermination`).
    pub fn await_termination(&self) -> Result<()> {
        self.await_termination_inner(None, true).map(|_| ())
    }

    /// Like `await_termination`, for at most `timeout`; `Ok(true)` if the context stopped.
    pub fn await_termination_or_timeout(&self, timeout: Duration) -> Result<bool> {
        self.await_termination_inner(Some(timeout), true)
    }

    fn await_termination_inner(&self, timeout: Option<Duration>, raise: bool) -> Result<bool> {
        // As Spark's, waiting before `start()` waits for a start and a stop (from elsewhere).
        let deadline = timeout.and_then(|d| std::time::Instant::now().checked_add(d.to_std()));
        let mut p = lock(&self.inner.progress);
        loop {
            if let Some(e) = p.first_error.as_ref().filter(|_| raise) {
                return Err(e.clone());
            }
            if p.stopped {
                return Ok(true);
            }
            let wait = match deadline {
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    (d - now).min(std::time::Duration::from_millis(100))
                }
                None => std::time::Duration::from_millis(100),
            };
            p = self
                .inner
                .progress_cv
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs the pipeline as a batch job over finite inputs (files that exist, iterators, closed
    /// queues): batches follow one another without waiting for the clock, and the context stops
    /// by itself once every input is exhausted and the last batch is processed. Returns the
    /// first batch error, if any. With an endless input (a socket) it runs until stopped.
    pub fn run_to_completion(&self) -> Result<()> {
        self.start_mode(true)?;
        {
            let mut p = lock(&self.inner.progress);
            while !p.executor_done && !p.stopped {
                p = self
                    .inner
                    .progress_cv
                    .wait_timeout(p, std::time::Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        self.stop_gracefully();
        match lock(&self.inner.progress).first_error.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until at least `n` batches have completed, for at most `timeout`; true if they have.
    pub fn await_batches(&self, n: u64, timeout: Duration) -> bool {
        let far = std::time::Duration::from_secs(365 * 24 * 3600);
        let deadline = std::time::Instant::now() + timeout.to_std().min(far);
        let mut p = lock(&self.inner.progress);
        while p.completed < n {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            p = self
                .inner
                .progress_cv
                .wait_timeout(
                    p,
                    (deadline - now).min(std::time::Duration::from_millis(100)),
                )
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
