//! The Kafka sink: any DStream's batches to a topic (or a topic per record), at-least-once,
//! idempotent, or exactly-once.
//!
//! Exactly-once (see `docs/kafka.md` for the protocol): each batch's records are produced in
//! one Kafka transaction (with the source's offsets, when linked), every record carrying the
//! batch time and the sink's id in headers. The sink's position (the offsets after its records
//! in each partition) is committed with the batch in the checkpoint. After a crash, the batches
//! after the last committed one are run again with the same records (the source replays their
//! offset ranges); before producing such a batch the sink reads its output partitions back from
//! its committed position, finds what of that batch is already there (committed transactions,
//! and on brokers that do not honour aborts, any record that reached the log), and produces only
//! the rest. A `read_committed` reader then sees each record of each batch once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use stream_core::{Batch, Data, Error, OutputError, Sink, SinkContext, Time};

use crate::produce::{self, Offsets, TrackedProducer, Tracker};
use crate::record::OutRecord;
use crate::source::KafkaSourceHandle;

/// Header naming the batch (its time in ms, decimal) a record was produced by.
pub const BATCH_HEADER: &str = "dstream.batch";
/// Header naming the sink (its transactional id) that produced a record.
pub const SINK_HEADER: &str = "dstream.sink";

/// How a sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// `acks=all`, retries may duplicate; a batch run again after a crash is produced again.
    #[default]
    AtLeastOnce,
    /// Kafka's idempotent producer: no duplicates from retries; a batch run again after a crash
    /// is produced again.
    Idempotent,
    /// One transaction per batch and recovery that produces only what a cut batch had not
    /// written: each record once for `read_committed` readers. Needs a checkpoint directory.
    ExactlyOnce,
}

type Encoder<T> = Arc<dyn Fn(&T) -> Result<OutRecord, String> + Send + Sync>;

/// Settings of a [`KafkaSink`].
///
/// ```no_run
/// use std::time::Duration;
/// use stream_core::prelude::*;
/// use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, SaveToKafka};
///
/// let ssc = StreamingContext::builder(Seconds(1)).checkpoint("/var/lib/counts").build()?;
/// let source = KafkaSource::strings("broker:9092").topics(["pages"]).build()?;
/// let handle = source.handle();
/// let counts = ssc.kafka_stream(source).map(|p| (p, 1i64)).reduce_by_key(|a, b| a + b);
/// counts.save_to_kafka(
///     KafkaSink::json("broker:9092", "page-counts")
///         .delivery(Delivery::ExactlyOnce)       // one transaction per batch
///         .transactional_id("page-counts-1")
///         .commit_offsets_of(&handle)            // the input offsets in the same transaction
///         .set("compression.type", "lz4")
///         .timeout(Duration::from_secs(30)),
/// )?;
/// # Ok::<(), stream_core::Error>(())
/// ```
pub struct KafkaSinkBuilder<T> {
    brokers: String,
    topic: String,
    encode: Encoder<T>,
    delivery: Delivery,
    transactional_id: Option<String>,
    source: Option<KafkaSourceHandle>,
    properties: Vec<(String, String)>,
    timeout: StdDuration,
}

impl<T> std::fmt::Debug for KafkaSinkBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkBuilder")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl<T: Data> KafkaSinkBuilder<T> {
    /// The delivery mode (default at-least-once).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The transactional id of an exactly-once sink (default: derived from the checkpoint
    /// directory and the sink's number); it must stay the same across restarts and be unique
    /// among producers.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// Exactly-once: also commit `source`'s offsets to its consumer group in each batch's
    /// transaction (Kafka's consume-transform-produce).
    pub fn commit_offsets_of(mut self, source: &KafkaSourceHandle) -> Self {
        self.source = Some(source.clone());
        self
    }

    /// A librdkafka producer property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// How long a batch may wait for the brokers before it fails (default 60 s).
    pub fn timeout(mut self, timeout: StdDuration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The sink, for [`DStream::save_to`](stream_core::DStream::save_to).
    pub fn build(self) -> KafkaSink<T> {
        KafkaSink {
            settings: self,
            producer: None,
            id: String::new(),
            group: None,
            position: Offsets::new(),
            recovering_after: None,
            read_back: HashMap::new(),
            read_topics: HashSet::new(),
            config: None,
            abandoned: false,
            last_written: None,
        }
    }
}

/// A record as the multiset of what a batch wrote: topic, key, value.
type Written = (String, Option<Vec<u8>>, Vec<u8>);

/// Writes a DStream's batches to Kafka.
pub struct KafkaSink<T> {
    settings: KafkaSinkBuilder<T>,
    producer: Option<Arc<TrackedProducer>>,
    /// The sink's id in the `dstream.sink` header (its transactional id when exactly-once).
    id: String,
    group: Option<Arc<ConsumerGroupMetadata>>,
    /// The offset after this sink's last record in each partition it wrote.
    position: Offsets,
    /// After a recovery: batches after this one may already be (partly) out.
    recovering_after: Option<Time>,
    /// What the output topics hold of the batches after the last committed one, by batch time.
    read_back: HashMap<i64, HashMap<Written, usize>>,
    read_topics: HashSet<String>,
    /// The producer's configuration, kept to make another after one is abandoned.
    config: Option<ClientConfig>,
    /// The producer was abandoned to a transactional call that never returned: the next batch
    /// makes a new one (which fences it).
    abandoned: bool,
    /// The last batch this sink wrote out in full (or the checkpoint's, at the start).
    last_written: Option<Time>,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.settings.topic)
            .field("delivery", &self.settings.delivery)
            .finish()
    }
}

fn sink_builder<T>(brokers: &str, topic: &str, encode: Encoder<T>) -> KafkaSinkBuilder<T> {
    KafkaSinkBuilder {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        encode,
        delivery: Delivery::AtLeastOnce,
        transactional_id: None,
        source: None,
        properties: Vec::new(),
        timeout: StdDuration::from_secs(60),
    }
}

impl<T: Data> KafkaSink<T> {
    /// Each record as a JSON value (no key) to `topic`.
    pub fn json(brokers: &str, topic: &str) -> KafkaSinkBuilder<T>
    where
        T: Serialize,
    {
        sink_builder(
            brokers,
            topic,
            Arc::new(|r: &T| OutRecord::json(r).map_err(|e| e.to_string())),
        )
    }

    /// Each record made into an [`OutRecord`] (key, value, and optionally its own topic) by
    /// `encode`; an `Err` fails the batch.
    pub fn with_encoder(
        brokers: &str,
        topic: &str,
        encode: impl Fn(&T) -> Result<OutRecord, String> + Send + Sync + 'static,
    ) -> KafkaSinkBuilder<T> {
        sink_builder(brokers, topic, Arc::new(encode))
    }

    fn error(&self, message: impl Into<String>) -> Error {
        OutputError::Custom {
            name: Sink::<T>::name(self),
            message: message.into(),
        }
        .into()
    }

    fn exactly_once(&self) -> bool {
        self.settings.delivery == Delivery::ExactlyOnce
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", format!("{}-readback", self.id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        c
    }

    /// Reads what the output topic `topic` holds of this sink's batches after the last
    /// committed one, from the sink's committed position (or the start of partitions it never
    /// wrote) to the end of each partition.
    fn read_back(&mut self, topic: &str, after: Time) -> Result<(), Error> {
        let consumer: BaseConsumer<crate::EndIsNoError> = self
            .consumer_config()
            .create_with_context(crate::EndIsNoError)
            .map_err(|e| self.error(format!("cannot create a consumer: {e}")))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), self.settings.timeout)
            .map_err(|e| self.error(format!("cannot read the partitions of {topic}: {e}")))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        drop(metadata);
        self.read_topics.insert(topic.to_string());
        if partitions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            // A partition this sink never wrote is read from offset 0, not `Offset::Beginning`
            // (a lookup that takes librdkafka about 500 ms); one whose start was deleted resets
            // to it (`auto.offset.reset`).
            let offset = Offset::Offset(
                self.position
                    .get(&(topic.to_string(), *p))
                    .copied()
                    .unwrap_or(0),
            );
            tpl.add_partition_offset(topic, *p, offset)
                .map_err(|e| self.error(format!("cannot assign {topic}-{p}: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.error(format!("cannot assign {topic}: {e}")))?;
        drop(tpl);
        let mut at_end: HashSet<i32> = HashSet::new();
        let deadline = Instant::now() + self.settings.timeout;
        let mut found = 0usize;
        // Every partition's end, then a short wait for anything still arriving.
        let mut quiet_until: Option<Instant> = None;
        loop {
            if Instant::now() > deadline {
                return Err(self.error(format!(
                    "reading back {topic} after a recovery: the end of its partitions was not reached within {:?}",
                    self.settings.timeout
                )));
            }
            if at_end.len() == partitions.len() {
                let q = *quiet_until
                    .get_or_insert_with(|| Instant::now() + StdDuration::from_millis(200));
                if Instant::now() >= q {
                    break;
                }
            }
            match consumer.poll(StdDuration::from_millis(50)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => tracing::warn!("reading back {topic}: {e}; retrying"),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    quiet_until = None;
                    let Some(headers) = m.headers() else {
                        continue;
                    };
                    let mut batch = None;
                    let mut ours = false;
                    for h in headers.iter() {
                        match (h.key, h.value) {
                            (BATCH_HEADER, Some(v)) => {
                                batch = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|s| s.parse::<i64>().ok())
                            }
                            (SINK_HEADER, Some(v)) => ours = v == self.id.as_bytes(),
                            _ => {}
                        }
                    }
                    if let (Some(b), true) = (batch, ours)
                        && b > after.millis()
                    {
                        found += 1;
                        let key = (
                            topic.to_string(),
                            m.key().map(<[u8]>::to_vec),
                            m.payload().unwrap_or_default().to_vec(),
                        );
                        *self.read_back.entry(b).or_default().entry(key).or_insert(0) += 1;
                    }
                }
            }
        }
        tracing::info!(
            "kafka sink {}: {found} records of batches after {after} already in {topic}",
            self.id
        );
        Ok(())
    }

    /// A producer with configuration `c`; with exactly-once delivery, its transactions
    /// initialised, which fences a previous producer of this sink (a crashed run, or one
    /// abandoned to a call the brokers never answered) and, on Kafka, aborts its open
    /// transaction.
    fn connect(&self, c: &ClientConfig) -> Result<Arc<TrackedProducer>, Error> {
        let producer: TrackedProducer = c
            .create_with_context(Tracker::default())
            .map_err(|e| self.error(format!("cannot create the producer: {e}")))?;
        if self.exactly_once() {
            produce::init_transactions(&producer, &self.settings.topic, 0, self.settings.timeout)
                .map_err(|e| {
                self.error(format!(
                    "cannot initialise transactions on {}: {e}",
                    self.settings.brokers
                ))
            })?;
        }
        Ok(Arc::new(producer))
    }

    /// After a producer was abandoned: a new one, and the batches after the last one written
    /// out in full treated as a recovery's (the abandoned call may yet have committed one).
    fn reconnect(&mut self) -> Result<(), Error> {
        let c = self
            .config
            .clone()
            .ok_or_else(|| self.error("the sink is not open"))?;
        let producer = self.connect(&c)?;
        tracing::info!(
            "kafka sink {}: a new producer replaces the one abandoned",
            self.id
        );
        self.producer = Some(producer);
        self.abandoned = false;
        self.recovering_after = self.last_written;
        self.read_back.clear();
        self.read_topics.clear();
        Ok(())
    }

    fn begin(&self, producer: &TrackedProducer) -> Result<(), Error> {
        producer
            .begin_transaction()
            .map_err(|e| self.error(format!("cannot begin a transaction: {e}")))
    }

    fn produce(
        &self,
        producer: &TrackedProducer,
        records: &[Written],
        t: Time,
    ) -> Result<(), Error> {
        let batch = t.millis().to_string();
        for (topic, key, value) in records {
            let headers = produce::headers(&[(BATCH_HEADER, &batch), (SINK_HEADER, &self.id)]);
            produce::send(producer, topic, key.as_deref(), Some(value), headers)
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Adds the source's offsets to the transaction and commits it, each call bounded by
    /// [`produce::bounded`]: `Err((error, usable))`, `usable` false when a call was left
    /// running and the producer must not be used again.
    fn commit(&self, producer: &Arc<TrackedProducer>, t: Time) -> Result<(), (Error, bool)> {
        let timeout = self.settings.timeout;
        if let (Some(source), Some(group)) = (&self.settings.source, &self.group)
            && let Some(ranges) = source.offset_ranges(t)
        {
            let mut tpl = TopicPartitionList::new();
            for r in &ranges {
                let _ = tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.until));
            }
            let group = Arc::clone(group);
            let what = format!("{}: send_offsets_to_transaction", self.id);
            produce::bounded(producer, timeout, &what, move |p| {
                p.send_offsets_to_transaction(&tpl, &group, timeout)
            })
            .map_err(|e| {
                let usable = e.usable();
                let e = self.error(format!(
                    "cannot add the source's offsets to the transaction: {e}"
                ));
                (e, usable)
            })?;
        }
        let what = format!("{}: commit_transaction", self.id);
        produce::bounded(producer, timeout, &what, move |p| {
            produce::commit_transaction(p, timeout)
        })
        .map_err(|e| {
            let usable = e.usable();
            let e = self.error(format!(
                "cannot commit the transaction of the batch at {t}: {e}"
            ));
            (e, usable)
        })
    }
}

/// `stream.save_to_kafka(KafkaSink::json(brokers, topic))`: Kafka output for any DStream.
pub trait SaveToKafka<T> {
    /// Writes every batch to Kafka with `sink`'s settings (as `save_to(sink.build())`).
    fn save_to_kafka(&self, sink: KafkaSinkBuilder<T>) -> Result<(), Error>;
}

impl<T: Data> SaveToKafka<T> for stream_core::DStream<T> {
    fn save_to_kafka(&self, sink: KafkaSinkBuilder<T>) -> Result<(), Error> {
        self.save_to(sink.build())
    }
}

/// A stable, short name for a checkpoint directory.
fn fingerprint(path: &std::path::Path) -> String {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.to_string_lossy().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl<T: Data> Sink<T> for KafkaSink<T> {
    fn name(&self) -> String {
        format!("kafka sink ({})", self.settings.topic)
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<(), Error> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.settings.brokers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                self.settings.timeout.as_millis().to_string(),
            );
        match self.settings.delivery {
            Delivery::AtLeastOnce => {
                c.set("enable.idempotence", "false");
                self.id = format!("dstream-sink{}", ctx.index);
            }
            Delivery::Idempotent => {
                c.set("enable.idempotence", "true");
                self.id = format!("dstream-sink{}", ctx.index);
            }
            Delivery::ExactlyOnce => {
                let id = match (&self.settings.transactional_id, &ctx.checkpoint_dir) {
                    // A task of a scaled-out application: the same id on whichever instance
                    // runs the task, so that its next owner fences this one.
                    (given, Some(_)) if ctx.task.is_some() => {
                        let task = ctx.task.as_ref().expect("matched");
                        match given {
                            Some(id) => format!("{id}-{}", task.task),
                            None => format!("{}-{}-sink{}", task.app, task.task, ctx.index),
                        }
                    }
                    (Some(id), Some(_)) => id.clone(),
                    (None, Some(dir)) => format!("dstream-{}-sink{}", fingerprint(dir), ctx.index),
                    (_, None) => {
                        return Err(self.error(
                            "exactly-once delivery needs a checkpoint directory (StreamingContext::checkpoint), where the sink keeps its position with each batch",
                        ));
                    }
                };
                c.set("enable.idempotence", "true")
                    .set("transactional.id", &id)
                    .set("transaction.timeout.ms", "60000");
                self.id = id;
            }
        }
        for (k, v) in &self.settings.properties {
            c.set(k, v);
        }
        let producer = self.connect(&c)?;
        self.config = Some(c);
        if self.exactly_once() {
            if let Some(source) = &self.settings.source {
                // A task commits its offsets to the application's group. The member's own
                // metadata is not used: its generation changes with every rebalance, and a
                // commit with an old one fails the batch; a zombie is fenced by the task's
                // transactional id instead (the next owner's init_transactions).
                let group = match &ctx.task {
                    Some(task) => task.app.clone(),
                    None => source.group_id().to_string(),
                };
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &self.settings.brokers)
                    .set("group.id", &group)
                    .create()
                    .map_err(|e| self.error(format!("cannot create a consumer: {e}")))?;
                self.group = consumer.group_metadata().map(Arc::new);
            }
            self.recovering_after = ctx.last_committed;
        }
        self.last_written = ctx.last_committed;
        if let Some(p) = &ctx.position {
            let list: Vec<(String, i32, i64)> = postcard::from_bytes(p).map_err(|e| {
                self.error(format!("its checkpointed position does not decode: {e}"))
            })?;
            self.position = list.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
        }
        self.producer = Some(producer);
        Ok(())
    }

    fn write(&mut self, batch: Batch<T>, time: Time) -> Result<(), Error> {
        let mut records: Vec<Written> = Vec::new();
        for part in batch.into_partitions() {
            for r in &part {
                let out = (self.settings.encode)(r).map_err(|e| {
                    self.error(format!(
                        "cannot encode a record of the batch at {time}: {e}"
                    ))
                })?;
                records.push((
                    out.topic.unwrap_or_else(|| self.settings.topic.clone()),
                    out.key,
                    out.value,
                ));
            }
        }
        if self.abandoned {
            self.reconnect()?;
        }
        if let Some(after) = self.recovering_after {
            // A batch run again: produce only what is not out already.
            let topics: HashSet<String> = records.iter().map(|r| r.0.clone()).collect();
            for topic in topics {
                if !self.read_topics.contains(&topic) {
                    self.read_back(&topic, after)?;
                }
            }
            if let Some(mut present) = self.read_back.remove(&time.millis()) {
                let before = records.len();
                records.retain(|r| match present.get_mut(r) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                });
                tracing::info!(
                    "kafka sink {}: the batch at {time} was cut by a crash; {} of its {before} records were out already, producing the other {}",
                    self.id,
                    before - records.len(),
                    records.len()
                );
            }
            if self.read_back.keys().all(|b| *b <= time.millis()) {
                self.recovering_after = None;
                self.read_back.clear();
                self.read_topics.clear();
            }
        }
        let producer = self
            .producer
            .take()
            .ok_or_else(|| self.error("the sink is not open"))?;
        let mut usable = true;
        let result = (|| {
            if self.exactly_once() {
                self.begin(&producer)?;
                let sent = self
                    .produce(&producer, &records, time)
                    .map_err(|e| (e, true))
                    .and_then(|()| self.commit(&producer, time));
                if let Err((e, still)) = sent {
                    usable = still;
                    if still {
                        let timeout = self.settings.timeout;
                        let what = format!("{}: abort_transaction", self.id);
                        if let Err(a) = produce::bounded(&producer, timeout, &what, move |p| {
                            p.abort_transaction(timeout)
                        }) {
                            usable = a.usable();
                        }
                        let _ = produce::flush(&producer, StdDuration::from_secs(1));
                    }
                    return Err(e);
                }
                produce::flush(&producer, self.settings.timeout).map_err(|e| self.error(e))
            } else {
                self.produce(&producer, &records, time)?;
                produce::flush(&producer, self.settings.timeout).map_err(|e| self.error(e))
            }
        })();
        for (k, o) in produce::delivered(&producer) {
            let next = self.position.entry(k).or_insert(0);
            *next = (*next).max(o);
        }
        if usable {
            self.producer = Some(producer);
        } else {
            // A transactional call still runs on its own thread with the producer; the next
            // batch opens the sink again, with a new producer that fences this one.
            tracing::warn!(
                "kafka sink {}: its producer is abandoned to a call the brokers never answered",
                self.id
            );
            self.abandoned = true;
        }
        if result.is_ok() {
            self.last_written = Some(time);
        }
        result
    }

    fn position(&self) -> Option<Vec<u8>> {
        let mut list: Vec<(&str, i32, i64)> = self
            .position
            .iter()
            .map(|((t, p), o)| (t.as_str(), *p, *o))
            .collect();
        list.sort();
        postcard::to_stdvec(&list).ok()
    }

    fn close(&mut self) {
        if let Some(p) = self.producer.take() {
            let _ = produce::flush(&p, StdDuration::from_secs(5));
        }
    }
}
