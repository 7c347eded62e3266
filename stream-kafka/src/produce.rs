//! A producer that tracks its deliveries: which records failed, and where the delivered ones
//! landed (the next offset after ours in each partition).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

/// Per partition, the offset after the last record delivered there.
pub(crate) type Offsets = HashMap<(String, i32), i64>;

#[derive(Default)]
pub(crate) struct Tracker {
    failures: Mutex<Vec<String>>,
    delivered: Mutex<Offsets>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut d = lock(&self.delivered);
                let next = d.entry((m.topic().to_string(), m.partition())).or_insert(0);
                *next = (*next).max(m.offset() + 1);
            }
            Err((e, m)) => {
                let mut f = lock(&self.failures);
                if f.len() < 10 {
                    f.push(format!("{}[{}]: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

pub(crate) type TrackedProducer = BaseProducer<Tracker>;

/// Record headers with text values, in order.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(
        OwnedHeaders::new_with_capacity(pairs.len()),
        |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
}

/// Sends one record, waiting while the local queue is full (so a large batch is never refused).
pub(crate) fn send(
    producer: &TrackedProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: OwnedHeaders,
) -> Result<(), String> {
    send_record(producer, topic, None, key, value, headers)
}

/// Sends one record to a given partition, as [`send`].
pub(crate) fn send_to(
    producer: &TrackedProducer,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: OwnedHeaders,
) -> Result<(), String> {
    send_record(producer, topic, Some(partition), key, value, headers)
}

fn send_record(
    producer: &TrackedProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: OwnedHeaders,
) -> Result<(), String> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                // Delivery reports served, then a pause (rdkafka's `poll(10 ms)` would spin).
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(1));
                record = r;
            }
            Err((e, _)) => return Err(format!("cannot produce to {topic}: {e}")),
        }
    }
}

/// Waits for every record sent so far; the delivery failures since the last call, if any.
///
/// Not rdkafka's `BaseProducer::flush`: it waits in slices of 100 ms that each run to their
/// end, so that every flush with a record in flight took at least 100 ms (an exactly-once
/// batch flushes several times: its outputs, its positions written ahead, its exchanges, its
/// changelog). Here the delivery reports are served as they arrive.
pub(crate) fn flush(producer: &TrackedProducer, timeout: Duration) -> Result<(), String> {
    drain(producer, timeout)?;
    take_failures(producer)
}

/// Waits until nothing is in flight (records delivered or failed, their reports served).
fn drain(producer: &TrackedProducer, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        let in_flight = producer.in_flight_count();
        if in_flight == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "records not delivered within {timeout:?}: {in_flight} still in flight"
            ));
        }
        // Not `poll(1 ms)`: rdkafka's poll spins until its deadline, asking librdkafka for
        // events with a timeout rounded down to 0 ms. A short sleep costs at most 0.2 ms of
        // latency and no CPU.
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Commits the producer's transaction. Its records are drained first by [`drain`]: rdkafka's
/// `commit_transaction` flushes with the slow flush (see [`flush`]), 100 ms a commit with
/// records in flight. Delivery failures stay for the next [`flush`] or [`failures`]; the
/// commit fails on them too.
pub(crate) fn commit_transaction(
    producer: &TrackedProducer,
    timeout: Duration,
) -> Result<(), KafkaError> {
    // A drain that times out leaves the records to the commit's own flush and timeout.
    let _ = drain(producer, timeout);
    producer.commit_transaction(timeout)
}

/// Where the delivered records landed so far.
pub(crate) fn delivered(producer: &TrackedProducer) -> Offsets {
    lock(&producer.context().delivered).clone()
}

/// The delivery failures so far, without waiting for records in flight (serves the delivery
/// reports that arrived).
pub(crate) fn failures(producer: &TrackedProducer) -> Result<(), String> {
    producer.poll(Duration::ZERO);
    take_failures(producer)
}

/// The delivery failures reported since the last call, as one error.
fn take_failures(producer: &TrackedProducer) -> Result<(), String> {
    let failures = std::mem::take(&mut *lock(&producer.context().failures));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("records not delivered: {}", failures.join("; ")))
    }
}

/// An idempotent, non-transactional producer with `acks=all` that tracks its deliveries (the
/// scale-out runner's records outside transactions: exchanges, positions written ahead).
pub(crate) fn idempotent(
    brokers: &str,
    timeout: Duration,
    linger_ms: u32,
    max_message_bytes: u32,
) -> Result<TrackedProducer, String> {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .set("message.max.bytes", max_message_bytes.to_string())
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create_with_context(Tracker::default())
        .map_err(|e| e.to_string())
}

/// Connects the producer to the broker leading `topic`'s `partition` (the watermarks are asked
/// of the leader), ignoring failures: what it is for reports them. A producer id, which an
/// idempotent or transactional producer needs before its first record, is then requested at
/// once (see [`init_transactions`]).
pub(crate) fn connect(producer: &TrackedProducer, topic: &str, partition: i32, timeout: Duration) {
    let _ = producer.client().fetch_metadata(Some(topic), timeout);
    let _ = producer
        .client()
        .fetch_watermarks(topic, partition, timeout);
}

/// `init_transactions`, once the producer has a connection to the broker leading `topic`'s
/// `partition` up. Without one, librdkafka finds the transaction coordinator and then puts off
/// the producer-id request by 500 ms, as the coordinator's connection is not up yet: a task's
/// transactional id, which moves between instances, took about 505 ms to initialise each time
/// (a restore's largest fixed cost), and about 5 ms after this. (On one broker the coordinator
/// is that leader; on several it may not be, and the request is then as before.)
pub(crate) fn init_transactions(
    producer: &TrackedProducer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let started = Instant::now();
    // Their failures are init_transactions' to report.
    connect(producer, topic, partition, timeout);
    let connected = started.elapsed();
    let result = producer.init_transactions(timeout);
    tracing::debug!(
        "init_transactions: {topic}-{partition}'s leader connected in {connected:?}, then {:?}",
        started.elapsed() - connected
    );
    result
}

/// Why a [`bounded`] call failed.
#[derive(Debug)]
pub(crate) enum TxnError {
    /// The call returned an error; the producer can abort and go on.
    Failed(String),
    /// The call did not return in time and was left running: the producer must not be used for
    /// another transaction.
    Abandoned(String),
}

impl TxnError {
    /// Whether the producer can still be used.
    pub(crate) fn usable(&self) -> bool {
        matches!(self, TxnError::Failed(_))
    }
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnError::Failed(m) | TxnError::Abandoned(m) => f.write_str(m),
        }
    }
}

/// How much longer than its own timeout a transactional call may take before [`bounded`] gives
/// up on it: librdkafka's timeouts fire on its own threads' schedule, a little late.
const GRACE: Duration = Duration::from_secs(5);

/// Runs one of librdkafka's transactional calls (`send_offsets_to_transaction`,
/// `commit_transaction`, `abort_transaction`) on a thread of its own and waits for it at most
/// `timeout` (the one the call was given) plus a grace.
///
/// librdkafka 2.12 waits for `send_offsets_to_transaction`'s answer without a deadline
/// (`rd_kafka_txn_op_req1(.., RD_POLL_INFINITE)`, the timeout given only bounding the request it
/// sends): with every broker gone during a rebalance, about 1 call in 8 never returned, and the
/// task holding it could never stop. A call that outlives its deadline is left to finish on its
/// thread, which keeps the producer until then; the caller gets an error and must not use the
/// producer for another transaction (librdkafka refuses one while a call is in progress). If the
/// call succeeds later, its transaction is one committed by a process that then failed, which
/// recovery handles as after a crash between Kafka's commit and the local one; the task's next
/// owner fences the producer either way.
pub(crate) fn bounded<R: Send + 'static>(
    producer: &Arc<TrackedProducer>,
    timeout: Duration,
    what: &str,
    call: impl FnOnce(&TrackedProducer) -> Result<R, KafkaError> + Send + 'static,
) -> Result<R, TxnError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let p = Arc::clone(producer);
    std::thread::Builder::new()
        .name("dstream-txn".into())
        .spawn(move || {
            let _ = tx.send(call(&p));
        })
        .map_err(|e| TxnError::Failed(format!("cannot start a thread for {what}: {e}")))?;
    match rx.recv_timeout(timeout + GRACE) {
        Ok(result) => result.map_err(|e| TxnError::Failed(e.to_string())),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(TxnError::Failed(format!(
            "{what} panicked inside librdkafka's client"
        ))),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                "{what} did not return within {:?}; its thread is left to it, and the producer with it",
                timeout + GRACE
            );
            Err(TxnError::Abandoned(format!(
                "{what} did not return within {:?}: the brokers do not answer",
                timeout + GRACE
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer() -> Arc<TrackedProducer> {
        // Nothing listens there; creating the producer does not connect.
        let p = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create_with_context(Tracker::default())
            .expect("a producer");
        Arc::new(p)
    }

    #[test]
    fn a_call_that_never_returns_is_abandoned_after_its_timeout_and_the_grace() {
        let p = producer();
        let started = Instant::now();
        let result = bounded(&p, Duration::from_millis(100), "a stuck call", |_| {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        });
        let took = started.elapsed();
        let e = result.expect_err("abandoned");
        assert!(!e.usable(), "the producer is not usable: {e}");
        assert!(
            e.to_string()
                .contains("a stuck call did not return within 5.1s"),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(5100) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[test]
    fn a_call_that_returns_gives_its_result_and_its_error_leaves_the_producer_usable() {
        let p = producer();
        let ok = bounded(&p, Duration::from_secs(1), "a call", |_| Ok(7));
        assert_eq!(ok.expect("its result"), 7);
        let failed = bounded(&p, Duration::from_secs(1), "a call", |_| {
            Err::<(), _>(KafkaError::Canceled)
        });
        let e = failed.expect_err("its error");
        assert!(e.usable(), "{e}");
    }
}
