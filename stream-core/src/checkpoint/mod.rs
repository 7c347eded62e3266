//! Checkpoints: the durable state of a pipeline in one RocksDB database, and exact recovery.
//!
//! Layout of a checkpoint directory:
//! - `dstream-checkpoint`: a one-line marker naming the format (so that a directory that lost
//!   its database is refused, never mistaken for a fresh one);
//! - `db/`: RocksDB, with a `meta` column family and one column family per stateful operator
//!   (`op<N>`, numbered in the order the pipeline creates them). Operators key their own data
//!   (see [`keyed`]); `meta` holds the pipeline's shape, the zero time, the last completed batch,
//!   and every replayable input's position after each recent batch.
//!
//! Each batch commits atomically: the state changes of every operator, the inputs' positions and
//! the batch marker go in one RocksDB write batch, written with the write-ahead log. A crash at
//! any instant leaves either the whole batch or none of it. The inputs' positions are also written
//! ahead as each batch is captured, so that a batch cut before a crash is replayed after it with
//! the same records (the file source re-reads the same files), which is what makes idempotent
//! outputs exactly-once.

mod bulk;
pub(crate) mod keyed;
mod replica;

pub(crate) use replica::CommitBatch;
pub use replica::{CheckpointRestore, CommitRecord, Replicator, StateChange};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use crate::error::{CheckpointError, Result};
use crate::time::{Duration, Time};

const MARKER_FILE: &str = "dstream-checkpoint";
/// The last batch committed, written beside the database after each commit: a database that
/// opens at an older batch lost the ones between (see `Store::open`).
const COMMITTED_FILE: &str = "committed";
const MARKER_TEXT: &str = "dstream checkpoint format 1\n";
const META: &str = "meta";
const KEY_SHAPE: &[u8] = b"shape";
const KEY_ZERO: &[u8] = b"zero";
const KEY_LAST: &[u8] = b"last";
/// What a replicator returned at the last commit (e.g. changelog offsets).
const KEY_REPLICA: &[u8] = b"replica";
/// `wal/<input>/<time>`: an input's position right after it captured the batch of `time`.
const WAL: u8 = b'w';
/// `s<sink>`: a sink's position after the last completed batch.
const SINK: u8 = b's';

fn sink_key(sink: usize) -> Vec<u8> {
    let mut k = vec![SINK];
    k.extend_from_slice(&(sink as u32).to_be_bytes());
    k
}

/// An operator whose state lives in the checkpoint.
pub(crate) trait Durable: Send + Sync {
    /// What the operator is, for the shape check: its kind, partitions and types.
    fn describe(&self) -> String;
    /// Adds the batch's state changes to `wb`; they are committed with the batch.
    fn commit(&self, store: &Store, t: Time, wb: &mut CommitBatch<'_>) -> Result<()>;
    /// Forgets the batch's uncommitted changes (the batch failed).
    fn abort(&self, t: Time);
    /// The size of its state, for metrics.
    fn size(&self, _store: &Store) -> Option<crate::metrics::StateInfo> {
        None
    }
    /// Whether a change a replica hands back (`value` `None`: a delete) is one this operator
    /// writes: its key and value decode as the operator's types.
    fn check(&self, _key: &[u8], _value: Option<&[u8]>) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The entry (with an empty value) the operator keeps beside a change a replica hands back,
    /// derived from it and never logged (the timer index of timed state), if any: its key is
    /// appended to `out`, and the answer is whether there is one. Entries it derived from
    /// earlier values of the key may stay behind: the operator must tell them from current
    /// ones.
    fn derived(&self, _key: &[u8], _value: Option<&[u8]>, _out: &mut Vec<u8>) -> bool {
        false
    }
    /// Whether a change a replica hands back is of an entry the operator derives itself (a
    /// timer entry, which earlier versions logged): a restore skips it.
    fn rebuilds(&self, _key: &[u8]) -> bool {
        false
    }
}

/// The pipeline facts a checkpoint must agree with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shape {
    pub(crate) batch_ms: i64,
    pub(crate) inputs: Vec<String>,
    pub(crate) operators: Vec<String>,
}

impl Shape {
    /// The first difference between the checkpoint's shape (`self`) and the pipeline's.
    fn difference(&self, now: &Shape) -> Option<String> {
        if self.batch_ms != now.batch_ms {
            return Some(format!(
                "the batch interval was {} ms, it is {} ms now",
                self.batch_ms, now.batch_ms
            ));
        }
        let list = |what: &str, old: &[String], new: &[String]| {
            for i in 0..old.len().max(new.len()) {
                match (old.get(i), new.get(i)) {
                    (Some(o), Some(n)) if o == n => {}
                    (Some(o), Some(n)) => {
                        return Some(format!("{what} #{i} was {o}, it is {n} now"));
                    }
                    (Some(o), None) => {
                        return Some(format!("{what} #{i} ({o}) is no longer in the pipeline"));
                    }
                    (None, Some(n)) => {
                        return Some(format!("{what} #{i} ({n}) is new in the pipeline"));
                    }
                    (None, None) => {}
                }
            }
            None
        };
        list("stateful operator", &self.operators, &now.operators)
            .or_else(|| list("input", &self.inputs, &now.inputs))
    }
}

/// Where a recovered pipeline resumes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    pub(crate) zero: Time,
    /// The last completed batch; the zero time when a run started but completed none (its
    /// batches may still have reached outputs: they are replayed at the same times).
    pub(crate) last: Time,
    /// Whether any batch completed.
    pub(crate) completed: bool,
}

/// An open checkpoint.
pub(crate) struct Store {
    dir: PathBuf,
    db: DB,
    /// The options the database was opened with (table files written for it use them too).
    opts: Options,
    sync: bool,
    /// Removed when the store closes (a context without a checkpoint directory of its own).
    temporary: bool,
    /// Where the pipeline resumes; replaced when state is restored from a replica.
    recovery: Mutex<Option<Recovery>>,
    /// Set when a batch failed: its state changes are gone, so state cannot go on from there.
    poisoned: Mutex<Option<Time>>,
    closed: AtomicBool,
}

fn db_error(dir: &Path, e: rocksdb::Error) -> CheckpointError {
    CheckpointError::Database {
        dir: dir.to_path_buf(),
        message: e.into_string(),
    }
}

/// The name of operator `id`'s column family.
pub(crate) fn cf_name(id: usize) -> String {
    format!("op{id}")
}

/// Records `t` as the last batch committed: written aside and renamed into place, so the file
/// is always whole.
fn write_committed(dir: &Path, t: Time) -> std::io::Result<()> {
    let tmp = dir.join(format!("{COMMITTED_FILE}.tmp"));
    std::fs::write(&tmp, format!("{}\n", t.millis()))?;
    std::fs::rename(&tmp, dir.join(COMMITTED_FILE))
}

/// The last batch `COMMITTED_FILE` records, if there is one.
fn read_committed(dir: &Path) -> Result<Option<Time>> {
    let file = dir.join(COMMITTED_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(ms) => Ok(Some(Time::from_millis(ms))),
            Err(e) => Err(CheckpointError::Corrupt {
                file,
                reason: format!("expected the time of the last batch committed: {e}"),
            }
            .into()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::io(&file, e).into()),
    }
}

/// Refuses a database that opens at a batch older than the last one committed (its
/// write-ahead log damaged, cut short or deleted), naming the log and what was lost, unless
/// `accept_loss`. Looked at in a read-only open first: a refused checkpoint is left as it was
/// (an open for writing would flush the older point and start a new log).
fn check_committed(
    dir: &Path,
    db_dir: &Path,
    opts: &Options,
    existing: &[String],
    accept_loss: bool,
) -> Result<()> {
    let Some(committed) = read_committed(dir)? else {
        return Ok(());
    };
    let recovered = {
        let db = DB::open_cf_for_read_only(opts, db_dir, existing, false)
            .map_err(|e| db_error(db_dir, e))?;
        let meta = db.cf_handle(META).ok_or_else(|| CheckpointError::Corrupt {
            file: db_dir.to_path_buf(),
            reason: "the meta column family is missing".into(),
        })?;
        db.get_cf(meta, KEY_LAST)
            .map_err(|e| db_error(db_dir, e))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|a| Time::from_millis(i64::from_be_bytes(a)))
    };
    if recovered.is_some_and(|r| r >= committed) {
        return Ok(());
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(db_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    let file = logs.last().cloned().unwrap_or_else(|| db_dir.join("*.log"));
    let lost = match recovered {
        Some(r) => format!(
            "the state database opens at the batch at {r}, but the batch at {committed} was committed (recorded in {}): its write-ahead log is damaged, cut short or missing, and the batches after {r} are lost",
            dir.join(COMMITTED_FILE).display()
        ),
        None => format!(
            "the state database opens with no completed batch, but the batch at {committed} was committed (recorded in {}): its write-ahead log is damaged, cut short or missing, and every batch is lost",
            dir.join(COMMITTED_FILE).display()
        ),
    };
    let what = "the state those batches made from inputs that cannot be replayed (socket, queue, rate, receivers) is gone, and replayable inputs (Kafka, files) would run them again";
    if accept_loss {
        tracing::error!(
            "checkpoint {}: {lost}; {what}. Resuming from there, as accept_checkpoint_loss asks",
            dir.display()
        );
        return Ok(());
    }
    Err(CheckpointError::Corrupt {
        file,
        reason: format!(
            "{lost}; {what}. To resume from the older batch anyway, open it with accept_checkpoint_loss(true)"
        ),
    }
    .into())
}

fn wal_key(input: usize, t: Time) -> Vec<u8> {
    let mut k = vec![WAL];
    k.extend_from_slice(&(input as u32).to_be_bytes());
    k.extend_from_slice(&keyed::time_bytes(t.millis()));
    k
}

impl Store {
    /// Opens (or creates) the checkpoint in `dir` for a pipeline of `shape`; refuses one written
    /// by an incompatible pipeline, and any damaged or partial checkpoint, naming what is wrong.
    pub(crate) fn open(
        dir: &Path,
        shape: &Shape,
        temporary: bool,
        sync: bool,
        accept_loss: bool,
    ) -> Result<Store> {
        let marker = dir.join(MARKER_FILE);
        let db_dir = dir.join("db");
        let exists = dir.is_dir()
            && std::fs::read_dir(dir)
                .map_err(|e| CheckpointError::io(dir, e))?
                .next()
                .is_some();
        if exists {
            match std::fs::read_to_string(&marker) {
                Ok(text) if text == MARKER_TEXT => {}
                Ok(_) => {
                    return Err(CheckpointError::Corrupt {
                        file: marker,
                        reason: format!("expected \"{}\"", MARKER_TEXT.trim()),
                    }
                    .into());
                }
                Err(e) => {
                    return Err(CheckpointError::Corrupt {
                        file: marker,
                        reason: format!(
                            "{e}; the directory is not empty, so it is not a new checkpoint (use an empty or new directory to start afresh)"
                        ),
                    }
                    .into());
                }
            }
            if !db_dir.join("CURRENT").is_file() {
                return Err(CheckpointError::Corrupt {
                    file: db_dir.join("CURRENT"),
                    reason: "missing: the state database cannot be opened".into(),
                }
                .into());
            }
        } else {
            std::fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, e))?;
            std::fs::write(&marker, MARKER_TEXT).map_err(|e| CheckpointError::io(&marker, e))?;
        }
        let mut opts = Options::default();
        opts.create_if_missing(!exists);
        opts.create_missing_column_families(true);
        opts.set_paranoid_checks(true);
        // Replay the write-ahead log up to its first damaged record and stop there: a
        // consistent older point (a torn last record after a crash is normal). That the point
        // is older than the last commit is then caught against `COMMITTED_FILE` below.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_max_background_jobs(2);
        // Whole batches of state changes, mostly overwrites of hot keys: a large memtable absorbs
        // them before they reach the disk.
        opts.set_write_buffer_size(64 << 20);
        opts.set_max_write_buffer_number(3);
        // All memtables together stay under this, however many stateful operators there are.
        opts.set_db_write_buffer_size(256 << 20);
        // Most lookups of a batch with new keys miss: Bloom filters on the memtables and on
        // every table answer those without searching. Index and filter blocks of the tables
        // stay in the table readers (about 1.3 bytes per key).
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 << 20));
        opts.set_block_based_table_factory(&table);
        let mut wanted: Vec<String> = vec![META.to_string()];
        wanted.extend((0..shape.operators.len()).map(cf_name));
        let existing = if exists {
            DB::list_cf(&opts, &db_dir).map_err(|e| db_error(&db_dir, e))?
        } else {
            Vec::new()
        };
        let mut names = wanted.clone();
        for e in &existing {
            if e != "default" && !names.contains(e) {
                names.push(e.clone());
            }
        }
        if exists {
            check_committed(dir, &db_dir, &opts, &existing, accept_loss)?;
        }
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs).map_err(|e| db_error(&db_dir, e))?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            db,
            opts,
            sync,
            temporary,
            recovery: Mutex::new(None),
            poisoned: Mutex::new(None),
            closed: AtomicBool::new(false),
        };
        let meta = store.meta();
        let get = |k: &[u8]| {
            store
                .db
                .get_cf(meta, k)
                .map_err(|e| db_error(&store.dir, e))
        };
        match get(KEY_SHAPE)? {
            Some(bytes) => {
                let old: Shape =
                    postcard::from_bytes(&bytes).map_err(|e| CheckpointError::Corrupt {
                        file: db_dir.clone(),
                        reason: format!("the pipeline shape record does not decode: {e}"),
                    })?;
                if let Some(diff) = old.difference(shape) {
                    return Err(CheckpointError::Incompatible {
                        dir: dir.to_path_buf(),
                        difference: diff,
                    }
                    .into());
                }
            }
            None => {
                let bytes = postcard::to_stdvec(shape).map_err(|e| CheckpointError::Encode {
                    what: "the pipeline shape".into(),
                    message: e.to_string(),
                })?;
                store
                    .db
                    .put_cf(meta, KEY_SHAPE, bytes)
                    .map_err(|e| db_error(&store.dir, e))?;
            }
        }
        let time = |k: &[u8]| -> Result<Option<Time>> {
            match get(k)? {
                None => Ok(None),
                Some(b) => match <[u8; 8]>::try_from(b.as_slice()) {
                    Ok(a) => Ok(Some(Time::from_millis(i64::from_be_bytes(a)))),
                    Err(_) => Err(CheckpointError::Corrupt {
                        file: db_dir.clone(),
                        reason: format!(
                            "the record {:?} holds {} bytes, not 8",
                            String::from_utf8_lossy(k),
                            b.len()
                        ),
                    }
                    .into()),
                },
            }
        };
        let recovery = match (time(KEY_ZERO)?, time(KEY_LAST)?) {
            (Some(zero), Some(last)) => Some(Recovery {
                zero,
                last,
                completed: true,
            }),
            // A run started (its zero time and first positions were written together) and
            // completed no batch: it resumes after the start record (the earliest positions;
            // a task joining an application late starts on the grid after the zero time).
            (Some(zero), None) => Some(Recovery {
                zero,
                last: store.earliest_position()?.unwrap_or(zero).max(zero),
                completed: false,
            }),
            (None, _) => None,
        };
        if recovery.is_none() {
            // Positions without a zero time (an older format's partial start) mean nothing.
            store
                .db
                .delete_range_cf(meta, [WAL], [WAL + 1])
                .map_err(|e| db_error(&store.dir, e))?;
        }
        *store.recovery.get_mut().unwrap_or_else(|e| e.into_inner()) = recovery;
        Ok(store)
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    /// Whether column family `cf` holds no entry.
    pub(crate) fn is_empty(&self, cf: &rocksdb::ColumnFamily) -> Result<bool> {
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        it.status().map_err(|e| self.error(e))?;
        Ok(!it.valid())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(META)
            .expect("the meta column family is opened with the database")
    }

    /// The column family of operator `id` (opened with the database).
    pub(crate) fn cf(&self, id: usize) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(&cf_name(id)).ok_or_else(|| {
            CheckpointError::Database {
                dir: self.dir.clone(),
                message: format!("column family {} is not open", cf_name(id)),
            }
            .into()
        })
    }

    pub(crate) fn error(&self, e: rocksdb::Error) -> crate::error::Error {
        db_error(&self.dir, e).into()
    }

    /// Where the pipeline resumes, when the checkpoint holds a completed batch.
    pub(crate) fn recovery(&self) -> Option<Recovery> {
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails when an earlier batch failed: its state changes were discarded, so going on would
    /// silently lose its records. A restart from the checkpoint replays that batch.
    pub(crate) fn check_healthy(&self) -> Result<()> {
        match *self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => Err(CheckpointError::StateMissing { time: t }.into()),
            None => Ok(()),
        }
    }

    /// Writes an input's position after capturing the batch of `t`, ahead of processing it;
    /// at the start of a new checkpoint (`start`), with the zero time `t`, in the same write.
    /// Writes the inputs' positions after capturing the batch at `t`; `start` (the zero time)
    /// for the record before a new checkpoint's first batch.
    pub(crate) fn write_ahead(
        &self,
        positions: &[(usize, Vec<u8>)],
        t: Time,
        start: Option<Time>,
    ) -> Result<()> {
        if positions.is_empty() && start.is_none() {
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        if let Some(zero) = start {
            wb.put_cf(self.meta(), KEY_ZERO, zero.millis().to_be_bytes());
        }
        for (input, pos) in positions {
            wb.put_cf(self.meta(), wal_key(*input, t), pos);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db.write_opt(wb, &wo).map_err(|e| self.error(e))
    }

    /// The time of the earliest positions written ahead, of any input.
    fn earliest_position(&self) -> Result<Option<Time>> {
        let mut it = self.db.raw_iterator_cf(self.meta());
        it.seek([WAL]);
        let mut earliest = None::<i64>;
        while let Some(k) = it.key() {
            if k.first() != Some(&WAL) {
                break;
            }
            if let Some(t) = k.get(5..).and_then(keyed::time_from_bytes) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
            it.next();
        }
        it.status().map_err(|e| self.error(e))?;
        Ok(earliest.map(Time::from_millis))
    }

    /// The positions written ahead for `input`, by batch time, oldest first.
    pub(crate) fn positions(&self, input: usize) -> Result<Vec<(Time, Vec<u8>)>> {
        let mut prefix = vec![WAL];
        prefix.extend_from_slice(&(input as u32).to_be_bytes());
        let mut it = self.db.raw_iterator_cf(self.meta());
        it.seek(&prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            let t = keyed::time_from_bytes(&k[prefix.len()..]).ok_or_else(|| {
                CheckpointError::Corrupt {
                    file: self.dir.join("db"),
                    reason: "an input position record has a malformed key".into(),
                }
            })?;
            out.push((Time::from_millis(t), v.to_vec()));
            it.next();
        }
        it.status().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// A sink's position as committed with the last completed batch.
    pub(crate) fn sink_position(&self, sink: usize) -> Result<Option<Vec<u8>>> {
        if self.recovery().is_none() {
            return Ok(None);
        }
        self.db
            .get_cf(self.meta(), sink_key(sink))
            .map_err(|e| self.error(e))
    }

    /// Commits the batch of `t`: every operator's changes, the sinks' positions, the marker, and
    /// the inputs' write-ahead positions older than `keep_from` dropped, in one write. With a
    /// replicator, the batch's changes go to it first (an error fails the batch), and what it
    /// returns is committed with the batch as the replica's mark.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &self,
        t: Time,
        zero: Time,
        durables: &[Arc<dyn Durable>],
        inputs: &[(usize, Vec<u8>)],
        input_count: usize,
        keep_from: Time,
        sinks: &[(usize, Vec<u8>)],
        replicator: Option<&dyn Replicator>,
    ) -> Result<()> {
        let mut wb = CommitBatch {
            store: self,
            wb: WriteBatch::default(),
            log: replicator.map(|_| Vec::new()),
        };
        for d in durables {
            d.commit(self, t, &mut wb)?;
        }
        let CommitBatch { mut wb, log, .. } = wb;
        let meta = self.meta();
        if let (Some(r), Some(changes)) = (replicator, log) {
            let mark = r.replicate(&CommitRecord {
                time: t,
                zero,
                changes: &changes,
                inputs,
                sinks,
            })?;
            match mark {
                Some(m) => wb.put_cf(meta, KEY_REPLICA, m),
                None => wb.delete_cf(meta, KEY_REPLICA),
            }
        }
        for (i, position) in sinks {
            wb.put_cf(meta, sink_key(*i), position);
        }
        for i in 0..input_count {
            wb.delete_range_cf(
                meta,
                wal_key(i, Time::from_millis(i64::MIN)),
                wal_key(i, keep_from),
            );
        }
        wb.put_cf(meta, KEY_ZERO, zero.millis().to_be_bytes());
        wb.put_cf(meta, KEY_LAST, t.millis().to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db.write_opt(wb, &wo).map_err(|e| self.error(e))?;
        if !self.temporary
            && let Err(e) = write_committed(&self.dir, t)
        {
            // The batch is committed; only the check of the next open is weaker.
            tracing::error!(
                "checkpoint {}: cannot record the batch at {t} in {COMMITTED_FILE}: {e}",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Replaces where the pipeline resumes (after a restore from a replica).
    pub(crate) fn set_recovery(&self, r: Recovery) {
        *self.recovery.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// Opens a restore of this checkpoint for a pipeline with these stateful operators.
    pub(crate) fn restore(&self, operators: Vec<Arc<dyn Durable>>) -> CheckpointRestore<'_> {
        CheckpointRestore {
            store: self,
            cfs: Vec::new(),
            wb: WriteBatch::default(),
            pending: 0,
            operators,
            applied: 0,
            derived: Vec::new(),
            loads: Vec::new(),
            bulk_spill: bulk::SPILL_BYTES,
        }
    }

    /// The replica's mark committed with the last completed batch (see [`Replicator`]).
    pub(crate) fn replica_mark(&self) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.meta(), KEY_REPLICA)
            .map_err(|e| self.error(e))
    }

    /// Discards the batch's changes and stops state from going on past it.
    pub(crate) fn abort(&self, t: Time, durables: &[Arc<dyn Durable>]) {
        for d in durables {
            d.abort(t);
        }
        self.poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(t);
    }

    /// Flushes memtables so that a restart need not replay the log (on a clean stop).
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst)
            && !self.temporary
            && let Err(e) = self.db.flush()
        {
            tracing::warn!("flushing the checkpoint at {}: {e}", self.dir.display());
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh directory for the state of a context that has no checkpoint directory of its own.
pub(crate) fn temporary_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "dstream-state-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// How long write-ahead positions are kept before `t`: the longest remember duration of any
/// input, plus one batch (the position before the oldest remembered batch).
pub(crate) fn keep_from(t: Time, remember: Duration, batch: Duration) -> Time {
    t - remember - batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            batch_ms: 100,
            inputs: vec!["in".into()],
            operators: Vec::new(),
        }
    }

    #[test]
    fn a_run_that_completed_no_batch_is_resumed_at_its_own_batch_times() {
        let dir = temporary_dir();
        let zero = Time::from_millis(1_000);
        {
            let store = Store::open(&dir, &shape(), false, false, false).unwrap();
            assert!(store.recovery().is_none());
            store
                .write_ahead(&[(0, b"p0".to_vec())], zero, Some(zero))
                .unwrap();
            store
                .write_ahead(
                    &[(0, b"p1".to_vec())],
                    zero + Duration::from_millis(100),
                    None,
                )
                .unwrap();
            // Killed before the first batch completes.
        }
        let store = Store::open(&dir, &shape(), false, false, false).unwrap();
        let r = store.recovery().expect("the started run is recovered");
        assert_eq!((r.zero, r.last, r.completed), (zero, zero, false));
        assert_eq!(
            store.positions(0).unwrap(),
            vec![
                (zero, b"p0".to_vec()),
                (zero + Duration::from_millis(100), b"p1".to_vec())
            ]
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
