//! Per-key state of one operator in its RocksDB column family, behind a bounded write-back cache.
//!
//! Keys (all big-endian, so that RocksDB's byte order is the order wanted):
//! - `<tag> <partition u16> <key>` -> `<time i64> <value>`: a key's state and the batch time of
//!   its last update (`tag` is `s` for operator state; windows keep their running aggregate
//!   under it too);
//! - `t <partition u16> <time> <key>` -> empty: the timer index of timed state, in time order,
//!   so that the keys due at a batch are one range scan, never a scan of all keys.
//!
//! A batch reads through the cache (a miss is one point lookup) and changes only the cache; the
//! changes reach RocksDB in the batch's atomic commit, or are dropped if the batch fails. After
//! the commit, keys not used by the batch are evicted once the cache is over its capacity, so
//! the state can be far larger than memory.

use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;
use rocksdb::{ColumnFamily, WriteBatch};

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

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| {
        CheckpointError::Encode {
            what: what.to_string(),
            message: format!("{e} (was the type changed since the checkpoint was written?)"),
        }
        .into()
    })
}

/// A cached key.
struct Slot<S> {
    /// `None`: the key has no state (removed this batch, or known absent).
    value: Option<S>,
    /// Batch time of the last update, in ms.
    at: i64,
    /// Changed by the current batch.
    dirty: bool,
    /// `Some(at)` when RocksDB holds the key, with that time.
    stored_at: Option<i64>,
    /// The batch that last used it (for eviction).
    used: u64,
}

struct Part<K, S> {
    cache: HashMap<K, Slot<S>, ahash::RandomState>,
    tick: u64,
}

/// The keyed state of one operator.
pub(crate) struct KeyedStore<K, S> {
    pub(crate) id: usize,
    tag: u8,
    timed: bool,
    parts: Vec<Mutex<Part<K, S>>>,
    capacity: usize,
    what: String,
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
                        tick: 0,
                    })
                })
                .collect(),
            capacity: (capacity / partitions.max(1)).max(1024),
            what: format!("the state of operator #{id}"),
        }
    }

    pub(crate) fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Partition `p`'s state, for one batch's work on it.
    pub(crate) fn part<'a>(&'a self, store: &'a Store, p: usize) -> Result<PartState<'a, K, S>> {
        let mut guard = self.parts[p].lock().unwrap_or_else(|e| e.into_inner());
        guard.tick += 1;
        Ok(PartState {
            store,
            cf: store.cf(self.id)?,
            p,
            tag: self.tag,
            what: &self.what,
            part: guard,
        })
    }

    /// Adds every partition's changes to `wb` and evicts what the cache cannot keep.
    pub(crate) fn commit(&self, store: &Store, wb: &mut WriteBatch) -> Result<()> {
        let cf = store.cf(self.id)?;
        for (p, part) in self.parts.iter().enumerate() {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            let tick = part.tick;
            let mut key_buf = Vec::new();
            for (k, slot) in part.cache.iter_mut() {
                if !slot.dirty {
                    continue;
                }
                let kb = encode(&self.what, k)?;
                match &slot.value {
                    Some(v) => {
                        let mut val = slot.at.to_be_bytes().to_vec();
                        val.extend(encode(&self.what, v)?);
                        key_buf.clear();
                        key_buf.extend_from_slice(&prefix(self.tag, p));
                        key_buf.extend_from_slice(&kb);
                        wb.put_cf(cf, &key_buf, val);
                        if self.timed && slot.stored_at != Some(slot.at) {
                            if let Some(old) = slot.stored_at {
                                wb.delete_cf(cf, timer_key(p, old, &kb));
                            }
                            wb.put_cf(cf, timer_key(p, slot.at, &kb), []);
                        }
                        slot.stored_at = Some(slot.at);
                    }
                    None => {
                        if let Some(old) = slot.stored_at {
                            key_buf.clear();
                            key_buf.extend_from_slice(&prefix(self.tag, p));
                            key_buf.extend_from_slice(&kb);
                            wb.delete_cf(cf, &key_buf);
                            if self.timed {
                                wb.delete_cf(cf, timer_key(p, old, &kb));
                            }
                        }
                        slot.stored_at = None;
                    }
                }
                slot.dirty = false;
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
            }
        }
        Ok(())
    }

    /// Drops the uncommitted changes (they are read again from RocksDB when needed).
    pub(crate) fn abort(&self) {
        for part in &self.parts {
            part.lock()
                .unwrap_or_else(|e| e.into_inner())
                .cache
                .retain(|_, s| !s.dirty);
        }
    }

    /// A marker of the operator (e.g. "initial state merged"), committed with `wb`.
    pub(crate) fn put_flag(&self, store: &Store, wb: &mut WriteBatch, name: &[u8]) -> Result<()> {
        let mut k = vec![b'f'];
        k.extend_from_slice(name);
        wb.put_cf(store.cf(self.id)?, k, []);
        Ok(())
    }

    pub(crate) fn has_flag(&self, store: &Store, name: &[u8]) -> Result<bool> {
        let mut k = vec![b'f'];
        k.extend_from_slice(name);
        Ok(store
            .db()
            .get_pinned_cf(store.cf(self.id)?, k)
            .map_err(|e| store.error(e))?
            .is_some())
    }
}

fn timer_key(p: usize, at: i64, kb: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(11 + kb.len());
    k.extend_from_slice(&prefix(TAG_TIMER, p));
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(kb);
    k
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
    fn load(&mut self, k: &K) -> Result<()> {
        let tick = self.part.tick;
        if let Some(slot) = self.part.cache.get_mut(k) {
            slot.used = tick;
            return Ok(());
        }
        let mut key = prefix(self.tag, self.p).to_vec();
        key.extend(encode(self.what, k)?);
        let found = self
            .store
            .db()
            .get_pinned_cf(self.cf, &key)
            .map_err(|e| self.store.error(e))?;
        let slot = match found {
            Some(bytes) => {
                let at = time_of_value(self.what, &bytes)?;
                Slot {
                    value: Some(decode(self.what, &bytes[8..])?),
                    at,
                    dirty: false,
                    stored_at: Some(at),
                    used: tick,
                }
            }
            None => Slot {
                value: None,
                at: 0,
                dirty: false,
                stored_at: None,
                used: tick,
            },
        };
        self.part.cache.insert(k.clone(), slot);
        Ok(())
    }

    /// The key's state and the time of its last update.
    pub(crate) fn get(&mut self, k: &K) -> Result<Option<(&S, i64)>> {
        self.load(k)?;
        let slot = self
            .part
            .cache
            .get(k)
            .expect("a loaded key is in the cache");
        Ok(slot.value.as_ref().map(|v| (v, slot.at)))
    }

    /// Sets the key's state, updated at `at`.
    pub(crate) fn put(&mut self, k: K, v: S, at: i64) -> Result<()> {
        self.load(&k)?;
        let tick = self.part.tick;
        let slot = self
            .part
            .cache
            .get_mut(&k)
            .expect("a loaded key is in the cache");
        slot.value = Some(v);
        slot.at = at;
        slot.dirty = true;
        slot.used = tick;
        Ok(())
    }

    /// Removes the key's state; returns what it was.
    pub(crate) fn remove(&mut self, k: &K) -> Result<Option<(S, i64)>> {
        self.load(k)?;
        let slot = self
            .part
            .cache
            .get_mut(k)
            .expect("a loaded key is in the cache");
        let old = slot.value.take().map(|v| (v, slot.at));
        if old.is_some() {
            slot.dirty = true;
        }
        Ok(old)
    }

    /// Keys whose last update is strictly before `threshold` (timed state only): one range scan
    /// of the timer index, each hit checked against the key's current time.
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
            hits.push((at, decode::<K>(self.what, &k[11..])?));
            it.next();
        }
        it.status().map_err(|e| self.store.error(e))?;
        let mut due = Vec::with_capacity(hits.len());
        for (at, k) in hits {
            if let Some((_, now)) = self.get(&k)?
                && now == at
            {
                due.push(k);
            }
        }
        Ok(due)
    }

    /// Every key with state, with its state and time (the cache's view over RocksDB's).
    pub(crate) fn scan(&mut self) -> Result<Vec<(K, S, i64)>> {
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
            if slot.stored_at.is_none()
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
