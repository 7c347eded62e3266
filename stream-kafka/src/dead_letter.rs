//! Poison records to a Kafka dead-letter topic: a [`RecordErrors`] policy for pipelines whose
//! input is Kafka (Kafka Streams' dead-letter queue of KIP-1034).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use stream_core::{DeadLetter, Error, RecordErrors, SourceError};

use crate::produce::{self, TrackedProducer, Tracker};

/// A policy that skips each record on which a user function panics and writes it to `topic`
/// on `brokers`, as [`RecordErrors::dead_letter`] does with a function.
///
/// The value is the record as text ([`DeadLetter::record_text`]; a `Vec<u8>` record as its
/// bytes); there is no key. Headers: `dstream.error` (the panic's message), `dstream.operator`
/// (`map#3`), `dstream.batch.time` (ms) and `dstream.record.type` (the record's Rust type).
/// Each letter is confirmed by the broker before its batch goes on, so a letter is never lost:
/// if the broker does not take it within 30 s the batch fails, and is tried again on restart.
/// Letters are at-least-once: a batch computed again after a restart sends them again.
///
/// ```no_run
/// use stream_core::StreamingContext;
/// use stream_core::Seconds;
/// let dead = stream_kafka::dead_letter_topic("localhost:9092", "clicks-dead-letters")?;
/// let ssc = StreamingContext::builder(Seconds(1)).on_record_error(dead).build()?;
/// # Ok::<(), stream_core::Error>(())
/// ```
pub fn dead_letter_topic(brokers: &str, topic: &str) -> Result<RecordErrors, Error> {
    dead_letter_topic_with(brokers, topic, &[])
}

/// [`dead_letter_topic`] with producer properties of librdkafka (security settings, for
/// example).
pub fn dead_letter_topic_with(
    brokers: &str,
    topic: &str,
    properties: &[(&str, &str)],
) -> Result<RecordErrors, Error> {
    let name = format!("kafka dead-letter topic {topic}");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true");
    for (k, v) in properties {
        config.set(*k, *v);
    }
    let producer: TrackedProducer =
        config
            .create_with_context(Tracker::default())
            .map_err(|e| SourceError::Custom {
                name: name.clone(),
                message: format!("cannot create its producer: {e}"),
            })?;
    let topic = topic.to_string();
    Ok(RecordErrors::dead_letter(move |d: &DeadLetter| {
        if let Err(e) = send(&producer, &topic, d) {
            // A panic here fails the batch: the letter is not lost, the batch is tried again.
            panic!("{name} did not take the dead letter of {}: {e}", d.operator);
        }
    }))
}

fn send(producer: &TrackedProducer, topic: &str, d: &DeadLetter) -> Result<(), String> {
    let time = d.batch_time.millis().to_string();
    let headers = produce::headers(&[
        ("dstream.error", &d.error),
        ("dstream.operator", &d.operator),
        ("dstream.batch.time", &time),
        ("dstream.record.type", d.record_type()),
    ]);
    let text;
    let value: &[u8] = match d.record::<Vec<u8>>() {
        Some(bytes) => bytes,
        None => {
            text = d.record_text();
            text.as_bytes()
        }
    };
    produce::send(producer, topic, None, Some(value), headers)?;
    produce::flush(producer, Duration::from_secs(30))
}
