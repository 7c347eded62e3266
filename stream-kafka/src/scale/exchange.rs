//! Repartition topics: the exchanges of a scaled-out application's tasks (see stream-core's
//! `DStream::repartition_by_key` and `DStream::global`).
//!
//! `<app>-op<N>-repartition` (stateful operator `N` of the pipeline is the exchange) has one
//! partition per task for a by-key exchange, one for a global exchange. For each batch time,
//! each task writes, to each partition:
//!
//! - its records for that partition, in chunks (the payload: postcard-encoded records, back to
//!   back), each with the header `dstream.x` = (chunk, time, task, attempt, sequence number);
//! - then an end record, `dstream.x` = (end, time, task, attempt, chunk count), also when it has
//!   no records for the partition.
//!
//! The reader of partition `p` (task `p`) takes, for a batch time, one attempt of every task:
//! the first whose end record it reads, with all its chunks. A task that processes a batch again
//! after a crash writes the batch again under another attempt number; its records are the same
//! (its input is replayed from the same offsets), and readers take one copy. The topic is
//! written without transactions (an idempotent producer), so readers see the same records on
//! every broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use stream_core::{Error, Exchange, Exchanges, Received, Time};

use crate::produce::{self, TrackedProducer};

const HEADER: &str = "dstream.x";

/// The repartition topic of stateful operator `op`.
pub(crate) fn topic(app: &str, op: usize) -> String {
    format!("{app}-op{op}-repartition")
}

/// What the `dstream.x` header says of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Head {
    end: bool,
    time_ms: i64,
    task: u32,
    attempt: u64,
    /// A chunk's sequence number; an end record's chunk count.
    n: u32,
}

/// The exchanges of one task.
pub(crate) struct KafkaExchanges {
    pub(crate) brokers: String,
    pub(crate) app: String,
    pub(crate) task: String,
    /// The task's index (its partition of the task topics).
    pub(crate) index: u32,
    pub(crate) tasks: u32,
    pub(crate) timeout: StdDuration,
    producer: OnceLock<Result<Arc<TrackedProducer>, String>>,
}

impl KafkaExchanges {
    pub(crate) fn new(
        brokers: &str,
        app: &str,
        task: &str,
        index: u32,
        tasks: u32,
        timeout: StdDuration,
    ) -> KafkaExchanges {
        KafkaExchanges {
            brokers: brokers.to_string(),
            app: app.to_string(),
            task: task.to_string(),
            index,
            tasks,
            timeout,
            producer: OnceLock::new(),
        }
    }

    fn error(&self, message: String) -> Error {
        super::task_error(&self.app, &self.task, message)
    }

    fn producer(&self) -> Result<Arc<TrackedProducer>, Error> {
        self.producer
            .get_or_init(|| {
                // Chunks are up to 256 KB plus one record: room for records of a few MB.
                produce::idempotent(&self.brokers, self.timeout, 2, 4_000_000)
                    .map(Arc::new)
                    .map_err(|e| format!("cannot create the repartition producer: {e}"))
            })
            .clone()
            .map_err(|e| self.error(e))
    }
}

impl Exchanges for KafkaExchanges {
    fn open(&self, op: usize, global: bool) -> stream_core::Result<Arc<dyn Exchange>> {
        let destinations = if global { 1 } else { self.tasks };
        let reads = if global {
            (self.index == 0).then_some(0)
        } else {
            Some(self.index as i32)
        };
        Ok(Arc::new(KafkaExchange {
            topic: topic(&self.app, op),
            app: self.app.clone(),
            task: self.task.clone(),
            index: self.index,
            upstreams: self.tasks,
            destinations,
            reads,
            brokers: self.brokers.clone(),
            timeout: self.timeout,
            producer: self.producer()?,
            reader: Mutex::new(None),
        }))
    }
}

/// The exchanges a pipeline asks for, noted while the runner probes its shape (the probe
/// context never runs).
#[derive(Default)]
pub(crate) struct Probe {
    pub(crate) tasks: u32,
    pub(crate) opened: Mutex<Vec<(usize, bool)>>,
}

impl Exchanges for Probe {
    fn open(&self, op: usize, global: bool) -> stream_core::Result<Arc<dyn Exchange>> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((op, global));
        Ok(Arc::new(ProbeExchange {
            destinations: if global { 1 } else { self.tasks },
        }))
    }
}

struct ProbeExchange {
    destinations: u32,
}

impl Exchange for ProbeExchange {
    fn destinations(&self) -> usize {
        self.destinations as usize
    }
    fn receives(&self) -> bool {
        true
    }
    fn send(&self, _: Time, _: Vec<Vec<Vec<u8>>>) -> stream_core::Result<()> {
        Err(probe_never_runs())
    }
    fn receive(
        &self,
        _: Time,
        _: Option<i64>,
        _: &dyn Fn() -> bool,
    ) -> stream_core::Result<Option<Received>> {
        Err(probe_never_runs())
    }
}

fn probe_never_runs() -> Error {
    stream_core::ContextError::InvalidArgument(
        "the shape probe of a scale-out runner never runs".into(),
    )
    .into()
}

struct KafkaExchange {
    topic: String,
    app: String,
    task: String,
    index: u32,
    upstreams: u32,
    destinations: u32,
    /// The partition this task reads, if any.
    reads: Option<i32>,
    brokers: String,
    timeout: StdDuration,
    producer: Arc<TrackedProducer>,
    reader: Mutex<Option<Reader>>,
}

/// A new attempt number: distinct across processes and calls.
fn attempt() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ ((std::process::id() as u64) << 40))
        .wrapping_add(c.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl KafkaExchange {
    fn error(&self, message: String) -> Error {
        super::task_error(&self.app, &self.task, message)
    }

    /// Waits for this task's records to be delivered; a delivery failure fails the batch.
    fn flushed(&self, t: Time) -> stream_core::Result<()> {
        produce::flush(&self.producer, self.timeout).map_err(|e| self.error(self.not_sent(t, &e)))
    }

    fn not_sent(&self, t: Time, e: &str) -> String {
        format!(
            "sending its records of the batch at {t} to {}: {e}",
            self.topic
        )
    }

    fn head(h: &Head) -> OwnedHeaders {
        let value = postcard::to_stdvec(h).unwrap_or_default();
        OwnedHeaders::new().insert(Header {
            key: HEADER,
            value: Some(&value),
        })
    }
}

impl Exchange for KafkaExchange {
    fn destinations(&self) -> usize {
        self.destinations as usize
    }

    fn receives(&self) -> bool {
        self.reads.is_some()
    }

    fn send(&self, t: Time, chunks: Vec<Vec<Vec<u8>>>) -> stream_core::Result<()> {
        let attempt = attempt();
        let empty = Vec::new();
        for d in 0..self.destinations {
            let list = chunks.get(d as usize).unwrap_or(&empty);
            let mut head = Head {
                end: false,
                time_ms: t.millis(),
                task: self.index,
                attempt,
                n: 0,
            };
            for (seq, c) in list.iter().enumerate() {
                head.n = seq as u32;
                produce::send_to(
                    &self.producer,
                    &self.topic,
                    d as i32,
                    None,
                    Some(c),
                    Self::head(&head),
                )
                .map_err(|e| self.error(e))?;
            }
            head.end = true;
            head.n = list.len() as u32;
            produce::send_to(
                &self.producer,
                &self.topic,
                d as i32,
                None,
                None,
                Self::head(&head),
            )
            .map_err(|e| self.error(e))?;
        }
        if self.reads.is_some() {
            // Delivered by the time every task's part arrived (ours included): `receive`
            // checks for failures then.
            return Ok(());
        }
        self.flushed(t)
    }

    fn receive(
        &self,
        t: Time,
        from: Option<i64>,
        cancelled: &dyn Fn() -> bool,
    ) -> stream_core::Result<Option<Received>> {
        let Some(partition) = self.reads else {
            return Ok(None);
        };
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            *reader = Some(
                Reader::new(&self.brokers, &self.topic, partition, self.upstreams)
                    .map_err(|e| self.error(e))?,
            );
        }
        let r = reader.as_mut().expect("set above");
        let abort = || {
            if cancelled() {
                return Some("stopped".to_string());
            }
            produce::failures(&self.producer)
                .err()
                .map(|e| self.not_sent(t, &e))
        };
        let received = r
            .receive(t, from, &abort, self.timeout)
            .map_err(|e| self.error(e))?;
        self.flushed(t)?;
        Ok(Some(received))
    }
}

/// One task's attempts of one batch, as read so far.
#[derive(Default)]
struct FromTask {
    /// The chunks of the attempt taken (complete).
    taken: Option<Vec<Vec<u8>>>,
    /// Chunks of attempts whose end has not been read yet.
    open: HashMap<u64, Vec<Vec<u8>>>,
}

#[derive(Default)]
struct Pending {
    /// The first offset of a record of this batch.
    first: i64,
    tasks: BTreeMap<u32, FromTask>,
}

struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    upstreams: u32,
    positioned: bool,
    done_through: Option<Time>,
    /// The offset after the last record read.
    next: i64,
    pending: BTreeMap<Time, Pending>,
}

impl Reader {
    fn new(brokers: &str, topic: &str, partition: i32, upstreams: u32) -> Result<Reader, String> {
        let consumer: BaseConsumer = crate::source::fetch_promptly(&mut ClientConfig::new())
            .set("bootstrap.servers", brokers)
            .set("group.id", "dstream-internal-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "8388608")
            .create()
            .map_err(|e| format!("cannot create the reader of {topic}: {e}"))?;
        Ok(Reader {
            consumer,
            topic: topic.to_string(),
            partition,
            upstreams,
            positioned: false,
            done_through: None,
            next: 0,
            pending: BTreeMap::new(),
        })
    }

    fn seek(&mut self, from: Option<i64>) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        // Offset 0, not `Offset::Beginning` (a lookup that takes librdkafka about 500 ms); a
        // partition whose start was deleted resets to it (`auto.offset.reset`).
        tpl.add_partition_offset(
            &self.topic,
            self.partition,
            Offset::Offset(from.unwrap_or(0)),
        )
        .map_err(|e| format!("{}-{}: {e}", self.topic, self.partition))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot read {}-{}: {e}", self.topic, self.partition))?;
        self.pending.clear();
        self.done_through = None;
        self.next = from.unwrap_or(0);
        self.positioned = true;
        Ok(())
    }

    fn complete(&self, t: Time) -> bool {
        self.pending.get(&t).is_some_and(|p| {
            p.tasks.values().filter(|f| f.taken.is_some()).count() == self.upstreams as usize
        })
    }

    /// The tasks whose part of the batch at `t` has not arrived.
    fn missing(&self, t: Time) -> Vec<u32> {
        (0..self.upstreams)
            .filter(|u| {
                self.pending
                    .get(&t)
                    .and_then(|p| p.tasks.get(u))
                    .is_none_or(|f| f.taken.is_none())
            })
            .collect()
    }

    fn receive(
        &mut self,
        t: Time,
        from: Option<i64>,
        abort: &dyn Fn() -> Option<String>,
        timeout: StdDuration,
    ) -> Result<Received, String> {
        if !self.positioned || self.done_through.is_some_and(|d| t <= d) {
            self.seek(from)?;
        }
        let started = Instant::now();
        let mut warned = Instant::now();
        while !self.complete(t) {
            if let Some(why) = abort() {
                return Err(format!(
                    "{why} while waiting for the batch at {t} of tasks {:?} in {}-{}",
                    self.missing(t),
                    self.topic,
                    self.partition
                ));
            }
            if warned.elapsed() >= StdDuration::from_secs(10).max(timeout) {
                warned = Instant::now();
                tracing::warn!(
                    "waiting {:?} for the batch at {t} of tasks {:?} (partition {} of {}): are instances running them?",
                    started.elapsed(),
                    self.missing(t),
                    self.partition,
                    self.topic
                );
            }
            let Some(m) = self.consumer.poll(StdDuration::from_millis(50)) else {
                continue;
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("reading {}-{}: {e}", self.topic, self.partition);
                    continue;
                }
            };
            let offset = m.offset();
            self.next = offset + 1;
            let head = m
                .headers()
                .and_then(|h| h.iter().find(|x| x.key == HEADER).and_then(|x| x.value))
                .ok_or_else(|| {
                    format!(
                        "{}-{} offset {offset}: a record without the {HEADER} header (something other than dstream wrote to this topic)",
                        self.topic, self.partition
                    )
                })?;
            let head: Head = postcard::from_bytes(head).map_err(|e| {
                format!(
                    "{}-{} offset {offset}: the {HEADER} header does not decode: {e}",
                    self.topic, self.partition
                )
            })?;
            let at = Time::from_millis(head.time_ms);
            if at < t || head.task >= self.upstreams {
                continue;
            }
            let pending = self.pending.entry(at).or_insert_with(|| Pending {
                first: offset,
                tasks: BTreeMap::new(),
            });
            pending.first = pending.first.min(offset);
            let from_task = pending.tasks.entry(head.task).or_default();
            if from_task.taken.is_some() {
                continue;
            }
            if head.end {
                let chunks = from_task.open.remove(&head.attempt).unwrap_or_default();
                if chunks.len() != head.n as usize {
                    return Err(format!(
                        "{}-{} offset {offset}: task {}'s records of the batch at {at} end after {} of {} chunks: records of the repartition topic were lost (was it written by something else, or its retention too short?)",
                        self.topic,
                        self.partition,
                        head.task,
                        chunks.len(),
                        head.n
                    ));
                }
                from_task.taken = Some(chunks);
                from_task.open.clear();
            } else {
                let list = from_task.open.entry(head.attempt).or_default();
                if list.len() == head.n as usize {
                    list.push(m.payload().unwrap_or_default().to_vec());
                }
            }
        }
        let batch = self.pending.remove(&t).unwrap_or_default();
        self.pending = self.pending.split_off(&t);
        self.done_through = Some(t);
        let chunks = batch
            .tasks
            .into_values()
            .flat_map(|f| f.taken.unwrap_or_default())
            .collect();
        let resume = self
            .pending
            .values()
            .map(|p| p.first)
            .fold(self.next, i64::min);
        Ok(Received { chunks, resume })
    }
}
