//! Changelogs: the state of a task, in Kafka, so that the task can move to another machine.
//!
//! - `<app>-op<N>-changelog` (compacted, one partition per task) holds stateful operator `N`'s
//!   changes: key = the operator's key in its store, value = the new value, a tombstone for a
//!   delete; header `dstream.batch` = the batch time.
//! - `<app>-tasks-changelog` (compacted, one partition per task) holds, under the key `batch`,
//!   the task's last batch: its time, the zero time, and the inputs' and sinks' positions after
//!   it.
//!
//! Each batch's changes and its batch record are written in one Kafka transaction by the
//! task's changelog producer (transactional id `<app>-<task>-changelog`, so that the task's
//! next owner fences a zombie's), before the batch commits to the local checkpoint. The local
//! checkpoint keeps the changelog offsets after its last batch (the replica's mark): a task
//! restored where it ran before reads only the changelog's tail; elsewhere, the whole
//! partition.
//!
//! A restore applies the changes of batches up to the last batch record, in log order, and
//! skips records of later batches (on a broker that shows aborted transactions, tansu, those
//! are the records of a transaction that did not commit).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use stream_core::{CheckpointRestore, CommitRecord, Error, Replicator, Time};

use crate::EndIsNoError;
use crate::produce::{self, TrackedProducer, Tracker};
use crate::sink::BATCH_HEADER;

/// The changelog topic of stateful operator `op`.
pub(crate) fn op_topic(app: &str, op: usize) -> String {
    format!("{app}-op{op}-changelog")
}

/// The topic of the tasks' last batches.
pub(crate) fn tasks_topic(app: &str) -> String {
    format!("{app}-tasks-changelog")
}

const BATCH_KEY: &[u8] = b"batch";
/// `ahead <time>`: the inputs' positions after capturing the batch of `time`, written before
/// the batch is processed (pipelines with exchanges only), deleted when the batch commits.
const AHEAD_KEY: &[u8] = b"ahead";

fn ahead_key(t: i64) -> Vec<u8> {
    let mut k = AHEAD_KEY.to_vec();
    k.extend_from_slice(&t.to_be_bytes());
    k
}

/// The positions of a batch written ahead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct AheadRecord {
    time_ms: i64,
    zero_ms: i64,
    inputs: Vec<(usize, Vec<u8>)>,
}

/// A task's last batch, as the tasks changelog holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BatchRecord {
    time_ms: i64,
    zero_ms: i64,
    inputs: Vec<(usize, Vec<u8>)>,
    sinks: Vec<(usize, Vec<u8>)>,
}

/// The changelog offsets after a batch: where a restore of the local copy resumes.
type Mark = BTreeMap<String, i64>;

/// How far a restore is: offsets of the task's changelog partitions read, of those to read
/// (known once the restore has looked at the partitions' ends).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) done: AtomicU64,
    pub(crate) total: AtomicU64,
}

impl Progress {
    /// Adds the offsets `from..` up to the end of `topic`-`partition` to the total; returns
    /// how many there are.
    fn add_partition(
        &self,
        consumer: &BaseConsumer<EndIsNoError>,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        timeout: StdDuration,
    ) -> Result<u64, String> {
        // A partition without a leader yet (a topic just created, a broker restarting) has
        // one soon: retried until `timeout`.
        let deadline = Instant::now() + timeout;
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, partition, timeout) {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition
                    | RDKafkaErrorCode::LeaderNotAvailable
                    | RDKafkaErrorCode::UnknownTopicOrPartition,
                )) if Instant::now() < deadline => {
                    std::thread::sleep(StdDuration::from_millis(20));
                }
                r => {
                    break r
                        .map_err(|e| format!("cannot read the end of {topic}-{partition}: {e}"))?;
                }
            }
        };
        let start = from.unwrap_or(low).max(low);
        let span = (high - start).max(0) as u64;
        self.total.fetch_add(span, Ordering::Relaxed);
        Ok(span)
    }
}

/// Writes a task's batches to its changelog partitions (a [`Replicator`]).
pub(crate) struct Changelog {
    app: String,
    task: String,
    partition: i32,
    operators: usize,
    producer: std::sync::Arc<TrackedProducer>,
    /// The producer was abandoned to a transactional call that never returned (see
    /// [`produce::bounded`]): no other transaction can start on it.
    abandoned: std::sync::atomic::AtomicBool,
    timeout: StdDuration,
    /// The application's zero time. The inputs' positions are written ahead of each batch:
    /// its next owner cuts a batch in flight the same (other tasks may have received its part
    /// at an exchange, and its sinks may have committed its outputs and offsets).
    zero: Time,
    /// Batches written ahead and not yet committed (their records are deleted at the commit).
    outstanding: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    /// One transaction at a time.
    txn: std::sync::Mutex<()>,
    brokers: String,
    /// The producer of positions written ahead (idempotent, not transactional).
    ahead_producer: Result<TrackedProducer, String>,
}

impl Changelog {
    /// The task's changelog producer; fences the task's previous owner's.
    pub(crate) fn open(
        brokers: &str,
        app: &str,
        task: &str,
        partition: i32,
        operators: usize,
        timeout: StdDuration,
        zero: Time,
    ) -> Result<Changelog, String> {
        let producer: TrackedProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("transactional.id", format!("{app}-{task}-changelog"))
            .set("transaction.timeout.ms", "60000")
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(Tracker::default())
            .map_err(|e| format!("cannot create the changelog producer: {e}"))?;
        produce::init_transactions(&producer, &tasks_topic(app), partition, timeout)
            .map_err(|e| format!("cannot initialise the changelog's transactions: {e}"))?;
        // The producer of positions written ahead, now rather than at the first batch, and
        // connected: created then, it got its producer id about 500 ms later, which the first
        // batch after a failover waited for. Its id is requested while the task restores.
        let ahead_producer = produce::idempotent(brokers, timeout, 0, 1_000_000)
            .map_err(|e| format!("cannot create the changelog's producer of positions: {e}"));
        if let Ok(p) = &ahead_producer {
            produce::connect(p, &tasks_topic(app), partition, timeout);
        }
        Ok(Changelog {
            app: app.to_string(),
            task: task.to_string(),
            partition,
            operators,
            producer: std::sync::Arc::new(producer),
            abandoned: Default::default(),
            timeout,
            zero,
            outstanding: Default::default(),
            txn: Default::default(),
            brokers: brokers.to_string(),
            ahead_producer,
        })
    }

    fn error(&self, message: String) -> Error {
        super::task_error(&self.app, &self.task, message)
    }

    fn write(&self, batch: &CommitRecord<'_>) -> Result<Mark, String> {
        let _txn = self.txn.lock().unwrap_or_else(|e| e.into_inner());
        if self.abandoned.load(Ordering::Relaxed) {
            return Err("its producer was abandoned to a call the brokers never answered; the task must start again (its next owner fences that producer)".into());
        }
        let t = batch.time.millis().to_string();
        let headers = || {
            OwnedHeaders::new().insert(Header {
                key: BATCH_HEADER,
                value: Some(t.as_bytes()),
            })
        };
        self.producer
            .begin_transaction()
            .map_err(|e| format!("cannot begin a changelog transaction: {e}"))?;
        let topics: Vec<String> = (0..self.operators)
            .map(|op| op_topic(&self.app, op))
            .collect();
        for c in batch.changes {
            produce::send_to(
                &self.producer,
                &topics[c.operator],
                self.partition,
                Some(&c.key),
                c.value.as_deref(),
                headers(),
            )?;
        }
        let record = BatchRecord {
            time_ms: batch.time.millis(),
            zero_ms: batch.zero.millis(),
            inputs: batch.inputs.to_vec(),
            sinks: batch.sinks.to_vec(),
        };
        let value = postcard::to_stdvec(&record).map_err(|e| e.to_string())?;
        produce::send_to(
            &self.producer,
            &tasks_topic(&self.app),
            self.partition,
            Some(BATCH_KEY),
            Some(&value),
            headers(),
        )?;
        let done: Vec<i64> = {
            let o = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
            o.range(..=batch.time.millis()).copied().collect()
        };
        for a in &done {
            produce::send_to(
                &self.producer,
                &tasks_topic(&self.app),
                self.partition,
                Some(&ahead_key(*a)),
                None,
                headers(),
            )?;
        }
        let timeout = self.timeout;
        let what = format!("{}: the changelog's commit_transaction", self.task);
        let committing = std::time::Instant::now();
        produce::bounded(&self.producer, timeout, &what, move |p| {
            produce::commit_transaction(p, timeout)
        })
        .map_err(|e| {
            if !e.usable() {
                self.abandoned.store(true, Ordering::Relaxed);
            }
            format!("cannot commit the changelog transaction: {e}")
        })?;
        {
            let mut o = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
            for a in &done {
                o.remove(a);
            }
        }
        produce::flush(&self.producer, self.timeout)?;
        tracing::debug!(
            "{}: the changelog's transaction of the batch at {} ({} changes) committed in {:?}",
            self.task,
            batch.time,
            batch.changes.len(),
            committing.elapsed()
        );
        let delivered = produce::delivered(&self.producer);
        Ok(delivered
            .into_iter()
            .filter(|((_, p), _)| *p == self.partition)
            .map(|((t, _), o)| (t, o))
            .collect())
    }
}

impl Changelog {
    fn write_ahead_record(&self, time: Time, inputs: &[(usize, Vec<u8>)]) -> Result<(), String> {
        let record = AheadRecord {
            time_ms: time.millis(),
            zero_ms: self.zero.millis(),
            inputs: inputs.to_vec(),
        };
        let value = postcard::to_stdvec(&record).map_err(|e| e.to_string())?;
        let t = time.millis().to_string();
        // Outside the changelog's transactions: a position written ahead by a zombie describes
        // the batch as that zombie cut it (and sent it to the exchanges), which is what its next
        // owner must replay.
        let producer = self.ahead_producer()?;
        let writing = std::time::Instant::now();
        produce::send_to(
            producer,
            &tasks_topic(&self.app),
            self.partition,
            Some(&ahead_key(time.millis())),
            Some(&value),
            OwnedHeaders::new().insert(Header {
                key: BATCH_HEADER,
                value: Some(t.as_bytes()),
            }),
        )?;
        produce::flush(producer, self.timeout)?;
        tracing::debug!(
            "{}: the positions of the batch at {time} written ahead in {:?}",
            self.task,
            writing.elapsed()
        );
        self.outstanding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(time.millis());
        Ok(())
    }

    fn ahead_producer(&self) -> Result<&TrackedProducer, String> {
        self.ahead_producer.as_ref().map_err(Clone::clone)
    }
}

impl Replicator for Changelog {
    fn write_ahead(&self, time: Time, positions: &[(usize, Vec<u8>)]) -> Result<(), Error> {
        self.write_ahead_record(time, positions).map_err(|e| {
            self.error(format!(
                "writing the positions of the batch at {time} ahead to the changelog (brokers {}): {e}",
                self.brokers
            ))
        })
    }

    fn replicate(&self, batch: &CommitRecord<'_>) -> Result<Option<Vec<u8>>, Error> {
        match self.write(batch) {
            Ok(mark) => postcard::to_stdvec(&mark)
                .map(Some)
                .map_err(|e| self.error(format!("cannot encode the changelog offsets: {e}"))),
            Err(e) => {
                let _txn = self.txn.lock().unwrap_or_else(|e| e.into_inner());
                if !self.abandoned.load(Ordering::Relaxed) {
                    let timeout = self.timeout;
                    let what = format!("{}: the changelog's abort_transaction", self.task);
                    if let Err(e) = produce::bounded(&self.producer, timeout, &what, move |p| {
                        p.abort_transaction(timeout)
                    }) && !e.usable()
                    {
                        self.abandoned.store(true, Ordering::Relaxed);
                    }
                }
                Err(self.error(format!(
                    "writing the batch at {} to the changelog (brokers {}): {e}",
                    batch.time, self.brokers
                )))
            }
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Restored {
    /// The batch the task resumes after, if the changelog had one newer than the local copy.
    pub(crate) batch: Option<Time>,
    /// Changes applied.
    pub(crate) changes: u64,
    /// Bytes of changelog read.
    pub(crate) bytes: u64,
    /// Whether the local copy was used (only the tail was read).
    pub(crate) from_local: bool,
    /// Batches whose positions were written ahead and not committed (to be replayed as cut).
    pub(crate) ahead: usize,
}

/// A consumer of internal partitions (see [`reader`]), closed on a thread of its own: closing
/// one takes librdkafka about 100 ms, which a restore reading a changelog per operator one
/// after another would otherwise wait for each time.
pub(crate) struct Reader(Option<BaseConsumer<EndIsNoError>>);

impl std::ops::Deref for Reader {
    type Target = BaseConsumer<EndIsNoError>;
    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("a reader is only emptied when dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            let closing = std::thread::Builder::new()
                .name("dstream-reader-close".into())
                .spawn(move || drop(consumer));
            // Without a thread, close it here.
            if let Err(e) = closing {
                tracing::debug!("closing a changelog reader in place: {e}");
            }
        }
    }
}

/// A consumer of internal partitions, `read_committed`, that reports their ends.
fn reader(brokers: &str) -> Result<Reader, String> {
    crate::source::fetch_promptly(&mut ClientConfig::new())
        .set("bootstrap.servers", brokers)
        .set("group.id", "dstream-internal-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // The end of the partition is what is waited for: do not let the broker hold a fetch.
        .set("fetch.wait.max.ms", "10")
        // A restore reads as fast as it can: besides fetching promptly (at librdkafka's
        // defaults about 57,000 changes a second), it keeps up to a million records queued.
        .set("queued.min.messages", "1000000")
        .set("max.partition.fetch.bytes", "8388608")
        .create_with_context(EndIsNoError)
        .map(|c| Reader(Some(c)))
        .map_err(|e| format!("cannot create a consumer: {e}"))
}

/// Reads one partition (`read_committed`) from `from` (default: its start) to its end, calling
/// `each` with each record's offset, key, value and `dstream.batch` header; `progress` counts
/// the offsets read. The timeout is for silence, not for the whole read.
pub(crate) fn read_partition(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    timeout: StdDuration,
    progress: Option<&Progress>,
    mut each: impl FnMut(i64, &[u8], Option<&[u8]>, Option<i64>) -> Result<(), String>,
) -> Result<(), String> {
    let consumer = reader(brokers)?;
    {
        let mut tpl = TopicPartitionList::new();
        // Offset 0 rather than `Offset::Beginning`: librdkafka looks the beginning up with a
        // request that answers after about 500 ms, per partition and per restore; a compacted
        // partition almost always starts at 0, and where it does not, `auto.offset.reset`
        // takes the read to its start.
        tpl.add_partition_offset(topic, partition, Offset::Offset(from.unwrap_or(0)))
            .map_err(|e| format!("{topic}-{partition}: {e}"))?;
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot read {topic}-{partition}: {e}"))?;
    }
    // Where the offsets counted in `progress` are.
    let mut counted = from;
    let (started, mut read) = (Instant::now(), 0u64);
    // The deadline is for silence, not for the whole read: a long changelog takes long. It
    // moves when a poll comes back empty after records (not at each record: reading the
    // clock was 5% of a restore's time).
    let mut deadline = Instant::now() + timeout;
    let mut progressed = false;
    let mut last_error = None;
    loop {
        match consumer.poll(StdDuration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                progressed = true;
                if let Some(p) = progress {
                    let at = counted.unwrap_or(m.offset());
                    p.done
                        .fetch_add((m.offset() + 1 - at).max(0) as u64, Ordering::Relaxed);
                    counted = Some(m.offset() + 1);
                }
                let batch = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == BATCH_HEADER)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<i64>().ok())
                });
                each(m.offset(), m.key().unwrap_or_default(), m.payload(), batch)?;
                read += 1;
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                tracing::debug!(
                    "read {topic}-{partition} from {from:?}: {read} records in {:?}",
                    started.elapsed()
                );
                return Ok(());
            }
            Some(Err(e)) => {
                tracing::debug!("reading {topic}-{partition}: {e}");
                last_error = Some(e);
            }
        }
        // No record this time.
        let now = Instant::now();
        if std::mem::take(&mut progressed) {
            deadline = now + timeout;
        } else if now > deadline {
            let last = last_error
                .map(|e| format!("; last {e}"))
                .unwrap_or_default();
            return Err(format!(
                "reading {topic}-{partition}: no progress for {timeout:?} (brokers {brokers}{last})"
            ));
        }
    }
}

/// Brings the task's checkpoint up to date with its changelog partitions (see the module).
pub(crate) fn restore(
    brokers: &str,
    app: &str,
    partition: i32,
    timeout: StdDuration,
    progress: &Progress,
    r: &mut CheckpointRestore<'_>,
) -> Result<Restored, String> {
    let mark: Mark = match r.mark().map_err(|e| e.to_string())? {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| format!("the checkpoint's changelog offsets do not decode: {e}"))?,
        None => Mark::new(),
    };
    let local = r.last_batch();
    let from_local = local.is_some() && !mark.is_empty();
    let tasks = tasks_topic(app);
    // What there is to read (for the progress shown while restoring): a partition with
    // nothing after where the restore starts is not read at all.
    let mut to_read: BTreeMap<String, u64> = BTreeMap::new();
    {
        let ends = reader(brokers)?;
        for topic in
            std::iter::once(tasks.clone()).chain((0..r.operators()).map(|op| op_topic(app, op)))
        {
            // The tasks changelog from its start (see below).
            let from = (from_local && topic != tasks)
                .then(|| mark.get(&topic).copied())
                .flatten();
            let span = progress.add_partition(&ends, &topic, partition, from, timeout)?;
            to_read.insert(topic, span);
        }
    }
    let nothing_in = |topic: &str| to_read.get(topic).is_some_and(|n| *n == 0);
    let mut last: Option<(i64, BatchRecord)> = None;
    let mut ahead: BTreeMap<Vec<u8>, Option<AheadRecord>> = BTreeMap::new();
    if !nothing_in(&tasks) {
        // From its start, not from the local copy's mark: the positions written ahead of the
        // batches after the last one may be anywhere before it (tasks cut batches ahead of
        // their commits), and a restore that missed one would cut that batch anew while other
        // tasks may hold its first cut from an exchange. The topic is compacted: what is read
        // is a record per batch time still outstanding, and the last batch record.
        read_partition(
            brokers,
            &tasks,
            partition,
            None,
            timeout,
            Some(progress),
            |offset, key, value, _| {
                if key.starts_with(AHEAD_KEY) {
                    let record = match value {
                        Some(v) => Some(postcard::from_bytes::<AheadRecord>(v).map_err(|e| {
                            format!(
                                "the positions written ahead at {tasks}-{partition} offset {offset} do not decode: {e}"
                            )
                        })?),
                        None => None,
                    };
                    ahead.insert(key.to_vec(), record);
                    return Ok(());
                }
                if key != BATCH_KEY {
                    return Ok(());
                }
                let Some(v) = value else { return Ok(()) };
                let record: BatchRecord = postcard::from_bytes(v).map_err(|e| {
                    format!(
                        "the batch record at {tasks}-{partition} offset {offset} does not decode: {e}"
                    )
                })?;
                last = Some((offset, record));
                Ok(())
            },
        )?;
    }
    let mut ahead: Vec<AheadRecord> = ahead.into_values().flatten().collect();
    ahead.sort_by_key(|a| a.time_ms);
    // Records the batches written ahead after `after` (all without it); returns how many.
    let apply_ahead = |r: &mut CheckpointRestore<'_>,
                       after: Option<i64>|
     -> Result<usize, String> {
        let mut n = 0;
        for a in ahead.iter().filter(|a| after.is_none_or(|t| a.time_ms > t)) {
            tracing::debug!(
                "{app} partition {partition}: replaying the batch at {} ms as cut before (positions {:?})",
                a.time_ms,
                a.inputs
            );
            r.ahead(
                Time::from_millis(a.time_ms),
                Time::from_millis(a.zero_ms),
                &a.inputs,
            )
            .map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n)
    };
    tracing::debug!(
        "{app} partition {partition}: restore: local copy at {:?}, mark {mark:?}, changelog's last batch {:?}, {} batches written ahead",
        local.map(Time::millis),
        last.as_ref().map(|(o, b)| (o, b.time_ms)),
        ahead.len()
    );
    // The local copy has the last batch (its commit came after the changelog's), or no batch
    // completed anywhere. The batches after it are replayed as the changelog's positions
    // written ahead cut them, not as this copy's own records say: another instance may have
    // run the task since, cut those batches otherwise and sent them to exchanges. (This
    // copy's records that never reached the changelog describe batches nothing was sent for:
    // the changelog is written before a batch is processed.)
    let local_is_last = match (&last, local) {
        (_, None) => None,
        (None, Some(l)) => Some(l),
        (Some((_, record)), Some(l)) => (l.millis() >= record.time_ms).then_some(l),
    };
    let (batch_offset, record) = match (last, local_is_last) {
        (Some(last), None) => last,
        _ => {
            if let Some(l) = local_is_last {
                r.forget_ahead_after(l).map_err(|e| e.to_string())?;
            }
            return Ok(Restored {
                from_local,
                ahead: apply_ahead(r, local_is_last.map(Time::millis))?,
                ..Restored::default()
            });
        }
    };
    let mut new_mark = mark.clone();
    new_mark.insert(tasks.clone(), batch_offset + 1);
    let mut done = Restored {
        batch: Some(Time::from_millis(record.time_ms)),
        from_local,
        ..Restored::default()
    };
    for op in 0..r.operators() {
        let topic = op_topic(app, op);
        let from = if from_local {
            mark.get(&topic).copied()
        } else {
            None
        };
        if nothing_in(&topic) {
            continue;
        }
        let mut next = from;
        let mut skipped_at = None::<i64>;
        read_partition(
            brokers,
            &topic,
            partition,
            from,
            timeout,
            Some(progress),
            |offset, key, value, batch| {
                next = Some(offset + 1);
                done.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
                match batch {
                    Some(b) if b > record.time_ms => {
                        skipped_at.get_or_insert(offset);
                        Ok(())
                    }
                    None => Err(format!(
                        "the change at {topic}-{partition} offset {offset} has no {BATCH_HEADER} header: it was not written by dstream"
                    )),
                    Some(_) => {
                        done.changes += 1;
                        r.apply_parts(op, key, value)
                            .map_err(|e| format!("{topic}-{partition} offset {offset}: {e}"))
                    }
                }
            },
        )?;
        if let Some(n) = skipped_at.or(next) {
            new_mark.insert(topic, n);
        }
    }
    let mark_bytes = postcard::to_stdvec(&new_mark).map_err(|e| e.to_string())?;
    r.batch(
        Time::from_millis(record.time_ms),
        Time::from_millis(record.zero_ms),
        &record.inputs,
        &record.sinks,
        Some(&mark_bytes),
    )
    .map_err(|e| e.to_string())?;
    done.ahead = apply_ahead(r, Some(record.time_ms))?;
    Ok(done)
}
