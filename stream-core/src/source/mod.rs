//! Inputs: where each batch's records come from.
//!
//! At every batch time the scheduler's generator asks each input to *capture* the records of
//! that batch; the executor later computes the graph from what was captured. Built-in sources:
//! [`Queue`] (Spark's `queueStream`), socket text, a directory of text files, a rate generator,
//! an iterator, and push-style receivers with a bounded buffer for anything else. Implement
//! [`Source`] for a pull-style source of your own.

mod file;
mod queue;
mod rate;
mod receiver;
mod socket;

pub use file::{FileStreamOptions, TextRecord};
pub use queue::Queue;
pub use receiver::ReceiverHandle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::batch::{Batch, Data};
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::Result;
use crate::time::{Duration, Time};

/// What a source learns from its context when the context starts.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext {
    /// Partitions a batch should have (the context's parallelism).
    pub parallelism: usize,
    /// The batch interval.
    pub batch_duration: Duration,
    /// The time before the first batch: batch `i` (1-based) is at `zero_time + i * batch`.
    pub zero_time: Time,
}

/// A pull-style input: asked once per batch for that batch's records.
///
/// ```
/// use stream_core::prelude::*;
/// use stream_core::{Source, SourceContext};
///
/// /// Counts up by one record per batch, for five batches.
/// struct Ticks(u32);
/// impl Source<u32> for Ticks {
///     fn name(&self) -> String { "ticks".into() }
///     fn capture(&mut self, _time: Time, _ctx: &SourceContext) -> Result<Option<Batch<u32>>, Error> {
///         self.0 += 1;
///         Ok(Some(Batch::from(vec![self.0])))
///     }
///     fn is_finished(&self) -> bool { self.0 >= 5 }
/// }
///
/// let ssc = StreamingContext::new(Seconds(1)).unwrap();
/// let total = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let t = total.clone();
/// ssc.input_stream(Ticks(0)).foreach_batch(move |b, _| {
///     t.fetch_add(b.collect().iter().sum::<u32>(), std::sync::atomic::Ordering::Relaxed);
/// }).unwrap();
/// ssc.run_to_completion().unwrap();
/// assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 1 + 2 + 3 + 4 + 5);
/// ```
pub trait Source<T>: Send + 'static {
    /// A name for logs and errors.
    fn name(&self) -> String;

    /// Called once when the context starts (open connections, spawn threads).
    fn start(&mut self, _ctx: &SourceContext) -> Result<()> {
        Ok(())
    }

    /// The records of the batch at `time`. `Ok(None)` means the source has no batch for this
    /// time (Spark's `compute` returning `None`), which is not the same as an empty batch.
    fn capture(&mut self, time: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>>;

    /// True when the source will never produce another record (finite inputs).
    fn is_finished(&self) -> bool {
        false
    }

    /// The source's position after its last capture, for a source that can capture the same
    /// records again (files, offsets); `None` (the default) for one that cannot (a socket, a
    /// queue). With a checkpoint, positions are written ahead of each batch and committed with
    /// it, so that a recovered pipeline resumes exactly where it stopped.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// Resumes from a position `position()` returned (after the last completed batch).
    fn restore(&mut self, _position: &[u8]) -> Result<()> {
        Ok(())
    }

    /// Called at recovery before [`restore`](Self::restore), with the position after the last
    /// completed batch and the latest position written ahead (after the last batch captured,
    /// completed or not): a source whose progress is also recorded elsewhere (a Kafka consumer
    /// group) refuses a checkpoint that something else has moved past since.
    fn check_resume(&mut self, _last: &[u8], _latest: &[u8]) -> Result<()> {
        Ok(())
    }

    /// The records of the batch at `time`, captured between two positions, captured again (a
    /// batch replayed after a recovery); must not move the source. Only called on sources that
    /// have positions.
    fn replay(
        &mut self,
        _time: Time,
        _from: &[u8],
        _to: &[u8],
        _ctx: &SourceContext,
    ) -> Result<Option<Batch<T>>> {
        Err(crate::error::SourceError::Custom {
            name: self.name(),
            message: "this source has positions but cannot replay a batch".into(),
        }
        .into())
    }

    /// The batch that ended at `position` (a value `position()` returned) is complete and
    /// durable: committed to the checkpoint, if there is one. A source may now acknowledge its
    /// records upstream (Kafka's group offsets, for lag tools). Not called for sources without
    /// positions.
    fn committed(&mut self, _position: &[u8]) {}

    /// Stop taking in new records (graceful stop: what is buffered is still captured).
    fn stop_receiving(&mut self) {}

    /// Release everything; called once when the context stops.
    fn stop(&mut self) {}
}

/// The scheduler's view of an input, whatever its record type.
pub(crate) trait InputControl: Send + Sync {
    fn name(&self) -> String;
    /// Starts the source; its position then is kept as the position after `before_first`,
    /// the batch time before the context's first batch (the zero time in one process, a later
    /// time on the application's grid for a task that joins late).
    fn start(&self, ctx: &SourceContext, before_first: Time) -> Result<()>;
    /// The source's position right after it captured the batch of `t`, if it has positions.
    fn position_at(&self, t: Time) -> Option<Vec<u8>>;
    /// Recovery: resume at the position after `last`, capture again the remembered batches up
    /// to `last`, and replay the batches captured after it (written ahead, never committed).
    fn restore(&self, positions: &[(Time, Vec<u8>)], last: Time) -> Result<()>;
    /// How long captured batches are remembered.
    fn remember(&self) -> crate::time::Duration;
    /// Captures the batch of `t`; returns how many records it holds, when known.
    fn capture(&self, t: Time) -> usize;
    fn is_finished(&self) -> bool;
    /// The batch of `t` is complete and durable.
    fn committed(&self, t: Time);
    fn stop_receiving(&self);
    fn stop(&self);
    fn clear_through(&self, t: Time);
}

type Captured<T> = BTreeMap<Time, Result<Option<Batch<T>>>>;

/// The positions before and after a batch's capture.
type Span = (Vec<u8>, Vec<u8>);

struct InputNode<T> {
    source: Mutex<Box<dyn Source<T>>>,
    ctx: Mutex<Option<SourceContext>>,
    captured: Mutex<Captured<T>>,
    /// The source's position after each remembered capture.
    positions: Mutex<BTreeMap<Time, Vec<u8>>>,
    /// Batches to capture again from recorded positions (from, to), after a recovery.
    replays: Mutex<BTreeMap<Time, Span>>,
    /// The input stream's remember duration (set once the stream exists): captured batches not
    /// yet computed are kept that long, for windows that read them later.
    remember: std::sync::OnceLock<Arc<std::sync::atomic::AtomicI64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Data> InputControl for InputNode<T> {
    fn name(&self) -> String {
        lock(&self.source).name()
    }

    fn start(&self, ctx: &SourceContext, before_first: Time) -> Result<()> {
        *lock(&self.ctx) = Some(*ctx);
        let mut source = lock(&self.source);
        source.start(ctx)?;
        if let Some(p) = source.position() {
            // Written ahead as the start record of a new checkpoint: keyed by the zero time, a
            // late-joining task's start record had no positions, and a recovery before its
            // first commit resumed after its first batch, losing that batch's records.
            lock(&self.positions).insert(before_first, p);
        }
        Ok(())
    }

    fn position_at(&self, t: Time) -> Option<Vec<u8>> {
        lock(&self.positions).get(&t).cloned()
    }

    fn remember(&self) -> crate::time::Duration {
        crate::time::Duration::from_millis(
            self.remember
                .get()
                .map_or(0, |r| r.load(std::sync::atomic::Ordering::Relaxed)),
        )
    }

    fn restore(&self, positions: &[(Time, Vec<u8>)], last: Time) -> Result<()> {
        let Some(ctx) = *lock(&self.ctx) else {
            return Ok(());
        };
        let mut source = lock(&self.source);
        if positions.is_empty() || source.position().is_none() {
            return Ok(());
        }
        let Some(at_last) = positions.iter().find(|(t, _)| *t == last) else {
            return Err(crate::error::CheckpointError::Corrupt {
                file: std::path::PathBuf::from("db"),
                reason: format!(
                    "the position of input {} after the batch at {last} is missing",
                    source.name()
                ),
            }
            .into());
        };
        let latest = positions.last().map_or(&at_last.1, |(_, p)| p);
        source.check_resume(&at_last.1, latest)?;
        source.restore(&at_last.1)?;
        let remember = self.remember();
        let mut captured = lock(&self.captured);
        let mut kept = lock(&self.positions);
        let mut replays = lock(&self.replays);
        // The position after `last` is where the source resumes (not where it started).
        kept.insert(last, at_last.1.clone());
        for pair in positions.windows(2) {
            let ((_, from), (t, to)) = (&pair[0], &pair[1]);
            if *t > last {
                replays.insert(*t, (from.clone(), to.clone()));
            } else if *t > last - remember {
                // A remembered batch, for windows that read it again.
                captured.insert(*t, source.replay(*t, from, to, &ctx));
            }
            kept.insert(*t, to.clone());
        }
        Ok(())
    }

    fn capture(&self, t: Time) -> usize {
        let Some(ctx) = *lock(&self.ctx) else {
            return 0;
        };
        let mut source = lock(&self.source);
        let replay = lock(&self.replays).remove(&t);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &replay {
            // Written ahead before a crash: the same records again, and the source moves on.
            Some((from, to)) => {
                let b = source.replay(t, from, to, &ctx)?;
                source.restore(to)?;
                Ok(b)
            }
            None => source.capture(t, &ctx),
        }))
        .unwrap_or_else(|p| {
            Err(crate::error::SourceError::Custom {
                name: source.name(),
                message: crate::error::panic_message(&*p),
            }
            .into())
        });
        let n = match &result {
            Ok(Some(b)) => b.known_len().unwrap_or(0),
            _ => 0,
        };
        if let Err(e) = &result {
            tracing::warn!(
                "input {} failed to capture the batch at {t}: {e}",
                source.name()
            );
        }
        lock(&self.captured).insert(t, result);
        if let Some(p) = source.position() {
            lock(&self.positions).insert(t, p);
        }
        n
    }

    fn is_finished(&self) -> bool {
        lock(&self.source).is_finished()
    }

    fn committed(&self, t: Time) {
        if let Some(p) = self.position_at(t) {
            lock(&self.source).committed(&p)
        }
    }

    fn stop_receiving(&self) {
        lock(&self.source).stop_receiving()
    }

    fn stop(&self) {
        lock(&self.source).stop()
    }

    fn clear_through(&self, t: Time) {
        let remember = self
            .remember
            .get()
            .map_or(0, |r| r.load(std::sync::atomic::Ordering::Relaxed));
        let keep_after = t - crate::time::Duration::from_millis(remember);
        lock(&self.captured).retain(|k, _| *k > keep_after);
        lock(&self.positions).retain(|k, _| *k >= keep_after);
    }
}

impl StreamingContext {
    /// A DStream fed by a custom [`Source`].
    pub fn input_stream<T: Data>(&self, source: impl Source<T>) -> DStream<T> {
        let name = source.name();
        let node = Arc::new(InputNode {
            source: Mutex::new(Box::new(source) as Box<dyn Source<T>>),
            ctx: Mutex::new(None),
            captured: Mutex::new(BTreeMap::new()),
            positions: Mutex::new(BTreeMap::new()),
            replays: Mutex::new(BTreeMap::new()),
            remember: std::sync::OnceLock::new(),
        });
        self.register_input(node.clone());
        let reader = node.clone();
        let stream = DStream::new_node(
            &self.owner(),
            name,
            Vec::new(),
            self.batch_duration(),
            move |t| lock(&reader.captured).remove(&t).unwrap_or(Ok(None)),
        );
        let _ = node.remember.set(stream.remember_cell());
        stream
    }

    /// A finite stream over `iter`: `records_per_batch` records per batch until it ends. For
    /// batch jobs ([`run_to_completion`](Self::run_to_completion)) and tests.
    pub fn iterator_stream<T: Data, I>(&self, iter: I, records_per_batch: usize) -> DStream<T>
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        self.input_stream(IterSource {
            iter: Box::new(iter),
            per_batch: records_per_batch.max(1),
            done: false,
        })
    }
}

struct IterSource<T> {
    iter: Box<dyn Iterator<Item = T> + Send>,
    per_batch: usize,
    done: bool,
}

impl<T: Data> Source<T> for IterSource<T> {
    fn name(&self) -> String {
        "iteratorStream".into()
    }

    fn capture(&mut self, _: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>> {
        let chunk: Vec<T> = self.iter.by_ref().take(self.per_batch).collect();
        if chunk.len() < self.per_batch {
            self.done = true;
        }
        Ok(Some(Batch::from_vec(chunk, ctx.parallelism)))
    }

    fn is_finished(&self) -> bool {
        self.done
    }
}
