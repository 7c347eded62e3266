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
    let ensured = Admin::new(brokers)?.ensure_topics(&[(topic, partitions, configs)])?;
    Ok(ensured.first().is_some_and(|t| t.created))
}

/// How many partitions `topic` has, or `None` if it does not exist.
pub fn partition_count(brokers: &str, topic: &str) -> Result<Option<usize>, String> {
    Admin::new(brokers)?.partition_count(topic)
}

/// A topic to create: its name, partition count and topic configs (`cleanup.policy`, ...).
pub(crate) type NewTopicSpec<'a> = (&'a str, i32, &'a [(&'a str, &'a str)]);

/// A topic [`Admin::ensure_topics`] made sure of.
pub(crate) struct Ensured {
    /// Whether it was created here (not by someone else, earlier or at the same time).
    pub(crate) created: bool,
    /// Its partition count, all of them with a leader.
    pub(crate) partitions: usize,
}

/// One admin connection for a series of checks and creations, as an instance's start makes:
/// a client per call costs its connection and about 100 ms to close. Closed on a thread of
/// its own when dropped.
pub(crate) struct Admin {
    client: Option<AdminClient<DefaultClientContext>>,
    brokers: String,
}

impl Admin {
    pub(crate) fn new(brokers: &str) -> Result<Admin, String> {
        Ok(Admin {
            client: Some(client(brokers)?),
            brokers: brokers.to_string(),
        })
    }

    fn client(&self) -> &AdminClient<DefaultClientContext> {
        self.client
            .as_ref()
            .expect("an admin's client is only taken when dropped")
    }

    /// The brokers' metadata of `topic`.
    fn metadata(&self, topic: &str) -> Result<rdkafka::metadata::Metadata, String> {
        self.client()
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| {
                format!(
                    "cannot read the metadata of {topic} from {}: {e}",
                    self.brokers
                )
            })
    }

    /// How many partitions `topic` has, or `None` if it does not exist.
    pub(crate) fn partition_count(&self, topic: &str) -> Result<Option<usize>, String> {
        let metadata = self.metadata(topic)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len()))
    }

    /// Creates each topic (name, partitions, topic configs) that does not exist, in one
    /// request, and waits until each has its partitions led; returns, for each, whether it
    /// was created here and how many partitions it has.
    pub(crate) fn ensure_topics(
        &self,
        topics: &[NewTopicSpec<'_>],
    ) -> Result<Vec<Ensured>, String> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(topic, partitions, configs)| {
                configs.iter().fold(
                    NewTopic::new(topic, *partitions, TopicReplication::Fixed(1)),
                    |n, (k, v)| n.set(k, v),
                )
            })
            .collect();
        let names: Vec<&str> = topics.iter().map(|t| t.0).collect();
        let results = wait(self.client().create_topics(&new, &AdminOptions::new()))
            .map_err(|e| format!("creating topics {}: {e}", names.join(", ")))?;
        let created = topics
            .iter()
            .map(|(topic, ..)| {
                match results.iter().find(|r| match r {
                    Ok(t) | Err((t, _)) => t == topic,
                }) {
                    Some(Ok(_)) => Ok(true),
                    Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) | None => {
                        Ok(false)
                    }
                    Some(Err((_, code))) => Err(format!("creating topic {topic}: {code}")),
                }
            })
            .collect::<Result<Vec<bool>, String>>()?;
        // A topic that already existed may have been created a moment ago by another
        // instance starting at the same time: its metadata can show it without partitions
        // yet, so it is waited for too (with whatever partition count it has).
        topics
            .iter()
            .zip(created)
            .map(|(t, created)| {
                let partitions = self.wait_for_leaders(t.0, created.then_some(t.1))?;
                Ok(Ensured {
                    created,
                    partitions,
                })
            })
            .collect()
    }

    /// Waits until `topic` has partitions (`partitions` of them, when given) and each has a
    /// leader: a topic just created has none for a moment, and reading or writing it fails
    /// until then. Returns how many it has.
    fn wait_for_leaders(&self, topic: &str, partitions: Option<i32>) -> Result<usize, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let metadata = self.metadata(topic)?;
            let led = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions())
                .filter(|p| {
                    !p.is_empty()
                        && partitions.is_none_or(|n| p.len() == n as usize)
                        && p.iter().all(|p| p.error().is_none() && p.leader() >= 0)
                });
            if let Some(p) = led {
                return Ok(p.len());
            }
            if std::time::Instant::now() > deadline {
                let count = partitions.map_or("its".to_string(), |n| format!("its {n}"));
                return Err(format!(
                    "topic {topic} exists on {} and {count} partitions have no leader after 30 s",
                    self.brokers
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let closing = std::thread::Builder::new()
                .name("dstream-admin-close".into())
                .spawn(move || drop(client));
            if let Err(e) = closing {
                tracing::debug!("closing an admin client in place: {e}");
            }
        }
    }
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
