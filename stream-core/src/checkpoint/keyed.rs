//! Per-key state of one operator in its RocksDB column family, behind a bounded write-back cache.
//!
//! Keys (all big-endian, so that RocksDB's byte order is the order wanted):
//! - `<tag> <partition u16> <key>` -> `<time i64> <value>`: a key's state and the batch time of
//!   its last update (`tag` is `s` for operator state; windows keep their running aggregate
//!   under it too);
//! - `t <partition u16> <time> <key>` -> empty: the timer index of timed state, in time order,
//!   so that the keys due at a batch are one range scan, never a scan of all keys. It is derived
//!   from the state entries and not logged for replicas: a restore writes a key's timer beside
//!   its state ([`KeyedStore::derived`]) and cannot delete the timer of the key's earlier time
//!   without reading it, so a timer whose time is not its key's stored time is stale: skipped
//!   by [`PartState::due`] once its time is past the timeout, and deleted with the commit after.
//!
//! A batch reads through the cache (its misses in one sorted multi-get, or a point lookup each)
//! and changes only the cache; the changes reach RocksDB in the batch's atomic commit, in key
//! order, or are dropped if the batch fails. After the commit, keys not used by the batch are
//! evicted once the cache is over its capacity, so the state can be far larger than memory.
//! Until the first eviction of a new checkpoint the cache holds every key, and reads never go
//! to RocksDB.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;
use rocksdb::ColumnFamily;

use super::CommitBatch;

use super::Store;
use crate::batch::{Data, Key};
use crate::error::{CheckpointError, Result};

/// Keys of state: hashable, comparable, and storable (serde).
pub trait StateKey: Key + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Key + serde::Serialize + serde::de::DeserializeOwned> StateKey for T {}

/// Values of state: storable (serde).
pub trait StateValue: Data + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Data + serde::Serialize + serde::de::DeserializeOwned> StateValue for T {}

pub(crate) const TAG_STATE: u8 = b's';
const TAG_TIMER: u8 = b't';

/// `t` as 8 bytes that sort as the times do (sign bit flipped).
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn time_from_bytes(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

pub(crate) fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| {
        CheckpointError::Encode {
            what: what.to_string(),
            message: e.to_string(),
        }
        .into()
    })
}

/// Appends `v`'s encoding to `buf`.
pub(crate) fn encode_into<T: serde::Serialize>(what: &str, v: &T, buf: &mut Vec<u8>) -> Result<()> {
    *buf = postcard::to_extend(v, std::mem::take(buf)).map_err(|e| CheckpointError::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// Keys and values laid end to end in one buffer, sorted by key before use: a batch with
/// millions of changes or lookups costs two allocations, not two per key.
#[derive(Default)]
struct Flat {
    bytes: Vec<u8>,
    /// (start, key length, value length or `DELETE`); the value follows the key.
    entries: Vec<(usize, u32, u32)>,
}

const DELETE: u32 = u32::MAX;

/// The value of a written entry.
enum Val<'a, S> {
    Delete,
    Empty,
    /// A key's state: its time, then its encoding.
    State(i64, &'a S),
}

impl Flat {
    /// Starts an entry; the caller appends its key to `bytes`, then calls `end_key`.
    fn begin(&mut self) -> usize {
        self.bytes.len()
    }

    fn end_key(&mut self, start: usize) {
        self.entries
            .push((start, (self.bytes.len() - start) as u32, DELETE));
    }

    /// Marks the bytes appended since `end_key` as the last entry's value.
    fn end_value(&mut self) {
        let e = self.entries.last_mut().expect("a key was added");
        e.2 = (self.bytes.len() - e.0 - e.1 as usize) as u32;
    }

    /// Adds the entry `pre [time] kb` with its value.
    fn add<S: serde::Serialize>(
        &mut self,
        what: &str,
        pre: [u8; 3],
        time: Option<i64>,
        kb: &[u8],
        v: Val<'_, S>,
    ) -> Result<()> {
        let start = self.begin();
        self.bytes.extend_from_slice(&pre);
        if let Some(t) = time {
            self.bytes.extend_from_slice(&time_bytes(t));
        }
        self.bytes.extend_from_slice(kb);
        self.end_key(start);
        match v {
            Val::Delete => {}
            Val::Empty => self.end_value(),
            Val::State(at, v) => {
                self.bytes.extend_from_slice(&at.to_be_bytes());
                encode_into(what, v, &mut self.bytes)?;
                self.end_value();
            }
        }
        Ok(())
    }

    fn key(&self, e: &(usize, u32, u32)) -> &[u8] {
        &self.bytes[e.0..e.0 + e.1 as usize]
    }

    fn value(&self, e: &(usize, u32, u32)) -> Option<&[u8]> {
        let v = e.0 + e.1 as usize;
        (e.2 != DELETE).then(|| &self.bytes[v..v + e.2 as usize])
    }

    fn sort(&mut self) {
        let bytes = &self.bytes;
        self.entries.sort_unstable_by(|a, b| {
            bytes[a.0..a.0 + a.1 as usize].cmp(&bytes[b.0..b.0 + b.1 as usize])
        });
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| {
        CheckpointError::Encode {
            what: what.to_string(),
            message: format!("{e} (was the type changed since the checkpoint was written?)"),
        }
        .into()
    })
}

/// Whether `b` is exactly one `T` as encoded in the store (nothing missing, nothing after).
pub(crate) fn check_decodes<T: serde::de::DeserializeOwned>(
    b: &[u8],
) -> std::result::Result<(), String> {
    match postcard::take_from_bytes::<T>(b) {
        Ok((_, [])) => Ok(()),
        Ok((_, rest)) => Err(format!(
            "{} bytes after a {}",
            rest.len(),
            std::any::type_name::<T>()
        )),
        Err(e) => Err(format!("not a {}: {e}", std::any::type_name::<T>())),
    }
}

/// A cached key (kept small: a batch with millions of new keys holds a slot for each).
struct Slot<S> {
    /// `None`: the key has no state (removed this batch, or known absent).
    value: Option<S>,
    /// Batch time of the last update, in ms.
    at: i64,
    /// The time RocksDB holds for the key, or `ABSENT` when it holds none.
    stored_at: i64,
    /// The batch that last used it (for eviction).
    used: u32,
    /// Changed by the current batch.
    dirty: bool,
}

/// `Slot::stored_at` of a key RocksDB does not hold.
const ABSENT: i64 = i64::MIN;

impl<S> Slot<S> {
    fn stored(&self) -> Option<i64> {
        (self.stored_at != ABSENT).then_some(self.stored_at)
    }
}

/// What a record did to its key's state (see [`PartState::update_each`]).
pub(crate) enum Change<S> {
    /// Not changed: the value is put back as it was.
    Keep(Option<S>),
    /// Set, as updated at the batch time.
    Put(S),
    /// Removed.
    Remove,
}

struct Part<K, S> {
    cache: HashMap<K, Slot<S>, ahash::RandomState>,
    /// Timer entries found stale (see the module's doc), deleted with the next commit.
    stale: Vec<Vec<u8>>,
    tick: u32,
    /// Whether the cache holds every key with state (a new checkpoint, nothing evicted yet):
    /// then a scan reads the cache alone and a miss needs no lookup. `None` before the first
    /// batch.
    complete: Option<bool>,
}

/// The keyed state of one operator.
pub(crate) struct KeyedStore<K, S> {
    pub(crate) id: usize,
    tag: u8,
    timed: bool,
    parts: Vec<Mutex<Part<K, S>>>,
    capacity: usize,
    what: String,
    /// Keys holding state, as of the last commit (`UNKNOWN` until read from the checkpoint).
    keys: AtomicI64,
}

/// `KeyedStore::keys` before it is known.
const UNKNOWN: i64 = i64::MIN;

/// The flag key under which the number of keys is committed with each batch that changes it.
const KEYS_FLAG: &[u8] = b"keys";

/// The key of an operator's flag `name` (markers and counters, beside its state).
fn flag_key(name: &[u8]) -> Vec<u8> {
    let mut k = vec![b'f'];
    k.extend_from_slice(name);
    k
}

fn prefix(tag: u8, p: usize) -> [u8; 3] {
    let p = (p as u16).to_be_bytes();
    [tag, p[0], p[1]]
}

impl<K: StateKey, S: StateValue> KeyedStore<K, S> {
    /// `partitions` partitions caching up to `capacity` keys in all; `timed` keeps the timer
    /// index.
    pub(crate) fn new(id: usize, tag: u8, partitions: usize, capacity: usize, timed: bool) -> Self {
        KeyedStore {
            id,
            tag,
            timed,
            parts: (0..partitions.max(1))
                .map(|_| {
                    Mutex::new(Part {
                        cache: HashMap::with_hasher(ahash::RandomState::with_seeds(7, 11, 13, 17)),
                        stale: Vec::new(),
                        tick: 0,
                        complete: None,
                    })
                })
                .collect(),
            capacity: (capacity / partitions.max(1)).max(1024),
            what: format!("the state of operator #{id}"),
            keys: AtomicI64::new(UNKNOWN),
        }
    }

    pub(crate) fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Whether `key` -> `value` (`None`: a delete) is one of this store's entries, as a
    /// replica hands it back: a state entry of a `K` and a `S`, a timer, or a flag.
    pub(crate) fn check(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), String> {
        match key.first() {
            Some(t) if *t == self.tag => {
                let k = key.get(3..).ok_or("the key is cut short")?;
                check_decodes::<K>(k).map_err(|e| format!("the key is {e}"))?;
                if let Some(v) = value {
                    let s = v.get(8..).ok_or("the value is cut short")?;
                    check_decodes::<S>(s).map_err(|e| format!("the value is {e}"))?;
                }
                Ok(())
            }
            Some(&TAG_TIMER) if self.timed => {
                let k = key.get(11..).ok_or("the timer key is cut short")?;
                check_decodes::<K>(k).map_err(|e| format!("the timer's key is {e}"))?;
                match value {
                    Some(v) if !v.is_empty() => Err("a timer entry has a value".into()),
                    _ => Ok(()),
                }
            }
            Some(b'f') => Ok(()),
            Some(t) => Err(format!(
                "no entry of this operator starts with byte {t:#04x}"
            )),
            None => Err("the key is empty".into()),
        }
    }

    /// The timer entry of a restored change (see [`Durable::derived`](super::Durable::derived)):
    /// a state entry's timer at the time its value holds (timed state only; the change has
    /// passed [`check`](Self::check)).
    pub(crate) fn derived(&self, key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
        if !self.timed || key.first() != Some(&self.tag) {
            return false;
        }
        // The value's time is a plain big-endian i64 (`time_of_value`); the timer's sorts.
        let Some(at) = value
            .and_then(|v| v.get(..8))
            .and_then(|t| t.try_into().ok())
            .map(i64::from_be_bytes)
        else {
            return false;
        };
        let (Some(partition), Some(k)) = (key.get(1..3), key.get(3..)) else {
            return false;
        };
        out.reserve(11 + k.len());
        out.push(TAG_TIMER);
        out.extend_from_slice(partition);
        out.extend_from_slice(&time_bytes(at));
        out.extend_from_slice(k);
        true
    }

    /// Whether `key` is a timer entry: derived from the state entries, never restored as such
    /// (earlier versions logged them).
    pub(crate) fn rebuilds(&self, key: &[u8]) -> bool {
        key.first() == Some(&TAG_TIMER)
    }

    /// Partition `p`'s state, for one batch's work on it.
    pub(crate) fn part<'a>(&'a self, store: &'a Store, p: usize) -> Result<PartState<'a, K, S>> {
        let mut guard = self.parts[p].lock().unwrap_or_else(|e| e.into_inner());
        guard.tick = guard.tick.wrapping_add(1);
        // A new checkpoint holds no state yet, so the cache sees all of it until it evicts.
        guard
            .complete
            .get_or_insert_with(|| store.recovery().is_none_or(|r| !r.completed));
        Ok(PartState {
            store,
            cf: store.cf(self.id)?,
            p,
            tag: self.tag,
            what: &self.what,
            part: guard,
        })
    }

    /// Adds every partition's changes to `wb` (in key order, which RocksDB's memtable inserts
    /// far faster than random order) and evicts what the cache cannot keep.
    pub(crate) fn commit(&self, store: &Store, wb: &mut CommitBatch<'_>) -> Result<()> {
        let id = self.id;
        let mut added = 0i64;
        for (p, part) in self.parts.iter().enumerate() {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            let tick = part.tick;
            let mut w = Flat::default();
            let (what, tag, timed) = (self.what.as_str(), self.tag, self.timed);
            let mut kb = Vec::new();
            for (k, slot) in part.cache.iter_mut() {
                if !slot.dirty {
                    continue;
                }
                slot.dirty = false;
                kb.clear();
                encode_into(what, k, &mut kb)?;
                let old = slot.stored();
                let new = slot.value.as_ref().map(|_| slot.at);
                added += i64::from(new.is_some()) - i64::from(old.is_some());
                match &slot.value {
                    Some(v) => w.add(what, prefix(tag, p), None, &kb, Val::State(slot.at, v))?,
                    None if old.is_some() => {
                        w.add(what, prefix(tag, p), None, &kb, Val::<S>::Delete)?;
                    }
                    None => {}
                }
                // The timer index follows the key's time: out at the old one, in at the new.
                if timed && old != new {
                    if let Some(old) = old {
                        w.add(what, prefix(TAG_TIMER, p), Some(old), &kb, Val::<S>::Delete)?;
                    }
                    if let Some(new) = new {
                        w.add(what, prefix(TAG_TIMER, p), Some(new), &kb, Val::<S>::Empty)?;
                    }
                }
                slot.stored_at = new.unwrap_or(ABSENT);
            }
            w.sort();
            for e in &w.entries {
                let key = w.key(e);
                // Timers are derived from the state entries: local only (module doc).
                match (w.value(e), key.first() == Some(&TAG_TIMER)) {
                    (Some(v), false) => wb.put(id, key, v)?,
                    (None, false) => wb.delete(id, key)?,
                    (Some(v), true) => wb.put_derived(id, key, v)?,
                    (None, true) => wb.delete_derived(id, key)?,
                }
            }
            drop(w);
            for stale in std::mem::take(&mut part.stale) {
                wb.delete_derived(id, &stale)?;
            }
            if part.cache.len() > self.capacity {
                // Keys this batch did not use go first, then any, down to three quarters.
                part.cache.retain(|_, s| s.used == tick);
                let target = self.capacity * 3 / 4;
                if part.cache.len() > target {
                    let mut excess = part.cache.len() - target;
                    part.cache.retain(|_, _| {
                        if excess > 0 {
                            excess -= 1;
                            false
                        } else {
                            true
                        }
                    });
                }
                part.cache.shrink_to(self.capacity);
                part.complete = Some(false);
            }
        }
        if added != 0 {
            let keys = self.keys(store)? + added;
            self.keys.store(keys, Ordering::Relaxed);
            wb.put(id, &flag_key(KEYS_FLAG), &keys.to_be_bytes())?;
        }
        Ok(())
    }

    /// The number of keys holding state as of the last commit: counted as batches commit, and
    /// committed with them (a checkpoint written without the count is counted once, by a scan).
    pub(crate) fn keys(&self, store: &Store) -> Result<i64> {
        let known = self.keys.load(Ordering::Relaxed);
        if known != UNKNOWN {
            return Ok(known);
        }
        let cf = store.cf(self.id)?;
        let stored = store
            .db()
            .get_pinned_cf(cf, flag_key(KEYS_FLAG))
            .map_err(|e| store.error(e))?
            .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(i64::from_be_bytes);
        let n = match stored {
            Some(n) => n,
            None if store.recovery().is_none_or(|r| !r.completed) => 0,
            None => {
                let mut it = store.db().raw_iterator_cf(cf);
                it.seek([self.tag]);
                let mut n = 0;
                while it.key().is_some_and(|k| k.first() == Some(&self.tag)) {
                    n += 1;
                    it.next();
                }
                it.status().map_err(|e| store.error(e))?;
                n
            }
        };
        self.keys.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// The size of the state: its keys, and the bytes of its column family.
    pub(crate) fn size(
        &self,
        store: &Store,
        operator: String,
    ) -> Option<crate::metrics::StateInfo> {
        let keys = self.keys(store).ok()?;
        let cf = store.cf(self.id).ok()?;
        let prop = |name: &str| {
            store
                .db()
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        Some(crate::metrics::StateInfo {
            operator,
            keys: keys.max(0) as u64,
            bytes: prop("rocksdb.estimate-live-data-size")
                + prop("rocksdb.cur-size-all-mem-tables"),
        })
    }

    /// Drops the uncommitted changes (they are read again from RocksDB when needed).
    pub(crate) fn abort(&self) {
        // The count may include changes that were not committed: read it again.
        self.keys.store(UNKNOWN, Ordering::Relaxed);
        for part in &self.parts {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            let before = part.cache.len();
            part.cache.retain(|_, s| !s.dirty);
            if part.cache.len() != before {
                part.complete = Some(false);
            }
        }
    }

    /// A marker of the operator (e.g. "initial state merged"), committed with `wb`.
    pub(crate) fn put_flag(&self, wb: &mut CommitBatch<'_>, name: &[u8]) -> Result<()> {
        wb.put(self.id, &flag_key(name), &[])
    }

    pub(crate) fn has_flag(&self, store: &Store, name: &[u8]) -> Result<bool> {
        let k = flag_key(name);
        Ok(store
            .db()
            .get_pinned_cf(store.cf(self.id)?, k)
            .map_err(|e| store.error(e))?
            .is_some())
    }
}

/// One partition's state during a batch.
pub(crate) struct PartState<'a, K, S> {
    store: &'a Store,
    cf: &'a ColumnFamily,
    p: usize,
    tag: u8,
    what: &'a str,
    part: MutexGuard<'a, Part<K, S>>,
}

impl<K: StateKey, S: StateValue> PartState<'_, K, S> {
    fn state_key(&self, k: &K) -> Result<Vec<u8>> {
        let mut key = prefix(self.tag, self.p).to_vec();
        key.extend(encode(self.what, k)?);
        Ok(key)
    }

    fn slot_from(&self, found: Option<&[u8]>) -> Result<Slot<S>> {
        let tick = self.part.tick;
        Ok(match found {
            Some(bytes) => {
                let at = time_of_value(self.what, bytes)?;
                Slot {
                    value: Some(decode(self.what, &bytes[8..])?),
                    at,
                    stored_at: at,
                    used: tick,
                    dirty: false,
                }
            }
            None => Slot {
                value: None,
                at: 0,
                stored_at: ABSENT,
                used: tick,
                dirty: false,
            },
        })
    }

    fn is_complete(&self) -> bool {
        self.part.complete == Some(true)
    }

    /// Makes sure `k` is in the cache: a point lookup on a miss (none when the cache holds
    /// every key).
    fn load(&mut self, k: &K) -> Result<&mut Slot<S>> {
        let tick = self.part.tick;
        if !self.part.cache.contains_key(k) {
            let slot = if self.is_complete() {
                self.slot_from(None)?
            } else {
                let key = self.state_key(k)?;
                let found = self
                    .store
                    .db()
                    .get_pinned_cf(self.cf, &key)
                    .map_err(|e| self.store.error(e))?;
                self.slot_from(found.as_deref())?
            };
            self.part.cache.insert(k.clone(), slot);
        }
        let slot = self
            .part
            .cache
            .get_mut(k)
            .expect("a loaded key is in the cache");
        slot.used = tick;
        Ok(slot)
    }

    /// Loads the keys of a batch that are not cached in one sorted multi-get, far cheaper than
    /// a point lookup each.
    pub(crate) fn prefetch<'k>(&mut self, keys: impl Iterator<Item = &'k K>) -> Result<()>
    where
        K: 'k,
    {
        if self.is_complete() {
            return Ok(());
        }
        let mut keys_flat = Flat::default();
        let mut missing: Vec<&K> = Vec::new();
        let mut seen: hashbrown::HashSet<&K, ahash::RandomState> = Default::default();
        for k in keys {
            if !self.part.cache.contains_key(k) && seen.insert(k) {
                let start = keys_flat.begin();
                keys_flat.bytes.extend_from_slice(&prefix(self.tag, self.p));
                encode_into(self.what, k, &mut keys_flat.bytes)?;
                keys_flat.end_key(start);
                // The entry's value length field carries the key's index in `missing`.
                keys_flat.entries.last_mut().expect("just added").2 = missing.len() as u32;
                missing.push(k);
            }
        }
        drop(seen);
        if missing.is_empty() {
            return Ok(());
        }
        keys_flat.sort();
        // In chunks, so that the pinned values of a huge batch are not all held at once.
        for chunk in keys_flat.entries.chunks(4096) {
            let found = self.store.db().batched_multi_get_cf(
                self.cf,
                chunk.iter().map(|e| keys_flat.key(e)),
                true,
            );
            for (e, r) in chunk.iter().zip(found) {
                let v = r.map_err(|e| self.store.error(e))?;
                let slot = self.slot_from(v.as_deref())?;
                self.part.cache.insert(missing[e.2 as usize].clone(), slot);
            }
        }
        Ok(())
    }

    /// The key's state and the time of its last update.
    pub(crate) fn get(&mut self, k: &K) -> Result<Option<(&S, i64)>> {
        let slot = self.load(k)?;
        let at = slot.at;
        Ok(slot.value.as_ref().map(|v| (v, at)))
    }

    /// Sets the key's state, updated at `at`.
    pub(crate) fn put(&mut self, k: K, v: S, at: i64) -> Result<()> {
        let slot = self.load(&k)?;
        slot.value = Some(v);
        slot.at = at;
        slot.dirty = true;
        Ok(())
    }

    /// Removes the key's state; returns what it was.
    pub(crate) fn remove(&mut self, k: &K) -> Result<Option<(S, i64)>> {
        let slot = self.load(k)?;
        let old = slot.value.take().map(|v| (v, slot.at));
        if old.is_some() {
            slot.dirty = true;
        }
        Ok(old)
    }

    /// The read-modify-write of `k`'s state by each of its records in a row, with one cache
    /// lookup: `f` is called per value, in order, takes the state out (as the previous call left
    /// it) and says what became of it, and whether to go on; a change is dated `at`.
    pub(crate) fn update_each<V>(
        &mut self,
        k: &K,
        at: i64,
        values: impl IntoIterator<Item = V>,
        mut f: impl FnMut(Option<S>, V) -> (Change<S>, bool),
    ) -> Result<()> {
        let slot = self.load(k)?;
        for v in values {
            let (change, go_on) = f(slot.value.take(), v);
            match change {
                Change::Keep(v) => slot.value = v,
                Change::Put(v) => {
                    slot.value = Some(v);
                    slot.at = at;
                    slot.dirty = true;
                }
                Change::Remove => slot.dirty = true,
            }
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// Keys whose last update is strictly before `threshold` (timed state only): one range scan
    /// of the timer index, each hit checked against the key's current time. A hit whose time is
    /// not the key's stored time is stale (module doc): deleted with the next commit.
    pub(crate) fn due(&mut self, threshold: i64) -> Result<Vec<K>> {
        let start = prefix(TAG_TIMER, self.p).to_vec();
        let mut end = start.clone();
        end.extend_from_slice(&time_bytes(threshold));
        let mut it = self.store.db().raw_iterator_cf(self.cf);
        it.seek(&start);
        let mut hits = Vec::new();
        while let Some(k) = it.key() {
            if k >= end.as_slice() {
                break;
            }
            let at = time_from_bytes(&k[3..]).ok_or_else(|| self.corrupt("timer key"))?;
            hits.push((at, decode::<K>(self.what, &k[11..])?, k.to_vec()));
            it.next();
        }
        it.status().map_err(|e| self.store.error(e))?;
        let mut due = Vec::with_capacity(hits.len());
        for (at, k, timer) in hits {
            let slot = self.load(&k)?;
            if slot.stored() != Some(at) {
                self.part.stale.push(timer);
                continue;
            }
            if slot.value.is_some() && slot.at == at {
                due.push(k);
            }
        }
        Ok(due)
    }

    /// Every key with state, with its state and time (the cache's view over RocksDB's; the
    /// cache alone while it holds every key).
    pub(crate) fn scan(&mut self) -> Result<Vec<(K, S, i64)>> {
        if self.is_complete() {
            return Ok(self
                .part
                .cache
                .iter()
                .filter_map(|(k, slot)| {
                    slot.value.as_ref().map(|s| (k.clone(), s.clone(), slot.at))
                })
                .collect());
        }
        let start = prefix(self.tag, self.p);
        let mut it = self.store.db().raw_iterator_cf(self.cf);
        it.seek(start);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&start) {
                break;
            }
            let key: K = decode(self.what, &k[3..])?;
            match self.part.cache.get(&key) {
                Some(slot) => {
                    if let Some(s) = &slot.value {
                        out.push((key, s.clone(), slot.at));
                    }
                }
                None => {
                    let at = time_of_value(self.what, v)?;
                    out.push((key, decode(self.what, &v[8..])?, at));
                }
            }
            it.next();
        }
        it.status().map_err(|e| self.store.error(e))?;
        for (k, slot) in self.part.cache.iter() {
            if slot.stored().is_none()
                && let Some(s) = &slot.value
            {
                out.push((k.clone(), s.clone(), slot.at));
            }
        }
        Ok(out)
    }

    fn corrupt(&self, what: &str) -> crate::error::Error {
        CheckpointError::Corrupt {
            file: self.store.dir().join("db"),
            reason: format!("a malformed {what} in {}", self.what),
        }
        .into()
    }
}

fn time_of_value(what: &str, bytes: &[u8]) -> Result<i64> {
    match bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
        Some(a) => Ok(i64::from_be_bytes(a)),
        None => Err(CheckpointError::Encode {
            what: what.to_string(),
            message: format!("a stored value of {} bytes has no time", bytes.len()),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Durable, Shape, temporary_dir};
    use super::*;
    use crate::time::Time;

    /// A timed store as the only stateful operator of a pipeline.
    struct Op(KeyedStore<String, i32>);

    impl Durable for Op {
        fn describe(&self) -> String {
            "timed".into()
        }
        fn commit(&self, store: &Store, _: Time, wb: &mut CommitBatch<'_>) -> Result<()> {
            self.0.commit(store, wb)
        }
        fn abort(&self, _: Time) {}
        fn check(&self, key: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String> {
            self.0.check(key, value)
        }
        fn derived(&self, key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
            self.0.derived(key, value, out)
        }
    }

    fn timers(store: &Store) -> Vec<(i64, String)> {
        entries(store, TAG_TIMER)
            .into_iter()
            .map(|(k, _)| {
                (
                    time_from_bytes(&k[3..11]).unwrap(),
                    decode::<String>("key", &k[11..]).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_restore_derives_timers_and_the_stale_ones_go_with_the_next_commit() {
        let dir = temporary_dir();
        let shape = Shape {
            batch_ms: 1000,
            inputs: Vec::new(),
            operators: vec!["timed".into()],
        };
        let store = Store::open(&dir, &shape, false, false, false).unwrap();
        let op = Arc::new(Op(KeyedStore::new(0, TAG_STATE, 1, 1024, true)));
        let state = |k: &str, at: i64, v: i32| {
            let mut key = prefix(TAG_STATE, 0).to_vec();
            key.extend(encode("key", &k.to_string()).unwrap());
            let mut value = at.to_be_bytes().to_vec();
            value.extend(encode("value", &v).unwrap());
            (key, value)
        };
        // A replica's changes: `k` at 2 s, then at 5 s; `gone` at 1 s, then deleted.
        let mut r = store.restore(vec![op.clone() as Arc<dyn Durable>]);
        // Through the memtable, as onto a local copy (onto an empty one, a restore writes
        // table files holding only the last change of each key: no stale timer).
        r.bulk_spill = 0;
        for (k, at, v) in [("k", 2000, 1), ("k", 5000, 2), ("gone", 1000, 1)] {
            let (key, value) = state(k, at, v);
            r.apply_parts(0, &key, Some(&value)).unwrap();
        }
        r.apply_parts(0, &state("gone", 0, 0).0, None).unwrap();
        assert_eq!(r.applied(), 4, "changes, not the timers derived from them");
        r.batch(
            Time::from_millis(5000),
            Time::from_millis(0),
            &[],
            &[],
            None,
        )
        .unwrap();
        drop(r);
        assert_eq!(
            timers(&store),
            [
                (1000, "gone".into()),
                (2000, "k".into()),
                (5000, "k".into())
            ]
        );
        // At 6 s with a 3 s timeout nothing is due: `k` was updated at 5 s.
        assert!(op.0.part(&store, 0).unwrap().due(3000).unwrap().is_empty());
        let t = Time::from_millis(6000);
        let durables = [op.clone() as Arc<dyn Durable>];
        store
            .commit(t, Time::from_millis(0), &durables, &[], 0, t, &[], None)
            .unwrap();
        assert_eq!(timers(&store), [(5000, "k".into())]);
        assert_eq!(
            op.0.part(&store, 0).unwrap().due(5001).unwrap(),
            ["k".to_string()]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Operator 0's entries of one tag: (key, value).
    fn entries(store: &Store, tag: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut it = store.db().raw_iterator_cf(store.cf(0).unwrap());
        it.seek([tag]);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if k[0] != tag {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        out
    }

    #[test]
    fn a_restore_onto_an_empty_copy_loads_table_files_with_the_state_of_the_log() {
        let shape = Shape {
            batch_ms: 1000,
            inputs: Vec::new(),
            operators: vec!["timed".into()],
        };
        // A log with overwrites and deletes: 400 changes of 25 keys.
        let mut changes = Vec::new();
        let mut live: std::collections::BTreeMap<String, (i64, i32)> = Default::default();
        let mut x: u64 = 7;
        for i in 0..400i64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = format!("user{}", (x >> 33) % 25);
            let mut key = prefix(TAG_STATE, 0).to_vec();
            key.extend(encode("key", &k).unwrap());
            if (x >> 20).is_multiple_of(5) {
                live.remove(&k);
                changes.push((key, None));
            } else {
                let (at, v) = (1000 * i, i as i32);
                live.insert(k, (at, v));
                let mut value = at.to_be_bytes().to_vec();
                value.extend(encode("value", &v).unwrap());
                changes.push((key, Some(value)));
            }
        }
        // Through the memtable; as one table file; as a table file every few changes.
        let mut restored = Vec::new();
        for spill in [0, super::super::bulk::SPILL_BYTES, 64] {
            let dir = temporary_dir();
            let store = Store::open(&dir, &shape, false, false, false).unwrap();
            let op = Arc::new(Op(KeyedStore::new(0, TAG_STATE, 1, 1024, true)));
            let mut r = store.restore(vec![op.clone() as Arc<dyn Durable>]);
            r.bulk_spill = spill;
            for (key, value) in &changes {
                r.apply_parts(0, key, value.as_deref()).unwrap();
            }
            assert_eq!(r.applied(), 400);
            r.batch(
                Time::from_millis(400_000),
                Time::from_millis(0),
                &[],
                &[],
                None,
            )
            .unwrap();
            drop(r);
            let memtable = store
                .db()
                .property_int_value_cf(store.cf(0).unwrap(), "rocksdb.num-entries-active-mem-table")
                .unwrap()
                .unwrap();
            assert_eq!(
                memtable == 0,
                spill > 0,
                "spill {spill}: {memtable} memtable entries"
            );
            let state = entries(&store, TAG_STATE);
            let decoded: std::collections::BTreeMap<String, (i64, i32)> = state
                .iter()
                .map(|(k, v)| {
                    (
                        decode::<String>("key", &k[3..]).unwrap(),
                        (
                            time_of_value("v", v).unwrap(),
                            decode::<i32>("value", &v[8..]).unwrap(),
                        ),
                    )
                })
                .collect();
            assert_eq!(decoded, live, "spill {spill}");
            // Each live key's timer is there; a single table file holds no stale one.
            let current: Vec<(i64, String)> = {
                let mut t: Vec<_> = live.iter().map(|(k, (at, _))| (*at, k.clone())).collect();
                t.sort();
                t
            };
            let timers = timers(&store);
            assert!(current.iter().all(|t| timers.contains(t)), "spill {spill}");
            if spill == super::super::bulk::SPILL_BYTES {
                assert_eq!(timers, current);
            }
            // What is due is the same however the state was written.
            let due = op.0.part(&store, 0).unwrap().due(1_000_000).unwrap();
            restored.push((state, due));
            let leftover: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
                .collect();
            assert!(leftover.is_empty(), "{leftover:?}");
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert_eq!(restored[0], restored[1]);
        assert_eq!(restored[0], restored[2]);
        assert!(!restored[0].1.is_empty());
    }
}
