//! `DStream<T>`: a discretized stream, one [`Batch`] per batch interval.
//!
//! A DStream is a node of the pipeline graph. Each operation makes a new node whose batch at
//! time `t` is computed from its parents' batches at `t` (Spark's `MappedDStream` model), so
//! every operation of [`Batch`] is available per batch, and narrow operations fuse across nodes
//! because a node hands its parent's lazy batch on rather than computing it. A node read by two
//! or more consumers (children or outputs) is computed once per batch: its batch is materialized
//! and cached for that batch time.
//!
//! Operations are grouped by family: [`ops`](self) for single-stream operations, `pair` for
//! key-value operations, `multi` for union and transform over several streams.

mod multi;
mod ops;
mod pair;

pub use multi::TransformOutput;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::batch::{Batch, Data};
use crate::context::{ContextInner, StreamingContext};
use crate::error::{ContextError, Result};
use crate::time::{Duration, Time};

type ComputeFn<T> = Box<dyn Fn(Time) -> Result<Option<Batch<T>>> + Send + Sync>;

/// What every node of the graph shares, whatever its record type.
pub(crate) struct NodeBase {
    pub(crate) name: String,
    pub(crate) ctx: Weak<ContextInner>,
    pub(crate) ctx_id: usize,
    pub(crate) parents: Vec<Arc<dyn AnyNode>>,
    consumers: AtomicUsize,
    pub(crate) slide: Duration,
    /// Set when the node was made after its context started or stopped (Spark refuses those).
    pub(crate) detached: Option<ContextError>,
}

/// The type-erased view of a node, for graph checks and per-batch clean-up.
pub(crate) trait AnyNode: Send + Sync {
    fn base(&self) -> &NodeBase;
    /// Forgets cached batches up to and including `t`.
    fn clear_through(&self, t: Time);
}

pub(crate) struct NodeCell<T> {
    base: NodeBase,
    compute: ComputeFn<T>,
    cache: Mutex<BTreeMap<Time, Option<Batch<T>>>>,
}

impl<T: Data> AnyNode for NodeCell<T> {
    fn base(&self) -> &NodeBase {
        &self.base
    }

    fn clear_through(&self, t: Time) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| *k > t);
    }
}

/// A discretized stream of `T`: one batch of records per batch interval.
///
/// Build one from a source of a [`StreamingContext`], transform it with the operations below
/// (each also on [`Batch`]), and end it with an output operation (`print`, `foreach_batch`,
/// `save_as_text_files`).
///
/// ```
/// use stream_core::testing::TestContext;
/// let tc = TestContext::new();
/// let words = tc.input_stream(vec![vec!["a b", "b"], vec!["c"]]);
/// let counts = words.flat_map(|l| l.split(' ').collect::<Vec<_>>()).count_by_value();
/// let out = tc.collect(&counts).unwrap();
/// tc.run(2).unwrap();
/// let mut first = out.batch(0);
/// first.sort();
/// assert_eq!(first, vec![("a", 1), ("b", 2)]);
/// ```
pub struct DStream<T> {
    pub(crate) node: Arc<NodeCell<T>>,
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            node: self.node.clone(),
        }
    }
}

impl<T> std::fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DStream")
            .field("name", &self.node.base.name)
            .finish()
    }
}

/// The context a node belongs to: a weak link (a graph never keeps its context alive) and the
/// context's id (to refuse mixing streams of different contexts even after one is dropped).
#[derive(Clone)]
pub(crate) struct Owner {
    pub(crate) ctx: Weak<ContextInner>,
    pub(crate) id: usize,
}

impl StreamingContext {
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            ctx: Arc::downgrade(&self.inner),
            id: self.inner.id,
        }
    }
}

impl<T: Data> DStream<T> {
    /// A new node of `owner`'s context (an input when `parents` is empty). A node made after
    /// its context started, stopped or was dropped is detached: registering an output on it
    /// fails with the reason.
    pub(crate) fn new_node(
        owner: &Owner,
        name: impl Into<String>,
        parents: Vec<Arc<dyn AnyNode>>,
        slide: Duration,
        compute: impl Fn(Time) -> Result<Option<Batch<T>>> + Send + Sync + 'static,
    ) -> DStream<T> {
        for p in &parents {
            p.base().consumers.fetch_add(1, Ordering::Relaxed);
        }
        DStream {
            node: Arc::new(NodeCell {
                base: NodeBase {
                    name: name.into(),
                    ctx: owner.ctx.clone(),
                    ctx_id: owner.id,
                    parents,
                    consumers: AtomicUsize::new(0),
                    slide,
                    detached: match owner.ctx.upgrade() {
                        Some(ctx) => ctx.check_can_add().err(),
                        None => Some(ContextError::ContextDropped),
                    },
                },
                compute: Box::new(compute),
                cache: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub(crate) fn any(&self) -> Arc<dyn AnyNode> {
        self.node.clone()
    }

    pub(crate) fn context(&self) -> Result<StreamingContext> {
        self.node
            .base
            .ctx
            .upgrade()
            .map(|inner| StreamingContext { inner })
            .ok_or_else(|| ContextError::ContextDropped.into())
    }

    /// Counts one more reader of this stream (an output operation).
    pub(crate) fn add_consumer(&self) {
        self.node.base.consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// The time between two batches of this stream.
    pub fn slide_duration(&self) -> Duration {
        self.node.base.slide
    }

    /// The batch of time `t`: `None` when the stream has no batch then (Spark's `getOrCompute`).
    pub(crate) fn get_or_compute(&self, t: Time) -> Result<Option<Batch<T>>> {
        let cell = &self.node;
        // Spark's `isTimeValid`: a stream has batches only at multiples of its slide after zero.
        let zero = cell.base.ctx.upgrade().and_then(|ctx| ctx.zero_time());
        if let Some(zero) = zero
            && (t <= zero || !t.is_multiple_of(zero, cell.base.slide))
        {
            return Ok(None);
        }
        if cell.base.consumers.load(Ordering::Relaxed) <= 1 {
            return (cell.compute)(t);
        }
        let mut cache = cell.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(&t) {
            return Ok(b.clone());
        }
        let b = (cell.compute)(t)?.map(Batch::materialize);
        cache.insert(t, b.clone());
        Ok(b)
    }

    /// A child node whose batch at `t` is `op` applied to this stream's batch at `t`.
    pub(crate) fn lift<U: Data>(
        &self,
        name: &str,
        op: impl Fn(Batch<T>, Time) -> Result<Batch<U>> + Send + Sync + 'static,
    ) -> DStream<U> {
        let parent = self.clone();
        DStream::new_node(
            &self.owner(),
            name,
            vec![self.any()],
            self.slide_duration(),
            move |t| match parent.get_or_compute(t)? {
                Some(b) => Ok(Some(op(b, t)?)),
                None => Ok(None),
            },
        )
    }

    pub(crate) fn owner(&self) -> Owner {
        Owner {
            ctx: self.node.base.ctx.clone(),
            id: self.node.base.ctx_id,
        }
    }

    /// Visits this node and all its ancestors, each once.
    pub(crate) fn visit_ancestry(&self, f: &mut dyn FnMut(&NodeBase)) {
        walk_once(self.node.as_ref(), &mut |n| f(n.base()));
    }
}

/// Visits `node` and its ancestors, each once however many paths lead to it (a graph that
/// reuses streams is a DAG, and walking every path could take exponential time).
fn walk_once(node: &dyn AnyNode, f: &mut dyn FnMut(&dyn AnyNode)) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if seen.insert(n as *const dyn AnyNode as *const () as usize) {
            f(n);
            stack.extend(n.base().parents.iter().map(|p| p.as_ref()));
        }
    }
}

/// Clears caches of `node` and its ancestors through `t`.
pub(crate) fn clear_through(node: &dyn AnyNode, t: Time) {
    walk_once(node, &mut |n| n.clear_through(t));
}
