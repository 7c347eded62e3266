//! Push-style inputs (Spark's receivers): a thread of the source's own pushes records into a
//! buffer bounded in records and in bytes, and each batch takes what the buffer holds. When the
//! buffer is full, `push` blocks, so a producer faster than the pipeline is slowed down instead
//! of filling memory; and the context cuts no batch while `max_queued_batches` wait for
//! processing, so a full buffer stays full until processing catches up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::{Source, SourceContext};
use crate::batch::{Batch, Data};
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::{Error, Result};
use crate::time::Time;

/// The records waiting for the next batch, and their bytes.
struct Buffer<T> {
    records: VecDeque<T>,
    bytes: usize,
}

struct Shared<T> {
    buf: Mutex<Buffer<T>>,
    not_full: Condvar,
    capacity: usize,
    max_bytes: usize,
    stopped: AtomicBool,
}

/// Handed to a receiver's thread: where it pushes records.
pub struct ReceiverHandle<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ReceiverHandle<T> {
    fn clone(&self) -> Self {
        ReceiverHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for ReceiverHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHandle")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<T> ReceiverHandle<T> {
    /// Stores one record, blocking while the buffer is full. Returns false (and drops nothing
    /// already stored) once the context is stopping: the receiver should then return.
    pub fn push(&self, record: T) -> bool {
        self.push_sized(record, std::mem::size_of::<T>())
    }

    /// `push` of a record that holds `bytes` (a line's length): the buffer also blocks once
    /// the bytes it holds reach its byte limit (a record larger than the limit is taken alone).
    pub fn push_sized(&self, record: T, bytes: usize) -> bool {
        let mut buf = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        while buf.records.len() >= self.shared.capacity
            || (!buf.records.is_empty() && buf.bytes + bytes > self.shared.max_bytes)
        {
            if self.is_stopped() {
                return false;
            }
            buf = self
                .shared
                .not_full
                .wait_timeout(buf, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if self.is_stopped() {
            return false;
        }
        buf.records.push_back(record);
        buf.bytes += bytes;
        true
    }

    /// True once the context is stopping; the receiver's loop should end.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Records waiting for the next batch.
    pub fn buffered(&self) -> usize {
        self.shared
            .buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .len()
    }

    /// Bytes of the records waiting for the next batch (as pushed with `push_sized`).
    pub fn buffered_bytes(&self) -> usize {
        self.shared
            .buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes
    }
}

type StartFn<T> = Box<dyn FnOnce(ReceiverHandle<T>) + Send>;

pub(crate) struct ReceiverSource<T> {
    name: String,
    shared: Arc<Shared<T>>,
    start: Option<StartFn<T>>,
}

impl<T: Data> ReceiverSource<T> {
    pub(crate) fn new(name: String, capacity: usize, max_bytes: usize, start: StartFn<T>) -> Self {
        ReceiverSource {
            name,
            shared: Arc::new(Shared {
                buf: Mutex::new(Buffer {
                    records: VecDeque::new(),
                    bytes: 0,
                }),
                not_full: Condvar::new(),
                capacity: capacity.max(1),
                max_bytes: max_bytes.max(1),
                stopped: AtomicBool::new(false),
            }),
            start: Some(start),
        }
    }
}

impl<T: Data> Source<T> for ReceiverSource<T> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self, _: &SourceContext) -> Result<()> {
        let Some(f) = self.start.take() else {
            return Ok(());
        };
        let handle = ReceiverHandle {
            shared: self.shared.clone(),
        };
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("dstream-receiver-{}", self.name))
            .spawn(move || {
                // What the receiver pushed before failing stays buffered and is processed.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(handle)));
                if let Err(p) = run {
                    tracing::error!(
                        "receiver {name} stopped: {}; the records it pushed before are kept",
                        crate::error::panic_message(&*p)
                    );
                }
            })
            .map(|_| ())
            .map_err(|e| Error::invalid(format!("cannot start receiver {}: {e}", self.name)))
    }

    fn capture(&mut self, _: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>> {
        let records: Vec<T> = {
            let mut buf = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
            buf.bytes = 0;
            buf.records.drain(..).collect()
        };
        self.shared.not_full.notify_all();
        Ok(Some(Batch::from_vec(records, ctx.parallelism)))
    }

    fn stop_receiving(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.not_full.notify_all();
    }

    fn stop(&mut self) {
        self.stop_receiving();
    }
}

impl StreamingContext {
    /// A stream fed by `receive`, which runs on its own thread from `start()` and pushes
    /// records into a buffer of at most `capacity` records (pushing blocks while it is full).
    /// It should return once [`ReceiverHandle::is_stopped`] is true or `push` returns false.
    ///
    /// ```
    /// use stream_core::prelude::*;
    /// let ssc = StreamingContext::new(Milliseconds(100)).unwrap();
    /// let words = ssc.receiver_stream("words", 1000, |h| {
    ///     for w in ["to", "be", "or", "not"] {
    ///         if !h.push(w.to_string()) { return; }
    ///     }
    /// });
    /// let n = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    /// let c = n.clone();
    /// words.count().foreach_batch(move |b, _| {
    ///     c.fetch_add(b.collect()[0], std::sync::atomic::Ordering::SeqCst);
    /// }).unwrap();
    /// ssc.start().unwrap();
    /// while n.load(std::sync::atomic::Ordering::SeqCst) < 4 {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    /// }
    /// ssc.stop_gracefully();
    /// ```
    pub fn receiver_stream<T: Data>(
        &self,
        name: &str,
        capacity: usize,
        receive: impl FnOnce(ReceiverHandle<T>) + Send + 'static,
    ) -> DStream<T> {
        self.receiver_with(name, capacity, usize::MAX, None, Box::new(receive))
    }

    /// `receiver_stream` whose buffer also holds at most `max_bytes` bytes of records, as
    /// [`ReceiverHandle::push_sized`] reports them.
    pub fn receiver_stream_bounded<T: Data>(
        &self,
        name: &str,
        capacity: usize,
        max_bytes: usize,
        receive: impl FnOnce(ReceiverHandle<T>) + Send + 'static,
    ) -> DStream<T> {
        self.receiver_with(name, capacity, max_bytes, None, Box::new(receive))
    }

    /// A receiver stream whose buffer (and, with `suppressed`, the count of the warnings its
    /// thread did not log) is reported to the dashboard and `/metrics`.
    pub(crate) fn receiver_with<T: Data>(
        &self,
        name: &str,
        capacity: usize,
        max_bytes: usize,
        suppressed: Option<Arc<std::sync::atomic::AtomicU64>>,
        receive: StartFn<T>,
    ) -> DStream<T> {
        let source = ReceiverSource::new(name.to_string(), capacity, max_bytes, receive);
        let (shared, input) = (source.shared.clone(), name.to_string());
        self.add_input_buffer_status(move || {
            let (records, bytes) = {
                let buf = shared.buf.lock().unwrap_or_else(|e| e.into_inner());
                // A receiver of unsized records counts none of their bytes.
                let bytes = if shared.max_bytes == usize::MAX {
                    0
                } else {
                    buf.bytes
                };
                (buf.records.len() as u64, bytes as u64)
            };
            crate::metrics::InputBufferStatus {
                input: input.clone(),
                records,
                bytes,
                warnings_suppressed: suppressed.as_ref().map_or(0, |s| s.load(Ordering::Relaxed)),
            }
        });
        self.input_stream(source)
    }
}
