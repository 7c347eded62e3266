//! Spark's `queueStream`: batches pushed by the program into a queue, one (or all) per batch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{Source, SourceContext};
use crate::batch::{Batch, Data};
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::Result;
use crate::time::Time;

enum Item<T> {
    Records(Vec<T>),
    Batch(Batch<T>),
}

struct QueueState<T> {
    items: VecDeque<Item<T>>,
    closed: bool,
}

/// A queue of batches a program fills while the pipeline runs (Spark's `Queue[RDD[T]]`).
///
/// ```
/// use stream_core::prelude::*;
/// let ssc = StreamingContext::new(Seconds(1)).unwrap();
/// let q = Queue::new();
/// q.push(vec![1, 2, 3]);
/// q.push(vec![4]);
/// q.close(); // no more batches: lets run_to_completion finish
/// let sums = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
/// let s = sums.clone();
/// ssc.queue_stream(&q, true).reduce(|a, b| a + b)
///     .foreach_batch(move |b, _| s.lock().unwrap().extend(b.collect())).unwrap();
/// ssc.run_to_completion().unwrap();
/// assert_eq!(*sums.lock().unwrap(), vec![6, 4]);
/// ```
pub struct Queue<T> {
    state: Arc<Mutex<QueueState<T>>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            state: self.state.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).finish()
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            state: Arc::new(Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
            })),
        }
    }
}

impl<T> Queue<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty, open queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A closed queue holding `batches`, for finite runs.
    pub fn finite(batches: impl IntoIterator<Item = Vec<T>>) -> Self {
        let q = Self::new();
        for b in batches {
            q.push(b);
        }
        q.close();
        q
    }

    /// Adds a batch of records (split over the context's parallelism when captured).
    pub fn push(&self, records: Vec<T>) {
        self.lock().items.push_back(Item::Records(records));
    }

    /// Adds a batch as it is, partitions included.
    pub fn push_batch(&self, batch: Batch<T>) {
        self.lock().items.push_back(Item::Batch(batch));
    }

    /// Declares that no more batches will come.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct QueueSource<T> {
    queue: Queue<T>,
    one_at_a_time: bool,
    default: Option<Batch<T>>,
}

impl<T: Data> Source<T> for QueueSource<T> {
    fn name(&self) -> String {
        "queueStream".into()
    }

    fn capture(&mut self, _: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>> {
        let to_batch = |item: Item<T>| match item {
            Item::Records(v) => Batch::from_vec(v, ctx.parallelism),
            Item::Batch(b) => b,
        };
        let mut st = self.queue.lock();
        if st.items.is_empty() {
            return Ok(Some(self.default.clone().unwrap_or_else(Batch::empty)));
        }
        if self.one_at_a_time {
            Ok(st.items.pop_front().map(to_batch))
        } else {
            Ok(Some(Batch::union_all(
                st.items.drain(..).map(to_batch).collect(),
            )))
        }
    }

    fn is_finished(&self) -> bool {
        let st = self.queue.lock();
        st.closed && st.items.is_empty()
    }
}

impl StreamingContext {
    /// A stream of the batches pushed into `queue`: one per batch interval when
    /// `one_at_a_time`, else all that are waiting. An empty queue gives an empty batch.
    pub fn queue_stream<T: Data>(&self, queue: &Queue<T>, one_at_a_time: bool) -> DStream<T> {
        self.input_stream(QueueSource {
            queue: queue.clone(),
            one_at_a_time,
            default: None,
        })
    }

    /// `queue_stream` that gives `default` whenever the queue is empty.
    pub fn queue_stream_with_default<T: Data>(
        &self,
        queue: &Queue<T>,
        one_at_a_time: bool,
        default: Batch<T>,
    ) -> DStream<T> {
        self.input_stream(QueueSource {
            queue: queue.clone(),
            one_at_a_time,
            default: Some(default),
        })
    }
}
