//! Replicas of a checkpoint: what lets a task's state move to another machine. A
//! [`Replicator`] sees every batch's state changes before the batch commits locally (a Kafka
//! changelog producer, in stream-kafka's scale-out), and [`CheckpointRestore`] writes a replica's
//! records back into a checkpoint before the context starts (a task restored from its
//! changelog, or a local copy brought up to date with the changelog's tail).
//!
//! Changes are logged as the operators write them: puts and deletes of keys of an operator's
//! column family; a range delete (expired window panes) is logged as a delete of each key in
//! the range, since a compacted topic has no range deletes. What an operator derives from its
//! state (the timer index of timed state) is not logged: a restore writes it beside each
//! change it applies ([`Durable::derived`](super::Durable::derived)), so that a replica holds one
//! record per key, and skips the timer records that earlier versions logged. Onto an operator's
//! empty column family the changes are loaded as sorted table files instead (see
//! [`super::bulk`]); onto a local copy they are written as the operators write theirs.

use rocksdb::WriteBatch;

use super::{KEY_LAST, KEY_REPLICA, KEY_ZERO, META, Store, WAL, sink_key, wal_key};
use crate::error::{CheckpointError, Result};
use crate::time::Time;

/// One change of a stateful operator's state: its key in the operator's store, and the new
/// value (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The operator's number in the pipeline (creation order).
    pub operator: usize,
    /// The key, as the operator lays it out (partition, then the encoded key).
    pub key: Vec<u8>,
    /// The value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// What a batch commits, as a replicator sees it.
#[derive(Debug)]
pub struct CommitRecord<'a> {
    /// The batch time.
    pub time: Time,
    /// The context's zero time.
    pub zero: Time,
    /// Every state change of the batch, in the order the operators made them.
    pub changes: &'a [StateChange],
    /// Each replayable input's position after the batch, by input number.
    pub inputs: &'a [(usize, Vec<u8>)],
    /// Each sink's position after the batch, by sink number.
    pub sinks: &'a [(usize, Vec<u8>)],
}

/// Receives each batch's state changes before the batch commits to the local checkpoint
/// (see [`StreamingContext::set_replicator`](crate::StreamingContext::set_replicator)).
pub trait Replicator: Send + Sync {
    /// Makes the batch's changes durable elsewhere. An error fails the batch: its state changes
    /// are discarded, as for any failed batch. What it returns (e.g. the replica's offsets after
    /// this batch) is committed with the batch and handed back at the next restore
    /// ([`CheckpointRestore::mark`]).
    fn replicate(&self, batch: &CommitRecord<'_>) -> Result<Option<Vec<u8>>>;

    /// Makes the inputs' positions after capturing the batch of `time` durable elsewhere,
    /// before the batch is processed (as the checkpoint writes them ahead locally), so that a
    /// restore elsewhere replays that batch with the same records. An error fails the batch.
    /// The default keeps nothing: a restored task then cuts the batches after its last
    /// completed one afresh, which is right unless other tasks may have seen a batch in flight
    /// (exchanges).
    fn write_ahead(&self, time: Time, positions: &[(usize, Vec<u8>)]) -> Result<()> {
        let _ = (time, positions);
        Ok(())
    }
}

/// The batch's writes to the checkpoint: a RocksDB write batch, and the same changes logged
/// for a replicator when the context has one.
pub(crate) struct CommitBatch<'a> {
    pub(super) store: &'a Store,
    pub(super) wb: WriteBatch,
    pub(super) log: Option<Vec<StateChange>>,
}

impl CommitBatch<'_> {
    /// Sets `key` of operator `op`.
    pub(crate) fn put(&mut self, op: usize, key: &[u8], value: &[u8]) -> Result<()> {
        self.wb.put_cf(self.store.cf(op)?, key, value);
        if let Some(log) = &mut self.log {
            log.push(StateChange {
                operator: op,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            });
        }
        Ok(())
    }

    /// Sets `key` of operator `op` in the local checkpoint only: an entry derived from the
    /// operator's state, which a restore derives again ([`Durable::derived`](super::Durable::derived)).
    pub(crate) fn put_derived(&mut self, op: usize, key: &[u8], value: &[u8]) -> Result<()> {
        self.wb.put_cf(self.store.cf(op)?, key, value);
        Ok(())
    }

    /// Deletes `key` of operator `op` in the local checkpoint only (see
    /// [`put_derived`](Self::put_derived)).
    pub(crate) fn delete_derived(&mut self, op: usize, key: &[u8]) -> Result<()> {
        self.wb.delete_cf(self.store.cf(op)?, key);
        Ok(())
    }

    /// Deletes `key` of operator `op`.
    pub(crate) fn delete(&mut self, op: usize, key: &[u8]) -> Result<()> {
        self.wb.delete_cf(self.store.cf(op)?, key);
        if let Some(log) = &mut self.log {
            log.push(StateChange {
                operator: op,
                key: key.to_vec(),
                value: None,
            });
        }
        Ok(())
    }

    /// Deletes the keys `[from, to)` of operator `op`.
    pub(crate) fn delete_range(&mut self, op: usize, from: &[u8], to: &[u8]) -> Result<()> {
        let cf = self.store.cf(op)?;
        if let Some(log) = &mut self.log {
            let mut it = self.store.db().raw_iterator_cf(cf);
            it.seek(from);
            while let Some(k) = it.key() {
                if k >= to {
                    break;
                }
                log.push(StateChange {
                    operator: op,
                    key: k.to_vec(),
                    value: None,
                });
                it.next();
            }
            it.status().map_err(|e| self.store.error(e))?;
        }
        self.wb.delete_range_cf(cf, from, to);
        Ok(())
    }
}

/// Writes a replica's records into a checkpoint before its context starts (see
/// [`StreamingContext::restore_checkpoint`](crate::StreamingContext::restore_checkpoint)).
pub struct CheckpointRestore<'a> {
    pub(super) store: &'a Store,
    /// Each stateful operator's column family, once looked up.
    pub(super) cfs: Vec<Option<&'a rocksdb::ColumnFamily>>,
    pub(super) wb: WriteBatch,
    pub(super) pending: usize,
    pub(super) operators: Vec<std::sync::Arc<dyn super::Durable>>,
    pub(super) applied: u64,
    /// Entries derived from the changes of the chunk being written (operator, key): written
    /// after them, sorted, as one run (RocksDB's memtable inserts a sorted run faster than
    /// keys alternating between two ranges).
    pub(super) derived: Vec<(usize, Vec<u8>)>,
    /// How each operator's changes are written, decided at its first change.
    pub(super) loads: Vec<Load>,
    /// Bytes a bulk load buffers before writing a table file (0: no bulk loads).
    pub(super) bulk_spill: usize,
}

/// How a restore writes an operator's changes.
pub(super) enum Load {
    /// Not decided yet: the operator had no change so far.
    Undecided,
    /// Through write batches and the memtable: the column family held state already (a
    /// local copy brought up to date), whose keys the changes overwrite.
    Writes,
    /// As table files: the column family was empty (see [`super::bulk`]).
    Bulk(super::bulk::Bulk),
}

impl std::fmt::Debug for CheckpointRestore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointRestore")
            .field("dir", &self.store.dir())
            .field("applied", &self.applied)
            .finish()
    }
}

/// Changes written per RocksDB write while restoring.
const RESTORE_CHUNK: usize = 16_384;

impl CheckpointRestore<'_> {
    /// How many stateful operators the pipeline has (operator numbers are `0..operators()`).
    pub fn operators(&self) -> usize {
        self.operators.len()
    }

    /// The replica's mark committed with the last batch of this checkpoint (what the
    /// replicator returned then), if any.
    pub fn mark(&self) -> Result<Option<Vec<u8>>> {
        self.store.replica_mark()
    }

    /// The last completed batch of this checkpoint, if any.
    pub fn last_batch(&self) -> Option<Time> {
        self.store
            .recovery()
            .filter(|r| r.completed)
            .map(|r| r.last)
    }

    /// How many changes were applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one change of a restored batch, once its key and value decode as the
    /// operator's (a damaged or foreign change is an error, never state).
    pub fn apply(&mut self, change: &StateChange) -> Result<()> {
        self.apply_parts(change.operator, &change.key, change.value.as_deref())
    }

    /// [`apply`](Self::apply) from borrowed parts: stateful operator `operator`'s `key` set to
    /// `value` (`None` deletes it). Spares a restore two copies per change.
    pub fn apply_parts(&mut self, operator: usize, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let Some(op) = self.operators.get(operator) else {
            return Err(CheckpointError::Corrupt {
                file: self.store.dir().join("db"),
                reason: format!(
                    "a restored change is for stateful operator #{operator}, and the pipeline has {}",
                    self.operators.len()
                ),
            }
            .into());
        };
        if op.rebuilds(key) {
            return Ok(());
        }
        op.check(key, value)
            .map_err(|message| CheckpointError::Encode {
                what: format!(
                    "a restored change of stateful operator #{operator} ({})",
                    op.describe()
                ),
                message,
            })?;
        let cf = column_family(self.store, &mut self.cfs, operator)?;
        if self.loads.len() <= operator {
            self.loads.resize_with(operator + 1, || Load::Undecided);
        }
        if let Load::Undecided = self.loads[operator] {
            self.loads[operator] = if self.bulk_spill > 0 && self.store.is_empty(cf)? {
                Load::Bulk(super::bulk::Bulk::new(self.bulk_spill))
            } else {
                Load::Writes
            };
        }
        if let Load::Bulk(bulk) = &mut self.loads[operator] {
            self.applied += 1;
            if bulk.push(key, value) {
                bulk.write(self.store, cf, op.as_ref(), operator)?;
            }
            return Ok(());
        }
        match value {
            Some(v) => self.wb.put_cf(cf, key, v),
            None => self.wb.delete_cf(cf, key),
        }
        let mut derived = Vec::new();
        if op.derived(key, value, &mut derived) {
            self.derived.push((operator, derived));
            self.pending += 1;
        }
        self.pending += 1;
        self.applied += 1;
        if self.pending >= RESTORE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Records that the restored state is that after the batch of `time`: the inputs' and
    /// sinks' positions after it, and the replica's `mark` (offsets to resume restoring from).
    /// The context then resumes after `time`. Positions written ahead by an earlier run of
    /// this checkpoint are dropped: the batches they describe are not the restored ones.
    pub fn batch(
        &mut self,
        time: Time,
        zero: Time,
        inputs: &[(usize, Vec<u8>)],
        sinks: &[(usize, Vec<u8>)],
        mark: Option<&[u8]>,
    ) -> Result<()> {
        let meta = self
            .store
            .db()
            .cf_handle(META)
            .expect("the meta column family is opened with the database");
        self.wb.delete_range_cf(meta, [WAL], [WAL + 1]);
        for (i, p) in inputs {
            self.wb.put_cf(meta, wal_key(*i, time), p);
        }
        for (i, p) in sinks {
            self.wb.put_cf(meta, sink_key(*i), p);
        }
        match mark {
            Some(m) => self.wb.put_cf(meta, KEY_REPLICA, m),
            None => self.wb.delete_cf(meta, KEY_REPLICA),
        }
        self.wb.put_cf(meta, KEY_ZERO, zero.millis().to_be_bytes());
        self.wb.put_cf(meta, KEY_LAST, time.millis().to_be_bytes());
        self.flush()?;
        self.store.set_recovery(super::Recovery {
            zero,
            last: time,
            completed: true,
        });
        Ok(())
    }

    /// Records the inputs' positions written ahead for the batch of `time`, after the restored
    /// batch (see [`Replicator::write_ahead`]): the context replays that batch with the same
    /// records. Call after [`batch`](Self::batch); with no restored batch, `zero` becomes the
    /// checkpoint's zero time (a run that completed no batch).
    pub fn ahead(&mut self, time: Time, zero: Time, inputs: &[(usize, Vec<u8>)]) -> Result<()> {
        let meta = self
            .store
            .db()
            .cf_handle(META)
            .expect("the meta column family is opened with the database");
        let recovery = self.store.recovery();
        if recovery.is_some_and(|r| r.completed && r.last >= time) {
            return Ok(());
        }
        for (i, p) in inputs {
            self.wb.put_cf(meta, wal_key(*i, time), p);
        }
        if recovery.is_none() {
            self.wb.put_cf(meta, KEY_ZERO, zero.millis().to_be_bytes());
        }
        self.flush()?;
        if recovery.is_none() {
            // The earliest record (they come oldest first): the positions before the first
            // batch, which the context resumes after.
            self.store.set_recovery(super::Recovery {
                zero,
                last: time,
                completed: false,
            });
        }
        Ok(())
    }

    /// Forgets the positions written ahead for batches after `t`: a replica's records of them
    /// replace this copy's own, through [`ahead`](Self::ahead) (another owner may have cut
    /// those batches since; the copy's records that never reached the replica described
    /// batches nothing was sent for).
    pub fn forget_ahead_after(&mut self, t: Time) -> Result<()> {
        let meta = self
            .store
            .db()
            .cf_handle(META)
            .expect("the meta column family is opened with the database");
        let mut it = self.store.db().raw_iterator_cf(meta);
        it.seek([WAL]);
        while let Some(k) = it.key() {
            if k.first() != Some(&WAL) {
                break;
            }
            // `w`, the input (4 bytes), the time (8 bytes).
            if k.get(5..)
                .and_then(super::keyed::time_from_bytes)
                .is_some_and(|at| at > t.millis())
            {
                self.wb.delete_cf(meta, k);
            }
            it.next();
        }
        it.status().map_err(|e| self.store.error(e))?;
        self.flush()
    }

    /// Writes what is buffered: the bulk loads' table files first, so that the records of
    /// the batch restored (in the write batch) never describe state not yet written.
    pub(crate) fn flush(&mut self) -> Result<()> {
        for (operator, load) in self.loads.iter_mut().enumerate() {
            if let Load::Bulk(bulk) = load {
                let cf = column_family(self.store, &mut self.cfs, operator)?;
                bulk.write(self.store, cf, self.operators[operator].as_ref(), operator)?;
            }
        }
        let mut derived = std::mem::take(&mut self.derived);
        derived.sort_unstable();
        for (operator, key) in &derived {
            let cf = column_family(self.store, &mut self.cfs, *operator)?;
            self.wb.put_cf(cf, key, []);
        }
        let wb = std::mem::take(&mut self.wb);
        self.pending = 0;
        self.store.db().write(wb).map_err(|e| self.store.error(e))
    }
}

/// Stateful operator `operator`'s column family, looked up once per restore (a lookup by name
/// formats it) and kept in `cfs`.
fn column_family<'a>(
    store: &'a Store,
    cfs: &mut Vec<Option<&'a rocksdb::ColumnFamily>>,
    operator: usize,
) -> Result<&'a rocksdb::ColumnFamily> {
    if cfs.len() <= operator {
        cfs.resize(operator + 1, None);
    }
    match cfs[operator] {
        Some(cf) => Ok(cf),
        None => Ok(*cfs[operator].insert(store.cf(operator)?)),
    }
}
