//! A Kafka-protocol broker for the tests, and helpers to create topics, produce and read back.
//!
//! `KAFKA_BROKERS` (set by `.ci/run`, or `eval $(scripts/kafka-broker.sh env)`) names a running
//! broker; without it each test binary starts its own tansu (fetched by
//! `scripts/kafka-broker.sh install`) on a free 127.0.0.1 port, which stops when the test
//! process ends.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tansu binary (installed by the repository's script on first use).
pub fn tansu_binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/kafka-broker.sh"))
        .arg("install")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kafka-broker.sh install");
    assert!(
        out.status.success(),
        "scripts/kafka-broker.sh install failed"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker of this test process: stops when the process ends (a watchdog shell waits for it)
/// or when dropped.
pub struct OwnBroker {
    pub brokers: String,
    child: Child,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let port = free_port();
        OwnBroker::start_advertising(port, port)
    }

    /// A broker listening on `port` that tells clients to connect to `advertised` (where a
    /// [`Proxy`] forwards to it).
    pub fn start_advertising(port: u16, advertised: u16) -> OwnBroker {
        let bin = tansu_binary();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let script = format!(
            "{bin} broker --listener-url {url} --advertised-listener-url {advertised} --storage-engine memory://tansu/ >/dev/null 2>&1 & t=$!; \
             trap 'kill -9 $t 2>/dev/null; exit 0' TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $t 2>/dev/null; do sleep 0.5; done; kill -9 $t 2>/dev/null",
            bin = bin.display(),
            parent = std::process::id()
        );
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnBroker {
            brokers: format!("127.0.0.1:{port}"),
            child,
        }
    }

    /// A broker reachable only through a proxy that the test can cut: every client connection
    /// (the bootstrap and those to the advertised address) goes through it.
    pub fn behind_proxy() -> (OwnBroker, Proxy) {
        let (port, front) = (free_port(), free_port());
        let proxy = Proxy::start(front, port);
        let broker = OwnBroker::start_advertising(port, front);
        (broker, proxy)
    }
}

/// A TCP proxy from `127.0.0.1:front` to `127.0.0.1:back` that can be cut (every connection
/// closed, new ones refused) and restored: a broker unreachable for a while. Its threads end
/// with the test process.
pub struct Proxy {
    pub brokers: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(front: u16, back: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", front)).expect("proxy port");
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", back)) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                o.lock().unwrap().extend([c2, s2]);
                let (Ok(from_client), Ok(to_server)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                for (mut from, mut to) in [(from_client, to_server), (server, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            brokers: format!("127.0.0.1:{front}"),
            cut,
            open,
        }
    }

    /// The broker becomes unreachable: open connections close, new ones are refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// The broker is reachable again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The broker for this test process.
pub fn brokers() -> String {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER
        .get_or_init(|| match std::env::var("KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => b,
            _ => {
                let b = OwnBroker::start();
                let addr = b.brokers.clone();
                // Lives as long as the process; the watchdog stops tansu after it.
                std::mem::forget(b);
                addr
            }
        })
        .clone()
}

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    stream_kafka::admin::create_topic(brokers, topic, partitions).unwrap()
}

pub fn delete_topic(brokers: &str, topic: &str) {
    stream_kafka::admin::delete_topic(brokers, topic).unwrap()
}

/// A new topic of `partitions` holding lines `{prefix}0..{prefix}{n}`, round robin; returns its
/// name and the lines.
pub fn topic_with_lines(
    brokers: &str,
    prefix: &str,
    partitions: i32,
    n: usize,
) -> (String, Vec<String>) {
    let topic = unique(prefix);
    create_topic(brokers, &topic, partitions);
    let lines: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    produce_lines(brokers, &topic, partitions, &lines);
    (topic, lines)
}

/// A record to produce: partition, key, value.
pub type In<'a> = (i32, Option<&'a str>, Option<&'a [u8]>);

/// Produces records and waits for them.
pub fn produce(brokers: &str, topic: &str, records: &[In<'_>]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (part, key, value) in records {
        let mut r = BaseRecord::<str, [u8]>::to(topic).partition(*part);
        if let Some(k) = key {
            r = r.key(*k);
        }
        if let Some(v) = value {
            r = r.payload(*v);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(10));
                    r = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

pub fn produce_lines(brokers: &str, topic: &str, partitions: i32, lines: &[String]) {
    let records: Vec<In<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as i32 % partitions, None, Some(l.as_bytes())))
        .collect();
    produce(brokers, topic, &records);
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Read {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// A reader's context: the end of a partition, which the readers here wait for, is not logged
/// as an error.
pub struct EndIsNoError;

impl rdkafka::ClientContext for EndIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            eprintln!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndIsNoError {}

/// Everything in `topic` now, as a `read_committed` reader sees it (to the end of every
/// partition).
pub fn read_all(brokers: &str, topic: &str) -> Vec<Read> {
    read_all_as(brokers, topic, "read_committed")
}

/// Everything in `topic` now, as a reader of `isolation` (`read_committed`,
/// `read_uncommitted`) sees it.
pub fn read_all_as(brokers: &str, topic: &str, isolation: &str) -> Vec<Read> {
    try_read_all_as(brokers, topic, isolation).unwrap_or_else(|e| panic!("{e}"))
}

/// [`read_all_as`], or an error when the end of some partition was not reached within 30 s
/// (a broker slow to answer: the caller may try again).
pub fn try_read_all_as(brokers: &str, topic: &str, isolation: &str) -> Result<Vec<Read>, String> {
    let c: BaseConsumer<EndIsNoError> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create_with_context(EndIsNoError)
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    drop(md);
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    drop(tpl);
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while eof.len() < parts.len() && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                eof.remove(&m.partition());
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Read {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    if eof.len() < parts.len() {
        return Err(format!(
            "did not reach the end of {topic} within 30 s: partitions {:?} of {parts:?} ended",
            eof
        ));
    }
    Ok(out)
}

/// The offsets committed for `group` on `topic`'s partitions (-1 where none).
pub fn group_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    stream_kafka::admin::committed_offsets(brokers, group, topic, partitions)
        .expect("committed offsets")
        .into_iter()
        .map(|o| o.unwrap_or(-1))
        .collect()
}

/// Sets `group`'s committed offsets (to show a restart does not use them).
pub fn set_group_offsets(brokers: &str, group: &str, topic: &str, offsets: &[i64]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    drop(tpl);
}

/// Waits until `cond` holds (polling), or panics with `what` after `secs`.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running pipeline that reads `topic` (100 ms batches, new partitions looked for every
/// 200 ms, `settings` applied), once it has read `records`.
pub fn reading(
    brokers: &str,
    topic: &str,
    records: u64,
    settings: impl FnOnce(
        stream_kafka::KafkaSourceBuilder<String>,
    ) -> stream_kafka::KafkaSourceBuilder<String>,
) -> (
    stream_core::StreamingContext,
    stream_kafka::KafkaSourceHandle,
) {
    use stream_kafka::{KafkaSource, KafkaStreams};
    let ssc = stream_core::StreamingContext::builder(stream_core::Milliseconds(100))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let source = settings(
        KafkaSource::strings(brokers)
            .topics([topic])
            .metadata_refresh(Duration::from_millis(200)),
    )
    .build()
    .unwrap();
    let handle = source.handle();
    ssc.kafka_stream(source).foreach_batch(|_, _| {}).unwrap();
    ssc.start().unwrap();
    wait_for(30, "the first records", || {
        handle.status().records == records
    });
    (ssc, handle)
}

/// A xorshift generator: the crash tests' random instants and choices, reproducible from the
/// seed they print.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock (never zero).
    pub fn from_clock() -> Rng {
        Rng(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
