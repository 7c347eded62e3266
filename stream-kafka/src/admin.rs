//! Blocking topic administration, for set-up code, examples and tests (librdkafka's admin
//! client, waited on without an async runtime).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// Waits for a future by polling it (the admin client's futures complete on librdkafka's
/// threads, so no runtime is needed).
fn wait<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn client(brokers: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("cannot create an admin client for {brokers}: {e}"))
}

fn each<T, E: std::fmt::Debug>(
    what: &str,
    results: Result<Vec<Result<T, E>>, rdkafka::error::KafkaError>,
) -> Result<(), String> {
    for r in results.map_err(|e| format!("{what}: {e}"))? {
        r.map_err(|e| format!("{what}: {e:?}"))?;
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions (replication factor 1).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin = client(brokers)?;
    each(
        &format!("creating topic {topic}"),
        wait(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )),
    )
}

/// Creates `topic` with `partitions` partitions and these topic configs (`cleanup.policy`,
/// `retention.ms`, ...) unless it exists. Returns whether it was created here.
pub fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<bool, String> {
    let admin = client(brokers)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = wait(admin.create_topics(&[new], &AdminOptions::new()))
        .map_err(|e| format!("creating topic {topic}: {e}"))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(format!("creating topic {topic}: {code}")),
        None => Ok(false),
    }
}

/// How many partitions `topic` has, or `None` if it does not exist.
pub fn partition_count(brokers: &str, topic: &str) -> Result<Option<usize>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("cannot create a client for {brokers}: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("cannot read the metadata of {topic} from {brokers}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Grows `topic` to `total` partitions.
pub fn add_partitions(brokers: &str, topic: &str, total: usize) -> Result<(), String> {
    let admin = client(brokers)?;
    each(
        &format!("adding partitions to {topic}"),
        wait(admin.create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new())),
    )
}

/// Deletes `topic`.
pub fn delete_topic(brokers: &str, topic: &str) -> Result<(), String> {
    let admin = client(brokers)?;
    each(
        &format!("deleting topic {topic}"),
        wait(admin.delete_topics(&[topic], &AdminOptions::new())),
    )
}

/// Produces `records` to `topic` (each `OutRecord` may name its own topic) and waits until all
/// are delivered: for filling topics in set-up code, examples and tests. Returns how many.
pub fn produce(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = crate::OutRecord>,
) -> Result<usize, String> {
    use crate::produce::{self as p, TrackedProducer, Tracker};
    let producer: TrackedProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create_with_context(Tracker::default())
        .map_err(|e| format!("cannot create a producer for {brokers}: {e}"))?;
    let mut n = 0;
    for r in records {
        let to = r.topic.as_deref().unwrap_or(topic);
        p::send(
            &producer,
            to,
            r.key.as_deref(),
            Some(&r.value),
            rdkafka::message::OwnedHeaders::new(),
        )?;
        n += 1;
    }
    p::flush(&producer, Duration::from_secs(120))?;
    Ok(n)
}

/// The offsets `group` has committed on partitions `0..partitions` of `topic`, in partition
/// order (`None` where it has none): for checking where an application stands.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Option<i64>>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .map_err(|e| format!("cannot create a consumer for {brokers}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    // The returned list is dropped before the consumer (a known librdkafka hang otherwise).
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| format!("cannot read group {group}'s offsets of {topic}: {e}"))?;
    let offsets = (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect();
    drop(committed);
    Ok(offsets)
}
