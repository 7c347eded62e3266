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

mod exchange;
mod multi;
mod ops;
mod pair;
mod state;
mod window;

pub use state::{
    MapWithStateStream, State, StateSpec, TimeoutMode, map_with_state_checkpoint_interval,
};

pub use multi::{StreamTuple, TransformOutput};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::batch::{Batch, Data};
use crate::context::{ContextInner, StreamingContext};
use crate::error::{ContextError, Result};
use crate::observe::{NodeStats, observed, timed};
use crate::poison::{Guarded, RecordErrors, RecordGuard};
use crate::time::{Duration, Time};

type ComputeFn<T> = Box<dyn Fn(Time) -> Result<Option<Batch<T>>> + Send + Sync>;

/// What every node of the graph shares, whatever its record type.
pub(crate) struct NodeBase {
    /// The node's id in its context, in creation order (`usize::MAX` when detached).
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) ctx: Weak<ContextInner>,
    pub(crate) ctx_id: usize,
    pub(crate) parents: Vec<Arc<dyn AnyNode>>,
    consumers: AtomicUsize,
    pub(crate) slide: Duration,
    /// How long this node's batches stay available after their time, in ms (Spark's
    /// `rememberDuration`): windows read their parents' past batches.
    pub(crate) remember: Arc<AtomicI64>,
    /// How far before its own batch time the node reads its parents' batches, in ms (a
    /// window's length; Spark's `parentRememberDuration` minus `rememberDuration`): a node
    /// remembered for `d` makes its parents remember `d` plus this.
    reach: AtomicI64,
    /// Materialize and keep each batch (Spark's `persist`), set on the parents of windows so a
    /// batch read by several windows is computed once.
    persist: AtomicBool,
    /// Set when the node was made after its context started or stopped (Spark refuses those).
    pub(crate) detached: Option<ContextError>,
    /// The node's batches are computed by another task of the application (it is downstream
    /// of a global exchange, in a task that does not combine): it has none here.
    elsewhere: bool,
    /// Whether the node's children are `elsewhere`.
    children_elsewhere: AtomicBool,
    /// Its records and time per batch, when the context observes operators.
    pub(crate) stats: Arc<NodeStats>,
    /// The guard of its user function, for operators that call one per record or key.
    guard: OnceLock<Arc<RecordGuard>>,
}

impl NodeBase {
    /// Makes the nodes made from this one from now on `elsewhere`.
    pub(crate) fn set_children_elsewhere(&self) {
        self.children_elsewhere.store(true, Ordering::Relaxed);
    }
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
        let keep_after = t - Duration::from_millis(self.base.remember.load(Ordering::Relaxed));
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| *k > keep_after);
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

impl Owner {
    /// The context's zero time once started; 0 before (or when the context is gone).
    pub(crate) fn zero_time(&self) -> Time {
        self.ctx
            .upgrade()
            .and_then(|c| c.zero_time())
            .unwrap_or(Time::from_millis(0))
    }
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
        Self::new_node_checked(owner, name, parents, slide, None, compute)
    }

    /// `new_node` for an operation whose arguments failed a check: the node is detached with
    /// `problem`, which registering an output on it reports (before any data flows).
    pub(crate) fn new_node_checked(
        owner: &Owner,
        name: impl Into<String>,
        parents: Vec<Arc<dyn AnyNode>>,
        slide: Duration,
        problem: Option<ContextError>,
        compute: impl Fn(Time) -> Result<Option<Batch<T>>> + Send + Sync + 'static,
    ) -> DStream<T> {
        for p in &parents {
            p.base().consumers.fetch_add(1, Ordering::Relaxed);
        }
        let elsewhere = parents
            .iter()
            .any(|p| p.base().children_elsewhere.load(Ordering::Relaxed));
        let ctx = owner.ctx.upgrade();
        DStream {
            node: Arc::new(NodeCell {
                base: NodeBase {
                    id: ctx.as_ref().map_or(usize::MAX, |c| c.next_node_id()),
                    stats: Arc::default(),
                    guard: OnceLock::new(),
                    name: name.into(),
                    ctx: owner.ctx.clone(),
                    ctx_id: owner.id,
                    parents,
                    consumers: AtomicUsize::new(0),
                    remember: Arc::new(AtomicI64::new(0)),
                    reach: AtomicI64::new(0),
                    persist: AtomicBool::new(false),
                    slide,
                    elsewhere,
                    children_elsewhere: AtomicBool::new(elsewhere),
                    detached: problem.or(match ctx {
                        Some(ctx) => ctx.check_can_add().err(),
                        None => Some(ContextError::ContextDropped),
                    }),
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

    /// Spark's `DStream.checkpoint(interval)`, accepted for programs written for Spark. Spark
    /// checkpoints a stream's RDDs every `interval` to cut their lineage; dstream commits every
    /// stateful operator's changes with every batch (docs/semantics.md, Checkpoints), so there
    /// is nothing to schedule and the stream is returned as it is. The interval is checked as
    /// Spark checks it: at least the stream's slide and a multiple of it, or the stream's
    /// outputs fail to register with Spark's message.
    ///
    /// ```
    /// use stream_core::prelude::*;
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![1]]);
    /// assert!(s.checkpoint(Seconds(10)).print().is_ok());
    /// let err = s.checkpoint(Milliseconds(1500)).print().unwrap_err();
    /// assert!(err.to_string().contains("which not a multiple of its slide time (1000 ms)"));
    /// ```
    pub fn checkpoint(&self, interval: Duration) -> DStream<T> {
        let slide = self.slide_duration();
        let name = &self.node.base.name;
        let problem = if interval < slide {
            format!(
                "The checkpoint interval for {name} has been set to {interval} which is lower than its slide time ({slide}). Please set it to at least {slide}."
            )
        } else if !interval.is_multiple_of(slide) {
            // Spark's words, its missing "is" included.
            format!(
                "The checkpoint interval for {name} has been set to {interval} which not a multiple of its slide time ({slide}). Please set it to a multiple of {slide}."
            )
        } else {
            return self.clone();
        };
        let parent = self.clone();
        DStream::new_node_checked(
            &self.owner(),
            "checkpoint",
            vec![self.any()],
            slide,
            Some(ContextError::InvalidArgument(problem)),
            move |t| parent.get_or_compute(t),
        )
    }

    /// The batch of time `t`: `None` when the stream has no batch then (Spark's `getOrCompute`).
    pub(crate) fn get_or_compute(&self, t: Time) -> Result<Option<Batch<T>>> {
        let cell = &self.node;
        if cell.base.elsewhere {
            return Ok(None);
        }
        let ctx = cell.base.ctx.upgrade();
        // Spark's `isTimeValid`: a stream has batches only at multiples of its slide after zero.
        let zero = ctx.as_ref().and_then(|ctx| ctx.zero_time());
        if let Some(zero) = zero
            && (t <= zero || !t.is_multiple_of(zero, cell.base.slide))
        {
            return Ok(None);
        }
        let observing = ctx.is_some_and(|c| c.observing());
        let compute = |t| -> Result<Option<Batch<T>>> {
            if !observing {
                return (cell.compute)(t);
            }
            let b = timed(&cell.base.stats, || (cell.compute)(t))?;
            Ok(b.map(|b| observed(b, t, cell.base.stats.clone())))
        };
        let shared = cell.base.consumers.load(Ordering::Relaxed) > 1;
        let persist = cell.base.persist.load(Ordering::Relaxed);
        let remembered = cell.base.remember.load(Ordering::Relaxed) > 0;
        if !shared && !persist && !remembered {
            return compute(t);
        }
        let mut cache = cell.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(&t) {
            return Ok(b.clone());
        }
        let b = compute(t)?;
        // A remembered batch that only one reader uses stays lazy: keeping it costs nothing.
        let b = if shared || persist {
            b.map(Batch::materialize)
        } else {
            b
        };
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

    /// `lift` for an operator whose user function runs per record: `op` gets the batch's
    /// [`Guarded`] policy when poison records are skipped rather than failing the batch.
    pub(crate) fn lift_guarded<U: Data>(
        &self,
        name: &str,
        op: impl Fn(Batch<T>, Option<Guarded>) -> Result<Batch<U>> + Send + Sync + 'static,
    ) -> DStream<U> {
        let guard = RecordGuard::new(name);
        let g = guard.clone();
        let out = self.lift(name, move |b, t| op(b, g.for_batch(t)));
        out.guarded_by(guard);
        out
    }

    /// Ties `guard` to this stream's node: its counts are reported under the node's id, and
    /// [`on_record_error`](Self::on_record_error) sets its policy.
    pub(crate) fn guarded_by(&self, guard: Arc<RecordGuard>) {
        guard.attach(self.node.base.id, &self.node.base.ctx);
        let _ = self.node.base.guard.set(guard);
    }

    /// What happens to a record on which this stream's operator's function panics, overriding
    /// the context's [`on_record_error`](crate::StreamingContextBuilder::on_record_error):
    /// fail the batch, skip the record, or skip it and hand it to a dead-letter function. The
    /// operators whose function runs per record or key take a policy (`map`, `flat_map`,
    /// `filter`, `map_values`, `flat_map_values`, the per-key `update_state_by_key` forms and
    /// `map_with_state`); on any other stream this is an error, reported when an output is
    /// registered on it.
    ///
    /// ```
    /// use stream_core::{RecordErrors, testing::TestContext};
    /// let tc = TestContext::new();
    /// let lines = tc.input_stream(vec![vec!["1", "x", "3"]]);
    /// let numbers = lines
    ///     .map(|s: &str| s.parse::<i32>().expect("a number"))
    ///     .on_record_error(RecordErrors::skip());
    /// let out = tc.collect(&numbers).unwrap();
    /// tc.run(1).unwrap();
    /// assert_eq!(out.batch(0), vec![1, 3]);
    /// ```
    pub fn on_record_error(&self, policy: RecordErrors) -> DStream<T> {
        match self.node.base.guard.get() {
            Some(g) => {
                g.set(policy);
                self.clone()
            }
            None => {
                let problem = ContextError::InvalidArgument(format!(
                    "on_record_error: `{}` calls no user function per record; set the policy on the operator whose function can panic (map, flat_map, filter, map_values, flat_map_values, update_state_by_key, map_with_state) or on the context",
                    self.node.base.name
                ));
                let parent = self.clone();
                DStream::new_node_checked(
                    &self.owner(),
                    "on_record_error",
                    vec![self.any()],
                    self.slide_duration(),
                    Some(problem),
                    move |t| parent.get_or_compute(t),
                )
            }
        }
    }

    /// Keeps this stream's batches for `d` after their time, and its ancestors' for as long as
    /// computing one of those past batches needs them: `d` plus the reach of the windows on
    /// the way (Spark's `parentRememberDuration`). A window downstream that slides slower
    /// computes its parents' batches of several times in one batch, late. Only ever raises.
    pub(crate) fn remember(&self, d: Duration) {
        remember_from(self.node.as_ref(), d.millis());
    }

    /// Notes that this stream reads its parents' batches from `d` before its own time.
    pub(crate) fn set_reach(&self, d: Duration) {
        self.node
            .base
            .reach
            .fetch_max(d.millis(), Ordering::Relaxed);
    }

    /// Materializes and keeps each batch while it is remembered (Spark's `persist`).
    pub(crate) fn persist(&self) {
        self.node.base.persist.store(true, Ordering::Relaxed);
    }

    /// The shared cell of this stream's remember duration (inputs keep captured data that long).
    pub(crate) fn remember_cell(&self) -> Arc<AtomicI64> {
        self.node.base.remember.clone()
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

    /// The first problem of this stream or an ancestor, in one walk: a node of another context
    /// than `ctx_id` (when given), an operation's arguments that failed their check (a window
    /// not a multiple of its parent's slide), or a node made after its context started or
    /// stopped.
    pub(crate) fn problem(&self, ctx_id: Option<usize>) -> Option<ContextError> {
        let mut problem = None;
        self.visit_ancestry(&mut |base| {
            if problem.is_some() {
                return;
            }
            if ctx_id.is_some_and(|id| id != base.ctx_id) {
                problem = Some(ContextError::DifferentContexts(format!(
                    "'{}' belongs to another StreamingContext",
                    base.name
                )));
            } else {
                problem = base.detached.clone();
            }
        });
        problem
    }

    /// This stream, or the error of an operation on the way whose arguments Spark would have
    /// refused at the call (windows and slides that are not multiples of the parent's slide,
    /// streams of a union sliding differently, a stream made after `start()`). Without it the
    /// error comes when an output is registered on the stream, still before any data flows.
    ///
    /// ```
    /// use stream_core::{Milliseconds, Seconds};
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let pairs = tc.input_stream(vec![vec![("a", 1)]]);
    /// let err = pairs
    ///     .reduce_by_key_and_window(|a, b| a + b, Milliseconds(1500), Seconds(1))
    ///     .checked()
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "The window duration of windowed DStream (1500 ms) must be a multiple of the slide duration of parent DStream (1000 ms)"
    /// );
    /// ```
    pub fn checked(self) -> Result<Self> {
        match self.problem(None) {
            Some(e) => Err(e.into()),
            None => Ok(self),
        }
    }
}

/// Raises `node`'s remember duration to `d` ms, and its ancestors' to what computing its
/// batches that far back needs.
fn remember_from(node: &dyn AnyNode, d: i64) {
    let base = node.base();
    let before = base.remember.fetch_max(d, Ordering::Relaxed);
    if before >= d && d > 0 {
        // Remembered that long already, and so are its ancestors (reaches never change after
        // a node is made, and a node's remember duration is only raised through here).
        return;
    }
    let up = d + base.reach.load(Ordering::Relaxed);
    for p in &base.parents {
        remember_from(p.as_ref(), up);
    }
}

/// Visits `node` and its ancestors, each once however many paths lead to it (a graph that
/// reuses streams is a DAG, and walking every path could take exponential time).
fn walk_once(node: &dyn AnyNode, f: &mut dyn FnMut(&dyn AnyNode)) {
    walk_graph(&[node], f);
}

/// Visits the nodes of the graphs of `roots` (outputs' streams, say) and their ancestors, each
/// once.
pub(crate) fn walk_graph(roots: &[&dyn AnyNode], f: &mut dyn FnMut(&dyn AnyNode)) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = roots.to_vec();
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
