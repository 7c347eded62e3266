//! Per-key state across batches: Spark's `updateStateByKey` (StateDStream) and `mapWithState`
//! (MapWithStateDStream), with their semantics.
//!
//! - `update_state_by_key` calls the update function for *every* key in state every batch (with
//!   no values for keys without new data), and its output is the whole state: the cost of a batch
//!   grows with the number of keys, as in Spark. Returning `None` removes a key. An initial state
//!   is merged into the first batch. A batch with no data (even none at all) still updates.
//! - `map_with_state` calls the function once per *record* of the batch, a key's records in
//!   arrival order, so its later records see the state its earlier ones left; the output comes
//!   grouped by key (Spark's follows the order in which records reach the state's partition,
//!   which a shuffle does not fix across keys). Only keys with records, and keys whose timeout
//!   is due, are touched. Timeouts are exact by default: a time-ordered index finds the keys idle
//!   for longer than the timeout at every batch (strictly older than `t - timeout`, as Spark
//!   compares). `StateSpec::spark_timeouts` keeps Spark's behaviour instead: timeouts fire only
//!   on its checkpoint batches (every 10 batch intervals by default), found by a full scan.
//!
//! State lives in the context's checkpoint (RocksDB), partitioned by key hash like the shuffle,
//! behind a bounded cache of hot keys (see `checkpoint::keyed`): keys and state values must be
//! serde types, and the context needs a checkpoint directory. Each batch's changes are committed
//! with the batch, atomically; a failed batch's changes are discarded.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::{DStream, Owner};
use crate::batch::{Batch, Data, Key};
use crate::checkpoint::keyed::{Change, KeyedStore, PartState, StateKey, StateValue, TAG_STATE};
use crate::checkpoint::{Durable, Store};
use crate::error::{CheckpointError, ContextError, Error, Result};
use crate::partitioner::{FixedState, HashPartitioner, Partitioner, shuffle_state};
use crate::poison::{Guarded, RecordGuard};
use crate::time::{Duration, Time};

/// The state of one key, as a `map_with_state` function sees it (Spark's `State`).
///
/// ```
/// use stream_core::State;
/// let mut s: State<i32> = State::new();
/// assert!(!s.exists());
/// s.update(2);
/// assert_eq!(s.get(), Some(&2));
/// assert!(s.is_updated());
/// s.remove();
/// assert!(!s.exists() && s.is_removed());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct State<S> {
    value: Option<S>,
    updated: bool,
    removed: bool,
    timing_out: bool,
    misuse: Option<&'static str>,
}

impl<S> Default for State<S> {
    fn default() -> Self {
        State {
            value: None,
            updated: false,
            removed: false,
            timing_out: false,
            misuse: None,
        }
    }
}

impl<S> State<S> {
    /// A state with no value.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of a key holding `value` (Spark's `wrap`).
    pub fn wrap(value: Option<S>) -> Self {
        State {
            value,
            ..Self::default()
        }
    }

    /// The state of a key that is timing out: it can be read, not changed.
    pub fn timing_out(value: S) -> Self {
        State {
            value: Some(value),
            timing_out: true,
            ..Self::default()
        }
    }

    /// True when the key has a value.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The value, if any (Spark's `getOption`; Spark's `get` throws where this is `None`).
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Sets the value. Updating a removed or timing-out state is a mistake that fails the batch
    /// with Spark's message.
    pub fn update(&mut self, value: S) {
        if self.removed {
            self.misuse
                .get_or_insert("Cannot update the state after it has been removed");
        } else if self.timing_out {
            self.misuse
                .get_or_insert("Cannot update the state that is timing out");
        } else {
            self.value = Some(value);
            self.updated = true;
        }
    }

    /// Removes the key's value. Removing twice, or removing a timing-out state, is a mistake
    /// that fails the batch with Spark's message.
    pub fn remove(&mut self) {
        if self.timing_out {
            self.misuse
                .get_or_insert("Cannot remove the state that is timing out");
        } else if self.removed {
            self.misuse
                .get_or_insert("Cannot remove the state that has already been removed");
        } else {
            self.value = None;
            self.removed = true;
            self.updated = false;
        }
    }

    /// True while the function is called for a key whose timeout is due.
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }

    /// True when `update` was called.
    pub fn is_updated(&self) -> bool {
        self.updated
    }

    /// True when `remove` was called.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// The misuse to report, as Spark words a failed `require`.
    pub fn misuse(&self) -> Option<String> {
        self.misuse.map(|m| format!("requirement failed: {m}"))
    }
}

type MapFn<K, V, S, M> = Arc<dyn Fn(Time, &K, Option<V>, &mut State<S>) -> Option<M> + Send + Sync>;

/// When `map_with_state` times out idle keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutMode {
    /// At every batch, exactly when due (a time-ordered index, no scan). The default.
    Exact,
    /// As Spark: only on checkpoint batches (every `interval`, default 10 batch intervals),
    /// by a scan of all keys.
    Spark {
        /// The checkpoint interval; `None` for Spark's default of 10 batch intervals.
        interval: Option<Duration>,
    },
}

/// Spark's effective checkpoint interval of a `mapWithState` stream: the explicit one, or 10
/// batch intervals.
pub fn map_with_state_checkpoint_interval(batch: Duration, explicit: Option<Duration>) -> Duration {
    explicit.unwrap_or(batch * 10)
}

/// What `map_with_state` does (Spark's `StateSpec`): the function, and optionally an initial
/// state, a partition count and an idle timeout.
///
/// ```
/// use stream_core::prelude::*;
/// use stream_core::testing::TestContext;
///
/// // Each user's running count of clicks; a user idle for 3 batches times out with a last word.
/// let spec = StateSpec::function(|_time, user: &String, click: Option<u32>, st: &mut State<u64>| {
///     match click {
///         Some(_) => {
///             let n = st.get().copied().unwrap_or(0) + 1;
///             st.update(n);
///             Some(format!("{user}: {n}"))
///         }
///         None => Some(format!("{user} left after {}", st.get().copied().unwrap_or(0))),
///     }
/// })
/// .initial_state(Batch::from_vec(vec![("ann".to_string(), 10u64)], 1))
/// .num_partitions(2)
/// .timeout(Milliseconds(3000));
/// let tc = TestContext::new();
/// let clicks = tc.input_stream(vec![vec![("ann".to_string(), 1u32), ("bob".to_string(), 7)]]);
/// let counts = tc.collect(&clicks.map_with_state(spec)).unwrap();
/// tc.run(1).unwrap();
/// let mut first = counts.batch(0);
/// first.sort();
/// assert_eq!(first, vec!["ann: 11", "bob: 1"]);
/// ```
pub struct StateSpec<K, V, S, M> {
    func: MapFn<K, V, S, M>,
    initial: Option<Batch<(K, S)>>,
    partitions: Option<usize>,
    timeout: Option<Duration>,
    mode: TimeoutMode,
}

impl<K, V, S, M> std::fmt::Debug for StateSpec<K, V, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSpec")
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<K: Key, V: Data, S: Data, M: Data> StateSpec<K, V, S, M> {
    /// Spark's `StateSpec.function((time, key, value, state) => Option[mapped])`. `value` is
    /// `None` when the key is timing out.
    pub fn function(
        f: impl Fn(Time, &K, Option<V>, &mut State<S>) -> Option<M> + Send + Sync + 'static,
    ) -> Self {
        StateSpec {
            func: Arc::new(f),
            initial: None,
            partitions: None,
            timeout: None,
            mode: TimeoutMode::Exact,
        }
    }

    /// Spark's `StateSpec.function((key, value, state) => mapped)`: every call emits a record.
    pub fn simple(f: impl Fn(&K, Option<V>, &mut State<S>) -> M + Send + Sync + 'static) -> Self {
        Self::function(move |_, k, v, s| Some(f(k, v, s)))
    }

    /// State the keys start with, merged in the first batch.
    pub fn initial_state(mut self, initial: Batch<(K, S)>) -> Self {
        self.initial = Some(initial);
        self
    }

    /// Partitions of the state (default: the context's parallelism).
    pub fn num_partitions(mut self, n: usize) -> Self {
        self.partitions = Some(n.max(1));
        self
    }

    /// Keys idle for longer than `timeout` are timed out: the function is called once more with
    /// no value and `is_timing_out()`, then the key is removed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Spark's timeout behaviour instead of exact timeouts (see [`TimeoutMode::Spark`]).
    pub fn spark_timeouts(mut self, checkpoint_interval: Option<Duration>) -> Self {
        self.mode = TimeoutMode::Spark {
            interval: checkpoint_interval,
        };
        self
    }
}

/// A stateful operator's durable state: its keys, and whether the initial state was merged.
pub(crate) struct StateOp<K, S> {
    kind: String,
    pub(crate) keyed: KeyedStore<K, S>,
    /// The initial state was merged in the batch being processed (committed with it).
    init_merged: AtomicBool,
}

impl<K: StateKey, S: StateValue> StateOp<K, S> {
    pub(crate) fn new(
        id: usize,
        kind: String,
        partitions: usize,
        cache: usize,
        timed: bool,
    ) -> Self {
        StateOp {
            kind,
            keyed: KeyedStore::new(id, TAG_STATE, partitions, cache, timed),
            init_merged: AtomicBool::new(false),
        }
    }

    /// True when the initial state must be merged into this batch (a new checkpoint's first).
    fn wants_initial(&self, store: &Store) -> Result<bool> {
        Ok(!self.init_merged.load(Ordering::SeqCst) && !self.keyed.has_flag(store, b"init")?)
    }
}

impl<K: StateKey, S: StateValue> Durable for StateOp<K, S> {
    fn describe(&self) -> String {
        format!(
            "{} (partitions {}, key {}, state {})",
            self.kind,
            self.keyed.partitions(),
            std::any::type_name::<K>(),
            std::any::type_name::<S>()
        )
    }

    fn commit(
        &self,
        store: &Store,
        _: Time,
        wb: &mut crate::checkpoint::CommitBatch<'_>,
    ) -> Result<()> {
        self.keyed.commit(store, wb)?;
        if self.init_merged.swap(false, Ordering::SeqCst) {
            self.keyed.put_flag(wb, b"init")?;
        }
        Ok(())
    }

    fn size(&self, store: &Store) -> Option<crate::metrics::StateInfo> {
        self.keyed
            .size(store, format!("#{} {}", self.keyed.id, self.kind))
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String> {
        self.keyed.check(key, value)
    }

    fn derived(&self, key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
        self.keyed.derived(key, value, out)
    }

    fn rebuilds(&self, key: &[u8]) -> bool {
        self.keyed.rebuilds(key)
    }

    fn abort(&self, _: Time) {
        self.keyed.abort();
        self.init_merged.store(false, Ordering::SeqCst);
    }
}

/// Registers a stateful operator with the stream's context.
pub(crate) fn register_state<K: StateKey, S: StateValue>(
    owner: &Owner,
    kind: &str,
    partitions: usize,
    timed: bool,
) -> Arc<StateOp<K, S>> {
    match owner.ctx.upgrade() {
        Some(ctx) => {
            let cache = ctx.state_cache;
            ctx.register_durable(|id| StateOp::new(id, kind.to_string(), partitions, cache, timed))
        }
        // The stream is detached (its context is gone); it never computes.
        None => Arc::new(StateOp::new(
            usize::MAX,
            kind.to_string(),
            partitions,
            1,
            timed,
        )),
    }
}

/// The open checkpoint of the stream's context, for a batch of a stateful operator.
pub(crate) fn open_store(owner: &Owner) -> Result<Arc<Store>> {
    let ctx = owner.ctx.upgrade().ok_or(ContextError::ContextDropped)?;
    let store = ctx.store().cloned().ok_or(CheckpointError::NotSet)?;
    store.check_healthy()?;
    Ok(store)
}

/// Batches kept by time (results a state operation may be asked for again).
type Memo<T> = Arc<Mutex<BTreeMap<Time, Batch<T>>>>;

/// What one `map_with_state` batch produces: mapped records, and the state when asked for.
#[derive(Clone)]
enum Produced<M, K, S> {
    Mapped(M),
    Snapshot(K, S),
}

/// `map_with_state`'s result: the mapped stream (this derefs to it) and the state snapshots.
pub struct MapWithStateStream<K, S, M> {
    mapped: DStream<M>,
    core: DStream<Produced<M, K, S>>,
    snapshots_wanted: Arc<std::sync::atomic::AtomicBool>,
}

impl<K, S, M> std::fmt::Debug for MapWithStateStream<K, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapWithStateStream").finish_non_exhaustive()
    }
}

impl<K: Key, S: Data, M: Data> std::ops::Deref for MapWithStateStream<K, S, M> {
    type Target = DStream<M>;
    fn deref(&self) -> &DStream<M> {
        &self.mapped
    }
}

impl<K: Key, S: Data, M: Data> MapWithStateStream<K, S, M> {
    /// The mapped records.
    pub fn mapped(&self) -> DStream<M> {
        self.mapped.clone()
    }

    /// Every batch, the whole state (Spark's `stateSnapshots()`).
    pub fn state_snapshots(&self) -> DStream<(K, S)> {
        self.snapshots_wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.core.flat_map(|p| match p {
            Produced::Snapshot(k, s) => Some((k, s)),
            Produced::Mapped(_) => None,
        })
    }
}

fn first_misuse<S>(state: &State<S>, t: Time) -> Result<()> {
    match state.misuse() {
        Some(m) => Err(Error::user(t, m)),
        None => Ok(()),
    }
}

impl<K: StateKey, V: Data> DStream<(K, V)> {
    /// Spark's `updateStateByKey((values, state) => Option[newState])`: every batch, `f` gets each
    /// key's new values (possibly none) and its state; `None` removes the key. The output is the
    /// whole state. See the module docs for the cost.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![("a", 1)], vec![("a", 1), ("b", 1)], vec![]]);
    /// let totals = s
    ///     .map(|(k, v)| (k.to_string(), v))
    ///     .update_state_by_key(|vs: Vec<i32>, st: Option<i32>| Some(vs.iter().sum::<i32>() + st.unwrap_or(0)));
    /// let out = tc.collect(&totals).unwrap();
    /// tc.run(3).unwrap();
    /// let mut last = out.batch(2);
    /// last.sort();
    /// assert_eq!(last, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    /// ```
    pub fn update_state_by_key<S: StateValue>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    ) -> DStream<(K, S)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        self.update_state_by_key_with(move |_, _, vs, s| f(vs, s), p, None)
    }

    /// `update_state_by_key` with a partitioner and an initial state merged in the first batch.
    pub fn update_state_by_key_with_initial<S: StateValue, P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
        partitioner: P,
        initial: Batch<(K, S)>,
    ) -> DStream<(K, S)> {
        self.update_state_by_key_with(move |_, _, vs, s| f(vs, s), partitioner, Some(initial))
    }

    /// The general `updateStateByKey`: `f(batch time, key, values, state)`, a partitioner, and
    /// an optional initial state.
    pub fn update_state_by_key_with<S: StateValue, P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
        partitioner: P,
        initial: Option<Batch<(K, S)>>,
    ) -> DStream<(K, S)> {
        let f = Arc::new(f);
        let guard = RecordGuard::new("updateStateByKey");
        let g = guard.clone();
        let out = self.update_state_by_key_partitions(
            move |t, it| match g.for_batch(t) {
                None => it
                    .filter_map(|(k, vs, s)| f(t, &k, vs, s).map(|s| (k, s)))
                    .collect(),
                // A key whose call panics keeps its state; its values are the dead letter.
                Some(g) => it
                    .filter_map(|(k, vs, s)| {
                        let before = s.clone();
                        let kept = g.keeps_records().then(|| (k.clone(), vs.clone()));
                        match g.catch(|| f(t, &k, vs, s)) {
                            Ok(next) => next.map(|s| (k, s)),
                            Err(e) => {
                                g.failed(e, kept);
                                before.map(|s| (k, s))
                            }
                        }
                    })
                    .collect(),
            },
            partitioner,
            initial,
        );
        out.guarded_by(guard);
        out
    }

    /// Spark's iterator form of `updateStateByKey`: `f` gets a partition's
    /// `(key, values, state)` and returns its new `(key, state)` pairs.
    pub fn update_state_by_key_partitions<S: StateValue, P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(Time, &mut dyn Iterator<Item = (K, Vec<V>, Option<S>)>) -> Vec<(K, S)>
        + Send
        + Sync
        + 'static,
        partitioner: P,
        initial: Option<Batch<(K, S)>>,
    ) -> DStream<(K, S)> {
        let parent = self.clone();
        let owner = self.owner();
        let n = partitioner.num_partitions().max(1);
        let op: Arc<StateOp<K, S>> = register_state(&owner, "updateStateByKey", n, false);
        let f = Arc::new(f);
        let results: Memo<(K, S)> = Arc::new(Mutex::new(BTreeMap::new()));
        DStream::new_node(
            &owner.clone(),
            "updateStateByKey",
            vec![self.any()],
            self.slide_duration(),
            move |t| {
                let mut memo = results.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = memo.get(&t) {
                    return Ok(Some(b.clone()));
                }
                let store = open_store(&owner)?;
                // The initial state is the previous state of a new checkpoint's first batch.
                let mut initial_parts: Vec<Vec<(K, S)>> = vec![Vec::new(); n];
                if let Some(init) = initial
                    .as_ref()
                    .filter(|_| op.wants_initial(&store).unwrap_or(false))
                {
                    for (k, s) in init.collect() {
                        initial_parts[partitioner.partition(&k)].push((k, s));
                    }
                    op.init_merged.store(true, Ordering::SeqCst);
                }
                // A batch with no data still updates every key, with no values.
                let data = parent.get_or_compute(t)?.unwrap_or_else(Batch::empty);
                let grouped = data
                    .group_by_key_with(partitioner.clone())
                    .into_partitions();
                let now = t.millis();
                let outputs: Vec<Result<Vec<(K, S)>>> = grouped
                    .into_par_iter()
                    .zip(initial_parts.into_par_iter())
                    .enumerate()
                    .map(|(p, (records, init))| {
                        let mut part = op.keyed.part(&store, p)?;
                        // The keys' states in the store's order, then the initial states of
                        // keys it does not hold: the keys without new data are given to `f`
                        // (and come out) in that order, the same in every run.
                        let mut before: Vec<(K, Option<S>)> = part
                            .scan()?
                            .into_iter()
                            .map(|(k, s, _)| (k, Some(s)))
                            .collect();
                        let mut at: std::collections::HashMap<K, usize, FixedState> =
                            std::collections::HashMap::with_capacity_and_hasher(
                                before.len(),
                                shuffle_state(),
                            );
                        for (i, (k, _)) in before.iter().enumerate() {
                            at.insert(k.clone(), i);
                        }
                        for (k, s) in init {
                            if !at.contains_key(&k) {
                                at.insert(k.clone(), before.len());
                                before.push((k, Some(s)));
                            }
                        }
                        let keys: HashSet<K, FixedState> = at.keys().cloned().collect();
                        let mut rows = records
                            .into_iter()
                            .map(|(k, vs)| {
                                let s = at.get(&k).and_then(|i| before[*i].1.take());
                                (k, vs, s)
                            })
                            .collect::<Vec<_>>();
                        rows.extend(
                            before
                                .into_iter()
                                .filter_map(|(k, s)| s.map(|s| (k, Vec::new(), Some(s)))),
                        );
                        let next = f(t, &mut rows.into_iter());
                        let mut gone = keys;
                        for (k, s) in &next {
                            gone.remove(k);
                            part.put(k.clone(), s.clone(), now)?;
                        }
                        for k in gone {
                            part.remove(&k)?;
                        }
                        Ok(next)
                    })
                    .collect();
                let mut parts = Vec::with_capacity(n);
                for o in outputs {
                    parts.push(o?);
                }
                let next = Batch::from_partitions(parts);
                memo.clear();
                memo.insert(t, next.clone());
                Ok(Some(next))
            },
        )
    }

    /// Spark's `mapWithState`: `spec`'s function is called for each record of each batch with
    /// the key's state, and for keys whose timeout is due. See the module docs.
    pub fn map_with_state<S: StateValue, M: Data>(
        &self,
        spec: StateSpec<K, V, S, M>,
    ) -> MapWithStateStream<K, S, M> {
        let n = spec.partitions.unwrap_or_else(|| self.default_partitions());
        let partitioner = HashPartitioner::at_least_one(n);
        let parent = self.clone();
        let owner = self.owner();
        let batch = self.slide_duration();
        let wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let want = wanted.clone();
        let memo: Memo<Produced<M, K, S>> = Arc::new(Mutex::new(BTreeMap::new()));
        let (func, initial, timeout, mode) = (spec.func, spec.initial, spec.timeout, spec.mode);
        // The timer index serves exact timeouts; Spark's scan every few batches needs none.
        let indexed = timeout.is_some() && matches!(mode, TimeoutMode::Exact);
        let op: Arc<StateOp<K, S>> = register_state(&owner, "mapWithState", n, indexed);
        let guard = RecordGuard::new("mapWithState");
        let g = guard.clone();
        let core = DStream::new_node(
            &owner.clone(),
            "mapWithState",
            vec![self.any()],
            self.slide_duration(),
            move |t| {
                let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = memo.get(&t) {
                    return Ok(Some(b.clone()));
                }
                let zero = owner.zero_time();
                let store = open_store(&owner)?;
                if let Some(init) = initial.as_ref()
                    && op.wants_initial(&store)?
                {
                    // The initial state, as of a new checkpoint's first batch.
                    for (k, s) in init.collect() {
                        let p = partitioner.partition(&k);
                        op.keyed.part(&store, p)?.put(k, s, t.millis())?;
                    }
                    op.init_merged.store(true, Ordering::SeqCst);
                }
                let data = parent.get_or_compute(t)?.unwrap_or_else(Batch::empty);
                // Grouped per key on the map side (see `group_by_key`), values in arrival order.
                let records = data
                    .group_by_key_with(partitioner.clone())
                    .into_partitions();
                let full_scan = match mode {
                    TimeoutMode::Exact => false,
                    TimeoutMode::Spark { interval } => {
                        let every = map_with_state_checkpoint_interval(batch, interval);
                        t.is_multiple_of(zero, every)
                    }
                };
                let snapshots = want.load(std::sync::atomic::Ordering::Relaxed);
                let guarded = g.for_batch(t);
                let outputs: Vec<Result<Vec<Produced<M, K, S>>>> = records
                    .into_par_iter()
                    .enumerate()
                    .map(|(p, records)| {
                        let mut part = op.keyed.part(&store, p)?;
                        process_partition(
                            &mut part,
                            records,
                            t,
                            &func,
                            timeout,
                            mode,
                            full_scan,
                            snapshots,
                            guarded.as_ref(),
                        )
                    })
                    .collect();
                let mut produced = Vec::with_capacity(outputs.len());
                for o in outputs {
                    produced.push(o?);
                }
                let b = Batch::from_partitions(produced);
                memo.retain(|k, _| *k >= t - batch);
                memo.insert(t, b.clone());
                Ok(Some(b))
            },
        );
        core.guarded_by(guard);
        let mapped = core.flat_map(|p| match p {
            Produced::Mapped(m) => Some(m),
            Produced::Snapshot(..) => None,
        });
        MapWithStateStream {
            mapped,
            core,
            snapshots_wanted: wanted,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn process_partition<K: StateKey, V: Data, S: StateValue, M: Data>(
    part: &mut PartState<'_, K, S>,
    records: Vec<(K, Vec<V>)>,
    t: Time,
    func: &MapFn<K, V, S, M>,
    timeout: Option<Duration>,
    mode: TimeoutMode,
    full_scan: bool,
    snapshots: bool,
    guarded: Option<&Guarded>,
) -> Result<Vec<Produced<M, K, S>>> {
    let timed = timeout.is_some();
    let now = t.millis();
    let mut out = Vec::new();
    part.prefetch(records.iter().map(|(k, _)| k))?;
    // A key's records one by one, in arrival order, as Spark calls the function: its later
    // records see the state its earlier ones left. The keys come grouped, one cache lookup
    // each; Spark fixes no order across keys (its shuffle fetches map outputs in no set order).
    for (k, values) in records {
        let mut misuse = Ok(());
        part.update_each(&k, now, values, |value, v| {
            let (mapped, st) = match guarded {
                None => {
                    let mut st = State::wrap(value);
                    (func(t, &k, Some(v), &mut st), st)
                }
                // A record whose call panics leaves the state as it was and maps to nothing.
                Some(g) => {
                    let before = value.clone();
                    let kept = g.keeps_records().then(|| (k.clone(), v.clone()));
                    let mut st = State::wrap(value);
                    match g.catch(|| func(t, &k, Some(v), &mut st)) {
                        Ok(mapped) => (mapped, st),
                        Err(e) => {
                            g.failed(e, kept);
                            return (Change::Keep(before), true);
                        }
                    }
                }
            };
            misuse = first_misuse(&st, t);
            let change = if st.is_removed() {
                Change::Remove
            } else if st.is_updated() || (st.exists() && timed) {
                // As Spark: with a timeout, a key with data counts as active even if unchanged.
                match st.value {
                    Some(value) => Change::Put(value),
                    None => Change::Keep(None),
                }
            } else {
                Change::Keep(st.value)
            };
            out.extend(mapped.map(Produced::Mapped));
            (change, misuse.is_ok())
        })?;
        misuse?;
    }
    if let Some(timeout) = timeout {
        // Strictly older than the threshold, as Spark compares.
        let threshold = (t - timeout).millis();
        let due: Vec<K> = match mode {
            TimeoutMode::Exact => part.due(threshold)?,
            TimeoutMode::Spark { .. } if full_scan => part
                .scan()?
                .into_iter()
                .filter(|(_, _, at)| *at < threshold)
                .map(|(k, _, _)| k)
                .collect(),
            TimeoutMode::Spark { .. } => Vec::new(),
        };
        for k in due {
            if let Some((value, _)) = part.remove(&k)? {
                let mut st = State::timing_out(value);
                let mapped = match guarded {
                    None => func(t, &k, None, &mut st),
                    // The key times out either way; the dead letter is the key.
                    Some(g) => match g.catch(|| func(t, &k, None, &mut st)) {
                        Ok(mapped) => mapped,
                        Err(e) => {
                            g.failed(e, g.keeps_records().then(|| k.clone()));
                            None
                        }
                    },
                };
                first_misuse(&st, t)?;
                out.extend(mapped.map(Produced::Mapped));
            }
        }
    }
    if snapshots {
        out.extend(
            part.scan()?
                .into_iter()
                .map(|(k, s, _)| Produced::Snapshot(k, s)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_api_follows_sparks_contract() {
        let s: State<i32> = State::new();
        assert!(
            !s.exists()
                && s.get().is_none()
                && !s.is_timing_out()
                && !s.is_updated()
                && !s.is_removed()
        );
        let s = State::wrap(None::<i32>);
        assert!(!s.exists() && !s.is_updated() && !s.is_removed());
        let mut s = State::wrap(Some(1));
        assert!(s.exists() && s.get() == Some(&1) && !s.is_updated());
        s.update(2);
        assert!(s.get() == Some(&2) && s.is_updated() && !s.is_removed());
        let mut s = State::new();
        s.update(2);
        assert!(s.exists() && s.get() == Some(&2) && s.is_updated());
        s.remove();
        assert!(!s.exists() && s.get().is_none() && !s.is_updated() && s.is_removed());
        let mut twice = s.clone();
        twice.remove();
        assert_eq!(
            twice.misuse().unwrap(),
            "requirement failed: Cannot remove the state that has already been removed"
        );
        let mut after = s.clone();
        after.update(3);
        assert_eq!(
            after.misuse().unwrap(),
            "requirement failed: Cannot update the state after it has been removed"
        );
        let s = State::timing_out(3);
        assert!(s.exists() && s.get() == Some(&3) && s.is_timing_out() && !s.is_updated());
        let mut r = s.clone();
        r.remove();
        assert_eq!(
            r.misuse().unwrap(),
            "requirement failed: Cannot remove the state that is timing out"
        );
        let mut u = s.clone();
        u.update(4);
        assert_eq!(
            u.misuse().unwrap(),
            "requirement failed: Cannot update the state that is timing out"
        );
    }

    #[test]
    fn checkpoint_interval_facts_match_spark() {
        let ms = Duration::from_millis;
        assert_eq!(map_with_state_checkpoint_interval(ms(100), None), ms(1000));
        assert_eq!(
            map_with_state_checkpoint_interval(ms(1000), None),
            ms(10_000)
        );
        assert_eq!(
            map_with_state_checkpoint_interval(ms(10_000), None),
            ms(100_000)
        );
        assert_eq!(
            map_with_state_checkpoint_interval(ms(100), Some(ms(2000))),
            ms(2000)
        );
        assert_eq!(
            map_with_state_checkpoint_interval(ms(1000), Some(ms(2000))),
            ms(2000)
        );
        assert_eq!(
            map_with_state_checkpoint_interval(ms(10_000), Some(ms(20_000))),
            ms(20_000)
        );
    }
}
