//! Per-key state across batches: Spark's `updateStateByKey` (StateDStream) and `mapWithState`
//! (MapWithStateDStream), with their semantics.
//!
//! - `update_state_by_key` calls the update function for *every* key in state every batch (with
//!   no values for keys without new data), and its output is the whole state: the cost of a batch
//!   grows with the number of keys, as in Spark. Returning `None` removes a key. An initial state
//!   is merged into the first batch. A batch with no data (even none at all) still updates.
//! - `map_with_state` calls the function once per *record* of the batch, in order, so a key's
//!   later records see the state its earlier ones left; only keys with records, and keys whose
//!   timeout is due, are touched. Timeouts are exact by default: a time-ordered index finds the
//!   keys idle for longer than the timeout at every batch (strictly older than `t - timeout`, as
//!   Spark compares). `StateSpec::spark_timeouts` keeps Spark's behaviour instead: timeouts fire
//!   only on its checkpoint batches (every 10 batch intervals by default), found by a full scan.
//!
//! State is held in memory, partitioned by key hash like the shuffle.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::DStream;
use crate::batch::{Batch, Data, Key};
use crate::error::{Error, Result};
use crate::partitioner::{HashPartitioner, Partitioner};
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

/// A key's state and the batch time of its last update, in ms.
struct Entry<S> {
    value: S,
    updated_at: i64,
}

/// One partition of `map_with_state`'s state, with its time-ordered timer index.
struct StatePart<K, S> {
    map: HashMap<K, Entry<S>>,
    timers: BTreeMap<i64, HashSet<K>>,
}

impl<K: Key, S: Data> StatePart<K, S> {
    /// Drops `k` from the timer index slot of time `at`.
    fn unschedule(&mut self, k: &K, at: i64) {
        if let Some(set) = self.timers.get_mut(&at) {
            set.remove(k);
            if set.is_empty() {
                self.timers.remove(&at);
            }
        }
    }

    fn put(&mut self, k: K, value: S, at: i64, timed: bool) {
        if timed {
            if let Some(old) = self.map.get(&k).map(|e| e.updated_at) {
                self.unschedule(&k, old);
            }
            self.timers.entry(at).or_default().insert(k.clone());
        }
        self.map.insert(
            k,
            Entry {
                value,
                updated_at: at,
            },
        );
    }

    fn take(&mut self, k: &K) -> Option<Entry<S>> {
        let e = self.map.remove(k)?;
        self.unschedule(k, e.updated_at);
        Some(e)
    }
}

/// Batches kept by time (results a state operation may be asked for again).
type Memo<T> = Arc<Mutex<BTreeMap<Time, Batch<T>>>>;

/// `map_with_state`'s state partitions, made at the first batch.
type SharedState<K, S> = Arc<Mutex<Option<Vec<StatePart<K, S>>>>>;

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

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Spark's `updateStateByKey((values, state) => Option[newState])`: every batch, `f` gets each
    /// key's new values (possibly none) and its state; `None` removes the key. The output is the
    /// whole state. See the module docs for the cost.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let s = tc.input_stream(vec![vec![("a", 1)], vec![("a", 1), ("b", 1)], vec![]]);
    /// let totals = s.update_state_by_key(|vs: Vec<i32>, st: Option<i32>| Some(vs.iter().sum::<i32>() + st.unwrap_or(0)));
    /// let out = tc.collect(&totals).unwrap();
    /// tc.run(3).unwrap();
    /// let mut last = out.batch(2);
    /// last.sort();
    /// assert_eq!(last, vec![("a", 2), ("b", 1)]);
    /// ```
    pub fn update_state_by_key<S: Data>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    ) -> DStream<(K, S)> {
        let p = HashPartitioner::at_least_one(self.default_partitions());
        self.update_state_by_key_with(move |_, _, vs, s| f(vs, s), p, None)
    }

    /// `update_state_by_key` with a partitioner and an initial state merged in the first batch.
    pub fn update_state_by_key_with_initial<S: Data, P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
        partitioner: P,
        initial: Batch<(K, S)>,
    ) -> DStream<(K, S)> {
        self.update_state_by_key_with(move |_, _, vs, s| f(vs, s), partitioner, Some(initial))
    }

    /// The general `updateStateByKey`: `f(batch time, key, values, state)`, a partitioner, and
    /// an optional initial state.
    pub fn update_state_by_key_with<S: Data, P: Partitioner<K> + Clone>(
        &self,
        f: impl Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
        partitioner: P,
        initial: Option<Batch<(K, S)>>,
    ) -> DStream<(K, S)> {
        let f = Arc::new(f);
        self.update_state_by_key_partitions(
            move |t, it| {
                let f = f.clone();
                it.filter_map(move |(k, vs, s)| f(t, &k, vs, s).map(|s| (k, s)))
                    .collect()
            },
            partitioner,
            initial,
        )
    }

    /// Spark's iterator form of `updateStateByKey`: `f` gets a partition's
    /// `(key, values, state)` and returns its new `(key, state)` pairs.
    pub fn update_state_by_key_partitions<S: Data, P: Partitioner<K> + Clone>(
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
        let slide = self.slide_duration();
        let f = Arc::new(f);
        let results: Memo<(K, S)> = Arc::new(Mutex::new(BTreeMap::new()));
        DStream::new_node(
            &owner.clone(),
            "updateStateByKey",
            vec![self.any()],
            slide,
            move |t| {
                let zero = owner.zero_time();
                let mut memo = results.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = memo.get(&t) {
                    return Ok(Some(b.clone()));
                }
                let prev_t = t - slide;
                // The previous state; the initial state before the first batch.
                let prev = match memo.get(&prev_t) {
                    Some(b) => b.clone(),
                    None if prev_t <= zero => initial.clone().unwrap_or_else(Batch::empty),
                    None => {
                        return Err(Error::user(
                            t,
                            format!(
                                "the state of {prev_t} is missing (its batch failed); state cannot go on without it"
                            ),
                        ));
                    }
                };
                // A batch with no data still updates every key, with no values.
                let data = parent.get_or_compute(t)?.unwrap_or_else(Batch::empty);
                let f = f.clone();
                let next = data
                    .cogroup(prev, partitioner.clone())
                    .map_partitions(move |it| {
                        let mut rows = it.map(|(k, (vs, mut ss))| (k, vs, ss.pop()));
                        f(t, &mut rows)
                    })
                    .materialize();
                memo.retain(|k, _| *k >= prev_t);
                memo.insert(t, next.clone());
                Ok(Some(next))
            },
        )
    }

    /// Spark's `mapWithState`: `spec`'s function is called for each record of each batch with
    /// the key's state, and for keys whose timeout is due. See the module docs.
    pub fn map_with_state<S: Data, M: Data>(
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
        let parts: SharedState<K, S> = Arc::new(Mutex::new(None));
        let memo: Memo<Produced<M, K, S>> = Arc::new(Mutex::new(BTreeMap::new()));
        let (func, initial, timeout, mode) = (spec.func, spec.initial, spec.timeout, spec.mode);
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
                let mut guard = parts.lock().unwrap_or_else(|e| e.into_inner());
                let state = guard.get_or_insert_with(|| {
                    // The initial state, partitioned, as of the first batch.
                    let mut parts: Vec<StatePart<K, S>> = (0..n)
                        .map(|_| StatePart {
                            map: HashMap::new(),
                            timers: BTreeMap::new(),
                        })
                        .collect();
                    for (k, s) in initial.as_ref().map(Batch::collect).unwrap_or_default() {
                        let p = partitioner.partition(&k);
                        parts[p].put(k, s, t.millis(), timeout.is_some());
                    }
                    parts
                });
                let data = parent.get_or_compute(t)?.unwrap_or_else(Batch::empty);
                let grouped = data
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
                let outputs: Vec<Result<Vec<Produced<M, K, S>>>> = state
                    .par_iter_mut()
                    .zip(grouped.into_par_iter())
                    .map(|(part, records)| {
                        process_partition(
                            part, records, t, &func, timeout, mode, full_scan, snapshots,
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
fn process_partition<K: Key, V: Data, S: Data, M: Data>(
    part: &mut StatePart<K, S>,
    records: Vec<(K, Vec<V>)>,
    t: Time,
    func: &MapFn<K, V, S, M>,
    timeout: Option<Duration>,
    mode: TimeoutMode,
    full_scan: bool,
    snapshots: bool,
) -> Result<Vec<Produced<M, K, S>>> {
    let timed = timeout.is_some();
    let now = t.millis();
    let mut out = Vec::new();
    for (k, vs) in records {
        for v in vs {
            let mut st = State::wrap(part.map.get(&k).map(|e| e.value.clone()));
            let mapped = func(t, &k, Some(v), &mut st);
            first_misuse(&st, t)?;
            if st.is_removed() {
                part.take(&k);
            } else if st.is_updated() || (st.exists() && timed) {
                // As Spark: with a timeout, a key with data counts as active even if unchanged.
                if let Some(value) = st.value {
                    part.put(k.clone(), value, now, timed);
                }
            }
            out.extend(mapped.map(Produced::Mapped));
        }
    }
    if let Some(timeout) = timeout {
        // Strictly older than the threshold, as Spark compares.
        let threshold = (t - timeout).millis();
        let due: Vec<K> = match mode {
            TimeoutMode::Exact => part
                .timers
                .range(..threshold)
                .flat_map(|(_, ks)| ks.iter().cloned())
                .collect(),
            TimeoutMode::Spark { .. } if full_scan => part
                .map
                .iter()
                .filter(|(_, e)| e.updated_at < threshold)
                .map(|(k, _)| k.clone())
                .collect(),
            TimeoutMode::Spark { .. } => Vec::new(),
        };
        for k in due {
            if let Some(e) = part.take(&k) {
                let mut st = State::timing_out(e.value);
                let mapped = func(t, &k, None, &mut st);
                first_misuse(&st, t)?;
                out.extend(mapped.map(Produced::Mapped));
            }
        }
    }
    if snapshots {
        out.extend(
            part.map
                .iter()
                .map(|(k, e)| Produced::Snapshot(k.clone(), e.value.clone())),
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
