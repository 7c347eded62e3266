//! Sinks of your own whose progress is part of the checkpoint: what a connector needs to make
//! its output exactly-once (a transactional producer keeps, with each batch, where its output
//! stood; after a crash it learns which batch was cut and where to look for what it wrote).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Job, OutputOp};
use crate::batch::{Batch, Data};
use crate::dstream::{AnyNode, DStream};
use crate::error::Result;
use crate::time::{Duration, Time};

/// What a sink learns from its context when the context starts.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The batch interval.
    pub batch_duration: Duration,
    /// The checkpoint directory, when the context has one of its own (not a temporary one).
    pub checkpoint_dir: Option<PathBuf>,
    /// The number of this sink among the context's sinks (in the order they were added); stable
    /// across restarts of the same pipeline.
    pub index: usize,
    /// The last batch the checkpoint holds as completed, when the context recovered one (or the
    /// zero time, when a previous run started and completed no batch): the batches after it
    /// that the sink is given first are batches run again, whose output may in part already be
    /// out (the crash cut them).
    pub last_committed: Option<Time>,
    /// The sink's position as committed with that batch (see [`Sink::position`]).
    pub position: Option<Vec<u8>>,
    /// The task, when the context runs one task of a scaled-out application: a sink takes its
    /// identity (a transactional id) from it, so that the task's next owner fences this one.
    pub task: Option<crate::TaskScope>,
}

/// An output with a position kept in the checkpoint (see [`DStream::save_to`]).
///
/// Order of calls: `open` once at start; then per batch `write`, `position` (committed with the
/// batch's state, atomically), and `committed` once the batch is durable; `close` at stop.
/// Without a checkpoint, `position` is not kept and `committed` follows each successful batch.
pub trait Sink<T>: Send + 'static {
    /// A name for logs and errors.
    fn name(&self) -> String;

    /// Called once when the context starts, with what the checkpoint holds for this sink.
    fn open(&mut self, _ctx: &SinkContext) -> Result<()> {
        Ok(())
    }

    /// Writes the batch of `time`. An error fails the batch.
    fn write(&mut self, batch: Batch<T>, time: Time) -> Result<()>;

    /// The sink's position after its last write, committed with that batch; `None` (the
    /// default) for a sink that keeps nothing.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// The batch of `time` is complete and durable (committed to the checkpoint, if any).
    fn committed(&mut self, _time: Time) {}

    /// Release everything; called once when the context stops.
    fn close(&mut self) {}
}

/// The scheduler's view of a sink, whatever its record type.
pub(crate) trait SinkControl: Send + Sync {
    fn open(&self, ctx: &SinkContext) -> Result<()>;
    fn position(&self) -> Option<Vec<u8>>;
    fn committed(&self, t: Time);
    fn close(&self);
}

struct SinkNode<T> {
    stream: DStream<T>,
    sink: Arc<Mutex<Box<dyn Sink<T>>>>,
}

fn lock<T: ?Sized>(m: &Mutex<Box<T>>) -> std::sync::MutexGuard<'_, Box<T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Data> OutputOp for SinkNode<T> {
    fn node(&self) -> Arc<dyn AnyNode> {
        self.stream.any()
    }

    fn describe(&self) -> String {
        let base = self.stream.node.base();
        format!(
            "save_to {} of {} #{}",
            lock(&self.sink).name(),
            base.name,
            base.id
        )
    }

    fn generate(&self, t: Time) -> Result<Option<Job>> {
        let Some(batch) = self.stream.get_or_compute(t)? else {
            return Ok(None);
        };
        let sink = self.sink.clone();
        Ok(Some(Box::new(move || lock(&sink).write(batch, t))))
    }
}

impl<T: Data> SinkControl for SinkNode<T> {
    fn open(&self, ctx: &SinkContext) -> Result<()> {
        lock(&self.sink).open(ctx)
    }

    fn position(&self) -> Option<Vec<u8>> {
        lock(&self.sink).position()
    }

    fn committed(&self, t: Time) {
        lock(&self.sink).committed(t)
    }

    fn close(&self) {
        lock(&self.sink).close()
    }
}

impl<T: Data> DStream<T> {
    /// Writes every batch to `sink`, a [`Sink`] whose position is committed with each batch.
    pub fn save_to(&self, sink: impl Sink<T>) -> Result<()> {
        let ctx = self.context()?;
        let node = Arc::new(SinkNode {
            stream: self.clone(),
            sink: Arc::new(Mutex::new(Box::new(sink) as Box<dyn Sink<T>>)),
        });
        ctx.register_output(self, node.clone())?;
        ctx.register_sink(node);
        Ok(())
    }
}
