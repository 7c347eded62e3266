//! The Kafka direct source: Spark's `KafkaUtils.createDirectStream`, with the offsets in the
//! checkpoint.
//!
//! Each batch takes, from every assigned partition, the records after the partition's last
//! offset, up to the rate limit: the batch's offset range `[from, until)` per partition, one
//! Kafka partition per batch partition. The offsets after each batch are the source's position:
//! written ahead of processing and committed with the batch's state (stream-core's checkpoint),
//! so a recovery resumes, and replays a cut batch, from the checkpoint, never from Kafka's group
//! offsets. Group offsets are committed too after each durable batch, for lag tools.
//!
//! The offset range is what was read, not what the broker's high watermark said: records are
//! fetched ahead by librdkafka's consumer and taken at each batch time, so a broker whose
//! watermark is wrong (tansu) still gives exact ranges.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use stream_core::text::Text;
use stream_core::{
    Batch, DStream, Data, Error, SourceContext, SourceError, StreamingContext, Time,
};

use crate::produce::{self, TrackedProducer, Tracker};
use crate::rate::PidRateEstimator;
use crate::record::{KafkaRecord, RawRecord, decode_json, decode_text, decode_texts};
use crate::scale::TaskLink;

/// Which partitions a source reads.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// Every partition of these topics, and partitions added to them later.
    Topics(Vec<String>),
    /// Every partition of every topic whose whole name matches this regular expression, and
    /// topics created later that match.
    Pattern(String),
    /// Exactly these partitions.
    Assign(Vec<(String, i32)>),
}

/// Where a partition is read from when the checkpoint does not say.
#[derive(Debug, Clone, Default)]
pub enum StartingOffsets {
    /// The oldest record still in the partition (the default).
    #[default]
    Earliest,
    /// The end: only records produced after the start.
    Latest,
    /// These offsets; partitions not listed start at the earliest.
    Explicit(BTreeMap<(String, i32), i64>),
}

/// The records of one partition in one batch (Spark's `OffsetRange`): offsets `from` (included)
/// to `until` (excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OffsetRange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset of the batch.
    pub from: i64,
    /// The offset after the batch's last record.
    pub until: i64,
}

impl OffsetRange {
    /// How many offsets the range spans.
    pub fn count(&self) -> i64 {
        self.until - self.from
    }
}

/// One partition, as the source sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset a batch takes.
    pub next_offset: i64,
    /// Records fetched and waiting for a batch.
    pub buffered: usize,
    /// Records in the partition after `next_offset`, by the broker's last reported high
    /// watermark (when it reported one).
    pub lag: Option<i64>,
}

/// What a source has done so far: for metrics and dashboards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KafkaSourceStatus {
    /// Records delivered to batches.
    pub records: u64,
    /// Records whose value failed to decode.
    pub decode_failures: u64,
    /// Of those, records written to the dead-letter topic.
    pub dead_lettered: u64,
    /// The current limit of the input rate (records/s, all partitions), with a rate limit or
    /// backpressure; `None` when unlimited.
    pub rate_limit: Option<f64>,
    /// Every assigned partition.
    pub partitions: Vec<PartitionStatus>,
    /// The error that stops the source (an offset out of range, a deleted topic), or else the
    /// last error the consumer reported while no records came (cleared once they flow again).
    pub last_error: Option<String>,
}

/// The consumer's context: keeps the high watermarks librdkafka's statistics report.
#[derive(Default)]
pub(crate) struct Watermarks(Mutex<HashMap<(String, i32), i64>>);

impl rdkafka::ClientContext for Watermarks {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut w = lock(&self.0);
        for (name, topic) in statistics.topics {
            for (id, p) in topic.partitions {
                if id >= 0 && p.hi_offset >= 0 {
                    w.insert((name.clone(), id), p.hi_offset);
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Watermarks {}

type KafkaConsumer = BaseConsumer<Watermarks>;

/// Shared between the source (moved into the context) and its handle.
#[derive(Default)]
struct Shared {
    ranges: Mutex<BTreeMap<Time, Vec<OffsetRange>>>,
    status: Mutex<KafkaSourceStatus>,
    /// The backpressure estimate, records/s.
    estimate: Mutex<Option<f64>>,
    estimator: Mutex<Option<PidRateEstimator>>,
}

/// Lets a consumer fetch again as soon as its queue is read. With librdkafka's defaults a
/// consumer that has 100,000 records queued (`queued.min.messages`) waits a second
/// (`fetch.queue.backoff.ms`) before it fetches again, whether or not they were read meanwhile:
/// a source of small records then read about 0.2M a second whatever the broker could give
/// (BENCHMARKS.md, "Kafka end to end"). The source bounds what it holds itself (`PAUSE_AT`),
/// and librdkafka's queue stays under `queued.max.messages.kbytes` (64 MB). A source's
/// `.set(...)` comes after and can change it.
pub(crate) fn fetch_promptly(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("fetch.queue.backoff.ms", "10")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many batches' offset ranges a handle keeps.
const KEEP_RANGES: usize = 1000;
/// A partition with this many records fetched and not yet taken stops fetching until drained.
const PAUSE_AT: usize = 200_000;

/// The offset ranges and status of a running source (Spark's `HasOffsetRanges`, plus metrics).
#[derive(Clone)]
pub struct KafkaSourceHandle {
    shared: Arc<Shared>,
    group_id: String,
}

impl std::fmt::Debug for KafkaSourceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceHandle")
            .field("group_id", &self.group_id)
            .finish()
    }
}

impl KafkaSourceHandle {
    /// The offset ranges of the batch at `time` (of the last 1000 batches).
    pub fn offset_ranges(&self, time: Time) -> Option<Vec<OffsetRange>> {
        lock(&self.shared.ranges).get(&time).cloned()
    }

    /// What the source has done so far.
    pub fn status(&self) -> KafkaSourceStatus {
        lock(&self.shared.status).clone()
    }

    /// The consumer group the source commits its offsets to.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}

/// How a source turns records into `T`s: one at a time (the decoders users give), or a
/// partition's records of a batch together ([`KafkaSource::text`], which cuts them from shared
/// buffers).
enum Decoder<T> {
    Each(DecodeEach<T>),
    Together(DecodeTogether<T>),
}

/// A decoder of one record.
type DecodeEach<T> = Arc<dyn Fn(&RawRecord<'_>) -> Result<T, String> + Send + Sync>;
/// A decoder of a partition's records of a batch: a result for each.
type DecodeTogether<T> = Arc<dyn Fn(&[RawRecord<'_>]) -> Vec<Result<T, String>> + Send + Sync>;

impl<T> Clone for Decoder<T> {
    fn clone(&self) -> Self {
        match self {
            Decoder::Each(d) => Decoder::Each(d.clone()),
            Decoder::Together(d) => Decoder::Together(d.clone()),
        }
    }
}

impl<T> Decoder<T> {
    fn each(decode: impl Fn(&RawRecord<'_>) -> Result<T, String> + Send + Sync + 'static) -> Self {
        Decoder::Each(Arc::new(decode))
    }

    /// Decodes `records` (of one partition, in offset order): a result for each. A decoder
    /// that panics has failed to decode the record, like one that says so (all the records
    /// it was given, for one that decodes them together).
    fn decode(&self, records: &[RawRecord<'_>]) -> Vec<Result<T, String>> {
        let panicked =
            |p: Box<dyn std::any::Any + Send>| format!("the decoder panicked: {}", panic_text(&*p));
        match self {
            Decoder::Each(d) => records
                .iter()
                .map(|r| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d(r)))
                        .unwrap_or_else(|p| Err(panicked(p)))
                })
                .collect(),
            Decoder::Together(d) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d(records))) {
                    Ok(v) if v.len() == records.len() => v,
                    Ok(v) => {
                        let e = format!(
                            "the decoder gave {} values for {} records",
                            v.len(),
                            records.len()
                        );
                        records.iter().map(|_| Err(e.clone())).collect()
                    }
                    Err(p) => {
                        let e = panicked(p);
                        records.iter().map(|_| Err(e.clone())).collect()
                    }
                }
            }
        }
    }
}

/// Settings of a [`KafkaSource`]; made by [`KafkaSource::strings`], [`KafkaSource::json`],
/// [`KafkaSource::bytes`] or [`KafkaSource::with_decoder`].
///
/// ```no_run
/// use std::time::Duration;
/// use stream_core::prelude::*;
/// use stream_kafka::{KafkaSource, KafkaStreams, StartingOffsets};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct Click { user: String, page: String }
///
/// let ssc = StreamingContext::builder(Seconds(1)).checkpoint("/var/lib/clicks").build()?;
/// let source = KafkaSource::<Click>::json("broker1:9092,broker2:9092")
///     .topics(["clicks"])
///     .group_id("click-counts")               // where offsets are committed, for lag tools
///     .starting_offsets(StartingOffsets::Latest)
///     .max_rate_per_partition(50_000.0)       // records per second and partition
///     .backpressure(None)                     // Spark's PID rate controller
///     .dead_letter_topic("clicks-dead-letters") // records that do not decode
///     .set("security.protocol", "SASL_SSL")   // any librdkafka property
///     .broker_timeout(Duration::from_secs(60))
///     .build()?;
/// let handle = source.handle();                // offsets per batch, status, lag
/// let clicks = ssc.kafka_stream(source);
/// clicks.map(|c| (c.page, 1)).reduce_by_key(|a, b| a + b).print();
/// # let _ = handle;
/// # Ok::<(), stream_core::Error>(())
/// ```
pub struct KafkaSourceBuilder<T> {
    brokers: String,
    subscription: Option<Subscription>,
    group_id: Option<String>,
    starting: StartingOffsets,
    max_rate_per_partition: Option<f64>,
    backpressure: bool,
    initial_rate: Option<f64>,
    dead_letter_topic: String,
    decode: Decoder<T>,
    properties: Vec<(String, String)>,
    metadata_refresh: StdDuration,
    broker_timeout: StdDuration,
}

impl<T> std::fmt::Debug for KafkaSourceBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceBuilder")
            .field("brokers", &self.brokers)
            .field("subscription", &self.subscription)
            .finish()
    }
}

impl<T: Data> KafkaSourceBuilder<T> {
    /// Reads these topics (all their partitions, and partitions added later).
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.subscription = Some(Subscription::Topics(
            topics.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Reads every topic whose name matches `regex` (whole name), including topics created
    /// while the pipeline runs.
    pub fn pattern(mut self, regex: impl Into<String>) -> Self {
        self.subscription = Some(Subscription::Pattern(regex.into()));
        self
    }

    /// Reads exactly these partitions.
    pub fn assign<S: Into<String>>(
        mut self,
        partitions: impl IntoIterator<Item = (S, i32)>,
    ) -> Self {
        self.subscription = Some(Subscription::Assign(
            partitions.into_iter().map(|(t, p)| (t.into(), p)).collect(),
        ));
        self
    }

    /// The consumer group offsets are committed to (default: `dstream-` and the topics).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where partitions start when the checkpoint has no position for them.
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// At most this many records per second per partition (Spark's
    /// `spark.streaming.kafka.maxRatePerPartition`): a batch takes at most rate × interval
    /// records from each partition.
    pub fn max_rate_per_partition(mut self, records_per_second: f64) -> Self {
        self.max_rate_per_partition = Some(records_per_second.max(0.0));
        self
    }

    /// Adapts the input rate to processing speed with Spark's PID estimator
    /// (`spark.streaming.backpressure.enabled`); `initial_rate` (records/s) applies until the
    /// first estimate. Needs the stream made by [`KafkaStreams::kafka_stream`].
    pub fn backpressure(mut self, initial_rate: Option<f64>) -> Self {
        self.backpressure = true;
        self.initial_rate = initial_rate;
        self
    }

    /// The topic records that fail to decode go to (default `dstream-dead-letters`); it must
    /// exist (or the broker create topics on demand).
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = topic.into();
        self
    }

    /// A librdkafka consumer property (`security.protocol`, `sasl.*`, `isolation.level`, ...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// How often new partitions and topics are looked for (default 5 s).
    pub fn metadata_refresh(mut self, every: StdDuration) -> Self {
        self.metadata_refresh = every;
        self
    }

    /// How long the brokers may be unreachable before batches fail with an error (default 30 s;
    /// until then batches are empty and nothing is skipped).
    pub fn broker_timeout(mut self, timeout: StdDuration) -> Self {
        self.broker_timeout = timeout;
        self
    }

    /// Records with their topic, partition, offset, timestamp and key (Spark's
    /// `ConsumerRecord`), instead of values alone.
    pub fn with_metadata(self) -> KafkaSourceBuilder<KafkaRecord<T>> {
        fn with<T>(r: &RawRecord<'_>, value: T) -> KafkaRecord<T> {
            KafkaRecord {
                topic: r.topic.to_string(),
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value,
            }
        }
        let decode = match self.decode {
            Decoder::Each(d) => Decoder::each(move |r: &RawRecord<'_>| Ok(with(r, d(r)?))),
            Decoder::Together(d) => Decoder::Together(Arc::new(move |rs: &[RawRecord<'_>]| {
                d(rs)
                    .into_iter()
                    .zip(rs)
                    .map(|(v, r)| v.map(|v| with(r, v)))
                    .collect()
            })),
        };
        KafkaSourceBuilder {
            brokers: self.brokers,
            subscription: self.subscription,
            group_id: self.group_id,
            starting: self.starting,
            max_rate_per_partition: self.max_rate_per_partition,
            backpressure: self.backpressure,
            initial_rate: self.initial_rate,
            dead_letter_topic: self.dead_letter_topic,
            decode,
            properties: self.properties,
            metadata_refresh: self.metadata_refresh,
            broker_timeout: self.broker_timeout,
        }
    }

    /// The source; fails on settings that cannot work (no subscription, a bad pattern).
    pub fn build(self) -> Result<KafkaSource<T>, Error> {
        let invalid = |m: String| SourceError::Custom {
            name: "kafka".into(),
            message: m,
        };
        let subscription = self.subscription.clone().ok_or_else(|| {
            invalid("no topics: call .topics([...]), .pattern(regex) or .assign([...])".into())
        })?;
        let pattern = match &subscription {
            Subscription::Pattern(p) => Some(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| invalid(format!("the topic pattern {p:?} is invalid: {e}")))?,
            ),
            Subscription::Topics(t) if t.is_empty() => {
                return Err(invalid("the list of topics is empty".into()).into());
            }
            _ => None,
        };
        let described = match &subscription {
            Subscription::Topics(t) => t.join(","),
            Subscription::Pattern(p) => format!("pattern {p}"),
            Subscription::Assign(a) => a
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let group_id = self
            .group_id
            .clone()
            .unwrap_or_else(|| format!("dstream-{described}"));
        let shared = Arc::new(Shared::default());
        if self.backpressure {
            *lock(&shared.estimate) = self.initial_rate;
        }
        Ok(KafkaSource {
            name: format!("kafka[{described}]"),
            group_id,
            subscription,
            pattern,
            settings: self,
            shared,
            consumer: None,
            dead_letters: None,
            fetch: Arc::new(Mutex::new(Fetch::default())),
            poll_gate: Arc::new(Mutex::new(())),
            fetcher: None,
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            last_refresh: None,
            task: None,
        })
    }
}

/// A record fetched and not yet in a batch.
#[derive(Clone)]
struct Fetched {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Fetched {
    fn from_message(m: &rdkafka::message::BorrowedMessage<'_>) -> Fetched {
        Fetched {
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        }
    }

    /// The record as a decoder sees it.
    fn raw<'a>(&'a self, topic: &'a str, partition: i32) -> RawRecord<'a> {
        RawRecord {
            topic,
            partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
        }
    }
}

type Tp = (String, i32);

/// The Kafka direct source. Build one, then `ssc.kafka_stream(source)`.
pub struct KafkaSource<T> {
    name: String,
    group_id: String,
    subscription: Subscription,
    pattern: Option<regex::Regex>,
    settings: KafkaSourceBuilder<T>,
    shared: Arc<Shared>,
    consumer: Option<Arc<KafkaConsumer>>,
    dead_letters: Option<TrackedProducer>,
    /// What the fetcher thread took from the consumer, and where batches stand.
    fetch: Arc<Mutex<Fetch>>,
    /// Held by the fetcher while it polls and stores, and by a re-assignment: so that no record
    /// polled under one assignment is stored under the next.
    poll_gate: Arc<Mutex<()>>,
    fetcher: Option<std::thread::JoinHandle<()>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    last_refresh: Option<Instant>,
    /// Set when the source belongs to a task of a scaled-out application.
    task: Option<TaskMode>,
}

/// A source reading one task's partitions (see [`crate::ScaleOut`]).
struct TaskMode {
    task: String,
    link: Option<Arc<TaskLink>>,
    /// Why the source cannot be part of the task, reported at start.
    error: Option<String>,
}

/// Shared by the source and its fetcher thread.
#[derive(Default)]
struct Fetch {
    /// The next offset a batch takes, per assigned partition.
    next: BTreeMap<Tp, i64>,
    /// Records fetched and not yet taken, per partition, in offset order.
    pending: HashMap<Tp, VecDeque<Fetched>>,
    paused: HashSet<Tp>,
    /// Bumped at each re-assignment (records taken before it are not put back after it).
    generation: u64,
    /// Since when the consumer has reported errors without records (and the last error).
    unreachable_since: Option<(Instant, String)>,
    /// An error that loses records if ignored (an offset out of range, a deleted topic).
    fatal: Option<String>,
    /// When the last batch took its records, and the batch interval.
    taken: Option<(Instant, StdDuration)>,
}

impl Fetch {
    /// Whether the batches have stopped taking records (the generator waits for processing
    /// to catch up: `max_queued_batches`): none took any for two intervals.
    fn batches_waiting(&self) -> bool {
        self.taken.is_some_and(|(at, interval)| {
            at.elapsed() > (2 * interval).max(StdDuration::from_millis(200))
        })
    }

    /// Takes a polled message (fetcher thread).
    fn push(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let tp = (m.topic().to_string(), m.partition());
        let Some(next) = self.next.get(&tp) else {
            return;
        };
        let q = self.pending.entry(tp).or_default();
        let expected = q.back().map_or(*next, |f| f.offset + 1);
        if m.offset() < expected {
            // Fetched again after a re-assignment: already pending or taken.
            return;
        }
        q.push_back(Fetched::from_message(m));
    }
}

/// Pauses the partitions that hold `PAUSE_AT` records not taken by a batch (when `hold`), and
/// resumes the paused ones that hold less than half of it. Called by each batch after taking
/// its records (holding: a rate limit leaves records behind), and by the fetcher as it takes
/// records, holding only while the batches wait (the generator behind processing): a backlog
/// read at the broker's speed would otherwise fill memory until they go on. The fetcher does
/// not hold while batches are cut on time, so that a batch is never capped at `PAUSE_AT`
/// records a partition.
fn flow_control(consumer: &KafkaConsumer, f: &mut Fetch, hold: bool) {
    let mut pause = TopicPartitionList::new();
    let mut resume = TopicPartitionList::new();
    for (tp, q) in &f.pending {
        if hold && q.len() >= PAUSE_AT && !f.paused.contains(tp) {
            let _ = pause.add_partition(&tp.0, tp.1);
        } else if q.len() < PAUSE_AT / 2 && f.paused.contains(tp) {
            let _ = resume.add_partition(&tp.0, tp.1);
        }
    }
    if pause.count() > 0 && consumer.pause(&pause).is_ok() {
        for e in pause.elements() {
            f.paused.insert((e.topic().to_string(), e.partition()));
        }
    }
    if resume.count() > 0 && consumer.resume(&resume).is_ok() {
        for e in resume.elements() {
            f.paused.remove(&(e.topic().to_string(), e.partition()));
        }
    }
}

/// The fetcher thread: moves what the consumer fetched into `fetch`, so that fetching never
/// waits for batches (librdkafka fetches far less ahead when not polled).
fn fetch_loop(
    consumer: Arc<KafkaConsumer>,
    fetch: Arc<Mutex<Fetch>>,
    poll_gate: Arc<Mutex<()>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    name: String,
) {
    while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
        let _gate = lock(&poll_gate);
        let Some(first) = consumer.poll(StdDuration::from_millis(50)) else {
            continue;
        };
        let mut f = lock(&fetch);
        let mut got = 0usize;
        let mut result = Some(first);
        while let Some(r) = result.take() {
            match r {
                Ok(m) => {
                    got += 1;
                    f.push(&m);
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(KafkaError::MessageConsumption(code))
                    if matches!(
                        code,
                        RDKafkaErrorCode::OffsetOutOfRange
                            | RDKafkaErrorCode::AutoOffsetReset
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownPartition
                    ) =>
                {
                    if f.fatal.is_none() {
                        f.fatal = Some(format!(
                            "{code}: the next records of a partition cannot be read (deleted by retention, or the topic deleted); positions: {:?}",
                            f.next
                        ));
                    }
                }
                Err(e) => {
                    if f.unreachable_since.is_none() {
                        tracing::warn!("{name}: {e}; retrying");
                        f.unreachable_since = Some((Instant::now(), e.to_string()));
                    }
                }
            }
            // Whatever else is ready, under the same lock.
            if got < 10_000 {
                result = consumer.poll(StdDuration::ZERO);
            }
        }
        if got > 0 {
            f.unreachable_since = None;
            let hold = f.batches_waiting();
            flow_control(&consumer, &mut f, hold);
        }
    }
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("name", &self.name)
            .finish()
    }
}

fn builder<T>(brokers: &str, decode: Decoder<T>) -> KafkaSourceBuilder<T> {
    KafkaSourceBuilder {
        brokers: brokers.to_string(),
        subscription: None,
        group_id: None,
        starting: StartingOffsets::Earliest,
        max_rate_per_partition: None,
        backpressure: false,
        initial_rate: None,
        dead_letter_topic: "dstream-dead-letters".into(),
        decode,
        properties: Vec::new(),
        metadata_refresh: StdDuration::from_secs(5),
        broker_timeout: StdDuration::from_secs(30),
    }
}

impl KafkaSource<String> {
    /// Values as UTF-8 text (a value that is not is a decode failure).
    pub fn strings(brokers: &str) -> KafkaSourceBuilder<String> {
        builder(brokers, Decoder::each(decode_text))
    }
}

impl KafkaSource<Text> {
    /// Values as UTF-8 [`Text`] (a value that is not is a decode failure), cut from buffers of
    /// about 64 KiB that a batch's records of a partition share: one allocation per buffer
    /// instead of one per record, and words split from them with
    /// [`text::split`](stream_core::text::split) copy nothing. As with the text files of
    /// [`text_files_of`](stream_core::StreamingContext::text_files_of), a `Text` kept for long
    /// (state, a collected value) keeps its whole buffer: [`Text::detached`] copies it out, and
    /// [`strings`](KafkaSource::strings) is the right source for records that live long.
    ///
    /// ```no_run
    /// use stream_core::prelude::*;
    /// use stream_core::text::{self, Text};
    /// use stream_kafka::{KafkaSource, KafkaStreams};
    ///
    /// let ssc = StreamingContext::builder(Seconds(1)).build()?;
    /// let tweets = ssc.kafka_stream(KafkaSource::text("localhost:9092").topics(["tweets"]).build()?);
    /// let tags = tweets.flat_map(|t: Text| text::split(t, ' ').filter(|w| w.starts_with('#')));
    /// tags.count_by_value().print();
    /// # Ok::<(), stream_core::Error>(())
    /// ```
    pub fn text(brokers: &str) -> KafkaSourceBuilder<Text> {
        builder(brokers, Decoder::Together(Arc::new(decode_texts)))
    }
}

impl KafkaSource<Vec<u8>> {
    /// Values as bytes (a record without a value is a decode failure).
    pub fn bytes(brokers: &str) -> KafkaSourceBuilder<Vec<u8>> {
        builder(
            brokers,
            Decoder::each(|r: &RawRecord<'_>| {
                r.value
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| "the record has no value (a tombstone)".to_string())
            }),
        )
    }
}

impl<T: Data> KafkaSource<T> {
    /// Values decoded from JSON into `T`.
    pub fn json(brokers: &str) -> KafkaSourceBuilder<T>
    where
        T: DeserializeOwned,
    {
        builder(brokers, Decoder::each(decode_json::<T>))
    }

    /// Records decoded by `decode`; an `Err` is a decode failure (to the dead-letter topic).
    pub fn with_decoder(
        brokers: &str,
        decode: impl Fn(&RawRecord<'_>) -> Result<T, String> + Send + Sync + 'static,
    ) -> KafkaSourceBuilder<T> {
        builder(brokers, Decoder::each(decode))
    }

    /// The handle to the source's offset ranges and status, usable while it runs.
    pub fn handle(&self) -> KafkaSourceHandle {
        KafkaSourceHandle {
            shared: self.shared.clone(),
            group_id: self.group_id.clone(),
        }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        SourceError::Custom {
            name: self.name.clone(),
            message: message.into(),
        }
        .into()
    }

    /// Makes the source read only the task's partitions of its topics, with the application's
    /// consumer group.
    fn enter_task(&mut self, scope: &stream_core::TaskScope) {
        let mine: Vec<Tp> = scope
            .partitions
            .iter()
            .filter(|(t, _)| match (&self.subscription, &self.pattern) {
                (Subscription::Topics(names), _) => names.contains(t),
                (_, Some(re)) => re.is_match(t),
                _ => false,
            })
            .cloned()
            .collect();
        let error = if matches!(self.subscription, Subscription::Assign(_)) {
            Some(
                "a source with assigned partitions (.assign) cannot be part of a scaled-out application: read the task topics with .topics([...])"
                    .to_string(),
            )
        } else if mine.is_empty() {
            Some(format!(
                "it reads none of the application's task topics ({}): every Kafka source of a scaled-out application reads some of them (a source reading another topic would read it whole in every task)",
                scope
                    .partitions
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            None
        };
        if error.is_none() {
            self.subscription = Subscription::Assign(mine);
        }
        self.group_id = scope.app.clone();
        self.task = Some(TaskMode {
            task: scope.task.clone(),
            link: scope.link::<TaskLink>(),
            error,
        });
    }

    /// The group's committed offset of each of these partitions (task mode).
    fn group_offsets(
        &self,
        consumer: &KafkaConsumer,
        partitions: &[Tp],
    ) -> Result<BTreeMap<Tp, i64>, Error> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            let _ = tpl.add_partition(t, *p);
        }
        let committed = consumer
            .committed_offsets(tpl, self.timeout())
            .map_err(|e| {
                self.error(format!(
                    "cannot read group {}'s committed offsets from {}: {e}",
                    self.group_id, self.settings.brokers
                ))
            })?;
        let out = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect();
        // (The list is dropped here, before the consumer: see BUILD.md on the drop hang.)
        drop(committed);
        Ok(out)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        fetch_promptly(&mut c);
        c.set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            // A position the broker no longer has is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set("socket.timeout.ms", "10000");
        for (k, v) in &self.settings.properties {
            c.set(k, v);
        }
        c
    }

    fn timeout(&self) -> StdDuration {
        self.settings.broker_timeout.min(StdDuration::from_secs(10))
    }

    /// The partitions the subscription covers now.
    fn discover(&self, consumer: &KafkaConsumer) -> Result<Vec<Tp>, Error> {
        if let Subscription::Assign(a) = &self.subscription {
            return Ok(a.clone());
        }
        let metadata = consumer.fetch_metadata(None, self.timeout()).map_err(|e| {
            self.error(format!(
                "cannot read the topics from {}: {e}",
                self.settings.brokers
            ))
        })?;
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        for t in metadata.topics() {
            let wanted = match (&self.subscription, &self.pattern) {
                (Subscription::Topics(names), _) => names.iter().any(|n| n == t.name()),
                (_, Some(re)) => re.is_match(t.name()),
                _ => false,
            };
            if wanted && t.error().is_none() {
                seen.insert(t.name().to_string());
                found.extend(
                    t.partitions()
                        .iter()
                        .map(|p| (t.name().to_string(), p.id())),
                );
            }
        }
        if let Subscription::Topics(names) = &self.subscription
            && let Some(missing) = names.iter().find(|n| !seen.contains(*n))
        {
            let was = lock(&self.fetch).next.keys().any(|(t, _)| t == missing);
            return Err(self.error(if was {
                format!(
                    "topic {missing} no longer exists on {} (deleted?); its unread records cannot be read",
                    self.settings.brokers
                )
            } else {
                format!("topic {missing} does not exist on {}", self.settings.brokers)
            }));
        }
        found.sort();
        Ok(found)
    }

    /// The offset a partition starts at when nothing says otherwise.
    fn initial_offset(
        &self,
        consumer: &KafkaConsumer,
        tp: &Tp,
        at_start: bool,
    ) -> Result<i64, Error> {
        if self.task.is_some() {
            // A task new to this instance resumes where the group's last owner of its
            // partitions committed (a stateful task's checkpoint, restored from its changelog,
            // then says where it resumes).
            if let Some(o) = self
                .group_offsets(consumer, std::slice::from_ref(tp))?
                .get(tp)
            {
                return Ok(*o);
            }
        }
        if let StartingOffsets::Explicit(map) = &self.settings.starting
            && let Some(o) = map.get(tp)
        {
            return Ok(*o);
        }
        let (low, high) = consumer
            .fetch_watermarks(&tp.0, tp.1, self.timeout())
            .map_err(|e| {
                self.error(format!(
                    "cannot read the offsets of {}-{} from {}: {e}",
                    tp.0, tp.1, self.settings.brokers
                ))
            })?;
        // Partitions found later (new ones) start at the earliest, as Spark's.
        Ok(match self.settings.starting {
            StartingOffsets::Latest if at_start => high,
            _ => low,
        })
    }

    /// Reads these partitions from these offsets on: assigns them to the consumer, and drops
    /// what was fetched before.
    fn assign_all(&self, next: BTreeMap<Tp, i64>) -> Result<(), Error> {
        let _gate = lock(&self.poll_gate);
        let mut f = lock(&self.fetch);
        f.next = next;
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &f.next {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .map_err(|e| self.error(format!("cannot assign {t}-{p}: {e}")))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.error(format!("cannot assign the partitions: {e}")))?;
        f.generation += 1;
        f.pending.clear();
        f.paused.clear();
        Ok(())
    }

    /// Adds partitions the subscription covers and the source does not read yet.
    fn refresh(&mut self, at_start: bool) -> Result<(), Error> {
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        self.last_refresh = Some(Instant::now());
        let found = self.discover(&consumer)?;
        let known: HashSet<Tp> = lock(&self.fetch).next.keys().cloned().collect();
        let mut added = Vec::new();
        for tp in found {
            if !known.contains(&tp) {
                let o = self.initial_offset(&consumer, &tp, at_start)?;
                added.push((tp, o));
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        if !at_start {
            for ((t, p), o) in &added {
                tracing::info!(
                    "{}: reading new partition {t}-{p} from offset {o}",
                    self.name
                );
            }
        }
        // Re-assigning restarts fetching at the next offsets: what was fetched is dropped, so
        // that nothing is taken twice.
        let mut next = lock(&self.fetch).next.clone();
        next.extend(added);
        self.assign_all(next)
    }

    /// The most records a partition gives one batch, if limited.
    fn quotas(&self, f: &Fetch, batch: StdDuration) -> (BTreeMap<Tp, usize>, Option<f64>) {
        let secs = batch.as_secs_f64();
        let estimate = if self.settings.backpressure {
            *lock(&self.shared.estimate)
        } else {
            None
        };
        let total_pending: usize = f.pending.values().map(VecDeque::len).sum();
        let mut quotas = BTreeMap::new();
        let mut limit = None::<f64>;
        for tp in f.next.keys() {
            let pending = f.pending.get(tp).map_or(0, VecDeque::len);
            let mut rate = self.settings.max_rate_per_partition;
            if let Some(est) = estimate {
                // As Spark's: the estimate shared out by each partition's backlog.
                let share = if total_pending > 0 {
                    est * pending as f64 / total_pending as f64
                } else {
                    est / f.next.len().max(1) as f64
                };
                rate = Some(rate.map_or(share, |r| r.min(share)));
            }
            let quota = match rate {
                Some(r) => {
                    *limit.get_or_insert(0.0) += r;
                    ((r * secs).floor() as usize).max(1)
                }
                None => usize::MAX,
            };
            quotas.insert(tp.clone(), quota);
        }
        (quotas, limit)
    }

    /// Adds a batch's counts to the status and refreshes what is derived from `f`.
    fn update_status(&self, f: &Fetch, records: usize, failures: u64, dead_lettered: u64) {
        let consumer = self.consumer.as_ref();
        let partitions = f
            .next
            .iter()
            .map(|((t, p), o)| PartitionStatus {
                topic: t.clone(),
                partition: *p,
                next_offset: *o,
                buffered: f.pending.get(&(t.clone(), *p)).map_or(0, VecDeque::len),
                lag: consumer
                    .and_then(|c| lock(&c.context().0).get(&(t.clone(), *p)).copied())
                    .map(|high| (high - o).max(0)),
            })
            .collect();
        let mut s = lock(&self.shared.status);
        s.records += records as u64;
        s.decode_failures += failures;
        s.dead_lettered += dead_lettered;
        s.partitions = partitions;
        s.last_error = f
            .fatal
            .clone()
            .or_else(|| f.unreachable_since.as_ref().map(|(_, e)| e.clone()));
    }

    fn record_ranges(&self, time: Time, ranges: Vec<OffsetRange>) {
        let mut r = lock(&self.shared.ranges);
        r.insert(time, ranges);
        while r.len() > KEEP_RANGES {
            r.pop_first();
        }
    }

    /// Sends the records that failed to decode to the dead-letter topic, and waits for them.
    fn dead_letter(&mut self, failed: &[(Tp, Fetched, String)]) -> Result<(), Error> {
        if failed.is_empty() {
            return Ok(());
        }
        if self.dead_letters.is_none() {
            let p: TrackedProducer = self
                .client_config()
                .set("enable.idempotence", "true")
                .create_with_context(Tracker::default())
                .map_err(|e| self.error(format!("cannot create the dead-letter producer: {e}")))?;
            self.dead_letters = Some(p);
        }
        let topic = self.settings.dead_letter_topic.clone();
        let producer = self.dead_letters.as_ref().expect("created above");
        for ((t, p), f, error) in failed {
            let headers = produce::headers(&[
                ("dstream.error", error),
                ("dstream.source.topic", t),
                ("dstream.source.partition", &p.to_string()),
                ("dstream.source.offset", &f.offset.to_string()),
            ]);
            produce::send(
                producer,
                &topic,
                f.key.as_deref(),
                f.value.as_deref(),
                headers,
            )
            .map_err(|e| self.error(format!("dead-letter topic: {e}")))?;
        }
        produce::flush(producer, self.settings.broker_timeout).map_err(|e| {
            self.error(format!(
                "the dead-letter topic {topic} did not take {} records that failed to decode ({e}); they stay unread and are tried again next batch",
                failed.len()
            ))
        })
    }

    fn decode_position(&self, bytes: &[u8]) -> Result<BTreeMap<Tp, i64>, Error> {
        let list: Vec<(String, i32, i64)> = postcard::from_bytes(bytes)
            .map_err(|e| self.error(format!("its checkpointed position does not decode: {e}")))?;
        Ok(list.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    /// Reads the records `[from, until)` of each partition again, with a consumer of its own.
    fn read_ranges(&self, ranges: &[OffsetRange]) -> Result<Vec<Vec<Fetched>>, Error> {
        let mut out: Vec<Vec<Fetched>> = ranges.iter().map(|_| Vec::new()).collect();
        let todo: Vec<usize> = (0..ranges.len())
            .filter(|i| ranges[*i].count() > 0)
            .collect();
        if todo.is_empty() {
            return Ok(out);
        }
        let consumer: BaseConsumer = self
            .client_config()
            .create()
            .map_err(|e| self.error(format!("cannot create a consumer: {e}")))?;
        let mut tpl = TopicPartitionList::new();
        for i in &todo {
            let r = &ranges[*i];
            tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from))
                .map_err(|e| {
                    self.error(format!("cannot assign {}-{}: {e}", r.topic, r.partition))
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.error(format!("cannot assign the partitions: {e}")))?;
        let index: HashMap<(String, i32), usize> = todo
            .iter()
            .map(|i| ((ranges[*i].topic.clone(), ranges[*i].partition), *i))
            .collect();
        let mut done: HashSet<usize> = HashSet::new();
        let deadline = Instant::now() + self.settings.broker_timeout;
        while done.len() < todo.len() {
            if Instant::now() > deadline {
                return Err(self.error(format!(
                    "replaying a batch: the records of {:?} were not all read back within {:?}",
                    ranges, self.settings.broker_timeout
                )));
            }
            match consumer.poll(StdDuration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let Some(&i) = index.get(&(m.topic().to_string(), m.partition())) else {
                        continue;
                    };
                    let r = &ranges[i];
                    if m.offset() < r.until && !done.contains(&i) {
                        out[i].push(Fetched::from_message(&m));
                    }
                    if m.offset() + 1 >= r.until {
                        done.insert(i);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => tracing::warn!("{}: replaying a batch: {e}; retrying", self.name),
            }
        }
        Ok(out)
    }
}

impl<T: Data> stream_core::Source<T> for KafkaSource<T> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self, _ctx: &SourceContext) -> Result<(), Error> {
        if let Some(e) = self.task.as_ref().and_then(|t| t.error.clone()) {
            return Err(self.error(e));
        }
        let consumer: KafkaConsumer = self
            .client_config()
            .set("statistics.interval.ms", "1000")
            .create_with_context(Watermarks::default())
            .map_err(|e| self.error(format!("cannot create the consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(consumer.clone());
        self.refresh(true)?;
        let (fetch, gate) = (self.fetch.clone(), self.poll_gate.clone());
        let (stopping, name) = (self.stopping.clone(), self.name.clone());
        let thread = std::thread::Builder::new()
            .name("dstream-kafka-fetch".into())
            .spawn(move || fetch_loop(consumer, fetch, gate, stopping, name))
            .map_err(|e| self.error(format!("cannot start the fetcher thread: {e}")))?;
        self.fetcher = Some(thread);
        Ok(())
    }

    fn capture(&mut self, time: Time, ctx: &SourceContext) -> Result<Option<Batch<T>>, Error> {
        let batch_std = ctx.batch_duration.to_std();
        // Take each partition's share of what was fetched (moved out, decoded unlocked).
        let (generation, taken, limit, unreachable) = {
            let mut f = lock(&self.fetch);
            if let Some(fatal) = f.fatal.clone() {
                return Err(self.error(fatal));
            }
            if let Some((since, e)) = &f.unreachable_since
                && since.elapsed() > self.settings.broker_timeout
            {
                return Err(self.error(format!(
                    "the brokers {} have been unreachable for {:?} ({e}); no records are lost: the next batches read from the same offsets once they are back",
                    self.settings.brokers,
                    since.elapsed()
                )));
            }
            let (quotas, limit) = self.quotas(&f, batch_std);
            f.taken = Some((Instant::now(), batch_std));
            let mut taken: Vec<(Tp, i64, Vec<Fetched>)> = Vec::with_capacity(f.next.len());
            let next: Vec<(Tp, i64)> = f.next.iter().map(|(k, v)| (k.clone(), *v)).collect();
            for (tp, from) in next {
                let quota = quotas.get(&tp).copied().unwrap_or(usize::MAX);
                let records: Vec<Fetched> = match f.pending.get_mut(&tp) {
                    Some(q) => {
                        let n = quota.min(q.len());
                        q.drain(..n).collect()
                    }
                    None => Vec::new(),
                };
                taken.push((tp, from, records));
            }
            if let Some(consumer) = &self.consumer {
                flow_control(consumer, &mut f, true);
            }
            (f.generation, taken, limit, f.unreachable_since.is_some())
        };
        let decode = self.settings.decode.clone();
        let mut parts: Vec<Vec<T>> = Vec::with_capacity(taken.len());
        let mut ranges = Vec::with_capacity(taken.len());
        let mut failed = Vec::new();
        let mut records = 0usize;
        for (tp, from, fetched) in &taken {
            let mut part = Vec::with_capacity(fetched.len());
            let raw: Vec<RawRecord<'_>> = fetched.iter().map(|f| f.raw(&tp.0, tp.1)).collect();
            // A record that fails to decode goes to the dead-letter topic; the batch keeps
            // the others.
            for (f, decoded) in fetched.iter().zip(decode.decode(&raw)) {
                match decoded {
                    Ok(v) => part.push(v),
                    Err(e) => failed.push((tp.clone(), f.clone(), e)),
                }
            }
            records += fetched.len();
            ranges.push(OffsetRange {
                topic: tp.0.clone(),
                partition: tp.1,
                from: *from,
                until: fetched.last().map_or(*from, |f| f.offset + 1),
            });
            parts.push(part);
        }
        let failures = failed.len() as u64;
        // Only once the dead letters are safe does the source move past them.
        if let Err(e) = self.dead_letter(&failed) {
            let mut f = lock(&self.fetch);
            if f.generation == generation {
                for (tp, _, fetched) in taken {
                    let q = f.pending.entry(tp).or_default();
                    for r in fetched.into_iter().rev() {
                        q.push_front(r);
                    }
                }
            }
            return Err(e);
        }
        {
            let mut f = lock(&self.fetch);
            for r in &ranges {
                f.next.insert((r.topic.clone(), r.partition), r.until);
            }
            self.update_status(&f, records - failures as usize, failures, failures);
        }
        lock(&self.shared.status).rate_limit = limit;
        self.record_ranges(time, ranges);
        // (Not while the brokers are unreachable: librdkafka's metadata request can then block
        // far beyond its timeout.)
        if !unreachable
            && self
                .last_refresh
                .is_none_or(|r| r.elapsed() >= self.settings.metadata_refresh)
        {
            // After the batch's records are taken: a partition found now starts in the next
            // batch, with its start in this batch's position.
            if let Err(e) = self.refresh(false) {
                tracing::warn!("{}: looking for new partitions: {e}", self.name);
                if matches!(self.subscription, Subscription::Topics(_)) {
                    // The batch fails on this error, so the status says it, as it says a fetch
                    // error's: the fetcher may not have seen the brokers go yet, and the status
                    // above was derived before this request failed.
                    lock(&self.shared.status).last_error = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(Some(Batch::from_partitions(parts)))
    }

    fn position(&self) -> Option<Vec<u8>> {
        let f = lock(&self.fetch);
        let list: Vec<(&str, i32, i64)> = f
            .next
            .iter()
            .map(|((t, p), o)| (t.as_str(), *p, *o))
            .collect();
        postcard::to_stdvec(&list).ok()
    }

    fn check_resume(&mut self, _last: &[u8], latest: &[u8]) -> Result<(), Error> {
        let latest = self.decode_position(latest)?;
        // A stateful task's checkpoint was brought up to date from its changelog: it is the
        // truth (the group's offsets may be ahead of it by a batch whose outputs committed
        // and whose state did not; that batch is processed again).
        let stateless = self
            .task
            .as_ref()
            .is_some_and(|t| t.link.as_ref().is_some_and(|l| !l.stateful));
        if let (Some(task), Some(consumer), true) = (&self.task, &self.consumer, stateless) {
            // The local checkpoint is behind the group when another instance ran the task
            // since: resuming from it would process those records again.
            let parts: Vec<Tp> = latest.keys().cloned().collect();
            let group = self.group_offsets(consumer, &parts)?;
            if let Some(((t, p), g)) = group
                .iter()
                .find(|(tp, g)| latest.get(*tp).is_some_and(|o| **g > *o))
            {
                if let Some(link) = &task.link {
                    link.stale.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                return Err(self.error(format!(
                    "task {}: this instance's checkpoint has read {t}-{p} up to offset {}, and group {} committed {g}: another instance ran the task since, so the checkpoint is stale",
                    task.task,
                    latest[&(t.clone(), *p)],
                    self.group_id,
                )));
            }
        }
        Ok(())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), Error> {
        let next = self.decode_position(position)?;
        if next == lock(&self.fetch).next {
            return Ok(());
        }
        self.assign_all(next)
    }

    fn replay(
        &mut self,
        time: Time,
        from: &[u8],
        to: &[u8],
        _ctx: &SourceContext,
    ) -> Result<Option<Batch<T>>, Error> {
        let from = self.decode_position(from)?;
        let to = self.decode_position(to)?;
        let ranges: Vec<OffsetRange> = to
            .iter()
            .map(|((t, p), until)| OffsetRange {
                topic: t.clone(),
                partition: *p,
                from: from.get(&(t.clone(), *p)).copied().unwrap_or(*until),
                until: *until,
            })
            .collect();
        let fetched = self.read_ranges(&ranges)?;
        let decode = self.settings.decode.clone();
        let mut failures = 0u64;
        let mut records = 0usize;
        let parts: Vec<Vec<T>> = ranges
            .iter()
            .zip(fetched)
            .map(|(r, records_of)| {
                let raw: Vec<RawRecord<'_>> = records_of
                    .iter()
                    .map(|f| f.raw(&r.topic, r.partition))
                    .collect();
                records += raw.len();
                decode
                    .decode(&raw)
                    .into_iter()
                    // Failures went to the dead-letter topic when the batch was first read.
                    .filter_map(|v| v.map_err(|_| failures += 1).ok())
                    .collect()
            })
            .collect();
        self.update_status(&lock(&self.fetch), records - failures as usize, failures, 0);
        self.record_ranges(time, ranges);
        Ok(Some(Batch::from_partitions(parts)))
    }

    fn committed(&mut self, position: &[u8]) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        let Ok(next) = self.decode_position(position) else {
            return;
        };
        if let Some(link) = self.task.as_ref().and_then(|t| t.link.as_ref()) {
            // A consumer outside the group may not commit to it while it has members.
            let offsets: Vec<(String, i32, i64)> =
                next.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
            link.commit(&offsets);
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &next {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!("{}: committing group offsets: {e}", self.name);
        }
    }

    fn stop(&mut self) {
        if let Some(p) = &self.dead_letters {
            let _ = produce::flush(p, StdDuration::from_secs(5));
        }
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.fetcher.take() {
            let _ = t.join();
        }
        let consumer = self.consumer.take();
        if lock(&self.fetch).unreachable_since.is_some() {
            // Closing a consumer whose brokers are gone waits for them (tens of seconds): let
            // it close in the background instead of holding up the context's stop.
            std::thread::spawn(move || drop(consumer));
        } else {
            drop(consumer);
        }
        self.dead_letters = None;
    }
}

/// Kafka streams on a [`StreamingContext`].
pub trait KafkaStreams {
    /// A DStream of the source's records (with backpressure wired to the context's batches,
    /// when the source has it on). Each partition's next offset and lag are reported to the
    /// context's dashboard and `/metrics` ([`StreamingContext::add_input_status`]).
    fn kafka_stream<T: Data>(&self, source: KafkaSource<T>) -> DStream<T>;
}

impl KafkaStreams for StreamingContext {
    fn kafka_stream<T: Data>(&self, mut source: KafkaSource<T>) -> DStream<T> {
        if let Some(scope) = self.task() {
            source.enter_task(scope);
        }
        if source.settings.backpressure {
            *lock(&source.shared.estimator) =
                Some(PidRateEstimator::new(self.batch_duration().millis()));
            self.add_streaming_listener(Arc::new(Backpressure(source.shared.clone())));
        }
        // Positions and lag per partition, for the dashboard and /metrics.
        let handle = source.handle();
        self.add_input_status(move || {
            let input = format!("kafka (group {})", handle.group_id());
            handle
                .status()
                .partitions
                .into_iter()
                .map(|p| stream_core::InputPartitionStatus {
                    input: input.clone(),
                    partition: format!("{}-{}", p.topic, p.partition),
                    position: p.next_offset,
                    lag: p.lag,
                })
                .collect()
        });
        // Records that failed to decode, all of them dead-lettered once the batch moved past.
        let handle = source.handle();
        self.add_record_error_status(move || {
            let s = handle.status();
            vec![stream_core::RecordErrorCount {
                operator: format!("kafka decoder (group {})", handle.group_id()),
                skipped: s.decode_failures,
                dead_lettered: s.dead_lettered,
            }]
        });
        self.input_stream(source)
    }
}

/// Feeds each completed batch to the source's rate estimator.
struct Backpressure(Arc<Shared>);

impl stream_core::StreamingListener for Backpressure {
    fn on_batch_completed(&self, info: &stream_core::BatchInfo) {
        let (Some(processing), Some(delay)) = (info.processing_time, info.scheduling_delay())
        else {
            return;
        };
        let mut estimator = lock(&self.0.estimator);
        let Some(e) = estimator.as_mut() else {
            return;
        };
        if let Some(rate) = e.compute(
            info.batch_time.millis(),
            info.num_records,
            processing.as_millis() as i64,
            delay.millis(),
        ) {
            tracing::debug!("backpressure: input rate limit {rate:.0} records/s");
            *lock(&self.0.estimate) = Some(rate);
        }
    }
}

/// A panic's message, as `panic!` formats it.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
